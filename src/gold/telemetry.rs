//! Gold's Prometheus metrics, recorded through the `metrics` facade (a
//! no-op until the binary installs an exporter): per mart, the rows each
//! build wrote and its build time.

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use super::build::MartRun;

/// Rows written by mart builds, by `mart`.
pub const ROWS_WRITTEN: &str = "lakehouse_gold_rows_written_total";
/// Time of one mart's build, by `mart`, in seconds.
pub const MART_SECONDS: &str = "lakehouse_gold_mart_duration_seconds";

/// Registers the help text of gold's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(ROWS_WRITTEN, "Rows gold mart builds wrote, by mart");
    describe_histogram!(MART_SECONDS, Unit::Seconds, "Time of one gold mart's build");
}

/// Records one mart's build.
pub fn mart_run(run: &MartRun) {
    counter!(ROWS_WRITTEN, "mart" => run.mart.clone()).increment(run.rows);
    histogram!(MART_SECONDS, "mart" => run.mart.clone()).record(run.elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;
    use crate::gold::build::Refresh;

    #[test]
    fn a_mart_build_moves_its_counters() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let run = MartRun {
            mart: "daily_sales".into(),
            refresh: Refresh::Full("first build".into()),
            version: Some(0),
            current_version: Some(0),
            rows: 31,
            files_removed: 0,
            files_added: 1,
            elapsed: Duration::from_millis(40),
        };
        metrics::with_local_recorder(&recorder, || {
            describe();
            mart_run(&run);
        });
        let text = handle.render();
        for line in [
            "lakehouse_gold_rows_written_total{mart=\"daily_sales\"} 31",
            "lakehouse_gold_mart_duration_seconds_count{mart=\"daily_sales\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
