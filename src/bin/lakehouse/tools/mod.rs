//! Tools of the `lakehouse` binary that are not part of the engine: the demo
//! and the benchmarks. They drive the engine through the `lakehouse`
//! library's public API, and produce records with the mock database
//! (`lakehouse_mock`, feature `kafka`).
//!
//! - [`demo`]: `lakehouse demo`, the whole pipeline with no external service.
//! - [`init`]: `lakehouse init NAME`, a new project folder.
//! - [`bench_bronze`]: `lakehouse bench bronze`, bronze throughput and memory.
//! - [`freshness`]: `lakehouse bench freshness`, produce-to-gold latency of `run all --watch`.
//! - [`bench_gold`]: `lakehouse bench gold`, gold build and publish time.
//!
//! ```text
//! cargo run --release -- demo
//! cargo run --release -- bench --help
//! ```

pub mod bench_bronze;
pub mod bench_gold;
pub mod demo;
pub mod freshness;
pub mod init;

use std::path::{Path, PathBuf};

/// Default scratch folder of the benchmarks (`--dir`).
pub fn default_bench_dir() -> PathBuf {
    std::env::temp_dir().join("lakehouse-bench")
}

/// Removes a benchmark's scratch folder; best effort.
pub fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
