//! Debezium change-event decoding.
//!
//! [`Decoder::decode`] turns one Kafka record (key and value bytes) written by a
//! Debezium connector through Kafka Connect's `JsonConverter` into a
//! [`DecodedRecord`]: the operation, the source block (connector, database,
//! table, position), transaction metadata, and the key / `before` / `after` rows
//! with every Debezium logical type resolved to a canonical text form (see
//! [`logical`]).
//!
//! Supported inputs: envelopes with schema (`schemas.enable=true`) and without,
//! ops `c`/`u`/`d`/`r`/`t`, tombstones (null value, or the legacy
//! `{"schema":null,"payload":null}`), records flattened by the
//! `ExtractNewRecordState` SMT (`__op`, `__deleted`, `__table`, ...), Postgres and
//! MySQL source blocks, and the non-row records (transaction BEGIN/END, heartbeats,
//! MySQL schema changes, PG logical messages) which are recognised and reported
//! as such so that bronze does not write them as table rows.
//!
//! The decoder never panics on bad input: anything that is not JSON, not a
//! Debezium record, or whose value does not fit its declared schema is a
//! [`DecodeError`] naming the field at fault.
//!
//! This module depends on nothing else in the crate, so it can be tested and
//! benchmarked on its own.

mod decoder;
mod error;
pub mod json;
pub mod logical;
mod row;
pub mod schema;
#[cfg(test)]
mod tests;

pub use decoder::Decoder;
pub use error::DecodeError;
pub use logical::{FieldType, TypeHints};
pub use row::Row;

/// What a Kafka record turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A row change (`op` c/u/d/r/t), from a full envelope or an unwrapped record.
    Change,
    /// A null value (or `{"schema":null,"payload":null}`) following a delete.
    Tombstone,
    /// A transaction BEGIN/END record from `<prefix>.transaction`.
    TransactionMarker,
    /// A heartbeat record from `__debezium-heartbeat.<prefix>`.
    Heartbeat,
    /// A MySQL schema-change (DDL) record from the `<prefix>` topic.
    SchemaChange,
    /// A Postgres logical decoding message (`op` = `m`).
    LogicalMessage,
}

impl RecordKind {
    /// Whether records of this kind are written to the bronze table as rows.
    pub fn is_table_row(self) -> bool {
        matches!(self, RecordKind::Change | RecordKind::Tombstone)
    }

    /// Stable lower-case name, as used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Change => "change",
            RecordKind::Tombstone => "tombstone",
            RecordKind::TransactionMarker => "transaction",
            RecordKind::Heartbeat => "heartbeat",
            RecordKind::SchemaChange => "schema_change",
            RecordKind::LogicalMessage => "logical_message",
        }
    }
}

/// A Debezium operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `c`: insert.
    Create,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `r`: snapshot read.
    Read,
    /// `t`: truncate (Postgres).
    Truncate,
}

impl Op {
    /// Parses Debezium's one-letter code.
    pub fn from_code(code: &str) -> Option<Op> {
        match code {
            "c" => Some(Op::Create),
            "u" => Some(Op::Update),
            "d" => Some(Op::Delete),
            "r" => Some(Op::Read),
            "t" => Some(Op::Truncate),
            _ => None,
        }
    }

    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// The `source` block of an envelope (or the `__` fields of an unwrapped record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// `postgresql`, `mysql`, ...
    pub connector: Option<String>,
    /// Connector name / topic prefix (`source.name`).
    pub name: Option<String>,
    /// Database name (`source.db`).
    pub db: Option<String>,
    /// Schema name (Postgres `source.schema`).
    pub schema: Option<String>,
    /// Table name (`source.table`).
    pub table: Option<String>,
    /// Postgres WAL position of the change (`source.lsn`).
    pub lsn: Option<i64>,
    /// Postgres transaction id (`source.txId`).
    pub tx_id: Option<i64>,
    /// Postgres `source.sequence`, the JSON-array-in-a-string, kept verbatim.
    pub sequence: Option<String>,
    /// MySQL binlog file name (`source.file`).
    pub binlog_file: Option<String>,
    /// MySQL binlog position (`source.pos`).
    pub binlog_pos: Option<i64>,
    /// MySQL row within the binlog event (`source.row`).
    pub binlog_row: Option<i32>,
    /// MySQL `source.server_id`.
    pub server_id: Option<i64>,
    /// MySQL `source.gtid`.
    pub gtid: Option<String>,
    /// When the change happened in the database (`source.ts_ms`).
    pub ts_ms: Option<i64>,
    /// `source.snapshot` as text (`true`, `false`, `last`, `first`, ...; a legacy boolean becomes `true`/`false`).
    pub snapshot: Option<String>,
    /// Debezium version that wrote the record (`source.version`).
    pub version: Option<String>,
    /// `source.ts_us` (Debezium 2.x+): the change time in microseconds.
    pub ts_us: Option<i64>,
    /// `source.ts_ns` (Debezium 2.x+): the change time in nanoseconds.
    pub ts_ns: Option<i64>,
}

impl SourceInfo {
    /// A position that orders changes of one source database numerically:
    /// the Postgres LSN, or for MySQL `binlog file number × 10^16 + pos × 10^6 + row`.
    /// `None` when the record carries neither.
    pub fn position(&self) -> Option<i128> {
        if let Some(lsn) = self.lsn {
            return Some(i128::from(lsn));
        }
        let file = self.binlog_file.as_deref()?;
        let file_number: i128 = file.rsplit('.').next()?.parse().ok()?;
        let pos = i128::from(self.binlog_pos.unwrap_or(0));
        let row = i128::from(self.binlog_row.unwrap_or(0));
        Some(file_number * 10_i128.pow(16) + pos * 10_i128.pow(6) + row)
    }
}

/// The envelope's `transaction` block (`provide.transaction.metadata=true`), or
/// the BEGIN/END record itself for [`RecordKind::TransactionMarker`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionInfo {
    /// Transaction id (`"txId:LSN"` for Postgres, the GTID or `file=...,pos=...` for MySQL).
    pub id: Option<String>,
    /// Position of the event among all events of the transaction.
    pub total_order: Option<i64>,
    /// Position of the event among the events of its table in the transaction.
    pub data_collection_order: Option<i64>,
    /// `BEGIN` or `END`, for transaction markers only.
    pub status: Option<String>,
    /// `event_count`, for END markers only.
    pub event_count: Option<i64>,
}

/// One decoded record. The decoder reuses it between calls (clearing it first)
/// so that its buffers are allocated once per batch, not once per record.
#[derive(Debug, Clone, Default)]
pub struct DecodedRecord {
    /// The operation; `None` for tombstones and non-row records.
    pub op: Option<Op>,
    /// The source block.
    pub source: SourceInfo,
    /// Transaction metadata.
    pub transaction: TransactionInfo,
    /// Envelope `ts_ms`: when the connector processed the event.
    pub event_ts_ms: Option<i64>,
    /// Envelope `ts_us` (Debezium 2.x+).
    pub event_ts_us: Option<i64>,
    /// Envelope `ts_ns` (Debezium 2.x+), exact int64 nanoseconds.
    pub event_ts_ns: Option<i64>,
    /// The DDL statement of a [`RecordKind::SchemaChange`] record.
    pub ddl: Option<String>,
    /// The decoded key, when the record has a non-null key.
    pub key: Option<Row>,
    /// The row before the change (updates and deletes, depending on replica identity).
    pub before: Option<Row>,
    /// The row after the change (inserts, updates, snapshot reads).
    pub after: Option<Row>,
}

impl DecodedRecord {
    /// Resets every field.
    pub fn clear(&mut self) {
        self.op = None;
        self.source = SourceInfo::default();
        self.transaction = TransactionInfo::default();
        self.event_ts_ms = None;
        self.event_ts_us = None;
        self.event_ts_ns = None;
        self.ddl = None;
        self.key = None;
        self.before = None;
        self.after = None;
    }
}
