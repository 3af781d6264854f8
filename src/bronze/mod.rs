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
pub mod parts;
#[cfg(test)]
mod pipeline_tests;
mod progress;
pub mod replay;

pub mod sink;
pub mod telemetry;

use std::time::{Duration, Instant};

use crate::cdc::{DecodedRecord, Decoder, TypeHints};
use crate::error::Result;
use crate::storage::StorageRoot;
pub use buffer::{BatchCounts, BronzeBuffer, FinishedBatch, RecordMeta, StreamRange, TopicEvents};
pub use config::{BronzeConfig, KafkaConfig};
pub use parts::PartWork;
use parts::{ChunkLimits, DecodePool, RecordChunk, SpareBuffers};
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
    /// From the first record read to the last commit: the wall time
    /// without the waits for the first record and for the idle timeout.
    pub busy: Duration,
    /// Latest `bronze_events` version written.
    pub events_version: Option<i64>,
}

/// What a flush committed.
#[derive(Debug, Default)]
pub struct Flushed {
    /// What the commits made did (both, when [`Ingestor::drain`] made two).
    pub outcome: Option<CommitOutcome>,
    /// A stream was taken by another process: the batches not committed were
    /// dropped, and every stream must be read again after
    /// [`Ingestor::committed`].
    pub rewind: bool,
}

impl Flushed {
    fn absorb(&mut self, later: Flushed) {
        self.rewind |= later.rewind;
        match (&mut self.outcome, later.outcome) {
            (Some(earlier), Some(later)) => earlier.absorb(later),
            (slot @ None, later) => *slot = later,
            (Some(_), None) => {}
        }
    }
}

/// Whether a record was taken into the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Decoded and buffered (as a row, a dead letter, or a recognised non-row record).
    Buffered,
    /// Its position is already committed or buffered: a replay.
    AlreadyCommitted,
}

/// Decodes records into a [`BronzeBuffer`]: a decoder with its schema cache
/// and the record it reuses. The ingestor has one; each of the file path's
/// decoding threads has its own ([`PartDecoder`]).
pub struct RecordDecoder {
    decoder: Decoder,
    record: DecodedRecord,
}

impl RecordDecoder {
    /// A decoder resolving schemaless columns with `hints`.
    pub fn new(hints: TypeHints) -> Self {
        Self {
            decoder: Decoder::new(hints),
            record: DecodedRecord::default(),
        }
    }

    /// Decodes one record and appends it to `buffer`: a row, a recognised
    /// non-row record, or a dead letter (logged with its coordinates).
    pub fn decode_into(&mut self, meta: &RecordMeta<'_>, buffer: &mut BronzeBuffer) -> Result<()> {
        let decoded = self.decode(meta);
        if let Err(error) = &decoded {
            tracing::warn!(
                topic = meta.topic,
                partition = meta.partition,
                offset = meta.offset,
                %error,
                "undecodable record sent to bronze_dead_letters"
            );
        }
        buffer.push(meta, decoded.as_ref().map(|k| *k), &self.record)
    }

    /// Decodes one record and appends it to `buffer` if it decodes; returns
    /// whether it did (an undecodable one is left out, silently).
    pub fn decode_if_valid(
        &mut self,
        meta: &RecordMeta<'_>,
        buffer: &mut BronzeBuffer,
    ) -> Result<bool> {
        match self.decode(meta) {
            Ok(kind) => buffer.push(meta, Ok(kind), &self.record).map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Decodes `meta`'s key and value into the reused record.
    fn decode(
        &mut self,
        meta: &RecordMeta<'_>,
    ) -> std::result::Result<crate::cdc::RecordKind, crate::cdc::DecodeError> {
        self.decoder
            .decode(meta.topic, meta.key, meta.value, &mut self.record)
    }
}

/// Decodes a run of records into a batch of its own, on a decoding thread
/// (see [`parts`]). Its streams have the ingestor's indexes.
pub struct PartDecoder {
    records: RecordDecoder,
    buffer: BronzeBuffer,
}

impl PartDecoder {
    /// Decodes one record into the part.
    pub fn decode(&mut self, meta: &RecordMeta<'_>) -> Result<()> {
        self.records.decode_into(meta, &mut self.buffer)
    }

    /// Decodes one record into the part if it decodes; returns whether it
    /// did (see [`RecordDecoder::decode_if_valid`]).
    pub fn decode_if_valid(&mut self, meta: &RecordMeta<'_>) -> Result<bool> {
        self.records.decode_if_valid(meta, &mut self.buffer)
    }

    /// Adds a dead letter for a record that could not even be framed.
    pub fn dead_letter(&mut self, meta: &RecordMeta<'_>, kind: &str, message: &str) {
        self.buffer.push_dead_letter(meta, kind, message);
    }

    /// Finishes the part; the decoder is ready for the next one, its
    /// builders sized like this part's.
    pub fn finish(&mut self) -> Result<FinishedBatch> {
        self.buffer.finish()
    }

    /// Registers the streams of `streams` it does not have yet (streams are
    /// only ever appended, so their indexes agree).
    fn sync_streams(&mut self, streams: &[StreamRange]) {
        for stream in streams.iter().skip(self.buffer.streams().len()) {
            self.buffer.stream(&stream.app_id);
        }
    }
}

/// A finished batch whose Parquet files are being written while the next
/// batch is decoded.
struct InFlight {
    batch: buffer::FinishedBatch,
    staged: sink::StagedEvents,
}

/// Decodes records into a batch and commits batches; the part shared by all sources.
///
/// Records are decoded on every core ([`parts`]): [`Ingestor::queue`] copies
/// a record into a chunk that is decoded on another thread once due by size
/// or age, and [`Ingestor::submit`] starts any other work that decodes a
/// part; the parts join the batch in the order they were started.
/// [`Ingestor::ingest`] decodes a record on the caller's thread instead.
///
/// Batches are pipelined: [`Ingestor::flush`] hands the finished batch's
/// Parquet encoding to other threads and returns, so decoding the next batch
/// overlaps with it; the batch is committed at the next flush (or as soon as
/// its files are written, when the source calls [`Ingestor::commit_ready`]).
/// At most one batch is in flight, so memory stays bounded by two batches.
/// When a commit finds a stream taken by another process, the batch being
/// decoded was read after records that are now not committed, so it is
/// dropped too and every stream restarts after its committed position
/// ([`Flushed::rewind`]).
pub struct Ingestor {
    records: RecordDecoder,
    buffer: BronzeBuffer,
    /// Parts decoded elsewhere that belong to the current batch, after the
    /// records of `buffer` (see [`Ingestor::absorb`]).
    parts: Vec<FinishedBatch>,
    /// What `parts` hold.
    parts_counts: BatchCounts,
    /// Parts being decoded on other threads, after `parts`.
    decoding: DecodePool,
    /// Records queued for decoding, after those being decoded.
    chunk: RecordChunk,
    /// Chunk buffers the decoding threads are done with.
    spares: SpareBuffers,
    /// Per stream: the last position queued ([`Ingestor::queue`]).
    queued: Vec<Option<i64>>,
    sink: BronzeSink,
    in_flight: Option<InFlight>,
    /// Per stream: the position the table holds, as far as this process knows.
    committed: Vec<Option<i64>>,
    policy: FlushPolicy,
    batch_started: Option<Instant>,
    summary: RunSummary,
    started: Instant,
    /// When the first record was read.
    first_record: Option<Instant>,
    /// When the last commit ended.
    last_commit: Option<Instant>,
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
        let decoding = DecodePool::new(|| PartDecoder {
            records: RecordDecoder::new(hints.clone()),
            buffer: BronzeBuffer::new(),
        });
        Ok(Self {
            records: RecordDecoder::new(hints),
            buffer: BronzeBuffer::new(),
            parts: Vec::new(),
            parts_counts: BatchCounts::default(),
            decoding,
            chunk: RecordChunk::default(),
            spares: SpareBuffers::default(),
            queued: Vec::new(),
            sink: BronzeSink::open(root, config.target_file_size).await?,
            in_flight: None,
            committed: Vec::new(),
            policy: FlushPolicy::from_config(config),
            batch_started: None,
            summary: RunSummary::default(),
            started: Instant::now(),
            first_record: None,
            last_commit: None,
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

    /// The next position expected on a stream (after what is committed,
    /// being committed, or buffered).
    pub fn next_position(&self, stream: usize) -> Option<i64> {
        self.queued
            .get(stream)
            .copied()
            .flatten()
            .or_else(|| {
                self.parts
                    .iter()
                    .rev()
                    .find_map(|part| part.streams.get(stream)?.last)
            })
            .or_else(|| self.buffer.last_position(stream))
            .or_else(|| {
                let in_flight = self.in_flight.as_ref()?;
                in_flight.batch.streams.get(stream)?.last
            })
            .or(self.committed(stream))
            .map(|p| p + 1)
    }

    /// Whether `meta`'s position is new on its stream; a replay is counted.
    fn is_new(&mut self, meta: &RecordMeta<'_>) -> bool {
        let replay = self
            .next_position(meta.stream)
            .is_some_and(|next| meta.position < next);
        if replay {
            self.summary.already_committed += 1;
        } else {
            self.record_read();
        }
        !replay
    }

    /// A record was read: the batch's age and the run's busy time start.
    fn record_read(&mut self) {
        let now = *self.batch_started.get_or_insert_with(Instant::now);
        self.first_record.get_or_insert(now);
    }

    /// Decodes one record into the batch, unless its position was already seen.
    pub fn ingest(&mut self, meta: &RecordMeta<'_>) -> Result<Ingested> {
        if !self.is_new(meta) {
            return Ok(Ingested::AlreadyCommitted);
        }
        debug_assert!(
            self.parts.is_empty() && self.decoding.is_idle() && self.chunk.is_empty(),
            "records are ingested one by one or as parts, not both"
        );
        self.records.decode_into(meta, &mut self.buffer)?;
        Ok(Ingested::Buffered)
    }

    /// Queues one record for decoding on another thread, unless its position
    /// was already seen: it is copied into a chunk, started once full
    /// (waiting for the oldest part first when every decoder is busy) or,
    /// through [`Ingestor::absorb_decoded`], once due by age.
    pub async fn queue(&mut self, meta: &RecordMeta<'_>) -> Result<Ingested> {
        if !self.is_new(meta) {
            return Ok(Ingested::AlreadyCommitted);
        }
        debug_assert!(
            self.buffer.is_empty(),
            "records are ingested one by one or queued, not both"
        );
        if self.queued.len() <= meta.stream {
            self.queued.resize(meta.stream + 1, None);
        }
        self.queued[meta.stream] = Some(meta.position);
        self.chunk.push(meta);
        if self.chunk.is_full(&self.chunk_limits()) {
            self.submit_chunk().await?;
        }
        Ok(Ingested::Buffered)
    }

    /// When a chunk of queued records is due: at most a batch's worth.
    fn chunk_limits(&self) -> ChunkLimits {
        let records = usize::try_from(self.policy.max_records).unwrap_or(usize::MAX);
        let bytes = usize::try_from(self.policy.max_bytes).unwrap_or(usize::MAX);
        ChunkLimits {
            records: ChunkLimits::RECORDS.min(records).max(1),
            bytes: ChunkLimits::BYTES.min(bytes).max(1),
            age: ChunkLimits::AGE.min(self.policy.max_age),
        }
    }

    async fn submit_chunk(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = self.chunk.take(self.spares.take());
        let spares = self.spares.clone();
        self.submit(Box::new(move |decoder| chunk.decode(decoder, &spares)))
            .await
    }

    /// Whether [`Ingestor::submit`] would start work without waiting.
    pub fn can_submit(&self) -> bool {
        !self.decoding.is_full()
    }

    /// Starts `work` decoding a part on a decoding thread; its part joins
    /// the batch after the parts started before it. When every decoder is
    /// busy, first waits for the oldest part and adds it to the batch.
    pub async fn submit(&mut self, work: PartWork) -> Result<()> {
        if self.decoding.is_full() {
            self.absorb_next().await?;
        }
        self.record_read();
        let streams = self.buffer.streams();
        self.decoding
            .submit(|decoder| decoder.sync_streams(streams), work)
    }

    /// Waits for the oldest part being decoded and adds it to the batch.
    /// Returns `false` when no part was being decoded.
    pub async fn absorb_next(&mut self) -> Result<bool> {
        match self.decoding.next().await? {
            Some(part) => {
                self.absorb(part);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Adds the parts already decoded to the batch, in order, and starts
    /// decoding the queued records if they are due by age. Waits for no
    /// decoding (only for a free decoder, when all are busy).
    pub async fn absorb_decoded(&mut self) -> Result<()> {
        while self.decoding.next_is_ready() {
            self.absorb_next().await?;
        }
        if self
            .chunk
            .time_to_due(&self.chunk_limits())
            .is_some_and(|left| left.is_zero())
        {
            self.submit_chunk().await?;
        }
        Ok(())
    }

    /// Decodes everything queued and adds it to the batch.
    async fn absorb_all(&mut self) -> Result<()> {
        self.submit_chunk().await?;
        while self.absorb_next().await? {}
        Ok(())
    }

    /// Adds a part decoded by a [`PartDecoder`] to the current batch. Parts
    /// must come in stream order, after what the batch holds; the batch is
    /// then due by size at part granularity (it can exceed the flush limits
    /// by the parts being decoded).
    fn absorb(&mut self, part: FinishedBatch) {
        if part.counts.records == 0 {
            return;
        }
        self.batch_started.get_or_insert_with(Instant::now);
        self.parts_counts.add(&part.counts);
        self.parts.push(part);
    }

    /// Buffers a dead letter for a record that could not even be framed.
    pub fn dead_letter(&mut self, meta: &RecordMeta<'_>, kind: &str, message: &str) {
        debug_assert!(self.parts.is_empty());
        self.batch_started.get_or_insert_with(Instant::now);
        self.buffer.push_dead_letter(meta, kind, message);
    }

    /// Whether the batch is due by size or age.
    pub fn should_flush(&self) -> bool {
        let counts = self.buffered();
        counts.records >= self.policy.max_records
            || counts.bytes >= self.policy.max_bytes
            || self.due_by_age()
    }

    /// Whether the oldest record read and not flushed is `max_age` old.
    fn due_by_age(&self) -> bool {
        self.batch_started
            .is_some_and(|t| t.elapsed() >= self.policy.max_age)
    }

    /// Time until the batch is due by age, or the queued records are due
    /// for decoding (for the consumer's poll timeout).
    pub fn time_to_flush(&self) -> Duration {
        let batch = self.batch_started.map_or(self.policy.max_age, |t| {
            self.policy.max_age.saturating_sub(t.elapsed())
        });
        self.chunk
            .time_to_due(&self.chunk_limits())
            .map_or(batch, |chunk| chunk.min(batch))
    }

    /// What the current batch holds.
    pub fn buffered(&self) -> BatchCounts {
        let mut counts = self.buffer.counts();
        counts.add(&self.parts_counts);
        counts
    }

    /// Drops the current batch and the one in flight (their records will be
    /// read again). Files already written for the one in flight are never
    /// committed; `vacuum` removes them.
    pub fn discard(&mut self) -> Result<()> {
        self.in_flight = None;
        self.discard_unflushed()
    }

    /// Drops what is buffered, decoded, being decoded and queued.
    fn discard_unflushed(&mut self) -> Result<()> {
        self.batch_started = None;
        self.parts.clear();
        self.parts_counts = BatchCounts::default();
        let hints = self.records.decoder.hints();
        self.decoding.reset(|| PartDecoder {
            records: RecordDecoder::new(hints.clone()),
            buffer: BronzeBuffer::new(),
        });
        self.chunk.take(Vec::new());
        self.queued.clear();
        self.buffer.discard()
    }

    /// Finishes the current batch and starts writing its files; commits the
    /// batch in flight before it, if any. Returns what that commit did.
    pub async fn flush(&mut self) -> Result<Flushed> {
        let flushed = self.commit_in_flight().await?;
        if flushed.rewind {
            return Ok(flushed);
        }
        if self.due_by_age() {
            // A trickle: what was read is due, decoded or not (a batch due
            // by size goes without the parts still being decoded).
            self.absorb_all().await?;
        }
        if self.buffered().records == 0 {
            return Ok(flushed);
        }
        let mut batch = self.buffer.finish()?;
        for part in self.parts.drain(..) {
            batch.absorb(part)?;
        }
        self.parts_counts = BatchCounts::default();
        // Records still being decoded or queued start the next batch.
        let pending = !self.decoding.is_idle() || !self.chunk.is_empty();
        self.batch_started = pending.then(Instant::now);
        let groups = batch
            .events
            .iter()
            .cloned()
            .map(TopicEvents::into_group)
            .collect();
        let staged = self.sink.stage_events(groups)?;
        self.in_flight = Some(InFlight { batch, staged });
        Ok(flushed)
    }

    /// Commits the batch in flight if its files are written, without waiting.
    pub async fn commit_ready(&mut self) -> Result<Flushed> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.staged.is_finished())
        {
            self.commit_in_flight().await
        } else {
            Ok(Flushed::default())
        }
    }

    /// Commits everything: the batch in flight, then the current one.
    pub async fn drain(&mut self) -> Result<Flushed> {
        self.absorb_all().await?;
        let mut flushed = self.flush().await?;
        if !flushed.rewind {
            let last = self.commit_in_flight().await?;
            flushed.absorb(last);
        }
        Ok(flushed)
    }

    async fn commit_in_flight(&mut self) -> Result<Flushed> {
        let Some(InFlight { batch, staged }) = self.in_flight.take() else {
            return Ok(Flushed::default());
        };
        let adds = staged.wait().await?;
        let commit_started = Instant::now();
        let outcome = self.sink.commit(&batch, &self.committed, &adds).await?;
        let commit_elapsed = commit_started.elapsed();
        self.last_commit = Some(Instant::now());
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
        let rewind = !outcome.lost.is_empty();
        if rewind {
            // Read after records that are not committed: read again.
            self.discard_unflushed()?;
        }
        self.summary.batches += 1;
        self.summary.counts.add(&batch.counts);
        if outcome.events_version.is_some() {
            self.summary.events_version = outcome.events_version;
        }
        self.progress.batch_committed(&batch.counts, &outcome);
        self.after_commit(&outcome).await?;
        Ok(Flushed {
            outcome: Some(outcome),
            rewind,
        })
    }

    async fn after_commit(&mut self, outcome: &CommitOutcome) -> Result<()> {
        let Some(upkeep) = &mut self.upkeep else {
            return Ok(());
        };
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
        Ok(())
    }

    /// Buffers the decoding threads are done with, for the next chunk.
    pub fn spare_buffers(&self) -> &SpareBuffers {
        &self.spares
    }

    /// Progress reporting.
    pub fn progress(&mut self) -> &mut Progress {
        &mut self.progress
    }

    /// Commits what is left and returns the run's summary.
    pub async fn finish(mut self) -> Result<RunSummary> {
        self.drain().await?;
        self.progress.finish();
        let mut summary = self.summary;
        summary.elapsed = self.started.elapsed();
        if let (Some(first), Some(last)) = (self.first_record, self.last_commit) {
            summary.busy = last.saturating_duration_since(first);
        }
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
