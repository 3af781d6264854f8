//! Bronze: Debezium change events into the `bronze_events` Delta table, exactly once.
//!
//! Two sources feed the same [`Ingestor`]: a Kafka consumer group
//! ([`kafka::run`]) and JSON-lines exports ([`file::run`]). Each record is
//! decoded once by [`crate::cdc::Decoder`] and appended to Arrow builders
//! ([`buffer`]); when the batch is full (rows, bytes or time) the [`sink`]
//! commits it with the positions of every stream in the same Delta commit.
//! Records that cannot be decoded go to `bronze_dead_letters` and ingestion
//! goes on.

pub mod backlog;
pub mod buffer;
#[cfg(test)]
mod captured_tests;
pub mod config;
pub mod file;
pub mod kafka;
mod progress;
pub mod replay;

pub mod sink;
pub mod telemetry;

use std::time::{Duration, Instant};

use crate::cdc::{DecodedRecord, Decoder, TypeHints};
use crate::error::Result;
use crate::storage::StorageRoot;
pub use buffer::{BatchCounts, BronzeBuffer, RecordMeta};
pub use config::{BronzeConfig, KafkaConfig};
pub use progress::Progress;
pub use sink::{BronzeSink, CommitOutcome};

/// When a batch is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Flush at this many records.
    pub max_records: u64,
    /// Flush at this many payload bytes.
    pub max_bytes: u64,
    /// Flush when the oldest buffered record is this old.
    pub max_age: Duration,
}

impl FlushPolicy {
    /// The policy configured in `[bronze]`.
    pub fn from_config(config: &BronzeConfig) -> Self {
        Self {
            max_records: config.flush_rows as u64,
            max_bytes: config.flush_bytes as u64,
            max_age: Duration::from_millis(config.flush_interval_ms),
        }
    }
}

/// How a run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopCondition {
    /// Stop once caught up with the high watermarks seen at assignment and a
    /// poll stayed quiet for the idle timeout.
    pub until_idle: bool,
    /// Stop after this many records.
    pub max_records: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Totals over the run.
    pub counts: BatchCounts,
    /// Batches committed.
    pub batches: u64,
    /// Records skipped because they were already committed (replays, reruns).
    pub already_committed: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latest `bronze_events` version written.
    pub events_version: Option<i64>,
}

/// Whether a record was taken into the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Decoded and buffered (as a row, a dead letter, or a recognised non-row record).
    Buffered,
    /// Its position is already committed or buffered: a replay.
    AlreadyCommitted,
}

/// Decodes records into a batch and commits batches; the part shared by all sources.
pub struct Ingestor {
    decoder: Decoder,
    record: DecodedRecord,
    buffer: BronzeBuffer,
    sink: BronzeSink,
    /// Per stream: the position the table holds, as far as this process knows.
    committed: Vec<Option<i64>>,
    policy: FlushPolicy,
    batch_started: Option<Instant>,
    summary: RunSummary,
    started: Instant,
    progress: Progress,
    /// Upkeep after commits (auto-compaction, checkpoints), when plugged in.
    upkeep: Option<Box<dyn CommitUpkeep>>,
}

impl Ingestor {
    /// Opens the bronze tables under `root`.
    pub async fn open(
        root: &StorageRoot,
        config: &BronzeConfig,
        hints: TypeHints,
        progress: Progress,
    ) -> Result<Self> {
        Ok(Self {
            decoder: Decoder::new(hints),
            record: DecodedRecord::default(),
            buffer: BronzeBuffer::new(),
            sink: BronzeSink::open(root, config.target_file_size).await?,
            committed: Vec::new(),
            policy: FlushPolicy::from_config(config),
            batch_started: None,
            summary: RunSummary::default(),
            started: Instant::now(),
            progress,
            upkeep: None,
        })
    }

    /// Runs `upkeep` after every commit (compaction and checkpoints).
    pub fn with_upkeep(mut self, upkeep: Box<dyn CommitUpkeep>) -> Self {
        self.upkeep = Some(upkeep);
        self
    }

    /// Automatic compactions this run made.
    pub fn compactions(&self) -> u64 {
        self.upkeep.as_ref().map_or(0, |u| u.compactions())
    }

    /// Overrides the flush policy (benchmarks, tests).
    pub fn with_policy(mut self, policy: FlushPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Registers the streams and loads their committed positions from the table.
    /// Returns the stream indexes and positions, in the order given.
    pub async fn open_streams(&mut self, app_ids: &[String]) -> Result<Vec<(usize, Option<i64>)>> {
        let positions = self.sink.committed_positions(app_ids).await?;
        Ok(app_ids
            .iter()
            .zip(positions)
            .map(|(app_id, position)| {
                let index = self.set_position(app_id, position);
                (index, position)
            })
            .collect())
    }

    /// Registers a stream whose committed position the caller already knows.
    pub fn set_position(&mut self, app_id: &str, position: Option<i64>) -> usize {
        let index = self.buffer.stream(app_id);
        if self.committed.len() <= index {
            self.committed.resize(index + 1, None);
        }
        self.committed[index] = position;
        index
    }

    /// Positions committed in `bronze_events` for streams this process may not
    /// own, read from the latest table version.
    pub async fn table_positions(&mut self, app_ids: &[String]) -> Result<Vec<Option<i64>>> {
        self.sink.committed_positions(app_ids).await
    }

    /// The position committed for a stream, as far as this process knows.
    pub fn committed(&self, stream: usize) -> Option<i64> {
        self.committed.get(stream).copied().flatten()
    }

    /// The next position expected on a stream (after what is committed or buffered).
    pub fn next_position(&self, stream: usize) -> Option<i64> {
        self.buffer
            .last_position(stream)
            .or(self.committed(stream))
            .map(|p| p + 1)
    }

    /// Decodes one record into the batch, unless its position was already seen.
    pub fn ingest(&mut self, meta: &RecordMeta<'_>) -> Result<Ingested> {
        if self
            .next_position(meta.stream)
            .is_some_and(|next| meta.position < next)
        {
            self.summary.already_committed += 1;
            return Ok(Ingested::AlreadyCommitted);
        }
        self.batch_started.get_or_insert_with(Instant::now);
        let decoded = self
            .decoder
            .decode(meta.topic, meta.key, meta.value, &mut self.record);
        if let Err(error) = &decoded {
            tracing::warn!(
                topic = meta.topic,
                partition = meta.partition,
                offset = meta.offset,
                %error,
                "undecodable record sent to bronze_dead_letters"
            );
        }
        self.buffer
            .push(meta, decoded.as_ref().map(|k| *k), &self.record)?;
        Ok(Ingested::Buffered)
    }

    /// Buffers a dead letter for a record that could not even be framed.
    pub fn dead_letter(&mut self, meta: &RecordMeta<'_>, kind: &str, message: &str) {
        self.batch_started.get_or_insert_with(Instant::now);
        self.buffer.push_dead_letter(meta, kind, message);
    }

    /// Whether the batch is due by size or age.
    pub fn should_flush(&self) -> bool {
        let counts = self.buffer.counts();
        counts.records >= self.policy.max_records
            || counts.bytes >= self.policy.max_bytes
            || self
                .batch_started
                .is_some_and(|t| t.elapsed() >= self.policy.max_age)
    }

    /// Time until the batch is due by age (for the consumer's poll timeout).
    pub fn time_to_flush(&self) -> Duration {
        self.batch_started.map_or(self.policy.max_age, |t| {
            self.policy.max_age.saturating_sub(t.elapsed())
        })
    }

    /// What the current batch holds.
    pub fn buffered(&self) -> BatchCounts {
        self.buffer.counts()
    }

    /// Drops the current batch (its records will be read again).
    pub fn discard(&mut self) -> Result<()> {
        self.batch_started = None;
        self.buffer.discard()
    }

    /// Commits the current batch, if it holds anything.
    pub async fn flush(&mut self) -> Result<Option<CommitOutcome>> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let batch = self.buffer.finish()?;
        self.batch_started = None;
        let commit_started = Instant::now();
        let outcome = self.sink.commit(&batch, &self.committed).await?;
        let commit_elapsed = commit_started.elapsed();
        tracing::debug!(elapsed = ?commit_elapsed, rows = batch.counts.rows, "bronze commit");
        telemetry::batch_committed(&batch, &outcome, commit_elapsed);
        for (stream, position) in &outcome.committed {
            if let Some(slot) = self.committed.get_mut(*stream) {
                *slot = Some(*position);
            }
        }
        for (stream, stored) in &outcome.lost {
            if let Some(slot) = self.committed.get_mut(*stream) {
                *slot = *stored;
            }
            let app_id = batch
                .streams
                .get(*stream)
                .map(|s| s.app_id.as_str())
                .unwrap_or("?");
            tracing::warn!(
                stream = app_id,
                stored = ?stored,
                "another process committed this stream; its buffered records were dropped and will be re-read"
            );
        }
        self.summary.batches += 1;
        self.summary.counts.add(&batch.counts);
        if outcome.events_version.is_some() {
            self.summary.events_version = outcome.events_version;
        }
        self.progress.batch_committed(&batch.counts, &outcome);
        if let Some(upkeep) = &mut self.upkeep {
            let mut compacted = false;
            if outcome.events_version.is_some() {
                compacted |= upkeep
                    .after_commit(
                        self.sink.events_table(),
                        crate::tables::bronze::EVENTS_TABLE,
                    )
                    .await?;
            }
            if outcome.dead_letters_version.is_some() {
                compacted |= upkeep
                    .after_commit(
                        self.sink.dead_letters_table(),
                        crate::tables::bronze::DEAD_LETTERS_TABLE,
                    )
                    .await?;
            }
            if compacted {
                self.sink.refresh().await?;
            }
        }
        Ok(Some(outcome))
    }

    /// Progress reporting.
    pub fn progress(&mut self) -> &mut Progress {
        &mut self.progress
    }

    /// Flushes what is left and returns the run's summary.
    pub async fn finish(mut self) -> Result<RunSummary> {
        self.flush().await?;
        self.progress.finish();
        let mut summary = self.summary;
        summary.elapsed = self.started.elapsed();
        Ok(summary)
    }
}

/// Where `lakehouse run bronze` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BronzeSource {
    /// The configured Kafka topics.
    Kafka,
    /// JSON-lines exports, in order.
    Files(Vec<std::path::PathBuf>),
}

/// What a bronze run needs of the configuration: its own sections, and the
/// file they came from (named in errors).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `[kafka]`.
    pub kafka: &'a KafkaConfig,
    /// `[bronze]`.
    pub bronze: &'a BronzeConfig,
    /// The configuration file, for error messages.
    pub origin: &'a std::path::Path,
}

/// Work run after each bronze commit, e.g. compaction and checkpoints. The
/// orchestration layer plugs maintenance's in; bronze knows only this.
pub trait CommitUpkeep: Send {
    /// Called after a commit to `table` (named `name`); returns whether it
    /// rewrote the table, so that the caller reloads it before writing again.
    fn after_commit<'a>(
        &'a mut self,
        table: &'a deltalake::DeltaTable,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<bool>>;

    /// Compactions done so far.
    fn compactions(&self) -> u64;
}

/// Runs bronze ingestion into the tables under `root`: the entry point of
/// `lakehouse run bronze`.
pub async fn run(
    settings: Settings<'_>,
    root: &StorageRoot,
    upkeep: Option<Box<dyn CommitUpkeep>>,
    source: BronzeSource,
    stop: StopCondition,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<RunSummary> {
    let hints = settings.bronze.type_hints(settings.origin)?;
    let progress = Progress::new(stop.until_idle || matches!(source, BronzeSource::Files(_)));
    let mut ingestor = Ingestor::open(root, settings.bronze, hints, progress).await?;
    if let Some(upkeep) = upkeep {
        ingestor = ingestor.with_upkeep(upkeep);
    }
    match source {
        BronzeSource::Kafka => kafka::run(settings, root, ingestor, stop, shutdown).await,
        BronzeSource::Files(paths) => file::run_files(ingestor, &paths, stop).await,
    }
}
