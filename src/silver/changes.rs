//! Which bronze files a run reads: the data files committed after the
//! table's watermark, found in the bronze Delta log.
//!
//! Only `add` actions with `dataChange = true` in commits `(watermark,
//! latest]` are new changes; files rewritten by `optimize` (dataChange =
//! false) hold rows already seen. Files are selected by their `topic`
//! partition value, so a table reads only its own topic. Reading the commit
//! JSON of the new versions costs time in proportion to the new commits, not
//! to the table.

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;

use crate::error::{Error, Result};
use crate::tables::bronze::{EVENTS_TABLE, PARTITION_COLUMN};

/// A bronze data file to read, as a full URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BronzeFile {
    /// The file's URL.
    pub url: String,
    /// The bronze version that committed it.
    pub version: i64,
}

/// Data files of `topics` added by bronze commits in `(after, upto]`; with
/// `after = None`, every file of those topics in the snapshot (a full load).
pub async fn new_files(
    table: &DeltaTable,
    topics: &[&str],
    after: Option<i64>,
    upto: i64,
) -> Result<Vec<BronzeFile>> {
    let wanted = |values: &std::collections::HashMap<String, Option<String>>| {
        values
            .get(PARTITION_COLUMN)
            .and_then(|v| v.as_deref())
            .is_some_and(|topic| topics.contains(&topic))
    };
    let mut files = Vec::new();
    match after {
        None => {
            let snapshot = table
                .snapshot()
                .map_err(|e| Error::delta(EVENTS_TABLE, e))?;
            for view in snapshot.log_data() {
                if wanted(&view.partition_values_map()) {
                    files.push(BronzeFile {
                        url: crate::storage::data_file_url(table, &view.path()),
                        version: upto,
                    });
                }
            }
        }
        Some(after) => {
            let log_store = table.log_store();
            for version in (after + 1)..=upto {
                let bytes = log_store
                    .read_commit_entry(version as u64)
                    .await
                    .map_err(|e| Error::delta(EVENTS_TABLE, e))?
                    .ok_or_else(|| {
                        Error::Condition(format!(
                            "bronze_events commit {version} is no longer in the Delta log \
                             (log cleanup ran past the silver watermark {after}); \
                             rebuild with `lakehouse run silver --full-refresh`"
                        ))
                    })?;
                let actions = get_actions(version as u64, &bytes)
                    .map_err(|e| Error::delta(EVENTS_TABLE, e))?;
                for action in actions {
                    if let Action::Add(add) = action
                        && add.data_change
                        && wanted(&add.partition_values)
                    {
                        files.push(BronzeFile {
                            url: crate::storage::data_file_url(table, &add.path),
                            version,
                        });
                    }
                }
            }
        }
    }
    Ok(files)
}
