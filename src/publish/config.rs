//! `[postgres]`: where gold marts are published.

use std::time::Duration;

use serde::Deserialize;

use crate::retry::Policy;

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
    /// How a mart's publish is retried: `retries` more attempts after the
    /// first, waiting `retry_backoff_ms`, then twice as long each time, with
    /// no cap (few retries are configured; a cap would be a new setting).
    pub fn retry_policy(&self) -> Policy {
        Policy {
            attempts: Some(self.retries.saturating_add(1)),
            initial: Duration::from_millis(self.retry_backoff_ms),
            max: Duration::MAX,
            factor: 2.0,
            jitter: false,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_retries_follow_the_first_attempt_doubling_from_the_backoff() {
        let config = PostgresConfig {
            retries: 3,
            retry_backoff_ms: 50,
            ..Default::default()
        };
        let delays: Vec<_> = config.retry_policy().delays().collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(50), ms(100), ms(200)]);
        let none = PostgresConfig {
            retries: 0,
            ..config
        };
        assert_eq!(none.retry_policy().delays().count(), 0);
    }
}
