//! The library's error type and `Result` alias.
//!
//! A leaf of the crate: it depends on [`crate::redact`] (itself a leaf) and on
//! the error types of the libraries it wraps, never on the engine's modules,
//! so every module can return [`Error`] without a dependency circle.

mod storage;

pub use storage::{StorageError, StorageProblem};

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `lakehouse`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file or an environment override is invalid.
    #[error("configuration error in {file}: {message}")]
    Config {
        /// The file (or `environment`) the problem is in.
        file: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },

    /// A storage location could not be resolved or reached, or the startup
    /// storage check failed.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// A Delta Lake operation failed. Displayed with storage secrets masked.
    #[error("delta table {}: {}", crate::redact::redact(table), crate::redact::redact(&source.to_string()))]
    Delta {
        /// The table the operation was on.
        table: String,
        /// The underlying error.
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// Another writer committed to the same table at the same time and this
    /// commit could not be re-applied on top of it (deltalake's conflict
    /// checker refused, or its retries ran out). Nothing of this commit was
    /// written; the next run redoes it.
    #[error("commit conflict on delta table {}: another writer committed to it at the same time; this commit was not written and the next run redoes it ({})", crate::redact::redact(table), crate::redact::redact(&source.to_string()))]
    CommitConflict {
        /// The table.
        table: String,
        /// The underlying error.
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// A table's stored columns or partitioning differ from what the job
    /// writes. The layer that owns the table turns this into its own hint
    /// (e.g. silver's `--full-refresh`).
    #[error("the columns or partitioning of table `{table}` changed since it was built")]
    SchemaChanged {
        /// The table.
        table: String,
    },

    /// A Kafka client operation failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// Building or transforming Arrow data failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// An input file could not be read or parsed.
    #[error("{path}:{line}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the whole file is at fault).
        line: usize,
        /// What is wrong.
        message: String,
    },

    /// An I/O error with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A DataFusion query failed. Displayed with storage secrets masked.
    #[error("query: {}", crate::redact::redact(&.0.to_string()))]
    DataFusion(#[from] datafusion::error::DataFusionError),

    /// A Postgres operation failed (publishing gold marts).
    #[error("postgres: {context}: {source}")]
    Postgres {
        /// What we were doing (mart, statement).
        context: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },

    /// A condition the user can act on, with what to do in the message: a
    /// vacuum below the safe retention, an expectation that failed, a
    /// consumer group with no partitions, marts that could not be published,
    /// a query that does not plan.
    #[error("{0}")]
    Condition(String),

    /// An invariant of the engine broke: a bug in lakehouse, not something
    /// the input or the configuration can cause. Reported as such, so it is
    /// not mistaken for a problem to fix on the user's side.
    #[error("internal error (a bug in lakehouse; please report it): {0}")]
    Internal(String),
}

impl Error {
    /// A configuration error about `file` (a config, spec or SQL file).
    pub fn config(file: impl Into<std::path::PathBuf>, message: impl Into<String>) -> Self {
        Error::Config {
            file: file.into(),
            message: message.into(),
        }
    }

    /// Wraps a Delta error with the table it concerns.
    pub fn delta(table: impl Into<String>, source: deltalake::DeltaTableError) -> Self {
        // A lost commit race becomes `CommitConflict`, so it is reported as one.
        let table = table.into();
        if is_commit_conflict(&source) {
            Error::CommitConflict { table, source }
        } else {
            Error::Delta { table, source }
        }
    }

    /// Wraps a Kafka error with what we were doing.
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    /// Wraps a Postgres error with what we were doing.
    pub fn postgres(context: impl Into<String>, source: sqlx::Error) -> Self {
        Error::Postgres {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Whether a Delta error means another writer won a commit race: the commit
/// was refused as a whole (never half-written), so retrying or redoing it is
/// safe. The one classifier of the crate: [`Error::delta`] uses it to report
/// [`Error::CommitConflict`], and the Delta table layer to decide retries.
pub fn is_commit_conflict(error: &deltalake::DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    matches!(
        error,
        deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        } | deltalake::DeltaTableError::VersionAlreadyExists(_)
    )
}
