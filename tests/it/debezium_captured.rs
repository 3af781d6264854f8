//! Real Debezium 3.4 records (`tests/fixtures/debezium/captured`, see its
//! README) through bronze and silver: after each run the silver tables must
//! hold what the source database held at that point of the captured scenario.
//!
//! The streams are cut at transaction boundaries so that the intermediate
//! states are checked too: the Postgres TOAST placeholder and the updates to
//! NULL are overwritten or deleted later in the scenario, so only a run right
//! after them can show that silver handled them. Each scenario also runs in
//! one go (one bronze batch, one silver run) and ends with a full refresh.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, MapArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::silver::FullRefresh;
use serde_json::Value;

use crate::silver_support::Lake;
use crate::support::{no_shutdown, query};

const CAPTURED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/debezium/captured"
);

/// The non-empty lines of a captured file.
fn captured(name: &str) -> Vec<String> {
    std::fs::read_to_string(format!("{CAPTURED}/{name}"))
        .expect("read captured fixture")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Appends `lines` to the lake's input and runs bronze over it; nothing of a
/// real capture may be a dead letter. Returns (table rows, skipped non-row records).
async fn feed(lake: &Lake, lines: &[String]) -> (u64, u64) {
    let input = lake.path().join("captured.jsonl");
    let mut text = std::fs::read_to_string(&input).unwrap_or_default();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&input, text).expect("write input");
    let summary = lakehouse::pipeline::jobs::bronze(
        &lake.config,
        BronzeSource::Files(vec![input]),
        StopCondition::default(),
        no_shutdown(),
    )
    .await
    .expect("bronze run");
    assert_eq!(
        summary.counts.dead_letters, 0,
        "no captured record is malformed"
    );
    (summary.counts.rows, summary.counts.skipped)
}

fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    out.sort();
    out
}

// ------------------------------------------------------------------ bronze

/// A bronze `map<string,string>` cell as `column → value`, `None` when null.
fn map_cell(map: &MapArray, i: usize) -> Option<BTreeMap<String, Option<String>>> {
    if map.is_null(i) {
        return None;
    }
    let entries = map.value(i);
    let keys = cast(entries.column(0), &DataType::Utf8).expect("map keys as text");
    let values = cast(entries.column(1), &DataType::Utf8).expect("map values as text");
    let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
    Some(
        (0..keys.len())
            .map(|j| {
                let value = values.is_valid(j).then(|| values.value(j).to_string());
                (keys.value(j).to_string(), value)
            })
            .collect(),
    )
}

/// An expected.json row in the form of [`map_cell`].
fn expected_map(v: &Value) -> Option<BTreeMap<String, Option<String>>> {
    v.as_object().map(|cols| {
        cols.iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
            .collect()
    })
}

/// Every captured file in one bronze run: the change and tombstone records
/// become exactly one row each, with the key/before/after maps of
/// expected.json (the conformance test in src/cdc checks the decoder; this
/// checks that the values survive the Arrow/Delta write, e.g. the 4096-char
/// body, empty strings against NULLs, and non-ASCII text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_record_lands_in_bronze_as_expected() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CAPTURED}/expected.json")).expect("read expected.json"),
    )
    .expect("expected.json is JSON");
    let files = expected["files"].as_object().expect("files");
    let mut lines = Vec::new();
    let mut want = BTreeMap::new();
    let mut non_rows = 0;
    for (name, file) in files {
        lines.extend(captured(name));
        for entry in file["records"].as_array().expect("records") {
            let kind = entry["kind"].as_str().expect("kind");
            if kind == "change" || kind == "tombstone" {
                let at = (
                    entry["topic"].as_str().expect("topic").to_string(),
                    entry["offset"].as_i64().expect("offset"),
                );
                assert!(want.insert(at, entry.clone()).is_none(), "unique positions");
            } else {
                non_rows += 1;
            }
        }
    }
    let lake = Lake::new();
    let (rows_written, skipped) = feed(&lake, &lines).await;
    assert_eq!((rows_written as usize, skipped), (want.len(), non_rows));

    let batches = query(
        &lake.config,
        "SELECT topic, kafka_offset, record_kind, op, key, before, after FROM bronze_events",
    )
    .await;
    let mut seen = 0;
    let mut diffs = Vec::new();
    for batch in &batches {
        let text = |i: usize| cast(batch.column(i), &DataType::Utf8).expect("text column");
        let (topic, kind, op) = (text(0), text(2), text(3));
        let (topic, kind, op) = (
            topic.as_string::<i32>(),
            kind.as_string::<i32>(),
            op.as_string::<i32>(),
        );
        let offset = batch.column(1).as_primitive::<Int64Type>();
        let maps: Vec<&MapArray> = (4..7).map(|c| batch.column(c).as_map()).collect();
        for i in 0..batch.num_rows() {
            seen += 1;
            let at = (topic.value(i).to_string(), offset.value(i));
            let Some(entry) = want.get(&at) else {
                diffs.push(format!(
                    "{at:?}: not a change or tombstone of expected.json"
                ));
                continue;
            };
            if kind.value(i) != entry["kind"].as_str().expect("kind") {
                diffs.push(format!("{at:?}: record_kind {}", kind.value(i)));
            }
            let op = op.is_valid(i).then(|| op.value(i));
            if op != entry["op"].as_str() {
                diffs.push(format!("{at:?}: op {op:?}"));
            }
            for (map, part) in maps.iter().zip(["key", "before", "after"]) {
                let got = map_cell(map, i);
                let expected = expected_map(&entry[part]);
                if got != expected {
                    diffs.push(format!("{at:?} {part}: {got:?}, expected {expected:?}"));
                }
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert_eq!(seen, want.len(), "one bronze row per change or tombstone");
}

// ---------------------------------------------------------------- Postgres

const PG_FULL_SCD1: &str = r#"
kind = "scd1"
keys = ["id"]
[source]
name = "cdc_full"
topic = "pgcdc.public.cdc_full"
columns = { id = "INT", name = "VARCHAR", email = "VARCHAR", score = "DECIMAL(6,2)", updated_at = "TIMESTAMP" }
"#;

const PG_FULL_SCD2: &str = r#"
kind = "scd2"
keys = ["id"]
surrogate_key = "full_key"
track = ["email", "score"]
[source]
name = "cdc_full"
topic = "pgcdc.public.cdc_full"
columns = { id = "INT", name = "VARCHAR", email = "VARCHAR", score = "DECIMAL(6,2)", updated_at = "TIMESTAMP" }
"#;

const PG_FULL_SQL: &str = "SELECT id, name, email, score, updated_at FROM cdc_full";

const PG_DEFAULT_SCD1: &str = r#"
kind = "scd1"
keys = ["id"]
[source]
name = "cdc_default"
topic = "pgcdc.public.cdc_default"
columns = { id = "INT", title = "VARCHAR", body = "VARCHAR", qty = "INT" }
"#;

const PG_DEFAULT_SQL: &str = "SELECT id, title, body, qty FROM cdc_default";

/// The 4096-character text of `cdc_default` row 1, stored out of line (TOAST).
fn toasted_body() -> String {
    "0123456789abcdef".repeat(256)
}

fn pg_lake() -> Lake {
    let lake = Lake::new();
    lake.table("full_current", PG_FULL_SCD1, PG_FULL_SQL);
    lake.table("full_history", PG_FULL_SCD2, PG_FULL_SQL);
    lake.table("default_current", PG_DEFAULT_SCD1, PG_DEFAULT_SQL);
    lake
}

async fn pg_full(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["full_current"],
        "SELECT id, name, email, score, updated_at FROM full_current",
    )
    .await
}

async fn pg_default(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["default_current"],
        "SELECT id, title, body, qty FROM default_current",
    )
    .await
}

async fn pg_history(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["full_history"],
        "SELECT id, email, score, is_current FROM full_history WHERE id IS NOT NULL",
    )
    .await
}

/// `cdc_full` and `cdc_default` after the last statement (README "CDC"):
/// 2 deleted, 3 re-keyed to 20, `cdc_default` truncated then row 3 inserted.
async fn assert_pg_final(lake: &Lake, context: &str) {
    assert_eq!(
        pg_full(lake).await,
        rows(&[
            &[
                "1",
                "Ann",
                "ann@example.com",
                "99.99",
                "2024-01-01T00:00:00"
            ],
            &["20", "Cy", "NULL", "0.00", "NULL"],
        ]),
        "cdc_full: the delete removed 2, the key change moved 3 to 20 ({context})"
    );
    assert_eq!(
        pg_default(lake).await,
        rows(&[&["3", "after truncate", "NULL", "7"]]),
        "cdc_default: the truncate removed 1 (2 was deleted before); 3 came after it ({context})"
    );
    // Versions open while email/score changed: 2 went to NULL (new version),
    // then 2 and 3 were deleted (versions closed), 20 is new.
    assert_eq!(
        pg_history(lake).await,
        rows(&[
            &["1", "ann@example.com", "99.99", "true"],
            &["2", "bob@example.com", "10.50", "false"],
            &["2", "NULL", "NULL", "false"],
            &["3", "NULL", "0.00", "false"],
            &["20", "NULL", "0.00", "true"],
        ]),
        "cdc_full history ({context})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_cdc_runs_between_transactions_match_the_database() {
    let lines = captured("pg_cdc.jsonl");
    assert_eq!(lines.len(), 40);
    let lake = pg_lake();

    // Lines 1-10: snapshot of 1, insert of 2, insert of the long body, and the
    // update of qty whose `after` has the TOAST placeholder for `body`.
    // Heartbeats go with them: recognised, not rows.
    let mut first = captured("pg_heartbeat.jsonl");
    first.extend_from_slice(&lines[..10]);
    let (rows_written, skipped) = feed(&lake, &first).await;
    assert_eq!(
        (rows_written, skipped),
        (4, 3 + 6),
        "4 changes; 3 heartbeats and 6 transaction markers are not rows"
    );
    lake.silver().await;
    assert_eq!(
        pg_full(&lake).await,
        rows(&[
            &[
                "1",
                "Ann",
                "ann@example.com",
                "99.99",
                "2024-01-01T00:00:00"
            ],
            &[
                "2",
                "Bob",
                "bob@example.com",
                "10.50",
                "2024-01-02T03:04:05.500"
            ],
        ])
    );
    assert_eq!(
        pg_default(&lake).await,
        vec![vec![
            "1".to_string(),
            "doc".to_string(),
            toasted_body(),
            "2".to_string()
        ]],
        "the TOAST placeholder keeps the held body; qty is updated"
    );

    // Lines 11-21: email and score of 2 to NULL, title to NULL and a new body
    // for 1, then one transaction over both tables.
    feed(&lake, &lines[10..21]).await;
    lake.silver().await;
    assert_eq!(
        pg_full(&lake).await,
        rows(&[
            &[
                "1",
                "Ann",
                "ann@example.com",
                "99.99",
                "2024-01-01T00:00:00"
            ],
            &["2", "Bob", "NULL", "NULL", "2024-01-02T03:04:05.500"],
            &["3", "Cy", "NULL", "0.00", "NULL"],
        ]),
        "updates to NULL give NULL; the transaction's insert landed"
    );
    assert_eq!(
        pg_default(&lake).await,
        rows(&[
            &["1", "NULL", "short body", "3"],
            &["2", "second", "b2", "5"],
        ]),
        "title to NULL; the transaction's update and insert landed"
    );

    // Lines 22-40: deletes with tombstones, the key change, TRUNCATE, an insert.
    feed(&lake, &lines[21..]).await;
    lake.silver().await;
    assert_pg_final(&lake, "after three runs").await;

    lake.try_silver(FullRefresh::All)
        .await
        .expect("full refresh");
    assert_pg_final(&lake, "after a full refresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_cdc_in_one_run_matches_the_database() {
    let lake = pg_lake();
    let (rows_written, skipped) = feed(&lake, &captured("pg_cdc.jsonl")).await;
    assert_eq!(
        (rows_written, skipped),
        (18, 22),
        "15 changes + 3 tombstones; 22 transaction markers"
    );
    lake.silver().await;
    assert_pg_final(&lake, "one run").await;
}

// ----------------------------------------------------------------- MariaDB

const MY_ORDERS_SCD1: &str = r#"
kind = "scd1"
keys = ["id"]
[source]
name = "cdc_orders"
topic = "mycdc.fixtures.cdc_orders"
columns = { id = "INT", customer = "VARCHAR", amount = "DECIMAL(10,2)", note = "VARCHAR", updated_at = "TIMESTAMP" }
"#;

const MY_ORDERS_SCD2: &str = r#"
kind = "scd2"
keys = ["id"]
surrogate_key = "order_key"
track = ["amount"]
[source]
name = "cdc_orders"
topic = "mycdc.fixtures.cdc_orders"
columns = { id = "INT", customer = "VARCHAR", amount = "DECIMAL(10,2)", note = "VARCHAR", updated_at = "TIMESTAMP" }
"#;

const MY_ORDERS_SQL: &str = "SELECT id, customer, amount, note, updated_at FROM cdc_orders";

// `note` arrives with the ALTER TABLE: records before it lack the column.
const MY_ITEMS_SCD1: &str = r#"
kind = "scd1"
keys = ["id"]
[source]
name = "cdc_items"
topic = "mycdc.fixtures.cdc_items"
columns = { id = "INT", order_id = "INT", sku = "VARCHAR", qty = "INT", note = "VARCHAR" }
"#;

const MY_ITEMS_SQL: &str = "SELECT id, order_id, sku, qty, note FROM cdc_items";

fn mysql_lake() -> Lake {
    let lake = Lake::new();
    lake.table("orders_current", MY_ORDERS_SCD1, MY_ORDERS_SQL);
    lake.table("orders_history", MY_ORDERS_SCD2, MY_ORDERS_SQL);
    lake.table("items_current", MY_ITEMS_SCD1, MY_ITEMS_SQL);
    lake
}

async fn my_orders(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["orders_current"],
        "SELECT id, customer, amount, note, updated_at FROM orders_current",
    )
    .await
}

async fn my_items(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["items_current"],
        "SELECT id, order_id, sku, qty, note FROM items_current",
    )
    .await
}

async fn my_history(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["orders_history"],
        "SELECT id, amount, is_current FROM orders_history WHERE id IS NOT NULL",
    )
    .await
}

/// `cdc_orders` and `cdc_items` after the last statement (README "CDC"): the
/// items of order 3 deleted, 3 re-keyed to 20, 2 deleted, the TRUNCATE (no
/// record, the table was already empty) and the insert with the new column.
async fn assert_mysql_final(lake: &Lake, context: &str) {
    assert_eq!(
        my_orders(lake).await,
        rows(&[
            &["1", "Ann", "99.99", "first", "2024-01-01T00:00:00"],
            &["20", "Cy", "5.00", "NULL", "NULL"],
        ]),
        "cdc_orders ({context})"
    );
    assert_eq!(
        my_items(lake).await,
        rows(&[&["3", "20", "after truncate", "7", "new column"]]),
        "cdc_items ({context})"
    );
    assert_eq!(
        my_history(lake).await,
        rows(&[
            &["1", "99.99", "true"],
            &["2", "10.50", "false"],
            &["2", "NULL", "false"],
            &["3", "0.00", "false"],
            &["3", "5.00", "false"],
            &["20", "5.00", "true"],
        ]),
        "cdc_orders history ({context})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cdc_runs_between_transactions_match_the_database() {
    let lines = captured("mysql_cdc.jsonl");
    assert_eq!(lines.len(), 41);
    let lake = mysql_lake();

    // Lines 1-21: snapshot of 1, insert of 2, amount and note of 2 to NULL,
    // and the transaction over both tables. The schema change topic and the
    // heartbeats go with them: recognised, not rows.
    let mut first = captured("mysql_schema_changes.jsonl");
    first.extend(captured("mysql_heartbeat.jsonl"));
    first.extend_from_slice(&lines[..21]);
    let (rows_written, skipped) = feed(&lake, &first).await;
    assert_eq!(
        (rows_written, skipped),
        (7, 11 + 3 + 14),
        "7 changes; 11 DDL, 3 heartbeats and 14 transaction markers are not rows"
    );
    lake.silver().await;
    assert_eq!(
        my_orders(&lake).await,
        rows(&[
            &["1", "Ann", "99.99", "first", "2024-01-01T00:00:00"],
            &["2", "Bob", "NULL", "NULL", "2024-01-02T03:04:05.500"],
            &["3", "Cy", "5.00", "NULL", "NULL"],
        ]),
        "updates to NULL give NULL; the transaction's insert and update landed"
    );
    assert_eq!(
        my_items(&lake).await,
        rows(&[
            &["1", "3", "sku-1", "2", "NULL"],
            &["2", "3", "sku-2", "1", "NULL"],
        ]),
        "the transaction's inserts landed"
    );

    // Lines 22-41: a two-row delete, the key change, a delete, TRUNCATE and
    // ALTER (markers only), the insert with the new column.
    feed(&lake, &lines[21..]).await;
    lake.silver().await;
    assert_mysql_final(&lake, "after two runs").await;

    lake.try_silver(FullRefresh::All)
        .await
        .expect("full refresh");
    assert_mysql_final(&lake, "after a full refresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cdc_in_one_run_matches_the_database() {
    let lake = mysql_lake();
    let (rows_written, skipped) = feed(&lake, &captured("mysql_cdc.jsonl")).await;
    assert_eq!(
        (rows_written, skipped),
        (17, 24),
        "13 changes + 4 tombstones; 24 transaction markers"
    );
    lake.silver().await;
    assert_mysql_final(&lake, "one run").await;
}
