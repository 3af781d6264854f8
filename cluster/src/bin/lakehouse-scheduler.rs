//! `lakehouse-scheduler`: the Ballista scheduler of a lakehouse cluster.
//!
//! Run: `lakehouse-scheduler --bind-host 127.0.0.1 --bind-port 50050`
//! (Ballista's `ballista-scheduler` flags; `LAKEHOUSE_CONFIG` as in the
//! crate docs). It decodes lakehouse's plans (its codec), plans them with
//! the engine's SQL functions, and reads the file listings from the lake.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{Config, SchedulerConfig};
use ballista_scheduler::scheduler_process::start_server;
use clap::Parser;
use lakehouse::delta::cluster::{LakehouseCodec, cluster_session_state};
use lakehouse_cluster::{
    SERVER_MESSAGE_SIZE_FLAGS, args_with_message_sizes, init_logging, lake_runtime,
};

fn main() -> anyhow::Result<()> {
    // Ballista plans deep trees recursively: its own binary runs on 32 MiB stacks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    init_logging();
    // Tasks carry their in-memory tables to the executors too.
    let [decoding, encoding] = SERVER_MESSAGE_SIZE_FLAGS;
    let options = Config::parse_from(args_with_message_sizes(&[
        decoding,
        encoding,
        "--grpc-client-max-message-size",
    ]));
    let addr: SocketAddr = format!("{}:{}", options.bind_host, options.bind_port)
        .parse()
        .context("--bind-host/--bind-port")?;
    let lake = lake_runtime(None)?;
    let mut config: SchedulerConfig = options
        .try_into()
        .map_err(|e| anyhow::anyhow!("scheduler configuration: {e}"))?;
    config = config.with_override_session_builder(Arc::new(move |session_config| {
        cluster_session_state(session_config, lake.clone())
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
    }));
    config.override_logical_codec = Some(Arc::new(LakehouseCodec::default()));
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| anyhow::anyhow!("scheduler state: {e}"))?;
    tracing::info!(%addr, "lakehouse scheduler listening");
    start_server(cluster, addr, config)
        .await
        .map_err(|e| anyhow::anyhow!("scheduler: {e}"))
}
