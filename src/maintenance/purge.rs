//! Purging deleted rows: `optimize` rewrites the files whose deletion
//! vectors mark many of their rows deleted, with only their live rows.
//!
//! Silver marks replaced rows deleted instead of rewriting their files
//! ([`crate::delta::deletion`]). deltalake's compaction applies the vectors
//! of the files it bin-packs, but it leaves alone a file that is alone in its
//! bin or larger than the target size, so without this step a large
//! dimension file would keep its deleted rows (storage, and every reader
//! skipping them) forever. As Delta Lake's OPTIMIZE does
//! (`optimize.maxDeletedRowsRatio`), a file is rewritten when more than
//! `[maintenance] purge_deleted_ratio` of its rows are deleted; files with
//! fewer keep their vectors, since a rewrite costs the whole file.
//!
//! The rewrite is one commit of `remove`s and `add`s with `dataChange =
//! false` (an OPTIMIZE in the log: the rows are the same), prepared on the
//! loaded snapshot and never retried over another writer's commit (see
//! [`crate::delta::TableCommit`]): a silver run that changed the files in
//! between makes this commit fail, and the next `optimize` purges again.

use deltalake::DeltaTable;
use deltalake::kernel::Remove;

use crate::delta::session::{self, SessionLimits};
use crate::delta::{self, CommitMode, TableCommit, TableFile};
use crate::error::Result;

/// What a purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Files rewritten without their deleted rows.
    pub files: u64,
    /// Deleted rows dropped from storage.
    pub rows: u64,
}

/// Memory a purge's reads may use: one file's rows at a time.
const PURGE_MEMORY: usize = 512 * 1024 * 1024;

/// Whether `file`'s deletion vector marks more than `ratio` of its rows
/// deleted; the count of those rows when it does.
fn purgeable(file: &TableFile, ratio: f64) -> Option<u64> {
    let vector = file.remove.deletion_vector.as_ref()?;
    let written = file.num_records?;
    let deleted = u64::try_from(vector.cardinality).ok()?;
    (written > 0 && deleted as f64 > ratio * written as f64).then_some(deleted)
}

/// Rewrites the files of `table` (named `name`) that hold more than `ratio`
/// deleted rows, one file's rows in memory at a time, in one commit; returns
/// the table as of that commit. A table without such files is returned as
/// it is.
pub async fn purge_deleted(
    mut table: DeltaTable,
    name: &str,
    ratio: f64,
) -> Result<(DeltaTable, Purged)> {
    let files = delta::files(&table, name)?;
    let selected: Vec<(&TableFile, u64)> = files
        .iter()
        .filter_map(|file| purgeable(file, ratio).map(|deleted| (file, deleted)))
        .collect();
    let mut purged = Purged::default();
    if selected.is_empty() {
        return Ok((table, purged));
    }
    let ctx = session::new_session(&SessionLimits {
        memory_limit: PURGE_MEMORY,
        spill_dir: None,
    })?;
    let schema = delta::arrow_schema(&table, name)?;
    let mut removes: Vec<Remove> = Vec::with_capacity(selected.len());
    let mut adds = Vec::new();
    for (file, deleted) in selected {
        // The live rows: read_files skips the positions the vector marks,
        // and checks that live + deleted rows match the file's log entry.
        let live = delta::read_files(&ctx, &table, name, &[file], &schema).await?;
        for mut add in delta::write(&table, name, &live.rows, usize::MAX).await? {
            add.data_change = false;
            adds.push(add);
        }
        removes.push(Remove {
            data_change: false,
            deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
            ..file.remove.clone()
        });
        purged.files += 1;
        purged.rows += deleted;
    }
    TableCommit::new(CommitMode::Optimize)
        .with_removes(removes)
        .with_adds(adds)
        .commit(&mut table, name)
        .await?;
    tracing::info!(
        table = name,
        files = purged.files,
        rows = purged.rows,
        "purged deleted rows"
    );
    Ok((table, purged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::kernel::{DeletionVectorDescriptor, StorageType};

    fn file(written: Option<usize>, deleted: Option<i64>) -> TableFile {
        TableFile {
            path: "part-0.parquet".into(),
            remove: Remove {
                path: "part-0.parquet".into(),
                data_change: true,
                deletion_timestamp: None,
                extended_file_metadata: None,
                partition_values: None,
                size: None,
                tags: None,
                deletion_vector: deleted.map(|cardinality| DeletionVectorDescriptor {
                    storage_type: StorageType::UuidRelativePath,
                    path_or_inline_dv: "vBn[lx{q8@P<9BNH/isA".into(),
                    offset: Some(1),
                    size_in_bytes: 36,
                    cardinality,
                }),
                base_row_id: None,
                default_row_commit_version: None,
            },
            stats: None,
            modification_time: 0,
            num_records: written,
        }
    }

    #[test]
    fn a_file_is_purged_above_the_ratio_of_deleted_rows() {
        assert_eq!(purgeable(&file(Some(100), Some(6)), 0.05), Some(6));
        assert_eq!(purgeable(&file(Some(100), Some(5)), 0.05), None);
        assert_eq!(purgeable(&file(Some(100), Some(1)), 0.0), Some(1));
        assert_eq!(purgeable(&file(Some(100), Some(100)), 1.0), None);
        // No vector, or no row count to compare with: left alone.
        assert_eq!(purgeable(&file(Some(100), None), 0.0), None);
        assert_eq!(purgeable(&file(None, Some(3)), 0.0), None);
    }
}
