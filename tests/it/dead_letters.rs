//! `lakehouse dead-letters replay`: records that failed under a wrong
//! `schemaless_types` hint land in `bronze_events` after the hint is fixed,
//! exactly once (a second replay finds nothing left to do).

use std::io::Write;

use lakehouse::bronze::replay::ReplayOptions;
use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::config::Config;
use lakehouse::pipeline::jobs;

use crate::support::*;

/// Schemaless Postgres order lines: `totalprice` is a base64 decimal that
/// only a `decimal(2)` hint reads.
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/debezium/postgres/pg-1.4.0-orders-default-identity-noschema-keyed.jsonl"
);
const TOPIC: &str = "dbserver1.inventory.orderline";

fn config(lake: &std::path::Path, hint: &str) -> Config {
    let mut config = Config::default();
    config.storage.root = lake.display().to_string();
    config
        .bronze
        .schemaless_types
        .entry(TOPIC.to_string())
        .or_default()
        .insert("totalprice".into(), hint.into());
    config
}

async fn bronze_rows(config: &Config, sql: &str) -> Vec<String> {
    let ctx = jobs::query_session(config).await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut rows: Vec<String> = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

async fn count(config: &Config, sql: &str) -> i64 {
    let ctx = jobs::query_session(config).await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let column =
        arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_fixed_hint_lands_each_dead_letter_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    let mut file = std::fs::File::create(&input).unwrap();
    file.write_all(&std::fs::read(FIXTURE).unwrap()).unwrap();
    let lake = dir.path().join("lake");

    // A wrong hint: the order lines' base64 decimals are not int64.
    let wrong = config(&lake, "int64");
    let stop = StopCondition::default();
    let summary = jobs::bronze(
        &wrong,
        BronzeSource::Files(vec![input.clone()]),
        stop,
        no_shutdown(),
    )
    .await
    .unwrap();
    let failed = summary.counts.dead_letters;
    assert!(
        failed >= 2,
        "the wrong hint fails the order lines: {summary:?}"
    );
    let rows_before = summary.counts.rows;
    let lines = format!("SELECT count(*) FROM bronze_events WHERE topic = '{TOPIC}'");
    assert_eq!(count(&wrong, &lines).await, 0);

    // Replaying with the hint still wrong changes nothing.
    let again = jobs::replay_dead_letters(&wrong, &ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!((again.pending, again.replayed), (failed, 0), "{again}");
    assert_eq!(
        again.still_failing.values().sum::<u64>(),
        failed,
        "{again:?}"
    );
    assert_eq!(again.version, None);

    // A dry run with the fixed hint reports, writes nothing.
    let fixed = config(&lake, "decimal(2)");
    let dry = jobs::replay_dead_letters(
        &fixed,
        &ReplayOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (dry.pending, dry.replayed, dry.version),
        (failed, failed, None)
    );
    assert_eq!(count(&fixed, &lines).await, 0);

    // A filter that selects nothing.
    let other = jobs::replay_dead_letters(
        &fixed,
        &ReplayOptions {
            topic: Some("no.such.topic".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(other.pending, 0);

    // The replay appends every dead letter, with its Kafka coordinates and
    // the values the fixed hint reads.
    let replayed = jobs::replay_dead_letters(&fixed, &ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (replayed.pending, replayed.replayed),
        (failed, failed),
        "{replayed}"
    );
    assert!(replayed.still_failing.is_empty());
    assert!(replayed.version.is_some());
    assert_eq!(count(&fixed, &lines).await, failed as i64);
    let prices = bronze_rows(
        &fixed,
        &format!(
            "SELECT kafka_offset, after['totalprice'] AS totalprice FROM bronze_events \
             WHERE topic = '{TOPIC}'"
        ),
    )
    .await;
    assert!(
        prices.iter().any(|r| r.contains("39.98")) && prices.iter().any(|r| r.contains("29.99")),
        "the decimal is decoded: {prices:?}"
    );
    // Offsets equal the dead letters' ones: coordinates are kept.
    let unmatched = count(
        &fixed,
        "SELECT count(*) FROM bronze_dead_letters d LEFT JOIN bronze_events e \
         ON e.topic = d.topic AND e.kafka_partition = d.kafka_partition \
         AND e.kafka_offset = d.kafka_offset WHERE e.topic IS NULL",
    )
    .await;
    assert_eq!(unmatched, 0);

    // Idempotent: a second replay finds nothing pending and writes nothing.
    let twice = jobs::replay_dead_letters(&fixed, &ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!((twice.pending, twice.replayed, twice.version), (0, 0, None));
    let total = count(&fixed, "SELECT count(*) FROM bronze_events").await;
    assert_eq!(total, rows_before as i64 + failed as i64);
    // The dead letters stay as the record of what failed.
    assert_eq!(
        count(&fixed, "SELECT count(*) FROM bronze_dead_letters").await,
        failed as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_lake_without_dead_letters_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("lake"), "decimal(2)");
    let summary = jobs::replay_dead_letters(&config, &ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.pending, 0);
    assert_eq!(summary.version, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_land_each_dead_letter_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let wrong = config(&lake, "int64");
    let summary = jobs::bronze(
        &wrong,
        BronzeSource::Files(vec![FIXTURE.into()]),
        StopCondition::default(),
        no_shutdown(),
    )
    .await
    .unwrap();
    let failed = summary.counts.dead_letters;
    assert!(failed >= 2, "{summary:?}");

    // Two replays at once (two operators, or a retried job): both would
    // find the same dead letters pending; one writes, the other is refused
    // naming the replay that runs (or, started after its commit, finds
    // nothing left).
    let fixed = config(&lake, "decimal(2)");
    let replay = || {
        let fixed = fixed.clone();
        tokio::spawn(
            async move { jobs::replay_dead_letters(&fixed, &ReplayOptions::default()).await },
        )
    };
    let (first, second) = (replay(), replay());
    let mut replayed = 0;
    let mut refused = 0;
    for outcome in [first.await.unwrap(), second.await.unwrap()] {
        match outcome {
            Ok(summary) => replayed += summary.replayed,
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.contains("another dead-letter replay is running"),
                    "{message}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(replayed, failed, "one replay wrote every dead letter");
    assert!(refused <= 1);
    let lines = format!("SELECT count(*) FROM bronze_events WHERE topic = '{TOPIC}'");
    assert_eq!(count(&fixed, &lines).await, failed as i64);
    // The lease is free again: a later replay runs and finds nothing.
    let later = jobs::replay_dead_letters(&fixed, &ReplayOptions::default())
        .await
        .unwrap();
    assert_eq!((later.pending, later.replayed), (0, 0));
}
