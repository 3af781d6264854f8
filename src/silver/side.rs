//! Side tables committed before a table's own commit: the deletes it has
//! seen (so a late upsert never resurrects a deleted key) and the
//! quarantine of rows dropped by expectations.
//!
//! Each is a separate Delta log, so it cannot share the table's commit. Both
//! are written first and are replay safe: a delete recorded twice is the
//! same fact (the state takes the latest per key), and quarantined rows that
//! a crashed run already committed are recognised by (rule, key, sequence)
//! and not written again.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Decimal128Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;

use super::apply::DeleteState;
use super::keys::{Seq, sequences};
use super::{LAYER, STATE_LAYER, watermark_app_id};
use crate::delta;
use crate::error::Result;
use crate::storage::StorageRoot;
pub use crate::tables::silver::{deletes_name, quarantine_name};

fn deletes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("seq", DataType::Decimal128(38, 0), true),
        Field::new("seq_ts", DataType::Int64, true),
        Field::new("bronze_version", DataType::Int64, false),
    ]))
}

/// The deletes side table of one silver table.
pub struct Deletes {
    table: DeltaTable,
    name: String,
    app_id: String,
}

impl Deletes {
    /// Opens (creating) the side table; `replace` empties it (full refresh).
    pub async fn open(
        root: &StorageRoot,
        silver_table: &str,
        spec_file: &std::path::Path,
    ) -> Result<Self> {
        let name = deletes_name(silver_table);
        let (table, _) = super::ensure_table(
            root,
            STATE_LAYER,
            &name,
            &deletes_schema(),
            &[],
            false,
            spec_file,
        )
        .await?;
        Ok(Self {
            table,
            name,
            app_id: watermark_app_id(silver_table),
        })
    }

    /// The deletes recorded by runs the table committed: those read from
    /// bronze up to `watermark`, the table's own. Rows of a later bronze
    /// version were recorded by a run that crashed before its table commit;
    /// the rerun reads those changes again, and applying them as state
    /// first would make the run's own older upserts stale (an SCD2 table
    /// would lose the versions they open).
    pub async fn load(&self, ctx: &SessionContext, watermark: Option<i64>) -> Result<DeleteState> {
        let Some(watermark) = watermark else {
            return Ok(DeleteState::default());
        };
        let batches = delta::read_all(ctx, &self.table, &self.name).await?;
        Self::state_of(&batches, watermark)
    }

    /// [`Deletes::load`] for the keys of one chunk of changes (and every
    /// truncate): the side table is joined with the chunk's distinct keys,
    /// so the state held follows the chunk, not every key ever deleted.
    pub async fn load_keys(
        &self,
        ctx: &SessionContext,
        watermark: Option<i64>,
        keys: &[Option<String>],
    ) -> Result<DeleteState> {
        let Some(watermark) = watermark else {
            return Ok(DeleteState::default());
        };
        if self.table.version().is_none() {
            return Ok(DeleteState::default());
        }
        let mut distinct: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let keys_schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let keys_batch = RecordBatch::try_new(
            keys_schema.clone(),
            vec![Arc::new(StringArray::from(distinct))],
        )?;
        let side = format!("__deletes_{}", self.name);
        let wanted = format!("__deletes_keys_{}", self.name);
        self.table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| crate::error::Error::delta(&self.name, e))?;
        let provider = self.table.table_provider().await.map_err(|e| {
            crate::error::Error::delta(&self.name, deltalake::DeltaTableError::from(e))
        })?;
        let _ = ctx.deregister_table(&side)?;
        let _ = ctx.deregister_table(&wanted)?;
        ctx.register_table(&side, provider)?;
        ctx.register_table(
            &wanted,
            Arc::new(datafusion::datasource::MemTable::try_new(
                keys_schema,
                vec![vec![keys_batch]],
            )?),
        )?;
        let sql = format!(
            "SELECT d.key, d.seq, d.seq_ts, d.bronze_version FROM {side} d WHERE d.key IS NULL \
             UNION ALL \
             SELECT d.key, d.seq, d.seq_ts, d.bronze_version FROM {side} d JOIN {wanted} w ON d.key = w.k"
        );
        let batches = ctx.sql(&sql).await?.collect().await;
        let _ = ctx.deregister_table(&side)?;
        let _ = ctx.deregister_table(&wanted)?;
        Self::state_of(&batches?, watermark)
    }

    /// The latest delete per key and the latest truncate in `batches`,
    /// ignoring rows recorded after `watermark` (see [`Deletes::load`]).
    fn state_of(batches: &[RecordBatch], watermark: i64) -> Result<DeleteState> {
        let mut state = DeleteState::default();
        for batch in batches {
            let batch = delta::conform(batch, &deletes_schema())?;
            let keys = batch.column(0).as_string::<i32>();
            let versions = batch.column(3).as_primitive::<Int64Type>();
            let seqs = sequences(batch.column(1).as_ref(), batch.column(2).as_ref())?;
            for (i, seq) in seqs.into_iter().enumerate() {
                if versions.is_valid(i) && versions.value(i) > watermark {
                    continue;
                }
                if keys.is_null(i) {
                    state.truncate_floor = state.truncate_floor.max(Some(seq));
                } else {
                    let entry = state
                        .tombstones
                        .entry(keys.value(i).to_string())
                        .or_insert(seq);
                    *entry = (*entry).max(seq);
                }
            }
        }
        Ok(state)
    }

    /// Records deletes and truncates of the run that reads bronze up to
    /// `bronze_version`; `overwrite` replaces everything (full refresh).
    pub async fn record(
        &mut self,
        tombstones: &[(String, Seq)],
        truncates: &[Seq],
        bronze_version: i64,
        overwrite: bool,
    ) -> Result<()> {
        let stored = delta::txn_version(&self.table, &self.name, &self.app_id).await?;
        if !overwrite && stored.is_some_and(|v| v >= bronze_version) {
            // A crashed run already recorded them.
            return Ok(());
        }
        if !overwrite && tombstones.is_empty() && truncates.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<Option<String>> =
            tombstones.iter().map(|(k, _)| Some(k.clone())).collect();
        let mut seqs: Vec<Seq> = tombstones.iter().map(|(_, s)| *s).collect();
        keys.extend(truncates.iter().map(|_| None));
        seqs.extend(truncates.iter().copied());
        let batch = RecordBatch::try_new(
            deletes_schema(),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(
                    Decimal128Array::from_iter(seqs.iter().map(|s| s.position))
                        .with_precision_and_scale(38, 0)?,
                ),
                Arc::new(Int64Array::from_iter(seqs.iter().map(|s| s.ts_ms))),
                Arc::new(Int64Array::from(vec![bronze_version; seqs.len()])),
            ],
        )?;
        let adds = delta::write(&self.table, &self.name, &batch, 1_000_000).await?;
        let removes = if overwrite {
            delta::files(&self.table, &self.name)?
                .into_iter()
                .map(|f| f.remove)
                .collect()
        } else {
            Vec::new()
        };
        delta::TableCommit::new(delta::CommitMode::from_overwrite(overwrite))
            .with_removes(removes)
            .with_adds(adds)
            .with_transactions(vec![Transaction::new(&self.app_id, bronze_version)])
            .commit(&mut self.table, &self.name)
            .await?;
        Ok(())
    }
}

/// The columns of a `<table>_quarantine` table.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("row", DataType::Utf8, false),
        Field::new("seq", DataType::Decimal128(38, 0), true),
        Field::new("seq_ts", DataType::Int64, true),
        Field::new("bronze_version", DataType::Int64, false),
        Field::new(
            "quarantined_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// A row dropped by an expectation.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// The rule.
    pub rule: String,
    /// The business key, when not null.
    pub key: Option<String>,
    /// The shaped row as JSON.
    pub row: String,
    /// Its sequence.
    pub seq: Seq,
}

/// The rows of `batch` as JSON objects, one string per row.
pub fn rows_as_json(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buffer);
        writer.write(batch)?;
        writer.finish()?;
    }
    let text = String::from_utf8_lossy(&buffer);
    Ok(text.lines().map(str::to_string).collect())
}

/// Appends `rows` to `<table>_quarantine`, skipping rows a crashed run with
/// the same or an older start (`after`) already committed.
pub async fn quarantine(
    ctx: &SessionContext,
    root: &StorageRoot,
    silver_table: &str,
    spec_file: &std::path::Path,
    rows: &[Quarantined],
    after: Option<i64>,
    bronze_version: i64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let name = quarantine_name(silver_table);
    let (mut delta, _) = super::ensure_table(
        root,
        LAYER,
        &name,
        &quarantine_schema(),
        &[],
        false,
        spec_file,
    )
    .await?;
    let app_id = watermark_app_id(silver_table);
    let stored = delta::txn_version(&delta, &name, &app_id).await?;
    let mut already: HashSet<(String, Option<String>, Seq)> = HashSet::new();
    if stored.is_some_and(|s| after.is_none_or(|a| s > a)) {
        for batch in delta::read_all(ctx, &delta, &name).await? {
            let batch = delta::conform(&batch, &quarantine_schema())?;
            let versions = batch.column(5).as_primitive::<Int64Type>();
            let rules = batch.column(0).as_string::<i32>();
            let keys = batch.column(1).as_string::<i32>();
            let seqs = sequences(batch.column(3).as_ref(), batch.column(4).as_ref())?;
            for (i, seq) in seqs.into_iter().enumerate() {
                if after.is_none_or(|a| versions.value(i) > a) {
                    let key = keys.is_valid(i).then(|| keys.value(i).to_string());
                    already.insert((rules.value(i).to_string(), key, seq));
                }
            }
        }
    }
    let fresh: Vec<&Quarantined> = rows
        .iter()
        .filter(|r| !already.contains(&(r.rule.clone(), r.key.clone(), r.seq)))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_micros();
    let batch = RecordBatch::try_new(
        quarantine_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                fresh.iter().map(|r| r.rule.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                fresh.iter().map(|r| r.key.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                fresh.iter().map(|r| r.row.as_str()),
            )),
            Arc::new(
                Decimal128Array::from_iter(fresh.iter().map(|r| r.seq.position))
                    .with_precision_and_scale(38, 0)?,
            ),
            Arc::new(Int64Array::from_iter(fresh.iter().map(|r| r.seq.ts_ms))),
            Arc::new(Int64Array::from(vec![bronze_version; fresh.len()])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; fresh.len()]).with_timezone("UTC")),
        ],
    )?;
    let adds = delta::write(&delta, &name, &batch, 1_000_000).await?;
    delta::TableCommit::new(delta::CommitMode::Update)
        .with_adds(adds)
        .with_transactions(vec![Transaction::new(&app_id, bronze_version)])
        .commit(&mut delta, &name)
        .await?;
    Ok(())
}
