//! `lakehouse bench freshness`: how long a record takes from Kafka to a gold mart
//! while `run all --watch` runs.
//!
//! An in-process broker ([`EmbeddedKafka`]) receives the mock shop's records
//! at a steady rate. Every `probe_every`, one order of the stream is also
//! produced as a *probe*: a copy with a new order id and an order date of its
//! own (2100-01-01 plus the probe's number), so that exactly one gold row
//! answers for it: `daily_sales` for that date, whose `order_lines` equals the
//! probe's item count once silver and gold have applied it. The probe's
//! latency is the time from its produce call to the first poll of gold that
//! shows that count. `run all --watch` runs in the same process, on the same
//! code path as the command. Results and method: BENCHMARKS.md, "Freshness".
//! Run it with:
//!
//! ```text
//! cargo run --release -- bench freshness --rate 200 --seconds 60
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::NaiveDate;
use lakehouse::Error;
use lakehouse::config::Config;
use lakehouse::pipeline::watch::{AllOptions, watch};
use lakehouse::storage::StorageRoot;
use lakehouse_mock::kafka::{EmbeddedKafka, await_deliveries, send};
use lakehouse_mock::model::{get, set};
use lakehouse_mock::stream::mock_topics;
use lakehouse_mock::{
    DebeziumEncoder, KafkaRecord, Op, SimConfig, Simulator, Table, Transaction, Value,
};
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;

/// Probe order ids start here, far above the simulator's.
const PROBE_ID_BASE: i64 = 1_000_000_000;

/// Options of the freshness benchmark.
#[derive(Debug, Clone)]
pub struct FreshnessOptions {
    /// Records produced per second.
    pub rate: u64,
    /// How long to produce.
    pub duration: Duration,
    /// A probe order every this often.
    pub probe_every: Duration,
    /// Partitions per topic.
    pub partitions: u32,
    /// `[bronze] flush_interval_ms` for the run.
    pub flush_interval: Duration,
    /// `--poll-ms` of `run all --watch`.
    pub poll: Duration,
    /// Scratch folder for the tables.
    pub dir: PathBuf,
}

/// The measurement.
#[derive(Debug, Clone, Default)]
pub struct FreshnessReport {
    /// Records produced (load and probes).
    pub records: u64,
    /// Probe latencies, in probe order (`None`: not visible before the end).
    pub latencies: Vec<Option<Duration>>,
    /// Silver and gold micro-batches run.
    pub silver_runs: u64,
    /// See `silver_runs`.
    pub gold_runs: u64,
    /// The options.
    pub rate: u64,
    /// See [`FreshnessOptions`].
    pub flush_interval: Duration,
    /// See [`FreshnessOptions`].
    pub poll: Duration,
}

impl FreshnessReport {
    /// The `q` quantile (0..=1) of the visible probes' latencies.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut seen: Vec<Duration> = self.latencies.iter().flatten().copied().collect();
        seen.sort();
        let last = seen.len().checked_sub(1)?;
        seen.get(((last as f64) * q).round() as usize).copied()
    }
}

impl std::fmt::Display for FreshnessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2}s", d.as_secs_f64()));
        let visible = self.latencies.iter().flatten().count();
        writeln!(
            f,
            "freshness: {} records at {}/s, bronze flush {} ms, poll {} ms",
            self.records,
            self.rate,
            self.flush_interval.as_millis(),
            self.poll.as_millis()
        )?;
        writeln!(
            f,
            "probes visible in gold.daily_sales: {visible}/{}; p50 {}  p95 {}  max {}",
            self.latencies.len(),
            secs(self.quantile(0.5)),
            secs(self.quantile(0.95)),
            secs(self.quantile(1.0))
        )?;
        writeln!(
            f,
            "micro-batches: {} silver, {} gold",
            self.silver_runs, self.gold_runs
        )
    }
}

/// A probe: a copy of `tx`'s new order with id `PROBE_ID_BASE + n` and its own date.
fn probe_of(tx: &Transaction, n: u32) -> Option<(Transaction, NaiveDate, i64)> {
    let order = tx
        .changes
        .iter()
        .find(|c| c.table == Table::Orders && c.op == Op::Create)?;
    let original = get(order.after.as_ref()?, "id")?.as_int()?;
    let date = NaiveDate::from_ymd_opt(2100, 1, 1)? + chrono::Days::new(u64::from(n));
    let id = PROBE_ID_BASE + i64::from(n);
    let mut changes = Vec::new();
    let mut items = 0;
    for change in &tx.changes {
        let Some(after) = &change.after else { continue };
        let mut after = after.clone();
        match (change.table, change.op) {
            (Table::Orders, Op::Create) if get(&after, "id")?.as_int() == Some(original) => {
                set(&mut after, "id", Value::Int(id));
                set(&mut after, "order_date", Value::Date(date));
            }
            (Table::OrderItems, Op::Create)
                if get(&after, "order_id")?.as_int() == Some(original) =>
            {
                set(&mut after, "order_id", Value::Int(id));
                items += 1;
            }
            _ => continue,
        }
        let mut probe = change.clone();
        probe.after = Some(after);
        changes.push(probe);
    }
    let mut probe = tx.clone();
    probe.changes = changes;
    Some((probe, date, items))
}

struct Producer {
    producer: FutureProducer,
    partitions: u32,
}

impl Producer {
    async fn send(&self, records: &[KafkaRecord]) -> Result<()> {
        let mut pending = records
            .iter()
            .map(|record| send(&self.producer, record, self.partitions))
            .collect::<Result<Vec<_>, _>>()?;
        await_deliveries(&mut pending).await?;
        Ok(())
    }
}

/// `order_lines` per probe date in `daily_sales` (empty before the mart exists).
async fn probe_counts(root: &StorageRoot) -> Result<BTreeMap<String, i64>> {
    let ctx = datafusion::prelude::SessionContext::new();
    if !lakehouse::delta::session::register_table(&ctx, root, "gold", "daily_sales").await? {
        return Ok(BTreeMap::new());
    }
    let sql = "SELECT CAST(order_date AS VARCHAR), CAST(order_lines AS BIGINT) FROM daily_sales \
               WHERE order_date >= DATE '2100-01-01'";
    let mut out = BTreeMap::new();
    for batch in lakehouse::delta::session::collect(&ctx, sql).await? {
        use arrow::array::AsArray;
        let dates = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let dates = dates.as_string::<i32>();
        let lines = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..batch.num_rows() {
            out.insert(dates.value(i).to_string(), lines.value(i));
        }
    }
    Ok(out)
}

/// Rows of `daily_sales` (0 before the mart exists).
async fn daily_rows(root: &StorageRoot) -> Result<usize> {
    let ctx = datafusion::prelude::SessionContext::new();
    if !lakehouse::delta::session::register_table(&ctx, root, "gold", "daily_sales").await? {
        return Ok(0);
    }
    let batches =
        lakehouse::delta::session::collect(&ctx, "SELECT order_date FROM daily_sales").await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// Runs the benchmark.
pub async fn bench_freshness(base: &Config, options: &FreshnessOptions) -> Result<FreshnessReport> {
    let kafka = EmbeddedKafka::start(1)?;
    let prefix = "shop";
    for topic in mock_topics(prefix) {
        kafka.create_topic(&topic, options.partitions as i32)?;
    }
    let mut config = base.clone();
    config.storage.root = options.dir.join("lake").display().to_string();
    config.kafka.brokers = Some(kafka.bootstrap_servers().to_string());
    config.kafka.topics = Vec::new();
    config.kafka.topic_pattern = Some(format!("{prefix}\\..*"));
    config.kafka.group_id = "lakehouse-freshness".into();
    config.bronze.flush_interval_ms = options.flush_interval.as_millis() as u64;
    let root = StorageRoot::from_config(&config.storage)?;
    let producer = Producer {
        producer: ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create()
            .map_err(|e| Error::kafka("cannot create the producer", e))?,
        partitions: options.partitions,
    };
    let sim_config = SimConfig {
        seed: 99,
        topic_prefix: prefix.into(),
        ..SimConfig::default()
    };
    let encoder = DebeziumEncoder::new(prefix);
    let mut sim = Simulator::new(sim_config);
    let mut report = FreshnessReport {
        rate: options.rate,
        flush_interval: options.flush_interval,
        poll: options.poll,
        ..Default::default()
    };
    // The snapshot first, so the run starts from a loaded shop.
    let mut records = Vec::new();
    encoder.encode_snapshot(&sim.snapshot(), &mut records);
    producer.send(&records).await?;
    report.records += records.len() as u64;

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let watch_config = config.clone();
    let watch_options = AllOptions {
        no_publish: true,
        poll: options.poll,
    };
    let running = tokio::spawn(async move { watch(&watch_config, &watch_options, shutdown).await });
    // The load starts at once; probes start once gold shows the first orders
    // (the first micro-batch creates the tables empty), and the measured
    // `duration` counts from there.
    let mut probes: Vec<(String, i64, Instant, Option<Duration>)> = Vec::new();
    let warmup = Instant::now();
    let mut warm_at: Option<Instant> = None;
    let mut next_probe = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let per_tick = (options.rate / 4).max(1) as usize;
    loop {
        if running.is_finished() || warm_at.is_some_and(|w| w.elapsed() >= options.duration) {
            break;
        }
        if warm_at.is_none() && warmup.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("no order reached gold.daily_sales within 600 s");
        }
        tick.tick().await;
        records.clear();
        while records.len() < per_tick {
            let tx = sim.next_transaction();
            if warm_at.is_some()
                && Instant::now() >= next_probe
                && let Some((probe, date, items)) = probe_of(&tx, probes.len() as u32)
                && items > 0
            {
                let mut probe_records = Vec::new();
                encoder.encode_transaction(&probe, &mut probe_records);
                let at = Instant::now();
                producer.send(&probe_records).await?;
                report.records += probe_records.len() as u64;
                probes.push((date.to_string(), items, at, None));
                next_probe = at + options.probe_every;
            }
            encoder.encode_transaction(&tx, &mut records);
        }
        producer.send(&records).await?;
        report.records += records.len() as u64;
        if warm_at.is_none() {
            if daily_rows(&root).await? > 0 {
                tracing::info!(
                    seconds = warmup.elapsed().as_secs_f64(),
                    "warm-up done; measuring"
                );
                warm_at = Some(Instant::now());
                next_probe = Instant::now();
            }
        } else {
            see(&root, &mut probes).await?;
        }
    }
    // Let the last probes arrive.
    let drain = Instant::now();
    while probes.iter().any(|p| p.3.is_none()) && drain.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        see(&root, &mut probes).await?;
    }
    let _ = stop.send(true);
    let summary = running
        .await
        .map_err(|e| Error::Internal(format!("the watch task failed: {e}")))??;
    report.silver_runs = summary.silver_runs;
    report.gold_runs = summary.gold_runs;
    report.latencies = probes.iter().map(|p| p.3).collect();
    Ok(report)
}

/// Marks the probes gold now shows.
async fn see(
    root: &StorageRoot,
    probes: &mut [(String, i64, Instant, Option<Duration>)],
) -> Result<()> {
    if probes.iter().all(|p| p.3.is_some()) {
        return Ok(());
    }
    let counts = probe_counts(root).await?;
    let now = Instant::now();
    for (date, items, at, seen) in probes.iter_mut() {
        if seen.is_none() && counts.get(date.as_str()) == Some(items) {
            *seen = Some(now.duration_since(*at));
        }
    }
    Ok(())
}
