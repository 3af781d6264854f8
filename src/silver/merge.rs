//! Bookkeeping of an incremental run applied in chunks of key-sorted
//! changes, so that its memory follows the chunk size, not the backlog.
//!
//! Every chunk reads the files that may hold its keys, applies its changes
//! and rewrites the files where a row changed. The rows of those files that
//! lie beyond the chunk's last key may still be touched by a later chunk;
//! they are carried into the next chunk instead of being written (a file
//! written by this run is not in the table's snapshot yet, so it cannot be
//! read back before the commit). The last chunk writes what is carried.
//! Files where few rows changed are not rewritten: their replaced rows are
//! marked deleted (collected here over the chunks, one deletion vector per
//! file at the end). All removes and adds still go into the run's single
//! commit.

use std::cmp::Ordering;
use std::collections::HashSet;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::row::{RowConverter, SortField};
use deltalake::kernel::Remove;

use crate::delta::TableFile;
use crate::delta::key_strings;
use crate::error::{Error, Result};

/// The table's files and carried rows between the chunks of one run.
#[derive(Debug)]
pub struct MergeState {
    /// Files of the snapshot not rewritten by an earlier chunk.
    pub files: Vec<TableFile>,
    /// Removes of the rewritten files, for the run's commit.
    pub removes: Vec<Remove>,
    /// Rows (table schema) of rewritten files beyond the last chunk's keys.
    pub carried: Option<RecordBatch>,
    /// Whether no chunk ran yet (truncates and repairs read every file once).
    pub first: bool,
    /// Whether the first chunk re-resolves unknown members (a looked-up
    /// dimension changed).
    pub repair: bool,
    /// Rewritten rows up to the last chunk's keys, fewer than a file's
    /// worth, held so that chunks do not each leave a small file.
    unwritten: Option<RecordBatch>,
    /// Whether replaced rows may be marked deleted instead of rewritten.
    marks_deletes: bool,
    /// Per file with rows marked deleted (in the order first marked): the
    /// file and the positions marked.
    marked: Vec<(TableFile, HashSet<u64>)>,
}

impl MergeState {
    /// The state before the first chunk, over the snapshot's files;
    /// `marks_deletes`: whether rows may be marked deleted in their files.
    pub fn new(files: Vec<TableFile>, repair: bool, marks_deletes: bool) -> Self {
        Self {
            files,
            repair,
            removes: Vec::new(),
            carried: None,
            first: true,
            unwritten: None,
            marks_deletes,
            marked: Vec::new(),
        }
    }

    /// Whether replaced rows may be marked deleted instead of rewritten.
    pub fn marks_deletes(&self) -> bool {
        self.marks_deletes
    }

    /// Whether an earlier chunk marked rows of the file at `path` deleted.
    pub fn has_marked(&self, path: &str) -> bool {
        self.marked.iter().any(|(file, _)| file.path == path)
    }

    /// Marks rows (`positions` in the file as written) of `file` deleted.
    pub fn mark(&mut self, file: &TableFile, positions: impl IntoIterator<Item = u64>) {
        match self.marked.iter_mut().find(|(f, _)| f.path == file.path) {
            Some((_, marked)) => marked.extend(positions),
            None => self
                .marked
                .push((file.clone(), positions.into_iter().collect())),
        }
    }

    /// Whether an earlier chunk marked rows of any file deleted.
    pub fn has_any_marked(&self) -> bool {
        !self.marked.is_empty()
    }

    /// Whether an earlier chunk marked the row at `position` of the file at
    /// `path` deleted: a later chunk reading the file again must skip it
    /// (its new version is written, or carried).
    pub fn is_marked(&self, path: &str, position: u64) -> bool {
        self.marked
            .iter()
            .any(|(file, marked)| file.path == path && marked.contains(&position))
    }

    /// The files with rows marked deleted, and their positions (ascending).
    pub fn take_marked(&mut self) -> Vec<(TableFile, Vec<u64>)> {
        std::mem::take(&mut self.marked)
            .into_iter()
            .map(|(file, marked)| {
                let mut positions: Vec<u64> = marked.into_iter().collect();
                positions.sort_unstable();
                (file, positions)
            })
            .collect()
    }

    /// The rows to write now out of `rows` (ready, key-sorted) and those
    /// held back: whole files of `file_rows`, everything when `last`.
    pub fn ready_to_write(
        &mut self,
        rows: RecordBatch,
        file_rows: usize,
        last: bool,
    ) -> Result<RecordBatch> {
        let rows = match self.unwritten.take() {
            Some(held) => arrow::compute::concat_batches(&rows.schema(), &[held, rows])?,
            None => rows,
        };
        if last {
            return Ok(rows);
        }
        let whole = rows.num_rows() - rows.num_rows() % file_rows.max(1);
        self.unwritten = Some(rows.slice(whole, rows.num_rows() - whole));
        Ok(rows.slice(0, whole))
    }

    /// Retires `chosen` files (rewritten by a chunk): their removes go into
    /// the commit and later chunks no longer select them.
    pub fn retire(&mut self, chosen: &[TableFile]) {
        for file in chosen {
            self.removes.push(file.remove.clone());
        }
        self.files
            .retain(|f| !chosen.iter().any(|c| c.path == f.path));
    }
}

/// Cuts a key-sorted stream of batches into chunks of whole key groups of
/// at least `rows` rows (the last chunk may be smaller), so a key's changes
/// are never split between two chunks.
#[derive(Debug)]
pub struct KeyChunks {
    keys: Vec<String>,
    rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl KeyChunks {
    /// Chunks of at least `rows` rows, grouped by `keys`.
    pub fn new(keys: &[String], rows: usize) -> Self {
        Self {
            keys: keys.to_vec(),
            rows,
            pending: Vec::new(),
            pending_rows: 0,
        }
    }

    /// Adds `batch`; returns a chunk once enough whole key groups are pending.
    pub fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows < self.rows {
            return Ok(None);
        }
        let all = arrow::compute::concat_batches(&self.pending[0].schema(), &self.pending)?;
        let cut = key_boundary(&all, &self.keys)?;
        let rest = all.slice(cut, all.num_rows() - cut);
        self.pending_rows = rest.num_rows();
        self.pending = vec![rest];
        Ok((cut > 0).then(|| all.slice(0, cut)))
    }

    /// What is still pending (`None`: nothing).
    pub fn finish(self) -> Result<Option<RecordBatch>> {
        if self.pending_rows == 0 {
            return Ok(None);
        }
        let all = arrow::compute::concat_batches(&self.pending[0].schema(), &self.pending)?;
        Ok(Some(all))
    }
}

/// Index where the last key group of a key-sorted batch starts.
fn key_boundary(batch: &RecordBatch, keys: &[String]) -> Result<usize> {
    let strings = key_strings(batch, keys)?;
    let Some(last) = strings.last() else {
        return Ok(0);
    };
    let mut cut = strings.len();
    while cut > 0 && &strings[cut - 1] == last {
        cut -= 1;
    }
    Ok(cut)
}

/// The key columns of `batch`'s last row: the chunk's upper bound.
pub fn last_key(batch: &RecordBatch, keys: &[String]) -> Result<Option<Vec<ArrayRef>>> {
    let n = batch.num_rows();
    if n == 0 {
        return Ok(None);
    }
    keys.iter()
        .map(|k| {
            batch
                .column_by_name(k)
                .map(|c| c.slice(n - 1, 1))
                .ok_or_else(|| Error::Internal(format!("key column `{k}` is missing")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Splits key-sorted `rows` at `bound`: rows with keys up to it (to write
/// now) and rows beyond it (to carry). Keys compare as the changes are
/// sorted: ascending, nulls first.
pub fn split_at_key(
    rows: &RecordBatch,
    keys: &[String],
    bound: &[ArrayRef],
) -> Result<(RecordBatch, RecordBatch)> {
    let mut columns = Vec::with_capacity(keys.len());
    let mut bounds = Vec::with_capacity(keys.len());
    for (key, bound) in keys.iter().zip(bound) {
        let column = rows
            .column_by_name(key)
            .ok_or_else(|| Error::Internal(format!("key column `{key}` is missing")))?;
        bounds.push(cast(bound, column.data_type())?);
        columns.push(column.clone());
    }
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let row_keys = converter.convert_columns(&columns)?;
    let bound_keys = converter.convert_columns(&bounds)?;
    let bound = bound_keys.row(0);
    let n = rows.num_rows();
    // `rows` is sorted by key: the carried rows are a suffix.
    let mut cut = n;
    while cut > 0 && row_keys.row(cut - 1).cmp(&bound) == Ordering::Greater {
        cut -= 1;
    }
    Ok((rows.slice(0, cut), rows.slice(cut, n - cut)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    #[test]
    fn splits_after_the_bound_with_nulls_first() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![
                    None,
                    Some(1),
                    Some(5),
                    Some(5),
                    Some(9),
                ])),
                Arc::new(StringArray::from(vec!["u", "a", "b", "c", "d"])),
            ],
        )
        .unwrap();
        let keys = vec!["k".to_string()];
        let bound: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![5]));
        let (now, later) = split_at_key(&rows, &keys, &[bound]).unwrap();
        assert_eq!(now.num_rows(), 4);
        let later_keys: Vec<_> = later.column(0).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(later_keys, vec![Some(9)]);
        let bound = last_key(&rows, &keys).unwrap().unwrap();
        let (now, later) = split_at_key(&rows, &keys, &bound).unwrap();
        assert_eq!((now.num_rows(), later.num_rows()), (5, 0));
    }
}
