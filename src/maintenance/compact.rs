//! Bronze's automatic compaction and checkpoints, run after its commits.
//!
//! A continuous bronze run commits a small file per topic every flush
//! interval; left alone that is thousands of files a day, and every reader
//! lists and opens them all. After each commit [`BronzeUpkeep`] counts, per
//! topic partition, the files smaller than `auto_compact_target_size` (an
//! in-memory pass over the snapshot bronze already holds) and, once one topic
//! has `auto_compact_files` of them, compacts the table with that target size.
//! Only files below the target are rewritten, so one compaction costs at most
//! about one target-size file per topic plus the new small files: bounded
//! however large the table grows. The compaction commits with
//! `dataChange = false`, so silver does not read those rows again.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::Instant;

use deltalake::DeltaTable;

use super::MaintenanceConfig;
use crate::delta::checkpoint::{checkpoint_if_due, is_due, last_checkpoint};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::tables::bronze::PARTITION_COLUMN;

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Files replaced.
    pub files_removed: u64,
    /// Files written.
    pub files_added: u64,
    /// Table version after it.
    pub version: Option<i64>,
}

/// Upkeep of one bronze table: auto-compaction and checkpoints.
#[derive(Debug, Clone)]
pub struct BronzeUpkeep {
    config: MaintenanceConfig,
    /// Where the compaction leases live.
    root: StorageRoot,
    /// Last checkpoint per table, once read (saves a read per commit).
    checkpoints: HashMap<String, Option<i64>>,
    /// Compactions done by this process.
    pub compactions: u64,
}

impl BronzeUpkeep {
    /// Upkeep with the `[maintenance]` settings of the tables under `root`.
    pub fn new(config: MaintenanceConfig, root: StorageRoot) -> Self {
        Self {
            config,
            root,
            checkpoints: HashMap::new(),
            compactions: 0,
        }
    }

    /// The largest number of small files any topic partition of `table` holds.
    pub fn small_files(table: &DeltaTable, name: &str, below: u64) -> Result<u64> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
        let mut per_partition: HashMap<Option<String>, u64> = HashMap::new();
        for file in snapshot.log_data() {
            if u64::try_from(file.size()).unwrap_or(0) < below {
                let topic = file
                    .partition_values_map()
                    .get(PARTITION_COLUMN)
                    .cloned()
                    .flatten();
                *per_partition.entry(topic).or_default() += 1;
            }
        }
        Ok(per_partition.values().copied().max().unwrap_or(0))
    }

    /// Called after a commit to `table` (loaded at its latest version):
    /// compacts when a topic has too many small files, then checkpoints when
    /// due. Returns the compaction done, if any; the table handle the caller
    /// holds is stale afterwards and must be reloaded before the next write.
    pub async fn after_commit(
        &mut self,
        table: &DeltaTable,
        name: &str,
    ) -> Result<Option<Compaction>> {
        let mut compaction = None;
        let mut latest = table.clone();
        let threshold = self.config.auto_compact_files;
        let below = self.config.auto_compact_target_size;
        if threshold > 0 && Self::small_files(table, name, below)? >= threshold {
            let started = Instant::now();
            let size = NonZeroU64::new(below).ok_or_else(|| {
                Error::Condition("maintenance.auto_compact_target_size must be at least 1".into())
            })?;
            let properties = super::writer_properties()?;
            let work = async {
                table
                    .clone()
                    .optimize()
                    .with_target_size(size)
                    .with_writer_properties(properties)
                    .await
                    .map_err(|e| Error::delta(name, e))
            };
            let qualified = format!("{}.{name}", crate::tables::bronze::LAYER);
            // Another consumer of the group may be compacting the same
            // table: then it does the work and this one goes on ingesting.
            let (optimized, metrics) =
                match super::exclusive::exclusively(&self.root, &qualified, work).await? {
                    super::exclusive::Exclusive::Done(done) => done,
                    super::exclusive::Exclusive::Busy { .. } => {
                        self.checkpoint(&latest, name).await?;
                        return Ok(None);
                    }
                };
            self.compactions += 1;
            tracing::info!(
                table = name,
                files_removed = metrics.num_files_removed,
                files_added = metrics.num_files_added,
                version = ?crate::delta::version(&optimized),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "bronze auto-compaction"
            );
            compaction = Some(Compaction {
                files_removed: metrics.num_files_removed,
                files_added: metrics.num_files_added,
                version: crate::delta::version(&optimized),
            });
            latest = optimized;
        }
        self.checkpoint(&latest, name).await?;
        Ok(compaction)
    }

    async fn checkpoint(&mut self, table: &DeltaTable, name: &str) -> Result<()> {
        let interval = self.config.checkpoint_interval;
        let Some(version) = crate::delta::version(table) else {
            return Ok(());
        };
        if interval == 0 {
            return Ok(());
        }
        let last = match self.checkpoints.get(name) {
            Some(last) => *last,
            None => {
                let last = last_checkpoint(table, name).await?;
                self.checkpoints.insert(name.to_string(), last);
                last
            }
        };
        if is_due(version, last, interval) {
            // Another process may have checkpointed meanwhile: re-check on storage.
            if let Some(done) = checkpoint_if_due(table, name, interval).await? {
                self.checkpoints.insert(name.to_string(), Some(done));
            } else {
                let last = last_checkpoint(table, name).await?;
                self.checkpoints.insert(name.to_string(), last);
            }
        }
        Ok(())
    }
}
