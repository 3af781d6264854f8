//! How the tables of a plan sent to the cluster travel: Ballista's codec for
//! everything it knows (listing tables, file formats, its own nodes), plus
//! in-memory tables as Arrow IPC inside the plan.

use std::io::Cursor;
use std::sync::Arc;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

/// Marks (and versions) an in-memory table's bytes in a plan.
const MEMORY_TABLE: &[u8] = b"lakehouse.memory-table.v1\n";

/// The logical codec of the client, the scheduler and the executors.
#[derive(Debug, Default)]
pub struct LakehouseCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LakehouseCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(MEMORY_TABLE) {
            Some(ipc) => decode_memory_table(ipc, table_ref),
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<MemTable>() {
            Some(table) => encode_memory_table(table, table_ref, buf),
            None => Err(DataFusionError::NotImplemented(format!(
                "table `{table_ref}` cannot be sent to the Ballista cluster: only Parquet \
                 listings and in-memory tables travel in a plan"
            ))),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

fn encode_memory_table(
    table: &MemTable,
    table_ref: &TableReference,
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.extend_from_slice(MEMORY_TABLE);
    let mut writer = StreamWriter::try_new(&mut *buf, &table.schema())?;
    for partition in &table.batches {
        // The plan is encoded while nothing writes to the table; a held
        // write lock would be a bug in the caller, reported as such.
        let batches = partition.try_read().map_err(|_| {
            DataFusionError::Internal(format!(
                "in-memory table `{table_ref}` is being written while its plan is sent"
            ))
        })?;
        for batch in batches.iter() {
            writer.write(batch)?;
        }
    }
    writer.finish()?;
    Ok(())
}

fn decode_memory_table(ipc: &[u8], table_ref: &TableReference) -> Result<Arc<dyn TableProvider>> {
    let reader = StreamReader::try_new(Cursor::new(ipc), None).map_err(|e| {
        DataFusionError::Internal(format!(
            "in-memory table `{table_ref}` arrived damaged: {e}"
        ))
    })?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn an_in_memory_table_round_trips_with_its_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema.clone(), vec![vec![batch.clone()], vec![]]).unwrap();
        let codec = LakehouseCodec::default();
        let name = TableReference::bare("rows");
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&name, Arc::new(table), &mut buf)
            .unwrap();
        let ctx = SessionContext::new();
        let decoded = codec
            .try_decode_table_provider(&buf, &name, schema.clone(), &ctx.task_ctx())
            .unwrap();
        assert_eq!(decoded.schema(), schema);
        let rows = ctx.read_table(decoded).unwrap().collect().await.unwrap();
        assert_eq!(rows, vec![batch]);
    }

    #[test]
    fn other_tables_are_refused_by_name() {
        let codec = LakehouseCodec::default();
        let provider: Arc<dyn TableProvider> = Arc::new(
            datafusion::datasource::empty::EmptyTable::new(Arc::new(Schema::empty())),
        );
        let err = codec
            .try_encode_table_provider(&TableReference::bare("odd"), provider, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`odd`"), "{err}");
    }
}
