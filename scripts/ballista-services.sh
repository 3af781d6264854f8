# A Ballista cluster for the `[engine] mode = "ballista"` tests; sourced by
# scripts/test.sh once the build is done (uses its $run_dir, pids, free_port
# and wait_for, and $CARGO_TARGET_DIR).
#
#   - lakehouse-scheduler and two lakehouse-executor processes (the cluster/
#     crate: Ballista's scheduler and executor with lakehouse's plan codec
#     and SQL functions), on free ports of 127.0.0.1, one task slot each so
#     even the small test plans spread over both executors.
#
# Exports LAKEHOUSE_TEST_BALLISTA (df://127.0.0.1:port) for tests/it/ballista.rs.

ballista_bin="$CARGO_TARGET_DIR/debug"
ballista_port="$(free_port)"
"$ballista_bin/lakehouse-scheduler" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
  --bind-port "$ballista_port" >"$run_dir/ballista-scheduler.log" 2>&1 &
pids+=($!)
wait_for "the Ballista scheduler on port $ballista_port" 300 \
  bash -c "exec 3<>/dev/tcp/127.0.0.1/$ballista_port"
for i in 1 2; do
  flight_port="$(free_port)"
  mkdir -p "$run_dir/ballista-executor-$i"
  "$ballista_bin/lakehouse-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
    --scheduler-host 127.0.0.1 --scheduler-port "$ballista_port" \
    --bind-port "$flight_port" --bind-grpc-port "$(free_port)" \
    --bind-health-port "$(free_port)" --concurrent-tasks 1 \
    --work-dir "$run_dir/ballista-executor-$i" \
    >"$run_dir/ballista-executor-$i.log" 2>&1 &
  pids+=($!)
  wait_for "Ballista executor $i on port $flight_port" 300 \
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$flight_port"
done
export LAKEHOUSE_TEST_BALLISTA="df://127.0.0.1:$ballista_port"
echo "Ballista scheduler on $LAKEHOUSE_TEST_BALLISTA with 2 executors"
