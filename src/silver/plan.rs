//! From bronze rows to shaped rows: the source view and the table's SQL.
//!
//! The engine registers, under the spec's `source.name`, a view over the new
//! bronze rows of the topic: every declared column, read from `after` when
//! the change has an after image (else `before`, else the Kafka key; see
//! `column_value`), cast to its declared type, plus metadata
//! columns (`_op`, `_is_delete`, `_position`, ...). The table's SQL is a
//! row-wise `SELECT` over that view. The engine plans it with DataFusion,
//! checks that the plan is row-wise (projection, at most one filter, the
//! source scan) and appends the metadata columns to its top projection, so
//! the SQL never has to carry them. A `WHERE` is not applied as a filter:
//! it becomes the `_keep` column, and a change whose row no longer matches
//! deletes the key, like a materialised view would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};

use super::changes::BronzeFile;
use super::spec::{Kind, RESERVED, TableSpec};
use crate::error::Result;
use crate::tables::bronze::events_schema;

/// Metadata columns of the source view, carried through the SQL.
pub const META: &[&str] = &[
    "_op",
    "_is_delete",
    "_is_tombstone",
    "_is_truncate",
    "_position",
    "_source_ts_ms",
    "_kafka_partition",
    "_kafka_offset",
    "_unavailable",
];

/// The column a `WHERE` turns into.
pub const KEEP: &str = "_keep";

/// Debezium's placeholder for an unchanged TOASTed Postgres value.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// A table's SQL, planned and checked.
#[derive(Debug, Clone)]
pub struct Shaped {
    /// The plan: the SQL's columns, then [`META`], then [`KEEP`] when the SQL filters.
    pub plan: LogicalPlan,
    /// The SQL's own output columns, with plain (non-view) types, all nullable.
    pub data_schema: SchemaRef,
    /// Whether the plan has a [`KEEP`] column.
    pub has_keep: bool,
    /// Per output column: the source columns it reads (for TOAST placeholders).
    pub lineage: BTreeMap<String, BTreeSet<String>>,
}

fn bronze_relation(table: &str) -> String {
    format!("__bronze_{table}")
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether the map column `map` has an entry named `key` (an SQL literal),
/// whatever its value: Debezium writes a NULL column as an entry with a null
/// value, so `map[key] IS NULL` alone cannot tell NULL from absent.
fn has_entry(map: &str, key: &str) -> String {
    format!("array_has(map_keys({map}), {key})")
}

/// The raw text of column `c` (an SQL literal) in a change.
///
/// A change with an after image (create, update, snapshot read, or an
/// unwrapped delete rewritten with `__deleted`) is read from `after` alone:
/// a column set to NULL is NULL even when `before` (REPLICA IDENTITY FULL,
/// MySQL full row images) still holds the old value. A column that `after`
/// lacks falls back to the Kafka key, and failing that is reported in
/// `_unavailable`, so the table keeps its held value. A delete is read from
/// `before`, else the key; a tombstone from the key.
fn column_value(c: &str) -> String {
    let in_after = has_entry("after", c);
    format!(
        "(CASE WHEN after[{c}] IS NOT NULL THEN after[{c}] \
         WHEN after IS NOT NULL THEN CASE WHEN {in_after} THEN NULL ELSE \"key\"[{c}] END \
         ELSE coalesce(before[{c}], \"key\"[{c}]) END)"
    )
}

/// The SQL of the source view over `relation`.
fn source_sql(spec: &TableSpec, relation: &str) -> Option<String> {
    let source = spec.source.as_ref()?;
    let mut select = Vec::new();
    let mut unavailable = Vec::new();
    for (column, ty) in &source.columns {
        let c = literal(column);
        let raw = column_value(&c);
        select.push(format!(
            "CAST(CASE WHEN {raw} = {placeholder} THEN NULL ELSE {raw} END AS {ty}) AS {name}",
            placeholder = literal(UNAVAILABLE),
            name = quote(column),
        ));
        // The entry test runs only on rows whose after value is NULL (a CASE
        // evaluates a branch on the rows that reach it).
        unavailable.push(format!(
            "CASE WHEN after[{c}] = {placeholder} THEN {c} \
             WHEN after[{c}] IS NULL AND after IS NOT NULL AND \"key\"[{c}] IS NULL \
             THEN CASE WHEN {in_after} THEN NULL ELSE {c} END END",
            placeholder = literal(UNAVAILABLE),
            in_after = has_entry("after", &c),
        ));
    }
    let unavailable = format!("nullif(concat_ws(',', {}), '')", unavailable.join(", "));
    let position = "source_position".to_string();
    select.extend([
        "op AS _op".to_string(),
        "(record_kind = 'tombstone' OR coalesce(op, '') = 'd' OR coalesce(after['__deleted'], '') = 'true') AS _is_delete".to_string(),
        "(record_kind = 'tombstone') AS _is_tombstone".to_string(),
        "(coalesce(op, '') = 't') AS _is_truncate".to_string(),
        format!("{position} AS _position"),
        "source_ts_ms AS _source_ts_ms".to_string(),
        "kafka_partition AS _kafka_partition".to_string(),
        "kafka_offset AS _kafka_offset".to_string(),
        format!("{unavailable} AS _unavailable"),
    ]);
    let inner = format!("SELECT {} FROM {relation}", select.join(",\n  "));
    Some(match &source.sequence_by {
        None => inner,
        Some(expr) => {
            let mut columns: Vec<String> = source.columns.keys().map(|c| quote(c)).collect();
            columns.extend(
                META.iter()
                    .filter(|m| **m != "_position")
                    .map(|m| m.to_string()),
            );
            format!(
                "SELECT {}, CAST(({expr}) AS DECIMAL(38, 0)) AS _position FROM ({inner}) AS __typed",
                columns.join(", ")
            )
        }
    })
}

/// Registers the bronze rows of `files` and the source view over them (an
/// empty view when there are no files, which is how SQL is checked).
pub async fn register_source(
    ctx: &SessionContext,
    spec: &TableSpec,
    files: &[BronzeFile],
) -> Result<()> {
    let Some(source) = &spec.source else {
        return Ok(());
    };
    let relation = bronze_relation(&spec.name);
    let _ = ctx.deregister_table(&relation)?;
    let _ = ctx.deregister_table(&source.name)?;
    if files.is_empty() {
        let fields: Vec<Field> = events_schema()
            .fields()
            .iter()
            .filter(|f| f.name() != "topic")
            .map(|f| f.as_ref().clone())
            .collect();
        let schema = Arc::new(Schema::new(fields));
        ctx.register_table(
            &relation,
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
    } else {
        let urls: Vec<String> = files.iter().map(|f| f.url.clone()).collect();
        let df = ctx
            .read_parquet(urls, ParquetReadOptions::default())
            .await?;
        ctx.register_table(&relation, df.into_view())?;
    }
    let Some(sql) = source_sql(spec, &relation) else {
        return Ok(());
    };
    let view = match ctx.sql(&sql).await {
        Ok(view) => view,
        Err(e) => {
            // Name the column whose type does not plan.
            for (column, ty) in &source.columns {
                let probe = format!("SELECT CAST(NULL AS {ty}) AS x");
                if ctx.sql(&probe).await.is_err() {
                    return Err(spec.error(format!(
                        "source.columns.{column}: `{ty}` is not a SQL type DataFusion knows"
                    )));
                }
            }
            if let Some(expr) = &source.sequence_by {
                return Err(spec.error(format!("source.sequence_by: `{expr}` does not plan: {e}")));
            }
            return Err(spec.error(format!("source: the source view does not plan: {e}")));
        }
    };
    ctx.register_table(&source.name, view.into_view())?;
    Ok(())
}

/// Removes what [`register_source`] registered.
pub fn deregister_source(ctx: &SessionContext, spec: &TableSpec) -> Result<()> {
    let _ = ctx.deregister_table(bronze_relation(&spec.name))?;
    if let Some(source) = &spec.source {
        let _ = ctx.deregister_table(&source.name)?;
    }
    Ok(())
}

fn plain_type(ty: &DataType) -> DataType {
    match ty {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, value) => plain_type(value),
        other => other.clone(),
    }
}

fn node_name(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Aggregate(_) => "an aggregation (GROUP BY / aggregate function)".into(),
        LogicalPlan::Distinct(_) => "DISTINCT".into(),
        LogicalPlan::Window(_) => "a window function".into(),
        LogicalPlan::Join(_) => "a join".into(),
        LogicalPlan::Union(_) => "UNION".into(),
        LogicalPlan::Sort(_) => "ORDER BY".into(),
        LogicalPlan::Limit(_) => "LIMIT".into(),
        LogicalPlan::Subquery(_) => "a subquery".into(),
        other => format!("a {} node", other.display()),
    }
}

/// Checks the part of the plan under the top projection (and filter): only
/// aliases over the scan of the source view.
fn check_input(
    spec: &TableSpec,
    plan: &LogicalPlan,
    source: &str,
    view: Option<&LogicalPlan>,
) -> Result<()> {
    match plan {
        // DataFusion inlines the source view as `SubqueryAlias(source, view plan)`.
        LogicalPlan::SubqueryAlias(alias)
            if alias.alias.table() == source && view.is_some_and(|v| v == alias.input.as_ref()) =>
        {
            Ok(())
        }
        LogicalPlan::SubqueryAlias(alias) => check_input(spec, &alias.input, source, view),
        LogicalPlan::TableScan(scan) => {
            if scan.table_name.table() == source {
                Ok(())
            } else {
                Err(spec.sql_error(format!(
                    "reads `{}`; a silver SQL reads only its source `{source}` (facts get other tables through [[lookups]])",
                    scan.table_name
                )))
            }
        }
        other => Err(spec.sql_error(format!(
            "is not row-wise: it uses {}; silver SQL shapes one change at a time (SELECT expressions and an optional WHERE over `{source}`)",
            node_name(other)
        ))),
    }
}

fn check_expr(spec: &TableSpec, expr: &Expr) -> Result<()> {
    let bad = expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::InSubquery(_)
                | Expr::Exists(_)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
        ) || e.is_volatile_node())
    })?;
    if bad {
        return Err(spec.sql_error(format!(
            "`{expr}` is not row-wise and deterministic (subqueries, aggregates, windows and volatile functions such as random() are not allowed)"
        )));
    }
    Ok(())
}

/// Plans the table's SQL over the registered source view.
pub async fn shape(ctx: &SessionContext, spec: &TableSpec) -> Result<Shaped> {
    let (Some(sql), Some(source)) = (&spec.sql, &spec.source) else {
        return Err(spec.error("a date dimension has no SQL"));
    };
    let plan = ctx.state().create_logical_plan(sql).await.map_err(|e| {
        spec.sql_error(format!(
            "does not plan: {}",
            crate::spec::describe_sql_error(sql, &e)
        ))
    })?;
    let LogicalPlan::Projection(top) = &plan else {
        return Err(spec.sql_error(format!(
            "must be a single row-wise SELECT, but its outermost operation is {}",
            node_name(&plan)
        )));
    };
    let (input, keep) = match top.input.as_ref() {
        LogicalPlan::Filter(filter) => (filter.input.clone(), Some(filter.predicate.clone())),
        _ => (top.input.clone(), None),
    };
    let view = ctx.table_provider(source.name.as_str()).await?;
    let view = view.get_logical_plan();
    check_input(spec, &input, &source.name, view.as_deref())?;
    for expr in top.expr.iter().chain(keep.iter()) {
        check_expr(spec, expr)?;
    }

    let mut fields = Vec::new();
    let mut lineage = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (expr, field) in top.expr.iter().zip(top.schema.fields()) {
        let name = field.name().clone();
        if !seen.insert(name.clone()) {
            return Err(spec.sql_error(format!("column `{name}` appears twice")));
        }
        if RESERVED.contains(&name.as_str()) || META.contains(&name.as_str()) || name == KEEP {
            return Err(spec.sql_error(format!(
                "column `{name}` is reserved for the engine; rename it"
            )));
        }
        if spec.surrogate_key.as_deref() == Some(name.as_str()) {
            return Err(spec.sql_error(format!(
                "column `{name}` is the surrogate key, which the engine generates"
            )));
        }
        let refs: BTreeSet<String> = expr
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        lineage.insert(name.clone(), refs);
        fields.push(Field::new(name, plain_type(field.data_type()), true));
    }
    let has = |c: &str| seen.contains(c);
    for key in &spec.keys {
        if !has(key) {
            return Err(spec.sql_error(format!(
                "does not select the key column `{key}` declared in {}",
                spec.file.display()
            )));
        }
    }
    for column in spec.track.iter().flatten().chain(spec.partition_by.iter()) {
        if !has(column) {
            return Err(spec.sql_error(format!(
                "does not select `{column}`, which {} tracks or partitions by",
                spec.file.display()
            )));
        }
    }
    if spec.kind == Kind::Fact {
        let mut available = seen.clone();
        for (index, lookup) in spec.lookups.iter().enumerate() {
            for column in lookup.on.keys().chain(lookup.as_of.iter()) {
                if !available.contains(column) {
                    return Err(spec.error(format!(
                        "lookups[{index}]: `{column}` is neither a column of {} nor fetched by an earlier lookup",
                        spec.sql_file.display()
                    )));
                }
            }
            for column in lookup.columns.keys().chain(std::iter::once(&lookup.key)) {
                if !available.insert(column.clone()) {
                    return Err(spec.error(format!(
                        "lookups[{index}]: column `{column}` already exists"
                    )));
                }
            }
        }
    }

    let mut exprs = top.expr.clone();
    let input_schema = input.schema();
    for meta in META {
        let (qualifier, field) = input_schema
            .qualified_field_with_unqualified_name(meta)
            .map_err(|_| {
                spec.sql_error(format!(
                    "the source's metadata column `{meta}` is not reachable"
                ))
            })?;
        exprs.push(Expr::Column(datafusion::common::Column::new(
            qualifier.cloned(),
            field.name(),
        )));
    }
    if let Some(keep) = &keep {
        exprs.push(keep.clone().alias(KEEP));
    }
    let projection = Projection::try_new(exprs, input)
        .map_err(|e| spec.sql_error(format!("cannot carry the metadata columns: {e}")))?;
    Ok(Shaped {
        plan: LogicalPlan::Projection(projection),
        data_schema: Arc::new(Schema::new(fields)),
        has_keep: keep.is_some(),
        lineage,
    })
}

/// The shaped rows with expectation results, sorted by key and Kafka order.
pub async fn changes_frame(
    ctx: &SessionContext,
    spec: &TableSpec,
    shaped: &Shaped,
) -> Result<DataFrame> {
    let view = format!("__shaped_{}", spec.name);
    let _ = ctx.deregister_table(&view)?;
    let df = DataFrame::new(ctx.state(), shaped.plan.clone());
    ctx.register_table(&view, df.into_view())?;
    let mut select = vec!["*".to_string()];
    for (index, expectation) in spec.expectations.iter().enumerate() {
        let probe = format!("SELECT ({}) IS TRUE FROM {view}", expectation.expr);
        if let Err(e) = ctx.sql(&probe).await {
            return Err(spec.error(format!(
                "expectations[{index}].expr: `{}` does not plan over the SQL's columns: {e}",
                expectation.expr
            )));
        }
        select.push(format!(
            "(({}) IS TRUE) AS {}",
            expectation.expr,
            quote(&expectation_column(index))
        ));
    }
    let mut order: Vec<String> = spec
        .keys
        .iter()
        .map(|k| format!("{} NULLS FIRST", quote(k)))
        .collect();
    order.push("_kafka_partition".into());
    order.push("_kafka_offset".into());
    let sql = format!(
        "SELECT {} FROM {view} ORDER BY {}",
        select.join(", "),
        order.join(", ")
    );
    Ok(ctx.sql(&sql).await?)
}

/// Name of the boolean column holding expectation `index`'s result.
pub fn expectation_column(index: usize) -> String {
    format!("_expect_{index}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::silver::spec::parse_spec;

    fn spec(sql: &str) -> TableSpec {
        let mut spec = parse_spec(
            Path::new("layers/silver/dim_t.toml"),
            r#"
kind = "scd1"
keys = ["customer_id"]
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", email = "VARCHAR", city = "VARCHAR" }
"#,
            Path::new("sql/silver"),
        )
        .unwrap();
        spec.sql = Some(sql.to_string());
        spec
    }

    async fn plan(sql: &str) -> Result<Shaped> {
        let spec = spec(sql);
        let ctx = crate::delta::session::new_session(
            &crate::silver::SilverConfig::default().session_limits(),
        )?;
        register_source(&ctx, &spec, &[]).await?;
        shape(&ctx, &spec).await
    }

    #[tokio::test]
    async fn row_wise_sql_gets_metadata_columns() {
        let shaped = plan("SELECT id AS customer_id, lower(trim(email)) AS email FROM customers WHERE city <> 'x'")
            .await
            .unwrap();
        let names: Vec<String> = shaped
            .plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(&names[..2], &["customer_id", "email"]);
        assert!(names.contains(&"_position".to_string()));
        assert!(shaped.has_keep);
        assert_eq!(shaped.data_schema.fields().len(), 2);
        assert!(shaped.lineage["email"].contains("email"));
    }

    #[tokio::test]
    async fn non_row_wise_sql_is_rejected_with_the_file_name() {
        for (sql, needle) in [
            (
                "SELECT id AS customer_id, count(*) AS n FROM customers GROUP BY id",
                "aggregat",
            ),
            (
                "SELECT DISTINCT id AS customer_id FROM customers",
                "DISTINCT",
            ),
            (
                "SELECT id AS customer_id, row_number() OVER (ORDER BY id) AS r FROM customers",
                "window",
            ),
            (
                "SELECT a.id AS customer_id FROM customers a JOIN customers b ON a.id = b.id",
                "join",
            ),
            ("SELECT email FROM customers", "customer_id"),
            ("SELECT id AS customer_id FROM nowhere", "nowhere"),
            (
                "SELECT id AS customer_id, random() AS r FROM customers",
                "random",
            ),
            ("SELEC id FROM customers", "does not plan"),
        ] {
            let err = plan(sql).await.unwrap_err().to_string();
            assert!(err.contains("sql/silver/dim_t.sql"), "{sql}: {err}");
            assert!(
                err.to_lowercase().contains(&needle.to_lowercase()),
                "{sql}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn bad_source_type_names_the_column() {
        let mut spec = spec("SELECT id AS customer_id FROM customers");
        if let Some(source) = spec.source.as_mut() {
            source.columns.insert("bad".into(), "NOTATYPE".into());
        }
        let ctx = crate::delta::session::new_session(
            &crate::silver::SilverConfig::default().session_limits(),
        )
        .unwrap();
        let err = register_source(&ctx, &spec, &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.columns.bad") && err.contains("dim_t.toml"),
            "{err}"
        );
    }
}
