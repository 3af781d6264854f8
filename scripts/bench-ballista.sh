#!/usr/bin/env bash
# Ballista benchmark (BENCHMARKS.md, "Ballista"): the same lake's silver full
# load and gold build, in local mode and on a Ballista cluster (one
# lakehouse-scheduler, EXECUTORS lakehouse-executor processes) on this
# machine, each step timed with /usr/bin/time (wall, CPU, peak RSS of the
# lakehouse process); the executors' peak RSS is read from /proc at the end,
# and the tables' row counts of both modes are printed side by side.
#
#   scripts/bench-ballista.sh N [DIR] [EXECUTORS]
#
# Needs the release binaries (`cargo build --release --workspace`,
# CARGO_TARGET_DIR as usual). Not a test: tests/it/ballista.rs checks that
# both modes give the same rows.
set -euo pipefail

N=${1:?usage: bench-ballista.sh N [DIR] [EXECUTORS]}
DIR=${2:-$(mktemp -d /tmp/bench-ballista.XXXXXX)}
EXECUTORS=${3:-2}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"
mkdir -p "$DIR"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

port=$(free_port)
for mode in local ballista; do
  cat > "$DIR/$mode.toml" <<TOML
[storage]
root = "$DIR/$mode"
[silver]
layers_dir = "$REPO/layers/silver"
sql_dir = "$REPO/sql/silver"
memory_limit = 536870912
[gold]
layers_dir = "$REPO/layers/gold"
sql_dir = "$REPO/sql/gold"
[engine]
mode = "$mode"
ballista.scheduler = "df://127.0.0.1:$port"
TOML
done


# One bronze, copied: both modes start from the same files.
rm -rf "$DIR/local" "$DIR/ballista" "$DIR/in.jsonl"
mkfifo "$DIR/in.jsonl"
"$BIN/lakehouse-mock" jsonl --changes "$N" --seed 1 --partitions 4 --out "$DIR/in.jsonl" \
  2> "$DIR/generate.err" &
timed bronze "$BIN/lakehouse" --config "$DIR/local.toml" run bronze --from-file "$DIR/in.jsonl"
wait
rm -f "$DIR/in.jsonl"
cp -r "$DIR/local" "$DIR/ballista"

"$BIN/lakehouse-scheduler" --bind-host 127.0.0.1 --external-host 127.0.0.1 --bind-port "$port" \
  > "$DIR/scheduler.log" 2>&1 &
pids+=($!)
wait_for "the scheduler" 300 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
executors=()
for i in $(seq "$EXECUTORS"); do
  flight=$(free_port)
  mkdir -p "$DIR/executor-$i"
  "$BIN/lakehouse-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
    --scheduler-host 127.0.0.1 --scheduler-port "$port" --bind-port "$flight" \
    --bind-grpc-port "$(free_port)" --bind-health-port "$(free_port)" \
    --work-dir "$DIR/executor-$i" > "$DIR/executor-$i.log" 2>&1 &
  pids+=($!)
  executors+=($!)
  wait_for "executor $i" 300 bash -c "exec 3<>/dev/tcp/127.0.0.1/$flight"
done

for mode in local ballista; do
  timed "${mode}_silver" "$BIN/lakehouse" --config "$DIR/$mode.toml" run silver
  timed "${mode}_gold" "$BIN/lakehouse" --config "$DIR/$mode.toml" run gold --no-publish
done
for pid in "${executors[@]}"; do
  echo "executor $pid: $(grep VmHWM "/proc/$pid/status" | tr -s ' ')"
done

echo "== rows per table (local | ballista)"
for table in $(ls "$REPO/layers/silver" | sed 's/\.toml$//') $(ls "$REPO/layers/gold" | sed 's/\.toml$//'); do
  counts=()
  for mode in local ballista; do
    counts+=("$("$BIN/lakehouse" --config "$DIR/$mode.toml" query --format json \
      "SELECT count(*) AS n FROM $table" 2>/dev/null | grep -o '[0-9]\+' | head -1)")
  done
  echo "   $table: ${counts[0]} | ${counts[1]}"
done
echo "data and logs in $DIR"
