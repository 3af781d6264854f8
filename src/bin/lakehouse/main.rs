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

/// Bronze allocates and frees batches of the same sizes every few seconds
/// (chunks of lines, Arrow builders, Parquet buffers); returning freed pages
/// to the kernel after one second made it fault the same memory back in, at
/// ~25 % of its CPU time in the kernel. Keeping them ten seconds made the
/// file path ~10 % faster for ~190 MB more RSS, still bounded by the batch
/// limits: jemalloc reuses the pages it keeps. Other commands keep the
/// default above (silver's peak RSS matters more than its page faults).
pub(crate) fn keep_freed_pages_for_bronze() {
    // The arenas that exist, then the default of those made later.
    const CONTROLS: [&[u8]; 2] = [b"arena.4096.dirty_decay_ms\0", b"arenas.dirty_decay_ms\0"];
    for control in CONTROLS {
        // SAFETY: both are jemalloc controls taking an `ssize_t`.
        if let Err(error) = unsafe { tikv_jemalloc_ctl::raw::write::<isize>(control, 10_000) } {
            tracing::debug!(%error, "jemalloc decay not set");
        }
    }
}

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
