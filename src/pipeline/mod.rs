//! The orchestration layer: runs the layers as jobs, above them all.
//!
//! Layers never call each other; this module wires them: it loads the specs,
//! gives each layer its own section of the configuration and the storage
//! root, plugs maintenance's upkeep into bronze, publishes gold's marts to
//! Postgres after gold commits them, and records every run.
//!
//! - [`jobs`]: one run of a layer (`lakehouse run <layer>`), as the history records it.
//! - [`history`]: writing the run history (`_lakehouse_runs`).
//! - [`runner`]: `lakehouse schedule`: cron and `after` triggers, coalescing,
//!   retries, missed runs, cross-process leases, shutdown.
//! - [`watch`]: `lakehouse run all` and continuous mode (`--watch`).
//! - [`status`]: `lakehouse status`.
//! - [`validate`]: `lakehouse validate`: every spec and SQL checked without data.
//! - [`telemetry`]: the Prometheus endpoint of the long-running commands,
//!   and the run history's metrics.

pub mod history;
pub mod jobs;
pub mod runner;
pub mod status;
pub mod telemetry;
pub mod validate;
pub mod watch;

pub use crate::config::schedule::{JobKind, ScheduleConfig};
pub use crate::tables::runs::RUNS_TABLE;
pub use history::Trigger;
pub use runner::{ScheduleReport, run};
