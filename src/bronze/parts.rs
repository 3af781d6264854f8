//! Decoding on every core: runs of records are decoded on blocking threads,
//! each into a part of its own ([`PartDecoder`]), and the parts join the
//! batch in the order they were submitted ([`super::Ingestor::absorb`]).
//!
//! Both sources use it through the [`super::Ingestor`]: the file path submits
//! chunks of lines (it frames them on the decoding threads too), the Kafka
//! path copies each message into a [`RecordChunk`] and submits the chunk when
//! it is due by size or age. The reading thread then only receives, copies
//! and commits.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{FinishedBatch, PartDecoder, RecordMeta};
use crate::error::{Error, Result};

/// Work for one decoder: decode something into the part and finish it.
pub type PartWork = Box<dyn FnOnce(&mut PartDecoder) -> Result<FinishedBatch> + Send>;

type Running = tokio::task::JoinHandle<(PartDecoder, Result<FinishedBatch>)>;

/// Decoders and the parts they are decoding, oldest first.
///
/// One decoder more than cores: the decoding threads keep busy while the
/// submitting thread awaits a commit.
pub(super) struct DecodePool {
    idle: Vec<PartDecoder>,
    running: VecDeque<Running>,
    size: usize,
}

impl DecodePool {
    /// A pool of one decoder per core and one more, made by `make`.
    pub fn new(make: impl FnMut() -> PartDecoder) -> Self {
        let size = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let mut pool = Self {
            idle: Vec::with_capacity(size),
            running: VecDeque::with_capacity(size),
            size,
        };
        pool.reset(make);
        pool
    }

    /// Whether every decoder is busy.
    pub fn is_full(&self) -> bool {
        self.idle.is_empty()
    }

    /// Whether no part is being decoded.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether the oldest part is decoded (so [`DecodePool::next`] will not wait).
    pub fn next_is_ready(&self) -> bool {
        self.running.front().is_some_and(|r| r.is_finished())
    }

    /// Starts `work` on an idle decoder, after `prepare` brought it up to
    /// date. Fails if none is idle: the caller awaits [`DecodePool::next`] first.
    pub fn submit(&mut self, prepare: impl FnOnce(&mut PartDecoder), work: PartWork) -> Result<()> {
        let mut decoder = self
            .idle
            .pop()
            .ok_or_else(|| Error::Internal("bronze: no idle decoder for a part".into()))?;
        prepare(&mut decoder);
        self.running.push_back(tokio::task::spawn_blocking(move || {
            let part = work(&mut decoder);
            (decoder, part)
        }));
        Ok(())
    }

    /// The oldest part, once decoded; `None` when none is being decoded.
    pub async fn next(&mut self) -> Result<Option<FinishedBatch>> {
        let Some(oldest) = self.running.pop_front() else {
            return Ok(None);
        };
        let (decoder, part) = oldest
            .await
            .map_err(|e| Error::Internal(format!("bronze decoding task failed: {e}")))?;
        self.idle.push(decoder);
        part.map(Some)
    }

    /// Drops the parts being decoded (their threads finish on their own and
    /// their results are dropped); `make` replaces their decoders.
    pub fn reset(&mut self, mut make: impl FnMut() -> PartDecoder) {
        self.running.clear();
        while self.idle.len() < self.size {
            self.idle.push(make());
        }
    }
}

/// Chunk buffers handed back by the decoding threads, to be filled again.
///
/// A chunk's bytes are a buffer of megabytes, and a fresh one costs a page
/// fault per 4 KiB page as it is filled; jemalloc hands buffers of 8 MiB and
/// more straight back to the kernel when freed (its huge arena does not
/// decay), so without reuse every chunk of the file path and every grown
/// Kafka chunk paid those faults again. The spares stay mapped: a few
/// buffers, at most one per decoder.
#[derive(Debug, Clone, Default)]
pub struct SpareBuffers {
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SpareBuffers {
    /// Buffers kept: one per part in flight is plenty.
    const KEEP: usize = 8;

    /// An empty buffer, a spare one when there is one.
    pub fn take(&self) -> Vec<u8> {
        // A poisoned lock only means another thread panicked while pushing
        // or popping a buffer: a fresh buffer is just as good.
        self.buffers
            .lock()
            .ok()
            .and_then(|mut spares| spares.pop())
            .unwrap_or_default()
    }

    /// Hands `buffer` back for reuse.
    pub fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        if let Ok(mut spares) = self.buffers.lock()
            && spares.len() < Self::KEEP
        {
            spares.push(buffer);
        }
    }
}

/// One record of a [`RecordChunk`]: its coordinates and where its key and
/// value are in the chunk's bytes.
#[derive(Debug, Clone)]
struct ChunkRecord {
    stream: usize,
    position: i64,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// Records copied out of the consumer (whose messages borrow its buffers and
/// cannot leave its thread), to be decoded together on another thread. The
/// copy is one `memcpy` per payload into one buffer.
#[derive(Debug, Default)]
pub struct RecordChunk {
    data: Vec<u8>,
    records: Vec<ChunkRecord>,
    /// The topic of the last record, shared by the records after it.
    last_topic: Option<Arc<str>>,
    /// When the first record was added.
    started: Option<Instant>,
}

/// When a [`RecordChunk`] is submitted for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Records in a chunk.
    pub records: usize,
    /// Key + value bytes in a chunk.
    pub bytes: usize,
    /// Age of a chunk's first record: a trickle of records is decoded soon
    /// after it arrives, not when a chunk fills.
    pub age: Duration,
}

impl ChunkLimits {
    /// Payload bytes of a full chunk: big enough that a part's record
    /// batches are worth encoding, small enough that the decoders' builders
    /// stay in the allocator's warm memory.
    pub const BYTES: usize = 4 << 20;
    /// Records of a full chunk (for small records).
    pub const RECORDS: usize = 16_384;
    /// Age of a due chunk.
    pub const AGE: Duration = Duration::from_millis(50);
}

impl RecordChunk {
    /// Copies one record into the chunk.
    pub fn push(&mut self, meta: &RecordMeta<'_>) {
        let topic = match &self.last_topic {
            Some(topic) if **topic == *meta.topic => Arc::clone(topic),
            _ => {
                let topic: Arc<str> = Arc::from(meta.topic);
                self.last_topic = Some(Arc::clone(&topic));
                topic
            }
        };
        let key = meta.key.map(|bytes| self.copy(bytes));
        let value = meta.value.map(|bytes| self.copy(bytes));
        self.started.get_or_insert_with(Instant::now);
        self.records.push(ChunkRecord {
            stream: meta.stream,
            position: meta.position,
            topic,
            partition: meta.partition,
            offset: meta.offset,
            timestamp_ms: meta.timestamp_ms,
            key,
            value,
        });
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        start..self.data.len()
    }

    /// Records in the chunk.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the chunk holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether the chunk is full.
    pub fn is_full(&self, limits: &ChunkLimits) -> bool {
        self.records.len() >= limits.records || self.data.len() >= limits.bytes
    }

    /// Time until the chunk is due by age (`None` when it is empty).
    pub fn time_to_due(&self, limits: &ChunkLimits) -> Option<Duration> {
        self.started
            .map(|started| limits.age.saturating_sub(started.elapsed()))
    }

    /// Takes the records out, leaving an empty chunk that fills `data`
    /// (a spare buffer) next.
    pub fn take(&mut self, data: Vec<u8>) -> RecordChunk {
        let next = RecordChunk {
            data,
            records: Vec::with_capacity(self.records.capacity()),
            last_topic: None,
            started: None,
        };
        std::mem::replace(self, next)
    }

    /// Decodes every record into `decoder`'s part and finishes it, then
    /// hands the chunk's bytes to `spares`.
    pub fn decode(self, decoder: &mut PartDecoder, spares: &SpareBuffers) -> Result<FinishedBatch> {
        let part = self.decode_records(decoder);
        spares.give(self.data);
        part
    }

    fn decode_records(&self, decoder: &mut PartDecoder) -> Result<FinishedBatch> {
        for record in &self.records {
            let meta = RecordMeta {
                stream: record.stream,
                position: record.position,
                topic: &record.topic,
                partition: record.partition,
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                key: record.key.clone().map(|range| &self.data[range]),
                value: record.value.clone().map(|range| &self.data[range]),
            };
            decoder.decode(&meta)?;
        }
        decoder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(stream: usize, position: i64, topic: &'a str, value: &'a [u8]) -> RecordMeta<'a> {
        RecordMeta {
            stream,
            position,
            topic,
            partition: 0,
            offset: position,
            timestamp_ms: Some(7),
            key: None,
            value: Some(value),
        }
    }

    #[test]
    fn a_chunk_keeps_each_record_and_its_bytes() {
        let mut chunk = RecordChunk::default();
        assert!(chunk.time_to_due(&limits()).is_none());
        chunk.push(&meta(0, 10, "a", b"one"));
        chunk.push(&meta(1, 3, "b", b"two!"));
        chunk.push(&meta(0, 11, "b", b""));
        assert_eq!(chunk.len(), 3);
        assert!(chunk.time_to_due(&limits()).is_some());
        let values: Vec<(&str, &[u8])> = chunk
            .records
            .iter()
            .map(|r| {
                let value = r.value.clone().map_or(&[][..], |v| &chunk.data[v]);
                (&*r.topic, value)
            })
            .collect();
        assert_eq!(
            values,
            [("a", &b"one"[..]), ("b", &b"two!"[..]), ("b", &b""[..])]
        );
        let taken = chunk.take(Vec::new());
        assert_eq!(taken.len(), 3);
        assert!(chunk.is_empty());
        assert!(chunk.time_to_due(&limits()).is_none());
    }

    #[test]
    fn spare_buffers_come_back_empty_with_their_capacity() {
        let spares = SpareBuffers::default();
        assert_eq!(spares.take().capacity(), 0);
        let mut buffer = Vec::with_capacity(1 << 20);
        buffer.extend_from_slice(b"old bytes");
        spares.give(buffer);
        let reused = spares.take();
        assert!(reused.is_empty());
        assert_eq!(reused.capacity(), 1 << 20);
        assert_eq!(spares.take().capacity(), 0, "each spare is taken once");
        for _ in 0..SpareBuffers::KEEP + 3 {
            spares.give(Vec::with_capacity(16));
        }
        let kept = std::iter::from_fn(|| Some(spares.take()))
            .take_while(|b| b.capacity() > 0)
            .count();
        assert_eq!(kept, SpareBuffers::KEEP);
    }

    #[test]
    fn a_chunk_is_full_at_either_limit() {
        let limits = ChunkLimits {
            records: 3,
            bytes: 10,
            age: Duration::from_secs(1),
        };
        let mut by_records = RecordChunk::default();
        let mut by_bytes = RecordChunk::default();
        for position in 0..3 {
            assert!(!by_records.is_full(&limits));
            by_records.push(&meta(0, position, "t", b"x"));
        }
        assert!(by_records.is_full(&limits));
        by_bytes.push(&meta(0, 0, "t", b"0123456789"));
        assert!(by_bytes.is_full(&limits));
    }

    fn limits() -> ChunkLimits {
        ChunkLimits {
            records: ChunkLimits::RECORDS,
            bytes: ChunkLimits::BYTES,
            age: ChunkLimits::AGE,
        }
    }
}
