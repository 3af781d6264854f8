//! The Delta table layer every layer writes and reads through.
//!
//! Below the layers (bronze, silver, gold, maintenance) and above
//! [`crate::storage`]: creating and opening tables ([`table`]), choosing the
//! files a rewrite touches ([`prune`]), committing data with its watermarks
//! ([`commit`]), and the DataFusion sessions that read them ([`session`]),
//! locally or on a Ballista cluster ([`cluster`]).
//! It knows nothing of any layer: callers name their tables and turn its
//! typed errors (e.g. [`crate::Error::SchemaChanged`]) into their own hints.

pub mod checkpoint;
pub mod cluster;
pub mod commit;
pub mod deletion;
pub mod prune;
pub mod session;
pub mod table;

pub use commit::{CommitMode, TableCommit, txn_version, version};
pub use prune::{KEY_SEPARATOR, KeyValues, candidates, key_strings};
pub use table::{
    FileRows, Relayout, TableFile, arrow_schema, conform, ensure, files, open_for_refresh,
    read_all, read_files, write, write_to,
};
