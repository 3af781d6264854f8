//! Column definitions of the shop tables (the DDL, as data).

use super::{Column, ColumnType as T, Table};

/// Non-null, non-key column.
const fn req(name: &'static str, ty: T) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        primary_key: false,
        default: None,
    }
}

/// Nullable column.
const fn opt(name: &'static str, ty: T) -> Column {
    Column {
        nullable: true,
        ..req(name, ty)
    }
}

/// Non-null column with a constant default Debezium can evaluate.
const fn def(name: &'static str, ty: T, default: &'static str) -> Column {
    Column {
        default: Some(default),
        ..req(name, ty)
    }
}

/// Primary-key column without a default (natural / composite keys).
const fn key(name: &'static str, ty: T) -> Column {
    Column {
        primary_key: true,
        ..req(name, ty)
    }
}

/// `bigserial` primary key: Debezium renders the `nextval()` default as `0`.
const fn serial(name: &'static str) -> Column {
    Column {
        primary_key: true,
        default: Some("0"),
        ..req(name, T::Int64)
    }
}

const fn num(precision: u32, scale: u32) -> T {
    T::Numeric { precision, scale }
}

const CUSTOMERS: &[Column] = &[
    serial("id"),
    req("external_id", T::Uuid),
    req("email", T::Text),
    req("first_name", T::Text),
    req("last_name", T::Text),
    opt("phone", T::Text),
    req("city", T::Text),
    req("country", T::Text),
    def("segment", T::Text, "\"consumer\""),
    def("marketing_opt_in", T::Bool, "false"),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const SELLERS: &[Column] = &[
    serial("id"),
    req("name", T::Text),
    req("email", T::Text),
    req("country", T::Text),
    opt("rating", num(3, 2)),
    def("active", T::Bool, "true"),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const CATEGORIES: &[Column] = &[
    serial("id"),
    opt("parent_id", T::Int64),
    req("name", T::Text),
    req("slug", T::Text),
    req("path", T::Text),
    def("sort_order", T::Int32, "0"),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const PRODUCTS: &[Column] = &[
    serial("id"),
    req("seller_id", T::Int64),
    req("category_id", T::Int64),
    req("sku", T::Text),
    req("name", T::Text),
    req("price", num(10, 2)),
    opt("weight_kg", num(8, 3)),
    def("active", T::Bool, "true"),
    opt("attributes", T::Jsonb),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const INVENTORY: &[Column] = &[
    key("product_id", T::Int64),
    key("warehouse", T::Text),
    def("quantity", T::Int32, "0"),
    def("reserved", T::Int32, "0"),
    def("reorder_level", T::Int32, "10"),
    opt("bin_location", T::Text),
    opt("last_restock_at", T::TimestampTz),
    req("updated_at", T::Timestamp),
];

const ORDERS: &[Column] = &[
    serial("id"),
    req("customer_id", T::Int64),
    def("status", T::Text, "\"created\""),
    req("order_date", T::Date),
    def("currency", T::Text, "\"EUR\""),
    req("total", num(12, 2)),
    req("discount", num(12, 2)),
    req("shipping_cost", num(10, 2)),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const ORDER_ITEMS: &[Column] = &[
    key("order_id", T::Int64),
    key("line_no", T::Int16),
    req("product_id", T::Int64),
    req("sku", T::Text),
    req("quantity", T::Int32),
    req("unit_price", num(10, 2)),
    req("discount", num(10, 2)),
    req("tax_rate", num(5, 4)),
    req("created_at", T::TimestampTz),
];

const PAYMENTS: &[Column] = &[
    serial("id"),
    req("order_id", T::Int64),
    req("method", T::Text),
    req("provider_ref", T::Uuid),
    req("amount", num(12, 2)),
    def("currency", T::Text, "\"EUR\""),
    def("status", T::Text, "\"pending\""),
    opt("paid_at", T::TimestampTz),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const SHIPMENTS: &[Column] = &[
    serial("id"),
    req("order_id", T::Int64),
    req("carrier", T::Text),
    req("service", T::Text),
    req("tracking_number", T::Text),
    def("status", T::Text, "\"label_created\""),
    req("warehouse", T::Text),
    req("promised_date", T::Date),
    opt("shipped_at", T::TimestampTz),
    opt("delivered_at", T::TimestampTz),
    req("created_at", T::TimestampTz),
    req("updated_at", T::TimestampTz),
];

const SHIPMENT_EVENTS: &[Column] = &[
    serial("id"),
    req("shipment_id", T::Int64),
    req("sequence_no", T::Int32),
    req("status", T::Text),
    req("location", T::Text),
    req("event_ts", T::Timestamp),
    opt("details", T::Jsonb),
    req("recorded_at", T::TimestampTz),
];

pub(super) fn columns(table: Table) -> &'static [Column] {
    match table {
        Table::Categories => CATEGORIES,
        Table::Customers => CUSTOMERS,
        Table::Inventory => INVENTORY,
        Table::OrderItems => ORDER_ITEMS,
        Table::Orders => ORDERS,
        Table::Payments => PAYMENTS,
        Table::Products => PRODUCTS,
        Table::Sellers => SELLERS,
        Table::ShipmentEvents => SHIPMENT_EVENTS,
        Table::Shipments => SHIPMENTS,
    }
}
