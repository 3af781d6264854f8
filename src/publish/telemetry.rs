//! Publish's Prometheus metrics, recorded through the `metrics` facade (a
//! no-op until the binary installs an exporter): per mart, the rows loaded
//! into Postgres and the publishes that failed after their retries.

use metrics::{counter, describe_counter};

use super::PublishOutcome;

/// Rows loaded into Postgres, by `mart`.
pub const ROWS: &str = "lakehouse_publish_rows_total";
/// Publishes that failed after every retry, by `mart`.
pub const FAILURES: &str = "lakehouse_publish_failures_total";

/// Registers the help text of publish's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(ROWS, "Rows of gold marts loaded into Postgres, by mart");
    describe_counter!(
        FAILURES,
        "Gold mart publishes that failed after every retry, by mart"
    );
}

/// Records one mart's publish.
pub fn published(outcome: &PublishOutcome) {
    counter!(ROWS, "mart" => outcome.mart.clone()).increment(outcome.rows);
    // Touched on success too, so that the series exists (at 0) and an
    // `increase()` alert sees the first failure.
    let failures = counter!(FAILURES, "mart" => outcome.mart.clone());
    if outcome.error.is_some() {
        failures.increment(1);
    } else {
        failures.increment(0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn outcome(mart: &str, rows: u64, error: Option<&str>) -> PublishOutcome {
        PublishOutcome {
            mart: mart.into(),
            version: Some(3),
            rows,
            up_to_date: false,
            attempts: 1,
            elapsed: Duration::from_millis(3),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn publishes_count_rows_and_failures() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            published(&outcome("daily_sales", 12, None));
            published(&outcome("shipping", 0, Some("connection refused")));
        });
        let text = handle.render();
        for line in [
            "lakehouse_publish_rows_total{mart=\"daily_sales\"} 12",
            "lakehouse_publish_failures_total{mart=\"daily_sales\"} 0",
            "lakehouse_publish_failures_total{mart=\"shipping\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
