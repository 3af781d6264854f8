//! `lakehouse status`: per table its Delta version, watermark, rows and last
//! commit; bronze's Kafka lag per topic and partition (when brokers are
//! configured); the last runs and failures from `_lakehouse_runs`.
//!
//! Table facts come from the same system tables `lakehouse query` offers
//! (`lakehouse_tables`, `lakehouse_commits`, `lakehouse_watermarks`,
//! `lakehouse_runs`). The committed Kafka positions are the `txn` actions of
//! `bronze_events`; high watermarks come from the broker. The storage root is
//! shown without credentials, user info or query string.

use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use serde::{Deserialize, Serialize};

use crate::bronze::kafka::app_id;
use crate::config::Config;
use crate::delta::txn_version;
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::bronze::{EVENTS_TABLE, LAYER as BRONZE_LAYER};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Text tables.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format `{other}` (table, json)")),
        }
    }
}

/// One table's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableStatus {
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// The table.
    pub table_name: String,
    /// Delta version.
    #[serde(default)]
    pub version: Option<i64>,
    /// Rows (from the file statistics).
    #[serde(default)]
    pub rows: Option<i64>,
    /// Time of the latest commit.
    #[serde(default)]
    pub last_commit_at: Option<String>,
    /// The upstream version read up to (silver: bronze; gold: the oldest of its inputs).
    #[serde(default)]
    pub watermark: Option<i64>,
    /// Upstream versions not read yet.
    #[serde(default)]
    pub versions_behind: Option<i64>,
}

/// Bronze's lag on one Kafka partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Last offset committed in `bronze_events` (`None`: nothing yet).
    pub committed_offset: Option<i64>,
    /// The broker's high watermark (next offset to be written).
    pub high_watermark: i64,
    /// Records on the broker not in bronze yet.
    pub lag: i64,
}

/// One recorded run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStatus {
    /// Job name.
    pub job: String,
    /// What it ran.
    pub run: String,
    /// What started it.
    pub trigger: String,
    /// How it ended.
    pub status: String,
    /// Start.
    pub started_at: String,
    /// End.
    pub ended_at: String,
    /// Rows read.
    pub rows_read: i64,
    /// Rows written.
    pub rows_written: i64,
    /// The error, if any.
    #[serde(default)]
    pub error: Option<String>,
}

/// Everything `lakehouse status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// The storage root, without secrets.
    pub storage: String,
    /// Per table.
    pub tables: Vec<TableStatus>,
    /// Per topic and partition (empty without brokers).
    pub kafka_lag: Vec<PartitionLag>,
    /// Why the lag could not be read, when it could not.
    pub kafka_error: Option<String>,
    /// The latest runs, newest first.
    pub runs: Vec<RunStatus>,
    /// The latest runs that did not succeed, newest first.
    pub failures: Vec<RunStatus>,
}

const TABLES_SQL: &str = "
SELECT t.layer, t.table_name, t.version, t.rows,
       CAST(c.last_commit_at AS VARCHAR) AS last_commit_at,
       w.watermark, w.versions_behind
FROM lakehouse_tables t
LEFT JOIN (SELECT layer, table_name, max(committed_at) AS last_commit_at
           FROM lakehouse_commits GROUP BY layer, table_name) c
  ON c.layer = t.layer AND c.table_name = t.table_name
LEFT JOIN (SELECT layer, table_name, min(watermark) AS watermark,
                  max(versions_behind) AS versions_behind
           FROM lakehouse_watermarks GROUP BY layer, table_name) w
  ON w.layer = t.layer AND w.table_name = t.table_name
ORDER BY CASE t.layer WHEN 'bronze' THEN 0 WHEN 'silver' THEN 1 ELSE 2 END, t.table_name";

fn runs_sql(filter: &str, limit: usize) -> String {
    format!(
        "SELECT job, run, trigger, status, CAST(started_at AS VARCHAR) AS started_at,
                CAST(ended_at AS VARCHAR) AS ended_at, rows_read, rows_written, error
         FROM lakehouse_runs {filter} ORDER BY started_at DESC LIMIT {limit}"
    )
}

/// Collects the status; `runs` is how many runs and failures to list.
pub async fn collect(config: &Config, runs: usize) -> Result<StatusReport> {
    let root = StorageRoot::from_config(&config.storage)?;
    let ctx = super::jobs::query_session(config).await?;
    let mut report = StatusReport {
        storage: root.describe(),
        tables: rows(&ctx, TABLES_SQL).await?,
        runs: rows(&ctx, &runs_sql("", runs)).await?,
        failures: rows(&ctx, &runs_sql("WHERE status <> 'succeeded'", runs)).await?,
        ..Default::default()
    };
    if config.kafka.brokers.is_some() {
        match kafka_lag(config, &root).await {
            Ok(lag) => report.kafka_lag = lag,
            Err(e) => report.kafka_error = Some(e.to_string()),
        }
    }
    Ok(report)
}

/// Runs `sql` and reads its rows into `T` (by column name).
async fn rows<T: serde::de::DeserializeOwned>(ctx: &SessionContext, sql: &str) -> Result<Vec<T>> {
    let batches: Vec<RecordBatch> = ctx.sql(sql).await?.collect().await?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("status: {e}")))
}

/// Bronze's lag per subscribed topic and partition.
pub async fn kafka_lag(config: &Config, root: &StorageRoot) -> Result<Vec<PartitionLag>> {
    let brokers = config.require_brokers()?.to_string();
    let kafka = config.kafka.clone();
    // librdkafka calls block: keep them off the async workers.
    let highs = tokio::task::spawn_blocking(move || -> Result<Vec<(String, i32, i64, i64)>> {
        let mut client = ClientConfig::new();
        for (k, v) in &kafka.properties {
            client.set(k, v);
        }
        client.set("bootstrap.servers", &brokers);
        client.set("group.id", &kafka.group_id);
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| Error::kafka("creating a client for status", e))?;
        let timeout = Duration::from_secs(10);
        let watermarks = crate::bronze::backlog::subscription_watermarks(
            &consumer,
            &kafka.subscription(),
            timeout,
        )?;
        Ok(watermarks
            .into_iter()
            .map(|((topic, partition), (low, high))| (topic, partition, low, high))
            .collect())
    })
    .await
    .map_err(|e| Error::Internal(format!("status: {e}")))??;
    let events = root.open_table(BRONZE_LAYER, EVENTS_TABLE).await?;
    let mut lags = Vec::with_capacity(highs.len());
    for (topic, partition, low, high) in highs {
        let committed = txn_version(&events, EVENTS_TABLE, &app_id(&topic, partition)).await?;
        let next = committed.map_or(low, |c| c + 1);
        lags.push(PartitionLag {
            topic,
            partition,
            committed_offset: committed,
            high_watermark: high,
            lag: (high - next).max(0),
        });
    }
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}

fn cell<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Renders the report.
pub fn render(report: &StatusReport, format: Format) -> Result<String> {
    if format == Format::Json {
        return serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|e| Error::Internal(format!("status: {e}")));
    }
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "storage: {}\n", report.storage);
    let _ = writeln!(
        out,
        "{:<8} {:<32} {:>8} {:>12} {:>10} {:>7}  last commit",
        "layer", "table", "version", "rows", "watermark", "behind"
    );
    for t in &report.tables {
        let _ = writeln!(
            out,
            "{:<8} {:<32} {:>8} {:>12} {:>10} {:>7}  {}",
            t.layer,
            t.table_name,
            cell(&t.version),
            cell(&t.rows),
            cell(&t.watermark),
            cell(&t.versions_behind),
            t.last_commit_at.as_deref().unwrap_or("-"),
        );
    }
    if let Some(e) = &report.kafka_error {
        let _ = writeln!(out, "\nkafka lag: unavailable: {e}");
    } else if !report.kafka_lag.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<40} {:>9} {:>12} {:>14} {:>10}",
            "topic", "partition", "committed", "high watermark", "lag"
        );
        for l in &report.kafka_lag {
            let _ = writeln!(
                out,
                "{:<40} {:>9} {:>12} {:>14} {:>10}",
                l.topic,
                l.partition,
                cell(&l.committed_offset),
                l.high_watermark,
                l.lag
            );
        }
    }
    for (title, runs) in [("last runs", &report.runs), ("failures", &report.failures)] {
        let _ = writeln!(out, "\n{title}:");
        if runs.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for r in runs {
            let _ = writeln!(
                out,
                "  {:<12} {:<8} {:<10} {:<10} {}  {}  read {} written {}{}",
                r.job,
                r.run,
                r.trigger,
                r.status,
                r.started_at,
                r.ended_at,
                r.rows_read,
                r.rows_written,
                r.error
                    .as_deref()
                    .map(|e| format!("  error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(out)
}
