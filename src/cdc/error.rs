//! [`DecodeError`]: why a Kafka record could not be decoded.

/// A record that cannot be decoded. The `Display` text names the part or field
/// at fault (`value`, `key.id`, `after.price`, `source.lsn`, ...) and what was
/// wrong, so that it can go to a dead-letter table as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The key or value bytes are not valid JSON.
    #[error("{part} is not JSON: {message}")]
    NotJson {
        /// `key` or `value`.
        part: &'static str,
        /// The parser's message with line and column.
        message: String,
    },
    /// Valid JSON, but not something Debezium writes.
    #[error("{part} is not a Debezium record: {reason}")]
    NotDebezium {
        /// `key` or `value`.
        part: &'static str,
        /// What shape was found.
        reason: String,
    },
    /// The embedded Connect schema is malformed.
    #[error("{path}: invalid schema: {message}")]
    BadSchema {
        /// Path of the schema node (`value.schema.fields[1]`, ...).
        path: String,
        /// What was wrong.
        message: String,
    },
    /// A value does not fit its declared (or hinted) type.
    #[error("{path}: {message}")]
    SchemaMismatch {
        /// Field path (`after.price`, `key.id`, `source.lsn`, ...).
        path: String,
        /// What was expected and what was found.
        message: String,
    },
    /// The `op` field holds an unknown operation code.
    #[error("{path}: unknown operation {op:?}")]
    UnknownOp {
        /// `op` or `__op`.
        path: &'static str,
        /// The code found.
        op: String,
    },
}

impl DecodeError {
    /// A stable category for dead-letter classification and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::NotDebezium { .. } => "not_debezium",
            DecodeError::BadSchema { .. } => "bad_schema",
            DecodeError::SchemaMismatch { .. } => "schema_mismatch",
            DecodeError::UnknownOp { .. } => "unknown_op",
        }
    }

    /// The field path at fault, when the error is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            DecodeError::BadSchema { path, .. } | DecodeError::SchemaMismatch { path, .. } => {
                Some(path)
            }
            DecodeError::UnknownOp { path, .. } => Some(path),
            DecodeError::NotJson { part, .. } | DecodeError::NotDebezium { part, .. } => Some(part),
        }
    }

    pub(crate) fn mismatch(path: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError::SchemaMismatch {
            path: path.into(),
            message: message.into(),
        }
    }
}
