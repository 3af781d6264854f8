//! The `lakehouse` command line: allocator, logging and `main`.
//!
//! The command line is declared in [`cli`] and run by [`dispatch`]; the
//! engine's work is in the `lakehouse` library, and [`tools`] holds the demo
//! and the benchmarks, which are not part of it. Run it with:
//!
//! ```text
//! cargo run --release -- --help
//! ```

mod cli;
mod dispatch;
mod tools;

use clap::Parser;

/// jemalloc rather than glibc malloc: DataFusion's many short-lived Arrow
/// buffers on several threads fragment glibc's per-thread arenas, and a
/// silver run's RSS grew to 2.3x its live heap (heaptrack). With jemalloc's
/// background threads returning freed pages after a second, the 10M-change
/// `fact_shipments` load peaked at 638 MB instead of 944 MB, as fast.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them).
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

/// Logs to stderr, secrets redacted; `LAKEHOUSE_LOG` (else `RUST_LOG`) filters.
/// By default: warnings, and the progress of the engine, the tools (this
/// binary is the crate `lakehouse` too) and the mock's Kafka producer.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEHOUSE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,lakehouse=info,lakehouse_mock::kafka=info")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(lakehouse::redact::RedactingStderr)
        .init();
}

#[tokio::main]
async fn main() {
    init_tracing();
    lakehouse::redact::register_env_secrets();
    let cli = cli::Cli::parse();
    if let Err(error) = dispatch::run(cli).await {
        // Redacted: an error chain can quote a request URL or server answer.
        eprintln!(
            "Error: {}",
            lakehouse::redact::redact(&format!("{error:?}"))
        );
        std::process::exit(1);
    }
}
