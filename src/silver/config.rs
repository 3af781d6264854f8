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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> crate::Result<Config> {
        Config::parse(text, Path::new("test.toml"), Vec::<(String, String)>::new())
    }

    #[test]
    fn silver_defaults_and_overrides() {
        let config = parse("").unwrap();
        assert_eq!(config.silver.layers_dir, Path::new("layers/silver"));
        assert_eq!(config.silver.memory_limit, 1024 * 1024 * 1024);
        let config = parse("[silver]\nmemory_limit = 1000\nsql_dir = \"x\"\n").unwrap();
        assert_eq!(config.silver.memory_limit, 1000);
        assert_eq!(config.silver.sql_dir, Path::new("x"));
    }

    #[test]
    fn silver_unknown_key_is_an_error() {
        let err = parse("[silver]\nmemory = 1\n").unwrap_err().to_string();
        assert!(err.contains("test.toml") && err.contains("memory"), "{err}");
    }
}
