//! Run history: one row per run of a job in the `_lakehouse_runs` Delta
//! table (`<root>/_lakehouse/runs`), appended when the run ends.
//!
//! Manual runs (`lakehouse run ...`) and scheduled runs are recorded alike.
//! Appends from several processes do not conflict (Delta append-only
//! commits are retried on a version race). A run killed with SIGKILL leaves
//! no row; one abandoned on SIGTERM or a lost lease leaves `abandoned`.

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::delta::{CommitMode, TableCommit};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::runs::{RUNS_FOLDER, RUNS_TABLE, SYSTEM_LAYER, register, runs_schema};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `lakehouse run ...`.
    Manual,
    /// A cron expression fired (or a missed run caught up at start).
    Cron,
    /// A job this one runs `after` succeeded.
    After,
    /// A continuous job (re)started.
    Continuous,
    /// `lakehouse run all --watch`.
    Watch,
}

impl Trigger {
    /// The name stored in the history.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Cron => "cron",
            Trigger::After => "after",
            Trigger::Continuous => "continuous",
            Trigger::Watch => "watch",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Finished without error.
    Succeeded,
    /// Failed (it may be retried as a new attempt).
    Failed,
    /// Stopped before it finished (shutdown grace elapsed, lease lost); its
    /// layer's tables are as of its last atomic commit.
    Abandoned,
}

impl Status {
    /// The name stored in the history.
    pub fn name(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Abandoned => "abandoned",
        }
    }
}

/// Rows a run read and wrote in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStat {
    /// `layer.table`.
    pub table: String,
    /// Rows read (bronze: Kafka records).
    pub rows_read: u64,
    /// Rows written (inserted + updated + deleted for silver).
    pub rows_written: u64,
    /// The version committed, if any.
    pub version: Option<i64>,
}

/// What a job did, as the history stores it.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Per table.
    pub tables: Vec<TableStat>,
    /// The upstream version read up to before the run (bronze: its own version).
    pub watermark_before: Option<i64>,
    /// The upstream version read up to after the run.
    pub watermark_after: Option<i64>,
}

/// One row of `_lakehouse_runs`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Unique id of the run (attempts of one trigger share its prefix).
    pub run_id: String,
    /// Job name (`bronze`, `silver`, `gold` for manual runs).
    pub job: String,
    /// What it ran.
    pub run: String,
    /// What started it.
    pub trigger: Trigger,
    /// The process that ran it.
    pub owner: String,
    /// 1-based attempt of this trigger.
    pub attempt: i32,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub ended_at: DateTime<Utc>,
    /// How it ended.
    pub status: Status,
    /// What it did (empty when it failed early).
    pub outcome: Outcome,
    /// The error, when it failed or was abandoned.
    pub error: Option<String>,
}

fn batch(records: &[RunRecord]) -> Result<RecordBatch> {
    let strings = |f: &dyn Fn(&RunRecord) -> String| {
        Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>())) as Arc<dyn Array>
    };
    let times = |f: &dyn Fn(&RunRecord) -> DateTime<Utc>| {
        Arc::new(
            TimestampMicrosecondArray::from(
                records
                    .iter()
                    .map(|r| f(r).timestamp_micros())
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ) as Arc<dyn Array>
    };
    let sum = |f: &dyn Fn(&TableStat) -> u64| {
        Arc::new(Int64Array::from(
            records
                .iter()
                .map(|r| r.outcome.tables.iter().map(f).sum::<u64>() as i64)
                .collect::<Vec<_>>(),
        )) as Arc<dyn Array>
    };
    let tables = records
        .iter()
        .map(|r| serde_json::to_string(&r.outcome.tables))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("{RUNS_TABLE}: {e}")))?;
    Ok(RecordBatch::try_new(
        runs_schema(),
        vec![
            strings(&|r| r.run_id.clone()),
            strings(&|r| r.job.clone()),
            strings(&|r| r.run.clone()),
            strings(&|r| r.trigger.name().to_string()),
            strings(&|r| r.owner.clone()),
            Arc::new(Int32Array::from(
                records.iter().map(|r| r.attempt).collect::<Vec<_>>(),
            )),
            times(&|r| r.started_at),
            times(&|r| r.ended_at),
            strings(&|r| r.status.name().to_string()),
            sum(&|t| t.rows_read),
            sum(&|t| t.rows_written),
            Arc::new(StringArray::from(tables)),
            Arc::new(Int64Array::from(
                records
                    .iter()
                    .map(|r| r.outcome.watermark_before)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                records
                    .iter()
                    .map(|r| r.outcome.watermark_after)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                records.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
            )),
        ],
    )?)
}

/// Appends `records` in one Delta commit (creating the table on first use).
pub async fn append(root: &StorageRoot, records: &[RunRecord]) -> Result<i64> {
    let (mut table, _) =
        crate::delta::ensure(root, SYSTEM_LAYER, RUNS_FOLDER, &runs_schema(), &[], false).await?;
    let adds = crate::delta::write(&table, RUNS_TABLE, &batch(records)?, usize::MAX).await?;
    // Appends never conflict with appends: a lost version race is retried.
    let version = TableCommit::new(CommitMode::Append)
        .with_adds(adds)
        .with_max_retries(100)
        .commit(&mut table, RUNS_TABLE)
        .await?;
    // One commit per run: without checkpoints, loading the history would
    // replay every commit ever made.
    if let Err(error) =
        crate::delta::checkpoint::checkpoint_if_due(&table, RUNS_TABLE, RUNS_CHECKPOINT_INTERVAL)
            .await
    {
        tracing::warn!(%error, "cannot checkpoint {RUNS_TABLE}; the next run retries");
    }
    Ok(version)
}

/// Commits of `_lakehouse_runs` between checkpoints.
const RUNS_CHECKPOINT_INTERVAL: u64 = 100;

/// Records a run, logging (not failing) when the history cannot be written:
/// the job's own tables are what matters.
pub async fn record(root: &StorageRoot, record: &RunRecord) {
    if let Err(error) = append(root, std::slice::from_ref(record)).await {
        tracing::warn!(job = %record.job, run_id = %record.run_id, %error, "cannot record the run in {RUNS_TABLE}");
    }
    // After the append, so that a scrape never counts a run the history
    // does not hold yet.
    super::telemetry::run_recorded(record);
}

/// The last successful run of each job and run kind: `(job, run, ended_at)`.
pub async fn last_success_ends(root: &StorageRoot) -> Result<Vec<(String, String, DateTime<Utc>)>> {
    let ctx = SessionContext::new();
    register(&ctx, root, "runs").await?;
    let batches = ctx
        .sql(
            "SELECT job, run, max(ended_at) AS ended FROM runs \
             WHERE status = 'succeeded' GROUP BY job, run",
        )
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let jobs = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let jobs = jobs.as_string::<i32>();
        let runs = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let runs = runs.as_string::<i32>();
        let ended = arrow::compute::cast(
            b.column(2),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let ended = ended.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            if let Some(t) = DateTime::from_timestamp_micros(ended.value(i)) {
                out.push((jobs.value(i).to_string(), runs.value(i).to_string(), t));
            }
        }
    }
    Ok(out)
}

/// When the last successful run of each job started.
pub async fn last_successes(
    root: &StorageRoot,
) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>> {
    let ctx = SessionContext::new();
    register(&ctx, root, "runs").await?;
    let batches = ctx
        .sql("SELECT job, max(started_at) AS started FROM runs WHERE status = 'succeeded' GROUP BY job")
        .await?
        .collect()
        .await?;
    let mut out = std::collections::BTreeMap::new();
    for b in &batches {
        // Delta scans may return view types: normalise before reading.
        let jobs = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let jobs = jobs.as_string::<i32>();
        let started = arrow::compute::cast(
            b.column(1),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let started = started.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            if let Some(t) = DateTime::from_timestamp_micros(started.value(i)) {
                out.insert(jobs.value(i).to_string(), t);
            }
        }
    }
    Ok(out)
}
