//! Fact lookups: the surrogate key (and extra columns) of the dimension row
//! a fact row refers to, as valid at the fact's time.
//!
//! For an SCD2 dimension the version whose `[valid_from, valid_to)` holds
//! the fact's `as_of` time is used; a time before the first version takes
//! the first version (the row existed, its history starts later), a time
//! after the last version closed takes the last. Without `as_of` the current
//! version is used. When the dimension row has not arrived yet the key is
//! `-1` (the unknown member) and the fetched columns are null; a later run
//! repairs it. A date dimension needs no join: its key is `yyyymmdd`.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::LAYER;
use super::spec::{Kind, LookupSpec, Pipeline, TableSpec};
use crate::delta::{self, KeyValues};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// The unknown member's surrogate key.
pub const UNKNOWN: i64 = -1;

/// Row-order column added while joining.
const ROW_ID: &str = "__lakehouse_row";

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One resolved lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    spec: LookupSpec,
    target: TableSpec,
    registered: Option<String>,
    /// The target's surrogate key column.
    sk: String,
    /// Types of the fetched columns (fact name → type).
    fetched: Vec<(String, DataType)>,
    /// The target table's version when registered.
    pub version: Option<i64>,
}

impl Lookup {
    /// The looked-up table's name.
    pub fn table(&self) -> &str {
        &self.spec.table
    }
}

/// Registers every lookup target of `fact` in `ctx` and resolves column types.
pub async fn prepare(
    ctx: &SessionContext,
    root: &StorageRoot,
    pipeline: &Pipeline,
    fact: &TableSpec,
) -> Result<Vec<Lookup>> {
    let mut out = Vec::new();
    for (index, spec) in fact.lookups.iter().enumerate() {
        let (target, sk) = check_target(pipeline, fact, index, spec)?;
        if target.kind == Kind::Date {
            out.push(Lookup {
                spec: spec.clone(),
                target,
                registered: None,
                sk,
                fetched: Vec::new(),
                version: None,
            });
            continue;
        }
        let delta = root.open_table(LAYER, &spec.table).await?;
        let registered = format!("__lookup_{}_{index}", fact.name);
        let _ = ctx.deregister_table(&registered)?;
        let mut fetched = Vec::new();
        let version = delta::version(&delta);
        if version.is_some() {
            let provider = crate::delta::session::table_provider(ctx, &delta, &spec.table).await?;
            let schema = provider.schema();
            for (fact_column, column) in &spec.columns {
                let field = schema.field_with_name(column).map_err(|_| {
                    fact.error(format!(
                        "lookups[{index}].columns.{fact_column}: `{}` has no column `{column}`",
                        spec.table
                    ))
                })?;
                fetched.push((fact_column.clone(), field.data_type().clone()));
            }
            ctx.register_table(&registered, provider)?;
        } else {
            return Err(fact.error(format!(
                "lookups[{index}].table: `{}` has not been built yet (it runs before `{}`; check its errors)",
                spec.table, fact.name
            )));
        }
        out.push(Lookup {
            spec: spec.clone(),
            target,
            registered: Some(registered),
            sk,
            fetched,
            version,
        });
    }
    Ok(out)
}

/// Checks lookup `index` of `fact` against the spec of the table it looks
/// up (no data needed): the table exists, has a surrogate key (or is a date
/// dimension), `as_of` is on an SCD2 table and `on` gives all its keys.
/// Returns the target's spec and the key column the lookup adds.
fn check_target(
    pipeline: &Pipeline,
    fact: &TableSpec,
    index: usize,
    spec: &LookupSpec,
) -> Result<(TableSpec, String)> {
    let target = pipeline
        .get(&spec.table)
        .ok_or_else(|| fact.error(format!("lookups[{index}].table: no spec `{}`", spec.table)))?
        .clone();
    if target.kind == Kind::Date {
        if !spec.columns.is_empty() || spec.as_of.is_some() || spec.on.len() != 1 {
            return Err(fact.error(format!(
                "lookups[{index}]: a date dimension lookup takes one `on` date column and no columns/as_of"
            )));
        }
        return Ok((target, "date_key".into()));
    }
    let Some(sk) = target.surrogate_key.clone() else {
        return Err(fact.error(format!(
            "lookups[{index}].table: `{}` has no surrogate_key to look up",
            spec.table
        )));
    };
    if spec.as_of.is_some() && target.kind != Kind::Scd2 {
        return Err(fact.error(format!(
            "lookups[{index}].as_of: `{}` is not an SCD2 dimension",
            spec.table
        )));
    }
    for column in spec.on.values() {
        if !target.keys.contains(column) {
            return Err(fact.error(format!(
                "lookups[{index}].on: `{column}` is not a key of `{}` (keys: {})",
                spec.table,
                target.keys.join(", ")
            )));
        }
    }
    if spec.on.len() != target.keys.len() {
        return Err(fact.error(format!(
            "lookups[{index}].on: give every key of `{}` ({})",
            spec.table,
            target.keys.join(", ")
        )));
    }
    Ok((target, sk))
}

/// `fact`'s lookups resolved against the planned columns of the tables
/// they look up (`schemas`, by table name) instead of the Delta tables, for
/// checking a pipeline without data (`lakehouse validate`).
pub fn declared(
    pipeline: &Pipeline,
    fact: &TableSpec,
    schemas: &std::collections::BTreeMap<String, SchemaRef>,
) -> Result<Vec<Lookup>> {
    let mut out = Vec::new();
    for (index, spec) in fact.lookups.iter().enumerate() {
        let (target, sk) = check_target(pipeline, fact, index, spec)?;
        let mut fetched = Vec::new();
        if target.kind != Kind::Date {
            let schema = schemas.get(&spec.table).ok_or_else(|| {
                fact.error(format!(
                    "lookups[{index}].table: `{}` did not plan (see its errors)",
                    spec.table
                ))
            })?;
            for (fact_column, column) in &spec.columns {
                let field = schema.field_with_name(column).map_err(|_| {
                    fact.error(format!(
                        "lookups[{index}].columns.{fact_column}: `{}` has no column `{column}`",
                        spec.table
                    ))
                })?;
                fetched.push((fact_column.clone(), field.data_type().clone()));
            }
        }
        out.push(Lookup {
            spec: spec.clone(),
            target,
            registered: None,
            sk,
            fetched,
            version: None,
        });
    }
    Ok(out)
}

/// The columns lookups add to a fact row: per lookup its key, then its fetched columns.
pub fn added_fields(lookups: &[Lookup]) -> Vec<Field> {
    let mut fields = Vec::new();
    for lookup in lookups {
        fields.push(Field::new(&lookup.spec.key, DataType::Int64, true));
        for (name, ty) in &lookup.fetched {
            fields.push(Field::new(name, ty.clone(), true));
        }
    }
    fields
}

/// Names of the lookup key columns.
pub fn key_columns(lookups: &[Lookup]) -> Vec<String> {
    lookups.iter().map(|l| l.spec.key.clone()).collect()
}

/// Adds the lookup columns to `batch` (the fact rows), keeping row order.
/// `splits` counts the times rows were split in halves because their
/// lookups did not fit the memory pool.
pub async fn resolve(
    ctx: &SessionContext,
    fact: &str,
    lookups: &[Lookup],
    batch: RecordBatch,
    splits: &mut u64,
) -> Result<RecordBatch> {
    if lookups.is_empty() || batch.num_rows() == 0 {
        return with_empty_lookups(lookups, batch);
    }
    // Number the rows so the joins' output can be put back in order.
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(ROW_ID, DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_iter_values(
        0..batch.num_rows() as i64,
    )));
    let numbered = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let resolved = in_halves(fact, numbered, splits, |rows| {
        resolve_rows(ctx, fact, lookups, rows)
    })
    .await?;
    let Some(first) = resolved.first() else {
        return with_empty_lookups(lookups, batch);
    };
    let current = arrow::compute::concat_batches(&first.schema(), &resolved)?;
    // Back into the input's row order.
    let row_ids = current
        .column_by_name(ROW_ID)
        .ok_or_else(|| Error::Internal(format!("{fact}: the lookups lost the row order")))?;
    let order = arrow::compute::sort_to_indices(row_ids, None, None)?;
    let result = arrow::compute::take_record_batch(&current, &order)?;
    let mut schema_fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    schema_fields.extend(added_fields(lookups));
    let schema: SchemaRef = Arc::new(Schema::new(schema_fields));
    delta::conform(&result, &schema)
}

/// Runs `resolve` over `rows`; while the memory pool refuses (a hash
/// join's table does not spill), over each half of them instead, each
/// half a copy (a slice holds, and the pool counts, all of its parent's
/// buffers). Lookups are row by row, so the halves' results together are
/// the whole's; they come back in row order. `splits` counts the halvings.
async fn in_halves<F, Fut>(
    fact: &str,
    rows: RecordBatch,
    splits: &mut u64,
    mut resolve: F,
) -> Result<Vec<RecordBatch>>
where
    F: FnMut(RecordBatch) -> Fut,
    Fut: std::future::Future<Output = Result<RecordBatch>>,
{
    let mut pending = vec![rows];
    let mut resolved = Vec::new();
    while let Some(rows) = pending.pop() {
        match resolve(rows.clone()).await {
            Ok(done) => resolved.push(done),
            Err(e) if exhausted(&e) && rows.num_rows() >= 2 * MIN_LOOKUP_ROWS => {
                tracing::info!(
                    table = fact,
                    rows = rows.num_rows(),
                    "lookups exceed the memory pool; resolving them in halves"
                );
                *splits += 1;
                let half = rows.num_rows() as u32 / 2;
                let (low, high) = (0..half, half..rows.num_rows() as u32);
                pending.push(take_record_batch(
                    &rows,
                    &UInt32Array::from_iter_values(high),
                )?);
                pending.push(take_record_batch(
                    &rows,
                    &UInt32Array::from_iter_values(low),
                )?);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(resolved)
}

/// Fewest rows a lookup is split down to when the pool is too small.
const MIN_LOOKUP_ROWS: usize = 256;

/// Whether `error` is a DataFusion memory pool refusal.
fn exhausted(error: &Error) -> bool {
    matches!(error, Error::DataFusion(e)
        if matches!(e.find_root(), datafusion::error::DataFusionError::ResourcesExhausted(_)))
}

/// Runs the lookups over `rows` (numbered), one at a time, each step
/// materialized: a lookup whose keys an earlier one fetched (the customer
/// of an order) is then pruned to the rows' keys like the others, and the
/// dimension rows joined are those of the rows, never the whole table.
async fn resolve_rows(
    ctx: &SessionContext,
    fact: &str,
    lookups: &[Lookup],
    mut current: RecordBatch,
) -> Result<RecordBatch> {
    for (index, lookup) in lookups.iter().enumerate() {
        let step = format!("__facts_{fact}_{index}");
        let _ = ctx.deregister_table(&step)?;
        ctx.register_table(
            &step,
            Arc::new(MemTable::try_new(
                current.schema(),
                vec![vec![current.clone()]],
            )?),
        )?;
        let range = key_range(lookup, &current)?;
        let sql = lookup_sql(lookup, &step, range.as_deref())?;
        let collected = run_step(ctx, fact, lookup, &sql).await;
        let _ = ctx.deregister_table(&step)?;
        current = collected?;
    }
    Ok(current)
}

/// Plans and runs one lookup step's SQL into one batch (its physical plan
/// logged at TRACE level).
async fn run_step(
    ctx: &SessionContext,
    fact: &str,
    lookup: &Lookup,
    sql: &str,
) -> Result<RecordBatch> {
    let df = ctx.sql(sql).await.map_err(|e| {
        Error::Condition(format!(
            "{fact}: lookup of `{}` does not plan: {e}",
            lookup.table()
        ))
    })?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    if tracing::enabled!(tracing::Level::TRACE) {
        let plan = df.clone().create_physical_plan().await?;
        tracing::trace!(
            table = fact,
            lookup = lookup.table(),
            plan = %datafusion::physical_plan::displayable(plan.as_ref()).indent(true),
            "lookup plan"
        );
    }
    let parts = crate::delta::session::collect_frame(df).await?;
    Ok(arrow::compute::concat_batches(&schema, &parts)?)
}

fn with_empty_lookups(lookups: &[Lookup], batch: RecordBatch) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    for field in added_fields(lookups) {
        columns.push(
            if field.data_type() == &DataType::Int64
                && lookups.iter().any(|l| &l.spec.key == field.name())
            {
                Arc::new(Int64Array::from(vec![UNKNOWN; batch.num_rows()])) as Arc<dyn Array>
            } else {
                arrow::array::new_null_array(field.data_type(), batch.num_rows())
            },
        );
        fields.push(field);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// A predicate bounding the looked-up table's key columns to the range of
/// the batch's values (`r.k BETWEEN min AND max`), for integer and text
/// keys. Pushed into the Delta scan, it skips the files whose key
/// statistics lie outside: a batch of recent orders reads the newest
/// files of `orders`, not all of them.
fn key_range(lookup: &Lookup, batch: &RecordBatch) -> Result<Option<String>> {
    let mut bounds = Vec::new();
    for (fact_column, column) in &lookup.spec.on {
        let Some(values) = batch.column_by_name(fact_column) else {
            continue;
        };
        let literal = match (values.data_type(), KeyValues::from_array(values.as_ref())?) {
            (_, KeyValues::Int(v)) => v
                .first()
                .zip(v.last())
                .map(|(min, max)| (min.to_string(), max.to_string())),
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, KeyValues::Text(v)) => v
                .first()
                .zip(v.last())
                .map(|(min, max)| (sql_string(min), sql_string(max))),
            _ => None,
        };
        if let Some((min, max)) = literal {
            bounds.push(format!("r.{} BETWEEN {min} AND {max}", quote(column)));
        }
    }
    Ok((!bounds.is_empty()).then(|| bounds.join(" AND ")))
}

fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The join adding `lookup`'s columns to the rows of `from`, which holds
/// the fact columns of `on`: their distinct values restrict the dimension
/// rows joined (and ranked), and `range` is a predicate on those rows
/// (see [`key_range`]).
fn lookup_sql(lookup: &Lookup, from: &str, range: Option<&str>) -> Result<String> {
    let spec = &lookup.spec;
    let key = quote(&spec.key);
    if lookup.target.kind == Kind::Date {
        let (column, _) = spec
            .on
            .iter()
            .next()
            .ok_or_else(|| Error::Internal("date lookup without a column".into()))?;
        let c = format!("f.{}", quote(column));
        return Ok(format!(
            "SELECT f.*, coalesce(CAST(date_part('year', {c}) * 10000 + date_part('month', {c}) * 100 + date_part('day', {c}) AS BIGINT), {UNKNOWN}) AS {key} FROM {from} f"
        ));
    }
    let Some(registered) = &lookup.registered else {
        return Err(Error::Internal(format!(
            "lookup of `{}` is not registered",
            spec.table
        )));
    };
    let sk = quote(&lookup.sk);
    let join = |alias: &str| -> String {
        spec.on
            .iter()
            .map(|(fact_column, column)| {
                format!("f.{} = {alias}.{}", quote(fact_column), quote(column))
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let fetched = |alias: &str| -> String {
        spec.columns
            .iter()
            .map(|(fact_column, column)| {
                format!(", {alias}.{} AS {}", quote(column), quote(fact_column))
            })
            .collect::<String>()
    };
    // The rows' key columns as `__k<i>`, and the dimension's keys equal to them.
    let (wanted, on): (Vec<String>, Vec<String>) = spec
        .on
        .iter()
        .enumerate()
        .map(|(i, (fact_column, column))| {
            (
                format!("{} AS __k{i}", quote(fact_column)),
                format!("r.{} = k.__k{i}", quote(column)),
            )
        })
        .unzip();
    // The rows' distinct keys come first: a hash join builds its table
    // from its left side, and that must be the keys, never the dimension.
    let d = format!(
        "(SELECT r.* FROM (SELECT DISTINCT {} FROM {from}) k JOIN {registered} r ON {}{})",
        wanted.join(", "),
        on.join(" AND "),
        range.map(|r| format!(" WHERE {r}")).unwrap_or_default()
    );
    if lookup.target.kind != Kind::Scd2 {
        return Ok(format!(
            "SELECT f.*, coalesce(d.{sk}, {UNKNOWN}) AS {key}{} FROM {from} f LEFT JOIN {d} d ON {}",
            fetched("d"),
            join("d")
        ));
    }
    // SCD2: the version valid at `as_of`, else the first or the last one.
    let micros =
        |e: &str| format!("CAST(arrow_cast({e}, 'Timestamp(Microsecond, None)') AS BIGINT)");
    let valid_at = match &spec.as_of {
        Some(as_of) => {
            let t = micros(&format!("f.{}", quote(as_of)));
            format!(
                "{t} >= {vf} AND {t} < {vt}",
                vf = micros("m.valid_from"),
                vt = micros("m.valid_to")
            )
        }
        None => "m.is_current".to_string(),
    };
    let before_first = match &spec.as_of {
        Some(as_of) => format!(
            "{} < {}",
            micros(&format!("f.{}", quote(as_of))),
            micros("e.valid_from")
        ),
        None => "false".to_string(),
    };
    let keys: Vec<String> = spec.on.values().map(|c| quote(c)).collect();
    let keys = keys.join(", ");
    let ranked = format!(
        "(SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY valid_from ASC) AS __first, \
          row_number() OVER (PARTITION BY {keys} ORDER BY valid_from DESC) AS __last FROM {d})"
    );
    let cols = |alias: &str| -> String {
        spec.columns
            .iter()
            .map(|(fact_column, column)| {
                format!(
                    ", CASE WHEN m.{sk} IS NOT NULL THEN m.{c} WHEN {before_first} THEN e.{c} ELSE {alias}.{c} END AS {}",
                    quote(fact_column),
                    c = quote(column)
                )
            })
            .collect::<String>()
    };
    Ok(format!(
        "SELECT f.*, coalesce(m.{sk}, CASE WHEN {before_first} THEN e.{sk} ELSE l.{sk} END, {UNKNOWN}) AS {key}{cols} \
         FROM {from} f \
         LEFT JOIN {d} m ON {jm} AND {valid_at} \
         LEFT JOIN (SELECT * FROM {ranked} WHERE __first = 1) e ON {je} \
         LEFT JOIN (SELECT * FROM {ranked} WHERE __last = 1) l ON {jl}",
        cols = cols("l"),
        jm = join("m"),
        je = join("e"),
        jl = join("l"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::error::DataFusionError;

    fn numbers(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    fn values(parts: &[RecordBatch]) -> Vec<i64> {
        parts
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                column.values().to_vec()
            })
            .collect()
    }

    /// A resolver whose pool holds `fits` rows at most.
    fn pool_of(fits: usize) -> impl FnMut(RecordBatch) -> std::future::Ready<Result<RecordBatch>> {
        move |rows: RecordBatch| {
            std::future::ready(if rows.num_rows() > fits {
                Err(Error::DataFusion(DataFusionError::Context(
                    "collect".into(),
                    Box::new(DataFusionError::ResourcesExhausted("pool".into())),
                )))
            } else {
                Ok(rows)
            })
        }
    }

    #[tokio::test]
    async fn refused_rows_resolve_in_halves_in_row_order() {
        let mut splits = 0;
        let parts = in_halves("f", numbers(10_000), &mut splits, pool_of(1_500))
            .await
            .unwrap();
        // 10,000 → 2 × 5,000 → 4 × 2,500 → 8 × 1,250: 1 + 2 + 4 refusals.
        assert_eq!(splits, 7);
        assert_eq!(parts.len(), 8);
        assert_eq!(values(&parts), (0..10_000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn rows_that_fit_are_not_split() {
        let mut splits = 0;
        let parts = in_halves("f", numbers(1_000), &mut splits, pool_of(1_000))
            .await
            .unwrap();
        assert_eq!((splits, parts.len()), (0, 1));
    }

    #[tokio::test]
    async fn a_pool_too_small_for_the_fewest_rows_is_an_error() {
        let mut splits = 0;
        let error = in_halves("f", numbers(4_096), &mut splits, pool_of(100))
            .await
            .unwrap_err();
        assert!(exhausted(&error), "{error}");
        // 4,096 → 2,048 → 1,024 → 512 → 256 rows, which may not split further.
        assert_eq!(splits, 4);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let mut splits = 0;
        let error = in_halves("f", numbers(4_096), &mut splits, |_| {
            std::future::ready(Err(Error::Condition("broken".into())))
        })
        .await
        .unwrap_err();
        assert_eq!((splits, error.to_string()), (0, "broken".to_string()));
    }
}
