//! `lakehouse query "<SQL>"`: ad hoc DataFusion SQL over every bronze, silver
//! and gold table (and the system tables) by name.

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;

use super::catalog::Catalog;
use super::{GoldConfig, Marts};
use crate::delta::session;
use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// Output format of `lakehouse query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A boxed text table.
    #[default]
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines, one object per row.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format `{other}` (table, csv, json)")),
        }
    }
}

/// A session with every existing table of the lakehouse under `root`
/// registered: bronze's, the `silver_tables` and their quarantines, the
/// `marts` and the system tables.
pub async fn session(
    marts: &Marts,
    silver_tables: &[String],
    config: &GoldConfig,
    root: &StorageRoot,
) -> Result<SessionContext> {
    let ctx = session::new_session(&config.session_limits())?;
    root.register_object_store(&ctx)?;
    let catalog = Catalog::open(root, silver_tables, marts).await?;
    catalog.register(&ctx).await?;
    Ok(ctx)
}

/// Runs `sql` and returns the batches; errors quote the SQL and point at the
/// position (line, column) the parser or planner reports.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    let result = async { ctx.sql(sql).await?.collect().await }.await;
    result.map_err(|e| Error::Condition(describe_error(sql, &e)))
}

/// Formats `batches` in `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => arrow::util::pretty::pretty_format_batches(batches)?.to_string() + "\n",
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            String::from_utf8_lossy(&out).into_owned()
        }
    })
}

/// The error with the SQL line it points at and a caret under the column.
pub fn describe_error(sql: &str, error: &datafusion::error::DataFusionError) -> String {
    crate::spec::describe_sql_error(sql, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_point_at_the_position() {
        let ctx = SessionContext::new();
        let sql = "SELECT 1\nFROM nowhere_table";
        let err = run(&ctx, sql).await.unwrap_err().to_string();
        assert!(err.contains("nowhere_table"), "{err}");
        let sql = "SELECT 1,\n  FROM FROM";
        let err = run(&ctx, sql).await.unwrap_err().to_string();
        assert!(err.contains("at line 2"), "{err}");
        assert!(err.contains('^'), "{err}");
    }

    #[tokio::test]
    async fn renders_table_csv_json() {
        let ctx = SessionContext::new();
        let batches = run(&ctx, "SELECT 1 AS a, 'x' AS b").await.unwrap();
        assert!(
            render(&batches, Format::Table)
                .unwrap()
                .contains("| a | b |")
        );
        assert_eq!(render(&batches, Format::Csv).unwrap(), "a,b\n1,x\n");
        assert_eq!(
            render(&batches, Format::Json).unwrap(),
            "{\"a\":1,\"b\":\"x\"}\n"
        );
    }
}
