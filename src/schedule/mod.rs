//! `lakehouse schedule`: runs the jobs of `[schedule]` on cron expressions
//! and after each other, records every run in `_lakehouse_runs`, and keeps
//! one run of a job kind at a time across processes.
//!
//! - [`config`]: the `[schedule]` section, validated with line numbers.
//! - [`clock`]: cron evaluation in the configured IANA time zone (chrono-tz).
//! - [`lease`]: the cross-process lock (conditional creates on any store).
//! - [`history`]: the run history table.
//! - [`jobs`]: one run of a layer, as the history records it.
//! - [`runner`]: triggers, coalescing, retries, missed runs, shutdown.

pub mod clock;
pub mod config;
pub mod history;
pub mod jobs;
pub mod lease;
pub mod runner;

pub use crate::tables::runs::RUNS_TABLE;
pub use config::{JobKind, ScheduleConfig};
pub use history::Trigger;
pub use runner::{ScheduleReport, run};
