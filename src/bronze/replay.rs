//! `lakehouse dead-letters replay`: decode the dead letters again, after a
//! fix (a corrected `schemaless_types` hint, a newer lakehouse whose decoder
//! reads what an older one could not), and append those that now decode to
//! `bronze_events`.
//!
//! A replayed row keeps its original Kafka coordinates (topic, partition,
//! offset), so a dead letter counts as replayed exactly when `bronze_events`
//! holds a row with its coordinates. That makes a replay idempotent and safe
//! to re-run after a crash: a second replay finds nothing left to do, and a
//! replay killed before its commit wrote nothing. Dead letters are never
//! deleted: `bronze_dead_letters` stays the record of what failed and why.
//! Silver applies the replayed changes like any late, out-of-order event
//! (by source position), so the silver tables end as if the records had
//! decoded the first time.
//!
//! Two replays at once would both find the same dead letters pending and
//! both append them (appends never conflict in Delta), so a replay that
//! writes holds the storage root's replay lease (see
//! [`crate::storage::lease`], across hosts) from reading what is pending to
//! its commit; a second replay meanwhile fails at once, naming the holder.
//! A dry run writes nothing and takes no lease.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};

use super::Settings;
use super::buffer::{BronzeBuffer, RecordMeta};
use super::sink::BronzeSink;
use crate::cdc::{DecodedRecord, Decoder};
use crate::delta::session;
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::storage::lease::{Exclusive, exclusively};
use crate::tables::bronze::{DEAD_LETTERS_TABLE, EVENTS_TABLE, LAYER};

/// Which dead letters to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Only those of this topic.
    pub topic: Option<String>,
    /// Only those of this error kind (`error_kind` in `bronze_dead_letters`).
    pub error_kind: Option<String>,
    /// Decode, count and report, but write nothing.
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Dead letters selected that no earlier replay had written.
    pub pending: u64,
    /// Of those, the ones that decode now to a table row (appended unless a
    /// dry run).
    pub replayed: u64,
    /// Of those, the ones that decode now but hold no table row (e.g. a
    /// heartbeat): nothing to append, so they stay pending.
    pub not_rows: u64,
    /// Of those, the ones that still fail, per error kind.
    pub still_failing: std::collections::BTreeMap<String, u64>,
    /// The `bronze_events` version written (none on a dry run or when
    /// nothing decoded).
    pub version: Option<i64>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        write!(
            f,
            "dead letters: {} pending, {verb} {}",
            self.pending, self.replayed
        )?;
        if self.not_rows > 0 {
            write!(f, ", {} decode to no table row", self.not_rows)?;
        }
        if let Some(version) = self.version {
            write!(f, " (bronze_events version {version})")?;
        }
        let failing: u64 = self.still_failing.values().sum();
        if failing > 0 {
            let kinds: Vec<String> = self
                .still_failing
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            write!(f, ", {failing} still failing ({})", kinds.join(", "))?;
        }
        writeln!(f)
    }
}

/// The dead letters no replay has written yet, selected by `options`.
fn pending_sql(options: &ReplayOptions) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut filters = vec![format!(
        "NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE} e WHERE e.topic = d.topic \
         AND e.kafka_partition = d.kafka_partition AND e.kafka_offset = d.kafka_offset)"
    )];
    if let Some(topic) = &options.topic {
        filters.push(format!("d.topic = {}", quote(topic)));
    }
    if let Some(kind) = &options.error_kind {
        filters.push(format!("d.error_kind = {}", quote(kind)));
    }
    format!(
        "SELECT d.topic, d.kafka_partition, d.kafka_offset, d.kafka_timestamp, d.raw_key, \
         d.raw_value FROM {DEAD_LETTERS_TABLE} d WHERE {} \
         ORDER BY d.topic, d.kafka_partition, d.kafka_offset",
        filters.join(" AND ")
    )
}

/// Name of the lease a writing replay holds.
const REPLAY_LEASE: &str = "replay-dead-letters";

/// Lifetime of the replay lease without renewal; renewed every third.
const REPLAY_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Replays the dead letters under `root` that `options` select; fails when
/// another replay is writing (see the module documentation).
pub async fn replay(
    settings: Settings<'_>,
    root: &StorageRoot,
    options: &ReplayOptions,
) -> Result<ReplaySummary> {
    if options.dry_run {
        return replay_unguarded(settings, root, options).await;
    }
    let work = replay_unguarded(settings, root, options);
    match exclusively(
        root,
        REPLAY_LEASE,
        "the dead-letter replay",
        REPLAY_LEASE_TTL,
        work,
    )
    .await?
    {
        Exclusive::Done(summary) => Ok(summary),
        Exclusive::Busy { owner } => Err(Error::Condition(format!(
            "another dead-letter replay is running ({owner}); \
             run this one again after it ends (it will replay only what is still pending)"
        ))),
    }
}

/// [`replay`] without the lease.
async fn replay_unguarded(
    settings: Settings<'_>,
    root: &StorageRoot,
    options: &ReplayOptions,
) -> Result<ReplaySummary> {
    let mut summary = ReplaySummary {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let ctx = session::new_session(&session::SessionLimits {
        memory_limit: 512 * 1024 * 1024,
        spill_dir: None,
    })?;
    root.register_object_store(&ctx)?;
    if !session::register_table(&ctx, root, LAYER, DEAD_LETTERS_TABLE).await? {
        return Ok(summary);
    }
    // Opening the sink creates `bronze_events` when missing, so the
    // anti-join below always has a table to read.
    let mut sink = BronzeSink::open(root, settings.bronze.target_file_size).await?;
    session::register_table(&ctx, root, LAYER, EVENTS_TABLE).await?;
    let pending = ctx.sql(&pending_sql(options)).await?.collect().await?;
    let mut decoder = Decoder::new(settings.bronze.type_hints(settings.origin)?);
    let mut record = DecodedRecord::default();
    let mut buffer = BronzeBuffer::new();
    let stream = buffer.stream("lakehouse-replay");
    for batch in &pending {
        decode_batch(batch, stream, &mut decoder, &mut record, &mut buffer)?;
    }
    let finished = buffer.finish()?;
    summary.pending = finished.counts.records;
    summary.replayed = finished.counts.rows;
    summary.not_rows = finished.counts.skipped;
    let kinds = finished
        .dead_letters
        .column_by_name("error_kind")
        .ok_or_else(|| Error::Internal("dead letters without error_kind".into()))?;
    let kinds = arrow::compute::cast(kinds, &arrow::datatypes::DataType::Utf8)?;
    for kind in kinds.as_string::<i32>().iter().flatten() {
        *summary.still_failing.entry(kind.to_string()).or_default() += 1;
    }
    if !options.dry_run {
        summary.version = sink
            .append_events(
                finished.events,
                &finished.batch_id,
                "replay of bronze_dead_letters",
            )
            .await?;
    }
    Ok(summary)
}

/// Decodes the dead letters of `batch` (columns of [`pending_sql`]) into `buffer`.
fn decode_batch(
    batch: &RecordBatch,
    stream: usize,
    decoder: &mut Decoder,
    record: &mut DecodedRecord,
    buffer: &mut BronzeBuffer,
) -> Result<()> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("the dead-letter scan lost `{name}`")))
    };
    let utf8 = arrow::datatypes::DataType::Utf8;
    let binary = arrow::datatypes::DataType::Binary;
    let topics = arrow::compute::cast(column("topic")?, &utf8)?;
    let topics = topics.as_string::<i32>();
    let partitions = column("kafka_partition")?.as_primitive::<Int32Type>();
    let offsets = column("kafka_offset")?.as_primitive::<Int64Type>();
    let timestamps = column("kafka_timestamp")?.as_primitive::<TimestampMicrosecondType>();
    let keys = arrow::compute::cast(column("raw_key")?, &binary)?;
    let keys = keys.as_binary::<i32>();
    let values = arrow::compute::cast(column("raw_value")?, &binary)?;
    let values = values.as_binary::<i32>();
    for row in 0..batch.num_rows() {
        let topic = topics.value(row);
        let offset = offsets.value(row);
        let meta = RecordMeta {
            stream,
            position: offset,
            topic,
            partition: partitions.value(row),
            offset,
            timestamp_ms: timestamps
                .is_valid(row)
                .then(|| timestamps.value(row) / 1000),
            key: keys.is_valid(row).then(|| keys.value(row)),
            value: values.is_valid(row).then(|| values.value(row)),
        };
        let decoded = decoder.decode(topic, meta.key, meta.value, record);
        buffer.push(&meta, decoded.as_ref().map(|k| *k), record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sql_quotes_its_filters() {
        let sql = pending_sql(&ReplayOptions {
            topic: Some("shop.public.o'rders".into()),
            error_kind: Some("decode".into()),
            dry_run: false,
        });
        assert!(sql.contains("d.topic = 'shop.public.o''rders'"), "{sql}");
        assert!(sql.contains("d.error_kind = 'decode'"), "{sql}");
        assert!(sql.contains("NOT EXISTS"), "{sql}");
    }
}
