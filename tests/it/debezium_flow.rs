//! The production flow as processes, no Docker: the mock applies its
//! transactions to a real Postgres 15 (`wal_level=logical`), the real
//! Debezium Postgres connector (Kafka Connect standalone, started here)
//! captures them into real Apache Kafka, and `run all` (bronze until idle,
//! silver, gold) builds the shipped star schema. Every silver table must
//! equal the source database's final state, key for key, with the columns
//! the shipped SQL passes through.
//!
//! On the way: REPLICA IDENTITY FULL on some tables and DEFAULT on others,
//! the Connect worker killed with SIGKILL while changes flow and restarted
//! (it re-sends what it had not flushed), changes made while it is down, an
//! update to NULL of a tracked dimension column, a transaction touching
//! several tables, a column added while streaming, and a TRUNCATE.
//! Needs LAKEHOUSE_TEST_KAFKA, LAKEHOUSE_TEST_POSTGRES and
//! LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH (scripts/test.sh sets them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::prelude::SessionContext;
use lakehouse::config::Config;
use lakehouse::pipeline::watch::{AllOptions, run_once};
use lakehouse::storage::StorageRoot;
use lakehouse_mock::SimConfig;
use lakehouse_mock::postgres::{self, PgOptions};
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::gold_support::{connect, postgres_url};
use crate::mock_postgres::fresh_database;
use crate::support::{no_shutdown, unique};

/// Per silver table: the source query and the silver query, each giving one
/// text per row (`|`-joined, NULL as `NULL`), in the shape of the shipped SQL.
const COMPARED: &[(&str, &str, &str)] = &[
    (
        "dim_customer",
        "SELECT concat_ws('|', id::text, coalesce(trim(city), 'NULL'), upper(country), segment) FROM customers",
        "SELECT concat_ws('|', CAST(customer_id AS VARCHAR), coalesce(city, 'NULL'), country, segment) \
         FROM dim_customer WHERE is_current AND customer_id IS NOT NULL",
    ),
    (
        "dim_product",
        "SELECT id::text FROM products",
        "SELECT CAST(product_id AS VARCHAR) FROM dim_product WHERE is_current AND product_id IS NOT NULL",
    ),
    (
        "dim_seller",
        "SELECT id::text FROM sellers",
        "SELECT CAST(seller_id AS VARCHAR) FROM dim_seller WHERE seller_id IS NOT NULL",
    ),
    (
        "orders",
        "SELECT concat_ws('|', id::text, status) FROM orders",
        "SELECT concat_ws('|', CAST(order_id AS VARCHAR), status) FROM orders WHERE order_id IS NOT NULL",
    ),
    (
        "fact_sales",
        "SELECT concat_ws('|', order_id::text, line_no::text) FROM order_items",
        "SELECT concat_ws('|', CAST(order_id AS VARCHAR), CAST(line_no AS VARCHAR)) FROM fact_sales",
    ),
    (
        "fact_payments",
        "SELECT id::text FROM payments",
        "SELECT CAST(payment_id AS VARCHAR) FROM fact_payments",
    ),
    (
        "fact_shipments",
        "SELECT id::text FROM shipments",
        "SELECT CAST(shipment_id AS VARCHAR) FROM fact_shipments",
    ),
    (
        "inventory",
        "SELECT concat_ws('|', product_id::text, warehouse) FROM inventory",
        "SELECT concat_ws('|', CAST(product_id AS VARCHAR), warehouse) FROM inventory \
         WHERE product_id IS NOT NULL",
    ),
];

/// Captured source tables (the compose connector's list).
const TABLES: &str = "public.categories,public.customers,public.inventory,public.order_items,\
public.orders,public.payments,public.products,public.sellers,public.shipment_events,public.shipments";

/// A Kafka Connect standalone worker running the Debezium Postgres connector.
struct Connect {
    child: Child,
    dir: PathBuf,
}

impl Connect {
    /// Writes the worker and connector properties into `dir` (kept across
    /// restarts: the offsets file lives there) and starts the worker.
    fn start(dir: &Path, kafka: &str, source_url: &str, prefix: &str) -> Self {
        let classpath = std::env::var("LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH").expect("classpath");
        let url = url::Url::parse(source_url).expect("source url");
        let database = url.path().trim_start_matches('/');
        std::fs::write(
            dir.join("worker.properties"),
            format!(
                "bootstrap.servers={kafka}\n\
                 key.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 value.converter=org.apache.kafka.connect.json.JsonConverter\n\
                 key.converter.schemas.enable=true\n\
                 value.converter.schemas.enable=true\n\
                 offset.storage.file.filename={}\n\
                 offset.flush.interval.ms=1000\n\
                 plugin.discovery=service_load\n\
                 listeners=http://127.0.0.1:0\n",
                dir.join("offsets.dat").display()
            ),
        )
        .expect("worker.properties");
        // The compose connector's settings (docker/debezium/shop-connector.json),
        // with a publication of its own and TRUNCATE events kept.
        std::fs::write(
            dir.join("connector.properties"),
            format!(
                "name={prefix}\n\
                 connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
                 tasks.max=1\n\
                 plugin.name=pgoutput\n\
                 database.hostname=127.0.0.1\n\
                 database.port={}\n\
                 database.user=postgres\n\
                 database.password=postgres\n\
                 database.dbname={database}\n\
                 topic.prefix={prefix}\n\
                 schema.include.list=public\n\
                 table.include.list={TABLES}\n\
                 publication.name={prefix}\n\
                 publication.autocreate.mode=filtered\n\
                 slot.name={prefix}\n\
                 snapshot.mode=initial\n\
                 provide.transaction.metadata=true\n\
                 tombstones.on.delete=true\n\
                 decimal.handling.mode=precise\n\
                 time.precision.mode=adaptive_time_microseconds\n\
                 skipped.operations=none\n\
                 heartbeat.interval.ms=1000\n",
                url.port().expect("port")
            ),
        )
        .expect("connector.properties");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("connect.log"))
            .expect("connect.log");
        let mut jvm: Vec<String> = ["-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
            .map(String::from)
            .to_vec();
        if let Ok(config) = std::env::var("LAKEHOUSE_TEST_DEBEZIUM_LOG4J") {
            jvm.push(format!("-Dlog4j2.configurationFile={config}"));
        }
        let mut command = Command::new("java");
        command
            .args(jvm)
            .arg("-cp")
            .arg(&classpath)
            .arg("org.apache.kafka.connect.cli.ConnectStandalone")
            .arg(dir.join("worker.properties"))
            .arg(dir.join("connector.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = command.spawn().expect("start Kafka Connect");
        Self {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("connect.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        self.kill();
    }
}

fn services() -> Option<(String, String)> {
    let postgres = postgres_url()?;
    let kafka = crate::support::Broker::external()?.bootstrap();
    crate::support::service_var("LAKEHOUSE_TEST_DEBEZIUM_CLASSPATH")?;
    Some((kafka, postgres))
}

/// The shipped silver specs with their topics renamed to `prefix`, in `dir`.
fn shipped_specs(dir: &Path, prefix: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let specs = dir.join("layers/silver");
    std::fs::create_dir_all(&specs).expect("specs dir");
    for entry in std::fs::read_dir(repo.join("layers/silver")).expect("shipped specs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("spec");
        let text = text.replace("\"shop.public.", &format!("\"{prefix}.public."));
        std::fs::write(specs.join(path.file_name().expect("name")), text).expect("write spec");
    }
    specs
}

async fn source_rows(url: &str, sql: &str) -> BTreeSet<String> {
    let mut conn = connect(url).await;
    let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .expect("source query");
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).expect("text"))
        .collect()
}

async fn silver_rows(config: &Config, table: &str, sql: &str) -> BTreeSet<String> {
    let ctx = SessionContext::new();
    let root = StorageRoot::from_config(&config.storage).expect("root");
    if lakehouse::delta::session::register_table(&ctx, &root, "silver", table)
        .await
        .is_err()
    {
        return BTreeSet::new();
    }
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("collect");
    crate::silver_support::text_rows(&batches)
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .collect()
}

/// The tables that differ from the source, with a sample of the difference.
async fn differences(config: &Config, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (table, source_sql, silver_sql) in COMPARED {
        let want = source_rows(source, source_sql).await;
        let got = silver_rows(config, table, silver_sql).await;
        if want != got {
            let missing: Vec<_> = want.difference(&got).take(3).collect();
            let extra: Vec<_> = got.difference(&want).take(3).collect();
            out.push(format!(
                "{table}: {} rows in the source, {} in silver; missing {missing:?}, extra {extra:?}",
                want.len(),
                got.len()
            ));
        }
    }
    out
}

/// Runs `run all` until silver equals the source (Debezium is asynchronous).
async fn converge(config: &Config, source: &str, connect: &Connect, what: &str) {
    let started = Instant::now();
    loop {
        let options = AllOptions {
            no_publish: true,
            ..AllOptions::default()
        };
        run_once(config, &options, no_shutdown())
            .await
            .expect("run all");
        let diff = differences(config, source).await;
        if diff.is_empty() {
            eprintln!(
                "{what}: silver equals the source after {:?}",
                started.elapsed()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{what}: silver never matched the source:\n{}\n--- connect log ---\n{}",
            diff.join("\n"),
            connect.log_tail()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Per customer, the `dim_customer` versions the mock's history gives when
/// the connector's snapshot saw the state after `snapshot` changes and
/// streamed the rest through `changes`: one at the snapshot (or insert), one
/// more per update of a tracked column as the shipped SQL shapes it
/// (`trim(city)`, `upper(country)`, `segment`); a delete closes, never adds.
fn expected_customer_versions(
    sim: &SimConfig,
    snapshot: u64,
    changes: u64,
) -> std::collections::BTreeMap<i64, usize> {
    use lakehouse_mock::{Op, Table, Value};
    let tracked = |row: &lakehouse_mock::RowValues| -> Vec<Option<String>> {
        let text = |c: &str| match lakehouse_mock::model::get(row, c) {
            Some(Value::Text(t)) => Some(t.trim().to_string()),
            _ => None,
        };
        vec![
            text("city"),
            text("country").map(|c| c.to_uppercase()),
            text("segment"),
        ]
    };
    let id = |row: &lakehouse_mock::RowValues| match lakehouse_mock::model::get(row, "id") {
        Some(Value::Int(id)) => *id,
        other => panic!("customer id {other:?}"),
    };
    let mut simulator = lakehouse_mock::Simulator::new(sim.clone());
    let mut state: std::collections::BTreeMap<i64, Vec<Option<String>>> = Default::default();
    let mut versions: std::collections::BTreeMap<i64, usize> = Default::default();
    let first = simulator.snapshot();
    let mut total = first.changes.len() as u64;
    let mut batches = vec![first.changes];
    let mut streamed = false;
    loop {
        for change in batches.drain(..).flatten() {
            if change.table != Table::Customers {
                continue;
            }
            match (change.op, &change.after) {
                (Op::Delete, _) => {
                    if let Some(before) = &change.before {
                        state.remove(&id(before));
                    }
                }
                (_, Some(after)) => {
                    let key = id(after);
                    let values = tracked(after);
                    if streamed && state.get(&key) != Some(&values) {
                        *versions.entry(key).or_default() += 1;
                    }
                    state.insert(key, values);
                }
                _ => {}
            }
        }
        if !streamed && total >= snapshot {
            // The snapshot: one version per customer that exists now.
            streamed = true;
            versions = state.keys().map(|k| (*k, 1)).collect();
        }
        if total >= changes {
            return versions;
        }
        let tx = simulator.next_transaction();
        total += tx.changes.len() as u64;
        batches.push(tx.changes);
    }
}

/// The shape of a Connect JSON schema: field names in order, types, logical
/// names, optional flags and parameters (what a decoder reads), with the
/// topic prefix and database name replaced.
fn schema_shape(schema: &serde_json::Value, prefix: &str, database: &str) -> serde_json::Value {
    let text = schema
        .to_string()
        .replace(&format!("\"{prefix}."), "\"<prefix>.")
        .replace(&format!("\"{database}\""), "\"<db>\"");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("schema json");
    strip_defaults(&mut value);
    value
}

/// Drops `default` values (the real connector reads them from the live
/// table; the mock declares none) and `version` numbers of Connect schemas.
fn strip_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("default");
            map.remove("version");
            map.values_mut().for_each(strip_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// The mock's records have the real connector's shape, field for field, on
/// the same DDL: key and value schemas (column types, logical type names,
/// optional flags, the source block's fields) of a snapshot read per table.
async fn mock_matches_the_real_connector(config: &Config, prefix: &str, source: &str) {
    let database = url::Url::parse(source)
        .expect("url")
        .path()
        .trim_start_matches('/')
        .to_string();
    let encoder = lakehouse_mock::DebeziumEncoder::with_database(prefix, &database);
    let mut sim = lakehouse_mock::Simulator::new(mock(source, 0).sim);
    let mut records = Vec::new();
    encoder.encode_snapshot(&sim.snapshot(), &mut records);
    for _ in 0..100 {
        let tx = sim.next_transaction();
        encoder.encode_transaction(&tx, &mut records);
    }
    let ctx = SessionContext::new();
    let root = StorageRoot::from_config(&config.storage).expect("root");
    lakehouse::delta::session::register_table(&ctx, &root, "bronze", "bronze_events")
        .await
        .expect("bronze");
    let mut compared = 0;
    let mut differences = Vec::new();
    let op = |value: &[u8]| -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(value).ok()?;
        v["payload"]["op"].as_str().map(str::to_string)
    };
    for table in [
        "customers",
        "products",
        "sellers",
        "categories",
        "inventory",
        "orders",
        "order_items",
        "payments",
        "shipments",
        "shipment_events",
    ] {
        let topic = format!("{prefix}.public.{table}");
        // A snapshot read or an insert: the same op on both sides.
        let Some((mocked, mocked_op)) = records.iter().find_map(|r| {
            let o = op(r.value.as_deref()?)?;
            (r.topic == topic && (o == "r" || o == "c")).then_some((r, o))
        }) else {
            continue;
        };
        let batches = ctx
            .sql(&format!(
                "SELECT arrow_cast(raw_key, 'Utf8'), arrow_cast(raw_value, 'Utf8') FROM bronze_events \
                 WHERE topic = '{topic}' AND op = '{mocked_op}' LIMIT 1"
            ))
            .await
            .expect("plan")
            .collect()
            .await
            .expect("collect");
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            continue;
        };
        let real_key: serde_json::Value =
            serde_json::from_str(batch.column(0).as_string::<i32>().value(0)).expect("key");
        let real_value: serde_json::Value =
            serde_json::from_str(batch.column(1).as_string::<i32>().value(0)).expect("value");
        let mock_key: serde_json::Value =
            serde_json::from_slice(mocked.key.as_deref().expect("mock key"))
                .expect("mock key json");
        let mock_value: serde_json::Value =
            serde_json::from_slice(mocked.value.as_deref().expect("mock value"))
                .expect("mock value json");
        for (what, real, mocked) in [
            ("key", &real_key["schema"], &mock_key["schema"]),
            ("value", &real_value["schema"], &mock_value["schema"]),
        ] {
            assert!(
                real["fields"].is_array() && mocked["fields"].is_array(),
                "{table} {what}: no schema (real {real}, mock {mocked})"
            );
            let (real, mocked) = (
                schema_shape(real, prefix, &database),
                schema_shape(mocked, prefix, &database),
            );
            if real != mocked {
                differences.push(format!("{table} {what}:\n  real {real}\n  mock {mocked}"));
            }
        }
        // The source block carries the same fields.
        let fields = |v: &serde_json::Value| -> BTreeSet<String> {
            v["payload"]["source"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        if fields(&real_value) != fields(&mock_value) {
            differences.push(format!(
                "{table} source block: real {:?}, mock {:?}",
                fields(&real_value),
                fields(&mock_value)
            ));
        }
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} tables compared");
    assert!(
        differences.is_empty(),
        "the mock differs from Debezium:\n{}",
        differences.join("\n")
    );
}

async fn execute(url: &str, sql: &str) {
    let mut conn = connect(url).await;
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.expect("close");
}

fn mock(url: &str, changes: u64) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        sim: SimConfig {
            seed: 31,
            customers: 50,
            products: 30,
            sellers: 5,
            ..SimConfig::default()
        },
        changes,
        rate: None,
        reset: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_captures_postgres_into_the_star_schema() {
    crate::support::init_tracing();
    let Some((kafka, admin)) = services() else {
        return;
    };
    let source = fresh_database(&admin).await;
    let prefix = unique("dbz");
    let dir = tempfile::tempdir().expect("tempdir");
    let connect_dir = dir.path().join("connect");
    std::fs::create_dir_all(&connect_dir).expect("connect dir");

    // The shop's schema and first changes; some tables with REPLICA IDENTITY
    // DEFAULT (no before images, key-only deletes), the others FULL.
    postgres::run(&mock(&source, 400))
        .await
        .expect("mock phase 1");
    execute(
        &source,
        "ALTER TABLE payments REPLICA IDENTITY DEFAULT; ALTER TABLE shipments REPLICA IDENTITY DEFAULT; \
         ALTER TABLE order_items REPLICA IDENTITY DEFAULT;",
    )
    .await;

    let mut config = Config::default();
    config.storage.root = dir.path().join("lake").display().to_string();
    config.kafka.brokers = Some(kafka.clone());
    config.kafka.group_id = format!("{prefix}-bronze");
    config.kafka.topic_pattern = Some(format!("{}\\..*", prefix));
    config.kafka.properties = crate::support::Broker::External(kafka.clone()).consumer_properties();
    config.bronze.idle_timeout_ms = 1500;
    config.silver.layers_dir = shipped_specs(dir.path(), &prefix);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    config.silver.sql_dir = repo.join("sql/silver");
    config.gold.layers_dir = repo.join("layers/gold");
    config.gold.sql_dir = repo.join("sql/gold");

    // The snapshot, then changes while streaming; the worker is killed in
    // the middle of them and restarted on its offsets file.
    let mut worker = Connect::start(&connect_dir, &kafka, &source, &prefix);
    converge(&config, &source, &worker, "after the snapshot").await;
    let phase2 = mock(&source, 1000);
    let streaming = tokio::spawn(async move { postgres::run(&phase2).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker.kill();
    streaming.await.expect("mock task").expect("mock phase 2");
    // Changes while the connector is down are read from the slot on restart.
    postgres::run(&mock(&source, 1300))
        .await
        .expect("mock phase 3");
    worker = Connect::start(&connect_dir, &kafka, &source, &prefix);
    converge(&config, &source, &worker, "after the restart").await;

    // An update to NULL of a tracked column (after the column allows it),
    // a transaction over several tables, a column added while streaming,
    // and a TRUNCATE.
    let customer: i64 = {
        let mut conn = connect(&source).await;
        sqlx::query("SELECT min(id) FROM customers")
            .fetch_one(&mut conn)
            .await
            .expect("a customer")
            .get(0)
    };
    execute(
        &source,
        &format!(
            "ALTER TABLE customers ALTER COLUMN city DROP NOT NULL; \
             UPDATE customers SET city = NULL WHERE id = {customer}; \
             BEGIN; \
             UPDATE orders SET status = 'cancelled' WHERE id = (SELECT max(id) FROM orders); \
             DELETE FROM order_items WHERE order_id = (SELECT max(id) FROM orders); \
             DELETE FROM payments WHERE order_id = (SELECT max(id) FROM orders); \
             COMMIT; \
             ALTER TABLE customers ADD COLUMN loyalty_tier text; \
             UPDATE customers SET loyalty_tier = 'gold', segment = 'vip' WHERE id = {customer} + 1; \
             TRUNCATE inventory;"
        ),
    )
    .await;
    converge(&config, &source, &worker, "after the manual changes").await;

    // SCD2 history: one version per change of a tracked column that the
    // mock applied after the snapshot, plus the two manual ones.
    let mut expected = expected_customer_versions(&mock(&source, 0).sim, 400, 1300);
    *expected.entry(customer).or_default() += 1;
    let segment: String = {
        let mut conn = connect(&source).await;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT segment FROM customers WHERE id = {customer} + 1"
        )))
        .fetch_optional(&mut conn)
        .await
        .expect("segment")
        .map(|r| r.get(0))
        .unwrap_or_default()
    };
    if segment == "vip" && expected.contains_key(&(customer + 1)) {
        *expected.entry(customer + 1).or_default() += 1;
    }
    let counts: std::collections::BTreeMap<i64, usize> = silver_rows(
        &config,
        "dim_customer",
        "SELECT concat_ws('|', CAST(customer_id AS VARCHAR), CAST(count(*) AS VARCHAR)) \
         FROM dim_customer WHERE customer_id IS NOT NULL GROUP BY customer_id",
    )
    .await
    .into_iter()
    .map(|row| {
        let (id, n) = row.split_once('|').expect("id|count");
        (id.parse().expect("id"), n.parse().expect("count"))
    })
    .collect();
    let changed = expected.values().filter(|n| **n > 1).count();
    eprintln!(
        "dim_customer: {} customers, {changed} with more than one version",
        expected.len()
    );
    assert!(changed > 2, "the history has tracked changes to compare");
    assert_eq!(counts, expected, "dim_customer versions per customer");

    // The NULL opened a version; the old one holds the old city.
    let versions = silver_rows(
        &config,
        "dim_customer",
        &format!(
            "SELECT concat_ws('|', coalesce(city, 'NULL'), CAST(is_current AS VARCHAR)) \
             FROM dim_customer WHERE customer_id = {customer}"
        ),
    )
    .await;
    assert!(versions.contains("NULL|true"), "{versions:?}");
    assert!(
        versions
            .iter()
            .any(|v| v.ends_with("|false") && !v.starts_with("NULL")),
        "{versions:?}"
    );
    // Nothing the real connector sent was refused.
    let ctx = SessionContext::new();
    let root = StorageRoot::from_config(&config.storage).expect("root");
    if lakehouse::delta::session::register_table(&ctx, &root, "bronze", "bronze_dead_letters")
        .await
        .is_ok()
    {
        let batches = ctx
            .sql("SELECT count(*) FROM bronze_dead_letters")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("count");
        let dead = batches[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(dead, 0, "dead letters from the real connector");
    }
    mock_matches_the_real_connector(&config, &prefix, &source).await;

    // Gold published to Postgres, where every Grafana panel's SQL runs.
    let mut published = config.clone();
    published.postgres.url = Some(fresh_database(&admin).await);
    let gold = lakehouse::pipeline::jobs::gold(
        &published,
        &lakehouse::pipeline::jobs::GoldOptions::default(),
    )
    .await
    .expect("gold");
    assert!(gold.failed_publishes().is_empty(), "{gold}");
    let mut conn = connect(published.postgres.url.as_deref().expect("url")).await;
    crate::gold_grafana::assert_every_panel_runs(&mut conn).await;
    drop(worker);
    execute(
        &admin,
        &format!("SELECT pg_drop_replication_slot('{prefix}') FROM pg_replication_slots WHERE slot_name = '{prefix}'"),
    )
    .await;
}
