#!/usr/bin/env bash
# Real Apache Kafka (KRaft, one combined broker+controller node, no ZooKeeper,
# no Docker) for the end-to-end tests; sourced by scripts/test.sh (uses its
# $cache, $run_dir, pids, free_port and wait_for).
#
#   - The broker jars come from Maven Central through tests/jvm/kafka/pom.xml
#     (whose kafka.version property is the Kafka version), resolved once into
#     $cache/m2 and copied to $cache/jvm/kafka-<version>/libs; a marker file
#     holding the pom's checksum makes later runs skip Maven entirely.
#   - Listeners, all on free 127.0.0.1 ports:
#       PLAINTEXT  the normal end-to-end tests (and inter-broker traffic);
#       SASL_SSL   SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN for user `lakehouse`,
#                  TLS with a throw-away CA made here (SAN IP:127.0.0.1,
#                  DNS:localhost), so clients verify the broker's name;
#       CONTROLLER the KRaft quorum (PLAINTEXT, not advertised).
#   - Broker output goes to $run_dir/kafka.log.
#
# Exports LAKEHOUSE_TEST_KAFKA (PLAINTEXT host:port), LAKEHOUSE_TEST_KAFKA_SASL_SSL
# (host:port), LAKEHOUSE_TEST_KAFKA_CA (CA certificate, PEM, for librdkafka's
# ssl.ca.location), LAKEHOUSE_TEST_KAFKA_USER and LAKEHOUSE_TEST_KAFKA_PASSWORD,
# and defines kafka_tool (run a Kafka CLI class against these jars, e.g.
# `kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server
# "$LAKEHOUSE_TEST_KAFKA" --list`).
#
# Run it directly for manual testing: it starts the broker in a fresh temporary
# directory, prints the variables to export, and stops the broker on Ctrl-C:
#
#   scripts/kafka-services.sh

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed, not sourced: define what scripts/test.sh would.
  set -euo pipefail
  kafka_standalone=1
  cache="${LAKEHOUSE_CACHE:-$HOME/.cache/lakehouse}"
  mkdir -p "$cache"
  run_dir="$(mktemp -d "${TMPDIR:-/tmp}/lakehouse-kafka.XXXXXX")"
  pids=()
  kafka_standalone_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$run_dir"
  }
  trap kafka_standalone_cleanup EXIT
  trap 'exit 130' INT TERM
  # shellcheck source=scripts/lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

kafka_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- jars (Maven Central, cached) ----------------------------------------------
kafka_pom="$kafka_here/tests/jvm/kafka/pom.xml"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$kafka_pom")"
kafka_home="$cache/jvm/kafka-$kafka_version"
kafka_libs="$kafka_home/libs"
kafka_pom_sum="$(sha256sum "$kafka_pom" | cut -d' ' -f1)"
if [ "$(cat "$kafka_home/.complete" 2>/dev/null)" != "$kafka_pom_sum" ]; then
  echo "installing Apache Kafka $kafka_version (Maven Central) into $kafka_libs"
fi
maven_libs "$kafka_pom" "$kafka_home" "$kafka_pom_sum"

# --- configuration -------------------------------------------------------------
kafka_dir="$run_dir/kafka"
mkdir -p "$kafka_dir/data"
kafka_port="$(free_port)"
kafka_sasl_port="$(free_port)"
kafka_controller_port="$(free_port)"
kafka_user="lakehouse"
kafka_password="lakehouse-test-$RANDOM$RANDOM$RANDOM"
kafka_store_password="lakehouse-keystore-$RANDOM$RANDOM"

# TLS: a CA and a broker certificate for 127.0.0.1 and localhost, fresh each run.
# The broker reads a PKCS12 keystore; clients trust ca.pem (librdkafka
# ssl.ca.location, or ssl.truststore.type=PEM for Java clients).
kafka_ca="$kafka_dir/ca.pem"
(
  cd "$kafka_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 7 \
    -keyout ca.key -out ca.pem -subj "/CN=lakehouse test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout broker.key -out broker.csr -subj "/CN=localhost"
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" >broker.ext
  openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 7 \
    -extfile broker.ext -out broker.pem
  openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
    -passout "pass:$kafka_store_password" -out broker.p12
) >"$kafka_dir/tls.log" 2>&1 || { cat "$kafka_dir/tls.log" >&2; false; }

cat >"$kafka_dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$kafka_controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_SSL://127.0.0.1:$kafka_sasl_port,CONTROLLER://127.0.0.1:$kafka_controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_SSL://127.0.0.1:$kafka_sasl_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$kafka_dir/data

# SASL_SSL: SCRAM credentials live in the cluster metadata (added at format
# time); PLAIN checks the JAAS user_<name> entries.
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$kafka_user="$kafka_password";
ssl.keystore.type=PKCS12
ssl.keystore.location=$kafka_dir/broker.p12
ssl.keystore.password=$kafka_store_password
ssl.key.password=$kafka_store_password
ssl.client.auth=none

# A fast single-node test broker.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
EOF

# Everything to one file (stdout, redirected to $run_dir/kafka.log).
cat >"$kafka_dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.network.name = kafka.network.RequestChannel$
logger.network.level = warn
EOF
# The CLIs: warnings only, to stderr.
cat >"$kafka_dir/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF

# kafka_tool CLASS ARGS...: a Kafka CLI, e.g. org.apache.kafka.tools.TopicCommand,
# org.apache.kafka.tools.ConsoleProducer, org.apache.kafka.tools.consumer.ConsoleConsumer,
# kafka.admin.ConfigCommand, kafka.tools.StorageTool. A small, quick-starting JVM.
kafka_tool() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$kafka_dir/tools-log4j2.properties" \
    -cp "$kafka_libs/*" "$@"
}

# A cluster id as Kafka's Uuid.randomUuid() makes it: 16 random bytes, URL-safe
# base64 without padding, never starting with '-'.
kafka_cluster_id="$(python3 -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not s.startswith("-"): break
print(s)')"
kafka_tool kafka.tools.StorageTool format --config "$kafka_dir/server.properties" \
  --cluster-id "$kafka_cluster_id" \
  --add-scram "SCRAM-SHA-512=[name=$kafka_user,password=$kafka_password]" \
  --add-scram "SCRAM-SHA-256=[name=$kafka_user,password=$kafka_password]" \
  >"$kafka_dir/format.log" 2>&1 || { cat "$kafka_dir/format.log" >&2; false; }

# --- broker --------------------------------------------------------------------
# A small JVM for a 2-core machine that also runs the tests: serial GC, and C1
# only (TieredStopAtLevel=1: ~2 s faster to ready and less JIT CPU; plenty for
# test traffic).
java -Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$kafka_dir/log4j2.properties" \
  -cp "$kafka_libs/*" kafka.Kafka "$kafka_dir/server.properties" >"$run_dir/kafka.log" 2>&1 &
pids+=($!)
kafka_pid=$!

# Ready once a Metadata request (v4) on the PLAINTEXT listener lists a broker:
# the socket is bound before the broker serves requests, and only unfenced
# brokers are listed, so this is "can produce", not just "port open".
kafka_ready() {
  python3 - "$kafka_port" "$kafka_sasl_port" <<'PY'
import socket, struct, sys
port, sasl_port = int(sys.argv[1]), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
    client = b"lakehouse-probe"
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", -1, 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    def read(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                sys.exit(1)
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", read(4))
    resp = read(size)
    correlation, throttle, brokers = struct.unpack(">iii", resp[:12])
    if correlation != 1 or brokers < 1:
        sys.exit(1)
socket.create_connection(("127.0.0.1", sasl_port), timeout=2).close()
PY
}
# Not wait_for: stop at once if the JVM exits, and bound the wait in time
# (a probe can block for its 2 s timeout).
kafka_up=""
kafka_deadline=$((SECONDS + 120))
while [ "$SECONDS" -lt "$kafka_deadline" ]; do
  if kafka_ready >/dev/null 2>&1; then kafka_up=1; break; fi
  kill -0 "$kafka_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$kafka_up" ]; then
  if kill -0 "$kafka_pid" 2>/dev/null; then
    echo "error: Kafka on 127.0.0.1:$kafka_port did not become ready within 120 s" >&2
  else
    echo "error: Kafka exited while starting" >&2
  fi
  echo "--- $run_dir/kafka.log (tail) ---" >&2
  tail -n 60 "$run_dir/kafka.log" >&2 || true
  return 1 2>/dev/null || exit 1
fi

export LAKEHOUSE_TEST_KAFKA="127.0.0.1:$kafka_port"
export LAKEHOUSE_TEST_KAFKA_SASL_SSL="127.0.0.1:$kafka_sasl_port"
export LAKEHOUSE_TEST_KAFKA_CA="$kafka_ca"
export LAKEHOUSE_TEST_KAFKA_USER="$kafka_user"
export LAKEHOUSE_TEST_KAFKA_PASSWORD="$kafka_password"
echo "Apache Kafka $kafka_version (KRaft) on $LAKEHOUSE_TEST_KAFKA, SASL_SSL on $LAKEHOUSE_TEST_KAFKA_SASL_SSL (pid $kafka_pid)"

if [ -n "${kafka_standalone:-}" ]; then
  echo "log: $run_dir/kafka.log; for another shell:"
  for v in LAKEHOUSE_TEST_KAFKA LAKEHOUSE_TEST_KAFKA_SASL_SSL LAKEHOUSE_TEST_KAFKA_CA \
    LAKEHOUSE_TEST_KAFKA_USER LAKEHOUSE_TEST_KAFKA_PASSWORD; do
    echo "export $v=${!v}"
  done
  echo "Ctrl-C stops the broker and removes $run_dir"
  wait "$kafka_pid"
fi
