//! `lakehouse-executor`: a Ballista executor of a lakehouse cluster.
//!
//! Run: `lakehouse-executor --scheduler-host 127.0.0.1 --scheduler-port 50050
//! --bind-port 50051 --bind-grpc-port 50052 --work-dir /tmp/executor`
//! (Ballista's `ballista-executor` flags; `LAKEHOUSE_CONFIG` as in the crate
//! docs). It runs plan stages with the engine's SQL functions and reads the
//! lake's Parquet files.

use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::config::Config;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::health::spawn_health_server;
use clap::Parser;
use datafusion::prelude::SessionConfig;
use lakehouse::delta::cluster::{LakehouseCodec, cluster_session_state};
use lakehouse_cluster::{
    SERVER_MESSAGE_SIZE_FLAGS, args_with_message_sizes, init_logging, lake_runtime,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let options = Config::parse_from(args_with_message_sizes(&SERVER_MESSAGE_SIZE_FLAGS));
    let health_addr: std::net::SocketAddr =
        format!("{}:{}", options.bind_host, options.bind_health_port)
            .parse()
            .map_err(|e| anyhow::anyhow!("--bind-host/--bind-health-port: {e}"))?;
    let mut config: ExecutorProcessConfig = options
        .try_into()
        .map_err(|e| anyhow::anyhow!("executor configuration: {e}"))?;
    let lake = lake_runtime(config.work_dir.as_deref())?;
    let functions = cluster_session_state(SessionConfig::new(), lake.clone())?;
    config.override_function_registry = Some(Arc::new(BallistaFunctionRegistry::from(&functions)));
    config.override_logical_codec = Some(Arc::new(LakehouseCodec::default()));
    config.override_runtime_producer = Some(Arc::new(move |_| Ok(lake.clone())));
    // `/healthz` (alive) and `/readyz` (heartbeating), as Ballista's own binary serves.
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let health = spawn_health_server(health_addr, config.health.clone(), health_stopped);
    let result = start_executor_process(Arc::new(config)).await;
    let _ = stop_health.send(());
    let _ = health.await;
    result.map_err(|e| anyhow::anyhow!("executor: {e}"))
}
