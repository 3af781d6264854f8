//! Delta commits: one builder for every writer, and the `txn` watermarks.
//!
//! Every layer commits through [`TableCommit`]: removes, adds, `txn`
//! application transactions (the watermarks that make a run exactly once)
//! and run metadata go into a single Delta commit, so a table is either as
//! before or fully updated.

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};

use super::table::Relayout;
use crate::error::{Error, Result};

/// The table's version as the signed number `txn` actions use.
pub fn version(table: &DeltaTable) -> Option<i64> {
    table.version().map(|v| v as i64)
}

/// The table's stored watermark for `app_id` (`None` for a table not created
/// yet, or one no commit with `app_id` reached).
pub async fn txn_version(table: &DeltaTable, name: &str, app_id: &str) -> Result<Option<i64>> {
    if table.version().is_none() {
        return Ok(None);
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(name, e))
}

/// What a commit does to the table's data, as the Delta log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// Adds files (and removes none): a `WRITE` in append mode. Retried on
    /// top of other writers' commits, since appends never conflict in content.
    Append,
    /// Replaces some files by others: an `UPDATE`.
    #[default]
    Update,
    /// Replaces the whole table: a `WRITE` in overwrite mode.
    Overwrite,
    /// Replaces files by files holding the same rows (their `dataChange`
    /// is false): an `OPTIMIZE`.
    Optimize,
}

impl CommitMode {
    /// [`CommitMode::Overwrite`] when `overwrite`, else [`CommitMode::Update`].
    pub fn from_overwrite(overwrite: bool) -> Self {
        if overwrite {
            CommitMode::Overwrite
        } else {
            CommitMode::Update
        }
    }
}

/// One Delta commit, in the style of delta-rs's `CommitProperties`: build it
/// with the actions, watermarks and metadata, then [`TableCommit::commit`].
///
/// Retries: a commit that removes files (a rewrite, an overwrite, a
/// relayout) was prepared on the loaded snapshot and is never retried on top
/// of another writer's commit. deltalake 1.1's conflict checker ignores
/// removals with `dataChange = false`, so after an `optimize` replaced the
/// files this commit rewrites, a retry would keep the optimize's copy of the
/// rows and add ours: duplicates. Such a commit fails as
/// [`Error::CommitConflict`] instead, and the next run redoes it. Appends
/// retry up to [`TableCommit::with_max_retries`] times.
#[derive(Debug, Default)]
#[must_use = "a TableCommit does nothing until `commit` is called"]
pub struct TableCommit {
    mode: CommitMode,
    relayout: Option<Relayout>,
    removes: Vec<Remove>,
    adds: Vec<Add>,
    transactions: Vec<Transaction>,
    metadata: serde_json::Map<String, serde_json::Value>,
    max_retries: Option<usize>,
}

impl TableCommit {
    /// An empty commit in `mode`.
    pub fn new(mode: CommitMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Files the commit retires.
    pub fn with_removes(mut self, removes: Vec<Remove>) -> Self {
        self.removes = removes;
        self
    }

    /// Files the commit adds.
    pub fn with_adds(mut self, adds: Vec<Add>) -> Self {
        self.adds = adds;
        self
    }

    /// `txn` watermarks committed atomically with the data.
    pub fn with_transactions(mut self, transactions: Vec<Transaction>) -> Self {
        self.transactions = transactions;
        self
    }

    /// Commit metadata (`commitInfo`), e.g. the run's phases or batch id.
    pub fn with_metadata(mut self, metadata: serde_json::Map<String, serde_json::Value>) -> Self {
        self.metadata = metadata;
        self
    }

    /// A full refresh's new columns or partitioning, leading the commit so
    /// schema, data and watermark change together.
    pub fn with_relayout(mut self, relayout: Option<Relayout>) -> Self {
        self.relayout = relayout;
        self
    }

    /// How often deltalake may re-validate and retry the commit on top of
    /// other writers' commits (rewrites never retry; see the type's docs).
    pub fn with_max_retries(mut self, max_retries: usize) -> Self {
        self.max_retries = Some(max_retries);
        self
    }

    /// Whether the commit replaces data prepared on the loaded snapshot.
    fn rewrites(&self) -> bool {
        !self.removes.is_empty() || self.mode == CommitMode::Overwrite || self.relayout.is_some()
    }

    /// Commits to `table` (named `name` in errors), then loads the new
    /// state. Returns the committed version.
    pub async fn commit(self, table: &mut DeltaTable, name: &str) -> Result<i64> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
        let partition_by = match &self.relayout {
            Some(r) => r.partition_by.clone(),
            None => snapshot.metadata().partition_columns().to_vec(),
        };
        let partition_by = (!partition_by.is_empty()).then_some(partition_by);
        let operation = match self.mode {
            CommitMode::Append => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by,
                predicate: None,
            },
            CommitMode::Update => DeltaOperation::Update { predicate: None },
            CommitMode::Optimize => DeltaOperation::Optimize {
                predicate: None,
                target_size: 0,
            },
            CommitMode::Overwrite => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by,
                predicate: None,
            },
        };
        let rewrites = self.rewrites();
        let mut actions: Vec<Action> = self.relayout.map(|r| r.actions).unwrap_or_default();
        actions.extend(self.removes.into_iter().map(Action::Remove));
        actions.extend(self.adds.into_iter().map(Action::Add));
        let mut properties = CommitProperties::default()
            .with_application_transactions(self.transactions)
            .with_metadata(self.metadata);
        if rewrites {
            properties = properties.with_max_retries(0);
        } else if let Some(retries) = self.max_retries {
            properties = properties.with_max_retries(retries);
        }
        let finalized = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await
            .map_err(|e| Error::delta(name, e))?;
        let version = i64::try_from(finalized.version()).map_err(|_| {
            Error::delta(
                name,
                DeltaTableError::Generic(format!("version {} out of range", finalized.version())),
            )
        })?;
        table
            .update_state()
            .await
            .map_err(|e| Error::delta(name, e))?;
        Ok(version)
    }
}
