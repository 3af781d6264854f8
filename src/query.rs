//! DataFusion sessions over the lakehouse's Delta tables.

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// Registers table `name` of `layer` in `ctx` under its own name. Returns
/// `false` (and registers nothing) when the table does not exist yet.
pub async fn register_table(
    ctx: &SessionContext,
    root: &StorageRoot,
    layer: &str,
    name: &str,
) -> Result<bool> {
    let table = root.open_table(layer, name).await?;
    if table.version().is_none() {
        return Ok(false);
    }
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(name, e))?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(true)
}

/// Runs `sql` and collects the result.
pub async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}
