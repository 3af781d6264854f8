//! Behaviour of the simulator: determinism, monotonic positions, seasonality, the
//! order lifecycle and replay.

mod common;

use chrono::{Datelike, NaiveDate, Timelike, Weekday};
use common::{generate, parse};
use lakehouse_mock::model::get;
use lakehouse_mock::{DebeziumEncoder, JsonlWriter, Op, SimConfig, Simulator, Table, Value};
use std::collections::BTreeMap;

fn jsonl_bytes(seed: u64, n_tx: usize) -> Vec<u8> {
    let r = generate(
        SimConfig {
            seed,
            ..SimConfig::default()
        },
        n_tx,
    );
    let mut w = JsonlWriter::new(Vec::new(), 4);
    w.write_all(r.all_records()).unwrap();
    w.into_inner()
}

#[test]
fn same_seed_same_bytes() {
    let a = jsonl_bytes(5, 1500);
    let b = jsonl_bytes(5, 1500);
    assert!(a == b, "output differs for the same seed");
    assert!(a != jsonl_bytes(6, 1500), "different seeds should differ");
    for line in String::from_utf8(a).unwrap().lines() {
        let v = parse(line.as_bytes());
        assert!(
            v["topic"].is_string() && v["offset"].is_u64() && v["partition"].as_u64() < Some(4)
        );
    }
}

#[test]
fn lsn_tx_id_and_commit_time_increase() {
    let r = generate(SimConfig::default(), 3000);
    let mut last_lsn = r.snapshot.lsn;
    let mut last_tx = r.snapshot.tx_id;
    let mut last_commit_lsn = r.snapshot.lsn;
    let mut last_ts = r.snapshot.ts;
    for tx in &r.txs {
        assert!(tx.tx_id > last_tx, "txId must increase");
        assert!(tx.lsn_start > last_lsn);
        assert_eq!(tx.prev_commit_lsn, last_commit_lsn);
        assert!(tx.commit_ts > last_ts, "commit time must increase");
        assert!(!tx.changes.is_empty());
        let mut lsn = tx.lsn_start;
        for c in &tx.changes {
            assert!(c.lsn > lsn, "change LSNs increase within a transaction");
            lsn = c.lsn;
            assert!(c.ts_ms >= tx.commit_ts.and_utc().timestamp_millis());
        }
        assert!(tx.commit_lsn > lsn);
        last_lsn = tx.commit_lsn;
        last_commit_lsn = tx.commit_lsn;
        last_tx = tx.tx_id;
        last_ts = tx.commit_ts;
    }
    // The encoded source block carries the same positions.
    let mut prev = 0i64;
    for recs in &r.tx_records {
        for rec in recs.iter().filter(|r| !r.topic.ends_with(".transaction")) {
            let Some(v) = &rec.value else { continue };
            let src = &parse(v)["payload"]["source"];
            let lsn = src["lsn"].as_i64().unwrap();
            assert!(lsn > prev);
            prev = lsn;
            let seq: Vec<String> = serde_json::from_str(src["sequence"].as_str().unwrap()).unwrap();
            assert_eq!(seq[1], lsn.to_string());
        }
    }
}

#[test]
fn weekends_and_evenings_are_busier() {
    let mut sim = Simulator::new(SimConfig {
        seed: 9,
        orders_per_hour: 12.0,
        history: 0,
        ..SimConfig::default()
    });
    let end = NaiveDate::from_ymd_opt(2024, 1, 29).unwrap(); // four full weeks
    let mut per_weekday: BTreeMap<u32, u64> = BTreeMap::new();
    let mut per_hour = [0u64; 24];
    loop {
        let tx = sim.next_transaction();
        if tx.commit_ts.date() >= end {
            break;
        }
        for c in &tx.changes {
            if c.table == Table::Orders && c.op == Op::Create {
                *per_weekday
                    .entry(tx.commit_ts.weekday().num_days_from_monday())
                    .or_default() += 1;
                per_hour[tx.commit_ts.hour() as usize] += 1;
            }
        }
    }
    let day = |d: Weekday| per_weekday[&d.num_days_from_monday()] as f64;
    let weekend = (day(Weekday::Sat) + day(Weekday::Sun)) / 2.0;
    let midweek = (day(Weekday::Tue) + day(Weekday::Wed) + day(Weekday::Thu)) / 3.0;
    assert!(
        weekend > midweek * 1.25,
        "weekend {weekend} vs midweek {midweek}"
    );
    let evening: u64 = per_hour[19..22].iter().sum();
    let night: u64 = per_hour[2..5].iter().sum();
    assert!(evening > night * 5, "evening {evening} vs night {night}");
}

#[test]
fn order_lifecycle_is_realistic() {
    let mut sim = Simulator::new(SimConfig {
        seed: 21,
        orders_per_hour: 20.0,
        history: 0,
        ..SimConfig::default()
    });
    let mut counts: BTreeMap<(Table, &str), u64> = BTreeMap::new();
    let mut order_status: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut late, mut delivered, mut signup_with_order, mut price_changes) = (0, 0, 0, 0);
    for _ in 0..20_000 {
        let tx = sim.next_transaction();
        let first = &tx.changes[0];
        if first.table == Table::Customers
            && first.op == Op::Create
            && tx.changes.iter().any(|c| c.table == Table::Orders)
        {
            signup_with_order += 1;
        }
        for c in &tx.changes {
            let op = c.op.code();
            *counts.entry((c.table, op)).or_default() += 1;
            if c.table == Table::Orders && c.op == Op::Update {
                let s = |r: &Option<_>| {
                    get(r.as_ref().unwrap(), "status")
                        .and_then(Value::as_text)
                        .unwrap()
                        .to_string()
                };
                *order_status.entry((s(&c.before), s(&c.after))).or_default() += 1;
            }
            if c.table == Table::Products && c.op == Op::Update {
                let p = |r: &Option<_>| get(r.as_ref().unwrap(), "price").cloned();
                if p(&c.before) != p(&c.after) {
                    price_changes += 1;
                }
            }
            if c.table == Table::Shipments {
                let after = c.after.as_ref().unwrap();
                if let (Some(Value::TimestampTz(at)), Some(Value::Date(promised))) =
                    (get(after, "delivered_at"), get(after, "promised_date"))
                    && c.before.as_ref().and_then(|b| get(b, "delivered_at")) == Some(&Value::Null)
                {
                    delivered += 1;
                    if at.date_naive() > *promised {
                        late += 1;
                    }
                }
            }
        }
    }
    for step in [
        ("created", "paid"),
        ("paid", "shipped"),
        ("shipped", "delivered"),
        ("created", "cancelled"),
    ] {
        let key = (step.0.to_string(), step.1.to_string());
        assert!(
            order_status.get(&key).copied().unwrap_or(0) > 0,
            "no {step:?}"
        );
    }
    assert!(
        counts[&(Table::OrderItems, "d")] > 0,
        "cancellations delete items"
    );
    assert!(counts[&(Table::Customers, "d")] > 0, "GDPR deletes");
    assert!(counts[&(Table::Payments, "c")] > 0);
    assert!(counts[&(Table::ShipmentEvents, "c")] > counts[&(Table::Shipments, "c")] * 3);
    assert!(counts[&(Table::Inventory, "u")] > 0);
    assert!(signup_with_order > 0 && price_changes > 0);
    let late_share = late as f64 / delivered as f64;
    assert!(
        delivered > 100 && (0.02..0.4).contains(&late_share),
        "late {late}/{delivered}"
    );
    // Most orders come from returning customers.
    assert!(counts[&(Table::Customers, "c")] < counts[&(Table::Orders, "c")] / 2);
}

#[test]
fn replay_reemits_identical_transactions() {
    let cfg = SimConfig {
        seed: 4,
        history: 50,
        ..SimConfig::default()
    };
    let enc = DebeziumEncoder::new(&cfg.topic_prefix);
    let mut sim = Simulator::new(cfg);
    let txs: Vec<_> = (0..200).map(|_| sim.next_transaction()).collect();
    let replay = sim.replay_last(10);
    assert_eq!(replay.as_slice(), &txs[190..]);
    assert_eq!(sim.replay_last(1000).len(), 50, "history is bounded");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (orig, again) in txs[190..].iter().zip(&replay) {
        enc.encode_transaction(orig, &mut a);
        enc.encode_transaction(again, &mut b);
    }
    assert_eq!(a, b);
    // The stream continues after the replayed window.
    assert!(sim.next_transaction().tx_id > txs[199].tx_id);
}
