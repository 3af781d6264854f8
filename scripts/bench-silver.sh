#!/usr/bin/env bash
# Silver benchmark (BENCHMARKS.md, "Silver"): N mock changes through bronze,
# the silver initial load, then +1% and the incremental run, each timed with
# /usr/bin/time (wall, CPU, peak RSS) and the load average noted.
#
#   scripts/bench-silver.sh N [DIR] [INCREMENT]
#
# INCREMENT is the number of changes after the first N (default N/100): the
# same INCREMENT on lakes of different N shows whether the incremental cost
# follows the changes or the table.
#
# Needs the release binaries (`cargo build --release`, CARGO_TARGET_DIR as
# usual). The JSONL goes through a FIFO: 10M changes are 54 GB of JSON. The
# increment is the generator's output for 1.01·N cut after the first N
# changes' lines, landed as a file of its own.
set -euo pipefail

N=${1:?usage: bench-silver.sh N [DIR] [INCREMENT]}
DIR=${2:-$(mktemp -d /tmp/bench-silver.XXXXXX)}
INCREMENT=${3:-$((N / 100))}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
mkdir -p "$DIR"
cat > "$DIR/lakehouse.toml" <<EOF
[storage]
root = "$DIR/lake"
[silver]
layers_dir = "$REPO/layers/silver"
sql_dir = "$REPO/sql/silver"
memory_limit = 536870912
EOF


rm -f "$DIR/in.jsonl"
mkfifo "$DIR/in.jsonl"
"$BIN/lakehouse-mock" jsonl --changes "$N" --seed 1 --partitions 4 --out "$DIR/in.jsonl" \
    2> "$DIR/generate.err" &
timed bronze_initial "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run bronze --from-file "$DIR/in.jsonl"
wait
LINES=$(grep -o '^[0-9]* records' "$DIR/generate.err" | cut -d' ' -f1)
timed silver_initial "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run silver

"$BIN/lakehouse-mock" jsonl --changes $((N + INCREMENT)) --seed 1 --partitions 4 --out - 2> /dev/null |
    tail -n +$((LINES + 1)) > "$DIR/plus1.jsonl"
timed bronze_plus1 "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run bronze --from-file "$DIR/plus1.jsonl"
# KEEP_BEFORE_INCREMENTAL=1 keeps a copy of the lake as it was before the
# incremental run, to rerun or profile that run alone.
if [ -n "${KEEP_BEFORE_INCREMENTAL:-}" ]; then
    rm -rf "$DIR/lake.before-incremental"
    cp -a "$DIR/lake" "$DIR/lake.before-incremental"
fi
timed silver_incremental "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run silver
grep -h "silver table done" "$DIR/silver_incremental.err" | sed 's/\x1b\[[0-9;]*m//g' |
    grep -o 'table=[a-z_]* .*' | cut -c1-200
echo "data and logs in $DIR"
