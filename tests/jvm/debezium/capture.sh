#!/usr/bin/env bash
# Captures the real Debezium records of tests/fixtures/debezium/captured/pg_*.jsonl.
#
#   tests/jvm/debezium/capture.sh [OUT_DIR]     (default tests/fixtures/debezium/captured)
#
# Starts, each on free 127.0.0.1 ports and in a temporary directory: Apache
# Kafka (scripts/kafka-services.sh), a throw-away PostgreSQL cluster with
# wal_level=logical, and one Kafka Connect standalone worker
# (scripts/debezium-services.sh) running four Debezium Postgres connectors:
# three over the same types table with different value settings, and one over
# the CDC tables with heartbeats and transaction metadata. The scenarios, SQL,
# connector settings and expected values are in capture.py. Then it:
#   1. creates the tables and inserts the rows that the snapshots read;
#   2. starts the worker and waits for the snapshot records;
#   3. runs the streaming DML (one transaction per step) and waits for every
#      expected record and a few heartbeats;
#   4. stops the worker (SIGTERM) and reads every topic from the beginning with
#      Kafka's ConsoleConsumer;
#   5. writes the fixtures (the --from-file JSONL format) and expected.json,
#      and fails unless every record decodes to its expected values.
# Every process it starts is stopped and every directory removed on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
py="$here/tests/jvm/debezium/capture.py"
out_dir="$(mkdir -p "${1:-$here/tests/fixtures/debezium/captured}" && cd "${1:-$here/tests/fixtures/debezium/captured}" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"
cache="${LAKEHOUSE_CACHE:-$HOME/.cache/lakehouse}"
mkdir -p "$cache"
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/lakehouse-capture.XXXXXX")"
pids=()
pg_root=""
pg_ctl=""
connect_pid=""


cleanup() {
  if [ -n "$connect_pid" ]; then kill "$connect_pid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_postgres
  # CAPTURE_KEEP=DIR keeps a copy of the run (logs, connector files, dumps)
  if [ -n "${CAPTURE_KEEP:-}" ]; then cp -r "$run_dir" "$CAPTURE_KEEP" 2>/dev/null || true; fi
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# --- Kafka and the Connect jars ------------------------------------------------------
# shellcheck source=scripts/kafka-services.sh
source "$here/scripts/kafka-services.sh"
# shellcheck source=scripts/debezium-services.sh
source "$here/scripts/debezium-services.sh"

# --- PostgreSQL with logical decoding --------------------------------------------------
start_postgres lakehouse-capture-pg
pg_version="$("$pg_bin/postgres" --version)"
psql_() { "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql_ -c "CREATE DATABASE fixtures"
python3 "$py" sql ddl | psql_ -d fixtures
python3 "$py" sql snapshot | psql_ -d fixtures
echo "$pg_version on 127.0.0.1:$pg_port (wal_level=logical)"

# --- Kafka Connect ----------------------------------------------------------------
cat >"$run_dir/worker.properties" <<EOF
bootstrap.servers=$LAKEHOUSE_TEST_KAFKA
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
offset.storage.file.filename=$run_dir/connect.offsets
offset.flush.interval.ms=1000
plugin.discovery=service_load
listeners=http://127.0.0.1:0
EOF
connector_files=()
for c in pg_types_precise pg_types_string pg_types_double pg_cdc; do
  python3 "$py" connector "$c" "database.port=$pg_port" >"$run_dir/$c.properties"
  connector_files+=("$run_dir/$c.properties")
done
connect_start_ms="$(date +%s%3N)"
java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="$LAKEHOUSE_TEST_DEBEZIUM_LOG4J" \
  -cp "$LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH" org.apache.kafka.connect.cli.ConnectStandalone \
  "$run_dir/worker.properties" "${connector_files[@]}" >"$run_dir/connect.log" 2>&1 &
connect_pid=$!

# end_offsets: `topic count` for every topic of the broker.
# (GetOffsetShell fails while the broker has no topic yet.)
end_offsets() {
  { kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$LAKEHOUSE_TEST_KAFKA" 2>/dev/null || true; } |
    awk -F: '{ n[$1] += $3 } END { for (t in n) print t, n[t] }'
}
# wait_counts TOPIC=MIN...: until every topic has at least MIN records.
wait_counts() {
  local deadline=$((SECONDS + 180)) missing
  while :; do
    kill -0 "$connect_pid" 2>/dev/null || {
      echo "error: Kafka Connect exited" >&2
      tail -n 80 "$run_dir/connect.log" >&2
      return 1
    }
    missing="$(end_offsets | python3 -c '
import sys
have = dict(l.split() for l in sys.stdin if l.strip())
want = dict(a.split("=") for a in sys.argv[1:])
print(" ".join(f"{t}:{have.get(t, 0)}/{n}" for t, n in want.items() if int(have.get(t, 0)) < int(n)))
' "$@")"
    [ -z "$missing" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ] || grep -q 'Task threw an uncaught' "$run_dir/connect.log"; then
      echo "error: records missing: $missing" >&2
      grep -E 'ERROR|Exception' "$run_dir/connect.log" | head -n 40 >&2 || true
      return 1
    fi
    sleep 1
  done
}

echo "waiting for the snapshots"
wait_counts pgtypes_precise.public.all_types=3 pgtypes_string.public.all_types=3 \
  pgtypes_double.public.all_types=3 pgcdc.public.cdc_full=1
first_ms="$(date +%s%3N)"
echo "snapshot records after $(((first_ms - connect_start_ms) / 1000)).$(((first_ms - connect_start_ms) % 1000 / 100)) s (4 connectors, one worker)"

echo "streaming changes"
python3 "$py" sql types_stream | psql_ -d fixtures
python3 "$py" sql cdc_stream | psql_ -d fixtures
mapfile -t want < <(python3 "$py" counts | awk '{ print $1 "=" $2 }')
wait_counts "${want[@]}"
# Anything beyond the expected records would show up here.
sleep 3
kill -TERM "$connect_pid"
wait "$connect_pid" || true
connect_pid=""

# --- read every topic back ---------------------------------------------------------------
mkdir -p "$run_dir/dumps"
end_offsets | while read -r topic n; do
  case "$topic" in __consumer_offsets) continue ;; esac
  [ "$topic" = "__debezium-heartbeat.pgcdc" ] && n=3
  kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "$LAKEHOUSE_TEST_KAFKA" --topic "$topic" --from-beginning \
    --max-messages "$n" --timeout-ms 30000 \
    --property print.timestamp=true --property print.partition=true \
    --property print.offset=true --property print.key=true \
    --property key.separator=$'\t' --property null.literal=@@LAKEHOUSE_NULL@@ \
    >"$run_dir/dumps/$topic.dump" 2>"$run_dir/dumps/$topic.err"
  got="$(grep -c '' "$run_dir/dumps/$topic.dump" || true)"
  if [ "$got" != "$n" ]; then
    echo "error: read $got of $n records of $topic" >&2
    cat "$run_dir/dumps/$topic.err" >&2
    exit 1
  fi
done

python3 "$py" convert "$out_dir" "$run_dir"/dumps/*.dump
echo "Debezium $LAKEHOUSE_TEST_DEBEZIUM_VERSION, Kafka $kafka_version, $pg_version"
ls -l "$out_dir"/pg_*.jsonl "$out_dir/expected.json"
