//! `lakehouse run bronze`: consume a Kafka consumer group into bronze.
//!
//! Positions live in the Delta table, not in the group: on every partition
//! assignment the rebalance callback reads the `txn` version of each assigned
//! partition from `bronze_events` and assigns the partition at the next offset
//! (or the beginning when the table has none). Group offsets are committed
//! after each Delta commit only so that lag shows in the usual Kafka tools.
//!
//! Rebalances use the eager protocol: every revocation drops the in-memory
//! batch, which the new owner (maybe this process again) re-reads from the
//! table's positions. The sink's per-stream check makes a late commit by a
//! process that lost its partitions a no-op for those partitions.
//!
//! Before consuming, the run waits for the brokers to answer a metadata
//! request. Errors no retry can fix (SASL authentication refused, a TLS
//! handshake that fails) end the run at once with librdkafka's reason, which
//! names the broker; unreachable brokers are waited for, with warnings (at
//! most `assignment_timeout_ms` for an `--until-idle` run).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use tokio::sync::watch;

use super::Settings;
use super::backlog::Backlog;
use super::config::KafkaConfig;
use super::{Flushed, Ingestor, RecordMeta, RunSummary, StopCondition};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::bronze::{EVENTS_TABLE, LAYER};

/// The Delta application id of a topic-partition.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("lakehouse-bronze:{topic}:{partition}")
}

/// One assigned partition as the rebalance callback left it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Assigned {
    topic: String,
    partition: i32,
    /// Position committed in the table when assigned.
    committed: Option<i64>,
}

#[derive(Debug, Default)]
struct AssignmentState {
    /// Bumped on every assignment change.
    generation: u64,
    assigned: Vec<Assigned>,
    /// An error a callback hit; the run fails with it.
    error: Option<String>,
    /// The last error librdkafka logged (it carries the reason and the
    /// broker, which an error event's code alone does not).
    last_logged_error: Option<String>,
}

/// Whether a client error is one that retrying cannot fix: the credentials
/// or the TLS setup are wrong, and librdkafka would otherwise retry forever.
fn is_fatal_client_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

/// Consumer context: positions from the Delta table on assignment.
struct BronzeContext {
    root: StorageRoot,
    state: Arc<Mutex<AssignmentState>>,
    /// Records between the committed group offsets and the high watermarks of
    /// the assigned partitions, from librdkafka's statistics (-1: unknown).
    lag: Arc<AtomicI64>,
    /// Partitions whose lag gauge this process has set: when one is
    /// assigned elsewhere, its gauge drops to 0 here, so that the group's
    /// lag is not counted twice from a stale value.
    lag_reported: Mutex<HashSet<(String, i32)>>,
}

impl ClientContext for BronzeContext {
    fn stats(&self, statistics: Statistics) {
        let assigned: HashSet<(String, i32)> = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .assigned
            .iter()
            .map(|a| (a.topic.clone(), a.partition))
            .collect();
        let mut reported = self
            .lag_reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut lag = 0;
        for (topic, stats) in &statistics.topics {
            // Partition -1 is librdkafka's internal unassigned partition.
            for p in stats.partitions.values().filter(|p| p.partition >= 0) {
                let key = (topic.clone(), p.partition);
                if assigned.contains(&key) {
                    if p.consumer_lag >= 0 {
                        super::telemetry::consumer_lag(topic, p.partition, p.consumer_lag);
                        reported.insert(key);
                    }
                    lag += p.consumer_lag.max(0);
                } else if reported.remove(&key) {
                    // Moved to another member, which reports it now.
                    super::telemetry::consumer_lag(topic, p.partition, 0);
                }
            }
        }
        self.lag.store(lag, Ordering::Relaxed);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}");
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.last_logged_error = Some(log_message.to_string());
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }
}

impl ConsumerContext for BronzeContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                match read_positions(&self.root, &partitions) {
                    Ok(positions) => {
                        let mut assigned = Vec::with_capacity(partitions.len());
                        for ((topic, partition), committed) in partitions.into_iter().zip(positions)
                        {
                            let offset =
                                committed.map_or(Offset::Beginning, |c| Offset::Offset(c + 1));
                            if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                                self.fail(format!(
                                    "cannot set the offset of {topic}/{partition}: {e}"
                                ));
                                return;
                            }
                            assigned.push(Assigned {
                                topic,
                                partition,
                                committed,
                            });
                        }
                        if let Err(e) = consumer.assign(tpl) {
                            self.fail(format!("cannot assign partitions: {e}"));
                            return;
                        }
                        tracing::info!(
                            partitions = ?assigned.iter().map(|a| format!("{}/{}@{:?}", a.topic, a.partition, a.committed.map(|c| c + 1))).collect::<Vec<_>>(),
                            "partitions assigned; resuming from the offsets stored in bronze_events"
                        );
                        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                        state.generation += 1;
                        state.assigned = assigned;
                    }
                    Err(e) => self.fail(format!("cannot read positions from {EVENTS_TABLE}: {e}")),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.generation += 1;
                state.assigned.clear();
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.generation += 1;
                state.assigned.clear();
            }
        }
    }
}

impl BronzeContext {
    /// Records an error the run must fail with (the first one wins: later
    /// ones are usually its echoes from other broker connections).
    fn fail(&self, message: String) {
        tracing::error!(%message, "bronze consumer failed");
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.error.get_or_insert(message);
    }
}

/// Waits until the brokers answer a metadata request. Fails at once on an
/// error no retry can fix (authentication, TLS: [`is_fatal_client_error`]),
/// and after `limit` when given (a bounded run must not hang on unreachable
/// brokers); warns every ten seconds while it waits. Returns early on a
/// shutdown request, which the consume loop then sees.
async fn await_brokers(
    consumer: &StreamConsumer<BronzeContext>,
    state: &Mutex<AssignmentState>,
    brokers: &str,
    limit: Option<Duration>,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let started = Instant::now();
    let mut warned = Instant::now();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let answer = consumer.fetch_metadata(None, Duration::from_millis(500));
        // Error events wait in the consumer's queue (the group's consumer
        // redirects the main queue there): serve it to see them.
        while let Ok(Err(error)) =
            tokio::time::timeout(Duration::from_millis(1), consumer.recv()).await
        {
            check_consumer_error(error, state, brokers)?;
        }
        match answer {
            Ok(_) => return Ok(()),
            Err(e) if limit.is_some_and(|limit| started.elapsed() >= limit) => {
                return Err(Error::kafka(
                    format!(
                        "the Kafka brokers {brokers} did not answer within {:?}",
                        started.elapsed()
                    ),
                    e,
                ));
            }
            Err(e) => {
                if warned.elapsed() >= Duration::from_secs(10) {
                    warned = Instant::now();
                    tracing::warn!(brokers, error = %e, "waiting for the Kafka brokers");
                }
            }
        }
    }
}

/// Reads the committed positions of `partitions` from `bronze_events`.
///
/// The rebalance callback is synchronous and runs inside the consumer's poll,
/// so the table is read on a scoped thread with its own small runtime, which
/// works whatever runtime (if any) the caller is on.
fn read_positions(root: &StorageRoot, partitions: &[(String, i32)]) -> Result<Vec<Option<i64>>> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Multi-threaded: the Delta kernel blocks on its own futures
                // and warns about possible deadlocks on a current-thread runtime.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Internal(format!("cannot start a runtime: {e}")))?;
                runtime.block_on(async {
                    let table = root.open_table(LAYER, EVENTS_TABLE).await?;
                    if table.version().is_none() {
                        return Ok(vec![None; partitions.len()]);
                    }
                    let snapshot = table
                        .snapshot()
                        .map_err(|e| Error::delta(EVENTS_TABLE, e))?;
                    let mut out = Vec::with_capacity(partitions.len());
                    for (topic, partition) in partitions {
                        out.push(
                            snapshot
                                .transaction_version(
                                    table.log_store().as_ref(),
                                    app_id(topic, *partition),
                                )
                                .await
                                .map_err(|e| Error::delta(EVENTS_TABLE, e))?,
                        );
                    }
                    Ok(out)
                })
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("position reader thread panicked".into())))
    })
}

/// The librdkafka configuration of the bronze consumer.
pub fn client_config(kafka: &KafkaConfig, brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Topics created later that match the pattern are found within this time.
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("partition.assignment.strategy", "range,roundrobin")
        // Consumer lag for the progress logs and the lag metric comes from
        // the statistics.
        .set("statistics.interval.ms", "5000")
        // When the prefetch queue is full (while a batch commits), librdkafka
        // pauses fetching for this long; its 1 s default halved end-to-end
        // throughput in the benchmark (see BENCHMARKS.md).
        .set("fetch.queue.backoff.ms", "20");
    for (key, value) in &kafka.properties {
        if crate::redact::is_secret_key(key) {
            // Errors and logs quoting it are masked.
            crate::redact::register_secret(value);
        }
        config.set(key, value);
    }
    config
}

/// Stream index, committed position and high watermark of an assigned partition.
#[derive(Debug, Clone, Copy)]
struct PartitionProgress {
    stream: usize,
    /// The high watermark the run must reach (`--until-idle` only).
    target: Option<i64>,
}

/// Consumes the configured topics until the stop condition or a shutdown signal.
pub async fn run(
    config: Settings<'_>,
    root: &StorageRoot,
    mut ingestor: Ingestor,
    stop: StopCondition,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RunSummary> {
    let brokers = config.kafka.require_brokers(config.origin)?;
    let subscription = config.kafka.subscription();
    if subscription.is_empty() {
        return Err(Error::Config {
            file: config.origin.to_path_buf(),
            message: "kafka.topics or kafka.topic_pattern is required to consume from Kafka".into(),
        });
    }
    let state = Arc::new(Mutex::new(AssignmentState::default()));
    let lag = Arc::new(AtomicI64::new(-1));
    let context = BronzeContext {
        root: root.clone(),
        state: state.clone(),
        lag: lag.clone(),
        lag_reported: Mutex::default(),
    };
    let consumer: StreamConsumer<BronzeContext> = client_config(config.kafka, brokers)
        .create_with_context(context)
        .map_err(|e| Error::kafka("cannot create the consumer", e))?;
    let limit = stop
        .until_idle
        .then(|| Duration::from_millis(config.bronze.assignment_timeout_ms));
    // Blocking, like the backlog capture below: nothing else runs until the
    // brokers answer.
    await_brokers(&consumer, &state, brokers, limit, &shutdown).await?;
    // The backlog of an --until-idle run is read before subscribing: while the
    // consumer fetches, each watermark query waits behind a long-poll fetch.
    let mut backlog = if stop.until_idle {
        Some(Backlog::capture(
            &consumer,
            &subscription,
            Duration::from_secs(30),
        )?)
    } else {
        None
    };
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| Error::kafka(format!("cannot subscribe to {topics:?}"), e))?;
    tracing::info!(?topics, group = %config.kafka.group_id, brokers, "bronze consumer started");

    let idle_timeout = Duration::from_millis(config.bronze.idle_timeout_ms);
    let assignment_timeout = Duration::from_millis(config.bronze.assignment_timeout_ms);
    let mut generation = 0;
    let mut partitions: HashMap<(String, i32), PartitionProgress> = HashMap::new();
    let mut last_message = Instant::now();
    let mut taken: u64 = 0;
    let started = Instant::now();
    let mut last_lag = Instant::now();
    let mut next_backlog_check = Instant::now();
    // The generation whose backlog was committed as soon as it was read.
    let mut backlog_committed = None;

    loop {
        // Pick up rebalances that happened inside the last poll.
        sync_assignment(
            &state,
            &mut generation,
            &mut ingestor,
            &mut partitions,
            backlog.as_ref(),
        )?;

        if stop.max_records.is_some_and(|max| taken >= max) {
            break;
        }
        if stop.until_idle && generation == 0 && started.elapsed() >= assignment_timeout {
            return Err(Error::Condition(format!(
                "no partitions were assigned to consumer group {} within {:?}; \
                 is the group stuck or are the topics missing? ({topics:?})",
                config.kafka.group_id, assignment_timeout
            )));
        }
        let caught_up = caught_up(&ingestor, &partitions, backlog.as_ref(), generation);
        if caught_up && backlog_committed != Some(generation) {
            // The backlog is read: commit it now, not after the idle wait,
            // so that it lands as soon as it can (once per assignment).
            backlog_committed = Some(generation);
            let flushed = ingestor.drain().await?;
            after_flush(flushed, &ingestor, &consumer, &partitions);
        }
        if stop.until_idle
            && caught_up
            && last_message.elapsed() >= idle_timeout
            && Instant::now() >= next_backlog_check
            && let Some(backlog) = backlog.as_mut()
        {
            // Our partitions are done; the others must be committed by someone.
            let flushed = ingestor.drain().await?;
            after_flush(flushed, &ingestor, &consumer, &partitions);
            let owned = |tp: &(String, i32)| partitions.contains_key(tp);
            let foreign: Vec<(String, i32)> = backlog.foreign(&owned).cloned().collect();
            let app_ids: Vec<String> = foreign.iter().map(|(t, p)| app_id(t, *p)).collect();
            let positions = ingestor.table_positions(&app_ids).await?;
            let committed = foreign.into_iter().zip(positions).collect();
            let remaining = backlog.remaining(&committed, assignment_timeout)?;
            if remaining.is_empty() {
                tracing::info!("caught up with the high watermarks and idle; stopping");
                break;
            }
            tracing::info!(partitions = ?remaining, "own partitions caught up; waiting for partitions held by other group members");
            next_backlog_check = Instant::now() + idle_timeout;
        }

        let wait = ingestor
            .time_to_flush()
            .min(idle_timeout)
            .max(Duration::from_millis(10));
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                tracing::info!("shutdown requested; committing what is buffered");
                break;
            }
            received = tokio::time::timeout(wait, consumer.recv()) => match received {
                Err(_elapsed) => {}
                Ok(Err(e)) => check_consumer_error(e, &state, brokers)?,
                Ok(Ok(message)) => {
                    last_message = Instant::now();
                    // The poll that returned this message may also have run a
                    // rebalance: apply it first, then take the message only if
                    // its partition is (still) ours.
                    sync_assignment(
                        &state,
                        &mut generation,
                        &mut ingestor,
                        &mut partitions,
                        backlog.as_ref(),
                    )?;
                    let key = (message.topic().to_string(), message.partition());
                    if let Some(progress) = partitions.get(&key) {
                        let meta = RecordMeta {
                            stream: progress.stream,
                            position: message.offset(),
                            topic: message.topic(),
                            partition: message.partition(),
                            offset: message.offset(),
                            timestamp_ms: message.timestamp().to_millis(),
                            key: message.key(),
                            value: message.payload(),
                        };
                        // Copied into a chunk that is decoded on another
                        // thread: this one only receives and commits.
                        ingestor.queue(&meta).await?;
                        taken += 1;
                    }
                }
            }
        }

        ingestor.absorb_decoded().await?;
        let flushed = if ingestor.should_flush() || stop.max_records.is_some_and(|max| taken >= max)
        {
            ingestor.flush().await?
        } else {
            // The batch in flight is committed as soon as its files are
            // written, not one flush interval later.
            ingestor.commit_ready().await?
        };
        after_flush(flushed, &ingestor, &consumer, &partitions);
        if last_lag.elapsed() >= Duration::from_secs(5) {
            last_lag = Instant::now();
            if let Ok(lag) = u64::try_from(lag.load(Ordering::Relaxed)) {
                ingestor.progress().set_lag(lag);
            }
        }
    }
    let summary = ingestor.finish().await?;
    tracing::info!(elapsed = ?started.elapsed(), "bronze consumer stopped");
    Ok(summary)
}

/// Applies the latest assignment left by the rebalance callback: a changed
/// assignment drops the buffered batch and restarts every partition from the
/// position the callback read from the table.
fn sync_assignment(
    state: &Mutex<AssignmentState>,
    generation: &mut u64,
    ingestor: &mut Ingestor,
    partitions: &mut HashMap<(String, i32), PartitionProgress>,
    backlog: Option<&Backlog>,
) -> Result<()> {
    let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(error) = guard.error.take() {
        return Err(Error::Condition(format!("bronze consumer: {error}")));
    }
    if guard.generation == *generation {
        return Ok(());
    }
    *generation = guard.generation;
    let assigned = guard.assigned.clone();
    drop(guard);
    ingestor.discard()?;
    partitions.clear();
    let mut total = 0;
    for a in assigned {
        let stream = ingestor.set_position(&app_id(&a.topic, a.partition), a.committed);
        let start = a.committed.map_or(0, |c| c + 1);
        let target = backlog.and_then(|b| b.target(&a.topic, a.partition));
        total += target.map_or(0, |h| (h - start).max(0)) as u64;
        partitions.insert((a.topic, a.partition), PartitionProgress { stream, target });
    }
    let committed = ingestor.progress().totals().records;
    ingestor.progress().set_total(committed + total);
    Ok(())
}

/// Whether every assigned partition reached the high watermark it had when
/// the run started. Before the first assignment nothing is caught up.
fn caught_up(
    ingestor: &Ingestor,
    partitions: &HashMap<(String, i32), PartitionProgress>,
    backlog: Option<&Backlog>,
    generation: u64,
) -> bool {
    backlog.is_some()
        && generation > 0
        && partitions.values().all(|p| match p.target {
            Some(high) => ingestor.next_position(p.stream).unwrap_or(0) >= high,
            // Created after the run started: not part of its backlog.
            None => true,
        })
}

/// Acts on what a flush committed: after a lost stream, every partition is
/// read again after its committed position (the batches not committed were
/// dropped); committed positions are mirrored in the consumer group so that
/// lag shows in Kafka tooling (the positions that count are in Delta).
fn after_flush(
    flushed: Flushed,
    ingestor: &Ingestor,
    consumer: &StreamConsumer<BronzeContext>,
    partitions: &HashMap<(String, i32), PartitionProgress>,
) {
    if flushed.rewind {
        for ((topic, partition), progress) in partitions {
            let offset = ingestor
                .committed(progress.stream)
                .map_or(Offset::Beginning, |c| Offset::Offset(c + 1));
            if let Err(e) = consumer.seek(topic, *partition, offset, Duration::from_secs(10)) {
                tracing::warn!(topic, partition, error = %e, "seek after a lost commit failed");
            }
        }
    }
    let Some(outcome) = flushed.outcome else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    let by_stream: BTreeMap<usize, i64> = outcome.committed.iter().copied().collect();
    for ((topic, partition), p) in partitions {
        if let Some(position) = by_stream.get(&p.stream) {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(position + 1));
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
    {
        tracing::debug!(error = %e, "group offset commit failed (positions are in Delta)");
    }
}

/// Logs a consumer error, and fails the run on one that retrying cannot
/// fix, with librdkafka's last logged reason (which names the broker).
fn check_consumer_error(
    error: KafkaError,
    state: &Mutex<AssignmentState>,
    brokers: &str,
) -> Result<()> {
    let code = error.rdkafka_error_code();
    let fatal = matches!(error, KafkaError::MessageConsumptionFatal(_))
        || code.is_some_and(is_fatal_client_error);
    if !fatal {
        tracing::warn!(error = %error, code = ?code, "consumer error");
        return Ok(());
    }
    let reason = state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .last_logged_error
        .take();
    Err(Error::kafka(
        match reason {
            Some(reason) => format!("cannot use the Kafka brokers {brokers}: {reason}"),
            None => format!("cannot use the Kafka brokers {brokers}"),
        },
        error,
    ))
}
