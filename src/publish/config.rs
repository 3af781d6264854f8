//! `[postgres]`: where gold marts are published.

use serde::Deserialize;

/// `[postgres]` section of `lakehouse.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL (`postgres://user:password@host:port/db?sslmode=...`).
    /// Unset: marts are not published. Usually given as `LAKEHOUSE_POSTGRES__URL`.
    pub url: Option<String>,
    /// Schema the marts are published into (created when missing).
    pub schema: String,
    /// Attempts after the first failed one before a mart's publish is reported failed.
    pub retries: u32,
    /// Wait before the first retry, doubled on each further one (milliseconds).
    pub retry_backoff_ms: u64,
    /// How long the swap waits for readers' locks before giving up and retrying
    /// (milliseconds), so a long dashboard query cannot stall the run.
    pub lock_timeout_ms: u64,
    /// Connection timeout (milliseconds).
    pub connect_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: None,
            schema: "gold".to_string(),
            retries: 3,
            retry_backoff_ms: 1_000,
            lock_timeout_ms: 10_000,
            connect_timeout_ms: 10_000,
        }
    }
}

impl PostgresConfig {
    /// Checks the values a typo could make dangerous (the schema is spliced into SQL).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !crate::spec::is_spec_name(&self.schema) {
            return Err(format!(
                "postgres.schema: `{}` must be a lower-case identifier (letters, digits, _)",
                self.schema
            ));
        }
        Ok(())
    }
}
