//! Exactly-once commits of bronze batches into Delta.
//!
//! Every stream (a Kafka topic-partition, or an input file) has a Delta `txn`
//! application id; its version is the last position committed. A batch is
//! committed in two Delta commits, dead letters first, then events, each
//! carrying the `txn` actions of the streams it covers, so positions and rows
//! land atomically per table:
//!
//! - Before committing, the sink reloads both tables and checks, per stream,
//!   that the events table still holds the version the caller expects. If not,
//!   another process has written that stream (a rebalance moved the partition):
//!   the stream's rows are dropped from the batch and reported as *lost*, so
//!   the caller re-reads from the stored position. Nothing is written twice.
//! - Two writers racing on the same stream both commit a `txn` for the same
//!   application id; deltalake's conflict checker rejects the later one, and
//!   the check above runs again on the new snapshot.
//! - Dead letters are committed first with their own `txn` versions. After a
//!   crash between the two commits, the replayed records' dead letters are
//!   filtered out (position <= the dead-letter version) while their events
//!   are written.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{StructType, Transaction};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};

use super::buffer::FinishedBatch;
use crate::delta::{CommitMode, TableCommit, txn_version};
use crate::error::{Error, Result, is_commit_conflict};
use crate::storage::StorageRoot;
use crate::tables::bronze::{
    DEAD_LETTERS_TABLE, EVENTS_TABLE, LAYER, PARTITION_COLUMN, dead_letters_schema, events_schema,
};

/// How often a commit is re-validated and retried after a conflict.
const MAX_CONFLICT_RETRIES: usize = 20;

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Version of the events commit, when one was made.
    pub events_version: Option<i64>,
    /// Version of the dead-letter commit, when one was made.
    pub dead_letters_version: Option<i64>,
    /// Streams now committed up to a position: `(stream index, position)`.
    pub committed: Vec<(usize, i64)>,
    /// Streams another process has written since the caller's expectation:
    /// `(stream index, the version now stored)`. Their rows were not written.
    pub lost: Vec<(usize, Option<i64>)>,
    /// Rows written to `bronze_events`.
    pub rows_written: usize,
    /// Rows written to `bronze_dead_letters`.
    pub dead_letters_written: usize,
    /// Rows written to `bronze_events`, per topic.
    pub rows_by_topic: BTreeMap<String, u64>,
    /// Rows written to `bronze_dead_letters`, per topic and `error_kind`.
    pub dead_letters_by_kind: BTreeMap<(String, String), u64>,
}

/// Writes finished batches to the bronze tables.
pub struct BronzeSink {
    events: DeltaTable,
    dead_letters: DeltaTable,
    writer_properties: WriterProperties,
    target_file_size: u64,
}

impl BronzeSink {
    /// Opens (creating when missing) `bronze_events` and `bronze_dead_letters`.
    pub async fn open(root: &StorageRoot, target_file_size: u64) -> Result<Self> {
        let events = ensure_table(
            root,
            EVENTS_TABLE,
            &events_schema(),
            &[PARTITION_COLUMN],
            EVENTS_STATS_COLUMNS,
        )
        .await?;
        let dead_letters = ensure_table(
            root,
            DEAD_LETTERS_TABLE,
            &dead_letters_schema(),
            &[],
            DEAD_LETTERS_STATS_COLUMNS,
        )
        .await?;
        let writer_properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(|e| Error::Internal(format!("zstd level: {e}")))?,
            ))
            .build();
        Ok(Self {
            events,
            dead_letters,
            writer_properties,
            target_file_size,
        })
    }

    /// Appends `events` (rows of a finished batch) to `bronze_events` with no
    /// stream watermark: dead letters replayed after a fix keep their Kafka
    /// coordinates, and that is what makes a replay idempotent (see
    /// [`super::replay`]). `reason` goes into the commit metadata.
    pub async fn append_events(
        &mut self,
        events: RecordBatch,
        batch_id: &str,
        reason: &str,
    ) -> Result<Option<i64>> {
        if events.num_rows() == 0 {
            return Ok(None);
        }
        self.refresh().await?;
        let version = write_and_commit(
            &mut self.events,
            EVENTS_TABLE,
            events,
            Vec::new(),
            &self.writer_properties,
            self.target_file_size,
            batch_id,
        )
        .await?;
        tracing::info!(version, reason, "appended events to bronze_events");
        Ok(Some(version))
    }

    /// The events table (as of the last commit or refresh).
    pub fn events_table(&self) -> &DeltaTable {
        &self.events
    }

    /// The dead-letter table (as of the last commit or refresh).
    pub fn dead_letters_table(&self) -> &DeltaTable {
        &self.dead_letters
    }

    /// Reloads both tables to their latest versions.
    pub async fn refresh(&mut self) -> Result<()> {
        self.events
            .update_state()
            .await
            .map_err(|e| Error::delta(EVENTS_TABLE, e))?;
        self.dead_letters
            .update_state()
            .await
            .map_err(|e| Error::delta(DEAD_LETTERS_TABLE, e))?;
        Ok(())
    }

    /// The position committed for each application id in `bronze_events`, as
    /// of the latest table version.
    pub async fn committed_positions(&mut self, app_ids: &[String]) -> Result<Vec<Option<i64>>> {
        self.refresh().await?;
        let mut out = Vec::with_capacity(app_ids.len());
        for app_id in app_ids {
            out.push(txn_version(&self.events, EVENTS_TABLE, app_id).await?);
        }
        Ok(out)
    }

    /// Commits a batch. `expected[i]` is the position the caller believes is
    /// committed for stream `i` (`None`: nothing yet).
    pub async fn commit(
        &mut self,
        batch: &FinishedBatch,
        expected: &[Option<i64>],
    ) -> Result<CommitOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_commit(batch, expected).await {
                Err(Error::Delta { source, .. } | Error::CommitConflict { source, .. })
                    if is_commit_conflict(&source) && attempt < MAX_CONFLICT_RETRIES =>
                {
                    tracing::warn!(attempt, error = %source, "bronze commit conflicted with another writer; re-validating");
                }
                other => return other,
            }
        }
    }

    async fn try_commit(
        &mut self,
        batch: &FinishedBatch,
        expected: &[Option<i64>],
    ) -> Result<CommitOutcome> {
        self.refresh().await?;
        let mut outcome = CommitOutcome::default();

        // Which streams may still be written by us.
        let mut owned = vec![false; batch.streams.len()];
        let mut dead_letter_floor: HashMap<usize, Option<i64>> = HashMap::new();
        for (index, stream) in batch.streams.iter().enumerate() {
            let Some(last) = stream.last else { continue };
            let stored = txn_version(&self.events, EVENTS_TABLE, &stream.app_id).await?;
            let believed = expected.get(index).copied().flatten();
            if stored == believed {
                owned[index] = true;
                outcome.committed.push((index, last));
                let floor =
                    txn_version(&self.dead_letters, DEAD_LETTERS_TABLE, &stream.app_id).await?;
                dead_letter_floor.insert(index, floor);
            } else {
                outcome.lost.push((index, stored));
            }
        }

        // Dead letters first, skipping those an earlier (crashed) run already wrote.
        let keep: Vec<bool> = batch
            .dead_letter_positions
            .iter()
            .map(|(stream, position)| {
                let stream = *stream as usize;
                owned.get(stream).copied().unwrap_or(false)
                    && dead_letter_floor
                        .get(&stream)
                        .copied()
                        .flatten()
                        .is_none_or(|floor| *position > floor)
            })
            .collect();
        let dead_letters = filter(&batch.dead_letters, keep)?;
        if dead_letters.num_rows() > 0 {
            let txns = batch
                .dead_letter_positions
                .iter()
                .map(|(stream, _)| *stream as usize)
                .filter(|s| owned.get(*s).copied().unwrap_or(false))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter_map(|s| {
                    let stream = batch.streams.get(s)?;
                    let last = stream.last?;
                    let floor = dead_letter_floor.get(&s).copied().flatten();
                    Some(Transaction::new(
                        &stream.app_id,
                        floor.map_or(last, |f| f.max(last)),
                    ))
                })
                .collect();
            outcome.dead_letters_written = dead_letters.num_rows();
            outcome.dead_letters_by_kind = super::telemetry::dead_letters_by_kind(&dead_letters);
            outcome.dead_letters_version = Some(
                write_and_commit(
                    &mut self.dead_letters,
                    DEAD_LETTERS_TABLE,
                    dead_letters,
                    txns,
                    &self.writer_properties,
                    self.target_file_size,
                    &batch.batch_id,
                )
                .await?,
            );
        }

        // Then the events, with the positions of every owned stream.
        let txns: Vec<Transaction> = outcome
            .committed
            .iter()
            .filter_map(|(s, last)| {
                batch
                    .streams
                    .get(*s)
                    .map(|st| Transaction::new(&st.app_id, *last))
            })
            .collect();
        if txns.is_empty() {
            return Ok(outcome);
        }
        let keep: Vec<bool> = batch
            .event_streams
            .iter()
            .map(|s| owned.get(*s as usize).copied().unwrap_or(false))
            .collect();
        let events = filter(&batch.events, keep)?;
        outcome.rows_written = events.num_rows();
        outcome.rows_by_topic = super::telemetry::rows_by_topic(&events);
        outcome.events_version = Some(
            write_and_commit(
                &mut self.events,
                EVENTS_TABLE,
                events,
                txns,
                &self.writer_properties,
                self.target_file_size,
                &batch.batch_id,
            )
            .await?,
        );
        Ok(outcome)
    }
}

fn filter(batch: &RecordBatch, keep: Vec<bool>) -> Result<RecordBatch> {
    if keep.iter().all(|k| *k) {
        return Ok(batch.clone());
    }
    Ok(filter_record_batch(batch, &BooleanArray::from(keep))?)
}

/// Writes `batch` as Parquet files and commits them with `txns` in one Delta commit.
async fn write_and_commit(
    table: &mut DeltaTable,
    name: &str,
    batch: RecordBatch,
    txns: Vec<Transaction>,
    writer_properties: &WriterProperties,
    target_file_size: u64,
    batch_id: &str,
) -> Result<i64> {
    let mut adds = Vec::new();
    if batch.num_rows() > 0 {
        let mut writer = RecordBatchWriter::for_table(table)
            .map_err(|e| Error::delta(name, e))?
            .with_writer_properties(writer_properties.clone())
            .with_target_file_size(target_file_size);
        writer
            .write(batch)
            .await
            .map_err(|e| Error::delta(name, e))?;
        adds = writer.flush().await.map_err(|e| Error::delta(name, e))?;
    }
    TableCommit::new(CommitMode::Append)
        .with_adds(adds)
        .with_transactions(txns)
        .with_max_retries(100)
        .with_metadata(serde_json::Map::from_iter([(
            "lakehouse.batch_id".to_string(),
            serde_json::Value::String(batch_id.to_string()),
        )]))
        .commit(table, name)
        .await
}

/// Columns of `bronze_events` with file statistics: what readers prune on.
/// Statistics of the payload columns (raw bytes, row maps) would cost write
/// time and log size for no pruning.
const EVENTS_STATS_COLUMNS: &str = "kafka_partition,kafka_offset,kafka_timestamp,record_kind,op,\
     source_position,source_ts_ms,ingested_at";
/// Columns of `bronze_dead_letters` with file statistics.
const DEAD_LETTERS_STATS_COLUMNS: &str = "topic,kafka_partition,kafka_offset,error_kind,failed_at";

/// Opens table `name`, creating it with `schema` when it does not exist yet.
/// Two processes creating it at once is fine: the loser loads the winner's table.
async fn ensure_table(
    root: &StorageRoot,
    name: &str,
    schema: &arrow::datatypes::SchemaRef,
    partition_columns: &[&str],
    stats_columns: &str,
) -> Result<DeltaTable> {
    let table = root.open_table(LAYER, name).await?;
    if table.version().is_some() {
        return Ok(table);
    }
    let delta_schema: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::delta(name, DeltaTableError::from(e)))?;
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(delta_schema.fields().cloned())
        .with_partition_columns(partition_columns.iter().map(|c| c.to_string()))
        .with_configuration_property(TableProperty::DataSkippingStatsColumns, Some(stats_columns))
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(table) => Ok(table),
        Err(e) if is_commit_conflict(&e) => root.open_table(LAYER, name).await,
        Err(e) => Err(Error::delta(name, e)),
    }
}
