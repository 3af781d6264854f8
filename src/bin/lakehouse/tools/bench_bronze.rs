//! `lakehouse bench bronze`: bronze throughput and peak memory on mock
//! Debezium Postgres records with schemas (1–5 KB each, as real ones are).
//!
//! Three measurements, each on the same deterministic record stream:
//! 1. `decode`: the Debezium decoder alone (the ceiling of the decode step).
//! 2. `ingest`: decode → Arrow → Parquet → Delta commits on local storage, no
//!    broker. Generation is outside the timed sections.
//! 3. `kafka` (with `--brokers`): records produced to a broker first (timed
//!    separately), then `run bronze --until-idle` consumes them end to end;
//!    `kafka-busy` is that run from its first record to its last commit,
//!    comparable with `raw`, a consumer that only counts the bytes.
//!
//! Peak RSS is the process's high-water mark, reset before each phase.
//! Results and method: BENCHMARKS.md, "Bronze". Run it with:
//!
//! ```text
//! cargo run --release -- bench bronze --records 1000000 [--brokers 127.0.0.1:9092]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use lakehouse::Error;
use lakehouse::bronze::{FlushPolicy, Ingestor, Progress, RecordMeta, StopCondition};
use lakehouse::cdc::{DecodedRecord, Decoder, TypeHints};
use lakehouse::config::Config;
use lakehouse::storage::StorageRoot;
use lakehouse_mock::jsonl::partition_for;
use lakehouse_mock::stream::{MockLimit, MockStream, record_bytes};

/// Options of `lakehouse bench bronze`.
#[derive(Debug, Clone)]
pub struct BronzeBenchOptions {
    /// Number of Kafka records to generate.
    pub records: u64,
    /// Partitions per topic.
    pub partitions: u32,
    /// Simulation seed.
    pub seed: u64,
    /// Broker for the end-to-end phase (skipped when `None`).
    pub brokers: Option<String>,
    /// Scratch folder for the Delta tables.
    pub dir: PathBuf,
}

/// One measured phase.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// Phase name.
    pub name: &'static str,
    /// Records processed.
    pub records: u64,
    /// Bytes of key + value processed.
    pub bytes: u64,
    /// Time spent in the measured work.
    pub elapsed: Duration,
    /// Peak resident memory during the phase, in bytes (0 when unknown).
    pub peak_rss: u64,
}

impl PhaseResult {
    /// Records per second.
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Megabytes (10^6) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for PhaseResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<10} {:>10} records {:>9.1} MB in {:>7.2}s  {:>9.0} records/s  {:>7.1} MB/s  peak RSS {:>6.0} MiB",
            self.name,
            self.records,
            self.bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            self.records_per_s(),
            self.mb_per_s(),
            self.peak_rss as f64 / (1024.0 * 1024.0),
        )
    }
}

const CHUNK: usize = 20_000;

/// Resets the process's peak-RSS counter (Linux); best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS in bytes since the last reset (Linux), or 0.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Decoder alone.
fn bench_decode(options: &BronzeBenchOptions) -> PhaseResult {
    reset_peak_rss();
    let mut stream = MockStream::new(MockLimit::Records(options.records), options.seed, "shop");
    let mut decoder = Decoder::new(TypeHints::default());
    let mut decoded = DecodedRecord::default();
    let mut chunk = Vec::new();
    let (mut records, mut bytes, mut elapsed, mut failures) = (0u64, 0u64, Duration::ZERO, 0u64);
    while stream.next_chunk(CHUNK, &mut chunk) {
        let started = Instant::now();
        for record in &chunk {
            if decoder
                .decode(
                    &record.topic,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    &mut decoded,
                )
                .is_err()
            {
                failures += 1;
            }
        }
        elapsed += started.elapsed();
        records += chunk.len() as u64;
        bytes += chunk.iter().map(record_bytes).sum::<u64>();
    }
    if failures > 0 {
        tracing::warn!(failures, "mock records failed to decode");
    }
    PhaseResult {
        name: "decode",
        records,
        bytes,
        elapsed,
        peak_rss: peak_rss(),
    }
}

/// Decode → Arrow → Parquet → Delta on local storage, decoding on every
/// core as the Kafka path does.
async fn bench_ingest(options: &BronzeBenchOptions, config: &Config) -> Result<PhaseResult> {
    let dir = options.dir.join("ingest");
    let _ = std::fs::remove_dir_all(&dir);
    let root = StorageRoot::local(&dir)?;
    reset_peak_rss();
    let mut ingestor = Ingestor::open(
        &root,
        &config.bronze,
        TypeHints::default(),
        Progress::quiet(),
    )
    .await?
    .with_policy(FlushPolicy::from_config(&config.bronze));
    let mut stream = MockStream::new(MockLimit::Records(options.records), options.seed, "shop");
    let mut chunk = Vec::new();
    let mut offsets: std::collections::HashMap<(String, u32), (usize, i64)> = Default::default();
    let (mut records, mut bytes, mut elapsed) = (0u64, 0u64, Duration::ZERO);
    while stream.next_chunk(CHUNK, &mut chunk) {
        let started = Instant::now();
        for record in &chunk {
            let partition = partition_for(record.key.as_deref(), options.partitions);
            let slot = offsets
                .entry((record.topic.clone(), partition))
                .or_insert_with(|| {
                    (
                        ingestor.set_position(
                            &lakehouse::bronze::kafka::app_id(&record.topic, partition as i32),
                            None,
                        ),
                        -1,
                    )
                });
            slot.1 += 1;
            let meta = RecordMeta {
                stream: slot.0,
                position: slot.1,
                topic: &record.topic,
                partition: partition as i32,
                offset: slot.1,
                timestamp_ms: None,
                key: record.key.as_deref(),
                value: record.value.as_deref(),
            };
            // As the Kafka path does: decoded on every core.
            ingestor.queue(&meta).await?;
            if ingestor.should_flush() {
                ingestor.flush().await?;
            }
        }
        elapsed += started.elapsed();
        records += chunk.len() as u64;
        bytes += chunk.iter().map(record_bytes).sum::<u64>();
    }
    let started = Instant::now();
    let summary = ingestor.finish().await?;
    elapsed += started.elapsed();
    if summary.counts.records != records {
        anyhow::bail!("ingested {} of {records} records", summary.counts.records);
    }
    Ok(PhaseResult {
        name: "ingest",
        records,
        bytes,
        elapsed,
        peak_rss: peak_rss(),
    })
}

/// Produce to a broker, then consume with `run bronze --until-idle`.
async fn bench_kafka(
    options: &BronzeBenchOptions,
    config: &Config,
    brokers: &str,
) -> Result<[PhaseResult; 4]> {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bench{}", &run_id[..8]);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| Error::kafka("admin client", e))?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .map_err(|e| Error::kafka("producer", e))?;

    // Produce (timed on its own).
    reset_peak_rss();
    let mut stream = MockStream::new(MockLimit::Records(options.records), options.seed, "shop");
    let mut chunk = Vec::new();
    let mut topics = std::collections::BTreeSet::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while stream.next_chunk(CHUNK, &mut chunk) {
        let mut pending = Vec::with_capacity(chunk.len());
        for record in &chunk {
            let topic = record
                .topic
                .replacen(&stream.encoder().prefix().to_string(), &prefix, 1);
            if topics.insert(topic.clone()) {
                let new = NewTopic::new(
                    &topic,
                    options.partitions as i32,
                    TopicReplication::Fixed(1),
                );
                admin
                    .create_topics([&new], &AdminOptions::new())
                    .await
                    .map_err(|e| Error::kafka(format!("create topic {topic}"), e))?;
            }
            let partition = partition_for(record.key.as_deref(), options.partitions) as i32;
            let mut out: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).partition(partition);
            if let Some(k) = &record.key {
                out = out.key(k.as_slice());
            }
            if let Some(v) = &record.value {
                out = out.payload(v.as_slice());
            }
            pending.push(
                producer
                    .send_result(out)
                    .map_err(|(e, _)| Error::kafka("produce", e))?,
            );
        }
        for delivery in pending {
            delivery
                .await
                .map_err(|_| Error::Internal("producer dropped a delivery".into()))?
                .map_err(|(e, _)| Error::kafka("delivery", e))?;
        }
        records += chunk.len() as u64;
        bytes += chunk.iter().map(record_bytes).sum::<u64>();
    }
    let produce = PhaseResult {
        name: "produce",
        records,
        bytes,
        elapsed: started.elapsed(),
        peak_rss: peak_rss(),
    };

    // The broker's own ceiling: a plain consumer that only counts bytes.
    let raw = raw_consume(brokers, &topics, records).await?;

    // Consume end to end.
    let dir = options.dir.join("kafka");
    let _ = std::fs::remove_dir_all(&dir);
    let mut consume_config = config.clone();
    consume_config.storage.root = dir.display().to_string();
    consume_config.kafka.brokers = Some(brokers.to_string());
    consume_config.kafka.group_id = format!("bench-{run_id}");
    consume_config.kafka.topics = topics.into_iter().collect();
    consume_config.kafka.topic_pattern = None;
    reset_peak_rss();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let summary = lakehouse::pipeline::jobs::bronze(
        &consume_config,
        lakehouse::bronze::BronzeSource::Kafka,
        StopCondition {
            until_idle: true,
            max_records: None,
        },
        rx,
    )
    .await?;
    let consume = PhaseResult {
        name: "kafka",
        records: summary.counts.records,
        bytes: summary.counts.bytes,
        elapsed: started.elapsed(),
        peak_rss: peak_rss(),
    };
    // The same run from its first record to its last commit, comparable
    // with `raw` (no group join, no idle wait at the end).
    let busy = PhaseResult {
        name: "kafka-busy",
        elapsed: summary.busy,
        ..consume.clone()
    };
    if summary.counts.records != records {
        anyhow::bail!(
            "consumed {} of {records} produced records",
            summary.counts.records
        );
    }
    Ok([produce, raw, consume, busy])
}

/// Reads `records` records of `topics` from the beginning with a plain
/// consumer that decodes nothing: what the broker and client can deliver.
async fn raw_consume(
    brokers: &str,
    topics: &std::collections::BTreeSet<String>,
    records: u64,
) -> Result<PhaseResult> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;

    reset_peak_rss();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-raw-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| Error::kafka("raw consumer", e))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| Error::kafka("raw subscribe", e))?;
    let (mut seen, mut bytes) = (0u64, 0u64);
    let mut started = None;
    while seen < records {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .map_err(|_| {
                Error::Condition(format!(
                    "raw consumer stalled after {seen} of {records} records"
                ))
            })?
            .map_err(|e| Error::kafka("raw consume", e))?;
        started.get_or_insert_with(Instant::now);
        seen += 1;
        bytes += (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len))
            as u64;
    }
    Ok(PhaseResult {
        name: "raw",
        records: seen,
        bytes,
        elapsed: started.map_or(Duration::ZERO, |s| s.elapsed()),
        peak_rss: peak_rss(),
    })
}

/// Runs the bronze benchmark and returns the measured phases.
pub async fn bench_bronze(
    options: &BronzeBenchOptions,
    config: &Config,
) -> Result<Vec<PhaseResult>> {
    std::fs::create_dir_all(&options.dir).map_err(|e| Error::io(&options.dir, e))?;
    let mut results = vec![bench_decode(options)];
    tracing::info!("{}", results[0]);
    results.push(bench_ingest(options, config).await?);
    tracing::info!("{}", results[1]);
    if let Some(brokers) = &options.brokers {
        for phase in bench_kafka(options, config, brokers).await? {
            tracing::info!("{phase}");
            results.push(phase);
        }
    }
    Ok(results)
}
