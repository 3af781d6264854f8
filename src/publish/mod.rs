//! Publishing gold marts to Postgres.
//!
//! Per mart: its rows are loaded with `COPY` into a staging table next to the
//! published one (`<mart>__staging`), the primary key and indexes are built
//! there, and one transaction drops the published table, renames the staging
//! table into its place and records the Delta version published in
//! `<schema>._lakehouse_published`. Readers see the old mart or the new one,
//! never a half-loaded one. The Delta mart stays the source of truth: a
//! failed publish is retried with backoff, then reported; since Postgres
//! records which version it holds, the next run publishes again whatever is
//! behind.

pub mod config;
pub mod swap;
pub mod telemetry;
pub mod types;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backon::Retryable;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

pub use config::PostgresConfig;

use crate::error::Result;

/// A Delta table to publish, and how: what publishing needs of a gold mart.
#[derive(Debug, Clone, Copy)]
pub struct PublishTable<'a> {
    /// The table's name, in Postgres too.
    pub name: &'a str,
    /// The file that declares it, named in errors.
    pub file: &'a std::path::Path,
    /// The key columns: the Postgres primary key.
    pub keys: &'a [String],
    /// Extra Postgres indexes (each a list of columns).
    pub indexes: &'a [Vec<String>],
    /// The Postgres table comment.
    pub description: Option<&'a str>,
    /// The Delta table, at the version to publish.
    pub table: &'a DeltaTable,
}

/// The outcome of one mart's publish.
#[derive(Debug, Clone)]
pub struct PublishOutcome {
    /// The mart.
    pub mart: String,
    /// The Delta version published (or found already published).
    pub version: Option<i64>,
    /// Rows loaded (0 when already up to date).
    pub rows: u64,
    /// Whether Postgres already held this version.
    pub up_to_date: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent.
    pub elapsed: Duration,
    /// The last error when every attempt failed.
    pub error: Option<String>,
}

impl std::fmt::Display for PublishOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = self.version.map_or("none".into(), |v| v.to_string());
        match (&self.error, self.up_to_date) {
            (Some(e), _) => write!(
                f,
                "publish {}: FAILED after {} attempt(s) (version {version} stays unpublished; the next run retries): {e}",
                self.mart, self.attempts
            ),
            (None, true) => write!(
                f,
                "publish {}: version {version} already published",
                self.mart
            ),
            (None, false) => write!(
                f,
                "publish {}: version {version}, {} rows in {:.2}s ({} attempt(s))",
                self.mart,
                self.rows,
                self.elapsed.as_secs_f64(),
                self.attempts
            ),
        }
    }
}

/// Publishes `marts` (each as of the version of its loaded table),
/// retrying each per `[postgres]` ([`PostgresConfig::retry_policy`]).
/// Failures are reported in the outcomes, not as an error: the Delta marts
/// are committed regardless.
pub async fn publish_marts(
    config: &PostgresConfig,
    ctx: &SessionContext,
    marts: &[PublishTable<'_>],
) -> Result<Vec<PublishOutcome>> {
    let policy = config.retry_policy();
    let mut outcomes = Vec::new();
    for spec in marts {
        let version = spec.table.version().map(|v| v as i64);
        let started = Instant::now();
        let mut outcome = PublishOutcome {
            mart: spec.name.to_string(),
            version,
            rows: 0,
            up_to_date: false,
            attempts: 0,
            elapsed: Duration::ZERO,
            error: None,
        };
        // Counts the attempts for the outcome and the log lines; an atomic,
        // not a `Cell`, since the future must stay `Send`.
        let attempts = &AtomicU32::new(0);
        let published = (|| async move {
            attempts.fetch_add(1, Ordering::Relaxed);
            swap::publish_mart(config, ctx, spec.table, spec, version).await
        })
        .retry(policy.delays())
        .notify(|error, wait| {
            tracing::warn!(
                mart = %spec.name,
                attempt = attempts.load(Ordering::Relaxed),
                %error,
                retry_in = ?wait,
                "publish failed"
            );
        })
        .await;
        outcome.attempts = attempts.load(Ordering::Relaxed);
        match published {
            Ok(swap::Published::Loaded(rows)) => outcome.rows = rows,
            Ok(swap::Published::AlreadyCurrent) => outcome.up_to_date = true,
            Err(error) => {
                // backon notifies only before a retry: the last failure is logged here.
                tracing::warn!(mart = %spec.name, attempt = outcome.attempts, %error, "publish failed");
                outcome.error = Some(error.to_string());
            }
        }
        outcome.elapsed = started.elapsed();
        telemetry::published(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
