//! The Prometheus endpoint of the long-running commands, and the metrics of
//! the run history.
//!
//! Every layer records its own metrics through the `metrics` facade, which
//! does nothing until a recorder is installed: [`install`] installs the
//! Prometheus exporter (serving `GET /metrics` on `[metrics] addr` /
//! `--metrics-addr`) and registers the help text of every layer's metrics.
//! Here, above the layers, each run the history records moves the run
//! counters and, when it succeeded, the job's last-success time.

use std::net::SocketAddr;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use super::history::{RunRecord, Status};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;
use crate::{bronze, gold, publish, silver};

/// Runs that ended, by `job_name`, `run` (bronze, silver, gold, optimize,
/// vacuum) and `status` (succeeded, failed, abandoned).
pub const RUNS: &str = "lakehouse_runs_total";
/// Wall time of a run, by `job_name` and `run`, in seconds.
pub const RUN_SECONDS: &str = "lakehouse_run_duration_seconds";
/// When the last successful run of a job ended (Unix seconds), by `job_name` and `run`.
pub const LAST_SUCCESS: &str = "lakehouse_last_success_timestamp_seconds";

/// Histogram buckets of every `*_seconds` metric: from a small bronze
/// commit (tens of milliseconds) to a long full refresh (tens of minutes).
const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Installs the Prometheus exporter as the process's metrics recorder,
/// serving `/metrics` on `addr` (the listener runs on the current Tokio
/// runtime), and registers the help text of every metric.
pub fn install(addr: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| Error::Internal(format!("metric buckets: {e}")))?
        .install()
        .map_err(|e| {
            Error::Condition(format!(
                "cannot serve Prometheus metrics on {addr} ([metrics] addr / --metrics-addr): {e}"
            ))
        })?;
    describe();
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
}

/// Sets the last-success gauges from the run history, so that a restarted
/// process reports when each job last succeeded instead of nothing until
/// its first run (the stale-gold alert would otherwise read "no data").
pub async fn seed_last_successes(root: &StorageRoot) -> Result<()> {
    for (job, run, ended) in super::history::last_success_ends(root).await? {
        gauge!(LAST_SUCCESS, "job_name" => job, "run" => run)
            .set(ended.timestamp_millis() as f64 / 1000.0);
    }
    Ok(())
}

/// Registers the help text of every metric the engine records.
pub fn describe() {
    bronze::telemetry::describe();
    silver::telemetry::describe();
    gold::telemetry::describe();
    publish::telemetry::describe();
    describe_counter!(RUNS, "Runs that ended, by job, run kind and status");
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "Wall time of a run, by job");
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "When the last successful run of a job ended, in Unix seconds"
    );
}

/// Records a run that ended: what the run history stores.
pub fn run_recorded(record: &RunRecord) {
    let job = record.job.clone();
    let run = record.run.clone();
    counter!(RUNS, "job_name" => job.clone(), "run" => run.clone(), "status" => record.status.name())
        .increment(1);
    let elapsed = (record.ended_at - record.started_at)
        .to_std()
        .unwrap_or_default();
    histogram!(RUN_SECONDS, "job_name" => job.clone(), "run" => run.clone())
        .record(elapsed.as_secs_f64());
    if record.status == Status::Succeeded {
        gauge!(LAST_SUCCESS, "job_name" => job, "run" => run)
            .set(record.ended_at.timestamp_millis() as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::pipeline::history::{Outcome, Trigger};

    fn record(job: &str, status: Status, ended_s: i64) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            job: job.into(),
            run: "gold".into(),
            trigger: Trigger::Cron,
            owner: "test".into(),
            attempt: 1,
            started_at: Utc.timestamp_opt(ended_s - 2, 0).unwrap(),
            ended_at: Utc.timestamp_opt(ended_s, 0).unwrap(),
            status,
            outcome: Outcome::default(),
            error: None,
        }
    }

    #[test]
    fn runs_count_by_status_and_keep_the_last_success() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            run_recorded(&record("marts", Status::Succeeded, 1_700_000_000));
            run_recorded(&record("marts", Status::Failed, 1_700_000_100));
        });
        let text = handle.render();
        for line in [
            "lakehouse_runs_total{job_name=\"marts\",run=\"gold\",status=\"succeeded\"} 1",
            "lakehouse_runs_total{job_name=\"marts\",run=\"gold\",status=\"failed\"} 1",
            "lakehouse_last_success_timestamp_seconds{job_name=\"marts\",run=\"gold\"} 1700000000",
            "lakehouse_run_duration_seconds_bucket{job_name=\"marts\",run=\"gold\",le=\"2.5\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[tokio::test]
    async fn a_restarted_process_reports_the_last_success_from_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageRoot::local(dir.path()).unwrap();
        crate::pipeline::history::append(
            &root,
            &[
                record("marts", Status::Succeeded, 1_700_000_000),
                record("marts", Status::Succeeded, 1_700_000_050),
                record("marts", Status::Failed, 1_700_000_100),
                record("other", Status::Failed, 1_700_000_100),
            ],
        )
        .await
        .unwrap();
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        {
            // A current-thread runtime: the guard covers every await below.
            let _guard = metrics::set_default_local_recorder(&recorder);
            seed_last_successes(&root).await.unwrap();
        }
        let text = handle.render();
        assert!(
            text.contains(
                "lakehouse_last_success_timestamp_seconds{job_name=\"marts\",run=\"gold\"} 1700000050"
            ),
            "{text}"
        );
        assert!(!text.contains("other"), "{text}");
    }
}
