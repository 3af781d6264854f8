//! Deletion vectors: marking rows of a data file deleted without rewriting
//! the file (Delta's `deletionVectors` table feature, merge-on-read).
//!
//! A copy-on-write change of one row rewrites its whole file. Where the
//! changed rows are a small part of their files (updates of random keys of
//! a large dimension), a run instead records their positions in the file's
//! deletion vector and writes only the rows' new versions: its cost follows
//! the changed rows, not the files that hold them. Readers (deltalake's
//! provider, Spark, DuckDB) skip the deleted positions; `optimize` rewrites
//! such files without them.
//!
//! The vectors are written as Delta's `u` (relative, UUID-named) files with
//! the kernel's serializer; a file's new vector holds its old deletions too,
//! and is committed as a remove of the file (with its old vector) and an add
//! of the same file (with the new one).

use std::collections::HashMap;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use delta_kernel::actions::deletion_vector_writer::{
    KernelDeletionVector, StreamingDeletionVectorWriter,
};
use delta_kernel::table_features::TableFeature;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, Add, DeletionVectorDescriptor, Remove, StorageType};
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use roaring::RoaringTreemap;

use super::TableFile;
use crate::error::{Error, Result};

/// The table property that asks writers to use deletion vectors.
const ENABLE: &str = "delta.enableDeletionVectors";

/// Whether `table`'s protocol lets a writer add deletion vectors.
pub fn supported(table: &DeltaTable) -> bool {
    table.snapshot().is_ok_and(|snapshot| {
        snapshot
            .protocol()
            .writer_features()
            .is_some_and(|features| features.contains(&TableFeature::DeletionVectors))
    })
}

/// Turns deletion vectors on for `table` (a protocol and property commit)
/// unless they already are; returns the table as of that commit.
pub async fn enable(table: DeltaTable, name: &str) -> Result<DeltaTable> {
    if table.version().is_none() || supported(&table) {
        return Ok(table);
    }
    table
        .set_tbl_properties()
        .with_properties(HashMap::from([(ENABLE.to_string(), "true".to_string())]))
        .await
        .map_err(|e| Error::delta(name, e))
}

/// The row positions a file's deletion vector marks deleted.
pub async fn deleted_rows(
    table: &DeltaTable,
    name: &str,
    vector: &DeletionVectorDescriptor,
) -> Result<RoaringTreemap> {
    let log_store = table.log_store();
    let root = log_store.root_url().clone();
    let engine = log_store.engine(None);
    let descriptor: delta_kernel::actions::deletion_vector::DeletionVectorDescriptor = vector
        .clone()
        .try_into()
        .map_err(|e: delta_kernel::Error| deletion_error(name, &e))?;
    // The kernel's storage handler blocks on its own runtime.
    let read =
        tokio::task::spawn_blocking(move || descriptor.read(engine.storage_handler(), &root))
            .await
            .map_err(|e| Error::Internal(format!("{name}: reading a deletion vector: {e}")))?;
    read.map_err(|e| deletion_error(name, &e))
}

fn deletion_error(name: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Internal(format!("{name}: deletion vector: {e}"))
}

/// Marks `rows` (positions in the file, as written) of `file` deleted:
/// writes the file's new deletion vector (its old deletions included) and
/// returns the actions that commit it. A file left with no row is removed
/// outright.
pub async fn mark_deleted(
    table: &DeltaTable,
    name: &str,
    file: &TableFile,
    rows: impl IntoIterator<Item = u64>,
) -> Result<Vec<Action>> {
    let mut deleted: RoaringTreemap = rows.into_iter().collect();
    if let Some(old) = &file.remove.deletion_vector {
        deleted |= deleted_rows(table, name, old).await?;
    }
    let remove = Action::Remove(Remove {
        data_change: true,
        deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
        ..file.remove.clone()
    });
    if file.num_records.is_some_and(|n| deleted.len() >= n as u64) {
        return Ok(vec![remove]);
    }
    let cardinality = deleted.len();
    let mut vector = KernelDeletionVector::new();
    vector.add_deleted_row_indexes(deleted.iter());
    let mut bytes = Vec::new();
    let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
    let written = writer
        .write_deletion_vector(vector)
        .map_err(|e| deletion_error(name, &e))?;
    writer.finalize().map_err(|e| deletion_error(name, &e))?;
    let uuid = uuid::Uuid::new_v4();
    let path = Path::from(format!("deletion_vector_{uuid}.bin"));
    table
        .log_store()
        .object_store(None)
        .put(&path, bytes.into())
        .await
        .map_err(|e| Error::delta(name, e.into()))?;
    let descriptor = DeletionVectorDescriptor {
        storage_type: StorageType::UuidRelativePath,
        path_or_inline_dv: z85::encode(uuid.as_bytes()),
        offset: Some(written.offset),
        size_in_bytes: written.size_in_bytes,
        cardinality: i64::try_from(cardinality)
            .map_err(|_| Error::Internal(format!("{name}: too many deleted rows")))?,
    };
    let add = Action::Add(Add {
        path: file.path.clone(),
        partition_values: file.remove.partition_values.clone().unwrap_or_default(),
        size: file.remove.size.unwrap_or_default(),
        modification_time: file.modification_time,
        data_change: true,
        stats: file.stats.as_ref().map(loose_bounds),
        tags: file.remove.tags.clone(),
        deletion_vector: Some(descriptor),
        base_row_id: file.remove.base_row_id,
        default_row_commit_version: file.remove.default_row_commit_version,
        clustering_provider: None,
    });
    Ok(vec![remove, add])
}

/// A file's statistics once rows are deleted from it: the counts and
/// bounds are the file's as written, so they are no longer tight.
fn loose_bounds(stats: &serde_json::Value) -> String {
    let mut stats = stats.clone();
    if let Some(object) = stats.as_object_mut() {
        object.insert("tightBounds".to_string(), serde_json::Value::Bool(false));
    }
    stats.to_string()
}

/// Per selected file, the positions its deletion vector marks deleted (in
/// ascending order; empty: none).
pub async fn deleted_positions(
    table: &DeltaTable,
    name: &str,
    files: &[&TableFile],
) -> Result<Vec<Vec<u64>>> {
    let mut positions = Vec::with_capacity(files.len());
    for file in files {
        positions.push(match &file.remove.deletion_vector {
            Some(vector) => deleted_rows(table, name, vector).await?.iter().collect(),
            None => Vec::new(),
        });
    }
    Ok(positions)
}

/// The rows of the Parquet file at `url` whose positions (in the file as
/// written) `keep` selects, in file order.
pub async fn read_file_rows(
    ctx: &SessionContext,
    url: &str,
    keep: impl Fn(u64) -> bool,
) -> Result<Vec<RecordBatch>> {
    let ctx = super::session::ordered_session(ctx);
    let batches = ctx
        .read_parquet(url, ParquetReadOptions::default())
        .await?
        .collect()
        .await?;
    let mut position = 0u64;
    let mut rows = Vec::with_capacity(batches.len());
    for batch in batches {
        let mask: BooleanArray = (0..batch.num_rows() as u64)
            .map(|i| Some(keep(position + i)))
            .collect();
        position += batch.num_rows() as u64;
        rows.push(filter_record_batch(&batch, &mask)?);
    }
    Ok(rows)
}

/// Assigns each row read from a file its position in the file as written:
/// rows come in file order, without the positions already deleted.
#[derive(Debug, Default)]
pub struct Positions {
    /// Per file: the next position and the index of the next deleted one.
    cursors: Vec<(u64, usize)>,
    deleted: Vec<Vec<u64>>,
}

impl Positions {
    /// Positions over files whose deleted positions are `deleted`.
    pub fn new(deleted: Vec<Vec<u64>>) -> Self {
        Self {
            cursors: vec![(0, 0); deleted.len()],
            deleted,
        }
    }

    /// The position of the next row read from file `file`.
    pub fn next(&mut self, file: usize) -> u64 {
        let (position, next_deleted) = &mut self.cursors[file];
        let deleted = &self.deleted[file];
        while deleted.get(*next_deleted) == Some(position) {
            *position += 1;
            *next_deleted += 1;
        }
        let this = *position;
        *position += 1;
        this
    }

    /// Rows seen per file, with the deleted positions skipped among them.
    pub fn rows_read(&self, file: usize) -> u64 {
        let (position, next_deleted) = self.cursors[file];
        position - next_deleted as u64
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::delta::{CommitMode, TableCommit, ensure, files, read_all, read_files, write};
    use crate::storage::StorageRoot;

    /// The `id` column of `batches`, in the order read.
    fn ids_in_order(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .iter()
                    .flatten()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The `id` column of `batches`, sorted.
    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        let mut ids = ids_in_order(batches);
        ids.sort_unstable();
        ids
    }

    async fn commit(table: &mut DeltaTable, actions: Vec<Action>) {
        let (mut removes, mut adds) = (Vec::new(), Vec::new());
        for action in actions {
            match action {
                Action::Remove(r) => removes.push(r),
                Action::Add(a) => adds.push(a),
                _ => unreachable!(),
            }
        }
        TableCommit::new(CommitMode::from_overwrite(false))
            .with_removes(removes)
            .with_adds(adds)
            .commit(table, "t")
            .await
            .unwrap();
    }

    /// Positions of rows read from large files (several batches, two files
    /// at once) are their places in the file as written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn positions_of_large_files_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::local(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let (mut table, _) = ensure(&root, "silver", "t", &schema, &[], false)
            .await
            .unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(
                (0..60_000).collect::<Vec<i64>>(),
            ))],
        )
        .unwrap();
        let adds = write(&table, "t", &batch, 30_000).await.unwrap();
        TableCommit::new(CommitMode::from_overwrite(false))
            .with_adds(adds)
            .commit(&mut table, "t")
            .await
            .unwrap();
        let ctx = SessionContext::new();
        let all = files(&table, "t").unwrap();
        let read = read_files(&ctx, &table, "t", &all.iter().collect::<Vec<_>>(), &schema)
            .await
            .unwrap();
        let ids = read.rows.column(0).as_primitive::<Int64Type>();
        for (i, id) in ids.iter().enumerate() {
            let id = id.unwrap();
            let first = all[read.file_of_row[i]].stats.as_ref().unwrap()["minValues"]["id"]
                .as_i64()
                .unwrap();
            assert_eq!(read.position_of_row[i] as i64, id - first, "row {i}");
        }
        // A plain read of one file, by position, as gold reads changed rows.
        let url = crate::storage::data_file_url(&table, &all[0].path);
        let first = all[0].stats.as_ref().unwrap()["minValues"]["id"]
            .as_i64()
            .unwrap();
        let picked = read_file_rows(&ctx, &url, |p| p % 7_000 == 3)
            .await
            .unwrap();
        let want: Vec<i64> = (0..30_000)
            .filter(|p| p % 7_000 == 3)
            .map(|p| p + first)
            .collect();
        assert_eq!(ids_in_order(&picked), want);
    }

    /// Rows marked deleted in two rounds disappear from every reader (the
    /// table provider, `read_files` with its positions, a plain file read
    /// of the newly deleted rows), and a file left empty is removed.
    #[tokio::test]
    async fn marked_rows_are_gone_for_every_reader() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::local(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let (table, _) = ensure(&root, "silver", "t", &schema, &[], false)
            .await
            .unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from((0..10).collect::<Vec<i64>>()))],
        )
        .unwrap();
        // Two files: ids 0..5 and 5..10.
        let adds = write(&table, "t", &batch, 5).await.unwrap();
        let mut table = table;
        TableCommit::new(CommitMode::from_overwrite(false))
            .with_adds(adds)
            .commit(&mut table, "t")
            .await
            .unwrap();
        assert!(!supported(&table));
        let mut table = enable(table, "t").await.unwrap();
        assert!(supported(&table));
        let ctx = SessionContext::new();

        let first = files(&table, "t").unwrap();
        let file = first
            .iter()
            .find(|f| f.stats.as_ref().unwrap()["minValues"]["id"] == 0)
            .unwrap()
            .clone();
        let actions = mark_deleted(&table, "t", &file, [1, 3]).await.unwrap();
        commit(&mut table, actions).await;
        assert_eq!(
            ids(&read_all(&ctx, &table, "t").await.unwrap()),
            vec![0, 2, 4, 5, 6, 7, 8, 9]
        );

        // The positions read back are those written, around the deletes.
        let now = files(&table, "t").unwrap();
        let file = now.iter().find(|f| f.path == file.path).unwrap().clone();
        assert_eq!(file.remove.deletion_vector.as_ref().unwrap().cardinality, 2);
        let read = read_files(&ctx, &table, "t", &[&file], &schema)
            .await
            .unwrap();
        assert_eq!(ids(std::slice::from_ref(&read.rows)), vec![0, 2, 4]);
        let by_id: Vec<(i64, u64)> = read
            .rows
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .zip(read.position_of_row.iter().copied())
            .collect();
        assert_eq!(by_id, vec![(0, 0), (2, 2), (4, 4)]);

        // A second round keeps the first one's deletes.
        let before = file.remove.deletion_vector.clone();
        let actions = mark_deleted(&table, "t", &file, [4]).await.unwrap();
        commit(&mut table, actions).await;
        assert_eq!(
            ids(&read_all(&ctx, &table, "t").await.unwrap()),
            vec![0, 2, 5, 6, 7, 8, 9]
        );
        let file = files(&table, "t")
            .unwrap()
            .into_iter()
            .find(|f| f.path == file.path)
            .unwrap();
        let after = file.remove.deletion_vector.clone().unwrap();
        let was = deleted_rows(&table, "t", before.as_ref().unwrap())
            .await
            .unwrap();
        let now = deleted_rows(&table, "t", &after).await.unwrap();
        let url = crate::storage::data_file_url(&table, &file.path);
        let newly = read_file_rows(&ctx, &url, |p| now.contains(p) && !was.contains(p))
            .await
            .unwrap();
        assert_eq!(ids(&newly), vec![4]);

        // Deleting the rest removes the file.
        let actions = mark_deleted(&table, "t", &file, [0, 2]).await.unwrap();
        assert!(matches!(actions.as_slice(), [Action::Remove(_)]));
        commit(&mut table, actions).await;
        assert_eq!(
            ids(&read_all(&ctx, &table, "t").await.unwrap()),
            vec![5, 6, 7, 8, 9]
        );
        assert_eq!(files(&table, "t").unwrap().len(), 1);
    }

    #[test]
    fn positions_skip_the_deleted_rows_of_each_file() {
        let mut positions = Positions::new(vec![vec![0, 1, 4], vec![]]);
        let first: Vec<u64> = (0..3).map(|_| positions.next(0)).collect();
        assert_eq!(first, vec![2, 3, 5]);
        assert_eq!(positions.next(1), 0);
        assert_eq!(positions.next(1), 1);
        assert_eq!(positions.rows_read(0), 3);
        assert_eq!(positions.rows_read(1), 2);
    }

    #[test]
    fn statistics_of_a_file_with_deletes_are_loose() {
        let stats = serde_json::json!({"numRecords": 3, "tightBounds": true});
        let loose: serde_json::Value = serde_json::from_str(&loose_bounds(&stats)).unwrap();
        assert_eq!(loose["tightBounds"], false);
        assert_eq!(loose["numRecords"], 3);
    }
}
