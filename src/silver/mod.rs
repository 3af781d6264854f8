//! Silver: bronze change events applied into a Kimball star schema.
//!
//! Each table is a spec (`layers/silver/<table>.toml`, [`spec`]) and a SQL
//! file (`sql/silver/<table>.sql`) that shapes one change at a time
//! ([`plan`]). A run ([`run`]) processes the tables in dependency order; per
//! table it reads only the bronze files committed after the watermark stored
//! in the table's own Delta log ([`changes`]), classifies each change
//! ([`classify`]), applies the changes with CDC semantics ([`apply`]) to
//! the files holding the affected keys ([`crate::delta`]), and commits the
//! rewritten files with the new watermark in one Delta commit ([`job`]).
//! Deletes are remembered in a side table and expectation failures go to a
//! quarantine table ([`side`]). Facts resolve dimension keys as of their
//! event time ([`lookups`]); the date dimension is generated ([`date_dim`]).

pub mod apply;
pub mod changes;
pub mod check;
pub mod classify;
pub mod config;
pub mod date_dim;
pub mod job;
pub mod keys;
pub mod layout;
pub mod lookups;
pub mod merge;
pub mod plan;
pub mod side;
pub mod spec;
pub mod telemetry;

use std::time::{Duration, Instant};

pub use config::SilverConfig;
pub use job::TableRun;
pub use spec::{Kind, Pipeline, TableSpec};

use crate::delta::cluster::Engine;
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::bronze::{EVENTS_TABLE, LAYER as BRONZE_LAYER};
pub use crate::tables::silver::{LAYER, STATE_LAYER, watermark_app_id};

/// [`crate::delta::ensure`] for a table a silver spec (`spec_file`) defines:
/// a changed schema becomes a hint to rebuild the table.
pub(crate) async fn ensure_table(
    root: &StorageRoot,
    layer: &str,
    name: &str,
    schema: &arrow::datatypes::SchemaRef,
    partition_by: &[String],
    replace: bool,
    spec_file: &std::path::Path,
) -> Result<(deltalake::DeltaTable, bool)> {
    crate::delta::ensure(root, layer, name, schema, partition_by, replace)
        .await
        .map_err(|e| match e {
            Error::SchemaChanged { table } => Error::Config {
                file: spec_file.to_path_buf(),
                message: format!(
                    "the columns or partitioning of silver table `{table}` changed since it was built; \
                     rebuild it with `lakehouse run silver --full-refresh {table}`"
                ),
            },
            other => other,
        })
}

/// Which tables a run rebuilds from all of bronze.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FullRefresh {
    /// Incremental run.
    #[default]
    No,
    /// Every table.
    All,
    /// One table.
    Table(String),
}

impl FullRefresh {
    /// From the CLI's `--full-refresh [TABLE]`.
    pub fn from_flag(flag: Option<Option<String>>) -> Self {
        match flag {
            None => FullRefresh::No,
            Some(None) => FullRefresh::All,
            Some(Some(table)) => FullRefresh::Table(table),
        }
    }

    fn applies_to(&self, table: &str) -> bool {
        match self {
            FullRefresh::No => false,
            FullRefresh::All => true,
            FullRefresh::Table(t) => t == table,
        }
    }
}

/// Options of a silver run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Tables to rebuild from scratch.
    pub full_refresh: FullRefresh,
    /// Only these tables (empty: all).
    pub tables: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Per table, in run order.
    pub tables: Vec<TableRun>,
    /// The bronze version read up to.
    pub bronze_version: Option<i64>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs the silver tables of `pipeline` into `root` (the entry point of
/// `lakehouse run silver`), checkpointing each table every
/// `checkpoint_interval` commits.
pub async fn run(
    pipeline: &Pipeline,
    config: &SilverConfig,
    root: &StorageRoot,
    checkpoint_interval: u64,
    options: &RunOptions,
    engine: &Engine,
) -> Result<RunSummary> {
    let started = Instant::now();
    for table in options.tables.iter().chain(match &options.full_refresh {
        FullRefresh::Table(t) => Some(t),
        _ => None,
    }) {
        if pipeline.get(table).is_none() {
            return Err(Error::Config {
                file: config.layers_dir.clone(),
                message: format!("there is no silver table `{table}` (no {table}.toml)"),
            });
        }
    }
    let sessions = crate::delta::session::RunSessions::new(&config.session_limits(), engine)?;
    let ctx = sessions.work;
    root.register_object_store(&ctx)?;
    let bronze = root.open_table(BRONZE_LAYER, EVENTS_TABLE).await?;
    let bronze = bronze.version().is_some().then_some(bronze);
    let rc = job::RunContext {
        ctx: &ctx,
        scan: &sessions.scan,
        root,
        config,
        pipeline,
        bronze: bronze.as_ref(),
    };
    let mut summary = RunSummary {
        bronze_version: bronze.as_ref().and_then(crate::delta::version),
        ..Default::default()
    };
    for spec in &pipeline.tables {
        if !options.tables.is_empty() && !options.tables.contains(&spec.name) {
            continue;
        }
        let full = options.full_refresh.applies_to(&spec.name);
        let started = Instant::now();
        let run = match spec.kind {
            Kind::Date => date_dim::run_date(&rc, spec, full).await?,
            _ => job::run_table(&rc, spec, full).await?,
        };
        tracing::info!(
            table = %spec.name,
            version = ?run.version,
            rows_in = run.rows_in,
            inserted = run.counts.inserted,
            updated = run.counts.updated,
            deleted = run.counts.deleted,
            stale = run.counts.stale,
            repaired = run.repaired,
            quarantined = run.quarantined,
            files_removed = run.files_removed,
            files_added = run.files_added,
            deletion_vectors = run.deletion_vectors,
            elapsed_ms = started.elapsed().as_millis() as u64,
            lookup_splits = run.lookup_splits,
            setup_ms = run.phases.setup.as_millis() as u64,
            scan_ms = run.phases.scan.as_millis() as u64,
            lookups_ms = run.phases.lookups.as_millis() as u64,
            read_ms = run.phases.read.as_millis() as u64,
            apply_ms = run.phases.apply.as_millis() as u64,
            write_ms = run.phases.write.as_millis() as u64,
            commit_ms = run.phases.commit.as_millis() as u64,
            "silver table done"
        );
        telemetry::table_run(&run, started.elapsed());
        summary.tables.push(run);
    }
    // Checkpoints every `[maintenance] checkpoint_interval` commits.
    crate::delta::checkpoint::checkpoint_tables(
        root,
        LAYER,
        summary
            .tables
            .iter()
            .filter_map(|t| t.version.map(|v| (t.table.clone(), v)))
            .collect(),
        checkpoint_interval,
    )
    .await?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for t in &self.tables {
            match t.version {
                None => writeln!(f, "silver {}: nothing new", t.table)?,
                Some(version) => {
                    write!(
                        f,
                        "silver {}: version {version}, {} changes read, {} inserted, {} updated, {} deleted, {} versions closed, {} stale, {} repaired, {} quarantined",
                        t.table,
                        t.rows_in,
                        t.counts.inserted,
                        t.counts.updated,
                        t.counts.deleted,
                        t.counts.versions,
                        t.counts.stale,
                        t.repaired,
                        t.quarantined,
                    )?;
                    for (rule, action, failed) in &t.expectations {
                        write!(f, ", {rule} ({}): {failed}", action.name())?;
                    }
                    writeln!(f)?;
                }
            }
        }
        writeln!(
            f,
            "silver: bronze version {} in {:.2}s",
            self.bronze_version
                .map_or("none".to_string(), |v| v.to_string()),
            self.elapsed.as_secs_f64()
        )
    }
}
