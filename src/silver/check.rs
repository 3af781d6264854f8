//! Checking a table spec without data, for `lakehouse validate`.
//!
//! The same planning a run does, over an empty source view: the SQL is
//! planned against the spec's declared source columns, the lookups against
//! the planned columns of the tables they look up, the expectations over
//! the SQL's columns, and a date dimension's `covers` against the columns
//! of the tables it covers. The result is the table's Delta columns, which
//! later tables' lookups and the gold marts plan against.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

use super::layout::Layout;
use super::spec::{Kind, Pipeline, TableSpec};
use super::{date_dim, lookups, plan};
use crate::error::Result;

/// Plans `spec` in `ctx` with no data and returns its table's columns.
/// `planned` holds the columns of the tables already checked (every table
/// `spec` depends on comes first in `pipeline`'s order).
pub async fn table_schema(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    spec: &TableSpec,
    planned: &BTreeMap<String, SchemaRef>,
) -> Result<SchemaRef> {
    if spec.kind == Kind::Date {
        for cover in spec.date.iter().flat_map(|d| d.covers.iter()) {
            let Some((table, column)) = cover.split_once('.') else {
                continue;
            };
            let schema = planned.get(table).ok_or_else(|| {
                spec.error(format!(
                    "date.covers: `{cover}`: `{table}` did not plan (see its errors)"
                ))
            })?;
            if schema.field_with_name(column).is_err() {
                return Err(spec.error(format!(
                    "date.covers: `{cover}`: `{table}` has no column `{column}`"
                )));
            }
        }
        return Ok(date_dim::schema());
    }
    plan::register_source(ctx, spec, &[]).await?;
    let result = async {
        let shaped = plan::shape(ctx, spec).await?;
        let lookups = lookups::declared(pipeline, spec, planned)?;
        let layout = Layout::new(spec, &shaped, &lookups)?;
        // Plans the expectations over the SQL's columns.
        plan::changes_frame(ctx, spec, &shaped).await?;
        Ok(layout.table_schema)
    }
    .await;
    plan::deregister_source(ctx, spec)?;
    let _ = ctx.deregister_table(format!("__shaped_{}", spec.name))?;
    result
}

/// The columns of a silver table's quarantine (`<table>_quarantine`).
pub fn quarantine_schema() -> SchemaRef {
    super::side::quarantine_schema()
}
