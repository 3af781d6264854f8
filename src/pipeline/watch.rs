//! `lakehouse run all`: bronze, silver and gold in one process.
//!
//! Once ([`run_once`]): bronze `--until-idle`, then silver, then gold.
//!
//! Continuously ([`watch`], `--watch`): bronze consumes Kafka without end in
//! its own task while a loop polls the latest `bronze_events` version (one
//! listing of the Delta log, no table load) every `poll` interval. When bronze
//! has committed since silver last read it, a silver micro-batch runs, and
//! when that committed to any silver table, a gold micro-batch follows. So
//! gold trails bronze by one poll interval plus the two runs' time, and bronze
//! by its flush interval (`[bronze] flush_interval_ms`).
//!
//! SIGTERM/SIGINT: bronze commits what it has buffered and stops; a silver or
//! gold run in progress finishes (each commits atomically anyway), then the
//! loop ends. A failed micro-batch is logged and retried with backoff (up to
//! a minute) on the next poll; a bronze failure ends the run with its error.

use std::time::{Duration, Instant};

use tokio::sync::watch::Receiver;

use crate::bronze::{self, BronzeSource, StopCondition};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pipeline::jobs::{self, LayerSummary};
use crate::pipeline::{JobKind, Trigger};
use crate::retry::{Policy, Streak};
use crate::storage::StorageRoot;
use crate::tables::bronze::{EVENTS_TABLE, LAYER as BRONZE_LAYER};

/// The backoff after failed micro-batches: 1 s, doubling up to a minute,
/// for as long as they fail (a success starts it over).
const MICRO_BATCH_RETRY: Policy = Policy {
    attempts: None,
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
    factor: 2.0,
    jitter: false,
};

/// Options of `lakehouse run all`.
#[derive(Debug, Clone)]
pub struct AllOptions {
    /// Do not publish gold marts to Postgres.
    pub no_publish: bool,
    /// `--watch`: how often the bronze (then silver) version is polled.
    pub poll: Duration,
}

impl Default for AllOptions {
    fn default() -> Self {
        Self {
            no_publish: false,
            poll: Duration::from_secs(1),
        }
    }
}

/// What `run all` did.
#[derive(Debug, Default)]
pub struct AllSummary {
    /// The bronze run.
    pub bronze: bronze::RunSummary,
    /// Silver micro-batches run (1 without `--watch`).
    pub silver_runs: u64,
    /// Gold micro-batches run.
    pub gold_runs: u64,
    /// Micro-batches that failed (and were retried).
    pub failed_runs: u64,
    /// The last silver run.
    pub last_silver: Option<crate::silver::RunSummary>,
    /// The last gold run.
    pub last_gold: Option<jobs::GoldSummary>,
    /// Wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for AllSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bronze: {} records ({} rows, {} dead letters), {} batches, table version {}",
            self.bronze.counts.records,
            self.bronze.counts.rows,
            self.bronze.counts.dead_letters,
            self.bronze.batches,
            self.bronze
                .events_version
                .map_or("unchanged".to_string(), |v| v.to_string())
        )?;
        writeln!(
            f,
            "silver: {} run(s); gold: {} run(s); {} failed micro-batch(es); {:.1}s",
            self.silver_runs,
            self.gold_runs,
            self.failed_runs,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A silver run, recorded in `_lakehouse_runs` with `trigger`.
async fn silver_run(config: &Config, trigger: Trigger) -> Result<crate::silver::RunSummary> {
    let silver_options = crate::silver::RunOptions::default();
    let run = jobs::silver(config, &silver_options);
    jobs::recorded_as(config, JobKind::Silver, trigger, run, |s| {
        LayerSummary::Silver(s.clone())
    })
    .await
}

/// A gold run, recorded in `_lakehouse_runs` with `trigger` (unpublished
/// marts make it a failed run there).
async fn gold_run(
    config: &Config,
    options: &AllOptions,
    trigger: Trigger,
) -> Result<jobs::GoldSummary> {
    let gold_options = gold_options(options);
    let run = jobs::gold(config, &gold_options);
    jobs::recorded_as(config, JobKind::Gold, trigger, run, |s| {
        LayerSummary::Gold(s.clone())
    })
    .await
}

fn gold_options(options: &AllOptions) -> jobs::GoldOptions {
    jobs::GoldOptions {
        no_publish: options.no_publish,
        ..Default::default()
    }
}

/// `run all` without `--watch`: bronze until idle, then silver, then gold.
pub async fn run_once(
    config: &Config,
    options: &AllOptions,
    shutdown: Receiver<bool>,
) -> Result<AllSummary> {
    let started = Instant::now();
    let stop = StopCondition {
        until_idle: true,
        max_records: None,
    };
    let bronze = jobs::bronze(config, BronzeSource::Kafka, stop, shutdown.clone()).await?;
    let mut summary = AllSummary {
        bronze,
        ..Default::default()
    };
    if *shutdown.borrow() {
        summary.elapsed = started.elapsed();
        return Ok(summary);
    }
    summary.last_silver = Some(silver_run(config, Trigger::Manual).await?);
    summary.silver_runs = 1;
    let gold = gold_run(config, options, Trigger::Manual).await?;
    summary.gold_runs = 1;
    let failed = gold.failed_publishes().len();
    summary.last_gold = Some(gold);
    summary.elapsed = started.elapsed();
    if failed > 0 {
        return Err(Error::Condition(format!(
            "{failed} mart(s) could not be published; the next run retries"
        )));
    }
    Ok(summary)
}

/// The latest version of `bronze_events` (`None`: not created yet). Lists
/// the Delta log from the last known version on; loads nothing.
pub struct VersionProbe {
    root: StorageRoot,
    layer: &'static str,
    name: &'static str,
    table: Option<deltalake::DeltaTable>,
    last: Option<i64>,
}

impl VersionProbe {
    /// A probe of `layer/name`.
    pub fn new(root: StorageRoot, layer: &'static str, name: &'static str) -> Self {
        Self {
            root,
            layer,
            name,
            table: None,
            last: None,
        }
    }

    /// The latest committed version.
    pub async fn latest(&mut self) -> Result<Option<i64>> {
        let table = match &self.table {
            Some(table) => table,
            None => {
                let table = self.root.open_table(self.layer, self.name).await?;
                if table.version().is_none() {
                    return Ok(None);
                }
                self.last = crate::delta::version(&table);
                self.table.insert(table)
            }
        };
        let start = self.last.unwrap_or(0).max(0) as u64;
        let latest = table
            .log_store()
            .get_latest_version(start)
            .await
            .map_err(|e| Error::delta(self.name, e))?;
        self.last = Some(latest as i64);
        Ok(self.last)
    }
}

/// `run all --watch`: bronze continuously, silver and gold micro-batches on
/// new versions, until `shutdown`.
pub async fn watch(
    config: &Config,
    options: &AllOptions,
    mut shutdown: Receiver<bool>,
) -> Result<AllSummary> {
    let started = Instant::now();
    let root = StorageRoot::from_config(&config.storage)?;
    let bronze_config = config.clone();
    let bronze_shutdown = shutdown.clone();
    let mut bronze_task = tokio::spawn(async move {
        jobs::bronze(
            &bronze_config,
            BronzeSource::Kafka,
            StopCondition::default(),
            bronze_shutdown,
        )
        .await
    });
    let mut probe = VersionProbe::new(root, BRONZE_LAYER, EVENTS_TABLE);
    let mut summary = AllSummary::default();
    // The bronze version silver last caught up with; `None` runs silver and
    // gold once at start, catching up with what is already there.
    let mut silver_seen: Option<Option<i64>> = None;
    let mut gold_due = true;
    // Failed micro-batches in a row, and the wait before the next one
    // (`None`: none failed since the last success).
    let mut streak = Streak::new(MICRO_BATCH_RETRY);
    let mut backoff: Option<Duration> = None;
    let mut ticker = tokio::time::interval(options.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A dropped sender means no signal can come any more (not a shutdown).
    let mut signals_open = true;
    let bronze_result = loop {
        if *shutdown.borrow() {
            tracing::info!("shutdown requested; waiting for bronze to commit what it has buffered");
            break (&mut bronze_task).await;
        }
        tokio::select! {
            biased;
            changed = shutdown.changed(), if signals_open => {
                signals_open = changed.is_ok();
                continue;
            }
            result = &mut bronze_task => break result,
            _ = ticker.tick() => {}
        }
        if let Some(wait) = backoff {
            tokio::select! {
                changed = shutdown.changed(), if signals_open => {
                    signals_open = changed.is_ok();
                    continue;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let latest = match probe.latest().await {
            Ok(latest) => latest,
            Err(error) => {
                tracing::warn!(%error, "cannot read the bronze version; retrying");
                continue;
            }
        };
        let outcome = micro_batch(
            config,
            options,
            latest,
            &mut silver_seen,
            &mut gold_due,
            &mut summary,
        )
        .await;
        match outcome {
            Ok(()) => {
                streak.succeeded();
                backoff = None;
            }
            Err(error) => {
                summary.failed_runs += 1;
                let wait = streak.failed();
                backoff = Some(wait);
                tracing::error!(%error, retry_in = ?wait, "micro-batch failed; retrying");
            }
        }
    };
    summary.bronze =
        bronze_result.map_err(|e| Error::Internal(format!("the bronze task failed: {e}")))??;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Runs silver when bronze moved past `silver_seen`, then gold when silver
/// committed (or a gold run is still due from a failed attempt).
async fn micro_batch(
    config: &Config,
    options: &AllOptions,
    latest: Option<i64>,
    silver_seen: &mut Option<Option<i64>>,
    gold_due: &mut bool,
    summary: &mut AllSummary,
) -> Result<()> {
    if *silver_seen != Some(latest) {
        let run_started = Instant::now();
        let silver = silver_run(config, Trigger::Watch).await?;
        summary.silver_runs += 1;
        // Silver read up to the version it saw, which may be past `latest`.
        *silver_seen = Some(silver.bronze_version.max(latest));
        let committed = silver.tables.iter().filter(|t| t.version.is_some()).count();
        tracing::info!(
            bronze_version = ?silver.bronze_version,
            tables_committed = committed,
            elapsed_ms = run_started.elapsed().as_millis() as u64,
            "silver micro-batch"
        );
        *gold_due |= committed > 0;
        summary.last_silver = Some(silver);
    }
    if *gold_due {
        let run_started = Instant::now();
        let gold = gold_run(config, options, Trigger::Watch).await?;
        summary.gold_runs += 1;
        *gold_due = false;
        let failed = gold.failed_publishes().len();
        tracing::info!(
            marts_committed = gold.marts.iter().filter(|m| m.version.is_some()).count(),
            failed_publishes = failed,
            elapsed_ms = run_started.elapsed().as_millis() as u64,
            "gold micro-batch"
        );
        summary.last_gold = Some(gold);
        if failed > 0 {
            // The marts are built; only their Postgres copy is behind.
            *gold_due = true;
            return Err(Error::Condition(format!(
                "{failed} mart(s) could not be published"
            )));
        }
    }
    Ok(())
}
