#!/usr/bin/env bash
# Captures the real Debezium records of tests/fixtures/debezium/captured/mysql_*.jsonl
# from MariaDB (the MySQL-family fixtures; MariaDB is what Debian packages).
#
#   tests/jvm/debezium/capture-mariadb.sh [OUT_DIR]   (default tests/fixtures/debezium/captured)
#
# Like capture.sh (read it first), with a throw-away MariaDB server instead of
# Postgres: Debian's mariadb-server-core (installed with apt-get when missing),
# binlog_format=ROW, binlog_row_image=FULL, server_id=1, a temporary datadir,
# TCP on a free 127.0.0.1 port; and Debezium's MariaDB connector
# (tests/jvm/debezium/mariadb/pom.xml, jars cached under $cache/jvm). Scenarios,
# settings and expected values are in capture_mariadb.py.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
py="$here/tests/jvm/debezium/capture_mariadb.py"
out_dir="$(mkdir -p "${1:-$here/tests/fixtures/debezium/captured}" && cd "${1:-$here/tests/fixtures/debezium/captured}" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"
cache="${LAKEHOUSE_CACHE:-$HOME/.cache/lakehouse}"
mkdir -p "$cache"
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/lakehouse-capture-mariadb.XXXXXX")"
pids=()
connect_pid=""

cleanup() {
  if [ -n "$connect_pid" ]; then kill "$connect_pid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # CAPTURE_KEEP=DIR keeps a copy of the run (logs, connector files, dumps)
  if [ -n "${CAPTURE_KEEP:-}" ]; then cp -r "$run_dir" "$CAPTURE_KEEP" 2>/dev/null || true; fi
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# --- MariaDB server --------------------------------------------------------------------
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing mariadb-server-core (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server-core mariadb-client-core >/dev/null
fi
mariadbd="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
md_dir="$run_dir/mariadb"
mkdir -p "$md_dir"
md_user=()
[ "$(id -u)" = 0 ] && md_user=(--user=root)
mariadb-install-db --no-defaults "${md_user[@]}" --datadir="$md_dir/data" \
  --auth-root-authentication-method=normal --skip-test-db >"$md_dir/install.log" 2>&1 ||
  { cat "$md_dir/install.log" >&2; exit 1; }
md_port="$(free_port)"
"$mariadbd" --no-defaults "${md_user[@]}" --datadir="$md_dir/data" --socket="$md_dir/mysqld.sock" \
  --port="$md_port" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$md_dir/mysqld.pid" \
  --log-error="$md_dir/error.log" --log-bin="$md_dir/binlog" --binlog-format=ROW \
  --binlog-row-image=FULL --server-id=1 \
  --innodb-buffer-pool-size=32M --innodb-log-file-size=16M >"$md_dir/stdout.log" 2>&1 &
pids+=($!)
mariadb_() { mariadb --no-defaults --default-character-set=utf8mb4 -S "$md_dir/mysqld.sock" -uroot "$@"; }
wait_for "MariaDB on port $md_port" 150 mariadb_ -e "SELECT 1"
md_version="$(mariadb_ -N -e "SELECT VERSION()")"
mariadb_ -e "CREATE USER 'debezium'@'127.0.0.1' IDENTIFIED BY 'dbz';
  GRANT ALL PRIVILEGES ON *.* TO 'debezium'@'127.0.0.1';
  CREATE DATABASE fixtures CHARACTER SET utf8mb4;"
python3 "$py" sql ddl | mariadb_ fixtures
python3 "$py" sql snapshot | mariadb_ fixtures
echo "MariaDB $md_version on 127.0.0.1:$md_port (binlog_format=ROW)"

# --- Kafka and the MariaDB connector's jars ------------------------------------------------
# shellcheck source=scripts/kafka-services.sh
source "$here/scripts/kafka-services.sh"
md_pom="$here/tests/jvm/debezium/mariadb/pom.xml"
md_dbz_version="$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$md_pom")"
md_home="$cache/jvm/debezium-mariadb-$md_dbz_version-kafka-$kafka_version"
md_stamp="$(sha256sum "$md_pom" | cut -d' ' -f1) kafka-$kafka_version"
maven_libs "$md_pom" "$md_home" "$md_stamp" -Dkafka.version="$kafka_version"
# the worker's Log4j 2 configuration (scripts/debezium-services.sh writes it)
# shellcheck source=scripts/debezium-services.sh
source "$here/scripts/debezium-services.sh" >/dev/null

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
for c in mysql_types_precise mysql_types_string mysql_types_double mysql_cdc; do
  python3 "$py" connector "$c" "database.port=$md_port" \
    "schema.history.internal.file.filename=$run_dir/$c.history" >"$run_dir/$c.properties"
  connector_files+=("$run_dir/$c.properties")
done
connect_start_ms="$(date +%s%3N)"
java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dlog4j2.configurationFile="$LAKEHOUSE_TEST_DEBEZIUM_LOG4J" \
  -cp "$md_home/libs/*" org.apache.kafka.connect.cli.ConnectStandalone \
  "$run_dir/worker.properties" "${connector_files[@]}" >"$run_dir/connect.log" 2>&1 &
connect_pid=$!

# (GetOffsetShell fails while the broker has no topic yet.)
end_offsets() {
  { kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$LAKEHOUSE_TEST_KAFKA" 2>/dev/null || true; } |
    awk -F: '{ n[$1] += $3 } END { for (t in n) print t, n[t] }'
}
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
wait_counts mytypes_precise.fixtures.all_types=3 mytypes_string.fixtures.all_types=3 \
  mytypes_double.fixtures.all_types=3 mycdc.fixtures.cdc_orders=1
first_ms="$(date +%s%3N)"
echo "snapshot records after $(((first_ms - connect_start_ms) / 1000)).$(((first_ms - connect_start_ms) % 1000 / 100)) s (4 connectors, one worker)"

echo "streaming changes"
python3 "$py" sql types_stream | mariadb_ fixtures
python3 "$py" sql cdc_stream | mariadb_ fixtures
mapfile -t want < <(python3 "$py" counts | awk '{ print $1 "=" $2 }')
wait_counts "${want[@]}"
sleep 3
kill -TERM "$connect_pid"
wait "$connect_pid" || true
connect_pid=""

mkdir -p "$run_dir/dumps"
end_offsets | while read -r topic n; do
  case "$topic" in __consumer_offsets) continue ;; esac
  [ "$topic" = "__debezium-heartbeat.mycdc" ] && n=3
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
echo "Debezium MariaDB connector $md_dbz_version, Kafka $kafka_version, MariaDB $md_version"
ls -l "$out_dir"/mysql_*.jsonl
