//! Gold: aggregated marts over silver, written as Delta tables and published
//! to Postgres for Grafana.
//!
//! Each mart is a spec (`layers/gold/<mart>.toml`, [`spec`]) and one SQL
//! `SELECT` (`sql/gold/<mart>.sql`) over the tables of the [`catalog`]
//! (bronze, silver, the system tables). A run ([`run`]) opens every table
//! once, so all marts see the same silver versions, builds each mart
//! ([`build`]: incremental by date partition when the spec allows, atomic),
//! then publishes the marts whose Delta version Postgres does not hold yet
//! ([`crate::publish`]). Marts reading the system tables run last, after the
//! catalog is rebuilt, so pipeline health includes this run's commits.
//! [`adhoc`] is `lakehouse query`.

pub mod adhoc;
pub mod build;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod spec;

use std::time::{Duration, Instant};

pub use build::{MartRun, Refresh};
pub use catalog::Catalog;
pub use config::GoldConfig;
pub use spec::{MartSpec, Marts};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::publish::{self, PublishOutcome};
use crate::silver::{Pipeline, session};
use crate::storage::StorageRoot;

/// Options of a gold run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild these marts from scratch (`Some(empty)`: every mart).
    pub full_refresh: Option<Vec<String>>,
    /// Only these marts (empty: all).
    pub marts: Vec<String>,
    /// Skip publishing even when `[postgres] url` is set.
    pub no_publish: bool,
}

/// What a gold run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Per mart, in run order.
    pub marts: Vec<MartRun>,
    /// Per published mart (empty when publishing is off).
    pub published: Vec<PublishOutcome>,
    /// Build time of all marts.
    pub build_elapsed: Duration,
    /// Publish time of all marts.
    pub publish_elapsed: Duration,
}

impl RunSummary {
    /// Marts whose publish failed after its retries.
    pub fn failed_publishes(&self) -> Vec<&PublishOutcome> {
        self.published
            .iter()
            .filter(|p| p.error.is_some())
            .collect()
    }
}

/// Loads the silver pipeline and the marts of `config`.
pub fn load_layers(config: &Config) -> Result<(Pipeline, Marts)> {
    let pipeline = Pipeline::load(config.silver_specs(), &config.silver.sql_dir)?;
    let marts = if config.gold.layers_dir.exists() {
        Marts::load(config.gold_specs(), &config.gold.sql_dir)?
    } else {
        Marts::default()
    };
    Ok((pipeline, marts))
}

/// Runs the gold layer: the entry point of `lakehouse run gold`.
pub async fn run(config: &Config, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let (pipeline, marts) = load_layers(config)?;
    for name in options
        .marts
        .iter()
        .chain(options.full_refresh.iter().flatten())
    {
        if marts.get(name).is_none() {
            return Err(Error::Config {
                file: config.gold.layers_dir.clone(),
                message: format!("there is no gold mart `{name}` (no {name}.toml)"),
            });
        }
    }
    let root = StorageRoot::from_config(&config.storage)?;
    let ctx = session::new_session(&config.gold.session_config(&config.silver))?;
    root.register_object_store(&ctx)?;
    let mut catalog = Catalog::open(&root, &pipeline, &marts).await?;
    // The system tables are built once, before the marts that read them.
    catalog.register_tables(&ctx).await?;
    let selected: Vec<&MartSpec> = marts
        .marts
        .iter()
        .filter(|m| options.marts.is_empty() || options.marts.contains(&m.name))
        .collect();
    // Marts over the system tables go last, so they see this run's commits.
    let reads_system = |m: &MartSpec| catalog::SYSTEM_TABLES.iter().any(|t| m.sql.contains(t));
    let (late, early): (Vec<&MartSpec>, Vec<&MartSpec>) =
        selected.into_iter().partition(|m| reads_system(m));
    let mut summary = RunSummary::default();
    for (i, spec) in early.iter().chain(late.iter()).enumerate() {
        if i == early.len() && !late.is_empty() {
            catalog.register_system(&ctx).await?;
        }
        let full = options
            .full_refresh
            .as_ref()
            .is_some_and(|f| f.is_empty() || f.contains(&spec.name));
        let run = build::build_mart(&ctx, &root, &catalog, &config.gold, spec, full).await?;
        tracing::info!(mart = %run.mart, refresh = ?run.refresh, version = ?run.version, rows = run.rows, elapsed_ms = run.elapsed.as_millis() as u64, "gold mart done");
        if run.version.is_some() {
            catalog.refresh(&root, &spec.name).await?;
            catalog.register_one(&ctx, &spec.name).await?;
            // Later system-table marts see this commit too.
            if i >= early.len() && i + 1 < early.len() + late.len() {
                catalog.register_system(&ctx).await?;
            }
        }
        summary.marts.push(run);
    }
    // Checkpoints every `[maintenance] checkpoint_interval` commits.
    crate::maintenance::checkpoint::checkpoint_tables(
        &root,
        catalog::LAYER,
        summary
            .marts
            .iter()
            .filter_map(|m| m.version.map(|v| (m.mart.clone(), v)))
            .collect(),
        config.maintenance.checkpoint_interval,
    )
    .await?;
    summary.build_elapsed = started.elapsed();
    if config.gold.publish && !options.no_publish && config.postgres.url.is_some() {
        let started = Instant::now();
        let publishable: Vec<&MartSpec> = early
            .iter()
            .chain(late.iter())
            .copied()
            .filter(|m| m.publish)
            .collect();
        summary.published =
            publish::publish_marts(&config.postgres, &ctx, &catalog, &publishable).await?;
        summary.publish_elapsed = started.elapsed();
    }
    Ok(summary)
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for m in &self.marts {
            let what = build::describe(&m.refresh);
            match m.version {
                Some(v) => writeln!(
                    f,
                    "gold {}: {what}, version {v}, {} rows written, {} files removed, {} added, {:.2}s",
                    m.mart,
                    m.rows,
                    m.files_removed,
                    m.files_added,
                    m.elapsed.as_secs_f64()
                )?,
                None => writeln!(f, "gold {}: {what}", m.mart)?,
            }
        }
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
