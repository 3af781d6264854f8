//! Typed model of the simulated OLTP database: tables, columns and cell values.
//!
//! These types are the *ground truth* the simulator applies; tests decode the Debezium
//! output and compare it against them, so values are kept exact (decimals as unscaled
//! integers, timestamps with microsecond precision like Postgres).

mod change;
mod tables;

pub use change::{Change, Op, Snapshot, Transaction};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// One cell value, typed like the Postgres column it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `smallint`, `integer` or `bigint`.
    Int(i64),
    /// `text` / `varchar`.
    Text(String),
    /// `boolean`.
    Bool(bool),
    /// `numeric(p,s)`: the value is `unscaled * 10^-scale`.
    Decimal {
        /// Unscaled integer value (e.g. `1999` for `19.99` at scale 2).
        unscaled: i128,
        /// Number of fractional digits; always equals the column's scale.
        scale: u32,
    },
    /// `date`.
    Date(NaiveDate),
    /// `timestamp without time zone` (microsecond precision).
    Timestamp(NaiveDateTime),
    /// `timestamp with time zone` (microsecond precision).
    TimestampTz(DateTime<Utc>),
    /// `uuid`, as its 128-bit value.
    Uuid(u128),
    /// `jsonb`, as its compact JSON text.
    Json(String),
}

impl Value {
    /// Convenience constructor for a `numeric(_, 2)` amount given in cents.
    pub fn money(cents: i64) -> Value {
        Value::Decimal {
            unscaled: i128::from(cents),
            scale: 2,
        }
    }

    /// The integer payload, if this is an [`Value::Int`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The text payload, if this is a [`Value::Text`].
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The unscaled decimal payload, if this is a [`Value::Decimal`].
    pub fn as_unscaled(&self) -> Option<i128> {
        match self {
            Value::Decimal { unscaled, .. } => Some(*unscaled),
            _ => None,
        }
    }
}

/// A row image: `(column, value)` pairs in the table's column order.
pub type RowValues = Vec<(&'static str, Value)>;

/// Looks up a column's value in a row image.
pub fn get<'a>(row: &'a RowValues, column: &str) -> Option<&'a Value> {
    row.iter().find(|(c, _)| *c == column).map(|(_, v)| v)
}

/// Replaces a column's value in a row image (no-op if the column does not exist).
pub fn set(row: &mut RowValues, column: &str, value: Value) {
    if let Some(slot) = row.iter_mut().find(|(c, _)| *c == column) {
        slot.1 = value;
    }
}

/// Postgres column types used by the shop schema, with the Debezium mapping the
/// encoder applies (see `debezium::schema`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// `smallint` → Connect `int16`.
    Int16,
    /// `integer` / `serial` → Connect `int32`.
    Int32,
    /// `bigint` / `bigserial` → Connect `int64`.
    Int64,
    /// `text` → Connect `string`.
    Text,
    /// `boolean` → Connect `boolean`.
    Bool,
    /// `numeric(precision, scale)` → `org.apache.kafka.connect.data.Decimal` bytes.
    Numeric {
        /// Declared precision.
        precision: u32,
        /// Declared scale.
        scale: u32,
    },
    /// `date` → `io.debezium.time.Date` int32 days.
    Date,
    /// `timestamp` → `io.debezium.time.MicroTimestamp` int64.
    Timestamp,
    /// `timestamptz` → `io.debezium.time.ZonedTimestamp` string.
    TimestampTz,
    /// `uuid` → `io.debezium.data.Uuid` string.
    Uuid,
    /// `jsonb` → `io.debezium.data.Json` string.
    Jsonb,
}

/// A column definition.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Column name.
    pub name: &'static str,
    /// Postgres type.
    pub ty: ColumnType,
    /// Whether the column accepts NULL (maps to Connect `optional`).
    pub nullable: bool,
    /// Whether the column is part of the primary key (and thus of the Kafka key).
    pub primary_key: bool,
    /// The column default as Debezium renders it in the Connect schema (a JSON
    /// literal), for defaults Debezium can evaluate (serial → `0`, constants).
    pub default: Option<&'static str>,
}

/// The tables of the shop database (Postgres schema `public`), in the alphabetical
/// order Debezium snapshots them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `public.categories`
    Categories,
    /// `public.customers`
    Customers,
    /// `public.inventory`
    Inventory,
    /// `public.order_items`
    OrderItems,
    /// `public.orders`
    Orders,
    /// `public.payments`
    Payments,
    /// `public.products`
    Products,
    /// `public.sellers`
    Sellers,
    /// `public.shipment_events`
    ShipmentEvents,
    /// `public.shipments`
    Shipments,
}

impl Table {
    /// Every table, in snapshot order.
    pub const ALL: [Table; 10] = [
        Table::Categories,
        Table::Customers,
        Table::Inventory,
        Table::OrderItems,
        Table::Orders,
        Table::Payments,
        Table::Products,
        Table::Sellers,
        Table::ShipmentEvents,
        Table::Shipments,
    ];

    /// The Postgres table name (without schema).
    pub fn name(self) -> &'static str {
        match self {
            Table::Categories => "categories",
            Table::Customers => "customers",
            Table::Inventory => "inventory",
            Table::OrderItems => "order_items",
            Table::Orders => "orders",
            Table::Payments => "payments",
            Table::Products => "products",
            Table::Sellers => "sellers",
            Table::ShipmentEvents => "shipment_events",
            Table::Shipments => "shipments",
        }
    }

    /// Finds a table by its Postgres name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Dense index (position in [`Table::ALL`]), for per-table caches.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Column definitions in table order.
    pub fn columns(self) -> &'static [Column] {
        tables::columns(self)
    }

    /// Names of the primary-key columns, in table order.
    pub fn primary_key(self) -> impl Iterator<Item = &'static str> {
        self.columns()
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| c.name)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
