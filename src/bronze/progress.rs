//! Progress of an ingestion run: tracing logs with rates, and an indicatif bar
//! when a terminal is attached and the amount of work is known.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::buffer::BatchCounts;
use super::sink::CommitOutcome;

/// How often a rate line is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Reports committed totals, rates and lag.
pub struct Progress {
    bar: Option<ProgressBar>,
    totals: BatchCounts,
    lag: Option<u64>,
    started: Instant,
    last_log: Instant,
    logged: BatchCounts,
}

impl Progress {
    /// A reporter; `bar` asks for a progress bar, shown only on a terminal.
    pub fn new(bar: bool) -> Self {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} bronze [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            totals: BatchCounts::default(),
            lag: None,
            started: now,
            last_log: now,
            logged: BatchCounts::default(),
        }
    }

    /// A reporter that only logs.
    pub fn quiet() -> Self {
        Self::new(false)
    }

    /// Sets the number of records the run expects (the bar's length).
    pub fn set_total(&mut self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Sets the current consumer lag in records.
    pub fn set_lag(&mut self, lag: u64) {
        self.lag = Some(lag);
    }

    /// Totals committed so far.
    pub fn totals(&self) -> BatchCounts {
        self.totals
    }

    /// Accounts for a committed batch and logs rates when due.
    pub fn batch_committed(&mut self, counts: &BatchCounts, outcome: &CommitOutcome) {
        self.totals.add(counts);
        if let Some(bar) = &self.bar {
            bar.set_position(self.totals.records);
        }
        tracing::debug!(
            records = counts.records,
            rows = outcome.rows_written,
            dead_letters = outcome.dead_letters_written,
            version = ?outcome.events_version,
            "bronze batch committed"
        );
        if self.last_log.elapsed() >= LOG_EVERY {
            self.log_rates();
        }
    }

    fn log_rates(&mut self) {
        let window = self.last_log.elapsed().as_secs_f64().max(1e-9);
        let records = self.totals.records - self.logged.records;
        let bytes = self.totals.bytes - self.logged.bytes;
        tracing::info!(
            records_per_s = format!("{:.0}", records as f64 / window),
            mb_per_s = format!("{:.1}", bytes as f64 / window / 1e6),
            total_records = self.totals.records,
            rows = self.totals.rows,
            dead_letters = self.totals.dead_letters,
            skipped = self.totals.skipped,
            lag = ?self.lag,
            "bronze ingesting"
        );
        self.last_log = Instant::now();
        self.logged = self.totals;
    }

    /// Ends the bar and logs the run's totals.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(
            records = self.totals.records,
            rows = self.totals.rows,
            dead_letters = self.totals.dead_letters,
            skipped = self.totals.skipped,
            seconds = format!("{secs:.2}"),
            records_per_s = format!("{:.0}", self.totals.records as f64 / secs),
            mb_per_s = format!("{:.1}", self.totals.bytes as f64 / secs / 1e6),
            "bronze run finished"
        );
    }
}
