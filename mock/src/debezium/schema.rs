//! Kafka Connect schema JSON, rendered once per table in the exact key order
//! JsonConverter writes (`type`, `fields`/`items`, `optional`, `name`, `version`,
//! `parameters`, `default`, `field`) and the field order Debezium 2.7 builds for
//! the PostgreSQL connector.

use super::json::push_str;
use crate::model::{Column, ColumnType, Table};

/// Debezium version reported in `source.version`.
pub const DEBEZIUM_VERSION: &str = "2.7.3.Final";

/// Allowed values of the `source.snapshot` enum in Debezium 2.6+.
const SNAPSHOT_ALLOWED: &str =
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

fn push_field_schema(buf: &mut String, col: &Column) {
    let (ty, logical): (&str, Option<&str>) = match col.ty {
        ColumnType::Int16 => ("int16", None),
        ColumnType::Int32 => ("int32", None),
        ColumnType::Int64 => ("int64", None),
        ColumnType::Text => ("string", None),
        ColumnType::Bool => ("boolean", None),
        ColumnType::Numeric { .. } => ("bytes", Some("org.apache.kafka.connect.data.Decimal")),
        ColumnType::Date => ("int32", Some("io.debezium.time.Date")),
        ColumnType::Timestamp => ("int64", Some("io.debezium.time.MicroTimestamp")),
        ColumnType::TimestampTz => ("string", Some("io.debezium.time.ZonedTimestamp")),
        ColumnType::Uuid => ("string", Some("io.debezium.data.Uuid")),
        ColumnType::Jsonb => ("string", Some("io.debezium.data.Json")),
    };
    buf.push_str("{\"type\":\"");
    buf.push_str(ty);
    buf.push_str("\",\"optional\":");
    buf.push_str(if col.nullable { "true" } else { "false" });
    if let Some(name) = logical {
        buf.push_str(",\"name\":\"");
        buf.push_str(name);
        buf.push_str("\",\"version\":1");
    }
    if let ColumnType::Numeric { precision, scale } = col.ty {
        buf.push_str(",\"parameters\":{\"scale\":\"");
        buf.push_str(&scale.to_string());
        buf.push_str("\",\"connect.decimal.precision\":\"");
        buf.push_str(&precision.to_string());
        buf.push_str("\"}");
    }
    if let Some(default) = col.default {
        buf.push_str(",\"default\":");
        buf.push_str(default);
    }
    buf.push_str(",\"field\":");
    push_str(buf, col.name);
    buf.push('}');
}

fn push_struct<'a>(
    buf: &mut String,
    cols: impl Iterator<Item = &'a Column>,
    optional: bool,
    name: &str,
) {
    buf.push_str("{\"type\":\"struct\",\"fields\":[");
    for (i, col) in cols.enumerate() {
        if i > 0 {
            buf.push(',');
        }
        push_field_schema(buf, col);
    }
    buf.push_str("],\"optional\":");
    buf.push_str(if optional { "true" } else { "false" });
    buf.push_str(",\"name\":");
    push_str(buf, name);
}

/// Key schema: a struct of the primary-key columns named `<prefix>.public.<table>.Key`.
pub fn key_schema(prefix: &str, table: Table) -> String {
    let mut buf = String::with_capacity(256);
    let name = format!("{prefix}.public.{}.Key", table.name());
    push_struct(
        &mut buf,
        table.columns().iter().filter(|c| c.primary_key),
        false,
        &name,
    );
    buf.push('}');
    buf
}

/// The `io.debezium.connector.postgresql.Source` block schema (with `field`).
fn source_schema(buf: &mut String) {
    buf.push_str(concat!(
        "{\"type\":\"struct\",\"fields\":[",
        "{\"type\":\"string\",\"optional\":false,\"field\":\"version\"},",
        "{\"type\":\"string\",\"optional\":false,\"field\":\"connector\"},",
        "{\"type\":\"string\",\"optional\":false,\"field\":\"name\"},",
        "{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"},",
        "{\"type\":\"string\",\"optional\":true,\"name\":\"io.debezium.data.Enum\",\"version\":1,",
        "\"parameters\":{\"allowed\":\""
    ));
    buf.push_str(SNAPSHOT_ALLOWED);
    buf.push_str(concat!(
        "\"},\"default\":\"false\",\"field\":\"snapshot\"},",
        "{\"type\":\"string\",\"optional\":false,\"field\":\"db\"},",
        "{\"type\":\"string\",\"optional\":true,\"field\":\"sequence\"},",
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},",
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"},",
        "{\"type\":\"string\",\"optional\":false,\"field\":\"schema\"},",
        "{\"type\":\"string\",\"optional\":false,\"field\":\"table\"},",
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"txId\"},",
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"lsn\"},",
        "{\"type\":\"int64\",\"optional\":true,\"field\":\"xmin\"}",
        "],\"optional\":false,\"name\":\"io.debezium.connector.postgresql.Source\",\"field\":\"source\"}"
    ));
}

/// The `event.block` transaction schema (with `field`).
const TRANSACTION_BLOCK_SCHEMA: &str = concat!(
    "{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"total_order\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"data_collection_order\"}",
    "],\"optional\":true,\"name\":\"event.block\",\"version\":1,\"field\":\"transaction\"}"
);

/// Value schema: the `<prefix>.public.<table>.Envelope` (version 2) struct.
pub fn envelope_schema(prefix: &str, table: Table) -> String {
    let mut buf = String::with_capacity(4096);
    let value_name = format!("{prefix}.public.{}.Value", table.name());
    buf.push_str("{\"type\":\"struct\",\"fields\":[");
    for field in ["before", "after"] {
        push_struct(&mut buf, table.columns().iter(), true, &value_name);
        buf.push_str(",\"field\":\"");
        buf.push_str(field);
        buf.push_str("\"},");
    }
    source_schema(&mut buf);
    buf.push(',');
    buf.push_str(TRANSACTION_BLOCK_SCHEMA);
    buf.push_str(concat!(
        ",{\"type\":\"string\",\"optional\":false,\"field\":\"op\"}",
        ",{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"}",
        ",{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"}",
        ",{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"}",
        "],\"optional\":false,\"name\":"
    ));
    push_str(
        &mut buf,
        &format!("{prefix}.public.{}.Envelope", table.name()),
    );
    buf.push_str(",\"version\":2}");
    buf
}

/// Key schema of records on the `<prefix>.transaction` topic.
pub const TX_KEY_SCHEMA: &str = concat!(
    "{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"optional\":false,\"field\":\"id\"}],",
    "\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataKey\",\"version\":1}"
);

/// Value schema of records on the `<prefix>.transaction` topic.
pub const TX_VALUE_SCHEMA: &str = concat!(
    "{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"status\"},",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"id\"},",
    "{\"type\":\"int64\",\"optional\":true,\"field\":\"event_count\"},",
    "{\"type\":\"array\",\"items\":{\"type\":\"struct\",\"fields\":[",
    "{\"type\":\"string\",\"optional\":false,\"field\":\"data_collection\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"event_count\"}",
    "],\"optional\":true,\"name\":\"event.collection\",\"version\":1},\"optional\":true,\"field\":\"data_collections\"},",
    "{\"type\":\"int64\",\"optional\":false,\"field\":\"ts_ms\"}",
    "],\"optional\":false,\"name\":\"io.debezium.connector.common.TransactionMetadataValue\",\"version\":1}"
);
