//! `[maintenance]`: compaction, vacuum retention and checkpoints.

use serde::Deserialize;

/// `[maintenance]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// `lakehouse vacuum` deletes files removed from a table longer ago than this.
    pub retention_hours: u64,
    /// Retention below this is refused unless `--force`: readers of older
    /// versions (time travel, a silver or gold run still reading files that
    /// an `optimize` replaced) need the files. 168 hours is deltalake's own
    /// default (`delta.deletedFileRetentionDuration`); a table property that
    /// is longer wins.
    pub min_retention_hours: u64,
    /// Write a Delta checkpoint once this many commits have followed the last
    /// one (0: only deltalake's own default of one every 100 commits).
    pub checkpoint_interval: u64,
    /// `optimize`: files smaller than this are compacted, into files of up to this size.
    pub target_file_size: u64,
    /// Bronze: compact `bronze_events` once a topic holds this many files
    /// smaller than `auto_compact_target_size` (0: never automatically; run
    /// `lakehouse optimize`). Checked after every bronze commit, so the file
    /// count stays bounded however small the commits of a continuous run are.
    pub auto_compact_files: u64,
    /// Continuous bronze: automatic compaction only rewrites files smaller
    /// than this, into files of up to this size, so each compaction rewrites
    /// at most about this much per topic whatever the table's size.
    pub auto_compact_target_size: u64,
    /// `optimize`: a file whose deletion vector marks more than this share
    /// of its rows deleted is rewritten without them, even where the
    /// compaction leaves it (alone in its bin, or above the target size);
    /// 0 purges every deleted row, 1 never rewrites for deleted rows. Delta
    /// Lake's `optimize.maxDeletedRowsRatio` default.
    pub purge_deleted_ratio: f64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            retention_hours: 168,
            min_retention_hours: 168,
            checkpoint_interval: 10,
            target_file_size: 128 * 1024 * 1024,
            auto_compact_files: 50,
            auto_compact_target_size: 32 * 1024 * 1024,
            purge_deleted_ratio: 0.05,
        }
    }
}

impl MaintenanceConfig {
    /// Checks the values; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.target_file_size == 0 {
            return Err("maintenance.target_file_size must be at least 1".into());
        }
        if self.auto_compact_target_size == 0 {
            return Err("maintenance.auto_compact_target_size must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.purge_deleted_ratio) {
            return Err(format!(
                "maintenance.purge_deleted_ratio must be between 0 and 1, not {}",
                self.purge_deleted_ratio
            ));
        }
        if self.auto_compact_files == 1 {
            return Err(
                "maintenance.auto_compact_files = 1 would rewrite after every commit; \
                 use 0 (off) or at least 2"
                    .into(),
            );
        }
        Ok(())
    }
}
