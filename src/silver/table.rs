//! Silver Delta tables: creation, file pruning by key statistics, reads of
//! the selected files, writes, and the one commit per run that carries the
//! data and the bronze watermark together.
//!
//! A run never rewrites more than the files whose key range (the `minValues`
//! / `maxValues` statistics of the first key column) may hold a changed key;
//! of those, only files where a row actually changed are removed and
//! rewritten. Removes, adds and the `txn` watermark go into a single Delta
//! commit, so a table is either as before or fully updated.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, MetadataExt, Remove, StructType, Transaction, new_metadata};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// Layer folder of the silver tables.
pub const LAYER: &str = "silver";
/// Layer folder of the engine's side tables (deletes).
pub const STATE_LAYER: &str = "silver/_state";

/// The `txn` application id holding a table's bronze watermark.
pub fn watermark_app_id(table: &str) -> String {
    format!("lakehouse-silver:{table}")
}

/// The table's version as the signed number `txn` actions use.
pub fn version(table: &DeltaTable) -> Option<i64> {
    table.version().map(|v| v as i64)
}

/// A file of the table as of the loaded snapshot.
#[derive(Debug, Clone)]
pub struct TableFile {
    /// Path relative to the table root (as in the log).
    pub path: String,
    /// The remove action that retires it.
    pub remove: Remove,
    /// The file's `stats` JSON.
    pub stats: Option<serde_json::Value>,
}

/// Whether a Delta error is a lost race with another writer.
pub fn is_conflict(error: &DeltaTableError) -> bool {
    matches!(
        error,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        } | DeltaTableError::VersionAlreadyExists(_)
    )
}

/// The table's stored watermark for `app_id`.
pub async fn txn_version(table: &DeltaTable, name: &str, app_id: &str) -> Result<Option<i64>> {
    if table.version().is_none() {
        return Ok(None);
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(name, e))
}

/// Opens `layer/name`, creating it with `schema` when missing. When it
/// exists with another schema, `replace` re-creates it (full refresh) and an
/// error tells the user to run one otherwise.
pub async fn ensure(
    root: &StorageRoot,
    layer: &str,
    name: &str,
    schema: &SchemaRef,
    partition_by: &[String],
    replace: bool,
    spec_file: &std::path::Path,
) -> Result<(DeltaTable, bool)> {
    let table = root.open_table(layer, name).await?;
    let kernel: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    if table.version().is_some() {
        let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
        let same_schema = snapshot.schema().as_ref() == &kernel;
        let same_partitions = snapshot.metadata().partition_columns() == partition_by;
        if same_schema && same_partitions {
            return Ok((table, false));
        }
        if !replace {
            return Err(Error::Config {
                file: spec_file.to_path_buf(),
                message: format!(
                    "the columns or partitioning of silver table `{name}` changed since it was built; \
                     rebuild it with `lakehouse run silver --full-refresh {name}`"
                ),
            });
        }
    }
    let mode = if table.version().is_some() {
        SaveMode::Overwrite
    } else {
        SaveMode::Ignore
    };
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(partition_by.iter().cloned())
        .with_save_mode(mode)
        .await;
    match created {
        Ok(table) => Ok((table, true)),
        Err(e) if is_conflict(&e) => Ok((root.open_table(layer, name).await?, false)),
        Err(e) => Err(Error::delta(name, e)),
    }
}

/// A full refresh's new columns or partitioning, committed together with
/// its data: the Delta `metaData` (and `protocol` when the new columns need
/// a newer one) plus the arrow schema and partitioning to write files in.
#[derive(Debug, Clone)]
pub struct Relayout {
    /// `protocol` (when it changes) and `metaData`, leading the commit.
    pub actions: Vec<Action>,
    schema: SchemaRef,
    partition_by: Vec<String>,
    url: String,
    options: HashMap<String, String>,
}

/// Opens `layer/name` for a full refresh. A missing table is created (an
/// empty table with no watermark is what an unbuilt table looks like); an
/// existing one whose columns or partitioning differ is left as it is and
/// the new layout is returned, so that the refresh replaces schema and data
/// in one commit: a crash in between leaves the old table, never an empty
/// one without a watermark.
pub async fn open_for_refresh(
    root: &StorageRoot,
    layer: &str,
    name: &str,
    schema: &SchemaRef,
    partition_by: &[String],
) -> Result<(DeltaTable, Option<Relayout>)> {
    let table = root.open_table(layer, name).await?;
    if table.version().is_none() {
        let (table, _) = ensure(
            root,
            layer,
            name,
            schema,
            partition_by,
            false,
            std::path::Path::new(""),
        )
        .await?;
        return Ok((table, None));
    }
    let kernel: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    if snapshot.schema().as_ref() == &kernel
        && snapshot.metadata().partition_columns() == partition_by
    {
        return Ok((table, None));
    }
    // The protocol the new columns need is what creating them would give;
    // an in-memory table computes it without touching storage.
    let probe = DeltaTable::new_in_memory()
        .create()
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(partition_by.iter().cloned())
        .await
        .map_err(|e| Error::delta(name, e))?;
    let needed = probe
        .snapshot()
        .map_err(|e| Error::delta(name, e))?
        .protocol()
        .clone();
    let current = snapshot.protocol();
    let mut actions = Vec::new();
    if &needed != current
        && needed.min_reader_version() >= current.min_reader_version()
        && needed.min_writer_version() >= current.min_writer_version()
    {
        actions.push(Action::Protocol(needed));
    }
    let old = snapshot.metadata();
    let metadata = new_metadata(
        &kernel,
        partition_by.iter().cloned(),
        old.configuration().clone(),
    )
    .and_then(|m| m.with_table_id(old.id().to_string()))
    .and_then(|m| match old.name() {
        Some(n) => m.with_name(n.to_string()),
        None => Ok(m),
    })
    .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    actions.push(Action::Metadata(metadata));
    // Files are written in the table's schema as Delta sees it (the kernel
    // round trip), as `write` does for an unchanged table.
    let arrow_schema: arrow::datatypes::Schema = (&kernel)
        .try_into_arrow()
        .map_err(|e: arrow::error::ArrowError| Error::Arrow(e))?;
    let relayout = Relayout {
        actions,
        schema: Arc::new(arrow_schema),
        partition_by: partition_by.to_vec(),
        url: table.table_url().to_string(),
        options: root.options().clone(),
    };
    Ok((table, Some(relayout)))
}

/// Every file of the table's snapshot.
pub fn files(table: &DeltaTable, name: &str) -> Result<Vec<TableFile>> {
    if table.version().is_none() {
        return Ok(Vec::new());
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    Ok(snapshot
        .log_data()
        .into_iter()
        .map(|view| TableFile {
            path: view.path().to_string(),
            remove: view.remove_action(true),
            stats: view.stats().and_then(|s| serde_json::from_str(&s).ok()),
        })
        .collect())
}

/// Sorted values of one key column, for pruning.
#[derive(Debug, Clone)]
pub enum KeyValues {
    /// Integer keys.
    Int(Vec<i64>),
    /// Text-like keys compared as strings (text, dates).
    Text(Vec<String>),
    /// Keys of a type statistics cannot prune on: every file is a candidate.
    Any,
}

impl KeyValues {
    /// The non-null values of `array`.
    pub fn from_array(array: &dyn Array) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => {
                let ints = cast(array, &DataType::Int64)?;
                let mut v: Vec<i64> = ints.as_primitive::<Int64Type>().iter().flatten().collect();
                v.sort_unstable();
                v.dedup();
                KeyValues::Int(v)
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Date32 => {
                let text = cast(array, &DataType::Utf8)?;
                let mut v: Vec<String> = text
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect();
                v.sort_unstable();
                v.dedup();
                KeyValues::Text(v)
            }
            _ => KeyValues::Any,
        })
    }

    /// Whether any value may be in `[min, max]` (JSON statistics).
    fn any_within(&self, min: Option<&serde_json::Value>, max: Option<&serde_json::Value>) -> bool {
        match self {
            KeyValues::Any => true,
            KeyValues::Int(values) => {
                let (Some(min), Some(max)) =
                    (min.and_then(|v| v.as_i64()), max.and_then(|v| v.as_i64()))
                else {
                    return true;
                };
                let start = values.partition_point(|v| *v < min);
                values.get(start).is_some_and(|v| *v <= max)
            }
            KeyValues::Text(values) => {
                let (Some(min), Some(max)) =
                    (min.and_then(|v| v.as_str()), max.and_then(|v| v.as_str()))
                else {
                    return true;
                };
                // Statistics may be truncated prefixes: compare on the prefix
                // (prefixes keep the order, so the first value >= min decides).
                let start = values.partition_point(|v| v.as_str() < min);
                values.get(start).is_some_and(|v| {
                    let prefix: String = v.chars().take(max.chars().count()).collect();
                    prefix.as_str() <= max
                })
            }
        }
    }
}

/// Indexes of `files` that may hold one of `values` in `column`.
pub fn candidates(files: &[TableFile], column: &str, values: &KeyValues) -> Vec<usize> {
    files
        .iter()
        .enumerate()
        .filter(|(_, file)| {
            let Some(stats) = &file.stats else {
                return true;
            };
            if stats.get("numRecords").and_then(|n| n.as_i64()) == Some(0) {
                return false;
            }
            let min = stats.get("minValues").and_then(|m| m.get(column));
            let max = stats.get("maxValues").and_then(|m| m.get(column));
            if min.is_none() && max.is_none() {
                // Only nulls (the unknown member) or no statistics.
                let nulls = stats
                    .get("nullCount")
                    .and_then(|m| m.get(column))
                    .and_then(|n| n.as_i64());
                let rows = stats.get("numRecords").and_then(|n| n.as_i64());
                return !(nulls.is_some() && nulls == rows);
            }
            values.any_within(min, max)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Column under which [`read_files`] reports each row's file.
const FILE_COLUMN: &str = "__lakehouse_file";

/// Reads the rows of `selected` files; returns the rows (cast to `schema`
/// by name) and, per row, the index into `selected` of its file.
pub async fn read_files(
    ctx: &SessionContext,
    table: &DeltaTable,
    name: &str,
    selected: &[&TableFile],
    schema: &SchemaRef,
) -> Result<(RecordBatch, Vec<usize>)> {
    if selected.is_empty() {
        return Ok((RecordBatch::new_empty(schema.clone()), Vec::new()));
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(name, e))?;
    let provider = table
        .table_provider()
        .with_file_paths(selected.iter().map(|f| f.path.clone()))
        .with_file_column(FILE_COLUMN)
        .await
        .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    let batches = ctx.read_table(provider)?.collect().await?;
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (i, file) in selected.iter().enumerate() {
        index_of.insert(file.path.clone(), i);
    }
    let mut rows = Vec::new();
    let mut file_of_row = Vec::new();
    for batch in &batches {
        let files = cast(
            batch
                .column_by_name(FILE_COLUMN)
                .ok_or_else(|| Error::Other(format!("{name}: the scan lost its file column")))?,
            &DataType::Utf8,
        )?;
        for path in files.as_string::<i32>().iter() {
            let path = path.unwrap_or_default();
            let index = index_of
                .get(path)
                .copied()
                .or_else(|| {
                    index_of
                        .iter()
                        .find(|(p, _)| path.ends_with(p.as_str()))
                        .map(|(_, i)| *i)
                })
                .ok_or_else(|| Error::Other(format!("{name}: row from unexpected file {path}")))?;
            file_of_row.push(index);
        }
        rows.push(conform(batch, schema)?);
    }
    let rows = concat_batches(schema, &rows)?;
    Ok((rows, file_of_row))
}

/// Selects and casts `batch`'s columns to `schema`, by name.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| Error::Other(format!("column `{}` is missing", field.name())))?;
        columns.push(if column.data_type() == field.data_type() {
            column.clone()
        } else {
            cast(column, field.data_type())?
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Writes `batch` as Parquet files of at most `file_rows` rows; returns the adds.
pub async fn write(
    table: &DeltaTable,
    name: &str,
    batch: &RecordBatch,
    file_rows: usize,
) -> Result<Vec<Add>> {
    write_to(table, None, name, batch, file_rows).await
}

/// [`write`], in the new layout of a full refresh when there is one.
pub async fn write_to(
    table: &DeltaTable,
    relayout: Option<&Relayout>,
    name: &str,
    batch: &RecordBatch,
    file_rows: usize,
) -> Result<Vec<Add>> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    // Files are written in the table's schema as Delta sees it (the kernel
    // round trip), or in the refresh's new one.
    let schema = match relayout {
        Some(relayout) => relayout.schema.clone(),
        None => {
            let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
            let kernel_schema = snapshot
                .metadata()
                .parse_schema()
                .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
            let arrow_schema: arrow::datatypes::Schema = (&kernel_schema)
                .try_into_arrow()
                .map_err(|e: arrow::error::ArrowError| Error::Arrow(e))?;
            Arc::new(arrow_schema)
        }
    };
    let batch = conform(batch, &schema)?;
    let mut adds = Vec::new();
    let mut offset = 0;
    while offset < batch.num_rows() {
        let length = file_rows.max(1).min(batch.num_rows() - offset);
        let mut writer = match relayout {
            Some(relayout) => RecordBatchWriter::try_new(
                &relayout.url,
                relayout.schema.clone(),
                Some(relayout.partition_by.clone()),
                Some(relayout.options.clone()),
            ),
            None => RecordBatchWriter::for_table(table),
        }
        .map_err(|e| Error::delta(name, e))?;
        writer
            .write(batch.slice(offset, length))
            .await
            .map_err(|e| Error::delta(name, e))?;
        adds.extend(writer.flush().await.map_err(|e| Error::delta(name, e))?);
        offset += length;
    }
    Ok(adds)
}

/// One commit: removes, adds, `txn` watermarks and run metadata.
pub async fn commit(
    table: &mut DeltaTable,
    name: &str,
    removes: Vec<Remove>,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    metadata: serde_json::Map<String, serde_json::Value>,
    overwrite: bool,
) -> Result<i64> {
    commit_with(table, name, None, removes, adds, txns, metadata, overwrite).await
}

/// [`commit`], led by a full refresh's new layout when there is one, so
/// schema, data and watermark change in the same Delta commit.
#[allow(clippy::too_many_arguments)]
pub async fn commit_with(
    table: &mut DeltaTable,
    name: &str,
    relayout: Option<Relayout>,
    removes: Vec<Remove>,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    metadata: serde_json::Map<String, serde_json::Value>,
    overwrite: bool,
) -> Result<i64> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let partition_by = match &relayout {
        Some(r) => r.partition_by.clone(),
        None => snapshot.metadata().partition_columns().to_vec(),
    };
    let operation = if overwrite {
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: (!partition_by.is_empty()).then_some(partition_by),
            predicate: None,
        }
    } else {
        DeltaOperation::Update { predicate: None }
    };
    // A commit that removes files (a rewrite, an overwrite, a relayout) was
    // prepared on `snapshot`: it must not be retried on top of another
    // writer's commit. deltalake 1.1's conflict checker ignores removals
    // with `dataChange = false`, so after an `optimize` replaced the files
    // this commit rewrites, a retry would keep the optimize's copy of the
    // rows and add ours: duplicates. Such a commit fails as a conflict
    // instead, and the next run redoes it. Pure appends retry as usual.
    let rewrites = !removes.is_empty() || overwrite || relayout.is_some();
    let mut actions: Vec<Action> = relayout.map(|r| r.actions).unwrap_or_default();
    actions.extend(removes.into_iter().map(Action::Remove));
    actions.extend(adds.into_iter().map(Action::Add));
    let mut properties = CommitProperties::default()
        .with_application_transactions(txns)
        .with_metadata(metadata);
    if rewrites {
        properties = properties.with_max_retries(0);
    }
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(|e| Error::delta(name, e))?;
    let version = finalized.version() as i64;
    table
        .update_state()
        .await
        .map_err(|e| Error::delta(name, e))?;
    Ok(version)
}

/// Every row of the table (small side tables).
pub async fn read_all(
    ctx: &SessionContext,
    table: &DeltaTable,
    name: &str,
) -> Result<Vec<RecordBatch>> {
    if table.version().is_none() {
        return Ok(Vec::new());
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(name, e))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    Ok(ctx.read_table(provider)?.collect().await?)
}
