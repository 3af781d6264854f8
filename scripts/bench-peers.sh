#!/usr/bin/env bash
# Peer benchmark (issue 13): the same work done by what a team would write
# instead, timed against lakehouse on one mock stream.
#
#   scripts/bench-peers.sh N [DIR]
#
# Generates N changes with the mock (JSONL, seed 1, 4 partitions), then times
# with /usr/bin/time (wall, user, sys, peak RSS):
#   (a) lakehouse run bronze --from-file       vs (b) benches/peers/bronze_peer.py
#       (Python: json + pyarrow + deltalake, same input file, same bronze schema)
#   (c) lakehouse run silver + run gold        vs (d) benches/peers/duckdb_peer.py
#       (DuckDB: the shipped silver specs and gold SQL, full load, on OUR bronze
#       table so both sides read the same input; pipeline_health left out)
# then the incremental runs after +1% (the generator's output for 1.01·N cut
# after the first N changes' lines, landed by `run bronze --from-file`):
#   (e) lakehouse run silver + run gold         vs (f) duckdb_peer.py --incremental
#       (dbt-style delete+insert: the keys the new bronze rows touch are rebuilt
#       from their history and MERGEd into the peer's Delta tables)
# and prints the times and the ratios (peer time / lakehouse time) from this
# one run, then checks with benches/peers/compare.py that the peers' tables
# hold what ours hold, after the full load and after the increment (set
# COMPARE=0 to skip; it is not timed).
#
# Needs the release binaries (`cargo build --release`; found in $BIN, default
# ${CARGO_TARGET_DIR:-target}/release) and python3 with venv + pip reaching
# PyPI: the peers' venv is created once in
# ${LAKEHOUSE_CACHE:-~/.cache/lakehouse}/peers-venv. The JSONL is written to
# DIR (schemas enabled: ~3 KB per record, ~5 GB per million changes), since
# both bronze runs read it. Not a test: run it by hand on a quiet machine.
set -euo pipefail

N=${1:?usage: bench-peers.sh N [DIR]}
DIR=${2:-$(mktemp -d /tmp/bench-peers.XXXXXX)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release}
VENV=${LAKEHOUSE_CACHE:-$HOME/.cache/lakehouse}/peers-venv
PEERS=$REPO/benches/peers
# Versions the peers were written and checked against.
PY_PACKAGES=(duckdb==2.0.1 deltalake==1.6.6 pyarrow==26.0.1)

for b in lakehouse lakehouse-mock; do
    [ -x "$BIN/$b" ] || { echo "no $BIN/$b: cargo build --release, or set BIN" >&2; exit 1; }
done

# The venv, created once and reused while it has the pinned versions.
if [ "$(cat "$VENV/.pinned" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "${PY_PACKAGES[@]}"
    echo "${PY_PACKAGES[*]}" > "$VENV/.pinned"
fi
PY=$VENV/bin/python

mkdir -p "$DIR"
rm -rf "$DIR/ours" "$DIR/peer"
cat > "$DIR/lakehouse.toml" <<EOF
[storage]
root = "$DIR/ours"
[silver]
layers_dir = "$REPO/layers/silver"
sql_dir = "$REPO/sql/silver"
[gold]
layers_dir = "$REPO/layers/gold"
sql_dir = "$REPO/sql/gold"
EOF

declare -A WALL
timed() { # label command...
    local label=$1
    shift
    echo "== $label (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    RUST_LOG=info /usr/bin/time -f "%e %U %S %M" -o "$DIR/$label.time" "$@" \
        > "$DIR/$label.out" 2> "$DIR/$label.err" || { tail -20 "$DIR/$label.err"; exit 1; }
    read -r wall user sys rss < "$DIR/$label.time"
    WALL[$label]=$wall
    printf '   %s s wall, %s s user, %s s sys, %s KB peak RSS\n' "$wall" "$user" "$sys" "$rss"
}

echo "== generate $N changes"
"$BIN/lakehouse-mock" jsonl --changes "$N" --seed 1 --partitions 4 --out "$DIR/in.jsonl" \
    2> "$DIR/generate.err"
tail -1 "$DIR/generate.err"
sync

timed a_bronze "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run bronze --from-file "$DIR/in.jsonl"
timed b_bronze_peer "$PY" "$PEERS/bronze_peer.py" "$DIR/in.jsonl" "$DIR/peer"
timed c_silver "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run silver
timed c_gold "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run gold --no-publish
timed d_duckdb_peer "$PY" "$PEERS/duckdb_peer.py" "$DIR/ours/bronze/bronze_events" "$DIR/peer"

if [ "${COMPARE:-1}" != 0 ]; then
    echo "== compare after the full load (ours vs peers, not timed)"
    "$PY" "$PEERS/compare.py" "$DIR/ours" "$DIR/peer" --bronze > "$DIR/compare_full.txt" || true
    tail -1 "$DIR/compare_full.txt"
fi

echo "== +1%: $((N / 100)) more changes, landed in bronze (not timed)"
LINES=$(wc -l < "$DIR/in.jsonl")
"$BIN/lakehouse-mock" jsonl --changes $((N + N / 100)) --seed 1 --partitions 4 --out - 2> /dev/null |
    tail -n +$((LINES + 1)) > "$DIR/plus1.jsonl"
"$BIN/lakehouse" --config "$DIR/lakehouse.toml" run bronze --from-file "$DIR/plus1.jsonl" \
    > "$DIR/bronze_plus1.out" 2> "$DIR/bronze_plus1.err"
timed e_silver "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run silver
timed e_gold "$BIN/lakehouse" --config "$DIR/lakehouse.toml" run gold --no-publish
timed f_duckdb_peer "$PY" "$PEERS/duckdb_peer.py" "$DIR/ours/bronze/bronze_events" "$DIR/peer" --incremental

ratio() { awk -v p="$1" -v o="$2" 'BEGIN { if (o > 0) printf "%.2f", p / o; else print "-" }'; }
SILVER_GOLD=$(awk -v s="${WALL[c_silver]}" -v g="${WALL[c_gold]}" 'BEGIN { printf "%.2f", s + g }')
INCREMENTAL=$(awk -v s="${WALL[e_silver]}" -v g="${WALL[e_gold]}" 'BEGIN { printf "%.2f", s + g }')
echo
echo "N = $N changes, $(wc -l < "$DIR/in.jsonl") records ($(du -h "$DIR/in.jsonl" | cut -f1))"
printf '%-16s %14s %12s %18s\n' layer "lakehouse (s)" "peer (s)" "peer / lakehouse"
printf '%-16s %14s %12s %18s\n' bronze "${WALL[a_bronze]}" "${WALL[b_bronze_peer]}" \
    "$(ratio "${WALL[b_bronze_peer]}" "${WALL[a_bronze]}")"
printf '%-16s %14s %12s %18s\n' "silver + gold" "$SILVER_GOLD" "${WALL[d_duckdb_peer]}" \
    "$(ratio "${WALL[d_duckdb_peer]}" "$SILVER_GOLD")"
printf '%-16s %14s %12s %18s\n' "+1% incremental" "$INCREMENTAL" "${WALL[f_duckdb_peer]}" \
    "$(ratio "${WALL[f_duckdb_peer]}" "$INCREMENTAL")"
echo "(silver ${WALL[c_silver]} s + gold ${WALL[c_gold]} s; +1%: silver ${WALL[e_silver]} s + gold ${WALL[e_gold]} s;"
echo " peak RSS and CPU above; peer = Python bronze, DuckDB silver + gold)"

if [ "${COMPARE:-1}" != 0 ]; then
    echo
    echo "== compare after the full load"
    cat "$DIR/compare_full.txt"
    echo "== compare after +1% (silver and gold; the peer's bronze has no increment)"
    "$PY" "$PEERS/compare.py" "$DIR/ours" "$DIR/peer" || true
fi
echo "data and logs in $DIR"
