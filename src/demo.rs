//! `lakehouse demo`: the whole pipeline on one machine, no external service.
//!
//! Starts an in-process Kafka-protocol broker ([`EmbeddedKafka`]), has the
//! mock e-commerce database emit what a Debezium Postgres connector would
//! ([`lakehouse_mock`]), then runs bronze (`--until-idle`), silver and gold on
//! local storage, and reports what each layer did. `lakehouse mock` reuses
//! [`produce_mock`] to feed any broker.
//!
//! The shipped pipeline (the repository's `layers/` and `sql/`) is embedded
//! in the binary and written into the demo's folder, so an installed binary
//! runs the demo from any working directory. The folder carries a marker
//! file: the demo clears a folder it made before, and refuses to touch one
//! it did not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use include_dir::{Dir, include_dir};
use lakehouse_mock::{
    DebeziumEncoder, KafkaRecord, SimConfig, Simulator, Table, jsonl::partition_for,
};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::bronze::{BronzeSource, StopCondition};
use crate::config::Config;
use crate::embedded_kafka::EmbeddedKafka;
use crate::error::{Error, Result};
use crate::pipeline::jobs::{self, LayerSummary};
use crate::pipeline::{JobKind, Trigger};

/// The shipped table and mart specs (`layers/silver`, `layers/gold`).
static SHIPPED_LAYERS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/layers");
/// The shipped SQL (`sql/silver`, `sql/gold`).
static SHIPPED_SQL: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/sql");

/// The file that marks a folder as made by the demo.
pub const DEMO_MARKER: &str = ".lakehouse-demo";

/// The folder, inside the demo's folder, the shipped pipeline is written to.
pub const PIPELINE_FOLDER: &str = "pipeline";

/// Makes `dir` ready for a demo run: created when missing; cleared when the
/// demo made it (it holds [`DEMO_MARKER`]) or it is empty; refused
/// otherwise, so that a mistyped `--dir` never deletes someone's data.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty && !dir.join(DEMO_MARKER).is_file() {
                return Err(Error::Config {
                    file: dir.to_path_buf(),
                    message: format!(
                        "the demo folder exists and was not made by the demo (no {DEMO_MARKER} \
                         in it): refusing to clear it; choose another --dir or remove it yourself"
                    ),
                });
            }
            if !empty {
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let marker = dir.join(DEMO_MARKER);
    std::fs::write(
        &marker,
        "made by `lakehouse demo`; the next demo run clears this folder\n",
    )
    .map_err(|e| Error::io(&marker, e))
}

/// The configuration file the demo leaves in its folder, for `lakehouse
/// --config <dir>/lakehouse.toml query ...` from anywhere (its relative
/// paths resolve against the folder).
pub const DEMO_CONFIG: &str = "lakehouse.toml";

/// Writes the shipped pipeline under `dir/pipeline` and a `lakehouse.toml`
/// for it, and points `config`'s silver and gold spec and SQL folders at it.
pub fn install_pipeline(dir: &Path, config: &mut Config) -> Result<()> {
    let root = dir.join(PIPELINE_FOLDER);
    for (embedded, folder) in [(&SHIPPED_LAYERS, "layers"), (&SHIPPED_SQL, "sql")] {
        let target = root.join(folder);
        std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        embedded
            .extract(&target)
            .map_err(|e| Error::io(&target, e))?;
    }
    let file = dir.join(DEMO_CONFIG);
    let text = format!(
        "# Written by `lakehouse demo`: its lake (this folder) and the shipped pipeline.\n\
         [storage]\nroot = \".\"\n\
         [silver]\nlayers_dir = \"{PIPELINE_FOLDER}/layers/silver\"\nsql_dir = \"{PIPELINE_FOLDER}/sql/silver\"\n\
         [gold]\nlayers_dir = \"{PIPELINE_FOLDER}/layers/gold\"\nsql_dir = \"{PIPELINE_FOLDER}/sql/gold\"\n"
    );
    std::fs::write(&file, text).map_err(|e| Error::io(&file, e))?;
    config.silver.layers_dir = root.join("layers/silver");
    config.silver.sql_dir = root.join("sql/silver");
    config.gold.layers_dir = root.join("layers/gold");
    config.gold.sql_dir = root.join("sql/gold");
    Ok(())
}

/// Options of `lakehouse demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Data changes the mock database makes (snapshot rows included).
    pub changes: u64,
    /// Simulation seed.
    pub seed: u64,
    /// The demo's folder: storage root of its tables, and where the shipped
    /// pipeline is written (see [`prepare_dir`]).
    pub dir: PathBuf,
    /// Partitions per topic. The embedded broker keeps about 5 MiB per
    /// partition, so larger demos need more partitions.
    pub partitions: u32,
    /// Also publish the gold marts to this Postgres.
    pub postgres: Option<String>,
}

/// What the mock produced.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    /// Records per topic.
    pub per_topic: BTreeMap<String, u64>,
    /// Data changes (rows inserted, updated, deleted or read in the snapshot).
    pub changes: u64,
    /// Bytes of key + value.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Data changes re-emitted by the replay at the end (`--replay-last`).
    pub replayed_changes: u64,
}

impl Produced {
    /// All records.
    pub fn records(&self) -> u64 {
        self.per_topic.values().sum()
    }
}

/// When a [`MockStream`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockLimit {
    /// After this many Kafka records (cut mid-transaction if need be).
    Records(u64),
    /// After the transaction that reaches this many data changes.
    Changes(u64),
}

/// The mock database's Kafka records, generated chunk by chunk so memory
/// stays bounded whatever the size.
pub struct MockStream {
    sim: Simulator,
    encoder: DebeziumEncoder,
    limit: MockLimit,
    records: u64,
    changes: u64,
    snapshot_done: bool,
    replay_last: usize,
    replayed_changes: u64,
}

impl MockStream {
    /// A deterministic stream for `seed`, with topics named `<prefix>.public.<table>`.
    pub fn new(limit: MockLimit, seed: u64, prefix: &str) -> Self {
        Self::with_config(
            limit,
            SimConfig {
                seed,
                topic_prefix: prefix.to_string(),
                ..SimConfig::default()
            },
        )
    }

    /// A stream of the simulation configured by `config`.
    pub fn with_config(limit: MockLimit, config: SimConfig) -> Self {
        Self {
            encoder: DebeziumEncoder::new(&config.topic_prefix),
            sim: Simulator::new(config),
            limit,
            records: 0,
            changes: 0,
            snapshot_done: false,
            replay_last: 0,
            replayed_changes: 0,
        }
    }

    /// A stream that, once `limit` is reached, re-emits its last `replay_last`
    /// transactions with their original LSNs and payloads — what a Debezium
    /// connector restarting from an older offset (e.g. without committed
    /// offsets) writes again.
    pub fn with_replay(limit: MockLimit, config: SimConfig, replay_last: usize) -> Self {
        let history = config.history.max(replay_last);
        let mut stream = Self::with_config(limit, SimConfig { history, ..config });
        stream.replay_last = replay_last;
        stream
    }

    /// Data changes re-emitted by the replay so far.
    pub fn replayed_changes(&self) -> u64 {
        self.replayed_changes
    }

    /// The encoder (topic names).
    pub fn encoder(&self) -> &DebeziumEncoder {
        &self.encoder
    }

    /// Data changes emitted so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn done(&self) -> bool {
        match self.limit {
            MockLimit::Records(n) => self.records >= n,
            MockLimit::Changes(n) => self.changes >= n,
        }
    }

    /// Replaces `out` with the next chunk of about `chunk` records; `false` at the end.
    pub fn next_chunk(&mut self, chunk: usize, out: &mut Vec<KafkaRecord>) -> bool {
        out.clear();
        if !self.snapshot_done {
            self.snapshot_done = true;
            let snapshot = self.sim.snapshot();
            self.changes += snapshot.changes.len() as u64;
            self.encoder.encode_snapshot(&snapshot, out);
        }
        while out.len() < chunk && !self.done_with(out.len()) {
            let tx = self.sim.next_transaction();
            self.changes += tx.changes.len() as u64;
            self.encoder.encode_transaction(&tx, out);
        }
        if self.replay_last > 0 && self.done_with(out.len()) {
            for tx in self.sim.replay_last(std::mem::take(&mut self.replay_last)) {
                self.replayed_changes += tx.changes.len() as u64;
                self.encoder.encode_transaction(&tx, out);
            }
        }
        if let MockLimit::Records(n) = self.limit {
            out.truncate(n.saturating_sub(self.records).min(out.len() as u64) as usize);
        }
        self.records += out.len() as u64;
        !out.is_empty()
    }

    fn done_with(&self, buffered: usize) -> bool {
        match self.limit {
            MockLimit::Records(n) => self.records + buffered as u64 >= n,
            MockLimit::Changes(_) => self.done(),
        }
    }
}

/// The topics the mock writes to: one per table plus the transaction topic.
pub fn mock_topics(prefix: &str) -> Vec<String> {
    let encoder = DebeziumEncoder::new(prefix);
    let mut topics: Vec<String> = Table::ALL
        .iter()
        .map(|t| encoder.topic(*t).to_string())
        .collect();
    topics.push(encoder.transaction_topic().to_string());
    topics
}

/// What `lakehouse mock` produces.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Stop after the transaction that reaches this many data changes.
    pub changes: u64,
    /// The simulation.
    pub sim: SimConfig,
    /// Partitions per topic (records are placed by key hash).
    pub partitions: u32,
    /// Data changes per second (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// At the end, re-emit the last N transactions (a connector restart).
    pub replay_last: usize,
}

/// Produces the mock stream to `brokers`, partitioning by key as Kafka's
/// default partitioner does.
pub async fn produce_mock(
    brokers: &str,
    changes: u64,
    sim: SimConfig,
    partitions: u32,
) -> Result<Produced> {
    let options = MockOptions {
        changes,
        sim,
        partitions,
        rate: None,
        replay_last: 0,
    };
    produce_mock_with(brokers, &options).await
}

/// Produces the mock stream described by `options` to `brokers`.
pub async fn produce_mock_with(brokers: &str, options: &MockOptions) -> Result<Produced> {
    let partitions = options.partitions;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "10")
        .set("message.timeout.ms", "60000")
        .create()
        .map_err(|e| Error::kafka("cannot create the producer", e))?;
    let started = Instant::now();
    let mut produced = Produced::default();
    let mut pending = Vec::new();
    let mut stream = MockStream::with_replay(
        MockLimit::Changes(options.changes),
        options.sim.clone(),
        options.replay_last,
    );
    let mut chunk = Vec::new();
    let mut pacer = lakehouse_mock::pace::Pacer::new(options.rate);
    // Paced: about a tenth of a second of changes per chunk, so waits stay short.
    let chunk_size = options
        .rate
        .map_or(10_000, |rate| ((rate / 10.0) as usize).clamp(1, 10_000));
    let mut last_log = Instant::now();
    while stream.next_chunk(chunk_size, &mut chunk) {
        for record in &chunk {
            pending.push(send(&producer, record, partitions)?);
            *produced.per_topic.entry(record.topic.clone()).or_default() += 1;
            produced.bytes += record_bytes(record);
        }
        // Bound what is in flight to one chunk.
        await_deliveries(&mut pending).await?;
        let wait = pacer.record(stream.changes() - pacer.done());
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            tracing::info!(
                changes = stream.changes(),
                rate = format!(
                    "{:.0} changes/s",
                    stream.changes() as f64 / started.elapsed().as_secs_f64().max(1e-9)
                ),
                "producing"
            );
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    produced.changes = stream.changes();
    produced.replayed_changes = stream.replayed_changes();
    produced.elapsed = started.elapsed();
    Ok(produced)
}

/// Bytes of a record's key and value.
pub fn record_bytes(record: &KafkaRecord) -> u64 {
    (record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len)) as u64
}

type Delivery = rdkafka::producer::DeliveryFuture;

/// Enqueues `record` on the partition its key hashes to (as the mock's
/// `partitions` says Debezium's default partitioner would).
pub fn send(producer: &FutureProducer, record: &KafkaRecord, partitions: u32) -> Result<Delivery> {
    let partition = partition_for(record.key.as_deref(), partitions) as i32;
    let mut out: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&record.topic).partition(partition);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    producer
        .send_result(out)
        .map_err(|(e, _)| Error::kafka(format!("cannot produce to {}", record.topic), e))
}

/// Waits for every delivery of `pending`, failing on the first error.
pub async fn await_deliveries(pending: &mut Vec<Delivery>) -> Result<()> {
    for delivery in pending.drain(..) {
        delivery
            .await
            .map_err(|_| Error::Other("the producer dropped a delivery".into()))?
            .map_err(|(e, _)| Error::kafka("delivery failed", e))?;
    }
    Ok(())
}

/// What the demo did, layer by layer.
#[derive(Debug)]
pub struct DemoReport {
    /// The mock's output.
    pub produced: Produced,
    /// Bronze.
    pub bronze: crate::bronze::RunSummary,
    /// Silver.
    pub silver: crate::silver::RunSummary,
    /// Gold.
    pub gold: jobs::GoldSummary,
    /// The configuration the layers ran with (for `lakehouse query` afterwards).
    pub config: Config,
}

/// Runs the demo in `options.dir` (prepared with [`prepare_dir`] first).
pub async fn run(options: &DemoOptions, base: &Config) -> Result<DemoReport> {
    prepare_dir(&options.dir)?;
    let kafka = EmbeddedKafka::start(1)?;
    let prefix = "shop";
    for topic in mock_topics(prefix) {
        kafka.create_topic(&topic, options.partitions as i32)?;
    }
    tracing::info!(
        brokers = kafka.bootstrap_servers(),
        "embedded Kafka broker started"
    );

    // A slower order rate than the simulator's default spreads the demo's
    // changes over a few weeks, so the daily marts have something to show.
    let sim = SimConfig {
        seed: options.seed,
        topic_prefix: prefix.to_string(),
        orders_per_hour: 5.0,
        ..SimConfig::default()
    };
    let produced = produce_mock(
        kafka.bootstrap_servers(),
        options.changes,
        sim,
        options.partitions,
    )
    .await?;
    tracing::info!(
        records = produced.records(),
        changes = produced.changes,
        seconds = format!("{:.2}", produced.elapsed.as_secs_f64()),
        "mock database changes produced"
    );

    let mut config = base.clone();
    config.storage.root = options.dir.display().to_string();
    install_pipeline(&options.dir, &mut config)?;
    config.kafka.brokers = Some(kafka.bootstrap_servers().to_string());
    config.kafka.topics = Vec::new();
    config.kafka.topic_pattern = Some(format!("{prefix}\\..*"));
    config.kafka.group_id = "lakehouse-demo".to_string();
    config.bronze.idle_timeout_ms = 1_000;
    if let Some(url) = &options.postgres {
        config.postgres.url = Some(url.clone());
    }

    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let stop = StopCondition {
        until_idle: true,
        max_records: None,
    };
    // Each layer's run goes into the run history, so `lakehouse status`
    // shows the demo's runs afterwards. The demo's lake starts empty: no
    // bronze version before the run.
    let trigger = Trigger::Manual;
    let run = jobs::bronze(&config, BronzeSource::Kafka, stop, shutdown);
    let bronze = jobs::recorded_as(&config, JobKind::Bronze, trigger, run, |s| {
        LayerSummary::Bronze(s.clone(), None)
    })
    .await?;
    let silver_options = crate::silver::RunOptions::default();
    let run = jobs::silver(&config, &silver_options);
    let silver = jobs::recorded_as(&config, JobKind::Silver, trigger, run, |s| {
        LayerSummary::Silver(s.clone())
    })
    .await?;
    let gold_options = jobs::GoldOptions {
        no_publish: options.postgres.is_none(),
        ..Default::default()
    };
    let run = jobs::gold(&config, &gold_options);
    let gold = jobs::recorded_as(&config, JobKind::Gold, trigger, run, |s| {
        LayerSummary::Gold(s.clone())
    })
    .await?;
    Ok(DemoReport {
        produced,
        bronze,
        silver,
        gold,
        config,
    })
}

/// Prints what each layer did and a few gold results.
pub async fn print_report(report: &DemoReport) -> Result<()> {
    let p = &report.produced;
    println!(
        "mock      {:>9} records  {:>9} changes  {:>8.1} MB  {:>6.2}s",
        p.records(),
        p.changes,
        p.bytes as f64 / 1e6,
        p.elapsed.as_secs_f64()
    );
    let b = &report.bronze;
    println!(
        "bronze    {:>9} records  {:>9} rows     {:>8} dead letters  {:>6.2}s  {:>8.0} records/s",
        b.counts.records,
        b.counts.rows,
        b.counts.dead_letters,
        b.elapsed.as_secs_f64(),
        b.counts.records as f64 / b.elapsed.as_secs_f64().max(1e-9)
    );
    let s = &report.silver;
    let silver_rows: u64 = s.tables.iter().map(|t| t.rows_in).sum();
    println!(
        "silver    {:>9} tables   {:>9} changes read              {:>6.2}s",
        s.tables.len(),
        silver_rows,
        s.elapsed.as_secs_f64()
    );
    for t in &s.tables {
        println!(
            "            {:<22} +{} ~{} -{} stale {} quarantined {}",
            t.table,
            t.counts.inserted,
            t.counts.updated,
            t.counts.deleted,
            t.counts.stale,
            t.quarantined
        );
    }
    let g = &report.gold;
    println!(
        "gold      {:>9} marts    {:>9} rows                      {:>6.2}s build  {:>6.2}s publish",
        g.marts.len(),
        g.marts.iter().map(|m| m.rows).sum::<u64>(),
        g.build_elapsed.as_secs_f64(),
        g.publish_elapsed.as_secs_f64()
    );
    let ctx = jobs::query_session(&report.config).await?;
    for (title, sql) in DEMO_QUERIES {
        println!("\n{title}");
        let batches = crate::gold::adhoc::run(&ctx, sql).await?;
        println!(
            "{}",
            crate::gold::adhoc::render(&batches, crate::gold::adhoc::Format::Table)?
        );
    }
    println!(
        "\nTables are under {root}, with the pipeline that made them. Query them from any folder with:\n  lakehouse --config {config} query \"SELECT * FROM daily_sales ORDER BY order_date DESC LIMIT 5\"",
        root = report.config.storage.root,
        config = Path::new(&report.config.storage.root)
            .join(DEMO_CONFIG)
            .display()
    );
    Ok(())
}

/// Gold results the demo prints.
const DEMO_QUERIES: [(&str, &str); 3] = [
    (
        "Daily sales (last 7 days):",
        "SELECT order_date, orders, items, net_revenue, avg_order_value \
         FROM daily_sales ORDER BY order_date DESC LIMIT 7",
    ),
    ("Payment mix:", "SELECT * FROM payment_mix LIMIT 8"),
    (
        "Shipping performance:",
        "SELECT * FROM shipping_performance LIMIT 8",
    ),
];
