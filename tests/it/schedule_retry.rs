//! The scheduler's failure handling, run for real: a triggered job's failed
//! attempts are retried after the configured backoff until one succeeds or
//! the attempts run out, and a failing continuous job is restarted with a
//! growing backoff until it runs. The backoffs are made short through
//! `[schedule.retry]`, as a deployment would set them.

use std::path::Path;
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use lakehouse::config::schedule::RetryConfig;
use lakehouse::pipeline::{self, ScheduleConfig};

use crate::schedule_support::*;

fn schedule(text: &str) -> ScheduleConfig {
    toml::from_str(text).expect("schedule section")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// The runs of `job`, oldest first.
fn of_job<'a>(runs: &'a [Run], job: &str) -> Vec<&'a Run> {
    let mut out: Vec<&Run> = runs.iter().filter(|r| r.job == job).collect();
    out.sort_by_key(|r| r.started);
    out
}

/// The configured wait after failed attempt `attempt` (1-based), however
/// many attempts are allowed.
fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let nth = attempt.saturating_sub(1) as usize;
    retry
        .policy()
        .unlimited()
        .delays()
        .nth(nth)
        .expect("unlimited delays")
}

/// Consecutive runs are attempts 1, 2, ... and each waited at least the
/// configured backoff after the one before it ended.
fn assert_backoff(runs: &[&Run], retry: &RetryConfig) {
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run.attempt as usize, i + 1, "{runs:#?}");
    }
    for pair in runs.windows(2) {
        let wait = backoff(retry, pair[0].attempt as u32).as_micros() as i64;
        assert!(
            pair[1].started - pair[0].ended >= wait,
            "attempt {} started {} µs after attempt {} ended; the backoff is {wait} µs",
            pair[1].attempt,
            pair[1].started - pair[0].ended,
            pair[0].attempt
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_after_backoff_until_one_succeeds_or_none_is_left() {
    let mut lake = fed_lake(21, 1).await;
    // Silver from a copy of the shipped specs, with one SQL file broken
    // until its second attempt has failed.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let specs = lake.path().join("specs");
    copy_dir(&repo.join("layers/silver"), &specs.join("layers"));
    copy_dir(&repo.join("sql/silver"), &specs.join("sql"));
    lake.config.silver.layers_dir = specs.join("layers");
    lake.config.silver.sql_dir = specs.join("sql");
    let orders_sql = specs.join("sql/orders.sql");
    let good = std::fs::read_to_string(&orders_sql).expect("orders.sql");
    std::fs::write(&orders_sql, "SELECT no_such_column AS order_id FROM orders").expect("break");
    // Gold fails on every attempt: its one spec is not TOML.
    let gold_specs = lake.path().join("gold-specs");
    std::fs::create_dir_all(&gold_specs).expect("gold specs");
    std::fs::write(gold_specs.join("broken.toml"), "keys = [").expect("broken spec");
    lake.config.gold.layers_dir = gold_specs;
    // Both cron jobs never succeeded, so both run once at start (missed
    // run); their next cron time is next New Year.
    lake.config.schedule = schedule(
        r#"
        lease_ttl_ms = 6000
        [retry]
        attempts = 4
        initial_backoff_ms = 700
        multiplier = 2.0
        max_backoff_ms = 1500
        [[jobs]]
        name = "silver"
        run = "silver"
        cron = "0 0 0 1 1 *"
        [[jobs]]
        name = "gold"
        run = "gold"
        cron = "0 0 0 1 1 *"
        attempts = 2
        "#,
    );
    let retry = lake.config.schedule.retry.clone();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = lake.config.clone();
    let scheduler = tokio::spawn(async move { pipeline::run(&config, shutdown).await });

    wait_for_runs(&lake.config, Duration::from_secs(120), |r| {
        count(r, "silver", "failed") >= 2
    })
    .await;
    std::fs::write(&orders_sql, good).expect("repair");
    wait_for_runs(&lake.config, Duration::from_secs(120), |r| {
        count(r, "silver", "succeeded") >= 1 && count(r, "gold", "failed") >= 2
    })
    .await;
    // Long enough for one more attempt of either job, were one due.
    tokio::time::sleep(backoff(&retry, 4) + Duration::from_millis(1_000)).await;
    stop.send(true).expect("stop");
    scheduler.await.expect("join").expect("scheduler");

    let history = runs(&lake.config).await;
    let silver = of_job(&history, "silver");
    // Failed attempts (at least the two before the repair), then one
    // success, and no attempt after it.
    assert!((3..=4).contains(&silver.len()), "{silver:#?}");
    let (last, failed) = silver.split_last().expect("silver runs");
    assert!(failed.iter().all(|r| r.status == "failed"), "{silver:#?}");
    assert!(
        failed.iter().all(|r| r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no_such_column"))),
        "{silver:#?}"
    );
    assert_eq!(last.status, "succeeded", "{silver:#?}");
    assert!(silver.iter().all(|r| r.trigger == "cron"), "{silver:#?}");
    assert_backoff(&silver, &retry);
    // The job's own `attempts` bounds it: two failures, then it waits for
    // its next trigger.
    let gold = of_job(&history, "gold");
    assert_eq!(gold.len(), 2, "{gold:#?}");
    assert!(
        gold.iter().all(|r| r.status == "failed"
            && r.error
                .as_deref()
                .is_some_and(|e| e.contains("broken.toml"))),
        "{gold:#?}"
    );
    assert_backoff(&gold, &retry);
    // The successful attempt did the work.
    let counts = silver_counts(&lake).await;
    assert!(
        counts.iter().all(|row| row[1] != "0"),
        "silver tables are empty: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_continuous_job_is_restarted_with_backoff() {
    use crate::support::{Broker, pg_change, produce, unique};
    let broker = Broker::embedded();
    let topic = format!("{}.public.items", unique("restart"));
    broker.create_topic(&topic, 2).await;
    let producer = broker.producer();
    let mut lake = crate::gold_support::shipped_lake();
    let kafka = crate::support::config(lake.path(), &broker, &unique("g"), &[&topic], None);
    lake.config.kafka = kafka.kafka;
    lake.config.bronze.flush_interval_ms = 200;
    // A file where bronze's folder belongs: every run fails at once, until
    // the file is gone.
    let root = Path::new(&lake.config.storage.root);
    std::fs::create_dir_all(root).expect("root");
    let blocker = root.join("bronze");
    std::fs::write(&blocker, "").expect("blocker");
    lake.config.schedule = schedule(
        r#"
        lease_ttl_ms = 6000
        [retry]
        initial_backoff_ms = 200
        multiplier = 2.0
        max_backoff_ms = 1000
        [[jobs]]
        name = "bronze"
        run = "bronze"
        continuous = true
        "#,
    );
    let retry = lake.config.schedule.retry.clone();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = lake.config.clone();
    let scheduler = tokio::spawn(async move { pipeline::run(&config, shutdown).await });

    wait_for_runs(&lake.config, Duration::from_secs(120), |r| {
        count(r, "bronze", "failed") >= 3
    })
    .await;
    std::fs::remove_file(&blocker).expect("remove blocker");
    let produced = 20i64;
    for id in 0..produced {
        let (key, value) = pg_change("t", "items", id, "c", 1000 + id);
        produce(&producer, &topic, (id % 2) as i32, Some(&key), Some(&value)).await;
    }
    // The restarted run consumes what arrives.
    let bronze_rows = || async {
        let rows =
            crate::support::query(&lake.config, "SELECT count(*) AS n FROM bronze_events").await;
        rows.first().map_or(0, |b| {
            b.column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .value(0)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !root.join("bronze/bronze_events/_delta_log").is_dir() || bronze_rows().await < produced {
        assert!(
            std::time::Instant::now() < deadline,
            "the continuous job never ran again; history: {:#?}",
            runs(&lake.config).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.send(true).expect("stop");
    scheduler.await.expect("join").expect("scheduler");

    let history = runs(&lake.config).await;
    let bronze = of_job(&history, "bronze");
    let (last, failed) = bronze.split_last().expect("bronze runs");
    assert!(failed.len() >= 3, "{bronze:#?}");
    assert!(failed.iter().all(|r| r.status == "failed"), "{bronze:#?}");
    assert!(
        bronze.iter().all(|r| r.trigger == "continuous"),
        "{bronze:#?}"
    );
    // Restarted after each failure, each time after a longer wait (capped),
    // the attempt number counting the failures in a row.
    assert_backoff(&bronze, &retry);
    // The run after the repair consumed until the shutdown.
    assert_eq!(last.status, "succeeded", "{bronze:#?}");
    assert_eq!(bronze_rows().await, produced);
}
