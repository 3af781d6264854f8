//! `lakehouse run all --watch`: records produced after the start reach gold,
//! and SIGTERM stops it leaving consistent, resumable tables.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lakehouse::config::Config;
use lakehouse::pipeline::watch::{self, AllOptions};
use lakehouse_mock::jsonl::partition_for;
use lakehouse_mock::stream::{MockLimit, MockStream, mock_topics};
use rdkafka::producer::FutureProducer;

use crate::silver_support::text_rows;
use crate::support::{Broker, produce};

const PARTITIONS: u32 = 2;

/// A broker with the mock's topics, and a stream of its records.
async fn shop_broker() -> (Broker, MockStream) {
    let broker = Broker::embedded();
    for topic in mock_topics("shop") {
        broker.create_topic(&topic, PARTITIONS as i32).await;
    }
    let cfg = lakehouse_mock::SimConfig {
        seed: 21,
        topic_prefix: "shop".into(),
        customers: 60,
        products: 40,
        sellers: 8,
        orders_per_hour: 2.0,
        ..Default::default()
    };
    (
        broker,
        MockStream::with_config(MockLimit::Records(u64::MAX), cfg),
    )
}

/// Produces the next `records` records of the stream.
async fn produce_next(producer: &FutureProducer, stream: &mut MockStream, records: usize) {
    let mut chunk = Vec::new();
    let mut left = records;
    while left > 0 && stream.next_chunk(left.min(500), &mut chunk) {
        for record in &chunk {
            let partition = partition_for(record.key.as_deref(), PARTITIONS) as i32;
            produce(
                producer,
                &record.topic,
                partition,
                record.key.as_deref(),
                record.value.as_deref(),
            )
            .await;
        }
        left = left.saturating_sub(chunk.len());
    }
}

fn lake_config(dir: &Path, broker: &Broker, group: &str) -> Config {
    let mut config = crate::support::config(dir, broker, group, &[], Some("shop\\..*"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    config.silver.layers_dir = repo.join("layers/silver");
    config.silver.sql_dir = repo.join("sql/silver");
    config.gold.layers_dir = repo.join("layers/gold");
    config.gold.sql_dir = repo.join("sql/gold");
    config.silver.memory_limit = 256 * 1024 * 1024;
    config.gold.memory_limit = 256 * 1024 * 1024;
    config.bronze.flush_interval_ms = 300;
    config
}

/// Rows of a gold mart, sorted text (empty when it does not exist yet).
async fn mart_rows(config: &Config, sql: &str) -> Vec<Vec<String>> {
    let Ok(ctx) = lakehouse::pipeline::jobs::query_session(config).await else {
        return Vec::new();
    };
    match lakehouse::gold::adhoc::run(&ctx, sql).await {
        Ok(batches) => {
            let mut rows = text_rows(&batches);
            rows.sort();
            rows
        }
        Err(_) => Vec::new(),
    }
}

const DAILY: &str = "SELECT order_date, orders, order_lines, items, net_revenue FROM daily_sales";
const FACTS: &str = "SELECT order_id, line_no, quantity, net_amount FROM fact_sales";

/// What one `run all` over everything produced so far gives, in a fresh lake.
async fn reference(broker: &Broker, group: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let config = lake_config(dir.path(), broker, group);
    let options = AllOptions {
        no_publish: true,
        ..Default::default()
    };
    watch::run_once(&config, &options, crate::support::no_shutdown())
        .await
        .unwrap();
    (dir, config)
}

/// Waits (bounded) until `sql` over `config` gives `expected`.
async fn wait_for_rows(config: &Config, sql: &str, expected: &[Vec<String>], limit: Duration) {
    let started = Instant::now();
    loop {
        let rows = mart_rows(config, sql).await;
        if rows == expected {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?}: {} rows, expected {}; first rows {:?} vs {:?}",
            rows.len(),
            expected.len(),
            rows.first(),
            expected.first()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_watch_brings_records_produced_after_start_to_gold() {
    let (broker, mut stream) = shop_broker().await;
    let producer = broker.producer();
    produce_next(&producer, &mut stream, 1_500).await;

    let dir = tempfile::tempdir().unwrap();
    let config = lake_config(dir.path(), &broker, "watch");
    let options = AllOptions {
        no_publish: true,
        poll: Duration::from_millis(200),
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = {
        let config = config.clone();
        tokio::spawn(async move { watch::watch(&config, &options, shutdown).await })
    };
    // Gold catches up with what was there at start...
    let (_ref1, first) = reference(&broker, "reference-1").await;
    let expected = mart_rows(&first, DAILY).await;
    assert!(!expected.is_empty());
    wait_for_rows(&config, DAILY, &expected, Duration::from_secs(120)).await;

    // ...and with records produced while it runs, in two bursts.
    for _ in 0..2 {
        produce_next(&producer, &mut stream, 400).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_ref2, second) = reference(&broker, "reference-2").await;
    let expected = mart_rows(&second, DAILY).await;
    let facts = mart_rows(&second, FACTS).await;
    assert!(expected.len() > 1);
    wait_for_rows(&config, DAILY, &expected, Duration::from_secs(120)).await;
    wait_for_rows(&config, FACTS, &facts, Duration::from_secs(30)).await;

    stop.send(true).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("watch stops on shutdown")
        .unwrap()
        .unwrap();
    assert!(summary.silver_runs >= 2, "{summary}");
    assert!(summary.gold_runs >= 2, "{summary}");
    assert_eq!(summary.failed_runs, 0, "{summary}");

    // Every micro-batch is in the run history, as a `watch` run.
    let history = mart_rows(
        &config,
        "SELECT run, \"trigger\", status, CAST(count(*) AS VARCHAR) FROM lakehouse_runs \
         GROUP BY run, \"trigger\", status",
    )
    .await;
    assert_eq!(
        history,
        vec![
            vec![
                "gold".into(),
                "watch".into(),
                "succeeded".into(),
                summary.gold_runs.to_string()
            ],
            vec![
                "silver".into(),
                "watch".into(),
                "succeeded".into(),
                summary.silver_runs.to_string()
            ],
        ],
        "{summary}"
    );
}

/// A folder of the shipped pipeline, absolute.
fn shipped(folder: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .display()
        .to_string()
}

/// The test's settings as a configuration file for the binary.
fn config_file(config: &Config, dir: &Path) -> PathBuf {
    let mut text = format!(
        "[storage]\nroot = {:?}\n[kafka]\nbrokers = {:?}\ngroup_id = {:?}\ntopic_pattern = {:?}\n\
         [bronze]\nflush_interval_ms = 300\n\
         [silver]\nmemory_limit = 268435456\nlayers_dir = {repo:?}\nsql_dir = {silver_sql:?}\n\
         [gold]\nmemory_limit = 268435456\nlayers_dir = {gold:?}\nsql_dir = {gold_sql:?}\n\
         [kafka.properties]\n",
        config.storage.root,
        config.kafka.brokers.clone().unwrap_or_default(),
        config.kafka.group_id,
        "shop\\..*",
        // Relative paths would resolve against the file's folder (a temp dir).
        repo = shipped("layers/silver"),
        silver_sql = shipped("sql/silver"),
        gold = shipped("layers/gold"),
        gold_sql = shipped("sql/gold"),
    );
    for (key, value) in &config.kafka.properties {
        text.push_str(&format!("{key:?} = {value:?}\n"));
    }
    let path = dir.join("lakehouse.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_run_all_watch_with_consistent_tables() {
    let (broker, mut stream) = shop_broker().await;
    let producer = broker.producer();
    produce_next(&producer, &mut stream, 1_000).await;
    let dir = tempfile::tempdir().unwrap();
    let config = lake_config(dir.path(), &broker, "watch-term");
    let log = std::fs::File::create(dir.path().join("watch.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["run", "all", "--watch", "--no-publish", "--poll-ms", "200"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LAKEHOUSE_CONFIG", config_file(&config, dir.path()))
        .env("LAKEHOUSE_LOG", "warn,lakehouse=info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Wait for a first gold build, then keep producing and stop mid-stream.
    let started = Instant::now();
    while mart_rows(&config, DAILY).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no gold after 120 s: {}",
            std::fs::read_to_string(dir.path().join("watch.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for _ in 0..3 {
        produce_next(&producer, &mut stream, 200).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 60 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("watch.log")).unwrap_or_default();
    assert!(exit.success(), "exit {exit:?}; log:\n{log}");
    assert!(log.contains("shutdown requested"), "{log}");

    // Nothing was written twice...
    let positions = crate::support::bronze_positions(&config, "bronze_events").await;
    assert!(positions.values().all(|n| *n == 1), "duplicate bronze rows");
    // ...and one more run of the same pipeline catches up exactly.
    watch::run_once(
        &config,
        &AllOptions {
            no_publish: true,
            ..Default::default()
        },
        crate::support::no_shutdown(),
    )
    .await
    .unwrap();
    let (_ref, reference) = reference(&broker, "reference-term").await;
    for sql in [DAILY, FACTS] {
        let expected = mart_rows(&reference, sql).await;
        assert!(!expected.is_empty());
        assert_eq!(mart_rows(&config, sql).await, expected, "{sql}");
    }
}
