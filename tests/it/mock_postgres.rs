//! `lakehouse-mock postgres`: the simulation applied to a real Postgres
//! (LAKEHOUSE_TEST_POSTGRES) leaves exactly the simulator's final rows, every
//! column read back with its own Postgres type; restarts resume without
//! applying anything twice.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use lakehouse_mock::model::ColumnType;
use lakehouse_mock::postgres::{self, PgOptions};
use lakehouse_mock::{Op, RowValues, SimConfig, Simulator, Table, Value};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::gold_support::{connect, postgres_url};

/// A database of its own on the test cluster (the shop tables live in `public`).
pub async fn fresh_database(admin_url: &str) -> String {
    let name = crate::support::unique("mock_src_");
    let mut admin = connect(admin_url).await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    admin.close().await.expect("close");
    let mut url = url::Url::parse(admin_url).expect("test url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn sim_config() -> SimConfig {
    SimConfig {
        seed: 23,
        customers: 60,
        products: 40,
        sellers: 6,
        ..SimConfig::default()
    }
}

fn key(table: Table, row: &RowValues) -> String {
    table
        .primary_key()
        .map(|c| format!("{:?}", lakehouse_mock::model::get(row, c)))
        .collect::<Vec<_>>()
        .join("|")
}

/// Canonical JSON (sorted keys, compact), as jsonb re-renders its input.
fn canonical_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .expect("json")
        .to_string()
}

/// The simulator's final state after the transaction reaching `changes`.
fn expected_state(changes: u64) -> BTreeMap<Table, BTreeMap<String, RowValues>> {
    let mut sim = Simulator::new(sim_config());
    let mut state: BTreeMap<Table, BTreeMap<String, RowValues>> = BTreeMap::new();
    let mut apply = |c: &lakehouse_mock::Change| {
        let rows = state.entry(c.table).or_default();
        match c.op {
            Op::Delete => {
                let before = c.before.as_ref().expect("before");
                assert!(rows.remove(&key(c.table, before)).is_some());
            }
            _ => {
                if let Some(before) = &c.before {
                    rows.remove(&key(c.table, before));
                }
                let after = c.after.clone().expect("after");
                rows.insert(key(c.table, &after), after);
            }
        }
    };
    let snapshot = sim.snapshot();
    let mut total = snapshot.changes.len() as u64;
    snapshot.changes.iter().for_each(&mut apply);
    while total < changes {
        let tx = sim.next_transaction();
        total += tx.changes.len() as u64;
        tx.changes.iter().for_each(&mut apply);
    }
    // Json values as Postgres renders jsonb.
    for rows in state.values_mut() {
        for row in rows.values_mut() {
            for (_, value) in row.iter_mut() {
                if let Value::Json(text) = value {
                    *value = Value::Json(canonical_json(text));
                }
            }
        }
    }
    state
}

/// One cell decoded with the Rust type of its Postgres type.
fn decode(row: &PgRow, i: usize, ty: ColumnType) -> Value {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        i: usize,
    ) -> Option<T> {
        row.try_get::<Option<T>, _>(i)
            .unwrap_or_else(|e| panic!("column {i}: {e}"))
    }
    let value = match ty {
        ColumnType::Int16 => get::<i16>(row, i).map(|v| Value::Int(v.into())),
        ColumnType::Int32 => get::<i32>(row, i).map(|v| Value::Int(v.into())),
        ColumnType::Int64 => get::<i64>(row, i).map(Value::Int),
        ColumnType::Text => get::<String>(row, i).map(Value::Text),
        ColumnType::Bool => get::<bool>(row, i).map(Value::Bool),
        ColumnType::Numeric { scale, .. } => get::<sqlx::types::Decimal>(row, i).map(|mut d| {
            // sqlx decodes a numeric zero with scale 0 whatever its dscale;
            // every other value keeps the column's scale.
            assert!(
                d.scale() == scale || d.is_zero(),
                "column {i}: {d} has scale {}",
                d.scale()
            );
            d.rescale(scale);
            Value::Decimal {
                unscaled: d.mantissa(),
                scale: d.scale(),
            }
        }),
        ColumnType::Date => get::<NaiveDate>(row, i).map(Value::Date),
        ColumnType::Timestamp => get::<NaiveDateTime>(row, i).map(Value::Timestamp),
        ColumnType::TimestampTz => get::<DateTime<Utc>>(row, i).map(Value::TimestampTz),
        // Selected as ::text (sqlx has no uuid/json decoding enabled here);
        // their declared types are checked against information_schema.
        ColumnType::Uuid => get::<String>(row, i)
            .map(|s| Value::Uuid(uuid::Uuid::parse_str(&s).expect("uuid text").as_u128())),
        ColumnType::Jsonb => get::<String>(row, i).map(|s| Value::Json(canonical_json(&s))),
    };
    value.unwrap_or(Value::Null)
}

async fn actual_state(url: &str) -> BTreeMap<Table, BTreeMap<String, RowValues>> {
    let mut conn = connect(url).await;
    let mut state = BTreeMap::new();
    for table in Table::ALL {
        // The declared types are the DDL's (numeric precision/scale, timestamptz, date, ...).
        let declared: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT column_name::text, format_type(a.atttypid, a.atttypmod), \
                    CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE '' END \
             FROM information_schema.columns c \
             JOIN pg_attribute a ON a.attrelid = ('public.' || c.table_name)::regclass \
                               AND a.attname = c.column_name \
             WHERE c.table_schema = 'public' AND c.table_name = $1 ORDER BY c.ordinal_position",
        )
        .bind(table.name())
        .fetch_all(&mut conn)
        .await
        .expect("columns");
        let want: Vec<(String, String, String)> = table
            .columns()
            .iter()
            .map(|c| {
                // format_type() spells some types out.
                let ty = match lakehouse_mock::ddl::sql_type(c).as_str() {
                    "bigserial" => "bigint".to_string(),
                    "timestamptz" => "timestamp with time zone".to_string(),
                    "timestamp" => "timestamp without time zone".to_string(),
                    other => other.to_string(),
                };
                let null = if c.nullable { "" } else { "NOT NULL" };
                (c.name.to_string(), ty, null.to_string())
            })
            .collect();
        assert_eq!(declared, want, "{table}: declared columns");
        let select: Vec<String> = table
            .columns()
            .iter()
            .map(|c| match c.ty {
                ColumnType::Uuid | ColumnType::Jsonb => format!("{}::text", c.name),
                _ => c.name.to_string(),
            })
            .collect();
        let sql = format!("SELECT {} FROM public.{table}", select.join(", "));
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .expect("select");
        let mut by_key = BTreeMap::new();
        for row in &rows {
            let values: RowValues = table
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name, decode(row, i, c.ty)))
                .collect();
            by_key.insert(key(table, &values), values);
        }
        if !by_key.is_empty() {
            state.insert(table, by_key);
        }
    }
    conn.close().await.expect("close");
    state
}

fn assert_same(
    actual: &BTreeMap<Table, BTreeMap<String, RowValues>>,
    expected: &BTreeMap<Table, BTreeMap<String, RowValues>>,
) {
    let expected: BTreeMap<_, _> = expected.iter().filter(|(_, r)| !r.is_empty()).collect();
    let actual: BTreeMap<_, _> = actual.iter().collect();
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &expected {
        let got = &actual[table];
        assert_eq!(got.len(), rows.len(), "{table}: row count");
        for (key, row) in rows.iter() {
            assert_eq!(got.get(key), Some(row), "{table} row {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mode_leaves_the_simulated_rows_and_resumes_after_a_restart() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_database(&admin).await;
    let options = |changes| PgOptions {
        url: url.clone(),
        sim: sim_config(),
        changes,
        rate: None,
        reset: false,
    };

    // A first run stops early (as a killed container would) ...
    let first = postgres::run(&options(700)).await.expect("first run");
    assert_eq!(first.resumed_transactions, 0);
    assert!(first.total_changes >= 700, "{first:?}");
    assert_same(&actual_state(&url).await, &expected_state(700));

    // ... a restart resumes after what was applied ...
    let second = postgres::run(&options(2_500)).await.expect("second run");
    eprintln!(
        "applied {} changes in {} transactions in {:.2}s ({:.0} changes/s unpaced)",
        second.changes,
        second.transactions,
        second.elapsed.as_secs_f64(),
        second.changes as f64 / second.elapsed.as_secs_f64()
    );
    assert_eq!(second.resumed_transactions, first.transactions - 1);
    assert_eq!(first.changes + second.changes, second.total_changes);
    let expected = expected_state(2_500);
    assert_same(&actual_state(&url).await, &expected);
    let progress = postgres::progress(&url).await.expect("progress");
    assert_eq!(
        progress.map(|p| p.2 as u64),
        Some(second.total_changes),
        "progress table"
    );

    // ... and a run whose target is already reached applies nothing.
    let third = postgres::run(&options(2_500)).await.expect("third run");
    assert_eq!((third.transactions, third.changes), (0, 0));
    assert_same(&actual_state(&url).await, &expected);

    // Another simulation is refused; --reset starts over.
    let mut other = options(300);
    other.sim.seed = 99;
    let err = postgres::run(&other).await.expect_err("other seed");
    assert!(err.to_string().contains("--reset"), "{err}");
    other.reset = true;
    other.sim = sim_config();
    let fresh = postgres::run(&other).await.expect("reset run");
    assert_eq!(fresh.resumed_transactions, 0);
    assert_same(&actual_state(&url).await, &expected_state(300));

    // The publication Debezium reads covers every table, all with REPLICA IDENTITY FULL.
    let mut conn = connect(&url).await;
    let published: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.tablename::text, CASE c.relreplident WHEN 'f' THEN 'full' ELSE c.relreplident::text END \
         FROM pg_publication_tables t JOIN pg_class c ON c.oid = ('public.' || t.tablename)::regclass \
         WHERE t.pubname = $1 ORDER BY 1",
    )
    .bind(lakehouse_mock::ddl::PUBLICATION)
    .fetch_all(&mut conn)
    .await
    .expect("publication");
    let want: Vec<(String, String)> = Table::ALL
        .iter()
        .map(|t| (t.name().to_string(), "full".to_string()))
        .collect();
    assert_eq!(published, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mode_holds_the_rate() {
    let Some(admin) = postgres_url() else { return };
    let url = fresh_database(&admin).await;
    // The initial rows are not paced; measure the streamed changes only.
    let mut options = PgOptions {
        url,
        sim: sim_config(),
        changes: 0,
        rate: Some(400.0),
        reset: false,
    };
    let initial = postgres::run(&PgOptions {
        changes: 1,
        ..options.clone()
    })
    .await
    .expect("initial rows");
    options.changes = initial.total_changes + 800;
    let paced = postgres::run(&options).await.expect("paced run");
    let rate = paced.changes as f64 / paced.elapsed.as_secs_f64();
    eprintln!(
        "{} changes in {:.2}s: {rate:.0} changes/s",
        paced.changes,
        paced.elapsed.as_secs_f64()
    );
    assert!(paced.changes >= 800);
    assert!(
        (300.0..=420.0).contains(&rate),
        "{rate:.0} changes/s for a target of 400"
    );
}
