//! Applying a batch of changes to the rows a table holds for the same keys.
//!
//! Per key, the state is the row (SCD1, facts) or versions (SCD2) the table
//! holds, with the sequence of the last change applied, the sequence of the
//! last delete (from the deletes side table) and the last truncate. The
//! batch's changes of the key are applied in sequence order, each only when
//! it is newer than the state: so the latest change wins whatever the
//! arrival order, replays and exact duplicates are no-ops, and a stale upsert
//! never resurrects a deleted key. A tombstone carries no position; it
//! deletes at the position of the record it follows in Kafka order.
//!
//! SCD2 and late arrivals: a change that arrives after a newer change of
//! its key was applied by an earlier run is stale, not inserted into
//! history. The stored versions keep only the last in-place update of each
//! version, so the history around the late change cannot be rebuilt
//! exactly, and splitting a version would change surrogate keys that facts
//! already hold. A full refresh replays everything in sequence order and
//! includes it (README, "Late changes to SCD2 tables").
//!
//! The result refers to cells of the existing rows (source 0) or of the
//! batch (source 1); [`build_batch`] gathers them with `interleave`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Int64Array, RecordBatch,
    TimestampMicrosecondArray, make_comparator,
};
use arrow::compute::{SortOptions, interleave};
use arrow::datatypes::SchemaRef;

use super::keys::{Seq, key_hash, version_hash};
use crate::error::{Error, Result};

/// Existing rows come from source 0, the batch from source 1.
pub const EXISTING: u8 = 0;
/// See [`EXISTING`].
pub const INCOMING: u8 = 1;

/// Where a cell's value comes from: (source, row).
pub type Cell = (u8, usize);

/// What one change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Insert, update or snapshot read.
    Upsert,
    /// A delete event.
    Delete,
    /// A Kafka tombstone (no position of its own).
    Tombstone,
    /// A truncate of the whole table.
    Truncate,
}

/// A batch of changes, sorted by key and then Kafka order.
#[derive(Debug, Clone)]
pub struct Changes {
    /// Data columns (the table's data schema).
    pub data: RecordBatch,
    /// Key strings (`None` for truncates; null keys are rejected earlier).
    pub keys: Vec<Option<String>>,
    /// Sequences.
    pub seq: Vec<Seq>,
    /// Kinds.
    pub kind: Vec<ChangeKind>,
    /// Data column indexes whose value is a TOAST placeholder: keep the held value.
    pub unavailable: Vec<Vec<usize>>,
    /// Upserts kept out by a `drop` expectation.
    pub skip: Vec<bool>,
}

/// Rows the table holds for the affected keys.
#[derive(Debug, Clone)]
pub struct Existing {
    /// Data columns.
    pub data: RecordBatch,
    /// Key strings (`None`: the unknown member).
    pub keys: Vec<Option<String>>,
    /// `_seq` / `_seq_ts`.
    pub seq: Vec<Seq>,
    /// Index of the file each row came from.
    pub file: Vec<usize>,
    /// Surrogate keys, when the table has them.
    pub sk: Vec<Option<i64>>,
    /// SCD2 `valid_from` (microseconds).
    pub valid_from: Vec<Option<i64>>,
    /// SCD2 `valid_to` (microseconds).
    pub valid_to: Vec<Option<i64>>,
    /// SCD2 `is_current`.
    pub is_current: Vec<bool>,
}

impl Existing {
    /// No rows, with the given data schema.
    pub fn empty(schema: SchemaRef) -> Self {
        Self {
            data: RecordBatch::new_empty(schema),
            keys: Vec::new(),
            seq: Vec::new(),
            file: Vec::new(),
            sk: Vec::new(),
            valid_from: Vec::new(),
            valid_to: Vec::new(),
            is_current: Vec::new(),
        }
    }
}

/// Deletes and truncates already recorded for the table.
#[derive(Debug, Clone, Default)]
pub struct DeleteState {
    /// Latest delete per key.
    pub tombstones: HashMap<String, Seq>,
    /// Latest truncate.
    pub truncate_floor: Option<Seq>,
}

/// How the batch is applied.
#[derive(Debug, Clone)]
pub struct Mode {
    /// SCD2 versioning (else one row per key).
    pub scd2: bool,
    /// Whether deletes and truncates apply.
    pub apply_deletes: bool,
    /// Whether the table has a surrogate key column.
    pub surrogate_key: bool,
    /// SCD2: data column indexes whose change opens a new version.
    pub tracked: Vec<usize>,
}

/// A row's cells: a base row and per-column overrides (TOAST placeholders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    base: Cell,
    patches: Vec<(usize, Cell)>,
}

impl RowRef {
    fn new(base: Cell) -> Self {
        Self {
            base,
            patches: Vec::new(),
        }
    }

    /// Row `index` of the batch, unpatched.
    pub fn incoming(index: usize) -> Self {
        Self::new((INCOMING, index))
    }

    /// The row most cells come from.
    pub fn base(&self) -> Cell {
        self.base
    }

    fn cell(&self, column: usize) -> Cell {
        self.patches
            .iter()
            .find(|(c, _)| *c == column)
            .map_or(self.base, |(_, cell)| *cell)
    }

    /// `base`, with `columns` taken from `previous`.
    fn with_kept(base: Cell, columns: &[usize], previous: Option<&RowRef>) -> Self {
        let mut row = RowRef::new(base);
        if let Some(previous) = previous {
            for column in columns {
                row.patches.push((*column, previous.cell(*column)));
            }
        }
        row
    }
}

/// One output row.
#[derive(Debug, Clone)]
pub struct OutRow {
    /// The data cells.
    pub row: RowRef,
    /// Surrogate key.
    pub sk: Option<i64>,
    /// SCD2 validity start (µs).
    pub valid_from: Option<i64>,
    /// SCD2 validity end (µs).
    pub valid_to: Option<i64>,
    /// SCD2 current flag.
    pub is_current: bool,
    /// Sequence of the last change applied to the row.
    pub seq: Seq,
}

/// Counts of what a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyCounts {
    /// Keys inserted (or versions opened, SCD2).
    pub inserted: u64,
    /// Rows updated in place.
    pub updated: u64,
    /// Keys deleted (or current versions closed by a delete).
    pub deleted: u64,
    /// SCD2 versions closed by a tracked change.
    pub versions: u64,
    /// Changes not newer than the state: replays, duplicates, late arrivals.
    pub stale: u64,
    /// Truncates applied.
    pub truncates: u64,
}

/// What applying a batch produced.
#[derive(Debug, Default)]
pub struct Applied {
    /// Rows of the rewritten files and new rows.
    pub rows: Vec<OutRow>,
    /// Existing rows replaced: every held row of a key that changed (the
    /// key's rows, new and kept, are all in `rows`). Their files are
    /// rewritten, or the rows marked deleted in them.
    pub replaced_rows: Vec<usize>,
    /// Deletes to record: key → sequence.
    pub tombstones: Vec<(String, Seq)>,
    /// Truncates to record.
    pub truncates: Vec<Seq>,
    /// Counts.
    pub counts: ApplyCounts,
}

/// Compares cells of the two sources, with comparators built on first use.
struct CellComparator<'a> {
    sources: [&'a RecordBatch; 2],
    cache: HashMap<(usize, u8, u8), arrow::array::DynComparator>,
}

impl<'a> CellComparator<'a> {
    fn equal(&mut self, column: usize, a: Cell, b: Cell) -> Result<bool> {
        let key = (column, a.0, b.0);
        if !self.cache.contains_key(&key) {
            let left = self.sources[a.0 as usize].column(column);
            let right = self.sources[b.0 as usize].column(column);
            let comparator =
                make_comparator(left.as_ref(), right.as_ref(), SortOptions::default())?;
            self.cache.insert(key, comparator);
        }
        let comparator = self
            .cache
            .get(&key)
            .ok_or_else(|| Error::Internal("comparator cache".into()))?;
        Ok(comparator(a.1, b.1) == Ordering::Equal)
    }
}

fn micros(seq: Seq) -> Option<i64> {
    seq.ts_ms.map(|ms| ms.saturating_mul(1000))
}

enum Event {
    Change(usize, Seq),
    Truncate(Seq),
}

impl Event {
    fn seq(&self) -> Seq {
        match self {
            Event::Change(_, s) | Event::Truncate(s) => *s,
        }
    }
}

/// Applies `changes` to `existing` (all rows of the files that may hold the
/// changed keys; every file when there are truncates). `batch_truncates`
/// are truncates of the run that are not rows of `changes` (a chunked load).
pub fn apply(
    mode: &Mode,
    changes: &Changes,
    existing: &Existing,
    state: &DeleteState,
    batch_truncates: &[Seq],
) -> Result<Applied> {
    let mut out = Applied::default();
    let mut comparator = CellComparator {
        sources: [&existing.data, &changes.data],
        cache: HashMap::new(),
    };

    // Truncates apply to every key.
    let mut truncates: Vec<Seq> = Vec::new();
    for i in 0..changes.keys.len() {
        if changes.kind[i] == ChangeKind::Truncate && mode.apply_deletes {
            truncates.push(changes.seq[i]);
        }
    }
    if mode.apply_deletes {
        truncates.extend_from_slice(batch_truncates);
    }
    truncates.sort();
    truncates.dedup();
    out.truncates = truncates.clone();

    // Group rows by key, keeping order.
    let mut order: Vec<&str> = Vec::new();
    let mut held: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, key) in existing.keys.iter().enumerate() {
        match key {
            Some(key) => {
                let entry = held.entry(key.as_str()).or_default();
                if entry.is_empty() {
                    order.push(key.as_str());
                }
                entry.push(i);
            }
            // The unknown member passes through untouched.
            None => out.rows.push(existing_row(existing, i)),
        }
    }
    let mut incoming: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, key) in changes.keys.iter().enumerate() {
        if let Some(key) = key {
            let entry = incoming.entry(key.as_str()).or_default();
            if entry.is_empty() && !held.contains_key(key.as_str()) {
                order.push(key.as_str());
            }
            entry.push(i);
        }
    }

    for key in order {
        let held_rows = held.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let changes_of_key = incoming.get(key).map(Vec::as_slice).unwrap_or(&[]);
        if changes_of_key.is_empty() && truncates.is_empty() {
            for &i in held_rows {
                out.rows.push(existing_row(existing, i));
            }
            continue;
        }
        let mut versions: Vec<OutRow> = held_rows
            .iter()
            .map(|&i| existing_row(existing, i))
            .collect();
        let stored_tombstone = state.tombstones.get(key).copied();
        let mut state_seq = versions.iter().map(|v| v.seq).max();
        state_seq = state_seq.max(stored_tombstone).max(state.truncate_floor);
        let mut current: Option<usize> = if mode.scd2 {
            versions.iter().position(|v| v.is_current)
        } else if versions.is_empty() {
            None
        } else {
            Some(0)
        };
        let mut changed = false;

        // Tombstones take the sequence of the record they follow.
        let mut events: Vec<Event> = Vec::with_capacity(changes_of_key.len() + truncates.len());
        let mut previous: Option<Seq> = None;
        for &i in changes_of_key {
            let seq = match changes.kind[i] {
                ChangeKind::Tombstone => previous
                    .or(stored_tombstone)
                    .or(state_seq)
                    .unwrap_or_default(),
                _ => changes.seq[i],
            };
            previous = Some(seq);
            events.push(Event::Change(i, seq));
        }
        for t in &truncates {
            events.push(Event::Truncate(*t));
        }
        events.sort_by_key(Event::seq);

        let mut last_delete: Option<Seq> = None;
        for event in events {
            let seq = event.seq();
            let kind = match event {
                Event::Change(i, _) => changes.kind[i],
                Event::Truncate(_) => ChangeKind::Truncate,
            };
            match (event, kind) {
                (Event::Change(i, _), ChangeKind::Upsert) => {
                    if changes.skip[i] {
                        continue;
                    }
                    if state_seq.is_some_and(|s| seq <= s) {
                        out.counts.stale += 1;
                        continue;
                    }
                    state_seq = Some(seq);
                    changed = true;
                    let held_row = current.map(|c| &versions[c].row);
                    let row = RowRef::with_kept((INCOMING, i), &changes.unavailable[i], held_row);
                    match current {
                        Some(c) if !mode.scd2 => {
                            versions[c].row = row;
                            versions[c].seq = seq;
                            out.counts.updated += 1;
                        }
                        Some(c) => {
                            let mut same = true;
                            for &column in &mode.tracked {
                                if !comparator.equal(
                                    column,
                                    versions[c].row.cell(column),
                                    row.cell(column),
                                )? {
                                    same = false;
                                    break;
                                }
                            }
                            if same {
                                versions[c].row = row;
                                versions[c].seq = seq;
                                out.counts.updated += 1;
                            } else {
                                close(&mut versions[c], seq);
                                out.counts.versions += 1;
                                versions.push(open(mode, key, row, seq));
                                current = Some(versions.len() - 1);
                            }
                        }
                        None => {
                            versions.push(open(mode, key, row, seq));
                            current = Some(versions.len() - 1);
                            out.counts.inserted += 1;
                        }
                    }
                }
                (_, kind) => {
                    // A delete at the state's own sequence still applies (a
                    // tombstone follows its delete); a truncate must be newer.
                    let is_truncate = kind == ChangeKind::Truncate;
                    if !is_truncate && !mode.apply_deletes {
                        continue;
                    }
                    if state_seq.is_some_and(|s| seq < s || (is_truncate && seq == s)) {
                        out.counts.stale += u64::from(!is_truncate);
                        continue;
                    }
                    state_seq = Some(seq);
                    if !is_truncate {
                        last_delete = Some(seq);
                    }
                    // Everything older is gone: delete (SCD1) or close (SCD2).
                    if let Some(c) = current.take() {
                        changed = true;
                        if is_truncate {
                            out.counts.truncates += 1;
                        } else {
                            out.counts.deleted += 1;
                        }
                        if mode.scd2 {
                            close(&mut versions[c], seq);
                        } else {
                            versions.remove(c);
                        }
                    }
                }
            }
        }
        if let Some(seq) = last_delete {
            out.tombstones.push((key.to_string(), seq));
        }
        if changed {
            out.replaced_rows.extend_from_slice(held_rows);
        }
        out.rows.extend(versions);
    }
    Ok(out)
}

fn existing_row(existing: &Existing, i: usize) -> OutRow {
    OutRow {
        row: RowRef::new((EXISTING, i)),
        sk: existing.sk.get(i).copied().flatten(),
        valid_from: existing.valid_from.get(i).copied().flatten(),
        valid_to: existing.valid_to.get(i).copied().flatten(),
        is_current: existing.is_current.get(i).copied().unwrap_or(true),
        seq: existing.seq.get(i).copied().unwrap_or_default(),
    }
}

/// The far-future `valid_to` of current versions: 9999-12-31T00:00:00Z.
pub const END_OF_TIME_US: i64 = 253_402_214_400_000_000;

fn open(mode: &Mode, key: &str, row: RowRef, seq: Seq) -> OutRow {
    let sk = if mode.scd2 {
        Some(version_hash(key, seq))
    } else if mode.surrogate_key {
        Some(key_hash(key))
    } else {
        None
    };
    OutRow {
        row,
        sk,
        valid_from: if mode.scd2 {
            micros(seq).or(Some(0))
        } else {
            None
        },
        valid_to: if mode.scd2 {
            Some(END_OF_TIME_US)
        } else {
            None
        },
        is_current: true,
        seq,
    }
}

fn close(version: &mut OutRow, at: Seq) {
    let at = micros(at).or(version.valid_from).unwrap_or(0);
    // A version never ends before it starts, even when clocks disagree.
    version.valid_to = Some(version.valid_from.map_or(at, |from| at.max(from)));
    version.is_current = false;
}

/// Engine columns of an output batch.
#[derive(Debug, Clone)]
pub struct EngineColumns {
    /// Surrogate keys.
    pub sk: ArrayRef,
    /// `valid_from`.
    pub valid_from: ArrayRef,
    /// `valid_to`.
    pub valid_to: ArrayRef,
    /// `is_current`.
    pub is_current: ArrayRef,
    /// `_seq`.
    pub seq: ArrayRef,
    /// `_seq_ts`.
    pub seq_ts: ArrayRef,
}

/// Gathers the data cells of `rows` into a batch of `data_schema`, and the
/// engine columns beside it.
pub fn build_batch(
    data_schema: &SchemaRef,
    existing: &RecordBatch,
    changes: &RecordBatch,
    rows: &[OutRow],
) -> Result<(RecordBatch, EngineColumns)> {
    let mut columns = Vec::with_capacity(data_schema.fields().len());
    for (index, _) in data_schema.fields().iter().enumerate() {
        let sources: [&dyn Array; 2] = [
            existing.column(index).as_ref(),
            changes.column(index).as_ref(),
        ];
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|r| {
                let (source, row) = r.row.cell(index);
                (source as usize, row)
            })
            .collect();
        columns.push(interleave(&sources, &indices)?);
    }
    let data = RecordBatch::try_new(data_schema.clone(), columns)?;
    let engine = EngineColumns {
        sk: Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.sk))),
        valid_from: Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.valid_from))
                .with_timezone("UTC"),
        ),
        valid_to: Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.valid_to))
                .with_timezone("UTC"),
        ),
        is_current: Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.is_current)),
        )),
        seq: Arc::new(
            Decimal128Array::from_iter(rows.iter().map(|r| r.seq.position))
                .with_precision_and_scale(38, 0)?,
        ),
        seq_ts: Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.seq.ts_ms))),
    };
    Ok((data, engine))
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn seq(p: i128) -> Seq {
        Seq {
            position: Some(p),
            ts_ms: Some(p as i64 * 10),
        }
    }

    fn changes(rows: &[(i64, &str, i128, ChangeKind)]) -> Changes {
        let data = batch(&rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>());
        Changes {
            data,
            keys: rows
                .iter()
                .map(|r| (r.3 != ChangeKind::Truncate).then(|| r.0.to_string()))
                .collect(),
            seq: rows
                .iter()
                .map(|r| {
                    if r.3 == ChangeKind::Tombstone {
                        Seq::default()
                    } else {
                        seq(r.2)
                    }
                })
                .collect(),
            kind: rows.iter().map(|r| r.3).collect(),
            unavailable: vec![Vec::new(); rows.len()],
            skip: vec![false; rows.len()],
        }
    }

    fn scd1() -> Mode {
        Mode {
            scd2: false,
            apply_deletes: true,
            surrogate_key: false,
            tracked: vec![],
        }
    }

    fn result(applied: &Applied, existing: &Existing, c: &Changes) -> Vec<(i64, String)> {
        let (data, _) = build_batch(&schema(), &existing.data, &c.data, &applied.rows).unwrap();
        let ids = data.column(0).as_primitive::<Int64Type>();
        let names = data.column(1).as_string::<i32>();
        let mut out: Vec<_> = (0..data.num_rows())
            .map(|i| (ids.value(i), names.value(i).to_string()))
            .collect();
        out.sort();
        out
    }

    use ChangeKind::*;

    #[test]
    fn latest_wins_whatever_the_arrival_order() {
        let c = changes(&[
            (1, "b", 5, Upsert),
            (1, "a", 3, Upsert),
            (2, "x", 1, Upsert),
            (2, "x", 1, Upsert),
        ]);
        let existing = Existing::empty(schema());
        let applied = apply(&scd1(), &c, &existing, &DeleteState::default(), &[]).unwrap();
        assert_eq!(
            result(&applied, &existing, &c),
            vec![(1, "b".into()), (2, "x".into())]
        );
        // Within a batch the order is restored; only the duplicate is stale.
        assert_eq!(applied.counts.stale, 1);
    }

    #[test]
    fn deletes_stick_and_tombstones_follow_their_delete() {
        let c = changes(&[
            (1, "a", 3, Upsert),
            (1, "a", 7, Delete),
            (1, "", 0, Tombstone),
            (1, "late", 5, Upsert),
            (2, "b", 4, Upsert),
            (2, "b2", 9, Upsert),
            (2, "", 0, Tombstone), // replayed tombstone after a newer upsert: follows seq 9 -> deletes
        ]);
        let existing = Existing::empty(schema());
        let applied = apply(&scd1(), &c, &existing, &DeleteState::default(), &[]).unwrap();
        assert_eq!(result(&applied, &existing, &c), vec![]);
        assert!(
            applied
                .tombstones
                .iter()
                .any(|(k, s)| k == "1" && *s == seq(7))
        );
    }

    #[test]
    fn stored_tombstone_blocks_late_upserts() {
        let c = changes(&[
            (1, "late", 5, Upsert),
            (1, "new", 9, Upsert),
            (2, "late", 2, Upsert),
        ]);
        let mut state = DeleteState::default();
        state.tombstones.insert("1".into(), seq(7));
        state.tombstones.insert("2".into(), seq(7));
        let existing = Existing::empty(schema());
        let applied = apply(&scd1(), &c, &existing, &state, &[]).unwrap();
        assert_eq!(result(&applied, &existing, &c), vec![(1, "new".into())]);
    }

    #[test]
    fn truncate_removes_older_rows_only() {
        let c = changes(&[
            (1, "a", 3, Upsert),
            (0, "", 5, Truncate),
            (2, "b", 8, Upsert),
        ]);
        let existing = Existing::empty(schema());
        let applied = apply(&scd1(), &c, &existing, &DeleteState::default(), &[]).unwrap();
        assert_eq!(result(&applied, &existing, &c), vec![(2, "b".into())]);
    }

    #[test]
    fn scd2_versions_only_on_tracked_changes() {
        let mode = Mode {
            scd2: true,
            apply_deletes: true,
            surrogate_key: true,
            tracked: vec![1],
        };
        let c = changes(&[
            (1, "a", 3, Upsert),
            (1, "a", 4, Upsert),
            (1, "b", 6, Upsert),
            (1, "b", 6, Upsert),
        ]);
        let existing = Existing::empty(schema());
        let applied = apply(&mode, &c, &existing, &DeleteState::default(), &[]).unwrap();
        assert_eq!(applied.rows.len(), 2);
        let current: Vec<_> = applied.rows.iter().filter(|r| r.is_current).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].valid_from, Some(60_000));
        let closed = applied.rows.iter().find(|r| !r.is_current).unwrap();
        assert_eq!(closed.valid_to, Some(60_000));
        assert_eq!(
            closed.seq,
            seq(4),
            "the untracked update was applied in place"
        );
    }
}
