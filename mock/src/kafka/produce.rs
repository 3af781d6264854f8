//! Producing the mock stream to a broker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::{Error, Result};
use crate::jsonl::partition_for;
use crate::pace::Pacer;
use crate::stream::{MockLimit, MockStream, record_bytes};
use crate::{KafkaRecord, SimConfig};

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

/// What to produce (the options of `lakehouse mock`).
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
/// default partitioner does, as fast as possible and without a replay.
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
    let mut pacer = Pacer::new(options.rate);
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

/// A record's pending delivery report (see [`await_deliveries`]).
pub type Delivery = DeliveryFuture;

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
            .map_err(|_| Error::DeliveryDropped)?
            .map_err(|(e, _)| Error::kafka("delivery failed", e))?;
    }
    Ok(())
}
