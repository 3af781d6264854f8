//! `lakehouse demo` end to end at a small size: embedded broker, mock, bronze,
//! silver and gold, with nothing lost between the layers.

use lakehouse::config::Config;
use lakehouse::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_every_layer_end_to_end() {
    crate::support::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        changes: 3_000,
        seed: 3,
        dir: dir.path().join("lake"),
        partitions: 2,
        postgres: None,
    };
    let report = run(&options, &Config::default()).await.unwrap();
    assert!(report.produced.changes >= 3_000);
    assert_eq!(
        report.bronze.counts.records,
        report.produced.records(),
        "bronze read every record"
    );
    assert_eq!(report.bronze.counts.dead_letters, 0);
    assert!(
        report
            .silver
            .tables
            .iter()
            .any(|t| t.table == "fact_sales" && t.counts.inserted > 0)
    );
    assert!(
        report
            .gold
            .marts
            .iter()
            .any(|m| m.mart == "daily_sales" && m.rows > 0)
    );
    assert!(report.gold.failed_publishes().is_empty());
}
