# Debezium's Postgres connector on Kafka Connect standalone, for the tests
# that need real Debezium records; sourced by scripts/test.sh after
# scripts/kafka-services.sh (uses its $cache and $kafka_version).
#
# This script only installs jars and exports where they are. It starts no
# process: a test starts its own Connect worker (so it can SIGTERM or SIGKILL
# it and restart it on the same offsets file), with
#
#   java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
#     -Dlog4j2.configurationFile="$LAKEHOUSE_TEST_DEBEZIUM_LOG4J" \
#     -cp "$LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH" \
#     org.apache.kafka.connect.cli.ConnectStandalone worker.properties connector.properties
#
# (pass the classpath unexpanded: it is `<libs>/*`, Java's own jar wildcard).
#
#   - The jars come from Maven Central through tests/jvm/debezium/pom.xml
#     (debezium-connector-postgres, Kafka's connect-runtime and connect-json,
#     and a Log4j 2 backend), resolved into $cache/m2 and copied to
#     $cache/jvm/debezium-<debezium version>-kafka-<kafka version>/libs.
#     The Kafka version is kafka-services.sh's (passed to Maven as
#     -Dkafka.version), so the worker's kafka-clients matches the broker's.
#     A marker holding the pom's checksum and the Kafka version makes later
#     runs skip Maven (no network).
#   - Everything is on the classpath, no plugin.path: the worker finds the
#     connector and the JsonConverter through their ServiceLoader manifests
#     (plugin.discovery=service_load, the quickest; only_scan and the default
#     hybrid_warn work too but cost ~2.5 s more at every start and double the RSS).
#
# Exports:
#   LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH  `<libs>/*`, for java -cp
#   LAKEHOUSE_TEST_DEBEZIUM_LOG4J      a Log4j 2 config: INFO to stdout, with
#                                      the noisy loggers at WARN (without one,
#                                      Log4j 2 prints ERROR only)
#   LAKEHOUSE_TEST_DEBEZIUM_VERSION    e.g. 3.4.3.Final
#
# --- worker.properties (one file per worker; $K is LAKEHOUSE_TEST_KAFKA) -----
#
#   bootstrap.servers=$K
#   key.converter=org.apache.kafka.connect.json.JsonConverter
#   value.converter=org.apache.kafka.connect.json.JsonConverter
#   key.converter.schemas.enable=true
#   value.converter.schemas.enable=true
#   offset.storage.file.filename=<a file of the test; keep it to restart>
#   # The default is 60000: a worker killed with SIGKILL re-sends everything
#   # since the last flush (at-least-once). 1000 keeps the replay short;
#   # SIGTERM flushes on the way out.
#   offset.flush.interval.ms=1000
#   plugin.discovery=service_load
#   # The REST server always starts; the default is port 8083 on every
#   # interface. Port 0 binds a free port (the log says which).
#   listeners=http://127.0.0.1:0
#
# --- connector.properties --------------------------------------------------------
#
#   name=<unique per test, e.g. lakehouse-pg-<n>>
#   connector.class=io.debezium.connector.postgresql.PostgresConnector
#   tasks.max=1
#   database.hostname=127.0.0.1
#   database.port=<postgres port>
#   database.user=postgres
#   database.password=postgres          # any value: the test cluster trusts
#   database.dbname=<database>
#   topic.prefix=<unique per test>       # topics <prefix>.<schema>.<table>
#   plugin.name=pgoutput
#   slot.name=<unique per test: [a-z0-9_], at most 63 chars>
#   publication.name=<unique per test>
#   publication.autocreate.mode=filtered # publication of table.include.list only
#   table.include.list=public.t1,public.t2   # tables that exist when it starts:
#                                        # `filtered` creates the publication for
#                                        # them (use `all_tables` for tables made later)
#   snapshot.mode=initial                # or no_data: stream only (3.x name of `never`)
#   decimal.handling.mode=precise        # precise | string | double
#   skipped.operations=none              # the default `t` drops TRUNCATE events
#   heartbeat.interval.ms=1000           # topic __debezium-heartbeat.<prefix>
#   provide.transaction.metadata=true    # topic <prefix>.transaction (BEGIN/END)
#
# Optional: interval.handling.mode=string (io.debezium.time.Interval instead of
# MicroDuration), time.precision.mode (adaptive, the default: timestamp(0..3)
# is Timestamp in ms, (4..6) MicroTimestamp). The replication slot outlives the
# worker (so a restart resumes from it): a test that is done drops it with
# `SELECT pg_drop_replication_slot('<slot>')` once the worker has stopped, or
# sets slot.drop.on.stop=true (dropped on a clean stop only).
#
# The Postgres server must run with wal_level=logical: scripts/test.sh's pg_ctl
# start needs `-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20`
# (one slot and one WAL sender per running connector; 10 of each by default).
# Slot names are cluster-wide, publications per database.
#
# Timings on the 2-core test machine: JVM start to the first record 4.5-5 s
# (fresh slot and snapshot, or restart from an offsets file alike), RSS ~200 MB,
# SIGTERM stop ~0.8 s. only_scan / hybrid_warn discovery: +2.5 s and ~450 MB.
#
# Run it directly to install the jars and print the variables:
#
#   scripts/debezium-services.sh

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cache="${LAKEHOUSE_CACHE:-$HOME/.cache/lakehouse}"
  mkdir -p "$cache"
  debezium_standalone=1
fi

debezium_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
debezium_pom="$debezium_here/tests/jvm/debezium/pom.xml"
# The Kafka version: kafka-services.sh's when sourced after it, else its pom's.
if [ -z "${kafka_version:-}" ]; then
  kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' \
    "$debezium_here/tests/jvm/kafka/pom.xml")"
fi
debezium_version="$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$debezium_pom")"
debezium_home="$cache/jvm/debezium-$debezium_version-kafka-$kafka_version"
debezium_libs="$debezium_home/libs"
debezium_stamp="$(sha256sum "$debezium_pom" | cut -d' ' -f1) kafka-$kafka_version"
if [ "$(cat "$debezium_home/.complete" 2>/dev/null)" != "$debezium_stamp" ]; then
  echo "installing Debezium $debezium_version + Kafka Connect $kafka_version (Maven Central) into $debezium_libs"
fi
maven_libs "$debezium_pom" "$debezium_home" "$debezium_stamp" -Dkafka.version="$kafka_version"
# Exactly one kafka-clients, and the broker's version.
if [ "$(ls "$debezium_libs" | grep -c '^kafka-clients-')" != 1 ] ||
  [ ! -f "$debezium_libs/kafka-clients-$kafka_version.jar" ]; then
  echo "error: expected exactly kafka-clients-$kafka_version.jar in $debezium_libs" >&2
  ls "$debezium_libs" >&2
  rm -f "$debezium_home/.complete"
  return 1 2>/dev/null || exit 1
fi

# Log4j 2 for the Connect worker: INFO to stdout (a test redirects it to a
# file), the chatty client and REST loggers at WARN.
# Rewritten every run (atomically: other runs may be reading it).
debezium_log4j="$debezium_home/connect-log4j2.properties"
debezium_log4j_tmp="$(mktemp "$debezium_home/log4j2.tmp.XXXXXX")"
cat >"$debezium_log4j_tmp" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.clients.name = org.apache.kafka.clients
logger.clients.level = warn
logger.common.name = org.apache.kafka.common
logger.common.level = warn
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = warn
logger.reflections.name = org.reflections
logger.reflections.level = error
EOF
chmod 644 "$debezium_log4j_tmp"
mv "$debezium_log4j_tmp" "$debezium_log4j"

export LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH="$debezium_libs/*"
export LAKEHOUSE_TEST_DEBEZIUM_LOG4J="$debezium_log4j"
export LAKEHOUSE_TEST_DEBEZIUM_VERSION="$debezium_version"
echo "Debezium $debezium_version on Kafka Connect $kafka_version: $debezium_libs"

if [ -n "${debezium_standalone:-}" ]; then
  for v in LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH LAKEHOUSE_TEST_DEBEZIUM_LOG4J \
    LAKEHOUSE_TEST_DEBEZIUM_VERSION; do
    echo "export $v='${!v}'"
  done
fi
