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

use std::collections::{BTreeSet, HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, DeletionVectorDescriptor};
use deltalake::logstore::get_actions;

use roaring::RoaringTreemap;

use super::spec::MartSpec;
use crate::delta::deletion;
use crate::error::{Error, Result};

/// Relation name of an input's changed rows in an `incremental` query rule.
pub const CHANGED: &str = "changed";

/// Which rows of a data file a change is about.
#[derive(Debug, Clone)]
pub enum RowsOf {
    /// The file's live rows: all but those its deletion vector (if any)
    /// marks deleted.
    Live(Option<DeletionVectorDescriptor>),
    /// The rows deleted between two versions of the file's deletion
    /// vector (the file itself stayed).
    NewlyDeleted {
        /// The vector at the range's start (`None`: no rows deleted then).
        before: Option<DeletionVectorDescriptor>,
        /// The vector at the range's end.
        after: DeletionVectorDescriptor,
    },
}

/// A data file in a table's net change, as a full URL.
#[derive(Debug, Clone)]
pub struct ChangedFile {
    /// The file's URL.
    pub url: String,
    /// Which of its rows changed.
    pub rows: RowsOf,
}

/// The net file changes of a table over `(after, upto]`.
#[derive(Debug, Default)]
pub struct FileChanges {
    /// Rows present at `upto` that were not at `after`: the live rows of
    /// files added since.
    pub added: Vec<ChangedFile>,
    /// Rows present at `after` that are not at `upto`: the live rows of
    /// files removed since, and the rows newly marked deleted in files
    /// that stayed.
    pub removed: Vec<ChangedFile>,
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
    // Per path: its state at `after` (the first action on it in the range
    // is a remove: it was there, with that deletion vector) and at `upto`
    // (the last action is an add: it is there, with that one).
    let mut first: HashMap<String, Option<Option<DeletionVectorDescriptor>>> = HashMap::new();
    let mut last: HashMap<String, Option<Option<DeletionVectorDescriptor>>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for v in (after + 1)..=upto {
        let Some(bytes) = log_store
            .read_commit_entry(v as u64)
            .await
            .map_err(|e| Error::delta(name, e))?
        else {
            return Ok(None);
        };
        let actions = get_actions(v as u64, &bytes).map_err(|e| Error::delta(name, e))?;
        // Setting table properties (deletion vectors turned on) keeps the
        // columns and the rows.
        let sets_properties = actions.iter().any(|action| {
            matches!(action, Action::CommitInfo(info)
                if info.operation.as_deref() == Some("SET TBLPROPERTIES"))
        });
        for action in actions {
            let (path, state) = match action {
                Action::Add(add) if add.partition_values.is_empty() => {
                    (add.path, Some(add.deletion_vector))
                }
                Action::Remove(remove)
                    if remove
                        .partition_values
                        .as_ref()
                        .is_none_or(|p| p.is_empty()) =>
                {
                    // A remove says the file was there before it.
                    first
                        .entry(remove.path.clone())
                        .or_insert(Some(remove.deletion_vector));
                    (remove.path, None)
                }
                Action::Metadata(_) if sets_properties => continue,
                Action::Add(_) | Action::Remove(_) | Action::Metadata(_) => return Ok(None),
                _ => continue,
            };
            first.entry(path.clone()).or_insert(None);
            if !last.contains_key(&path) {
                order.push(path.clone());
            }
            last.insert(path, state);
        }
    }
    let mut changes = FileChanges::default();
    for path in order {
        let url = crate::storage::data_file_url(table, &path);
        let before = first.get(&path).cloned().flatten();
        let now = last.get(&path).cloned().flatten();
        match (before, now) {
            (None, None) => {}
            (None, Some(vector)) => changes.added.push(ChangedFile {
                url,
                rows: RowsOf::Live(vector),
            }),
            (Some(vector), None) => changes.removed.push(ChangedFile {
                url,
                rows: RowsOf::Live(vector),
            }),
            (Some(before), Some(Some(after))) if before.as_ref() != Some(&after) => {
                changes.removed.push(ChangedFile {
                    url,
                    rows: RowsOf::NewlyDeleted { before, after },
                })
            }
            // Removed and added back as it was.
            (Some(_), Some(_)) => {}
        }
    }
    Ok(Some(changes))
}

/// Reads the rows that differ between the removed and added files and runs
/// `rule` over them; returns the dates, or `None` when a removed file is gone
/// (vacuumed), so the caller rebuilds.
pub async fn changed_dates(
    ctx: &SessionContext,
    table: &DeltaTable,
    spec: &MartSpec,
    input: &str,
    rule: &str,
    changes: &FileChanges,
) -> Result<Option<BTreeSet<i32>>> {
    let column = format!("CAST({rule} AS DATE)");
    let Some(columns) = changed_column(ctx, table, spec, input, rule, &column, changes).await?
    else {
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
    table: &DeltaTable,
    spec: &MartSpec,
    input: &str,
    rule: &str,
    key_type: &DataType,
    changes: &FileChanges,
) -> Result<Option<HashSet<ScalarValue>>> {
    let Some(columns) = changed_column(ctx, table, spec, input, rule, rule, changes).await? else {
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

/// The changed rows of `files` of `table` (`None`: no file).
async fn read_changed(
    ctx: &SessionContext,
    table: &DeltaTable,
    name: &str,
    files: &[ChangedFile],
) -> Result<Option<Vec<RecordBatch>>> {
    if files.is_empty() {
        return Ok(None);
    }
    // Files written by silver and by an optimize may differ in physical
    // types: every row is read in the table's columns.
    let schema = crate::delta::arrow_schema(table, name)?;
    let mut rows = Vec::new();
    for file in files {
        let deleted = |vector: &Option<DeletionVectorDescriptor>| {
            let vector = vector.clone();
            async move {
                Ok::<_, Error>(match vector {
                    Some(vector) => deletion::deleted_rows(table, name, &vector).await?,
                    None => RoaringTreemap::new(),
                })
            }
        };
        let read = match &file.rows {
            RowsOf::Live(vector) => {
                let gone = deleted(vector).await?;
                deletion::read_file_rows(ctx, &file.url, |p| !gone.contains(p)).await?
            }
            RowsOf::NewlyDeleted { before, after } => {
                let was = deleted(before).await?;
                let now = deleted(&Some(after.clone())).await?;
                deletion::read_file_rows(ctx, &file.url, |p| now.contains(p) && !was.contains(p))
                    .await?
            }
        };
        for batch in read {
            rows.push(crate::delta::conform(&batch, &schema)?);
        }
    }
    Ok(Some(rows))
}

/// The first column of `rule` (a query) or of `SELECT DISTINCT column` (a
/// column rule) over the input's changed rows; `None`: a removed file is gone.
async fn changed_column(
    ctx: &SessionContext,
    table: &DeltaTable,
    spec: &MartSpec,
    input: &str,
    rule: &str,
    column: &str,
    changes: &FileChanges,
) -> Result<Option<Vec<ArrayRef>>> {
    let removed = match read_changed(ctx, table, input, &changes.removed).await {
        Ok(rows) => rows,
        Err(Error::DataFusion(e)) if e.to_string().contains("not found") => {
            tracing::warn!(mart = %spec.name, input, "a removed file of the input is gone (vacuumed?); rebuilding");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let added = read_changed(ctx, table, input, &changes.added).await?;
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
