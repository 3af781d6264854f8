//! `lakehouse schedule` in process: second-level cron expressions, `after`
//! dependencies, coalesced triggers, on real bronze data.

use std::time::Duration;

use datafusion::arrow::array::AsArray;

use lakehouse::pipeline::{self, ScheduleConfig};

use crate::schedule_support::*;

fn schedule(text: &str) -> ScheduleConfig {
    toml::from_str(text).expect("schedule section")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_in_dependency_order_on_second_level_crons() {
    let mut lake = fed_lake(11, 1).await;
    lake.config.schedule = schedule(
        r#"
        lease_ttl_ms = 6000
        [retry]
        attempts = 1
        [[jobs]]
        name = "silver"
        run = "silver"
        cron = "*/2 * * * * *"
        [[jobs]]
        name = "gold"
        run = "gold"
        after = ["silver"]
        "#,
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = lake.config.clone();
    let scheduler = tokio::spawn(async move { pipeline::run(&config, shutdown).await });
    let history = wait_for_runs(&lake.config, Duration::from_secs(240), |r| {
        count(r, "gold", "succeeded") >= 2
    })
    .await;
    stop.send(true).unwrap();
    scheduler.await.unwrap().unwrap();

    let history = {
        // Runs that were in flight at shutdown are recorded too.
        let mut all = runs(&lake.config).await;
        all.retain(|r| r.started >= history[0].started);
        all
    };
    assert!(history.iter().all(|r| r.status != "failed"), "{history:#?}");
    assert_no_overlap(&history, "silver");
    assert_no_overlap(&history, "gold");
    // Every gold run started after a silver run that succeeded before it.
    for gold in history.iter().filter(|r| r.job == "gold") {
        assert_eq!(gold.trigger, "after");
        assert!(
            history
                .iter()
                .any(|s| s.job == "silver" && s.status == "succeeded" && s.ended <= gold.started),
            "gold ran before any silver run ended: {history:#?}"
        );
    }
    // The first silver run was the missed-run catch-up (never succeeded before).
    let first = history.iter().find(|r| r.job == "silver").unwrap();
    assert_eq!(first.trigger, "cron");
    // Silver caught up with bronze: a manual run finds nothing new.
    let again = lake.silver().await;
    assert!(again.tables.iter().all(|t| t.version.is_none()), "{again}");
    // The pipeline-health mart saw the silver runs in the history.
    let ctx = datafusion::prelude::SessionContext::new();
    let root = lakehouse::storage::StorageRoot::from_config(&lake.config.storage).unwrap();
    lakehouse::delta::session::register_table(&ctx, &root, "gold", "pipeline_health")
        .await
        .unwrap();
    let health = crate::silver_support::text_rows(
        &ctx.sql(
            "SELECT DISTINCT last_success_at IS NOT NULL, failures_since_success \
             FROM pipeline_health WHERE layer = 'silver'",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap(),
    );
    assert_eq!(health, vec![vec!["true".to_string(), "0".to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_of_a_slow_job_coalesce_and_never_overlap() {
    use crate::support::{Broker, pg_change, produce, unique};
    let broker = Broker::embedded();
    let topic = format!("{}.public.items", unique("sched"));
    broker.create_topic(&topic, 2).await;
    let producer = broker.producer();
    let mut lake = crate::gold_support::shipped_lake();
    let kafka = crate::support::config(lake.path(), &broker, &unique("g"), &[&topic], None);
    lake.config.kafka = kafka.kafka;
    lake.config.bronze.flush_interval_ms = 200;
    // Every until-idle run waits this long after catching up: a bronze run
    // lasts well over the one-second period of its cron.
    lake.config.bronze.idle_timeout_ms = 2_500;
    lake.config.schedule = schedule(
        r#"
        missed_runs = "skip"
        [retry]
        attempts = 1
        [[jobs]]
        name = "bronze"
        run = "bronze"
        cron = "* * * * * *"
        [[jobs]]
        name = "silver"
        run = "silver"
        after = ["bronze"]
        "#,
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = lake.config.clone();
    let scheduler = tokio::spawn(async move { pipeline::run(&config, shutdown).await });
    let mut produced = 0;
    for round in 0..3i64 {
        for i in 0..20i64 {
            let id = round * 100 + i;
            let (key, value) = pg_change("t", "items", id, "c", 1000 + id);
            produce(&producer, &topic, (i % 2) as i32, Some(&key), Some(&value)).await;
            produced += 1;
        }
        let want = round as usize + 2;
        wait_for_runs(&lake.config, Duration::from_secs(120), |r| {
            count(r, "bronze", "succeeded") >= want
        })
        .await;
    }
    let bronze_rows = || async {
        let rows =
            crate::support::query(&lake.config, "SELECT count(*) AS n FROM bronze_events").await;
        rows[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while bronze_rows().await < produced {
        assert!(
            std::time::Instant::now() < deadline,
            "bronze never caught up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_runs(&lake.config, Duration::from_secs(120), |r| {
        count(r, "silver", "succeeded") >= 2
    })
    .await;
    stop.send(true).unwrap();
    let report = scheduler.await.unwrap().unwrap();
    let history = runs(&lake.config).await;
    assert!(history.iter().all(|r| r.status != "failed"), "{history:#?}");
    assert_no_overlap(&history, "bronze");
    assert_no_overlap(&history, "silver");
    // Runs of 2.5 s or more on a one-second cron: triggers were coalesced.
    let bronze: Vec<&Run> = history.iter().filter(|r| r.job == "bronze").collect();
    // (The last one was cut short by the shutdown, which bronze honours.)
    assert!(
        bronze[..bronze.len() - 1]
            .iter()
            .all(|r| r.ended - r.started >= 2_500_000),
        "{bronze:#?}"
    );
    assert!(report.coalesced["bronze"] >= 1, "{report:?}");
    // Silver runs are triggered by bronze successes: each started after one
    // ended, and there are no more of them than bronze successes.
    let silver: Vec<&Run> = history.iter().filter(|r| r.job == "silver").collect();
    for s in &silver {
        assert_eq!(s.trigger, "after");
        assert!(
            bronze
                .iter()
                .any(|b| b.status == "succeeded" && b.ended <= s.started),
            "silver ran before any bronze run ended: {s:?}"
        );
    }
    assert!(silver.len() <= count(&history, "bronze", "succeeded"));
    // Exactly once over many runs.
    assert_eq!(bronze_rows().await, produced);
}
