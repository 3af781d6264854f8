//! The in-memory batch: decoded records appended straight into Arrow builders.
//!
//! Each record is decoded once ([`crate::cdc::Decoder`]) and its fields are
//! appended column by column; nothing is parsed or copied twice. The buffer
//! also tracks, per *stream* (a Kafka topic-partition or an input file), the
//! first and last position it holds, which the sink turns into Delta `txn`
//! actions.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Decimal128Builder, Int32Builder, Int64Builder,
    MapBuilder, MapFieldNames, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};

use crate::cdc::{DecodeError, DecodedRecord, RecordKind, Row};
use crate::error::Result;
use crate::tables::bronze::{dead_letters_schema, events_schema};

/// Where one record came from.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    /// Index of the stream (see [`BronzeBuffer::stream`]).
    pub stream: usize,
    /// Position within the stream that the commit protocol tracks (the Kafka
    /// offset, or the line number of an input file).
    pub position: i64,
    /// Kafka topic.
    pub topic: &'a str,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// Kafka timestamp in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Raw key bytes.
    pub key: Option<&'a [u8]>,
    /// Raw value bytes.
    pub value: Option<&'a [u8]>,
}

/// The range of positions of one stream held in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRange {
    /// The Delta `txn` application id of the stream.
    pub app_id: String,
    /// First position buffered in this batch, if any.
    pub first: Option<i64>,
    /// Last position buffered in this batch, if any.
    pub last: Option<i64>,
    /// The Kafka topic of the stream's records (known from its first record).
    pub topic: Option<String>,
    /// Records buffered from this stream in this batch (all kinds).
    pub records: u64,
    /// Key + value bytes of those records.
    pub bytes: u64,
}

/// Counts of what a batch holds, for progress reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Records consumed (all kinds).
    pub records: u64,
    /// Bytes of key + value consumed.
    pub bytes: u64,
    /// Rows for `bronze_events`.
    pub rows: u64,
    /// Rows for `bronze_dead_letters`.
    pub dead_letters: u64,
    /// Recognised records that are not table rows (transactions, heartbeats, DDL).
    pub skipped: u64,
}

impl BatchCounts {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: &BatchCounts) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.rows += other.rows;
        self.dead_letters += other.dead_letters;
        self.skipped += other.skipped;
    }
}

/// The `bronze_events` rows of one topic in a finished batch. `bronze_events`
/// is partitioned by topic, so each group is one partition's files, and the
/// sink encodes the groups in parallel.
#[derive(Debug, Clone)]
pub struct TopicEvents {
    /// The topic (the `topic` column of every row).
    pub topic: String,
    /// The rows, in order: one record batch per part the batch was built from
    /// (see [`FinishedBatch::absorb`]), never concatenated.
    pub rows: Vec<RecordBatch>,
    /// Stream index of every row, over all of `rows`.
    pub streams: Vec<u32>,
}

/// The rows of one topic of `bronze_events`: one partition of the table.
pub type TopicGroup = (String, Vec<RecordBatch>);

impl TopicEvents {
    /// Rows over all of `rows`.
    pub fn num_rows(&self) -> usize {
        self.rows.iter().map(RecordBatch::num_rows).sum()
    }

    /// The topic and its rows, as the sink writes them.
    pub fn into_group(self) -> TopicGroup {
        (self.topic, self.rows)
    }
}

/// A finished batch, ready for the sink.
#[derive(Debug)]
pub struct FinishedBatch {
    /// Rows for `bronze_events`, one group per topic.
    pub events: Vec<TopicEvents>,
    /// Rows for `bronze_dead_letters`.
    pub dead_letters: RecordBatch,
    /// Stream index and position of every row of `dead_letters`.
    pub dead_letter_positions: Vec<(u32, i64)>,
    /// Position ranges per stream (indexed like the buffer's streams).
    pub streams: Vec<StreamRange>,
    /// What the batch holds.
    pub counts: BatchCounts,
    /// Id of the batch, also written in the `batch_id` column.
    pub batch_id: String,
}

impl FinishedBatch {
    /// Appends `part`, a batch finished later from the records after this
    /// one's (the file path decodes chunks of lines on several threads, each
    /// into a buffer of its own), and rewrites its `batch_id` column to this
    /// batch's id. Topics' rows stay separate record batches, so nothing is
    /// copied but that column.
    pub fn absorb(&mut self, part: FinishedBatch) -> Result<()> {
        for group in part.events {
            let rows = group
                .rows
                .iter()
                .map(|rows| with_batch_id(rows, &self.batch_id))
                .collect::<Result<Vec<_>>>()?;
            match self.events.iter_mut().find(|g| g.topic == group.topic) {
                Some(ours) => {
                    ours.rows.extend(rows);
                    ours.streams.extend(group.streams);
                }
                None => self.events.push(TopicEvents { rows, ..group }),
            }
        }
        if part.dead_letters.num_rows() > 0 {
            let theirs = with_batch_id(&part.dead_letters, &self.batch_id)?;
            self.dead_letters = arrow::compute::concat_batches(
                &dead_letters_schema(),
                [&self.dead_letters, &theirs],
            )?;
            self.dead_letter_positions
                .extend(part.dead_letter_positions);
        }
        for (index, theirs) in part.streams.into_iter().enumerate() {
            match self.streams.get_mut(index) {
                Some(ours) => {
                    ours.first = ours.first.or(theirs.first);
                    ours.last = theirs.last.or(ours.last);
                    ours.topic = ours.topic.take().or(theirs.topic);
                    ours.records += theirs.records;
                    ours.bytes += theirs.bytes;
                }
                None => self.streams.push(theirs),
            }
        }
        self.counts.add(&part.counts);
        Ok(())
    }
}

/// `rows` with its `batch_id` column set to `batch_id`.
fn with_batch_id(rows: &RecordBatch, batch_id: &str) -> Result<RecordBatch> {
    let index = rows.schema().index_of("batch_id")?;
    let mut columns = rows.columns().to_vec();
    columns[index] = batch_id_column(batch_id, rows.num_rows());
    Ok(RecordBatch::try_new(rows.schema(), columns)?)
}

fn string_map_builder(rows: usize, map: MapCapacity) -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::with_capacity(
        Some(MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        }),
        StringBuilder::with_capacity(map.entries, map.key_bytes),
        StringBuilder::with_capacity(map.entries, map.value_bytes),
        rows,
    )
}

/// Entries and bytes of a row-map column.
#[derive(Debug, Clone, Copy, Default)]
struct MapCapacity {
    entries: usize,
    key_bytes: usize,
    value_bytes: usize,
}

impl MapCapacity {
    fn of(builder: &mut MapBuilder<StringBuilder, StringBuilder>) -> Self {
        Self {
            entries: builder.keys().len(),
            key_bytes: builder.keys().values_slice().len(),
            value_bytes: builder.values().values_slice().len(),
        }
    }
}

/// The sizes of a topic's last batch in its large columns (raw payloads,
/// row maps). The next batch's builders start at them: grown by doubling,
/// each would copy its bytes again on every growth (a profile showed those
/// copies at ~12 % of the decoding thread).
#[derive(Debug, Clone, Copy, Default)]
struct Capacity {
    rows: usize,
    raw_key_bytes: usize,
    raw_value_bytes: usize,
    key: MapCapacity,
    before: MapCapacity,
    after: MapCapacity,
}

impl MapCapacity {
    fn grown(self) -> Self {
        Self {
            entries: grown(self.entries),
            key_bytes: grown(self.key_bytes),
            value_bytes: grown(self.value_bytes),
        }
    }
}

impl Capacity {
    /// A quarter more than the last batch held: batches (and the file path's
    /// chunks) vary in size, and a builder one record too small copies
    /// itself whole.
    fn grown(self) -> Self {
        Self {
            rows: grown(self.rows),
            raw_key_bytes: grown(self.raw_key_bytes),
            raw_value_bytes: grown(self.raw_value_bytes),
            key: self.key.grown(),
            before: self.before.grown(),
            after: self.after.grown(),
        }
    }
}

fn grown(size: usize) -> usize {
    size + size / 4
}

fn utc_micros() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Builders of the columns both tables start with: where a record came from.
struct OriginColumns {
    topic: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    kafka_timestamp: TimestampMicrosecondBuilder,
}

impl OriginColumns {
    fn new() -> Self {
        Self {
            topic: StringBuilder::new(),
            kafka_partition: Int32Builder::new(),
            kafka_offset: Int64Builder::new(),
            kafka_timestamp: utc_micros(),
        }
    }

    fn append(&mut self, meta: &RecordMeta<'_>) {
        self.topic.append_value(meta.topic);
        self.kafka_partition.append_value(meta.partition);
        self.kafka_offset.append_value(meta.offset);
        self.kafka_timestamp
            .append_option(meta.timestamp_ms.map(|ms| ms.saturating_mul(1000)));
    }

    fn len(&self) -> usize {
        self.kafka_partition.len()
    }

    fn finish(&mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.topic.finish()),
            Arc::new(self.kafka_partition.finish()),
            Arc::new(self.kafka_offset.finish()),
            Arc::new(self.kafka_timestamp.finish()),
        ]
    }
}

/// A column repeating the batch id on every row.
fn batch_id_column(batch_id: &str, rows: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        batch_id, rows,
    )))
}

/// Builders of the `bronze_events` columns, in schema order.
struct EventColumns {
    origin: OriginColumns,
    record_kind: StringBuilder,
    op: StringBuilder,
    connector: StringBuilder,
    source_name: StringBuilder,
    source_db: StringBuilder,
    source_schema: StringBuilder,
    source_table: StringBuilder,
    source_lsn: Int64Builder,
    source_tx_id: Int64Builder,
    source_sequence: StringBuilder,
    binlog_file: StringBuilder,
    binlog_pos: Int64Builder,
    binlog_row: Int32Builder,
    server_id: Int64Builder,
    gtid: StringBuilder,
    source_position: Decimal128Builder,
    source_ts_ms: Int64Builder,
    event_ts_ms: Int64Builder,
    snapshot: StringBuilder,
    tx_id: StringBuilder,
    tx_total_order: Int64Builder,
    tx_collection_order: Int64Builder,
    key: MapBuilder<StringBuilder, StringBuilder>,
    before: MapBuilder<StringBuilder, StringBuilder>,
    after: MapBuilder<StringBuilder, StringBuilder>,
    raw_key: BinaryBuilder,
    raw_value: BinaryBuilder,
    ingested_at: TimestampMicrosecondBuilder,
}

impl EventColumns {
    fn new(capacity: Capacity) -> Self {
        let rows = capacity.rows;
        Self {
            origin: OriginColumns::new(),
            record_kind: StringBuilder::new(),
            op: StringBuilder::new(),
            connector: StringBuilder::new(),
            source_name: StringBuilder::new(),
            source_db: StringBuilder::new(),
            source_schema: StringBuilder::new(),
            source_table: StringBuilder::new(),
            source_lsn: Int64Builder::new(),
            source_tx_id: Int64Builder::new(),
            source_sequence: StringBuilder::new(),
            binlog_file: StringBuilder::new(),
            binlog_pos: Int64Builder::new(),
            binlog_row: Int32Builder::new(),
            server_id: Int64Builder::new(),
            gtid: StringBuilder::new(),
            source_position: Decimal128Builder::new(),
            source_ts_ms: Int64Builder::new(),
            event_ts_ms: Int64Builder::new(),
            snapshot: StringBuilder::new(),
            tx_id: StringBuilder::new(),
            tx_total_order: Int64Builder::new(),
            tx_collection_order: Int64Builder::new(),
            key: string_map_builder(rows, capacity.key),
            before: string_map_builder(rows, capacity.before),
            after: string_map_builder(rows, capacity.after),
            raw_key: BinaryBuilder::with_capacity(rows, capacity.raw_key_bytes),
            raw_value: BinaryBuilder::with_capacity(rows, capacity.raw_value_bytes),
            ingested_at: utc_micros(),
        }
    }

    fn append(
        &mut self,
        meta: &RecordMeta<'_>,
        kind: RecordKind,
        record: &DecodedRecord,
    ) -> Result<()> {
        let source = &record.source;
        let tx = &record.transaction;
        self.origin.append(meta);
        self.record_kind.append_value(kind.as_str());
        self.op.append_option(record.op.map(|op| op.code()));
        self.connector.append_option(source.connector.as_deref());
        self.source_name.append_option(source.name.as_deref());
        self.source_db.append_option(source.db.as_deref());
        self.source_schema.append_option(source.schema.as_deref());
        self.source_table.append_option(source.table.as_deref());
        self.source_lsn.append_option(source.lsn);
        self.source_tx_id.append_option(source.tx_id);
        self.source_sequence
            .append_option(source.sequence.as_deref());
        self.binlog_file
            .append_option(source.binlog_file.as_deref());
        self.binlog_pos.append_option(source.binlog_pos);
        self.binlog_row.append_option(source.binlog_row);
        self.server_id.append_option(source.server_id);
        self.gtid.append_option(source.gtid.as_deref());
        self.source_position.append_option(source.position());
        self.source_ts_ms.append_option(source.ts_ms);
        self.event_ts_ms.append_option(record.event_ts_ms);
        self.snapshot.append_option(source.snapshot.as_deref());
        self.tx_id.append_option(tx.id.as_deref());
        self.tx_total_order.append_option(tx.total_order);
        self.tx_collection_order
            .append_option(tx.data_collection_order);
        append_row(&mut self.key, record.key.as_ref())?;
        append_row(&mut self.before, record.before.as_ref())?;
        append_row(&mut self.after, record.after.as_ref())?;
        self.raw_key.append_option(meta.key);
        self.raw_value.append_option(meta.value);
        self.ingested_at.append_value(now_micros());
        Ok(())
    }

    /// What the batch built so far holds in its large columns.
    fn capacity(&mut self) -> Capacity {
        Capacity {
            rows: self.origin.len(),
            raw_key_bytes: self.raw_key.values_slice().len(),
            raw_value_bytes: self.raw_value.values_slice().len(),
            key: MapCapacity::of(&mut self.key),
            before: MapCapacity::of(&mut self.before),
            after: MapCapacity::of(&mut self.after),
        }
    }

    fn finish(&mut self, batch_id: &str) -> Result<RecordBatch> {
        let rows = self.origin.len();
        let mut columns = self.origin.finish().to_vec();
        columns.extend::<[ArrayRef; 29]>([
            Arc::new(self.record_kind.finish()),
            Arc::new(self.op.finish()),
            Arc::new(self.connector.finish()),
            Arc::new(self.source_name.finish()),
            Arc::new(self.source_db.finish()),
            Arc::new(self.source_schema.finish()),
            Arc::new(self.source_table.finish()),
            Arc::new(self.source_lsn.finish()),
            Arc::new(self.source_tx_id.finish()),
            Arc::new(self.source_sequence.finish()),
            Arc::new(self.binlog_file.finish()),
            Arc::new(self.binlog_pos.finish()),
            Arc::new(self.binlog_row.finish()),
            Arc::new(self.server_id.finish()),
            Arc::new(self.gtid.finish()),
            Arc::new(
                self.source_position
                    .finish()
                    .with_precision_and_scale(38, 0)?,
            ),
            Arc::new(self.source_ts_ms.finish()),
            Arc::new(self.event_ts_ms.finish()),
            Arc::new(self.snapshot.finish()),
            Arc::new(self.tx_id.finish()),
            Arc::new(self.tx_total_order.finish()),
            Arc::new(self.tx_collection_order.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.before.finish()),
            Arc::new(self.after.finish()),
            Arc::new(self.raw_key.finish()),
            Arc::new(self.raw_value.finish()),
            Arc::new(self.ingested_at.finish()),
            batch_id_column(batch_id, rows),
        ]);
        Ok(RecordBatch::try_new(events_schema(), columns)?)
    }
}

fn append_row(
    builder: &mut MapBuilder<StringBuilder, StringBuilder>,
    row: Option<&Row>,
) -> Result<()> {
    match row {
        Some(row) => {
            for (name, value) in row.iter() {
                builder.keys().append_value(name);
                builder.values().append_option(value);
            }
            builder.append(true)?;
        }
        None => builder.append(false)?,
    }
    Ok(())
}

/// Builders of the `bronze_dead_letters` columns.
struct DeadLetterColumns {
    origin: OriginColumns,
    raw_key: BinaryBuilder,
    raw_value: BinaryBuilder,
    error_kind: StringBuilder,
    error: StringBuilder,
    failed_at: TimestampMicrosecondBuilder,
}

impl DeadLetterColumns {
    fn new() -> Self {
        Self {
            origin: OriginColumns::new(),
            raw_key: BinaryBuilder::new(),
            raw_value: BinaryBuilder::new(),
            error_kind: StringBuilder::new(),
            error: StringBuilder::new(),
            failed_at: utc_micros(),
        }
    }

    fn append(&mut self, meta: &RecordMeta<'_>, kind: &str, message: &str) {
        self.origin.append(meta);
        self.raw_key.append_option(meta.key);
        self.raw_value.append_option(meta.value);
        self.error_kind.append_value(kind);
        self.error.append_value(message);
        self.failed_at.append_value(now_micros());
    }

    fn finish(&mut self, batch_id: &str) -> Result<RecordBatch> {
        let rows = self.origin.len();
        let mut columns = self.origin.finish().to_vec();
        columns.extend::<[ArrayRef; 6]>([
            Arc::new(self.raw_key.finish()),
            Arc::new(self.raw_value.finish()),
            Arc::new(self.error_kind.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.failed_at.finish()),
            batch_id_column(batch_id, rows),
        ]);
        Ok(RecordBatch::try_new(dead_letters_schema(), columns)?)
    }
}

/// The builders of one topic's `bronze_events` rows.
struct TopicColumns {
    topic: String,
    columns: EventColumns,
    streams: Vec<u32>,
}

/// Accumulates one batch of decoded records.
pub struct BronzeBuffer {
    /// Rows are built per topic (see [`TopicEvents`]).
    events: Vec<TopicColumns>,
    /// Index in `events` of the last topic appended to: records of one topic
    /// come in runs.
    last_topic: usize,
    dead_letters: DeadLetterColumns,
    dead_letter_positions: Vec<(u32, i64)>,
    streams: Vec<StreamRange>,
    counts: BatchCounts,
}

impl Default for BronzeBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl BronzeBuffer {
    /// An empty buffer with no streams.
    pub fn new() -> Self {
        Self {
            events: Vec::new(),
            last_topic: 0,
            dead_letters: DeadLetterColumns::new(),
            dead_letter_positions: Vec::new(),
            streams: Vec::new(),
            counts: BatchCounts::default(),
        }
    }

    /// An empty buffer with the streams of `streams` at the same indexes:
    /// the buffer of a part that a [`FinishedBatch::absorb`] joins later.
    pub fn with_streams(streams: &[StreamRange]) -> Self {
        let mut buffer = Self::new();
        for stream in streams {
            buffer.stream(&stream.app_id);
        }
        buffer
    }

    /// Registers a stream by its Delta application id and returns its index.
    /// Registering the same id again returns the existing index.
    pub fn stream(&mut self, app_id: &str) -> usize {
        if let Some(index) = self.streams.iter().position(|s| s.app_id == app_id) {
            return index;
        }
        self.streams.push(StreamRange {
            app_id: app_id.to_string(),
            first: None,
            last: None,
            topic: None,
            records: 0,
            bytes: 0,
        });
        self.streams.len() - 1
    }

    /// The streams registered so far.
    pub fn streams(&self) -> &[StreamRange] {
        &self.streams
    }

    /// What the buffer holds.
    pub fn counts(&self) -> BatchCounts {
        self.counts
    }

    /// Whether the buffer holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.counts.records == 0
    }

    fn track(&mut self, meta: &RecordMeta<'_>) {
        let bytes = meta.key.map_or(0, <[u8]>::len) + meta.value.map_or(0, <[u8]>::len);
        self.counts.records += 1;
        self.counts.bytes += bytes as u64;
        if let Some(stream) = self.streams.get_mut(meta.stream) {
            stream.first.get_or_insert(meta.position);
            stream.last = Some(meta.position);
            // Per stream, so that the metrics count only what is committed
            // (a stream another process took is dropped from the commit).
            stream.records += 1;
            stream.bytes += bytes as u64;
            if stream.topic.is_none() {
                stream.topic = Some(meta.topic.to_string());
            }
        }
    }

    /// Appends the outcome of decoding one record: a table row, a recognised
    /// non-row record (only its position is tracked), or a dead letter.
    pub fn push(
        &mut self,
        meta: &RecordMeta<'_>,
        decoded: std::result::Result<RecordKind, &DecodeError>,
        record: &DecodedRecord,
    ) -> Result<()> {
        match decoded {
            Ok(kind) if kind.is_table_row() => {
                let topic = self.topic_columns(meta.topic);
                topic.columns.append(meta, kind, record)?;
                topic.streams.push(meta.stream as u32);
                self.counts.rows += 1;
            }
            Ok(_) => self.counts.skipped += 1,
            Err(error) => {
                let message = format!(
                    "topic {} partition {} offset {}: {error}",
                    meta.topic, meta.partition, meta.offset
                );
                self.push_dead_letter(meta, error.kind(), &message);
                return Ok(());
            }
        }
        self.track(meta);
        Ok(())
    }

    fn topic_columns(&mut self, topic: &str) -> &mut TopicColumns {
        let index = match self.events.get(self.last_topic) {
            Some(last) if last.topic == topic => self.last_topic,
            _ => match self.events.iter().position(|t| t.topic == topic) {
                Some(index) => index,
                None => {
                    self.events.push(TopicColumns {
                        topic: topic.to_string(),
                        columns: EventColumns::new(Capacity::default()),
                        streams: Vec::new(),
                    });
                    self.events.len() - 1
                }
            },
        };
        self.last_topic = index;
        &mut self.events[index]
    }

    /// Appends a dead letter for a record that could not be read at all
    /// (`message` says what was wrong and where).
    pub fn push_dead_letter(&mut self, meta: &RecordMeta<'_>, kind: &str, message: &str) {
        self.dead_letters.append(meta, kind, message);
        self.dead_letter_positions
            .push((meta.stream as u32, meta.position));
        self.counts.dead_letters += 1;
        self.track(meta);
    }

    /// The last position buffered for `stream` in the current batch.
    pub fn last_position(&self, stream: usize) -> Option<i64> {
        self.streams.get(stream).and_then(|s| s.last)
    }

    /// Finishes the batch and resets the buffer (streams are kept, their ranges cleared).
    pub fn finish(&mut self) -> Result<FinishedBatch> {
        let batch_id = uuid::Uuid::new_v4().to_string();
        let mut events = Vec::new();
        for topic in &mut self.events {
            if topic.streams.is_empty() {
                continue;
            }
            let capacity = topic.columns.capacity();
            events.push(TopicEvents {
                topic: topic.topic.clone(),
                rows: vec![topic.columns.finish(&batch_id)?],
                streams: std::mem::take(&mut topic.streams),
            });
            topic.columns = EventColumns::new(capacity.grown());
        }
        let dead_letters = self.dead_letters.finish(&batch_id)?;
        let streams = self.streams.clone();
        for stream in &mut self.streams {
            stream.first = None;
            stream.last = None;
            stream.records = 0;
            stream.bytes = 0;
        }
        Ok(FinishedBatch {
            events,
            dead_letters,
            dead_letter_positions: std::mem::take(&mut self.dead_letter_positions),
            streams,
            counts: std::mem::take(&mut self.counts),
            batch_id,
        })
    }

    /// Drops everything buffered (after a rebalance), keeping the builders.
    pub fn discard(&mut self) -> Result<()> {
        self.finish().map(|_| ())
    }
}
