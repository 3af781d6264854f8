//! `lakehouse demo` end to end at a small size, run as the binary: embedded
//! broker, mock, bronze, silver and gold, with nothing lost between the layers.

use std::process::Command;

use lakehouse::config::Config;

/// The number just before the word `unit` on the report line that starts with
/// `label` (e.g. `bronze  3512 records  3401 rows ...`).
fn number(report: &str, label: &str, unit: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no `{label}` line in the report:\n{report}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == unit)
        .unwrap_or_else(|| panic!("no `{unit}` in {line:?}"));
    words[at - 1]
        .parse()
        .unwrap_or_else(|_| panic!("no number before `{unit}` in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_every_layer_end_to_end() {
    crate::support::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let output = Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args([
            "demo",
            "--changes",
            "3000",
            "--seed",
            "3",
            "--partitions",
            "2",
        ])
        .arg("--dir")
        .arg(&lake)
        .current_dir(dir.path())
        // Built-in defaults, as the in-process run had: no config file leaks in.
        .env_remove("LAKEHOUSE_CONFIG")
        .output()
        .expect("run lakehouse demo");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert!(number(&report, "mock", "changes") >= 3_000, "{report}");
    let bronze_records = number(&report, "bronze", "records");
    assert_eq!(
        bronze_records,
        number(&report, "mock", "records"),
        "bronze read every record:\n{report}"
    );
    let dead_letters = number(&report, "bronze", "dead");
    assert_eq!(dead_letters, 0, "{report}");
    let fact_sales_inserted = report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("fact_sales "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|inserted| inserted.strip_prefix('+'))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(fact_sales_inserted.is_some_and(|n| n > 0), "{report}");

    // The demo's config file opens its lake: gold has rows, and `lakehouse
    // status` / `query` see the demo's runs in the history, with what each
    // layer wrote.
    let config = Config::load(Some(&lake.join("lakehouse.toml")), std::iter::empty()).unwrap();
    let ctx = lakehouse::pipeline::jobs::query_session(&config)
        .await
        .unwrap();
    let csv = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let batches = lakehouse::gold::adhoc::run(&ctx, sql).await.unwrap();
            lakehouse::gold::adhoc::render(&batches, lakehouse::gold::adhoc::Format::Csv).unwrap()
        }
    };
    let daily = csv("SELECT count(*) > 0 AS has_rows FROM daily_sales").await;
    assert_eq!(daily.lines().collect::<Vec<_>>(), ["has_rows", "true"]);
    let rendered =
        csv("SELECT run, status, rows_written FROM lakehouse_runs ORDER BY started_at").await;
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines.len(), 4, "{rendered}");
    assert_eq!(
        lines[1],
        format!(
            "bronze,succeeded,{}",
            number(&report, "bronze", "rows") + dead_letters
        ),
        "{rendered}"
    );
    assert!(lines[2].starts_with("silver,succeeded,"), "{rendered}");
    assert!(lines[3].starts_with("gold,succeeded,"), "{rendered}");
}
