//! `[silver]`: where the table specs and SQL live, and the run's resource limits.

use std::path::PathBuf;

use serde::Deserialize;

use crate::delta::session::SessionLimits;

/// `[silver]` section of `lakehouse.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilverConfig {
    /// Folder of the table specs (`<table>.toml`).
    pub layers_dir: PathBuf,
    /// Folder of the table SQL (`<table>.sql`).
    pub sql_dir: PathBuf,
    /// DataFusion memory pool size in bytes; sorts and windows spill to disk
    /// beyond it.
    pub memory_limit: usize,
    /// Where spill files go (default: the system temporary folder).
    pub spill_dir: Option<PathBuf>,
    /// Rows per Parquet file written to silver tables. Files hold narrow
    /// key ranges (rows are sorted by key), so an incremental run rewrites
    /// only the files of the keys it touches: smaller files make that
    /// rewrite smaller, at the price of more files.
    pub file_rows: usize,
    /// Changes applied per chunk (whole key groups), on loads and
    /// incremental runs alike: bounds the memory of a large backlog.
    pub chunk_rows: usize,
    /// Incremental runs mark the replaced rows of a file deleted (a Delta
    /// deletion vector) instead of rewriting the file, when they are at
    /// most half its rows: the cost follows the changed keys, not the files
    /// holding them. Turns on the table's `deletionVectors` feature (Delta
    /// readers need it: deltalake, Spark 3.4+, DuckDB). Off on a Ballista
    /// engine, whose executors read Parquet files directly.
    pub deletion_vectors: bool,
}

impl Default for SilverConfig {
    fn default() -> Self {
        Self {
            layers_dir: PathBuf::from("layers/silver"),
            sql_dir: PathBuf::from("sql/silver"),
            memory_limit: 1024 * 1024 * 1024,
            spill_dir: None,
            file_rows: 100_000,
            chunk_rows: 100_000,
            deletion_vectors: true,
        }
    }
}

impl SilverConfig {
    /// Silver's session limits (`memory_limit`, `spill_dir`).
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            memory_limit: self.memory_limit,
            spill_dir: self.spill_dir.clone(),
        }
    }
}
