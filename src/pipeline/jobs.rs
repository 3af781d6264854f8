//! One run of a job kind: loads the specs, calls the layer with its own
//! configuration and the storage root, and turns its summary into what the
//! run history stores. Shared by `lakehouse run`, `run all` and the scheduler.

use chrono::Utc;

use super::history::{self, Outcome, RunRecord, Status, TableStat, Trigger};
use crate::bronze::{self, BronzeSource, StopCondition};
use crate::config::Config;
use crate::config::schedule::JobKind;
use crate::delta::cluster::Engine;
use crate::error::{Error, Result};
use crate::publish::{self, PublishOutcome};
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
    /// Gold marts, and their publish.
    Gold(GoldSummary),
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
            self::silver(config, &silver::RunOptions::default()).await?,
        )),
        JobKind::Gold => Ok(LayerSummary::Gold(
            self::gold(config, &GoldOptions::default()).await?,
        )),
        JobKind::Optimize => Ok(LayerSummary::Optimize(
            optimize(config, &maintenance::Selection::default()).await?,
        )),
        // The configured retention, never forced: a scheduled vacuum below
        // the safe minimum fails (and is reported) instead of deleting files
        // a lagging reader still needs.
        JobKind::Vacuum => Ok(LayerSummary::Vacuum(
            vacuum(config, &maintenance::VacuumOptions::default()).await?,
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
    let summary = self::bronze(config, source, stop, shutdown).await?;
    Ok(LayerSummary::Bronze(summary, before))
}

/// Runs bronze with `config`'s `[kafka]` and `[bronze]`, with maintenance's
/// auto-compaction and checkpoints after its commits.
pub async fn bronze(
    config: &Config,
    source: BronzeSource,
    stop: StopCondition,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<bronze::RunSummary> {
    let root = StorageRoot::from_config(&config.storage)?;
    let origin = config.origin();
    let settings = bronze::Settings {
        kafka: &config.kafka,
        bronze: &config.bronze,
        origin: &origin,
    };
    let upkeep = maintenance::compact::BronzeUpkeep::new(config.maintenance.clone(), root.clone());
    bronze::run(
        settings,
        &root,
        Some(Box::new(upkeep)),
        source,
        stop,
        shutdown,
    )
    .await
}

/// `lakehouse dead-letters replay`: decodes the selected dead letters of
/// `config`'s lake again, with its current `[bronze]` settings, and appends
/// those that decode to `bronze_events`.
pub async fn replay_dead_letters(
    config: &Config,
    options: &bronze::replay::ReplayOptions,
) -> Result<bronze::replay::ReplaySummary> {
    let root = StorageRoot::from_config(&config.storage)?;
    let origin = config.origin();
    let settings = bronze::Settings {
        kafka: &config.kafka,
        bronze: &config.bronze,
        origin: &origin,
    };
    bronze::replay::replay(settings, &root, options).await
}

impl bronze::CommitUpkeep for maintenance::compact::BronzeUpkeep {
    fn after_commit<'a>(
        &'a mut self,
        table: &'a deltalake::DeltaTable,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Ok(
                maintenance::compact::BronzeUpkeep::after_commit(self, table, name)
                    .await?
                    .is_some(),
            )
        })
    }

    fn compactions(&self) -> u64 {
        self.compactions
    }
}

/// The silver table specs of `config`.
pub fn silver_specs(config: &Config) -> Result<silver::Pipeline> {
    silver::Pipeline::load(config.silver_specs(), &config.silver.sql_dir)
}

/// The gold mart specs of `config` (none when the default folder is missing).
pub fn gold_specs(config: &Config) -> Result<gold::Marts> {
    if config.gold.layers_dir.exists() {
        gold::Marts::load(config.gold_specs(), &config.gold.sql_dir)
    } else {
        Ok(gold::Marts::default())
    }
}

/// The names of the silver tables `config`'s specs declare: what gold reads.
fn silver_table_names(config: &Config) -> Result<Vec<String>> {
    Ok(silver_specs(config)?
        .tables
        .into_iter()
        .map(|spec| spec.name)
        .collect())
}

/// Runs silver with `config`'s specs and `[silver]`.
pub async fn silver(config: &Config, options: &silver::RunOptions) -> Result<silver::RunSummary> {
    let pipeline = silver_specs(config)?;
    let root = StorageRoot::from_config(&config.storage)?;
    silver::run(
        &pipeline,
        &config.silver,
        &root,
        config.maintenance.checkpoint_interval,
        options,
        &Engine::from_config(&config.engine)?,
    )
    .await
}

/// Options of a gold job.
#[derive(Debug, Clone, Default)]
pub struct GoldOptions {
    /// Rebuild these marts from scratch (`Some(empty)`: every mart).
    pub full_refresh: Option<Vec<String>>,
    /// Only these marts (empty: all).
    pub marts: Vec<String>,
    /// Skip publishing even when `[postgres] url` is set.
    pub no_publish: bool,
}

/// What a gold job did: the marts built, then published.
#[derive(Debug, Clone, Default)]
pub struct GoldSummary {
    /// Per mart, in run order.
    pub marts: Vec<gold::MartRun>,
    /// Per published mart (empty when publishing is off).
    pub published: Vec<PublishOutcome>,
    /// Build time of all marts.
    pub build_elapsed: std::time::Duration,
    /// Publish time of all marts.
    pub publish_elapsed: std::time::Duration,
}

impl GoldSummary {
    /// Marts whose publish failed after its retries.
    pub fn failed_publishes(&self) -> Vec<&PublishOutcome> {
        self.published
            .iter()
            .filter(|p| p.error.is_some())
            .collect()
    }
}

impl std::fmt::Display for GoldSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = gold::RunSummary {
            marts: self.marts.clone(),
            build_elapsed: self.build_elapsed,
        };
        write!(f, "{built}")?;
        for p in &self.published {
            writeln!(f, "{p}")?;
        }
        writeln!(
            f,
            "gold: built in {:.2}s, published in {:.2}s",
            self.build_elapsed.as_secs_f64(),
            self.publish_elapsed.as_secs_f64()
        )
    }
}

/// Runs gold with `config`'s specs and `[gold]`, then publishes the marts
/// whose Delta version Postgres does not hold yet (when `[postgres] url` is
/// set, `[gold] publish` is on and `options` do not say otherwise).
pub async fn gold(config: &Config, options: &GoldOptions) -> Result<GoldSummary> {
    let marts = gold_specs(config)?;
    let silver_tables = silver_table_names(config)?;
    let root = StorageRoot::from_config(&config.storage)?;
    let run = gold::run(
        &marts,
        &silver_tables,
        &config.gold,
        &root,
        config.maintenance.checkpoint_interval,
        &gold::RunOptions {
            full_refresh: options.full_refresh.clone(),
            marts: options.marts.clone(),
        },
        &Engine::from_config(&config.engine)?,
    )
    .await?;
    let mut summary = GoldSummary {
        marts: run.summary.marts,
        build_elapsed: run.summary.build_elapsed,
        ..GoldSummary::default()
    };
    if config.gold.publish && !options.no_publish && config.postgres.url.is_some() {
        let started = std::time::Instant::now();
        let publishable: Vec<publish::PublishTable<'_>> = run
            .order
            .iter()
            .filter(|m| m.publish)
            .filter_map(|m| {
                let entry = run.catalog.get(&m.name)?;
                Some(publish::PublishTable {
                    name: &m.name,
                    file: &m.file,
                    keys: &m.keys,
                    indexes: &m.indexes,
                    description: m.description.as_deref(),
                    table: &entry.table,
                })
            })
            .collect();
        summary.published =
            publish::publish_marts(&config.postgres, &run.session, &publishable).await?;
        summary.publish_elapsed = started.elapsed();
    }
    Ok(summary)
}

/// A DataFusion session with every table of `config`'s lake registered
/// (`lakehouse query`, `lakehouse status`).
pub async fn query_session(config: &Config) -> Result<datafusion::prelude::SessionContext> {
    let marts = gold_specs(config)?;
    let silver_tables = silver_table_names(config)?;
    let root = StorageRoot::from_config(&config.storage)?;
    gold::adhoc::session(&marts, &silver_tables, &config.gold, &root).await
}

/// The tables of `config` maintenance works on (bronze's two, silver's and
/// gold's specs, the run history), narrowed by `selection`.
pub fn maintenance_targets(
    config: &Config,
    selection: &maintenance::Selection,
) -> Result<Vec<maintenance::TableTarget>> {
    use crate::tables::runs::{RUNS_FOLDER, SYSTEM_LAYER};
    let mut out = Vec::new();
    if selection.wants(BRONZE_LAYER)? {
        out.push(maintenance::TableTarget {
            layer: BRONZE_LAYER,
            name: EVENTS_TABLE.to_string(),
            zorder: config.bronze.zorder.clone(),
            declared_in: config.origin(),
        });
        out.push(maintenance::TableTarget {
            layer: BRONZE_LAYER,
            name: DEAD_LETTERS_TABLE.to_string(),
            zorder: Vec::new(),
            declared_in: config.origin(),
        });
    }
    if selection.wants(crate::tables::silver::LAYER)? && config.silver.layers_dir.exists() {
        out.extend(
            silver_specs(config)?
                .tables
                .iter()
                .map(|spec| maintenance::TableTarget {
                    layer: crate::tables::silver::LAYER,
                    name: spec.name.clone(),
                    zorder: spec.zorder.clone(),
                    declared_in: spec.file.clone(),
                }),
        );
    }
    if selection.wants(crate::tables::gold::LAYER)? && config.gold.layers_dir.exists() {
        out.extend(
            gold_specs(config)?
                .marts
                .iter()
                .map(|spec| maintenance::TableTarget {
                    layer: crate::tables::gold::LAYER,
                    name: spec.name.clone(),
                    zorder: spec.zorder.clone(),
                    declared_in: spec.file.clone(),
                }),
        );
    }
    // One small file per recorded run: compacted like any other table.
    if selection.wants(SYSTEM_LAYER)? {
        out.push(maintenance::TableTarget {
            layer: SYSTEM_LAYER,
            name: RUNS_FOLDER.to_string(),
            zorder: Vec::new(),
            declared_in: config.origin(),
        });
    }
    selection.narrow(out)
}

/// `lakehouse optimize`: compacts the selected tables of `config`.
pub async fn optimize(
    config: &Config,
    selection: &maintenance::Selection,
) -> Result<Vec<maintenance::OptimizeReport>> {
    let targets = maintenance_targets(config, selection)?;
    let root = StorageRoot::from_config(&config.storage)?;
    maintenance::optimize(&config.maintenance, &root, &targets).await
}

/// `lakehouse vacuum`: deletes old files of the selected tables of `config`.
pub async fn vacuum(
    config: &Config,
    options: &maintenance::VacuumOptions,
) -> Result<Vec<maintenance::VacuumReport>> {
    let targets = maintenance_targets(config, &options.selection)?;
    let root = StorageRoot::from_config(&config.storage)?;
    maintenance::vacuum(&config.maintenance, &root, &targets, options).await
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
        Err(e) => Err(Error::Condition(e.to_string())),
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
