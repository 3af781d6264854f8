//! Change events and transactions: the typed ground truth the simulator emits.

use super::{RowValues, Table};
use chrono::NaiveDateTime;

/// Debezium operation of a change event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Snapshot read (`r`).
    Read,
    /// Insert (`c`).
    Create,
    /// Update (`u`).
    Update,
    /// Delete (`d`).
    Delete,
}

impl Op {
    /// The envelope's `op` letter.
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// One row-level change, exactly as applied to the simulated database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The table changed.
    pub table: Table,
    /// Kind of change.
    pub op: Op,
    /// Row image before the change (REPLICA IDENTITY FULL: every column) for updates and deletes.
    pub before: Option<RowValues>,
    /// Row image after the change for reads, inserts and updates.
    pub after: Option<RowValues>,
    /// WAL position of the change (`source.lsn`).
    pub lsn: i64,
    /// Connector processing time in simulated epoch milliseconds (envelope `ts_ms`;
    /// for snapshot reads also `source.ts_ms`).
    pub ts_ms: i64,
}

/// One committed source transaction (streaming phase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Postgres transaction id (`source.txId`); strictly increasing.
    pub tx_id: i64,
    /// LSN of the BEGIN record; part of the Debezium transaction id `"txId:lsn_start"`.
    pub lsn_start: i64,
    /// LSN of the COMMIT record.
    pub commit_lsn: i64,
    /// COMMIT LSN of the previous transaction (first element of `source.sequence`).
    pub prev_commit_lsn: i64,
    /// Commit time (`source.ts_ms`, microsecond precision).
    pub commit_ts: NaiveDateTime,
    /// The row changes, in WAL order.
    pub changes: Vec<Change>,
}

impl Transaction {
    /// Debezium's transaction id for Postgres: `"<txId>:<lsn>"`.
    pub fn debezium_id(&self) -> String {
        format!("{}:{}", self.tx_id, self.lsn_start)
    }
}

/// The initial snapshot: one read (`r`) per existing row, table by table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Transaction id of the exported snapshot (`source.txId`).
    pub tx_id: i64,
    /// WAL position at which the snapshot was taken (`source.lsn` of every read).
    pub lsn: i64,
    /// Time the snapshot started.
    pub ts: NaiveDateTime,
    /// The reads, grouped by table in [`Table::ALL`] order.
    pub changes: Vec<Change>,
}
