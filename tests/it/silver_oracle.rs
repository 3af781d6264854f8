//! Oracle test: random change streams (inserts, updates, deletes with and
//! without tombstones, truncates, exact duplicates, replays of earlier
//! records, out-of-order arrivals) go through bronze and silver in many
//! small runs; after every run the silver table must equal a plain
//! in-memory replay of the same stream in source order.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::silver_support::*;

const SPEC: &str = r#"
kind = "scd1"
keys = ["id"]
[source]
name = "items"
topic = "shop.public.items"
columns = { id = "BIGINT", name = "VARCHAR", qty = "INT" }
"#;
const SQL: &str = "SELECT id, name, qty FROM items";

#[derive(Clone)]
enum Ev {
    Upsert {
        id: i64,
        name: String,
        qty: i64,
        lsn: i64,
    },
    Delete {
        id: i64,
        lsn: i64,
        tombstone: bool,
    },
    Truncate {
        lsn: i64,
    },
}

fn lines(d: &Dbz, ev: &Ev) -> Vec<String> {
    match ev {
        Ev::Upsert { id, name, qty, lsn } => {
            vec![d.change(
                "items",
                "u",
                json!({"id": id}),
                json!({"id": id, "name": name, "qty": qty}),
                *lsn,
            )]
        }
        Ev::Delete { id, lsn, tombstone } => {
            let mut out = vec![d.change(
                "items",
                "d",
                json!({"id": id}),
                json!({"id": id, "name": "x", "qty": 0}),
                *lsn,
            )];
            if *tombstone {
                out.push(d.tombstone("items", json!({"id": id})));
            }
            out
        }
        Ev::Truncate { lsn } => vec![d.truncate("items", *lsn)],
    }
}

/// The expected table: distinct events applied in LSN order.
fn replay(events: &[Ev]) -> Vec<Vec<String>> {
    let mut by_lsn: BTreeMap<i64, Ev> = BTreeMap::new();
    for ev in events {
        let lsn = match ev {
            Ev::Upsert { lsn, .. } | Ev::Delete { lsn, .. } | Ev::Truncate { lsn } => *lsn,
        };
        by_lsn.insert(lsn, ev.clone());
    }
    let mut table: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    for ev in by_lsn.values() {
        match ev {
            Ev::Upsert { id, name, qty, .. } => {
                table.insert(*id, (name.clone(), *qty));
            }
            Ev::Delete { id, .. } => {
                table.remove(id);
            }
            Ev::Truncate { .. } => table.clear(),
        }
    }
    let mut rows: Vec<Vec<String>> = table
        .into_iter()
        .map(|(id, (name, qty))| vec![id.to_string(), name, qty.to_string()])
        .collect();
    rows.sort();
    rows
}

async fn run_seed(seed: u64) {
    let lake = Lake::new();
    lake.table("items_current", SPEC, SQL);
    let d = Dbz::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut emitted: Vec<Ev> = Vec::new();
    let mut lsn = 1000;
    for run in 0..10 {
        let mut batch: Vec<Ev> = Vec::new();
        for _ in 0..rng.random_range(3..25) {
            lsn += rng.random_range(1..5);
            let id = rng.random_range(1..12);
            let roll = rng.random_range(0..100);
            let ev = if roll < 60 {
                Ev::Upsert {
                    id,
                    name: format!("n{}", rng.random_range(0..5)),
                    qty: rng.random_range(0..3),
                    lsn,
                }
            } else if roll < 85 {
                Ev::Delete {
                    id,
                    lsn,
                    tombstone: rng.random_bool(0.5),
                }
            } else if roll < 88 {
                Ev::Truncate { lsn }
            } else if !emitted.is_empty() {
                // An exact duplicate or a replay of an earlier record.
                emitted[rng.random_range(0..emitted.len())].clone()
            } else {
                continue;
            };
            batch.push(ev);
        }
        // Out-of-order arrival within the batch.
        if batch.len() > 2 && rng.random_bool(0.5) {
            let i = rng.random_range(0..batch.len() - 1);
            batch.swap(i, i + 1);
        }
        let records: Vec<String> = batch.iter().flat_map(|e| lines(&d, e)).collect();
        emitted.extend(batch);
        lake.feed(&records).await;
        lake.silver().await;
        let got = lake
            .rows(
                &["items_current"],
                "SELECT CAST(id AS VARCHAR), name, CAST(qty AS VARCHAR) FROM items_current",
            )
            .await;
        assert_eq!(got, replay(&emitted), "seed {seed}, after run {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_matches_an_in_memory_replay_of_random_streams() {
    for seed in 1..=4 {
        run_seed(seed).await;
    }
}
