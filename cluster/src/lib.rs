//! The Ballista scheduler and executor processes of a lakehouse cluster
//! (`[engine] mode = "ballista"`): Ballista's own, plus what lakehouse's
//! plans need on the other side of the wire: its plan codec (in-memory
//! tables travel inside plans), the SQL functions the engine registers (the
//! JSON functions) and the lake's object store. The engine itself stays in
//! the `lakehouse` crate; these binaries only host it.
//!
//! Both take Ballista's own flags (`--help`). `LAKEHOUSE_CONFIG` names the
//! `lakehouse.toml` whose `[storage]` is the lake (credentials and
//! endpoints of S3 or Azure come from it and the usual environment, as for
//! `lakehouse` itself); without it only local folders are readable.

use std::sync::Arc;

use anyhow::Context;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use lakehouse::config::Config;
use lakehouse::storage::StorageRoot;

/// Names the lakehouse configuration whose storage the cluster reads.
pub const CONFIG_ENV: &str = "LAKEHOUSE_CONFIG";

/// The largest plan or result message the processes accept by default: a
/// plan carries its in-memory tables (a lookup chunk's rows), so Ballista's
/// 16 MiB is raised to lakehouse's `[engine] ballista.max_message_size`.
pub const MAX_MESSAGE_SIZE: usize = lakehouse::delta::cluster::DEFAULT_MAX_MESSAGE_SIZE;

/// A runtime whose object stores include the lake of `LAKEHOUSE_CONFIG`
/// (when set), spilling under `temp_dir` when given.
pub fn lake_runtime(temp_dir: Option<&str>) -> anyhow::Result<Arc<RuntimeEnv>> {
    let registry = Arc::new(DefaultObjectStoreRegistry::new());
    if let Some(path) = std::env::var_os(CONFIG_ENV) {
        let path = std::path::PathBuf::from(path);
        let config = Config::load(Some(&path), std::env::vars())
            .with_context(|| format!("{CONFIG_ENV}={}", path.display()))?;
        let root = StorageRoot::from_config(&config.storage)?;
        root.register_object_store_in(registry.as_ref() as &dyn ObjectStoreRegistry)?;
        tracing::info!(lake = %root.redacted_url(), "lake object store registered");
    }
    let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(registry);
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(builder.build_arc()?)
}

/// The process's arguments after each of `size_flags` set to
/// [`MAX_MESSAGE_SIZE`]: a flag given on the command line wins (clap keeps
/// the last occurrence of a single-valued flag).
pub fn args_with_message_sizes(size_flags: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().take(1).collect();
    for flag in size_flags {
        args.push(flag.into());
        args.push(MAX_MESSAGE_SIZE.to_string().into());
    }
    args.extend(std::env::args_os().skip(1));
    args
}

/// The gRPC server's message-size flags both processes share.
pub const SERVER_MESSAGE_SIZE_FLAGS: [&str; 2] = [
    "--grpc-server-max-decoding-message-size",
    "--grpc-server-max-encoding-message-size",
];

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}
