//! `lakehouse`: a medallion lakehouse ETL engine.
//!
//! Debezium change events flow from Kafka into a **bronze** Delta table
//! ([`bronze`]), exactly once, with every Debezium logical type resolved by the
//! [`cdc`] decoder. Later layers (silver, gold) read the Delta tables that
//! earlier layers commit; layers never share in-memory state.
//!
//! Module map:
//! - [`config`]: `lakehouse.toml` and environment overrides.
//! - [`cdc`]: Debezium JSON decoding (no dependency on the rest of the crate).
//! - [`storage`]: storage root URLs and Delta table locations.
//! - [`bronze`]: Kafka / JSON-lines ingestion into the bronze tables.
//! - [`query`]: DataFusion sessions over the Delta tables.
//! - [`gold`]: aggregated marts over silver, `lakehouse query`.
//! - [`publish`]: gold marts published to Postgres.
//! - [`schedule`]: `lakehouse schedule`, leases and the run history.
//! - [`status`]: `lakehouse status`.
//! - [`maintenance`]: `optimize`, `vacuum`, checkpoints and bronze auto-compaction.
//! - [`watch`]: `run all` and continuous mode (`run all --watch`).

pub mod bronze;
pub mod cdc;
pub mod config;
pub mod error;
pub mod gold;
pub mod maintenance;
pub mod publish;
pub mod query;
pub mod schedule;
pub mod silver;
pub mod status;
pub mod storage;
pub mod watch;

pub use error::{Error, Result};
