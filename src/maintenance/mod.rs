//! Table maintenance: `lakehouse optimize` (compaction, Z-order, and the
//! purge of deleted rows, [`purge`]), `lakehouse vacuum`, Delta checkpoints
//! ([`crate::delta::checkpoint`]) and bronze's automatic compaction ([`compact`]).
//!
//! Why this is safe for the incremental readers:
//! - Silver reads the bronze files `add`ed with `dataChange = true` after its
//!   watermark (`crate::silver::changes`). `optimize` commits its rewritten
//!   files with `dataChange = false`, so silver neither reads the compacted
//!   rows again nor misses rows: the files it has not read yet are still
//!   listed as `add`s of their own (earlier) commits and stay on storage until
//!   `vacuum` deletes them, which the retention floor delays by a week.
//! - Gold diffs the rows of the files added and removed since its watermark
//!   (`crate::gold::changes`); a compaction's removed and added rows are the
//!   same, so the difference is empty and nothing is recomputed.

pub mod compact;
mod config;
pub mod exclusive;
pub mod purge;

use std::num::NonZeroU64;

use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::table::config::TablePropertiesExt as _;

pub use config::MaintenanceConfig;

use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// The layers, in pipeline order, then the system tables (the run history).
pub const LAYERS: [&str; 4] = ["bronze", "silver", "gold", SYSTEM_LAYER];

use crate::tables::runs::SYSTEM_LAYER;

/// A table maintenance can work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    /// `bronze`, `silver`, `gold` or `_lakehouse` (system tables).
    pub layer: &'static str,
    /// Table name.
    pub name: String,
    /// Columns to Z-order by (empty: plain compaction).
    pub zorder: Vec<String>,
    /// Where `zorder` was declared, for errors.
    pub declared_in: std::path::PathBuf,
}

/// Which tables to work on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this layer.
    pub layer: Option<String>,
    /// Only this table.
    pub table: Option<String>,
}

impl Selection {
    /// Whether tables of `layer` are selected. An unknown layer is an error
    /// naming it.
    pub fn wants(&self, layer: &str) -> Result<bool> {
        if let Some(wanted) = &self.layer
            && !LAYERS.contains(&wanted.as_str())
        {
            return Err(Error::Condition(format!(
                "unknown layer `{wanted}`: use bronze, silver, gold or {SYSTEM_LAYER}"
            )));
        }
        Ok(self.layer.as_deref().is_none_or(|l| l == layer))
    }

    /// `tables` (those of the selected layers) narrowed to the selected
    /// table; an unknown table is an error naming it.
    pub fn narrow(&self, mut tables: Vec<TableTarget>) -> Result<Vec<TableTarget>> {
        if let Some(table) = &self.table {
            tables.retain(|t| &t.name == table);
            if tables.is_empty() {
                return Err(Error::Condition(format!(
                    "there is no table `{table}`{} (tables come from the bronze tables and the silver and gold specs)",
                    self.layer
                        .as_ref()
                        .map(|l| format!(" in layer {l}"))
                        .unwrap_or_default()
                )));
            }
        }
        Ok(tables)
    }
}

/// What `optimize` did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizeReport {
    /// `layer.table`.
    pub table: String,
    /// Whether the files were Z-ordered (else bin-packed).
    pub zorder: bool,
    /// Files replaced.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Table version after the run (`None`: the table does not exist yet).
    pub version: Option<i64>,
    /// Whether the table did not exist yet.
    pub missing: bool,
    /// Another process was compacting the table (its owner id): skipped.
    pub skipped_for: Option<String>,
    /// Files rewritten without their deleted rows, and those rows.
    pub purged: purge::Purged,
}

impl std::fmt::Display for OptimizeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missing {
            return write!(f, "{:<32} not created yet", self.table);
        }
        if let Some(owner) = &self.skipped_for {
            return write!(f, "{:<32} skipped: {owner} is compacting it", self.table);
        }
        write!(
            f,
            "{:<32} {} {:>6} files -> {:>4}, version {}",
            self.table,
            if self.zorder { "z-order" } else { "compact" },
            self.files_removed,
            self.files_added,
            self.version.map_or("-".into(), |v| v.to_string())
        )?;
        if self.purged.files > 0 {
            write!(
                f,
                "; purged {} deleted rows from {} files",
                self.purged.rows, self.purged.files
            )?;
        }
        Ok(())
    }
}

/// Parquet settings of rewritten files (those of the writers).
pub fn writer_properties() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(|e| Error::Internal(format!("zstd level: {e}")))?,
        ))
        .build())
}

/// Compacts (or Z-orders) each of `targets` under `root`, then checkpoints
/// it when due.
pub async fn optimize(
    config: &MaintenanceConfig,
    root: &StorageRoot,
    targets: &[TableTarget],
) -> Result<Vec<OptimizeReport>> {
    let mut reports = Vec::new();
    for target in targets {
        let report = optimize_table(root, target, config).await?;
        tracing::info!(table = %report.table, removed = report.files_removed, added = report.files_added, "optimized");
        reports.push(report);
    }
    Ok(reports)
}

/// Optimizes one table.
pub async fn optimize_table(
    root: &StorageRoot,
    target: &TableTarget,
    config: &MaintenanceConfig,
) -> Result<OptimizeReport> {
    let qualified = format!("{}.{}", target.layer, target.name);
    let table = root.open_table(target.layer, &target.name).await?;
    let mut report = OptimizeReport {
        table: qualified.clone(),
        zorder: !target.zorder.is_empty(),
        ..Default::default()
    };
    if table.version().is_none() {
        report.missing = true;
        return Ok(report);
    }
    let optimize_type = if target.zorder.is_empty() {
        OptimizeType::Compact
    } else {
        check_zorder(&table, target)?;
        OptimizeType::ZOrder(target.zorder.clone())
    };
    let size = NonZeroU64::new(config.target_file_size).ok_or_else(|| {
        Error::Condition("maintenance.target_file_size must be at least 1".into())
    })?;
    let properties = writer_properties()?;
    let ratio = config.purge_deleted_ratio;
    let work = async {
        let (table, metrics) = table
            .optimize()
            .with_type(optimize_type)
            .with_target_size(size)
            .with_writer_properties(properties)
            .await
            .map_err(|e| Error::delta(&qualified, e))?;
        // The files the compaction left that still hold many deleted rows.
        let (table, purged) = purge::purge_deleted(table, &qualified, ratio).await?;
        Ok((table, metrics, purged))
    };
    let (table, metrics, purged) = match exclusive::exclusively(root, &qualified, work).await? {
        exclusive::Exclusive::Done(done) => done,
        exclusive::Exclusive::Busy { owner } => {
            report.skipped_for = Some(owner);
            return Ok(report);
        }
    };
    report.files_removed = metrics.num_files_removed;
    report.files_added = metrics.num_files_added;
    report.purged = purged;
    report.version = crate::delta::version(&table);
    crate::delta::checkpoint::checkpoint_if_due(&table, &qualified, config.checkpoint_interval)
        .await?;
    Ok(report)
}

/// Z-order columns must be columns of the table and not partition columns.
fn check_zorder(table: &DeltaTable, target: &TableTarget) -> Result<()> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(&target.name, e))?;
    let partitions = snapshot.metadata().partition_columns();
    let schema = snapshot.schema();
    for column in &target.zorder {
        let problem = if partitions.contains(column) {
            "is a partition column (Z-order sorts inside partitions)"
        } else if schema.field(column).is_none() {
            "is not a column of the table"
        } else {
            continue;
        };
        return Err(Error::Config {
            file: target.declared_in.clone(),
            message: format!(
                "zorder of {}.{}: `{column}` {problem}",
                target.layer, target.name
            ),
        });
    }
    Ok(())
}

/// Options of `lakehouse vacuum`.
#[derive(Debug, Clone, Default)]
pub struct VacuumOptions {
    /// Which tables.
    pub selection: Selection,
    /// Retention in hours (default: `[maintenance] retention_hours`).
    pub retention_hours: Option<u64>,
    /// Allow a retention below the safe minimum.
    pub force: bool,
    /// Only list the files that would be deleted.
    pub dry_run: bool,
}

/// What `vacuum` did (or would do) to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    /// `layer.table`.
    pub table: String,
    /// Files deleted (or, on a dry run, that would be).
    pub files: Vec<String>,
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// Whether the table did not exist yet.
    pub missing: bool,
}

impl std::fmt::Display for VacuumReport {
    /// One line per table; a dry run lists the files too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.missing {
            return writeln!(f, "{:<32} not created yet", self.table);
        }
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        writeln!(f, "{:<32} {verb} {} file(s)", self.table, self.files.len())?;
        if self.dry_run {
            for file in &self.files {
                writeln!(f, "  {file}")?;
            }
        }
        Ok(())
    }
}

/// The retention floor of a table: the configured minimum, or the table's
/// `delta.deletedFileRetentionDuration` when that is longer.
pub fn safe_retention_hours(table: &DeltaTable, config: &MaintenanceConfig) -> Result<u64> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(table.table_url().as_str(), e))?;
    let table_hours = snapshot
        .table_config()
        .deleted_file_retention_duration()
        .as_secs()
        .div_ceil(3600);
    Ok(config.min_retention_hours.max(table_hours))
}

/// Deletes files removed from each of `targets` under `root` longer ago than
/// the retention. A retention below a table's safe minimum is refused unless
/// `force`.
pub async fn vacuum(
    config: &MaintenanceConfig,
    root: &StorageRoot,
    targets: &[TableTarget],
    options: &VacuumOptions,
) -> Result<Vec<VacuumReport>> {
    let retention = options.retention_hours.unwrap_or(config.retention_hours);
    // Check every table before deleting anything from any.
    let mut tables = Vec::new();
    for target in targets {
        let table = root.open_table(target.layer, &target.name).await?;
        let qualified = format!("{}.{}", target.layer, target.name);
        if table.version().is_some() {
            let floor = safe_retention_hours(&table, config)?;
            if retention < floor && !options.force {
                return Err(Error::Condition(format!(
                    "vacuum of {qualified}: a retention of {retention} hours is below the safe minimum of \
                     {floor} hours (maintenance.min_retention_hours / delta.deletedFileRetentionDuration): \
                     readers of older versions and silver or gold runs that have not yet read the files an \
                     optimize replaced would fail. Pass --force to vacuum anyway"
                )));
            }
        }
        tables.push((qualified, table));
    }
    let mut reports = Vec::new();
    for (qualified, table) in tables {
        if table.version().is_none() {
            reports.push(VacuumReport {
                table: qualified,
                missing: true,
                dry_run: options.dry_run,
                ..Default::default()
            });
            continue;
        }
        let hours = i64::try_from(retention).map_err(|_| {
            Error::Condition(format!("retention of {retention} hours is too large"))
        })?;
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(chrono::Duration::hours(hours))
            .with_enforce_retention_duration(!options.force)
            .with_mode(VacuumMode::Full)
            .with_dry_run(options.dry_run)
            .await
            .map_err(|e| Error::delta(&qualified, e))?;
        tracing::info!(table = %qualified, files = metrics.files_deleted.len(), dry_run = options.dry_run, "vacuumed");
        reports.push(VacuumReport {
            table: qualified,
            files: metrics.files_deleted,
            dry_run: options.dry_run,
            missing: false,
        });
    }
    Ok(reports)
}
