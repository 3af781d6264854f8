//! Where silver keeps its tables and what it names them: the contract gold,
//! maintenance and `lakehouse status` read silver by.

/// Layer folder of the silver tables.
pub const LAYER: &str = "silver";
/// Layer folder of the engine's side tables (deletes).
pub const STATE_LAYER: &str = "silver/_state";

/// The `txn` application id holding a silver table's bronze watermark.
pub fn watermark_app_id(table: &str) -> String {
    format!("lakehouse-silver:{table}")
}

/// Name of a silver table's quarantine table (in [`LAYER`]).
pub fn quarantine_name(table: &str) -> String {
    format!("{table}_quarantine")
}

/// Name of a silver table's deletes side table (in [`STATE_LAYER`]).
pub fn deletes_name(table: &str) -> String {
    format!("{table}_deletes")
}
