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
use deltalake::kernel::{Add, StructType, Transaction};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};

use super::buffer::{FinishedBatch, TopicEvents, TopicGroup};
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

impl CommitOutcome {
    /// Adds what a later commit did.
    pub fn absorb(&mut self, later: CommitOutcome) {
        self.events_version = later.events_version.or(self.events_version);
        self.dead_letters_version = later.dead_letters_version.or(self.dead_letters_version);
        self.committed.extend(later.committed);
        self.lost.extend(later.lost);
        self.rows_written += later.rows_written;
        self.dead_letters_written += later.dead_letters_written;
        for (topic, rows) in later.rows_by_topic {
            *self.rows_by_topic.entry(topic).or_default() += rows;
        }
        for (kind, rows) in later.dead_letters_by_kind {
            *self.dead_letters_by_kind.entry(kind).or_default() += rows;
        }
    }
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
        let mut writer_properties = WriterProperties::builder().set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(|e| Error::Internal(format!("zstd level: {e}")))?,
        ));
        // The raw payloads are unique per record: a dictionary never pays off
        // (the writer hashes a page's worth before giving up, in every row
        // group), and no reader prunes on their min/max.
        for column in RAW_PAYLOAD_COLUMNS {
            writer_properties = writer_properties
                .set_column_dictionary_enabled(ColumnPath::from(column), false)
                .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
        }
        let writer_properties = writer_properties.build();
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
        events: Vec<TopicEvents>,
        batch_id: &str,
        reason: &str,
    ) -> Result<Option<i64>> {
        if events.iter().all(|g| g.num_rows() == 0) {
            return Ok(None);
        }
        self.refresh().await?;
        let groups = events.into_iter().map(TopicEvents::into_group).collect();
        let adds = self.stage_events(groups)?.wait().await?;
        let version =
            commit_files(&mut self.events, EVENTS_TABLE, adds, Vec::new(), batch_id).await?;
        tracing::info!(version, reason, "appended events to bronze_events");
        Ok(Some(version))
    }

    /// Starts writing `groups` (rows of `bronze_events`, one topic each) as
    /// Parquet files, on blocking threads: the groups are spread over at most
    /// as many writers as the machine has cores, so encoding overlaps with
    /// whatever the caller does next (decoding the next batch). The files
    /// belong to the table only once a commit adds them; files of a batch that
    /// is never committed are left for `vacuum`.
    pub fn stage_events(&self, groups: Vec<TopicGroup>) -> Result<StagedEvents> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let writers = cores.min(groups.len()).max(1);
        // Largest groups first, each to the least loaded writer.
        let size = |group: &TopicGroup| -> usize {
            group.1.iter().map(RecordBatch::get_array_memory_size).sum()
        };
        let mut groups = groups;
        groups.sort_by_key(|g| std::cmp::Reverse(size(g)));
        let mut bins: Vec<(usize, Vec<TopicGroup>)> = vec![(0, Vec::new()); writers];
        for group in groups {
            if let Some(bin) = bins.iter_mut().min_by_key(|(size, _)| *size) {
                bin.0 += size(&group);
                bin.1.push(group);
            }
        }
        let runtime = tokio::runtime::Handle::current();
        let mut tasks = Vec::with_capacity(writers);
        for (_, groups) in bins.into_iter().filter(|(_, b)| !b.is_empty()) {
            let writer = self.events_writer()?;
            let runtime = runtime.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                runtime.block_on(write_topic_files(writer, groups))
            }));
        }
        Ok(StagedEvents { tasks })
    }

    fn events_writer(&self) -> Result<RecordBatchWriter> {
        Ok(RecordBatchWriter::for_table(&self.events)
            .map_err(|e| Error::delta(EVENTS_TABLE, e))?
            .with_writer_properties(self.writer_properties.clone())
            .with_target_file_size(self.target_file_size))
    }

    fn dead_letters_writer(&self) -> Result<RecordBatchWriter> {
        Ok(RecordBatchWriter::for_table(&self.dead_letters)
            .map_err(|e| Error::delta(DEAD_LETTERS_TABLE, e))?
            .with_writer_properties(self.writer_properties.clone())
            .with_target_file_size(self.target_file_size))
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
    /// committed for stream `i` (`None`: nothing yet). `staged` are the files
    /// of all of `batch.events`, from [`Self::stage_events`]; they are
    /// committed as they are unless a stream was lost, and reused when a
    /// commit is retried after a conflict.
    pub async fn commit(
        &mut self,
        batch: &FinishedBatch,
        expected: &[Option<i64>],
        staged: &[Add],
    ) -> Result<CommitOutcome> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_commit(batch, expected, staged).await {
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
        staged: &[Add],
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
            let adds = write_files(
                self.dead_letters_writer()?,
                DEAD_LETTERS_TABLE,
                vec![dead_letters],
            )
            .await?;
            outcome.dead_letters_version = Some(
                commit_files(
                    &mut self.dead_letters,
                    DEAD_LETTERS_TABLE,
                    adds,
                    txns,
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
        let is_owned = |stream: &u32| owned.get(*stream as usize).copied().unwrap_or(false);
        let adds = if batch
            .events
            .iter()
            .all(|group| group.streams.iter().all(is_owned))
        {
            outcome.rows_written = batch.events.iter().map(TopicEvents::num_rows).sum();
            outcome.rows_by_topic = super::telemetry::rows_by_topic(&batch.events);
            staged.to_vec()
        } else {
            // A stream was lost: write the rows of the others again, without
            // it. The staged files are never committed.
            let mut kept = Vec::with_capacity(batch.events.len());
            for group in &batch.events {
                let mut rows = Vec::with_capacity(group.rows.len());
                let mut streams = group.streams.iter();
                for part in &group.rows {
                    let keep = streams.by_ref().take(part.num_rows()).map(is_owned);
                    rows.push(filter(part, keep.collect())?);
                }
                kept.push(TopicEvents {
                    topic: group.topic.clone(),
                    rows,
                    streams: group.streams.iter().copied().filter(is_owned).collect(),
                });
            }
            outcome.rows_written = kept.iter().map(TopicEvents::num_rows).sum();
            outcome.rows_by_topic = super::telemetry::rows_by_topic(&kept);
            self.stage_events(kept.into_iter().map(TopicEvents::into_group).collect())?
                .wait()
                .await?
        };
        outcome.events_version =
            Some(commit_files(&mut self.events, EVENTS_TABLE, adds, txns, &batch.batch_id).await?);
        Ok(outcome)
    }
}

/// Parquet files being written for a batch's events (see
/// [`BronzeSink::stage_events`]).
#[must_use = "staged files are only useful once committed"]
pub struct StagedEvents {
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<Add>>>>,
}

impl StagedEvents {
    /// Whether every file is written (waiting would not block).
    pub fn is_finished(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    /// Waits for the files and returns their `add` actions.
    pub async fn wait(self) -> Result<Vec<Add>> {
        let mut adds = Vec::new();
        for task in self.tasks {
            let written = task
                .await
                .map_err(|e| Error::Internal(format!("bronze Parquet writer task failed: {e}")))?;
            adds.extend(written?);
        }
        Ok(adds)
    }
}

fn filter(batch: &RecordBatch, keep: Vec<bool>) -> Result<RecordBatch> {
    if keep.iter().all(|k| *k) {
        return Ok(batch.clone());
    }
    Ok(filter_record_batch(batch, &BooleanArray::from(keep))?)
}

/// Writes each topic's rows into its partition of `bronze_events` with
/// `writer` and returns the files' `add` actions. The rows are written as
/// they are: deltalake's general write splits every batch by partition value,
/// copying all of it, though each of these holds one topic.
async fn write_topic_files(
    mut writer: RecordBatchWriter,
    groups: Vec<TopicGroup>,
) -> Result<Vec<Add>> {
    for (topic, batches) in groups {
        let partition = indexmap::IndexMap::from([(
            crate::tables::bronze::PARTITION_COLUMN.to_string(),
            delta_kernel::expressions::Scalar::String(topic),
        )]);
        for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
            writer
                .write_partition(batch, &partition, WriteMode::Default)
                .await
                .map_err(|e| Error::delta(EVENTS_TABLE, e))?;
        }
    }
    writer
        .flush()
        .await
        .map_err(|e| Error::delta(EVENTS_TABLE, e))
}

/// Writes `batches` as Parquet files with `writer` and returns their `add` actions.
async fn write_files(
    mut writer: RecordBatchWriter,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<Add>> {
    for batch in batches {
        writer
            .write(batch)
            .await
            .map_err(|e| Error::delta(name, e))?;
    }
    writer.flush().await.map_err(|e| Error::delta(name, e))
}

/// Commits `adds` with `txns` in one Delta commit.
async fn commit_files(
    table: &mut DeltaTable,
    name: &str,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    batch_id: &str,
) -> Result<i64> {
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
/// The columns holding each record's bytes, in both tables.
const RAW_PAYLOAD_COLUMNS: [&str; 2] = ["raw_key", "raw_value"];
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
