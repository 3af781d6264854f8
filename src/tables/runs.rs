//! `_lakehouse_runs`: the run history every job appends to, and that
//! `lakehouse status`, `lakehouse query` and the gold marts over system
//! tables read. The orchestration layer writes it; this is its contract.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use crate::error::Result;
use crate::storage::StorageRoot;

/// Layer folder of the system tables.
pub const SYSTEM_LAYER: &str = "_lakehouse";
/// Folder of the run history under [`SYSTEM_LAYER`].
pub const RUNS_FOLDER: &str = "runs";
/// The run history's table name (in SQL and the commit info).
pub const RUNS_TABLE: &str = "_lakehouse_runs";

/// The schema of `_lakehouse_runs`.
pub fn runs_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("run", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("owner", DataType::Utf8, false),
        Field::new("attempt", DataType::Int32, false),
        Field::new("started_at", ts.clone(), false),
        Field::new("ended_at", ts, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_read", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("tables", DataType::Utf8, false),
        Field::new("watermark_before", DataType::Int64, true),
        Field::new("watermark_after", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// Opens `_lakehouse_runs` (version `None` when no run was recorded yet).
pub async fn open(root: &StorageRoot) -> Result<DeltaTable> {
    root.open_table(SYSTEM_LAYER, RUNS_FOLDER).await
}

/// [`register`] with the table already opened.
pub async fn register_loaded(ctx: &SessionContext, table: &DeltaTable, name: &str) -> Result<()> {
    let _ = ctx.deregister_table(name)?;
    if table.version().is_some() {
        let provider = crate::delta::session::table_provider(ctx, table, RUNS_TABLE).await?;
        ctx.register_table(name, provider)?;
    } else {
        let empty = datafusion::datasource::MemTable::try_new(runs_schema(), vec![vec![]])?;
        ctx.register_table(name, Arc::new(empty))?;
    }
    Ok(())
}

/// Registers `_lakehouse_runs` in `ctx` as `name`; an empty table when no
/// run was recorded yet.
pub async fn register(ctx: &SessionContext, root: &StorageRoot, name: &str) -> Result<()> {
    register_loaded(ctx, &open(root).await?, name).await
}
