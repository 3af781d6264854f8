//! End-to-end suite against the external broker process (real Apache Kafka,
//! KRaft) that scripts/test.sh starts: the bronze scenarios again, the `lakehouse` binary
//! killed with SIGKILL at random moments while a producer writes, and SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::bronze_kafka::{
    Produced, assert_exactly_once, many_topics_scenario, produce_mix, two_consumers_scenario,
};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_many_topics_and_partitions_exactly_once() {
    let Some(broker) = Broker::external() else {
        return;
    };
    many_topics_scenario(broker, &unique("emt")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_two_consumers_in_one_group() {
    let Some(broker) = Broker::external() else {
        return;
    };
    two_consumers_scenario(broker, &unique("etc")).await;
}

fn write_config(dir: &std::path::Path, config: &lakehouse::config::Config) -> std::path::PathBuf {
    let mut text = format!(
        "[storage]\nroot = {:?}\n\n[kafka]\nbrokers = {:?}\ngroup_id = {:?}\ntopics = {:?}\n\n[kafka.properties]\n",
        config.storage.root,
        config.kafka.brokers.clone().unwrap(),
        config.kafka.group_id,
        config.kafka.topics,
    );
    for (k, v) in &config.kafka.properties {
        text.push_str(&format!("{k:?} = {v:?}\n"));
    }
    text.push_str(&format!(
        "\n[bronze]\nflush_rows = {}\nflush_interval_ms = {}\nidle_timeout_ms = {}\n",
        config.bronze.flush_rows, config.bronze.flush_interval_ms, config.bronze.idle_timeout_ms
    ));
    let path = dir.join("lakehouse.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_bronze(config_file: &std::path::Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .arg("--config")
        .arg(config_file)
        .args(["run", "bronze"])
        .args(args)
        .env("LAKEHOUSE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lakehouse")
}

/// SIGKILL `lakehouse run bronze` at random moments many times while a
/// producer writes; after a final clean run every produced record is in bronze
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let Some(broker) = Broker::external() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("crash");
    let topics = vec![
        (format!("{prefix}.public.orders"), 3),
        (format!("{prefix}.public.customers"), 2),
    ];
    for (t, p) in &topics {
        broker.create_topic(t, *p).await;
    }
    let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
    let mut config = config(
        dir.path(),
        &broker,
        &format!("{prefix}-group"),
        &names,
        None,
    );
    config.bronze.flush_rows = 30;
    config.bronze.flush_interval_ms = 200;
    let config_file = write_config(dir.path(), &config);

    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed: {seed} (set CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    // Producer: 12 rounds spread over the kills.
    let producer_broker = Broker::External(broker.bootstrap());
    let producer = tokio::spawn(async move {
        let mut produced = Produced::default();
        let topics: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        for _ in 0..12 {
            produce_mix(&producer_broker, &topics, 12, &mut produced).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        produced
    });

    let kills = 10;
    for round in 0..kills {
        let mut child = spawn_bronze(&config_file, &[]);
        let alive = Duration::from_millis(rng.random_range(300..3500));
        tokio::time::sleep(alive).await;
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {alive:?} ({status})");
    }
    let produced = producer.await.unwrap();

    let started = Instant::now();
    let status = spawn_bronze(&config_file, &["--until-idle"])
        .wait()
        .unwrap();
    assert!(status.success(), "final run failed: {status}");
    eprintln!("final catch-up run took {:?}", started.elapsed());
    assert_exactly_once(&config, &produced).await;
}

/// SIGTERM flushes and commits what is buffered, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_buffered_records_and_exits_zero() {
    let Some(broker) = Broker::external() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("{}.public.orders", unique("term"));
    broker.create_topic(&topic, 2).await;
    let mut config = config(
        dir.path(),
        &broker,
        &format!("{topic}-group"),
        &[&topic],
        None,
    );
    // Never flush by size or time: only the shutdown commits.
    config.bronze.flush_rows = 1_000_000;
    config.bronze.flush_interval_ms = 600_000;
    let config_file = write_config(dir.path(), &config);
    let mut produced = Produced::default();
    produce_mix(&broker, &[(&topic, 2)], 20, &mut produced).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .arg("--config")
        .arg(&config_file)
        .args(["run", "bronze"])
        .env("LAKEHOUSE_LOG", "warn,lakehouse=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lakehouse");
    // Wait until the consumer has its partitions, then give it time to read them.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[lakehouse] {line}");
            if line.contains("partitions assigned") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("partitions assigned within 60 s");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert_exactly_once(&config, &produced).await;
}
