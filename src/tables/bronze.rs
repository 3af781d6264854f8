//! Arrow schemas of the bronze tables.
//!
//! `bronze_events` keeps each Kafka record byte for byte (`raw_key`,
//! `raw_value`) and, beside it, everything silver needs without decoding
//! Debezium again: the op, the source block, a numeric `source_position`, and
//! the key / `before` / `after` rows as string maps whose values are the
//! canonical texts of [`crate::cdc::logical`]. It is partitioned by `topic`,
//! which Debezium names `<prefix>.<schema|db>.<table>`, so a job reading one
//! source table prunes all others.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Layer folder of the bronze tables under the storage root.
pub const LAYER: &str = "bronze";
/// Name of the change-event table.
pub const EVENTS_TABLE: &str = "bronze_events";
/// Name of the dead-letter table.
pub const DEAD_LETTERS_TABLE: &str = "bronze_dead_letters";
/// Partition column of `bronze_events`.
pub const PARTITION_COLUMN: &str = "topic";

/// The Delta/Arrow representation of a map column (`key_value` entries of
/// non-null `key` and nullable `value`), as deltalake reads it back.
pub fn string_map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

fn timestamp_us() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The leading columns of both bronze tables: where a record came from.
fn origin_fields() -> [Field; 4] {
    [
        Field::new("topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_timestamp", timestamp_us(), true),
    ]
}

/// Schema of `bronze_events`.
pub fn events_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields = origin_fields().to_vec();
        fields.extend([
            Field::new("record_kind", DataType::Utf8, false),
            Field::new("op", DataType::Utf8, true),
            Field::new("connector", DataType::Utf8, true),
            Field::new("source_name", DataType::Utf8, true),
            Field::new("source_db", DataType::Utf8, true),
            Field::new("source_schema", DataType::Utf8, true),
            Field::new("source_table", DataType::Utf8, true),
            Field::new("source_lsn", DataType::Int64, true),
            Field::new("source_tx_id", DataType::Int64, true),
            Field::new("source_sequence", DataType::Utf8, true),
            Field::new("binlog_file", DataType::Utf8, true),
            Field::new("binlog_pos", DataType::Int64, true),
            Field::new("binlog_row", DataType::Int32, true),
            Field::new("server_id", DataType::Int64, true),
            Field::new("gtid", DataType::Utf8, true),
            Field::new("source_position", DataType::Decimal128(38, 0), true),
            Field::new("source_ts_ms", DataType::Int64, true),
            Field::new("event_ts_ms", DataType::Int64, true),
            Field::new("snapshot", DataType::Utf8, true),
            Field::new("tx_id", DataType::Utf8, true),
            Field::new("tx_total_order", DataType::Int64, true),
            Field::new("tx_collection_order", DataType::Int64, true),
            Field::new("key", string_map_type(), true),
            Field::new("before", string_map_type(), true),
            Field::new("after", string_map_type(), true),
            Field::new("raw_key", DataType::Binary, true),
            Field::new("raw_value", DataType::Binary, true),
            Field::new("ingested_at", timestamp_us(), false),
            Field::new("batch_id", DataType::Utf8, false),
        ]);
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}

/// Schema of `bronze_dead_letters`.
pub fn dead_letters_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields = origin_fields().to_vec();
        fields.extend([
            Field::new("raw_key", DataType::Binary, true),
            Field::new("raw_value", DataType::Binary, true),
            Field::new("error_kind", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new("failed_at", timestamp_us(), false),
            Field::new("batch_id", DataType::Utf8, false),
        ]);
        Arc::new(Schema::new(fields))
    });
    SCHEMA.clone()
}
