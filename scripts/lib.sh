# Shell helpers shared by scripts/test.sh, the service scripts it sources, the
# benchmark scripts and the fixture capture scripts under tests/jvm/ (sourced; defines functions only).

# timed LABEL COMMAND...: runs COMMAND with RUST_LOG=info under /usr/bin/time,
# output in $DIR/LABEL.out and .err, and prints its wall, CPU and peak RSS
# with the load average (the benchmark scripts).
timed() {
  local label=$1
  shift
  echo "== $label (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  RUST_LOG=info /usr/bin/time -f "   %e s wall, %U s user, %S s sys, %M KB peak RSS" "$@" \
    > "$DIR/$label.out" 2> "$DIR/$label.err" || { tail -20 "$DIR/$label.err"; exit 1; }
  tail -1 "$DIR/$label.err"
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for DESCRIPTION ATTEMPTS COMMAND...: retries COMMAND every 0.2 s.
wait_for() {
  local what="$1" attempts="$2"; shift 2
  for _ in $(seq "$attempts"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "error: $what did not become ready" >&2
  return 1
}

# Runs a command as the postgres user (initdb and the server refuse root).
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# start_postgres NAME: a throw-away PostgreSQL cluster on a free 127.0.0.1
# port, trust auth, with logical decoding (wal_level=logical) for Debezium.
# Sets pg_bin, pg_ctl, pg_port and pg_root (outside any run folder: the
# postgres user must own it); stop_postgres removes it.
start_postgres() {
  pg_bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")"
  pg_ctl="$pg_bin/pg_ctl"
  pg_port="$(free_port)"
  pg_root="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  chmod 755 "$pg_root"
  chown postgres:postgres "$pg_root"
  as_postgres "$pg_bin/initdb" -D "$pg_root/data" -U postgres -A trust --no-sync >"$pg_root/initdb.log" 2>&1
  as_postgres "$pg_ctl" -D "$pg_root/data" -l "$pg_root/server.log" \
    -o "-p $pg_port -k $pg_root -c listen_addresses=127.0.0.1 -c fsync=off -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20" \
    -w start >/dev/null
  wait_for "postgres on port $pg_port" 100 "$pg_bin/pg_isready" -h 127.0.0.1 -p "$pg_port"
}

# Stops and removes the cluster start_postgres made (if any).
stop_postgres() {
  if [ -n "${pg_root:-}" ]; then
    as_postgres "$pg_ctl" -D "$pg_root/data" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$pg_root"
    pg_root=""
  fi
}

# maven_libs POM HOME STAMP [MVN ARGS...]: copies POM's runtime dependencies
# into HOME/libs from Maven Central (repository cached in $cache/m2), unless
# HOME/.complete already holds STAMP, so later runs do no network work. The
# Maven log goes to HOME/mvn.log and is shown on failure.
maven_libs() {
  local pom="$1" home="$2" stamp="$3" tmp
  shift 3
  if [ "$(cat "$home/.complete" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  mkdir -p "$home"
  tmp="$(mktemp -d "$home/libs.tmp.XXXXXX")"
  if ! mvn -B -Dstyle.color=never -f "$pom" -Dmaven.repo.local="$cache/m2" "$@" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$home/mvn.log" 2>&1; then
    tail -n 40 "$home/mvn.log" >&2
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$home/libs"
  mv "$tmp" "$home/libs"
  echo "$stamp" >"$home/.complete"
}
