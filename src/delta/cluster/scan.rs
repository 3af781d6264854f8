//! A Delta table as the cluster reads it: DataFusion's Parquet listing table
//! over exactly the files of the loaded snapshot.
//!
//! Executors never read the Delta log. The log is replayed here, once, and
//! the plan names the live files: removed files still on storage (until a
//! vacuum) are never listed, and a partitioned table becomes one listing per
//! partition value, the value (from the log, not parsed from paths) added as
//! a constant column, under a union. Columns come out in the order and types
//! of deltalake's own provider, which the local engine reads, so the same
//! SQL plans to the same schema in both modes. Deletion vectors and column
//! mapping change what a file's rows mean (silver writes deletion vectors
//! on a local engine, never on a cluster); a table using them is refused by
//! name rather than read wrongly.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};
use datafusion::prelude::ParquetReadOptions;
use deltalake::DeltaTable;

use crate::delta::table::{TableFile, files};
use crate::error::{Error, Result};

/// Delta's table property naming the column mapping mode.
const COLUMN_MAPPING: &str = "delta.columnMapping.mode";

/// `table` (named `name` in errors) as a provider the cluster can scan:
/// `schema` is the schema local plans see (deltalake's provider's).
pub async fn files_table(
    state: &SessionState,
    table: &DeltaTable,
    name: &str,
    schema: SchemaRef,
) -> Result<Arc<dyn TableProvider>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let metadata = snapshot.metadata();
    if let Some(mode) = metadata.configuration().get(COLUMN_MAPPING)
        && mode != "none"
    {
        return Err(refused(name, &format!("uses column mapping ({mode})")));
    }
    let partition_columns = metadata.partition_columns().to_vec();
    let live = files(table, name)?;
    if live.iter().any(|f| f.remove.deletion_vector.is_some()) {
        return Err(refused(
            name,
            "has deletion vectors (written by a local silver run with `[silver] \
             deletion_vectors = true`; on the cluster, `lakehouse run silver \
             --full-refresh` rebuilds it without them)",
        ));
    }
    if live.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    }
    let file_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    if partition_columns.is_empty() {
        return listing(state, table, &live, &file_schema);
    }
    // One listing per partition value, the value a constant column.
    let mut by_partition: BTreeMap<Vec<Option<String>>, Vec<TableFile>> = BTreeMap::new();
    for file in live {
        let values = partition_columns
            .iter()
            .map(|column| {
                file.remove
                    .partition_values
                    .as_ref()
                    .and_then(|values| values.get(column).cloned())
                    .flatten()
            })
            .collect();
        by_partition.entry(values).or_default().push(file);
    }
    let mut union: Option<LogicalPlanBuilder> = None;
    for (values, group) in by_partition {
        let scan = LogicalPlanBuilder::scan(
            name,
            provider_as_source(listing(state, table, &group, &file_schema)?),
            None,
        )?;
        let columns = schema
            .fields()
            .iter()
            .map(
                |field| match partition_columns.iter().position(|c| c == field.name()) {
                    Some(i) => {
                        partition_value(values[i].as_deref(), field.data_type()).alias(field.name())
                    }
                    None => Expr::Column(Column::new_unqualified(field.name())),
                },
            )
            .collect::<Vec<_>>();
        let branch = scan.project(columns)?.build()?;
        union = Some(match union {
            None => LogicalPlanBuilder::from(branch),
            Some(plan) => plan.union(branch)?,
        });
    }
    let plan = union
        .ok_or_else(|| Error::Internal(format!("{name}: files but no partitions")))?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The Parquet listing of `files`, read as `file_schema`.
fn listing(
    state: &SessionState,
    table: &DeltaTable,
    files: &[TableFile],
    file_schema: &SchemaRef,
) -> Result<Arc<dyn TableProvider>> {
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(crate::storage::data_file_url(table, &f.path)))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options = ParquetReadOptions::default()
        .to_listing_options(state.config(), state.default_table_options());
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(file_schema.clone());
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// A partition value from the log (`None`: null) as a constant of `ty`.
fn partition_value(value: Option<&str>, ty: &DataType) -> Expr {
    let text = lit(ScalarValue::Utf8(value.map(str::to_string)));
    cast(text, ty.clone())
}

fn refused(name: &str, why: &str) -> Error {
    Error::Condition(format!(
        "table `{name}` {why}, which the Ballista engine does not read; \
         run with `[engine] mode = \"local\"`"
    ))
}
