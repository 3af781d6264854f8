//! Gold: aggregated marts over silver, written as Delta tables and published
//! to Postgres for Grafana.
//!
//! Each mart is a spec (`layers/gold/<mart>.toml`, [`spec`]) and one SQL
//! `SELECT` (`sql/gold/<mart>.sql`) over the tables of the [`catalog`]
//! (bronze, silver, the system tables). A run ([`run`]) opens every table
//! once, so all marts see the same silver versions, builds each mart
//! ([`build`]: incremental by date partition when the spec allows, atomic),
//! and hands the session and catalog back, so that the orchestration can
//! publish them ([`crate::publish`]). Marts run in dependency order
//! ([`order`]): a mart after the marts it reads, and marts reading the
//! system tables last, after the catalog is rebuilt, so pipeline health
//! includes this run's commits.
//! [`adhoc`] is `lakehouse query`; [`bench`] is `lakehouse bench gold`.

pub mod adhoc;
pub mod build;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod order;
pub mod spec;
pub mod telemetry;

use std::time::{Duration, Instant};

pub use build::{MartRun, Refresh};
pub use catalog::Catalog;
pub use config::GoldConfig;
pub use spec::{MartSpec, Marts};

use datafusion::prelude::SessionContext;

use crate::delta::cluster::Engine;
use crate::delta::session;
use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// Options of a gold run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild these marts from scratch (`Some(empty)`: every mart).
    pub full_refresh: Option<Vec<String>>,
    /// Only these marts (empty: all).
    pub marts: Vec<String>,
}

/// What a gold run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Per mart, in run order.
    pub marts: Vec<MartRun>,
    /// Build time of all marts.
    pub build_elapsed: Duration,
}

/// A finished gold run: its summary, and what publishing the marts needs
/// (the session and catalog the marts were built in, as of their commits).
pub struct GoldRun {
    /// What the run did.
    pub summary: RunSummary,
    /// The session the marts were built in (every table registered).
    pub session: SessionContext,
    /// The tables, reloaded after each mart's commit.
    pub catalog: Catalog,
    /// The marts built, in run order.
    pub order: Vec<MartSpec>,
}

/// Runs the `marts` over the lake under `root` (the entry point of
/// `lakehouse run gold`). `silver_tables` are the silver tables the silver
/// specs declare (with their quarantines, the inputs marts may read); each
/// mart is checkpointed every `checkpoint_interval` commits.
pub async fn run(
    marts: &Marts,
    silver_tables: &[String],
    config: &GoldConfig,
    root: &StorageRoot,
    checkpoint_interval: u64,
    options: &RunOptions,
    engine: &Engine,
) -> Result<GoldRun> {
    let started = Instant::now();
    for name in options
        .marts
        .iter()
        .chain(options.full_refresh.iter().flatten())
    {
        if marts.get(name).is_none() {
            return Err(Error::Config {
                file: config.layers_dir.clone(),
                message: format!("there is no gold mart `{name}` (no {name}.toml)"),
            });
        }
    }
    let ctx = session::new_session_on(&config.session_limits(), engine)?;
    root.register_object_store(&ctx)?;
    let mut catalog = Catalog::open(root, silver_tables, marts).await?;
    // The system tables are built once, before the marts that read them.
    catalog.register_tables(&ctx).await?;
    let selected: Vec<&MartSpec> = marts
        .marts
        .iter()
        .filter(|m| options.marts.is_empty() || options.marts.contains(&m.name))
        .collect();
    // Each mart after the marts it reads; marts over the system tables go
    // last, so they see this run's commits.
    let order::RunOrder {
        marts: ordered,
        early,
        ..
    } = order::run_order(&ctx, &selected)?;
    let mut summary = RunSummary::default();
    for (i, spec) in ordered.iter().enumerate() {
        if i == early {
            catalog.register_system(&ctx).await?;
        }
        let full = options
            .full_refresh
            .as_ref()
            .is_some_and(|f| f.is_empty() || f.contains(&spec.name));
        let run = build::build_mart(&ctx, root, &catalog, config, spec, full).await?;
        tracing::info!(mart = %run.mart, refresh = ?run.refresh, version = ?run.version, rows = run.rows, elapsed_ms = run.elapsed.as_millis() as u64, "gold mart done");
        telemetry::mart_run(&run);
        if run.version.is_some() {
            catalog.refresh(root, &spec.name).await?;
            catalog.register_one(&ctx, &spec.name).await?;
            // Later system-table marts see this commit too.
            if i >= early && i + 1 < ordered.len() {
                catalog.register_system(&ctx).await?;
            }
        }
        summary.marts.push(run);
    }
    // Checkpoints every `[maintenance] checkpoint_interval` commits.
    crate::delta::checkpoint::checkpoint_tables(
        root,
        catalog::LAYER,
        summary
            .marts
            .iter()
            .filter_map(|m| m.version.map(|v| (m.mart.clone(), v)))
            .collect(),
        checkpoint_interval,
    )
    .await?;
    summary.build_elapsed = started.elapsed();
    let order = ordered.iter().map(|m| (*m).clone()).collect();
    Ok(GoldRun {
        summary,
        session: ctx,
        catalog,
        order,
    })
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
        Ok(())
    }
}
