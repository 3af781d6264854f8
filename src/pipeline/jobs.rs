//! One run of a job kind: calls the layer and turns its summary into what
//! the run history stores. Shared by `lakehouse run` and the scheduler.

use chrono::Utc;

use super::history::{self, Outcome, RunRecord, Status, TableStat, Trigger};
use crate::bronze::{self, BronzeSource, StopCondition};
use crate::config::Config;
use crate::config::schedule::JobKind;
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::bronze::{DEAD_LETTERS_TABLE, EVENTS_TABLE, LAYER as BRONZE_LAYER};
use crate::{gold, maintenance, silver};

/// What a layer's run returned.
#[derive(Debug, Clone)]
pub enum LayerSummary {
    /// Bronze ingestion, with the events table's version before the run.
    Bronze(bronze::RunSummary, Option<i64>),
    /// Silver apply.
    Silver(silver::RunSummary),
    /// Gold marts.
    Gold(gold::RunSummary),
    /// `optimize` of every table.
    Optimize(Vec<maintenance::OptimizeReport>),
    /// `vacuum` of every table.
    Vacuum(Vec<maintenance::VacuumReport>),
}

impl LayerSummary {
    /// Per-table rows and the watermarks, for the run history.
    pub fn outcome(&self) -> Outcome {
        match self {
            LayerSummary::Bronze(s, before) => Outcome {
                tables: vec![
                    TableStat {
                        table: format!("{BRONZE_LAYER}.{EVENTS_TABLE}"),
                        rows_read: s.counts.records,
                        rows_written: s.counts.rows,
                        version: s.events_version,
                    },
                    TableStat {
                        table: format!("{BRONZE_LAYER}.{DEAD_LETTERS_TABLE}"),
                        rows_read: 0,
                        rows_written: s.counts.dead_letters,
                        version: None,
                    },
                ],
                watermark_before: *before,
                watermark_after: s.events_version.or(*before),
            },
            LayerSummary::Silver(s) => Outcome {
                tables: s
                    .tables
                    .iter()
                    .map(|t| TableStat {
                        table: format!("silver.{}", t.table),
                        rows_read: t.rows_in,
                        rows_written: t.counts.inserted + t.counts.updated + t.counts.deleted,
                        version: t.version,
                    })
                    .collect(),
                // The oldest bronze version any table had read up to.
                watermark_before: s.tables.iter().filter_map(|t| t.bronze_after).min(),
                watermark_after: s.bronze_version,
            },
            LayerSummary::Gold(s) => Outcome {
                tables: s
                    .marts
                    .iter()
                    .map(|m| TableStat {
                        table: format!("gold.{}", m.mart),
                        rows_read: 0,
                        rows_written: m.rows,
                        version: m.version,
                    })
                    .collect(),
                // Marts keep one watermark per input (see lakehouse_watermarks).
                watermark_before: None,
                watermark_after: None,
            },
            LayerSummary::Optimize(reports) => maintenance_outcome(
                reports
                    .iter()
                    .filter(|r| !r.missing)
                    .map(|r| (r.table.clone(), r.version)),
            ),
            LayerSummary::Vacuum(reports) => maintenance_outcome(
                reports
                    .iter()
                    .filter(|r| !r.missing)
                    .map(|r| (r.table.clone(), None)),
            ),
        }
    }

    /// An error the run ended with although the layer returned a summary
    /// (gold marts that could not be published).
    pub fn failure(&self) -> Option<String> {
        match self {
            LayerSummary::Gold(s) if !s.failed_publishes().is_empty() => Some(format!(
                "{} mart(s) could not be published: {}",
                s.failed_publishes().len(),
                s.failed_publishes()
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            _ => None,
        }
    }
}

/// The history's view of a maintenance run: the tables it worked on and
/// the version each reached; maintenance moves no rows.
fn maintenance_outcome(tables: impl Iterator<Item = (String, Option<i64>)>) -> Outcome {
    Outcome {
        tables: tables
            .map(|(table, version)| TableStat {
                table,
                rows_read: 0,
                rows_written: 0,
                version,
            })
            .collect(),
        watermark_before: None,
        watermark_after: None,
    }
}

impl std::fmt::Display for LayerSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSummary::Bronze(s, _) => writeln!(
                f,
                "bronze: {} records ({} rows, {} dead letters, {} non-row, {} already committed) in {:.2}s, {} batches, table version {}",
                s.counts.records,
                s.counts.rows,
                s.counts.dead_letters,
                s.counts.skipped,
                s.already_committed,
                s.elapsed.as_secs_f64(),
                s.batches,
                s.events_version
                    .map_or("unchanged".to_string(), |v| v.to_string()),
            ),
            LayerSummary::Silver(s) => write!(f, "{s}"),
            LayerSummary::Gold(s) => write!(f, "{s}"),
            LayerSummary::Optimize(reports) => {
                for report in reports {
                    writeln!(f, "{report}")?;
                }
                Ok(())
            }
            LayerSummary::Vacuum(reports) => {
                for report in reports {
                    write!(f, "{report}")?;
                }
                Ok(())
            }
        }
    }
}

/// How a scheduled bronze job consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BronzeMode {
    /// Until shutdown.
    Continuous,
    /// Until caught up with the high watermarks seen at start.
    UntilIdle,
}

/// Runs `kind` with its default options (what the scheduler runs).
pub async fn execute(
    config: &Config,
    kind: JobKind,
    bronze_mode: BronzeMode,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<LayerSummary> {
    match kind {
        JobKind::Bronze => {
            let stop = StopCondition {
                until_idle: bronze_mode == BronzeMode::UntilIdle,
                max_records: None,
            };
            run_bronze(config, BronzeSource::Kafka, stop, shutdown).await
        }
        JobKind::Silver => Ok(LayerSummary::Silver(
            silver::run(config, &silver::RunOptions::default()).await?,
        )),
        JobKind::Gold => Ok(LayerSummary::Gold(
            gold::run(config, &gold::RunOptions::default()).await?,
        )),
        JobKind::Optimize => Ok(LayerSummary::Optimize(
            maintenance::optimize(config, &maintenance::Selection::default()).await?,
        )),
        // The configured retention, never forced: a scheduled vacuum below
        // the safe minimum fails (and is reported) instead of deleting files
        // a lagging reader still needs.
        JobKind::Vacuum => Ok(LayerSummary::Vacuum(
            maintenance::vacuum(config, &maintenance::VacuumOptions::default()).await?,
        )),
    }
}

/// Bronze ingestion, noting the events table's version before it.
pub async fn run_bronze(
    config: &Config,
    source: BronzeSource,
    stop: StopCondition,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<LayerSummary> {
    let root = StorageRoot::from_config(&config.storage)?;
    let before = root
        .open_table(BRONZE_LAYER, EVENTS_TABLE)
        .await?
        .version()
        .map(|v| v as i64);
    let summary = bronze::run(config, source, stop, shutdown).await?;
    Ok(LayerSummary::Bronze(summary, before))
}

/// Builds the history row of a finished run.
pub fn record_of(
    job: &str,
    kind: JobKind,
    trigger: Trigger,
    attempt: u32,
    started_at: chrono::DateTime<Utc>,
    owner: &str,
    result: &std::result::Result<LayerSummary, (Status, String)>,
) -> RunRecord {
    let (status, outcome, error) = match result {
        Ok(summary) => match summary.failure() {
            Some(e) => (Status::Failed, summary.outcome(), Some(e)),
            None => (Status::Succeeded, summary.outcome(), None),
        },
        Err((status, e)) => (*status, Outcome::default(), Some(e.clone())),
    };
    RunRecord {
        run_id: uuid::Uuid::new_v4().to_string(),
        job: job.to_string(),
        run: kind.name().to_string(),
        trigger,
        owner: owner.to_string(),
        attempt: attempt as i32,
        started_at,
        ended_at: Utc::now(),
        status,
        outcome,
        error,
    }
}

/// Runs `run` and records it in the history with `trigger` (a manual
/// `lakehouse run <layer>`); returns the layer's result unchanged.
pub async fn recorded<F>(
    config: &Config,
    kind: JobKind,
    trigger: Trigger,
    run: F,
) -> Result<LayerSummary>
where
    F: std::future::Future<Output = Result<LayerSummary>>,
{
    recorded_as(config, kind, trigger, run, LayerSummary::clone).await
}

/// Runs `run` (a layer's own result type) and records it in the history
/// with `trigger`, seen through `summary`; returns the result unchanged.
pub async fn recorded_as<T, F>(
    config: &Config,
    kind: JobKind,
    trigger: Trigger,
    run: F,
    summary: impl Fn(&T) -> LayerSummary,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let started_at = Utc::now();
    let result = run.await;
    let for_history = match &result {
        Ok(value) => Ok(summary(value)),
        Err(e) => Err(Error::Other(e.to_string())),
    };
    record_result(config, kind, trigger, started_at, &for_history).await?;
    result
}

/// Records a finished run of `kind` that started at `started_at` (a
/// failure with its error text). Writing the history is best effort: a
/// failure to write it is logged, never the run's error.
pub async fn record_result(
    config: &Config,
    kind: JobKind,
    trigger: Trigger,
    started_at: chrono::DateTime<Utc>,
    result: &Result<LayerSummary>,
) -> Result<()> {
    let root = StorageRoot::from_config(&config.storage)?;
    let for_history = match result {
        Ok(summary) => Ok(summary.clone()),
        Err(e) => Err((Status::Failed, e.to_string())),
    };
    let record = record_of(
        kind.name(),
        kind,
        trigger,
        1,
        started_at,
        &crate::storage::lease::owner_id(),
        &for_history,
    );
    history::record(&root, &record).await;
    Ok(())
}
