//! Silver SCD1: CDC semantics, incremental runs, watermarks, full refresh, SQL errors.

use lakehouse::silver::FullRefresh;
use serde_json::json;

use crate::silver_support::*;

const SPEC: &str = r#"
kind = "scd1"
keys = ["customer_id"]
surrogate_key = "customer_key"
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", email = "VARCHAR", city = "VARCHAR", note = "VARCHAR" }
"#;

const SQL: &str =
    "SELECT id AS customer_id, lower(trim(email)) AS email, city, note FROM customers";

fn customer(id: i64, email: &str, city: &str) -> serde_json::Value {
    json!({ "id": id, "email": email, "city": city, "note": "n" })
}

async fn current(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["dim_c"],
        "SELECT customer_id, email, city, note FROM dim_c WHERE customer_key <> -1",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scd1_cdc_semantics_across_incremental_runs() {
    let lake = Lake::new();
    lake.table("dim_c", SPEC, SQL);
    let d = Dbz::new();
    let k = |id: i64| json!({ "id": id });
    lake.feed(&[
        d.change(
            "customers",
            "r",
            k(1),
            customer(1, " A@X.COM ", "Paris"),
            100,
        ),
        d.change("customers", "r", k(2), customer(2, "b@x.com", "Oslo"), 100),
        d.change("customers", "c", k(3), customer(3, "c@x.com", "Rome"), 110),
        // Out of order within the batch: the older update arrives last and loses.
        d.change(
            "customers",
            "u",
            k(2),
            customer(2, "b@x.com", "Bergen"),
            130,
        ),
        d.change(
            "customers",
            "u",
            k(2),
            customer(2, "b@x.com", "Trondheim"),
            120,
        ),
    ])
    .await;
    let first = lake.silver().await;
    assert!(first.tables[0].version.is_some());
    assert_eq!(
        current(&lake).await,
        vec![
            vec!["1", "a@x.com", "Paris", "n"],
            vec!["2", "b@x.com", "Bergen", "n"],
            vec!["3", "c@x.com", "Rome", "n"],
        ]
    );

    // Nothing new: nothing committed.
    let version = lake.version("silver", "dim_c").await;
    let idle = lake.silver().await;
    assert!(idle.tables[0].version.is_none());
    assert_eq!(lake.version("silver", "dim_c").await, version);

    // Deletes (event + tombstone), a replay of an old update, an exact duplicate,
    // a stale upsert for the deleted key, and a re-insert after the delete.
    lake.feed(&[
        d.change("customers", "d", k(1), customer(1, "a@x.com", "Paris"), 140),
        d.tombstone("customers", k(1)),
        d.change(
            "customers",
            "u",
            k(2),
            customer(2, "b@x.com", "Trondheim"),
            120,
        ),
        d.change("customers", "c", k(3), customer(3, "c@x.com", "Rome"), 110),
        d.change("customers", "u", k(3), customer(3, "c@x.com", "Milan"), 150),
    ])
    .await;
    lake.silver().await;
    lake.feed(&[d.change(
        "customers",
        "u",
        k(1),
        customer(1, "late@x.com", "Lyon"),
        135,
    )])
    .await;
    lake.silver().await;
    assert_eq!(
        current(&lake).await,
        vec![
            vec!["2", "b@x.com", "Bergen", "n"],
            vec!["3", "c@x.com", "Milan", "n"]
        ]
    );
    lake.feed(&[d.change(
        "customers",
        "c",
        k(1),
        customer(1, "new@x.com", "Nice"),
        160,
    )])
    .await;
    lake.silver().await;
    assert_eq!(current(&lake).await[0], vec!["1", "new@x.com", "Nice", "n"]);

    // TOAST placeholder keeps the held value.
    let mut toasted = customer(3, "c@x.com", "Turin");
    toasted["note"] = json!("__debezium_unavailable_value");
    lake.feed(&[d.change("customers", "u", k(3), toasted, 170)])
        .await;
    lake.silver().await;
    assert_eq!(current(&lake).await[2], vec!["3", "c@x.com", "Turin", "n"]);

    // Truncate empties the table; a later insert survives, an older one does not.
    lake.feed(&[
        d.truncate("customers", 180),
        d.change("customers", "c", k(9), customer(9, "z@x.com", "Riga"), 190),
    ])
    .await;
    lake.silver().await;
    lake.feed(&[d.change("customers", "u", k(2), customer(2, "b@x.com", "Stale"), 175)])
        .await;
    lake.silver().await;
    assert_eq!(
        current(&lake).await,
        vec![vec!["9", "z@x.com", "Riga", "n"]]
    );

    // A full refresh from all of bronze gives the same table and the same surrogate keys.
    let before = lake.rows(&["dim_c"], "SELECT * FROM dim_c").await;
    lake.try_silver(FullRefresh::All).await.unwrap();
    assert_eq!(lake.rows(&["dim_c"], "SELECT * FROM dim_c").await, before);
    // The unknown member is there once.
    assert_eq!(
        lake.rows(
            &["dim_c"],
            "SELECT count(*) FROM dim_c WHERE customer_key = -1"
        )
        .await,
        vec![vec!["1"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_clause_removes_rows_that_stop_matching() {
    let lake = Lake::new();
    lake.table("dim_c", SPEC, &format!("{SQL} WHERE city <> 'Hidden'"));
    let d = Dbz::new();
    let k = |id: i64| json!({ "id": id });
    lake.feed(&[
        d.change("customers", "c", k(1), customer(1, "a@x.com", "Paris"), 100),
        d.change(
            "customers",
            "c",
            k(2),
            customer(2, "b@x.com", "Hidden"),
            101,
        ),
    ])
    .await;
    lake.silver().await;
    lake.feed(&[d.change(
        "customers",
        "u",
        k(1),
        customer(1, "a@x.com", "Hidden"),
        102,
    )])
    .await;
    lake.silver().await;
    assert!(current(&lake).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_specs_and_sql_name_the_file() {
    let lake = Lake::new();
    lake.table(
        "dim_c",
        SPEC,
        "SELECT id AS customer_id, count(*) AS n FROM customers GROUP BY id",
    );
    let d = Dbz::new();
    lake.feed(&[d.change("customers", "c", json!({"id": 1}), customer(1, "a", "b"), 1)])
        .await;
    let err = lake
        .try_silver(FullRefresh::No)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dim_c.sql") && err.contains("row-wise"),
        "{err}"
    );

    lake.table("dim_c", &SPEC.replace("keys =", "kees ="), SQL);
    let err = lake
        .try_silver(FullRefresh::No)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("dim_c.toml") && err.contains("kees"), "{err}");

    lake.table(
        "dim_c",
        SPEC,
        "SELECT id AS customer_id, nope FROM customers",
    );
    let err = lake
        .try_silver(FullRefresh::No)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("dim_c.sql") && err.contains("nope"), "{err}");
    assert_eq!(
        lake.version("silver", "dim_c").await,
        None,
        "nothing was created"
    );
}

/// The Delta log entry of `version` of a silver table, as text.
fn commit_json(lake: &Lake, table: &str, version: u64) -> String {
    let path = lake
        .path()
        .join("lake/silver")
        .join(table)
        .join("_delta_log")
        .join(format!("{version:020}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_refresh_with_new_columns_is_one_atomic_commit() {
    let lake = Lake::new();
    lake.table("dim_c", SPEC, SQL);
    let d = Dbz::new();
    let k = |id: i64| json!({ "id": id });
    lake.feed(&[
        d.change("customers", "c", k(1), customer(1, "a@x", "Paris"), 10),
        d.change("customers", "c", k(2), customer(2, "b@x", "Oslo"), 11),
    ])
    .await;
    lake.silver().await;
    let before = current(&lake).await;
    let built = lake.version("silver", "dim_c").await.unwrap();

    // New columns, and an expectation that fails: the refresh aborts after
    // it has planned the new layout and written files, before its commit.
    let failing = format!(
        "{SPEC}\n[[expectations]]\nname = \"never\"\nexpr = \"city = 'nowhere'\"\naction = \"fail\"\n"
    );
    let new_sql = "SELECT id AS customer_id, lower(trim(email)) AS email, city, note, upper(city) AS city_upper FROM customers";
    lake.table("dim_c", &failing, new_sql);
    let err = lake
        .try_silver(FullRefresh::Table("dim_c".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("never"), "{err}");
    assert_eq!(lake.version("silver", "dim_c").await, Some(built));
    assert_eq!(current(&lake).await, before, "the old table is untouched");

    // The real refresh: schema, data and watermark land in one commit.
    lake.table("dim_c", SPEC, new_sql);
    let err = lake
        .try_silver(FullRefresh::No)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--full-refresh dim_c"), "{err}");
    lake.try_silver(FullRefresh::Table("dim_c".into()))
        .await
        .unwrap();
    assert_eq!(lake.version("silver", "dim_c").await, Some(built + 1));
    let log = commit_json(&lake, "dim_c", built + 1);
    for action in [
        "\"metaData\"",
        "\"add\"",
        "\"remove\"",
        "\"txn\"",
        "city_upper",
    ] {
        assert!(log.contains(action), "{action} missing from {log}");
    }
    assert_eq!(
        lake.rows(
            &["dim_c"],
            "SELECT customer_id, city_upper FROM dim_c WHERE customer_key <> -1"
        )
        .await,
        vec![vec!["1", "PARIS"], vec!["2", "OSLO"]]
    );
    // Incremental runs go on in the new layout.
    lake.feed(&[d.change("customers", "u", k(2), customer(2, "b@x", "Bergen"), 12)])
        .await;
    lake.silver().await;
    assert_eq!(
        lake.rows(
            &["dim_c"],
            "SELECT customer_id, city_upper FROM dim_c WHERE customer_key <> -1"
        )
        .await,
        vec![vec!["1", "PARIS"], vec!["2", "BERGEN"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_by_lays_files_out_by_value_and_merges_across_partitions() {
    let lake = Lake::new();
    lake.table("dim_c", SPEC, SQL);
    let d = Dbz::new();
    let k = |id: i64| json!({ "id": id });
    lake.feed(&[
        d.change("customers", "c", k(1), customer(1, "a@x", "Paris"), 10),
        d.change("customers", "c", k(2), customer(2, "b@x", "Oslo"), 11),
        d.change("customers", "c", k(3), customer(3, "c@x", "Oslo"), 12),
    ])
    .await;
    lake.silver().await;
    let unpartitioned = lake.version("silver", "dim_c").await.unwrap();

    // Partitioning a built table is a layout change: one full-refresh commit.
    let partitioned = SPEC.replace("[source]", "partition_by = [\"city\"]\n[source]");
    lake.table("dim_c", &partitioned, SQL);
    lake.try_silver(FullRefresh::Table("dim_c".into()))
        .await
        .unwrap();
    assert_eq!(
        lake.version("silver", "dim_c").await,
        Some(unpartitioned + 1)
    );
    let dir = lake.path().join("lake/silver/dim_c");
    for city in ["Paris", "Oslo"] {
        assert!(
            dir.join(format!("city={city}")).is_dir(),
            "no city={city} folder"
        );
    }

    // An update that moves a key to another partition, a delete, a new key.
    lake.feed(&[
        d.change("customers", "u", k(2), customer(2, "b2@x", "Paris"), 20),
        d.change("customers", "d", k(3), customer(3, "c@x", "Oslo"), 21),
        d.change("customers", "c", k(4), customer(4, "d@x", "Rome"), 22),
    ])
    .await;
    lake.silver().await;
    let incremental = current(&lake).await;
    assert_eq!(
        incremental,
        vec![
            vec!["1", "a@x", "Paris", "n"],
            vec!["2", "b2@x", "Paris", "n"],
            vec!["4", "d@x", "Rome", "n"],
        ]
    );
    assert!(dir.join("city=Rome").is_dir());
    // Each partition file holds only its own city.
    assert_eq!(
        lake.rows(
            &["dim_c"],
            "SELECT city, count(*) FROM dim_c WHERE customer_key <> -1 GROUP BY city"
        )
        .await,
        vec![vec!["Paris", "2"], vec!["Rome", "1"]]
    );
    lake.try_silver(FullRefresh::All).await.unwrap();
    assert_eq!(current(&lake).await, incremental);
}
