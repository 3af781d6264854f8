//! `lakehouse`: a medallion lakehouse ETL engine.
//!
//! Debezium change events flow from Kafka into a **bronze** Delta table
//! ([`bronze`]), exactly once, with every Debezium logical type resolved by the
//! [`cdc`] decoder. Later layers (silver, gold) read the Delta tables that
//! earlier layers commit; layers never share in-memory state.
//!
//! Modules, from the top down; each uses only modules below it, and the
//! layers never use each other (`tests/it/architecture.rs` checks both):
//! - [`pipeline`]: orchestration: jobs, the run history, `schedule`,
//!   `run all [--watch]`, `status`. Wires the layers together.
//! - [`config`]: `lakehouse.toml` and environment overrides; aggregates the
//!   layers' own sections, and owns `[schedule]`.
//! - The layers: [`bronze`] (Kafka / JSON lines into the bronze tables),
//!   [`silver`] (CDC apply into a star schema), [`gold`] (marts, `query`),
//!   [`publish`] (marts into Postgres), [`maintenance`] (`optimize`,
//!   `vacuum`, bronze auto-compaction).
//! - [`tables`]: names and schemas of the tables the layers exchange.
//! - [`spec`]: reading the layers' spec files.
//! - [`delta`]: the Delta table layer: create, prune, read, write, commit
//!   with watermarks, checkpoint, DataFusion sessions.
//! - [`storage`]: storage roots (local, S3, Azure), the startup check, leases.
//! - [`cdc`]: Debezium JSON decoding.
//! - [`error`], [`redact`], [`retry`]: the error type, masking secrets in
//!   messages, and the one retry policy (exponential backoff, on backon).
//!
//! The command line, `lakehouse demo` and the benchmarks live in the binary
//! (`src/bin/lakehouse/`), outside the engine.

pub mod bronze;
pub mod cdc;
pub mod config;
pub mod delta;
pub mod error;
pub mod gold;
pub mod maintenance;
pub mod pipeline;
pub mod publish;
pub mod redact;
pub mod retry;
pub mod silver;
pub mod spec;
pub mod storage;
pub mod tables;

pub use error::{Error, Result};
