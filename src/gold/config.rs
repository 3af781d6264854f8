//! `[gold]`: where the mart specs and SQL live, and the run's resource limits.

use std::path::PathBuf;

use serde::Deserialize;

use crate::delta::session::SessionLimits;

/// `[gold]` section of `lakehouse.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldConfig {
    /// Folder of the mart specs (`<mart>.toml`).
    pub layers_dir: PathBuf,
    /// Folder of the mart SQL (`<mart>.sql`).
    pub sql_dir: PathBuf,
    /// DataFusion memory pool size in bytes; aggregations spill to disk beyond it.
    pub memory_limit: usize,
    /// Where spill files go (default: the system temporary folder).
    pub spill_dir: Option<PathBuf>,
    /// Rows per Parquet file written to gold tables.
    pub file_rows: usize,
    /// Whether `run gold` publishes the marts to Postgres when `[postgres] url` is set.
    pub publish: bool,
}

impl Default for GoldConfig {
    fn default() -> Self {
        Self {
            layers_dir: PathBuf::from("layers/gold"),
            sql_dir: PathBuf::from("sql/gold"),
            memory_limit: 1024 * 1024 * 1024,
            spill_dir: None,
            file_rows: 1_000_000,
            publish: true,
        }
    }
}

impl GoldConfig {
    /// Gold's session limits: gold plans in the same kind of session as
    /// silver (plain Utf8, JSON functions), bounded by its own memory pool.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            memory_limit: self.memory_limit,
            spill_dir: self.spill_dir.clone(),
        }
    }
}
