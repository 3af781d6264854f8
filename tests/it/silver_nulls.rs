//! Silver: columns set to NULL, with the old row in `before` (Postgres
//! REPLICA IDENTITY FULL, MySQL full row images) and without it, and columns
//! that an after image lacks.
//!
//! A NULL in `after` is the new value even though `before` still holds the
//! old one: an SCD1 row takes it in place, a tracked SCD2 column going to or
//! from NULL opens a version. A column absent from `after` (not the same as
//! NULL) keeps the value the table holds, like a TOAST placeholder.

use serde_json::{Value, json};

use crate::silver_support::*;

const SCD2: &str = r#"
kind = "scd2"
keys = ["customer_id"]
surrogate_key = "customer_key"
track = ["last_name", "city"]
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", email = "VARCHAR", last_name = "VARCHAR", city = "VARCHAR" }
"#;

const SCD1: &str = r#"
kind = "scd1"
keys = ["customer_id"]
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", email = "VARCHAR", last_name = "VARCHAR", city = "VARCHAR" }
"#;

const SQL: &str = "SELECT id AS customer_id, email, last_name, city FROM customers";

fn row(email: Value, last_name: Value, city: Value) -> Value {
    json!({ "id": 1, "email": email, "last_name": last_name, "city": city })
}

async fn scd2_rows(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["dim_customer"],
        "SELECT customer_id, email, last_name, city, is_current FROM dim_customer \
         WHERE customer_id IS NOT NULL",
    )
    .await
}

async fn scd1_rows(lake: &Lake) -> Vec<Vec<String>> {
    lake.rows(
        &["customers_current"],
        "SELECT customer_id, email, last_name, city FROM customers_current",
    )
    .await
}

fn cells(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

async fn updates_to_null(d: Dbz, full_images: bool) {
    let context = format!("{:?}, before images: {full_images}", d.connector);
    let lake = Lake::new();
    lake.table("dim_customer", SCD2, SQL);
    lake.table("customers_current", SCD1, SQL);
    let key = json!({ "id": 1 });
    let image = |v: Value| if full_images { v } else { Value::Null };
    let created = row(json!("a@x"), json!("Smith"), json!("Paris"));
    let emptied = row(Value::Null, Value::Null, json!("Paris"));
    lake.feed(&[
        d.change("customers", "c", key.clone(), created.clone(), 100),
        // email and last_name set to NULL; `before` still holds the old values.
        d.change_images(
            "customers",
            "u",
            key.clone(),
            image(created.clone()),
            emptied.clone(),
            110,
        ),
    ])
    .await;
    lake.silver().await;
    assert_eq!(
        scd1_rows(&lake).await,
        vec![cells(&["1", "NULL", "NULL", "Paris"])],
        "SCD1 takes the NULLs in place ({context})"
    );
    assert_eq!(
        scd2_rows(&lake).await,
        vec![
            cells(&["1", "NULL", "NULL", "Paris", "true"]),
            cells(&["1", "a@x", "Smith", "Paris", "false"]),
        ],
        "a tracked column going to NULL opens a version ({context})"
    );

    // An after image without `city`: the held value stays. Then last_name
    // comes back from NULL, which opens a version again.
    let partial = json!({ "id": 1, "email": "b@x", "last_name": null });
    let back = row(json!("b@x"), json!("Jones"), json!("Paris"));
    lake.feed(&[
        d.change_images(
            "customers",
            "u",
            key.clone(),
            image(emptied.clone()),
            partial,
            120,
        ),
        d.change_images(
            "customers",
            "u",
            key.clone(),
            image(row(json!("b@x"), Value::Null, json!("Paris"))),
            back,
            130,
        ),
    ])
    .await;
    lake.silver().await;
    assert_eq!(
        scd1_rows(&lake).await,
        vec![cells(&["1", "b@x", "Jones", "Paris"])],
        "{context}"
    );
    assert_eq!(
        scd2_rows(&lake).await,
        vec![
            cells(&["1", "a@x", "Smith", "Paris", "false"]),
            cells(&["1", "b@x", "Jones", "Paris", "true"]),
            cells(&["1", "b@x", "NULL", "Paris", "false"]),
        ],
        "a column absent from `after` keeps its value; from NULL opens a version ({context})"
    );

    // City to NULL, then a delete that carries the full old row: the key leaves.
    let no_city = row(json!("b@x"), json!("Jones"), Value::Null);
    lake.feed(&[d.change_images(
        "customers",
        "u",
        key.clone(),
        image(row(json!("b@x"), json!("Jones"), json!("Paris"))),
        no_city.clone(),
        140,
    )])
    .await;
    lake.silver().await;
    assert_eq!(
        scd1_rows(&lake).await,
        vec![cells(&["1", "b@x", "Jones", "NULL"])],
        "{context}"
    );
    lake.feed(&[d.change("customers", "d", key, no_city, 150)])
        .await;
    lake.silver().await;
    assert!(scd1_rows(&lake).await.is_empty(), "{context}");
    let versions = scd2_rows(&lake).await;
    assert_eq!(versions.len(), 4, "{context}: {versions:?}");
    assert!(
        versions.iter().all(|v| v[4] == "false"),
        "{context}: {versions:?}"
    );
    assert!(
        versions.contains(&cells(&["1", "b@x", "Jones", "NULL", "false"])),
        "{context}: {versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_updates_to_null_with_replica_identity_full() {
    updates_to_null(Dbz::new(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_updates_to_null_with_replica_identity_default() {
    updates_to_null(Dbz::new(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_updates_to_null_with_full_row_images() {
    updates_to_null(Dbz::mysql(), true).await;
}
