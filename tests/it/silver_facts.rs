//! Facts with late-arriving dimensions, SCD2 as-of lookups, and expectations.

use lakehouse::silver::FullRefresh;
use serde_json::json;

use crate::silver_support::*;

const DIM: &str = r#"
kind = "scd2"
keys = ["customer_id"]
surrogate_key = "customer_key"
track = ["city"]
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", city = "VARCHAR", email = "VARCHAR" }
"#;
const DIM_SQL: &str = "SELECT id AS customer_id, city, email FROM customers";

const FACT: &str = r#"
kind = "fact"
keys = ["order_id"]
[source]
name = "orders"
topic = "shop.public.orders"
columns = { id = "BIGINT", customer_id = "BIGINT", amount = "DECIMAL(10,2)", created_at = "TIMESTAMP" }
[[lookups]]
table = "dim_customer"
on = { customer_id = "customer_id" }
key = "customer_key"
as_of = "created_at"
columns = { customer_city = "city" }
[[expectations]]
name = "amount_positive"
expr = "amount > 0"
action = "ACTION"
"#;
const FACT_SQL: &str = "SELECT id AS order_id, customer_id, amount, created_at FROM orders";

fn lake(action: &str) -> Lake {
    let lake = Lake::new();
    lake.table("dim_customer", DIM, DIM_SQL);
    lake.table("fact_orders", &FACT.replace("ACTION", action), FACT_SQL);
    lake
}

fn order(id: i64, customer: i64, amount: &str, at: &str) -> serde_json::Value {
    json!({ "id": id, "customer_id": customer, "amount": amount, "created_at": at })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_dimension_rows_are_repaired_and_versions_match_event_time() {
    let lake = lake("warn");
    let d = Dbz::new();
    let k = |id: i64| json!({ "id": id });
    // The order arrives before its customer.
    lake.feed(&[
        d.change(
            "customers",
            "c",
            k(1),
            json!({"id": 1, "city": "Paris", "email": "a"}),
            10,
        ),
        d.change(
            "orders",
            "c",
            k(100),
            order(100, 2, "10.00", "2024-01-01T10:00:00"),
            11,
        ),
    ])
    .await;
    lake.silver().await;
    let rows = lake
        .rows(
            &["fact_orders"],
            "SELECT order_id, customer_key, customer_city FROM fact_orders",
        )
        .await;
    assert_eq!(rows, vec![vec!["100", "-1", "NULL"]]);

    // Customer 2 arrives (its first version starts after the order: the first version is used),
    // then moves; a new order after the move gets the new version.
    let mut d2 = Dbz::new();
    d2.ts = 1_704_103_200_000; // 2024-01-01T10:00:00Z
    lake.feed(&[d2.change(
        "customers",
        "c",
        k(2),
        json!({"id": 2, "city": "Oslo", "email": "b"}),
        20,
    )])
    .await;
    lake.silver().await;
    lake.feed(&[
        d2.change(
            "customers",
            "u",
            k(2),
            json!({"id": 2, "city": "Bergen", "email": "b"}),
            3_600_000,
        ),
        d2.change(
            "customers",
            "u",
            k(2),
            json!({"id": 2, "city": "Bergen", "email": "b2"}),
            3_600_001,
        ),
        d.change(
            "orders",
            "c",
            k(101),
            order(101, 2, "5.00", "2024-01-01T12:00:00"),
            30,
        ),
    ])
    .await;
    lake.silver().await;
    let rows = lake
        .rows(
            &["fact_orders"],
            "SELECT order_id, customer_city FROM fact_orders",
        )
        .await;
    assert_eq!(rows, vec![vec!["100", "Oslo"], vec!["101", "Bergen"]]);
    let versions = lake
        .rows(
            &["dim_customer"],
            "SELECT customer_id, city, email, is_current FROM dim_customer WHERE customer_id = 2",
        )
        .await;
    assert_eq!(
        versions,
        vec![
            vec!["2", "Bergen", "b2", "true"],
            vec!["2", "Oslo", "b", "false"]
        ],
        "the email change updated the current version in place"
    );
    // Fact keys point at versions of the right customer.
    let joined = lake
        .rows(
            &["fact_orders", "dim_customer"],
            "SELECT f.order_id, c.city FROM fact_orders f JOIN dim_customer c ON f.customer_key = c.customer_key",
        )
        .await;
    assert_eq!(joined, vec![vec!["100", "Oslo"], vec!["101", "Bergen"]]);
    // Replays never create versions; full refresh keeps surrogate keys.
    let before = lake
        .rows(&["dim_customer"], "SELECT * FROM dim_customer")
        .await;
    lake.feed(&[d2.change(
        "customers",
        "u",
        k(2),
        json!({"id": 2, "city": "Bergen", "email": "b"}),
        3_600_000,
    )])
    .await;
    lake.silver().await;
    assert_eq!(
        lake.rows(&["dim_customer"], "SELECT * FROM dim_customer")
            .await,
        before
    );
    lake.try_silver(FullRefresh::All).await.unwrap();
    assert_eq!(
        lake.rows(&["dim_customer"], "SELECT * FROM dim_customer")
            .await,
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectation_warn_counts_and_keeps() {
    let lake = lake("warn");
    let d = Dbz::new();
    lake.feed(&[d.change(
        "orders",
        "c",
        json!({"id": 1}),
        order(1, 1, "-3.00", "2024-01-01T00:00:00"),
        1,
    )])
    .await;
    let summary = lake.silver().await;
    let fact = summary
        .tables
        .iter()
        .find(|t| t.table == "fact_orders")
        .unwrap();
    assert_eq!(fact.expectations[0].2, 1);
    assert_eq!(
        lake.rows(&["fact_orders"], "SELECT order_id FROM fact_orders")
            .await,
        vec![vec!["1"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectation_drop_quarantines_the_row() {
    let lake = lake("drop");
    let d = Dbz::new();
    lake.feed(&[
        d.change(
            "orders",
            "c",
            json!({"id": 1}),
            order(1, 1, "-3.00", "2024-01-01T00:00:00"),
            1,
        ),
        d.change(
            "orders",
            "c",
            json!({"id": 2}),
            order(2, 1, "3.00", "2024-01-01T00:00:00"),
            2,
        ),
    ])
    .await;
    let summary = lake.silver().await;
    let fact = summary
        .tables
        .iter()
        .find(|t| t.table == "fact_orders")
        .unwrap();
    assert_eq!(fact.expectations[0].2, 1);
    assert_eq!(
        lake.rows(&["fact_orders"], "SELECT order_id FROM fact_orders")
            .await,
        vec![vec!["2"]]
    );
    let quarantined = lake
        .rows(
            &["fact_orders_quarantine"],
            "SELECT rule, key, row FROM fact_orders_quarantine",
        )
        .await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0][0], "amount_positive");
    assert!(quarantined[0][2].contains("-3"), "{quarantined:?}");
    // The counts are in the run history (commit info).
    let root = lakehouse::storage::StorageRoot::from_config(&lake.config.storage).unwrap();
    let table = root.open_table("silver", "fact_orders").await.unwrap();
    let history: Vec<_> = futures::TryStreamExt::try_collect(table.history(Some(1)))
        .await
        .unwrap();
    let history = format!("{history:?}");
    assert!(history.contains("amount_positive"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectation_fail_aborts_and_commits_nothing() {
    let lake = lake("fail");
    let d = Dbz::new();
    lake.feed(&[d.change(
        "orders",
        "c",
        json!({"id": 2}),
        order(2, 1, "3.00", "2024-01-01T00:00:00"),
        1,
    )])
    .await;
    lake.silver().await;
    let version = lake.version("silver", "fact_orders").await;
    lake.feed(&[
        d.change(
            "orders",
            "c",
            json!({"id": 3}),
            order(3, 1, "4.00", "2024-01-01T00:00:00"),
            2,
        ),
        d.change(
            "orders",
            "c",
            json!({"id": 1}),
            order(1, 1, "-3.00", "2024-01-01T00:00:00"),
            3,
        ),
    ])
    .await;
    let err = lake
        .try_silver(FullRefresh::No)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("amount_positive") && err.contains("nothing was committed"),
        "{err}"
    );
    assert_eq!(lake.version("silver", "fact_orders").await, version);
    assert_eq!(
        lake.rows(&["fact_orders"], "SELECT order_id FROM fact_orders")
            .await,
        vec![vec!["2"]]
    );
}
