//! `lakehouse-mock`: a deterministic simulator of an e-commerce OLTP Postgres database
//! that emits exactly the Kafka records a Debezium 2.7 PostgreSQL connector writes.
//!
//! * [`model`] — tables, columns and typed [`model::Value`]s; the ground truth.
//! * [`sim`] — [`sim::Simulator`]: snapshot, then a stream of [`model::Transaction`]s
//!   over simulated time.
//! * [`debezium`] — [`debezium::DebeziumEncoder`]: changes → [`debezium::KafkaRecord`]s
//!   (data events, tombstones, BEGIN/END transaction metadata).
//! * [`jsonl`] — [`jsonl::JsonlWriter`]: records → the JSON-lines file format that
//!   `lakehouse run bronze --from-file` ingests.
//! * [`ddl`] — the Postgres schema of the simulated tables (REPLICA IDENTITY FULL,
//!   the Debezium publication).
//! * [`postgres`] — applies the simulation to a real Postgres with sqlx.
//! * [`pace`] — `--rate` pacing.
//! * [`stream`] — [`stream::MockStream`]: the simulation as a bounded stream of
//!   Kafka records, chunk by chunk.
//! * `kafka` (cargo feature `kafka`) — producing the stream to a broker, and
//!   `kafka::EmbeddedKafka`, an in-process broker.
//!
//! ```
//! use lakehouse_mock::{DebeziumEncoder, SimConfig, Simulator};
//!
//! let cfg = SimConfig { seed: 7, ..SimConfig::default() };
//! let encoder = DebeziumEncoder::new(&cfg.topic_prefix);
//! let mut sim = Simulator::new(cfg);
//! let mut records = Vec::new();
//! let snapshot = sim.snapshot();
//! encoder.encode_snapshot(&snapshot, &mut records);
//! let tx = sim.next_transaction(); // typed ground truth
//! encoder.encode_transaction(&tx, &mut records); // BEGIN, events (+ tombstones), END
//! assert!(records.len() > snapshot.changes.len());
//! ```

pub mod ddl;
pub mod debezium;
pub mod jsonl;
pub mod model;
pub mod pace;
pub mod postgres;
pub mod sim;
pub mod stream;

#[cfg(feature = "kafka")]
pub mod kafka;

pub use debezium::{DebeziumEncoder, KafkaRecord};
pub use jsonl::JsonlWriter;
pub use model::{Change, Op, RowValues, Snapshot, Table, Transaction, Value};
pub use sim::{SimConfig, Simulator};
