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
//! - [`bench`]: `lakehouse bench` throughput and memory measurements.
//! - [`freshness`]: `lakehouse bench freshness`, produce-to-gold latency of `run all --watch`.
//! - [`query`]: DataFusion sessions over the Delta tables.
//! - [`gold`]: aggregated marts over silver, `lakehouse query`.
//! - [`publish`]: gold marts published to Postgres.
//! - [`schedule`]: `lakehouse schedule`, leases and the run history.
//! - [`status`]: `lakehouse status`.
//! - [`maintenance`]: `optimize`, `vacuum`, checkpoints and bronze auto-compaction.
//! - [`watch`]: `run all` and continuous mode (`run all --watch`).
//! - [`embedded_kafka`]: an in-process Kafka-protocol broker for the demo and tests.

pub mod bench;
pub mod bronze;
pub mod cdc;
pub mod config;
pub mod delta;
pub mod demo;
pub mod embedded_kafka;
pub mod error;
pub mod freshness;
pub mod gold;
pub mod maintenance;
pub mod pipeline;
pub mod publish;
pub mod redact;
pub mod silver;
pub mod spec;
pub mod storage;
pub mod tables;

pub use error::{Error, Result};
