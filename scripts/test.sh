#!/usr/bin/env bash
# The project's test command (README: "Run the tests").
#
# Installs what the tests need (idempotently, under $LAKEHOUSE_CACHE), starts the
# external services on 127.0.0.1, runs the whole test suite, and stops every
# service it started by PID, whatever the outcome.
#
#   scripts/test.sh [extra cargo test args]
#
# Services:
#   - Apache Kafka 4.x (KRaft, one node; jars from Maven Central, scripts/kafka-services.sh)
#     for the end-to-end suite, with a TLS + SASL/SCRAM listener for the security tests
#     (the fast suite uses librdkafka's in-process mock cluster).
#   - a throw-away PostgreSQL 15 cluster (run as the postgres user, trust auth,
#     127.0.0.1 only) for the gold publishing and Grafana panel tests.
#   - SeaweedFS (S3) and Azurite (Azure Blob) for the storage tests
#     (scripts/storage-services.sh).
#   - a Ballista scheduler and two executors (the cluster/ crate's binaries)
#     for the ballista-mode tests (scripts/ballista-services.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LAKEHOUSE_CACHE:-$HOME/.cache/lakehouse}"
mkdir -p "$cache"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/lakehouse-test.XXXXXX")"
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"
pids=()
pg_root=""
pg_ctl=""

cleanup() {
  stop_postgres
  # The background build: its cargo first (the subshell's child).
  if [ -n "${build_pid:-}" ]; then pkill -TERM -P "$build_pid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$run_dir"
}
trap cleanup EXIT



# --- system packages the services need (a fresh machine may lack some) ------
# curl (readiness probes, SigV4-signed), Node.js/npm (Azurite), PostgreSQL 15,
# and a C toolchain with make (librdkafka and jemalloc are built from source
# by their -sys crates); Python 3 with venv (SeaweedFS) is part of the
# machine image, Java 17 and Maven (Apache Kafka, Debezium) too; openssl makes
# the test CA, and the OpenSSL headers with pkg-config build librdkafka's TLS.
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v pkill >/dev/null 2>&1 || missing+=(procps)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql-15)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- the build, in the background while the services start ------------------
# (a cold build of datafusion + deltalake takes most of CI's time; the JVM
# services and the Maven downloads overlap with it).
(cd "$here" && cargo build --workspace --all-targets) >"$run_dir/build.log" 2>&1 &
build_pid=$!
pids+=("$build_pid")

# --- Apache Kafka (KRaft, from Maven Central; PLAINTEXT and SASL_SSL) --------
# shellcheck source=scripts/kafka-services.sh
source "$here/scripts/kafka-services.sh"
export LAKEHOUSE_TEST_REQUIRE_SERVICES=1

# --- PostgreSQL (gold publishing, Grafana panels) --------------------------
start_postgres lakehouse-pg
"$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE lakehouse_test" >/dev/null
export LAKEHOUSE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/lakehouse_test"
echo "postgres on 127.0.0.1:$pg_port"

# --- Debezium Postgres connector (jars only: tests start Kafka Connect) ----
# shellcheck source=scripts/debezium-services.sh
source "$here/scripts/debezium-services.sh"
export LAKEHOUSE_TEST_POSTGRES_ADMIN="postgres://postgres@127.0.0.1:$pg_port/postgres"

# --- object stores (S3: SeaweedFS, Azure: Azurite) ---------------------------
# shellcheck source=scripts/storage-services.sh
source "$here/scripts/storage-services.sh"

# --- tests ---------------------------------------------------------------------
cd "$here"
echo "waiting for the build (log: $run_dir/build.log)"
if ! wait "$build_pid"; then
  cat "$run_dir/build.log" >&2
  echo "error: the build failed" >&2
  exit 1
fi
tail -n 1 "$run_dir/build.log"

# --- a Ballista cluster (needs the build: its binaries are the workspace's) --
# shellcheck source=scripts/ballista-services.sh
source "$here/scripts/ballista-services.sh"

status=0
cargo test --workspace "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- kafka log (tail) ---" >&2
  tail -n 50 "$run_dir/kafka.log" >&2 || true
  echo "--- ballista scheduler log (tail) ---" >&2
  tail -n 30 "$run_dir/ballista-scheduler.log" >&2 || true
fi
exit "$status"
