//! Applies the simulated database's changes to a real Postgres with sqlx, so a
//! real Debezium connector can capture them (the docker-compose stack).
//!
//! The schema comes from [`crate::ddl`]. The initial rows are inserted in one
//! transaction (Debezium's snapshot reads them), then every simulated
//! [`Transaction`](crate::Transaction) is applied as one SQL transaction with the
//! same INSERT/UPDATE/DELETE statements in the same order, so the WAL — and thus
//! Debezium's stream — has the simulator's transaction boundaries.
//!
//! Restarts are idempotent: the number of simulated transactions applied is kept
//! in `lakehouse_mock.progress` (a schema outside the publication), updated in
//! the same SQL transaction as the changes. A restart with the same simulation
//! parameters regenerates the (deterministic) stream, skips what was applied and
//! continues; a restart with other parameters is refused unless `reset` drops
//! the tables first. Killing the process at any moment loses nothing and
//! applies nothing twice.

use crate::ddl;
use crate::model::{Column, ColumnType, RowValues, Table, Value};
use crate::pace::Pacer;
use crate::{Change, Op, SimConfig, Simulator};
use sqlx::postgres::{PgArguments, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Errors of the Postgres mode.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A database call failed.
    #[error("{what}: {source}")]
    Sql {
        /// What was being done.
        what: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The database holds another simulation's rows.
    #[error(
        "the database holds the rows of another simulation ({found}); this run is ({expected}). Use --reset to drop the shop tables and start over"
    )]
    OtherSimulation {
        /// Parameters recorded in the database.
        found: String,
        /// Parameters of this run.
        expected: String,
    },
    /// The database diverged from the simulation (a row to change is missing).
    #[error(
        "{table}: {op} of key {key} matched {rows} rows, expected 1 (was the database changed by something else?)"
    )]
    Diverged {
        /// The table.
        table: &'static str,
        /// `UPDATE` or `DELETE`.
        op: &'static str,
        /// The row's key values.
        key: String,
        /// Rows matched.
        rows: u64,
    },
    /// A value does not fit its column (a simulator bug).
    #[error("{table}.{column}: value {value:?} does not fit type {ty:?}")]
    Value {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value.
        value: Value,
        /// The column type.
        ty: ColumnType,
    },
}

fn sql_err(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Sql { what, source }
}

/// What to apply.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connection URL.
    pub url: String,
    /// The simulation.
    pub sim: SimConfig,
    /// Stop once this many data changes (initial rows included) were applied
    /// in total, across restarts; 0 = never stop.
    pub changes: u64,
    /// Target data changes per second (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// Drop the shop tables and the progress first.
    pub reset: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct PgSummary {
    /// Simulated transactions found applied by an earlier run (skipped).
    pub resumed_transactions: u64,
    /// Simulated transactions applied by this run (the initial rows count as one).
    pub transactions: u64,
    /// Data changes applied by this run.
    pub changes: u64,
    /// Data changes applied in total, across runs.
    pub total_changes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Creates the schema (idempotent).
pub async fn create_schema(pool: &PgPool) -> Result<(), PgError> {
    sqlx::raw_sql(AssertSqlSafe(ddl::schema_sql()))
        .execute(pool)
        .await
        .map_err(sql_err("cannot create the shop schema"))?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS lakehouse_mock;
         CREATE TABLE IF NOT EXISTS lakehouse_mock.progress (
             id integer PRIMARY KEY CHECK (id = 1),
             simulation text NOT NULL,
             transactions bigint NOT NULL,
             changes bigint NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .execute(pool)
    .await
    .map_err(sql_err("cannot create lakehouse_mock.progress"))?;
    Ok(())
}

/// Drops the shop tables, the publication and the progress.
pub async fn drop_schema(pool: &PgPool) -> Result<(), PgError> {
    let tables: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("public.{}", t.name()))
        .collect();
    let sql = format!(
        "DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS {} CASCADE; DROP SCHEMA IF EXISTS lakehouse_mock CASCADE;",
        ddl::PUBLICATION,
        tables.join(", ")
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(pool)
        .await
        .map_err(sql_err("cannot drop the shop schema"))?;
    Ok(())
}

/// The parameters that determine the simulated stream, as recorded in the progress table.
fn fingerprint(sim: &SimConfig) -> String {
    format!(
        "seed={} start={} customers={} products={} sellers={} warehouses={} orders_per_hour={} background_per_hour={}",
        sim.seed,
        sim.start,
        sim.customers,
        sim.products,
        sim.sellers,
        sim.warehouses,
        sim.orders_per_hour,
        sim.background_per_hour
    )
}

/// What `lakehouse_mock.progress` records: simulation parameters, simulated
/// transactions applied and data changes applied (initial rows included).
pub type Progress = (String, i64, i64);

/// Reads the progress of the runs so far (`None`: nothing applied yet).
pub async fn progress(url: &str) -> Result<Option<Progress>, PgError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(sql_err("cannot connect to the source Postgres"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('lakehouse_mock.progress') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .map_err(sql_err("cannot look for lakehouse_mock.progress"))?;
    let result = if exists {
        read_progress(&pool).await
    } else {
        Ok(None)
    };
    pool.close().await;
    result
}

async fn read_progress(pool: &PgPool) -> Result<Option<Progress>, PgError> {
    sqlx::query_as(
        "SELECT simulation, transactions, changes FROM lakehouse_mock.progress WHERE id = 1",
    )
    .fetch_optional(pool)
    .await
    .map_err(sql_err("cannot read lakehouse_mock.progress"))
}

/// Applies the simulation to Postgres; see the module docs.
pub async fn run(options: &PgOptions) -> Result<PgSummary, PgError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&options.url)
        .await
        .map_err(sql_err("cannot connect to the source Postgres"))?;
    if options.reset {
        drop_schema(&pool).await?;
    }
    create_schema(&pool).await?;
    let result = apply(&pool, options).await;
    pool.close().await;
    result
}

async fn apply(pool: &PgPool, options: &PgOptions) -> Result<PgSummary, PgError> {
    let started = Instant::now();
    let expected = fingerprint(&options.sim);
    let progress = read_progress(pool).await?;
    let mut sim = Simulator::new(SimConfig {
        history: 0,
        ..options.sim.clone()
    });
    let mut statements = Statements::default();
    let mut summary = PgSummary::default();
    let snapshot = sim.snapshot();
    let mut total = snapshot.changes.len() as u64;
    let mut applied_txs = 0u64;
    match progress {
        Some((found, _, _)) if found != expected => {
            return Err(PgError::OtherSimulation { found, expected });
        }
        Some((_, transactions, changes)) => {
            // Regenerate what earlier runs applied; only the simulator's state is needed.
            let transactions = transactions.max(0) as u64;
            while applied_txs < transactions {
                total += sim.next_transaction().changes.len() as u64;
                applied_txs += 1;
            }
            if total != changes as u64 {
                return Err(PgError::OtherSimulation {
                    found: format!("{transactions} transactions with {changes} changes"),
                    expected: format!("{transactions} transactions with {total} changes"),
                });
            }
            summary.resumed_transactions = transactions;
            tracing::info!(
                transactions,
                changes,
                "resuming after the applied transactions"
            );
        }
        None => {
            let mut tx = pool.begin().await.map_err(sql_err("BEGIN"))?;
            for change in &snapshot.changes {
                statements.apply(&mut tx, change).await?;
            }
            sqlx::query(
                "INSERT INTO lakehouse_mock.progress (id, simulation, transactions, changes) VALUES (1, $1, 0, $2)",
            )
            .bind(&expected)
            .bind(total as i64)
            .execute(&mut *tx)
            .await
            .map_err(sql_err("cannot record the progress"))?;
            tx.commit()
                .await
                .map_err(sql_err("cannot commit the initial rows"))?;
            summary.transactions += 1;
            summary.changes += total;
            tracing::info!(rows = total, "initial rows inserted");
        }
    }

    let mut pacer = Pacer::new(options.rate);
    let mut last_log = Instant::now();
    while options.changes == 0 || total < options.changes {
        let simulated = sim.next_transaction();
        let n = simulated.changes.len() as u64;
        let mut tx = pool.begin().await.map_err(sql_err("BEGIN"))?;
        for change in &simulated.changes {
            statements.apply(&mut tx, change).await?;
        }
        applied_txs += 1;
        total += n;
        sqlx::query(
            "UPDATE lakehouse_mock.progress SET transactions = $1, changes = $2, updated_at = now() WHERE id = 1",
        )
        .bind(applied_txs as i64)
        .bind(total as i64)
        .execute(&mut *tx)
        .await
        .map_err(sql_err("cannot record the progress"))?;
        tx.commit().await.map_err(sql_err("COMMIT"))?;
        summary.transactions += 1;
        summary.changes += n;
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                transactions = summary.transactions,
                changes = summary.changes,
                total_changes = total,
                rate = format!("{:.0} changes/s", summary.changes as f64 / secs),
                "applying"
            );
        }
        let wait = pacer.record(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    summary.total_changes = total;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The SQL of each (table, op), built once (sqlx then prepares each once).
#[derive(Default)]
struct Statements {
    cache: HashMap<(Table, u8), Arc<str>>,
}

impl Statements {
    fn sql(&mut self, table: Table, op: Op) -> Arc<str> {
        let code = match op {
            Op::Read | Op::Create => 0,
            Op::Update => 1,
            Op::Delete => 2,
        };
        self.cache
            .entry((table, code))
            .or_insert_with(|| build_sql(table, op).into())
            .clone()
    }

    async fn apply(
        &mut self,
        tx: &mut sqlx::Transaction<'static, Postgres>,
        change: &Change,
    ) -> Result<(), PgError> {
        let table = change.table;
        let sql = self.sql(table, change.op);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        let columns = table.columns();
        let (rows_image, key_image, op_name) = match change.op {
            Op::Read | Op::Create => (change.after.as_ref(), None, "INSERT"),
            Op::Update => (change.after.as_ref(), change.before.as_ref(), "UPDATE"),
            Op::Delete => (None, change.before.as_ref(), "DELETE"),
        };
        if let Some(row) = rows_image {
            for column in columns {
                query = bind(query, table, column, value_of(row, column.name))?;
            }
        }
        if let Some(row) = key_image {
            for column in columns.iter().filter(|c| c.primary_key) {
                query = bind(query, table, column, value_of(row, column.name))?;
            }
        }
        let done = query
            .execute(&mut **tx)
            .await
            .map_err(sql_err(format!("{op_name} into {table}")))?;
        if done.rows_affected() != 1 {
            let key = key_image.or(rows_image).map_or(String::new(), |row| {
                columns
                    .iter()
                    .filter(|c| c.primary_key)
                    .map(|c| format!("{}={:?}", c.name, value_of(row, c.name)))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            return Err(PgError::Diverged {
                table: table.name(),
                op: op_name,
                key,
                rows: done.rows_affected(),
            });
        }
        Ok(())
    }
}

const NULL: Value = Value::Null;

fn value_of<'a>(row: &'a RowValues, column: &str) -> &'a Value {
    crate::model::get(row, column).unwrap_or(&NULL)
}

/// `$n`, with a cast for the types bound as text.
fn placeholder(n: usize, ty: ColumnType) -> String {
    match ty {
        ColumnType::Numeric { .. } => format!("${n}::numeric"),
        ColumnType::Uuid => format!("${n}::uuid"),
        ColumnType::Jsonb => format!("${n}::jsonb"),
        _ => format!("${n}"),
    }
}

fn build_sql(table: Table, op: Op) -> String {
    let columns = table.columns();
    let name = table.name();
    let mut n = 0;
    let mut next = |ty| {
        n += 1;
        placeholder(n, ty)
    };
    let set_or_values: Vec<String> = match op {
        Op::Delete => Vec::new(),
        _ => columns.iter().map(|c| next(c.ty)).collect(),
    };
    let key: Vec<String> = match op {
        Op::Update | Op::Delete => columns
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| format!("{} = {}", c.name, next(c.ty)))
            .collect(),
        _ => Vec::new(),
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    match op {
        Op::Read | Op::Create => format!(
            "INSERT INTO public.{name} ({}) VALUES ({})",
            names.join(", "),
            set_or_values.join(", ")
        ),
        Op::Update => {
            let set: Vec<String> = names
                .iter()
                .zip(&set_or_values)
                .map(|(c, p)| format!("{c} = {p}"))
                .collect();
            format!(
                "UPDATE public.{name} SET {} WHERE {}",
                set.join(", "),
                key.join(" AND ")
            )
        }
        Op::Delete => format!("DELETE FROM public.{name} WHERE {}", key.join(" AND ")),
    }
}

/// The text form of a decimal (`1999`, scale 2 → `19.99`).
pub fn decimal_text(unscaled: i128, scale: u32) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The hyphenated text form of a UUID.
pub fn uuid_text(value: u128) -> String {
    let hex = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn bind<'q>(
    query: PgQuery<'q>,
    table: Table,
    column: &Column,
    value: &Value,
) -> Result<PgQuery<'q>, PgError> {
    use ColumnType as T;
    let misfit = || PgError::Value {
        table: table.name(),
        column: column.name,
        value: value.clone(),
        ty: column.ty,
    };
    Ok(match (column.ty, value) {
        (T::Int16, Value::Null) => query.bind(None::<i16>),
        (T::Int32, Value::Null) => query.bind(None::<i32>),
        (T::Int64, Value::Null) => query.bind(None::<i64>),
        (T::Bool, Value::Null) => query.bind(None::<bool>),
        (T::Date, Value::Null) => query.bind(None::<chrono::NaiveDate>),
        (T::Timestamp, Value::Null) => query.bind(None::<chrono::NaiveDateTime>),
        (T::TimestampTz, Value::Null) => query.bind(None::<chrono::DateTime<chrono::Utc>>),
        (T::Text | T::Numeric { .. } | T::Uuid | T::Jsonb, Value::Null) => {
            query.bind(None::<String>)
        }
        (T::Int16, Value::Int(v)) => query.bind(i16::try_from(*v).map_err(|_| misfit())?),
        (T::Int32, Value::Int(v)) => query.bind(i32::try_from(*v).map_err(|_| misfit())?),
        (T::Int64, Value::Int(v)) => query.bind(*v),
        (T::Bool, Value::Bool(v)) => query.bind(*v),
        (T::Text, Value::Text(v)) | (T::Jsonb, Value::Json(v)) => query.bind(v.clone()),
        (T::Numeric { scale, .. }, Value::Decimal { unscaled, scale: s }) if *s == scale => {
            query.bind(decimal_text(*unscaled, scale))
        }
        (T::Uuid, Value::Uuid(v)) => query.bind(uuid_text(*v)),
        (T::Date, Value::Date(v)) => query.bind(*v),
        (T::Timestamp, Value::Timestamp(v)) => query.bind(*v),
        (T::TimestampTz, Value::TimestampTz(v)) => query.bind(*v),
        _ => return Err(misfit()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_bind_every_column_and_the_key() {
        assert_eq!(
            build_sql(Table::Inventory, Op::Delete),
            "DELETE FROM public.inventory WHERE product_id = $1 AND warehouse = $2"
        );
        let update = build_sql(Table::OrderItems, Op::Update);
        assert!(update.starts_with("UPDATE public.order_items SET order_id = $1, line_no = $2,"));
        assert!(update.contains("unit_price = $6::numeric"));
        assert!(update.ends_with("WHERE order_id = $10 AND line_no = $11"));
        let insert = build_sql(Table::Payments, Op::Create);
        assert!(insert.contains("$4::uuid, $5::numeric"));
    }

    #[test]
    fn text_forms() {
        assert_eq!(decimal_text(1999, 2), "19.99");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(42, 0), "42");
        assert_eq!(
            uuid_text(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
    }
}
