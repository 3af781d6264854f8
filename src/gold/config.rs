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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str, env: &[(&str, &str)]) -> crate::Result<Config> {
        Config::parse(
            text,
            Path::new("test.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn gold_and_postgres_defaults_and_overrides() {
        let config = parse("", &[]).unwrap();
        assert_eq!(config.gold.layers_dir, Path::new("layers/gold"));
        assert!(config.gold.publish);
        assert_eq!(config.postgres.url, None);
        assert_eq!(config.postgres.schema, "gold");
        assert_eq!(config.postgres.retries, 3);
        let config = parse(
            "[gold]\nsql_dir = \"x\"\n[postgres]\nschema = \"marts\"\n",
            &[("LAKEHOUSE_POSTGRES__URL", "postgres://u@h:5/db")],
        )
        .unwrap();
        assert_eq!(config.gold.sql_dir, Path::new("x"));
        assert_eq!(config.postgres.schema, "marts");
        assert_eq!(config.postgres.url.as_deref(), Some("postgres://u@h:5/db"));
    }

    #[test]
    fn gold_and_postgres_unknown_keys_are_errors() {
        let err = parse("[gold]\nlayer_dir = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("layer_dir"),
            "{err}"
        );
        let err = parse("[postgres]\ndsn = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dsn"), "{err}");
        let err = parse("[postgres]\nschema = \"Bad-Name\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres.schema"), "{err}");
    }
}
