//! `lakehouse init NAME`: a new project folder, ready to validate and run.
//!
//! Writes a `lakehouse.toml` (a local lake inside the project), one silver
//! table (`orders`, SCD1 over the Debezium topic `app.public.orders`), one
//! gold mart (`daily_revenue`), sample Debezium change records for the topic
//! (`data/sample.jsonl`) and a README with the commands that run it all:
//!
//! ```text
//! lakehouse init shop && cd shop
//! lakehouse validate
//! lakehouse run bronze --from-file data/sample.jsonl
//! ```
//!
//! The sample records are Debezium Postgres envelopes with schemas, as the
//! JSON converter writes them (`schemas.enable=true`, `decimal.handling.mode=string`).

use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

/// The topic the scaffold's table reads.
pub const TOPIC: &str = "app.public.orders";

const CONFIG: &str = r#"# lakehouse configuration of this project (see `lakehouse --help`).
# Relative paths resolve against this file's folder.
[storage]
root = "lake"                 # local Delta tables; s3://, az://, abfss:// work too

[kafka]
# brokers = "127.0.0.1:9092"  # to consume Debezium topics instead of --from-file
topics = ["app.public.orders"]

[silver]
layers_dir = "layers/silver"
sql_dir = "sql/silver"

[gold]
layers_dir = "layers/gold"
sql_dir = "sql/gold"
"#;

const SILVER_SPEC: &str = r#"# Orders as an SCD1 table: one row per order, overwritten by its latest change.
kind = "scd1"
description = "Orders of the app database."
keys = ["order_id"]
surrogate_key = "order_key"

[source]
name = "orders"               # the relation sql/silver/orders.sql selects from
topic = "app.public.orders"
columns = { id = "BIGINT", customer = "VARCHAR", status = "VARCHAR", amount = "DECIMAL(10,2)", created_at = "TIMESTAMP" }

[[expectations]]
name = "amount_not_negative"
expr = "amount >= 0"
action = "drop"               # such rows go to orders_quarantine
"#;

const SILVER_SQL: &str = "-- One change of public.orders -> one orders row.
SELECT
  id                       AS order_id,
  customer,
  status,
  amount,
  created_at               AS ordered_at,
  CAST(created_at AS DATE) AS order_date
FROM orders
";

const GOLD_SPEC: &str = r#"# Revenue per day of the orders not cancelled. Incremental: a change to
# `orders` recomputes only the order dates of the changed rows.
description = "Daily revenue: orders and amount per order date."
keys = ["order_date"]
partition_by = "order_date"

[incremental]
orders = "order_date"
"#;

const GOLD_SQL: &str = "SELECT
  order_date,
  CAST(count(*) AS BIGINT)           AS orders,
  CAST(sum(amount) AS DECIMAL(18,2)) AS revenue
FROM orders
WHERE status <> 'cancelled' AND order_date IS NOT NULL
GROUP BY order_date
";

fn readme(name: &str) -> String {
    format!(
        "# {name}

A lakehouse project made by `lakehouse init`: Debezium change events of
`{TOPIC}` → bronze → silver table `orders` (layers/silver/orders.toml,
sql/silver/orders.sql) → gold mart `daily_revenue` (layers/gold,
sql/gold), stored as Delta tables under `lake/`.

Run it on the sample change records in `data/sample.jsonl`:

```sh
lakehouse validate                                  # specs and SQL, no data needed
lakehouse run bronze --from-file data/sample.jsonl  # or set [kafka] brokers and drop --from-file
lakehouse run silver
lakehouse run gold --no-publish                     # publishing needs [postgres] url
lakehouse query \"SELECT * FROM daily_revenue ORDER BY order_date\"
```

From another folder, add `--config {name}/lakehouse.toml`.
"
    )
}

/// Writes the project into `dir`, which must be missing or empty.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{} exists and is not empty: refusing to write a project into it",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lakehouse project".to_string());
    let mut sample = String::new();
    for record in sample_records() {
        sample.push_str(&serde_json::to_string(&record)?);
        sample.push('\n');
    }
    let files: [(&str, String); 7] = [
        ("lakehouse.toml", CONFIG.to_string()),
        ("layers/silver/orders.toml", SILVER_SPEC.to_string()),
        ("sql/silver/orders.sql", SILVER_SQL.to_string()),
        ("layers/gold/daily_revenue.toml", GOLD_SPEC.to_string()),
        ("sql/gold/daily_revenue.sql", GOLD_SQL.to_string()),
        ("data/sample.jsonl", sample),
        ("README.md", readme(&name)),
    ];
    for (path, text) in files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// One order row of the sample.
struct Order {
    id: i64,
    customer: &'static str,
    status: &'static str,
    amount: &'static str,
    created_at: &'static str,
}

impl Order {
    fn payload(&self) -> Value {
        json!({
            "id": self.id,
            "customer": self.customer,
            "status": self.status,
            "amount": self.amount,
            "created_at": self.created_at,
        })
    }
}

/// The sample's changes: four orders created on two days, one paid, one
/// cancelled, one deleted (with its tombstone). What stays: order 2 (5.00,
/// paid, 2024-05-01), order 3 (cancelled), order 4 (10.00, 2024-05-02), so
/// `daily_revenue` holds 2024-05-01 → 1 order, 5.00 and 2024-05-02 → 1
/// order, 10.00.
pub fn sample_records() -> Vec<Value> {
    let order = |id, customer, status, amount, created_at| Order {
        id,
        customer,
        status,
        amount,
        created_at,
    };
    let o1 = order(1, "alice", "new", "19.90", "2024-05-01T09:00:00Z");
    let o2 = order(2, "bob", "new", "5.00", "2024-05-01T12:30:00Z");
    let o3 = order(3, "carol", "new", "42.50", "2024-05-02T08:15:00Z");
    let o4 = order(4, "dave", "new", "10.00", "2024-05-02T18:00:00Z");
    let o2_paid = order(2, "bob", "paid", "5.00", "2024-05-01T12:30:00Z");
    let o3_cancelled = order(3, "carol", "cancelled", "42.50", "2024-05-02T08:15:00Z");
    let changes: Vec<(i64, &str, Option<&Order>, Option<&Order>)> = vec![
        (1, "c", None, Some(&o1)),
        (2, "c", None, Some(&o2)),
        (3, "c", None, Some(&o3)),
        (2, "u", Some(&o2), Some(&o2_paid)),
        (3, "u", Some(&o3), Some(&o3_cancelled)),
        (4, "c", None, Some(&o4)),
        (1, "d", Some(&o1), None),
    ];
    let mut records = Vec::new();
    for (offset, (id, op, before, after)) in changes.into_iter().enumerate() {
        let lsn = 24_000_000 + 1_000 * offset as i64;
        let ts_ms = 1_714_554_000_000 + 60_000 * offset as i64;
        let value = json!({
            "schema": value_schema(),
            "payload": {
                "before": before.map(Order::payload),
                "after": after.map(Order::payload),
                "source": {
                    "version": "2.7.3.Final", "connector": "postgresql", "name": "app",
                    "ts_ms": ts_ms, "snapshot": "false", "db": "app",
                    "sequence": format!("[null,\"{lsn}\"]"), "schema": "public",
                    "table": "orders", "txId": 700 + offset as i64, "lsn": lsn, "xmin": null
                },
                "op": op,
                "ts_ms": ts_ms + 5,
                "transaction": null
            }
        });
        records.push(record(offset as i64, id, Some(value)));
    }
    // Debezium follows a delete with a tombstone (null value) for compaction.
    let last = records.len() as i64;
    records.push(record(last, 1, None));
    records
}

/// A `--from-file` line: the Kafka record's topic, offset, key and value.
fn record(offset: i64, id: i64, value: Option<Value>) -> Value {
    let key = json!({
        "schema": {
            "type": "struct", "optional": false, "name": "app.public.orders.Key",
            "fields": [{"type": "int64", "optional": false, "field": "id"}]
        },
        "payload": {"id": id}
    });
    json!({
        "topic": TOPIC,
        "partition": 0,
        "offset": offset,
        "key": key.to_string(),
        "value": value.map(|v| v.to_string()),
    })
}

/// The Connect schema of the envelope (`before`/`after` row images, `source`).
fn value_schema() -> Value {
    let row = |field: &str| {
        json!({
            "type": "struct", "optional": true, "name": "app.public.orders.Value", "field": field,
            "fields": [
                {"type": "int64", "optional": false, "field": "id"},
                {"type": "string", "optional": false, "field": "customer"},
                {"type": "string", "optional": false, "field": "status"},
                {"type": "string", "optional": true, "field": "amount"},
                {"type": "string", "optional": true, "name": "io.debezium.time.ZonedTimestamp",
                 "version": 1, "field": "created_at"}
            ]
        })
    };
    let source_fields = [
        ("string", false, "version"),
        ("string", false, "connector"),
        ("string", false, "name"),
        ("int64", false, "ts_ms"),
        ("string", true, "snapshot"),
        ("string", false, "db"),
        ("string", true, "sequence"),
        ("string", false, "schema"),
        ("string", false, "table"),
        ("int64", true, "txId"),
        ("int64", true, "lsn"),
        ("int64", true, "xmin"),
    ];
    let source: Vec<Value> = source_fields
        .iter()
        .map(|(ty, optional, field)| json!({"type": ty, "optional": optional, "field": field}))
        .collect();
    json!({
        "type": "struct", "optional": false, "name": "app.public.orders.Envelope", "version": 2,
        "fields": [
            row("before"),
            row("after"),
            {"type": "struct", "optional": false, "name": "io.debezium.connector.postgresql.Source",
             "field": "source", "fields": source},
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"},
            {"type": "struct", "optional": true, "name": "event.block", "version": 1,
             "field": "transaction", "fields": [
                {"type": "string", "optional": false, "field": "id"},
                {"type": "int64", "optional": false, "field": "total_order"},
                {"type": "int64", "optional": false, "field": "data_collection_order"}
             ]}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line frames as a Kafka record of the topic, and the
    /// delete is followed by its tombstone.
    #[test]
    fn sample_records_are_debezium_lines() {
        let records = sample_records();
        assert_eq!(records.len(), 8);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r["topic"], TOPIC);
            assert_eq!(r["offset"], i as i64);
        }
        let delete: Value = serde_json::from_str(records[6]["value"].as_str().unwrap()).unwrap();
        assert_eq!(delete["payload"]["op"], "d");
        assert!(records[7]["value"].is_null());
    }
}
