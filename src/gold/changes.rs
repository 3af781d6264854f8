//! Which partitions of a mart a run must recompute.
//!
//! For each input table that moved since the mart's watermark, the Delta log
//! of the commits in between gives the files added and removed. Files added
//! and removed inside the range cancel out; the rest are the net change. The
//! rows that differ between the removed and added files (a symmetric
//! difference: silver rewrites whole files when one row changes) are the
//! table's `changed` rows, and the mart's `incremental` rule maps them to
//! the partition dates (or, for a mart incremental by key, the key values)
//! to recompute.

use std::collections::{BTreeSet, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;

use super::spec::MartSpec;
use crate::error::{Error, Result};

/// Relation name of an input's changed rows in an `incremental` query rule.
pub const CHANGED: &str = "changed";

/// The net file changes of a table over `(after, upto]`, as full URLs.
#[derive(Debug, Default)]
pub struct FileChanges {
    /// Files present at `upto` that were not at `after`.
    pub added: Vec<String>,
    /// Files present at `after` that are not at `upto`.
    pub removed: Vec<String>,
}

/// The net file changes of `table` after version `after`; `None` when a
/// commit left the log (cleanup) or a change is not a plain data file
/// change (a partitioned input, a schema change): the caller rebuilds.
pub async fn file_changes(
    table: &DeltaTable,
    name: &str,
    after: i64,
    upto: i64,
) -> Result<Option<FileChanges>> {
    let log_store = table.log_store();
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for v in (after + 1)..=upto {
        let Some(bytes) = log_store
            .read_commit_entry(v as u64)
            .await
            .map_err(|e| Error::delta(name, e))?
        else {
            return Ok(None);
        };
        for action in get_actions(v as u64, &bytes).map_err(|e| Error::delta(name, e))? {
            match action {
                Action::Add(add) if add.partition_values.is_empty() => added.push(add.path),
                Action::Remove(remove)
                    if remove
                        .partition_values
                        .as_ref()
                        .is_none_or(|p| p.is_empty()) =>
                {
                    removed.push(remove.path)
                }
                Action::Add(_) | Action::Remove(_) | Action::Metadata(_) => return Ok(None),
                _ => {}
            }
        }
    }
    let added_set: HashSet<&String> = added.iter().collect();
    let removed_set: HashSet<&String> = removed.iter().collect();
    Ok(Some(FileChanges {
        added: added
            .iter()
            .filter(|p| !removed_set.contains(p))
            .map(|p| crate::storage::data_file_url(table, p))
            .collect(),
        removed: removed
            .iter()
            .filter(|p| !added_set.contains(p))
            .map(|p| crate::storage::data_file_url(table, p))
            .collect(),
    }))
}

/// Reads the rows that differ between the removed and added files and runs
/// `rule` over them; returns the dates, or `None` when a removed file is gone
/// (vacuumed), so the caller rebuilds.
pub async fn changed_dates(
    ctx: &SessionContext,
    spec: &MartSpec,
    input: &str,
    rule: &str,
    changes: &FileChanges,
) -> Result<Option<BTreeSet<i32>>> {
    let column = format!("CAST({rule} AS DATE)");
    let Some(columns) = changed_column(ctx, spec, input, rule, &column, changes).await? else {
        return Ok(None);
    };
    let mut dates = BTreeSet::new();
    for column in columns {
        let column = cast(&column, &DataType::Date32)?;
        dates.extend(column.as_primitive::<Date32Type>().iter().flatten());
        if column.null_count() > 0 {
            tracing::debug!(mart = %spec.name, input, "changed rows without a date are not in any partition");
        }
    }
    Ok(Some(dates))
}

/// [`changed_dates`] for a mart incremental by key: the distinct values of
/// the key column the changed rows map to, cast to `key_type` (nulls
/// dropped: the grain has none); `None`: rebuild.
pub async fn changed_keys(
    ctx: &SessionContext,
    spec: &MartSpec,
    input: &str,
    rule: &str,
    key_type: &DataType,
    changes: &FileChanges,
) -> Result<Option<HashSet<ScalarValue>>> {
    let Some(columns) = changed_column(ctx, spec, input, rule, rule, changes).await? else {
        return Ok(None);
    };
    let mut keys = HashSet::new();
    for column in columns {
        let column = cast(&column, key_type).map_err(|e| {
            spec.error(format!(
                "incremental.{input}: `{rule}` does not give values of the key's type {key_type}: {e}"
            ))
        })?;
        for row in 0..column.len() {
            if column.is_valid(row) {
                keys.insert(ScalarValue::try_from_array(&column, row)?);
            }
        }
    }
    Ok(Some(keys))
}

/// The first column of `rule` (a query) or of `SELECT DISTINCT column` (a
/// column rule) over the input's changed rows; `None`: a removed file is gone.
async fn changed_column(
    ctx: &SessionContext,
    spec: &MartSpec,
    input: &str,
    rule: &str,
    column: &str,
    changes: &FileChanges,
) -> Result<Option<Vec<ArrayRef>>> {
    let read = |urls: Vec<String>| async move {
        if urls.is_empty() {
            return Ok::<_, Error>(None);
        }
        Ok(Some(
            ctx.read_parquet(urls, ParquetReadOptions::default())
                .await?
                .collect()
                .await?,
        ))
    };
    let removed = match read(changes.removed.clone()).await {
        Ok(rows) => rows,
        Err(Error::DataFusion(e)) if e.to_string().contains("not found") => {
            tracing::warn!(mart = %spec.name, input, "a removed file of the input is gone (vacuumed?); rebuilding");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let added = read(changes.added.clone()).await?;
    let changed: Vec<RecordBatch> = match (added, removed) {
        (None, None) => return Ok(Some(Vec::new())),
        (Some(rows), None) | (None, Some(rows)) => rows,
        (Some(added), Some(removed)) => {
            let (Some(a), Some(r)) = (added.first(), removed.first()) else {
                return Ok(Some(Vec::new()));
            };
            let a = MemTable::try_new(a.schema(), vec![added.clone()])?;
            let r = MemTable::try_new(r.schema(), vec![removed.clone()])?;
            let a = ctx.read_table(std::sync::Arc::new(a))?;
            let r = ctx.read_table(std::sync::Arc::new(r))?;
            a.clone()
                .except(r.clone())?
                .union(r.except(a)?)?
                .collect()
                .await?
        }
    };
    let Some(first) = changed.first() else {
        return Ok(Some(Vec::new()));
    };
    let table = MemTable::try_new(first.schema(), vec![changed.clone()])?;
    let _ = ctx.deregister_table(CHANGED)?;
    ctx.register_table(CHANGED, std::sync::Arc::new(table))?;
    let sql = if MartSpec::rule_is_query(rule) {
        // The rule's first column holds the values.
        rule.to_string()
    } else {
        format!("SELECT DISTINCT {column} FROM {CHANGED}")
    };
    let result = async { ctx.sql(&sql).await?.collect().await }.await;
    let _ = ctx.deregister_table(CHANGED)?;
    let batches = result.map_err(|e| {
        spec.error(format!(
            "incremental.{input}: `{rule}` failed over the changed rows: {e}"
        ))
    })?;
    Ok(Some(batches.iter().map(|b| b.column(0).clone()).collect()))
}
