//! The Prometheus endpoint: `lakehouse run all --watch --metrics-addr` is
//! scraped while it runs, and its counters match what the run wrote (bronze
//! rows and dead letters per topic and kind, silver and gold rows as the run
//! history records them); the shipped Grafana alert rules and dashboard use
//! only metrics the engine records.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use lakehouse::config::Config;
use lakehouse_mock::jsonl::partition_for;
use lakehouse_mock::stream::{MockLimit, MockStream, mock_topics};
use rdkafka::producer::FutureProducer;

use crate::support::{Broker, produce};

const PARTITIONS: u32 = 2;

/// One scrape: value per series, keyed by the metric name and its labels
/// as written (`name{a="1",b="2"}`).
type Scrape = BTreeMap<String, f64>;

/// `GET /metrics` on `addr` (None while the endpoint is not up).
fn scrape(addr: SocketAddr) -> Option<Scrape> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The exporter answers with a length, not chunks (checked: no chunk sizes).
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// The label `label` of a series (`name{a="1"}`), if it has it.
fn label<'a>(series: &'a str, label: &str) -> Option<&'a str> {
    let start = series.find(&format!("{label}=\""))? + label.len() + 2;
    let rest = &series[start..];
    Some(&rest[..rest.find('"')?])
}

/// The series of metric `name`, by the values of `labels`.
fn by_labels(scrape: &Scrape, name: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for (series, value) in scrape {
        let metric = series.split('{').next().unwrap_or_default();
        if metric == name {
            let key = labels
                .iter()
                .map(|l| label(series, l).unwrap_or_default().to_string())
                .collect();
            *out.entry(key).or_insert(0.0) += value;
        }
    }
    out
}

/// The sum of every series of metric `name`.
fn total(scrape: &Scrape, name: &str) -> f64 {
    by_labels(scrape, name, &[]).values().sum()
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Produces the next `records` records of the mock stream.
async fn produce_next(producer: &FutureProducer, stream: &mut MockStream, records: usize) -> u64 {
    let mut chunk = Vec::new();
    let mut left = records;
    let mut produced = 0;
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
            produced += 1;
        }
        left = left.saturating_sub(chunk.len());
    }
    produced
}

/// A folder of the shipped pipeline, absolute.
fn shipped(folder: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .display()
        .to_string()
}

/// The lake's configuration, as a file for the binary and as a `Config`
/// for reading the tables.
fn lake(dir: &Path, broker: &Broker) -> (PathBuf, Config) {
    let root = dir.join("lake").display().to_string();
    let mut text = format!(
        "[storage]\nroot = {root:?}\n[kafka]\nbrokers = {:?}\ngroup_id = \"metrics\"\n\
         topic_pattern = \"shop\\\\..*\"\n[bronze]\nflush_interval_ms = 300\n\
         [silver]\nmemory_limit = 268435456\nlayers_dir = {:?}\nsql_dir = {:?}\n\
         [gold]\nmemory_limit = 268435456\nlayers_dir = {:?}\nsql_dir = {:?}\n\
         [kafka.properties]\n",
        broker.bootstrap(),
        shipped("layers/silver"),
        shipped("sql/silver"),
        shipped("layers/gold"),
        shipped("sql/gold"),
    );
    for (key, value) in &broker.consumer_properties() {
        text.push_str(&format!("{key:?} = {value:?}\n"));
    }
    let path = dir.join("lakehouse.toml");
    std::fs::write(&path, text).expect("write config");
    let config = Config::load(Some(&path), Vec::new()).expect("config");
    (path, config)
}

/// Rows of a query over every table of the lake, as text.
async fn rows(config: &Config, sql: &str) -> Vec<Vec<String>> {
    let ctx = lakehouse::pipeline::jobs::query_session(config)
        .await
        .expect("session");
    let batches = lakehouse::gold::adhoc::run(&ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for batch in &batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).expect("cast"))
            .collect();
        for i in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| c.as_string::<i32>().value(i).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// A one-number query over the bronze tables.
async fn bronze_count(config: &Config, sql: &str) -> i64 {
    let batches = crate::support::query(config, sql).await;
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0))
}

/// Scrapes until `done` holds for a scrape (bounded), and returns that scrape.
async fn scrape_until(
    addr: SocketAddr,
    limit: Duration,
    log: &Path,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some(s) = scrape(addr) {
            if done(&s) {
                return s;
            }
            last = Some(s);
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not after {limit:?}; last scrape {last:#?}\nlog:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Kills the child on every exit from the test, failures included.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counters_move_during_run_all_watch_and_match_the_tables() {
    let broker = Broker::embedded();
    for topic in mock_topics("shop") {
        broker.create_topic(&topic, PARTITIONS as i32).await;
    }
    let cfg = lakehouse_mock::SimConfig {
        seed: 5,
        topic_prefix: "shop".into(),
        customers: 40,
        products: 30,
        sellers: 6,
        orders_per_hour: 2.0,
        ..Default::default()
    };
    let mut stream = MockStream::with_config(MockLimit::Records(u64::MAX), cfg);
    let producer = broker.producer();
    let mut produced = produce_next(&producer, &mut stream, 800).await;
    // Two records no decoder can read: dead letters of kind json.
    let bad_topic = "shop.public.customers";
    for partition in 0..2 {
        produce(&producer, bad_topic, partition, None, Some(b"{not json")).await;
        produced += 1;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let (file, config) = lake(dir.path(), &broker);
    let addr = free_port();
    let log_path = dir.path().join("run.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
            .args(["run", "all", "--watch", "--no-publish", "--poll-ms", "200"])
            .args(["--metrics-addr", &addr.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("LAKEHOUSE_CONFIG", &file)
            .env("LAKEHOUSE_LOG", "warn,lakehouse=info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lakehouse"),
    );

    // During the run: bronze counters move, then everything produced is
    // committed (each record is one row, dead letter or non-row record).
    let first = scrape_until(
        addr,
        Duration::from_secs(120),
        &log_path,
        "bronze records counted",
        |s| total(s, "lakehouse_bronze_records_total") > 0.0,
    )
    .await;
    assert!(total(&first, "lakehouse_bronze_batches_total") >= 1.0);
    let gold_done = |s: &Scrape| {
        by_labels(s, "lakehouse_runs_total", &["run", "status"])
            .get(&vec!["gold".to_string(), "succeeded".to_string()])
            .is_some_and(|n| *n >= 1.0)
    };
    scrape_until(
        addr,
        Duration::from_secs(120),
        &log_path,
        "all records committed and a gold run",
        |s| total(s, "lakehouse_bronze_records_total") == produced as f64 && gold_done(s),
    )
    .await;

    // More records while it runs: the counters follow.
    produced += produce_next(&producer, &mut stream, 300).await;
    let before = scrape(addr).expect("scrape");
    let gold_runs = |s: &Scrape| {
        by_labels(s, "lakehouse_runs_total", &["run", "status"])
            .get(&vec!["gold".to_string(), "succeeded".to_string()])
            .copied()
            .unwrap_or(0.0)
    };
    let gold_before = gold_runs(&before);
    scrape_until(
        addr,
        Duration::from_secs(120),
        &log_path,
        "the second burst committed and built",
        |s| {
            total(s, "lakehouse_bronze_records_total") == produced as f64
                && gold_runs(s) > gold_before
        },
    )
    .await;

    // Quiet: the same scrape twice, 2 s apart, so no run is half recorded.
    let mut settled = scrape(addr).expect("scrape");
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = scrape(addr).expect("scrape");
        let moving = |name: &str| total(&again, name) != total(&settled, name);
        let quiet = !moving("lakehouse_runs_total")
            && !moving("lakehouse_bronze_records_total")
            && !moving("lakehouse_silver_rows_read_total");
        settled = again;
        if quiet {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never quiet");
    }
    let s = &settled;

    // Bronze: rows per topic and dead letters per topic and kind are the tables'.
    let rows_metric = by_labels(s, "lakehouse_bronze_rows_total", &["topic"]);
    let mut rows_table = BTreeMap::new();
    for batch in crate::support::query(
        &config,
        "SELECT topic, count(*) FROM bronze_events GROUP BY topic",
    )
    .await
    {
        let topics = cast(batch.column(0), &DataType::Utf8).expect("cast");
        for i in 0..batch.num_rows() {
            rows_table.insert(
                vec![topics.as_string::<i32>().value(i).to_string()],
                batch.column(1).as_primitive::<Int64Type>().value(i) as f64,
            );
        }
    }
    assert!(rows_table.len() >= 5, "{rows_table:?}");
    assert_eq!(rows_metric, rows_table);
    let dead_metric = by_labels(s, "lakehouse_bronze_dead_letters_total", &["topic", "kind"]);
    let mut dead_table = BTreeMap::new();
    for batch in crate::support::query(
        &config,
        "SELECT topic, error_kind, count(*) FROM bronze_dead_letters GROUP BY topic, error_kind",
    )
    .await
    {
        let topics = cast(batch.column(0), &DataType::Utf8).expect("cast");
        let kinds = cast(batch.column(1), &DataType::Utf8).expect("cast");
        for i in 0..batch.num_rows() {
            dead_table.insert(
                vec![
                    topics.as_string::<i32>().value(i).to_string(),
                    kinds.as_string::<i32>().value(i).to_string(),
                ],
                batch.column(2).as_primitive::<Int64Type>().value(i) as f64,
            );
        }
    }
    assert_eq!(dead_metric, dead_table);
    assert_eq!(dead_metric.values().sum::<f64>(), 2.0, "{dead_metric:?}");
    let events = bronze_count(&config, "SELECT count(*) FROM bronze_events").await;
    assert!(total(s, "lakehouse_bronze_records_total") >= events as f64 + 2.0);
    assert!(total(s, "lakehouse_bronze_bytes_total") > total(s, "lakehouse_bronze_records_total"));
    assert!(total(s, "lakehouse_bronze_commit_duration_seconds_count") >= 2.0);

    // Runs: the counters are the history's rows, and silver and gold wrote
    // what the history says they wrote. A micro-batch can still start after
    // the quiet spell (a gold run follows the silver run that committed), and
    // one ending between a scrape and the query is in the history only, so
    // the history is read between two scrapes that agree with each other.
    let runs_of = |s: &Scrape| by_labels(s, "lakehouse_runs_total", &["run", "status"]);
    let started = Instant::now();
    let (settled, history) = loop {
        let before = scrape(addr).expect("scrape");
        let history = rows(
            &config,
            "SELECT run, status, CAST(count(*) AS BIGINT), CAST(sum(rows_written) AS BIGINT) \
             FROM lakehouse_runs GROUP BY run, status",
        )
        .await;
        let after = scrape(addr).expect("scrape");
        let runs_table: BTreeMap<Vec<String>, f64> = history
            .iter()
            .map(|r| {
                (
                    vec![r[0].clone(), r[1].clone()],
                    r[2].parse().expect("count"),
                )
            })
            .collect();
        let runs_metric = runs_of(&before);
        if runs_metric == runs_of(&after) && runs_metric == runs_table {
            break (after, history);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run counters {runs_metric:?} never matched the history {runs_table:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let s = &settled;
    let written = |run: &str| -> f64 {
        history
            .iter()
            .filter(|r| r[0] == run)
            .map(|r| r[3].parse::<f64>().expect("rows"))
            .sum()
    };
    let silver_written = total(s, "lakehouse_silver_rows_written_total");
    assert!(silver_written > 0.0);
    assert_eq!(silver_written, written("silver"));
    let gold_written = total(s, "lakehouse_gold_rows_written_total");
    assert!(gold_written > 0.0);
    assert_eq!(gold_written, written("gold"));
    let silver_tables: BTreeSet<Vec<String>> = by_labels(
        s,
        "lakehouse_silver_table_duration_seconds_count",
        &["table"],
    )
    .into_keys()
    .collect();
    assert!(silver_tables.len() >= 5, "{silver_tables:?}");
    for (table, quarantined) in by_labels(s, "lakehouse_silver_quarantined_rows_total", &["table"])
    {
        if quarantined > 0.0 {
            let sql = format!(
                "SELECT CAST(count(*) AS BIGINT) FROM {}_quarantine",
                table[0]
            );
            assert_eq!(rows(&config, &sql).await[0][0], quarantined.to_string());
        }
    }
    // Last success per job: after the first burst, not in the future.
    let now = chrono::Utc::now().timestamp() as f64;
    let last = by_labels(s, "lakehouse_last_success_timestamp_seconds", &["run"]);
    for run in ["silver", "gold"] {
        let at = last.get(&vec![run.to_string()]).copied().unwrap_or(0.0);
        assert!(at > now - 300.0 && at <= now + 1.0, "{run}: {at} vs {now}");
    }
    // Consumer lag per partition, from librdkafka's statistics (every 5 s).
    let lag = scrape_until(
        addr,
        Duration::from_secs(30),
        &log_path,
        "consumer lag reported",
        |s| !by_labels(s, "lakehouse_bronze_consumer_lag", &["topic", "partition"]).is_empty(),
    )
    .await;
    let lag = by_labels(
        &lag,
        "lakehouse_bronze_consumer_lag",
        &["topic", "partition"],
    );
    assert!(
        lag.keys()
            .all(|k| k[0].starts_with("shop.") && !k[1].is_empty()),
        "{lag:?}"
    );
}

/// Metric names the engine records: the `pub const` names of the
/// `telemetry.rs` files under `src/`.
fn registered_metrics() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let constant = regex::Regex::new(r#"pub const \w+: &str = "(lakehouse_\w+)";"#).expect("regex");
    let mut names = BTreeSet::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "telemetry.rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                names.extend(constant.captures_iter(&text).map(|c| c[1].to_string()));
            }
        }
    }
    names
}

/// The metric names a PromQL expression uses (`lakehouse_…`), with the
/// suffixes Prometheus adds to a histogram stripped.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let name = regex::Regex::new(r"lakehouse_\w+").expect("regex");
    name.find_iter(expr)
        .map(|m| {
            let n = m.as_str();
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| n.strip_suffix(s).filter(|b| b.ends_with("_seconds")))
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}

fn grafana() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

#[test]
fn alert_rules_and_dashboard_use_only_recorded_metrics() {
    let registered = registered_metrics();
    assert!(registered.len() >= 15, "{registered:?}");
    // The Prometheus datasource the rules and the dashboard read.
    let datasources: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(grafana().join("provisioning/datasources/prometheus.yaml"))
            .expect("prometheus datasource"),
    )
    .expect("yaml");
    let uid = datasources["datasources"][0]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    assert_eq!(datasources["datasources"][0]["type"], "prometheus");

    // Alert rules: Grafana's file provisioning format.
    let rules: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(grafana().join("provisioning/alerting/lakehouse.yaml"))
            .expect("alert rules"),
    )
    .expect("yaml");
    assert_eq!(rules["apiVersion"], 1);
    let mut titles = BTreeSet::new();
    let mut used = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        assert!(group["folder"].is_string() && group["interval"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let title = rule["title"].as_str().expect("title");
            assert!(titles.insert(title.to_string()), "{title} twice");
            assert!(rule["uid"].is_string(), "{title}");
            let condition = rule["condition"].as_str().expect("condition");
            let data = rule["data"].as_array().expect("data");
            assert!(
                data.iter().any(|d| d["refId"] == condition),
                "{title}: condition {condition} is no query"
            );
            let mut queries = 0;
            for d in data {
                if d["datasourceUid"] == "__expr__" {
                    continue;
                }
                assert_eq!(d["datasourceUid"], uid.as_str(), "{title}");
                let expr = d["model"]["expr"].as_str().expect("expr");
                let names = metrics_in(expr);
                assert!(!names.is_empty(), "{title}: {expr}");
                used.extend(names);
                queries += 1;
            }
            assert!(queries >= 1, "{title}");
        }
    }
    for wanted in ["lag", "dead letter", "failed", "stale"] {
        assert!(
            titles.iter().any(|t| t.to_lowercase().contains(wanted)),
            "no alert rule about {wanted}: {titles:?}"
        );
    }

    // The dashboard (in a folder of its own: the SQL dashboards' test reads
    // grafana/dashboards/*.json only).
    let path = grafana().join("dashboards/metrics/lakehouse_metrics.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("json");
    let mut ids = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let id = panel["id"].as_i64().expect("id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert_eq!(panel["datasource"]["uid"], uid.as_str(), "panel {id}");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "panel {id}: {expr}");
            used.extend(names);
        }
    }
    let unknown: Vec<_> = used.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "not recorded by the engine: {unknown:?}"
    );
    // Every metric is on the dashboard or in a rule, and in the README.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    for name in &registered {
        assert!(used.contains(name), "{name} is on no panel and in no rule");
        assert!(readme.contains(name.as_str()), "{name} is not in README.md");
    }
}

#[test]
fn metric_names_in_code_are_the_documented_constants() {
    // The macros take the constants: a literal name would escape the check above.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let literal = regex::Regex::new(r#"(counter|gauge|histogram)!\(\s*""#).expect("regex");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read");
                assert!(
                    !literal.is_match(&text),
                    "{}: name metrics with a telemetry.rs constant",
                    path.display()
                );
            }
        }
    }
}
