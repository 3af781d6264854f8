//! `lakehouse status`: tables, bronze's Kafka lag, runs and failures.

use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::pipeline::status::{self, Format};
use lakehouse::pipeline::{JobKind, Trigger, jobs};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_tables_lag_and_runs() {
    let broker = Broker::embedded();
    let topic = format!("{}.public.items", unique("st"));
    broker.create_topic(&topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &broker, &unique("g"), &[&topic], None);
    config
        .storage
        .options
        .insert("aws_secret_access_key".into(), "hunter2".into());
    let producer = broker.producer();
    for i in 0..10i64 {
        let (key, value) = pg_change("t", "items", i, "c", 1000 + i);
        produce(&producer, &topic, (i % 2) as i32, Some(&key), Some(&value)).await;
    }
    let until_idle = StopCondition {
        until_idle: true,
        max_records: None,
    };
    let run = jobs::run_bronze(&config, BronzeSource::Kafka, until_idle, no_shutdown());
    jobs::recorded(&config, JobKind::Bronze, Trigger::Manual, run)
        .await
        .unwrap();
    // Three more records on partition 0 that bronze has not read.
    for i in 10..13i64 {
        let (key, value) = pg_change("t", "items", i, "c", 1000 + i);
        produce(&producer, &topic, 0, Some(&key), Some(&value)).await;
    }
    // A failed manual run (an unknown silver table) is recorded as a failure.
    let failing = async {
        let options = lakehouse::silver::RunOptions {
            tables: vec!["no_such_table".into()],
            ..Default::default()
        };
        Ok(jobs::LayerSummary::Silver(
            lakehouse::pipeline::jobs::silver(&config, &options).await?,
        ))
    };
    assert!(
        jobs::recorded(&config, JobKind::Silver, Trigger::Manual, failing)
            .await
            .is_err()
    );

    let report = status::collect(&config, 10).await.unwrap();
    let events = report
        .tables
        .iter()
        .find(|t| t.table_name == "bronze_events")
        .expect("bronze_events listed");
    assert_eq!(events.layer, "bronze");
    assert_eq!(events.rows, Some(10));
    assert!(events.version.is_some() && events.last_commit_at.is_some());
    assert_eq!(report.kafka_error, None);
    let lag: Vec<(i32, Option<i64>, i64, i64)> = report
        .kafka_lag
        .iter()
        .map(|l| (l.partition, l.committed_offset, l.high_watermark, l.lag))
        .collect();
    assert_eq!(lag, vec![(0, Some(4), 8, 3), (1, Some(4), 5, 0)]);
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.runs[0].job, "silver");
    assert_eq!(report.runs[0].status, "failed");
    assert_eq!(report.runs[1].job, "bronze");
    assert_eq!(report.runs[1].status, "succeeded");
    assert_eq!(report.runs[1].rows_written, 10);
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no_such_table"),
        "{:?}",
        report.failures
    );

    let text = status::render(&report, Format::Table).unwrap();
    assert!(text.contains("bronze_events"), "{text}");
    assert!(text.contains(&topic), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&status::render(&report, Format::Json).unwrap()).unwrap();
    assert_eq!(json["kafka_lag"][0]["lag"], 3);
    assert_eq!(json["runs"][1]["rows_written"], 10);
    assert!(!json.to_string().contains("hunter2"));
}
