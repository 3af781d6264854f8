//! `lakehouse schedule` as processes of the built binary: two schedulers on
//! one storage root, SIGTERM during a run, configuration errors.

use std::process::Command;
use std::time::Duration;

use crate::schedule_support::*;

const WAIT: Duration = Duration::from_secs(240);

/// Silver counts of a lake that ran silver once over the same bronze data.
async fn reference_counts(seed: u64, rounds: usize) -> Vec<Vec<String>> {
    let reference = fed_lake(seed, rounds).await;
    reference.silver().await;
    silver_counts(&reference).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_root_do_not_double_apply() {
    crate::support::init_tracing();
    let lake = fed_lake(21, 2).await;
    let config = write_config(
        &lake,
        r#"
[schedule]
lease_ttl_ms = 10000
[schedule.retry]
attempts = 1
[[schedule.jobs]]
name = "silver"
run = "silver"
cron = "* * * * * *"
[[schedule.jobs]]
name = "gold"
run = "gold"
after = ["silver"]
"#,
    );
    let mut a = Scheduler::start(&config);
    let mut b = Scheduler::start(&config);
    let history = wait_for_runs(&lake.config, WAIT, |r| {
        count(r, "silver", "succeeded") >= 4 && count(r, "gold", "succeeded") >= 2
    })
    .await;
    assert!(!history.is_empty());
    a.terminate();
    b.terminate();
    assert!(a.wait(WAIT), "scheduler a did not exit cleanly");
    assert!(b.wait(WAIT), "scheduler b did not exit cleanly");
    // The log readers end with the processes' stderr.
    let lines: Vec<String> = a.lines.iter().chain(b.lines.iter()).collect();

    let history = runs(&lake.config).await;
    assert!(
        history
            .iter()
            .all(|r| r.status != "failed" && r.attempt == 1),
        "{history:#?}"
    );
    let owners: std::collections::BTreeSet<&str> =
        history.iter().map(|r| r.owner.as_str()).collect();
    assert!((1..=2).contains(&owners.len()), "{owners:?}");
    // One lease per job kind across both processes: no overlapping runs.
    assert_no_overlap(&history, "silver");
    assert_no_overlap(&history, "gold");
    // Both fired on the same seconds; the one without the lease skipped.
    assert!(
        lines.iter().any(|l| l.contains("trigger skipped")),
        "no trigger was skipped for a held lease"
    );
    // Tables hold what a single run over the same data holds.
    assert_eq!(silver_counts(&lake).await, reference_counts(21, 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_abandons_or_finishes_the_run_and_tables_stay_consistent() {
    crate::support::init_tracing();
    let lake = fed_lake(22, 3).await;
    let schedule = |grace_ms: u64| {
        format!(
            "[schedule]\ngrace_period_ms = {grace_ms}\n[schedule.retry]\nattempts = 1\n\
             [[schedule.jobs]]\nname = \"silver\"\nrun = \"silver\"\ncron = \"0 0 0 1 1 *\"\n"
        )
    };
    // A yearly cron that never ran: the missed-run policy starts it at once.
    // No grace: SIGTERM abandons the running job.
    let config = write_config(&lake, &schedule(0));
    let mut first = Scheduler::start(&config);
    first.wait_for_line("run started", WAIT);
    first.terminate();
    assert!(first.wait(WAIT), "the scheduler did not exit cleanly");
    let history = runs(&lake.config).await;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0].status, "abandoned", "{history:#?}");
    assert!(
        history[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("grace period"),
        "{history:#?}"
    );
    // Every silver table that exists loads (each commit is atomic).
    for table in ["dim_customer", "dim_product", "fact_sales", "orders"] {
        lake.version("silver", table).await;
    }

    // With a grace period, SIGTERM lets the running job finish.
    let config = write_config(&lake, &schedule(120_000));
    let mut second = Scheduler::start(&config);
    second.wait_for_line("run started", WAIT);
    second.terminate();
    assert!(second.wait(WAIT), "the scheduler did not exit cleanly");
    let history = runs(&lake.config).await;
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!(history[1].status, "succeeded", "{history:#?}");
    assert_eq!(history[1].trigger, "cron");

    // The run after the abandoned one caught up: same rows as one clean run,
    // and nothing is left to apply.
    assert_eq!(silver_counts(&lake).await, reference_counts(22, 3).await);
    let again = lake.silver().await;
    assert!(again.tables.iter().all(|t| t.version.is_none()), "{again}");
}

#[test]
fn configuration_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[schedule]\n[[schedule.jobs]]\nname = \"silver\"\nrun = \"silver\"\ncron = \"61 * * * * *\"\n",
            ":5",
            "invalid cron expression",
        ),
        (
            "[schedule]\n[[schedule.jobs]]\nname = \"silver\"\nrun = \"silver\"\ncron = \"0 * * * * *\"\n\
             [[schedule.jobs]]\nname = \"gold\"\nrun = \"gold\"\nafter = [\"silvr\"]\n",
            ":9",
            "unknown job `silvr`",
        ),
        (
            "[schedule]\n[[schedule.jobs]]\nname = \"x\"\nrun = \"platinum\"\ncron = \"0 * * * * *\"\n",
            ":4",
            "unknown run `platinum`",
        ),
    ];
    for (i, (text, line, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_lakehouse"))
            .arg("--config")
            .arg(&path)
            .arg("schedule")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let at = format!("{}{line}", path.display());
        assert!(stderr.contains(&at), "expected {at} in: {stderr}");
        assert!(stderr.contains(message), "expected {message} in: {stderr}");
    }
}
