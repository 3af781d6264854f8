//! Opening, creating, listing, reading and writing the Delta tables that
//! silver, gold and the run history rewrite copy-on-write.
//!
//! A rewrite reads only the files [`super::prune`] selects, writes their
//! replacements with [`write()`], and commits removes, adds and watermarks in
//! one [`super::TableCommit`], so a table is either as before or fully updated.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::{Action, Add, MetadataExt, Remove, StructType, new_metadata};
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

use super::deletion::{Positions, deleted_positions};
use crate::error::{Error, Result, is_commit_conflict};
use crate::storage::StorageRoot;

/// A file of the table as of the loaded snapshot.
#[derive(Debug, Clone)]
pub struct TableFile {
    /// Path relative to the table root (as in the log).
    pub path: String,
    /// The remove action that retires it.
    pub remove: Remove,
    /// The file's `stats` JSON.
    pub stats: Option<serde_json::Value>,
    /// When the file was written (ms since the epoch, from its `add`).
    pub modification_time: i64,
    /// Rows in the file as written (deleted ones included), from its stats.
    pub num_records: Option<usize>,
}

/// Opens `layer/name`, creating it with `schema` when missing. When it
/// exists with other columns or partitioning, `replace` re-creates it (a full
/// refresh); otherwise the error is [`Error::SchemaChanged`], which callers
/// turn into their own hint. Returns whether the table was (re)created.
pub async fn ensure(
    root: &StorageRoot,
    layer: &str,
    name: &str,
    schema: &SchemaRef,
    partition_by: &[String],
    replace: bool,
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
            return Err(Error::SchemaChanged {
                table: name.to_string(),
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
        Err(e) if is_commit_conflict(&e) => Ok((root.open_table(layer, name).await?, false)),
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
    pub(super) partition_by: Vec<String>,
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
        let (table, _) = ensure(root, layer, name, schema, partition_by, false).await?;
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
            modification_time: view.modification_time(),
            num_records: view.num_records(),
        })
        .collect())
}

/// Column under which [`read_files`] reports each row's file.
const FILE_COLUMN: &str = "__lakehouse_file";

/// The rows of some files of a table (see [`read_files`]).
#[derive(Debug)]
pub struct FileRows {
    /// The rows, cast to the schema asked for.
    pub rows: RecordBatch,
    /// Per row, the index of its file among those selected.
    pub file_of_row: Vec<usize>,
    /// Per row, its position in its file as written (what a deletion
    /// vector names).
    pub position_of_row: Vec<u64>,
}

/// Reads the live rows of `selected` files (rows their deletion vectors
/// mark deleted are skipped), cast to `schema` by name, with each row's
/// file and position in it.
pub async fn read_files(
    ctx: &SessionContext,
    table: &DeltaTable,
    name: &str,
    selected: &[&TableFile],
    schema: &SchemaRef,
) -> Result<FileRows> {
    if selected.is_empty() {
        return Ok(FileRows {
            rows: RecordBatch::new_empty(schema.clone()),
            file_of_row: Vec::new(),
            position_of_row: Vec::new(),
        });
    }
    // Positions are counted in arrival order.
    let ctx = super::session::ordered_session(ctx);
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
    let mut positions = Positions::new(deleted_positions(table, name, selected).await?);
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (i, file) in selected.iter().enumerate() {
        index_of.insert(file.path.clone(), i);
    }
    let mut rows = Vec::new();
    let mut file_of_row = Vec::new();
    let mut position_of_row = Vec::new();
    for batch in &batches {
        let files = cast(
            batch
                .column_by_name(FILE_COLUMN)
                .ok_or_else(|| Error::Internal(format!("{name}: the scan lost its file column")))?,
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
                .ok_or_else(|| {
                    Error::Internal(format!("{name}: row from unexpected file {path}"))
                })?;
            file_of_row.push(index);
            position_of_row.push(positions.next(index));
        }
        rows.push(conform(batch, schema)?);
    }
    // Positions are only right when every live row was read: check the
    // counts against the log's.
    for (i, file) in selected.iter().enumerate() {
        let deleted = file
            .remove
            .deletion_vector
            .as_ref()
            .map_or(0, |v| v.cardinality as u64);
        if let Some(written) = file.num_records
            && positions.rows_read(i) + deleted != written as u64
        {
            return Err(Error::Internal(format!(
                "{name}: read {} rows of {}, whose log entry says {} rows, {deleted} deleted",
                positions.rows_read(i),
                file.path,
                written
            )));
        }
    }
    let rows = concat_batches(schema, &rows)?;
    Ok(FileRows {
        rows,
        file_of_row,
        position_of_row,
    })
}

/// Selects and casts `batch`'s columns to `schema`, by name.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| Error::Internal(format!("column `{}` is missing", field.name())))?;
        columns.push(if column.data_type() == field.data_type() {
            column.clone()
        } else {
            cast(column, field.data_type())?
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The table's columns as Arrow sees them (the Delta schema's round trip).
pub fn arrow_schema(table: &DeltaTable, name: &str) -> Result<SchemaRef> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let kernel_schema = snapshot
        .metadata()
        .parse_schema()
        .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    let arrow_schema: arrow::datatypes::Schema = (&kernel_schema)
        .try_into_arrow()
        .map_err(|e: arrow::error::ArrowError| Error::Arrow(e))?;
    Ok(Arc::new(arrow_schema))
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

/// [`write()`], in the new layout of a full refresh when there is one.
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
        None => arrow_schema(table, name)?,
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
