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

    // `lakehouse status` / `query` see the demo's runs in the history, with
    // what each layer wrote.
    let ctx = lakehouse::pipeline::jobs::query_session(&report.config)
        .await
        .unwrap();
    let batches = lakehouse::gold::adhoc::run(
        &ctx,
        "SELECT run, status, rows_written FROM lakehouse_runs ORDER BY started_at",
    )
    .await
    .unwrap();
    let rendered =
        lakehouse::gold::adhoc::render(&batches, lakehouse::gold::adhoc::Format::Csv).unwrap();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), 4, "{rendered}");
    assert_eq!(
        lines[1],
        format!(
            "bronze,succeeded,{}",
            report.bronze.counts.rows + report.bronze.counts.dead_letters
        ),
        "{rendered}"
    );
    assert!(lines[2].starts_with("silver,succeeded,"), "{rendered}");
    assert!(lines[3].starts_with("gold,succeeded,"), "{rendered}");
}
