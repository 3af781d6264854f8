//! The encoded records match Debezium 2.7's PostgreSQL output and round-trip to the
//! simulator's typed ground truth.

mod common;

use common::{decode_row, generate, key_order, parse};
use lakehouse_mock::{Op, SimConfig, Table};
use std::collections::BTreeMap;

fn run() -> common::Run {
    generate(
        SimConfig {
            seed: 11,
            orders_per_hour: 60.0,
            ..SimConfig::default()
        },
        3000,
    )
}

#[test]
fn every_key_and_value_is_json() {
    let r = run();
    let mut n = 0;
    for rec in r.all_records() {
        let key = parse(rec.key.as_deref().expect("every record has a key"));
        assert!(key["schema"].is_object() && key["payload"].is_object());
        if let Some(v) = &rec.value {
            let v = parse(v);
            assert!(v["schema"].is_object() && v["payload"].is_object());
        }
        n += 1;
    }
    assert!(n > 10_000, "only {n} records");
}

#[test]
fn envelope_schema_and_payload_field_order() {
    let r = run();
    let rec = &r.tx_records[0][1];
    let value = rec.value.as_deref().unwrap();
    let top = key_order(value, &[]);
    assert_eq!(top, ["schema", "payload"]);
    assert_eq!(
        key_order(value, &["payload"]),
        [
            "before",
            "after",
            "source",
            "transaction",
            "op",
            "ts_ms",
            "ts_us",
            "ts_ns"
        ]
    );
    assert_eq!(
        key_order(value, &["payload", "source"]),
        [
            "version",
            "connector",
            "name",
            "ts_ms",
            "snapshot",
            "db",
            "sequence",
            "ts_us",
            "ts_ns",
            "schema",
            "table",
            "txId",
            "lsn",
            "xmin"
        ]
    );
    let v = parse(value);
    let schema = &v["schema"];
    let fields: Vec<&str> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "before",
            "after",
            "source",
            "transaction",
            "op",
            "ts_ms",
            "ts_us",
            "ts_ns"
        ]
    );
    assert_eq!(schema["version"], 2);
    let table = v["payload"]["source"]["table"].as_str().unwrap();
    assert_eq!(
        schema["name"].as_str().unwrap(),
        format!("shop.public.{table}.Envelope")
    );
    assert_eq!(
        schema["fields"][2]["name"],
        "io.debezium.connector.postgresql.Source"
    );
    assert_eq!(schema["fields"][3]["name"], "event.block");
    let source_fields: Vec<&str> = schema["fields"][2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(source_fields, key_order(value, &["payload", "source"]));
    // Schema field objects use JsonConverter's key order.
    let text = String::from_utf8_lossy(value);
    assert!(text.contains(r#"{"type":"int64","optional":false,"default":0,"field":"id"}"#));
    // Compact JSON, no spaces between tokens.
    assert!(!String::from_utf8_lossy(value).contains("\": "));
}

#[test]
fn logical_types_are_declared_like_debezium() {
    let r = run();
    let rec = r
        .all_records()
        .find(|rec| rec.topic == "shop.public.products" && rec.value.is_some())
        .unwrap();
    let v = parse(rec.value.as_deref().unwrap());
    let cols = v["schema"]["fields"][1]["fields"].as_array().unwrap();
    let col = |name: &str| cols.iter().find(|c| c["field"] == name).unwrap().clone();
    let price = col("price");
    assert_eq!(price["type"], "bytes");
    assert_eq!(price["name"], "org.apache.kafka.connect.data.Decimal");
    assert_eq!(price["parameters"]["scale"], "2");
    assert_eq!(price["parameters"]["connect.decimal.precision"], "10");
    assert_eq!(col("weight_kg")["parameters"]["scale"], "3");
    assert_eq!(col("created_at")["name"], "io.debezium.time.ZonedTimestamp");
    assert_eq!(col("attributes")["name"], "io.debezium.data.Json");
    let key = parse(rec.key.as_deref().unwrap());
    assert_eq!(key["schema"]["name"], "shop.public.products.Key");
    assert_eq!(key["schema"]["fields"].as_array().unwrap().len(), 1);
}

#[test]
fn ops_before_after_and_tombstones() {
    let r = run();
    for (i, c) in r.snapshot.changes.iter().enumerate() {
        assert_eq!(c.op, Op::Read);
        let v = parse(r.snapshot_records[i].value.as_deref().unwrap());
        assert_eq!(v["payload"]["op"], "r");
        assert!(v["payload"]["before"].is_null() && v["payload"]["transaction"].is_null());
    }
    let marks: Vec<String> = r
        .snapshot_records
        .iter()
        .map(|rec| {
            parse(rec.value.as_deref().unwrap())["payload"]["source"]["snapshot"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(marks.first().unwrap(), "first");
    assert_eq!(marks.last().unwrap(), "last");
    assert!(marks.iter().any(|m| m == "true"));
    assert!(marks.iter().any(|m| m == "first_in_data_collection"));
    let mut deletes = 0;
    for recs in &r.tx_records {
        for (i, rec) in recs.iter().enumerate() {
            let Some(value) = &rec.value else { continue };
            let p = &parse(value)["payload"];
            let Some(op) = p.get("op").and_then(|o| o.as_str()) else {
                continue;
            };
            match op {
                "c" => assert!(p["before"].is_null() && p["after"].is_object()),
                "u" => assert!(p["before"].is_object() && p["after"].is_object()),
                "d" => {
                    assert!(p["before"].is_object() && p["after"].is_null());
                    let next = &recs[i + 1];
                    assert_eq!(next.topic, rec.topic);
                    assert_eq!(next.key, rec.key);
                    assert!(next.value.is_none(), "tombstone follows delete");
                    deletes += 1;
                }
                other => panic!("unexpected op {other}"),
            }
        }
    }
    assert!(deletes > 0, "no deletes generated");
}

#[test]
fn begin_end_frame_each_transaction_with_matching_counts() {
    let r = run();
    for (tx, recs) in r.txs.iter().zip(&r.tx_records) {
        let id = format!("{}:{}", tx.tx_id, tx.lsn_start);
        let begin = parse(recs[0].value.as_deref().unwrap());
        let end = parse(recs.last().unwrap().value.as_deref().unwrap());
        assert_eq!(recs[0].topic, "shop.transaction");
        assert_eq!(begin["payload"]["status"], "BEGIN");
        assert_eq!(begin["payload"]["id"], id.as_str());
        assert!(begin["payload"]["event_count"].is_null());
        assert_eq!(end["payload"]["status"], "END");
        assert_eq!(end["payload"]["id"], id.as_str());
        let key = parse(recs[0].key.as_deref().unwrap());
        assert_eq!(key["payload"]["id"], id.as_str());
        assert_eq!(
            key["schema"]["name"],
            "io.debezium.connector.common.TransactionMetadataKey"
        );
        let data: Vec<_> = recs[1..recs.len() - 1]
            .iter()
            .filter(|r| r.value.is_some())
            .collect();
        assert_eq!(data.len(), tx.changes.len());
        assert_eq!(end["payload"]["event_count"], data.len() as u64);
        let mut per_table: BTreeMap<String, u64> = BTreeMap::new();
        for (i, rec) in data.iter().enumerate() {
            let p = &parse(rec.value.as_deref().unwrap())["payload"];
            let coll = format!("public.{}", p["source"]["table"].as_str().unwrap());
            let n = per_table.entry(coll).or_default();
            *n += 1;
            assert_eq!(p["transaction"]["id"], id.as_str());
            assert_eq!(p["transaction"]["total_order"], i as u64 + 1);
            assert_eq!(p["transaction"]["data_collection_order"], *n);
        }
        let mut from_end: BTreeMap<String, u64> = BTreeMap::new();
        for dc in end["payload"]["data_collections"].as_array().unwrap() {
            from_end.insert(
                dc["data_collection"].as_str().unwrap().to_string(),
                dc["event_count"].as_u64().unwrap(),
            );
        }
        assert_eq!(per_table, from_end);
    }
}

#[test]
fn decoded_payloads_equal_the_applied_changes() {
    let r = run();
    let snap = r.snapshot.changes.iter().zip(&r.snapshot_records);
    let stream = r.txs.iter().zip(&r.tx_records).flat_map(|(tx, recs)| {
        let data: Vec<_> = recs[1..recs.len() - 1]
            .iter()
            .filter(|r| r.value.is_some())
            .collect();
        tx.changes.iter().zip(data)
    });
    let mut n = 0;
    for (change, rec) in snap.chain(stream) {
        assert_eq!(rec.topic, format!("shop.public.{}", change.table));
        let v = parse(rec.value.as_deref().unwrap());
        let p = &v["payload"];
        assert_eq!(p["op"], change.op.code());
        assert_eq!(p["source"]["lsn"], change.lsn);
        assert_eq!(p["ts_ms"], change.ts_ms);
        assert_eq!(decode_row(change.table, &p["before"]), change.before);
        assert_eq!(decode_row(change.table, &p["after"]), change.after);
        // The key carries exactly the primary key of the row.
        let key = parse(rec.key.as_deref().unwrap());
        let row = change.after.as_ref().or(change.before.as_ref()).unwrap();
        for pk in change.table.primary_key() {
            let col = change
                .table
                .columns()
                .iter()
                .find(|c| c.name == pk)
                .unwrap();
            let want = row.iter().find(|(c, _)| *c == pk).unwrap().1.clone();
            assert_eq!(common::decode_value(col.ty, &key["payload"][pk]), want);
        }
        n += 1;
    }
    assert!(n > 5000);
}

#[test]
fn rows_follow_table_column_order() {
    let r = run();
    let changes = r
        .snapshot
        .changes
        .iter()
        .chain(r.txs.iter().flat_map(|t| &t.changes));
    for c in changes {
        let want: Vec<&str> = c.table.columns().iter().map(|c| c.name).collect();
        for row in [&c.before, &c.after].into_iter().flatten() {
            let got: Vec<&str> = row.iter().map(|(n, _)| *n).collect();
            assert_eq!(got, want, "{}", c.table);
        }
    }
}

#[test]
fn value_sizes_are_one_to_five_kb() {
    let r = run();
    let mut sizes: Vec<usize> = r
        .all_records()
        .filter(|rec| !rec.topic.ends_with(".transaction"))
        .filter_map(|rec| rec.value.as_ref().map(Vec::len))
        .collect();
    sizes.sort_unstable();
    let (min, max) = (sizes[0], sizes[sizes.len() - 1]);
    let median = sizes[sizes.len() / 2];
    assert!(min >= 1024 && max <= 5 * 1024, "min {min} max {max}");
    assert!((2048..=5 * 1024).contains(&median), "median {median}");
}

#[test]
fn every_table_gets_events() {
    let r = run();
    for t in Table::ALL {
        let topic = format!("shop.public.{t}");
        assert!(
            r.all_records().any(|rec| rec.topic == topic),
            "no records for {topic}"
        );
    }
}

#[test]
fn custom_prefix_is_used_everywhere() {
    let r = generate(
        SimConfig {
            seed: 3,
            topic_prefix: "erp".into(),
            ..SimConfig::default()
        },
        50,
    );
    for rec in r.all_records() {
        assert!(rec.topic.starts_with("erp."), "{}", rec.topic);
        let v = parse(rec.value.as_deref().unwrap_or(b"{}"));
        if let Some(name) = v["payload"]["source"]["name"].as_str() {
            assert_eq!(name, "erp");
            assert!(
                v["schema"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("erp.public.")
            );
        }
    }
}
