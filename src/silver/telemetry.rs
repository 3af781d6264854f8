//! Silver's Prometheus metrics, recorded through the `metrics` facade (a
//! no-op until the binary installs an exporter): per table, the changes
//! read, the rows each run wrote, the rows quarantined, and the run time.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use super::job::TableRun;

/// Bronze changes read, by `table`.
pub const ROWS_READ: &str = "lakehouse_silver_rows_read_total";
/// Rows written, by `table` and `change` (`inserted`, `updated`, `deleted`).
pub const ROWS_WRITTEN: &str = "lakehouse_silver_rows_written_total";
/// Rows sent to the table's quarantine, by `table`.
pub const QUARANTINED: &str = "lakehouse_silver_quarantined_rows_total";
/// Time of one table's run, by `table`, in seconds.
pub const TABLE_SECONDS: &str = "lakehouse_silver_table_duration_seconds";

/// Registers the help text of silver's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(ROWS_READ, "Bronze changes read by silver, by table");
    describe_counter!(
        ROWS_WRITTEN,
        "Rows silver wrote, by table and change (inserted, updated, deleted)"
    );
    describe_counter!(QUARANTINED, "Rows silver quarantined, by table");
    describe_histogram!(
        TABLE_SECONDS,
        Unit::Seconds,
        "Time of one silver table's run"
    );
}

/// Records one table's run, which took `elapsed`.
pub fn table_run(run: &TableRun, elapsed: Duration) {
    let table = run.table.clone();
    counter!(ROWS_READ, "table" => table.clone()).increment(run.rows_in);
    for (change, rows) in [
        ("inserted", run.counts.inserted),
        ("updated", run.counts.updated),
        ("deleted", run.counts.deleted),
    ] {
        counter!(ROWS_WRITTEN, "table" => table.clone(), "change" => change).increment(rows);
    }
    counter!(QUARANTINED, "table" => table.clone()).increment(run.quarantined);
    histogram!(TABLE_SECONDS, "table" => table).record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[test]
    fn a_table_run_moves_its_counters() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut run = TableRun {
            table: "orders".into(),
            rows_in: 10,
            quarantined: 2,
            ..Default::default()
        };
        run.counts.inserted = 6;
        run.counts.updated = 1;
        metrics::with_local_recorder(&recorder, || {
            describe();
            table_run(&run, Duration::from_millis(5));
            table_run(&run, Duration::from_millis(5));
        });
        let text = handle.render();
        for line in [
            "lakehouse_silver_rows_read_total{table=\"orders\"} 20",
            "lakehouse_silver_rows_written_total{table=\"orders\",change=\"inserted\"} 12",
            "lakehouse_silver_rows_written_total{table=\"orders\",change=\"updated\"} 2",
            "lakehouse_silver_rows_written_total{table=\"orders\",change=\"deleted\"} 0",
            "lakehouse_silver_quarantined_rows_total{table=\"orders\"} 4",
            "lakehouse_silver_table_duration_seconds_count{table=\"orders\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
