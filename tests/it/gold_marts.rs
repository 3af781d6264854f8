//! The shipped gold marts over the mock shop: built from silver, incremental
//! by date partition, atomic, and equal to a full rebuild.

use lakehouse::gold::Refresh;
use lakehouse::pipeline::jobs::GoldOptions;

use crate::gold_support::*;

const MARTS: &[&str] = &[
    "daily_sales",
    "category_daily",
    "product_performance",
    "customer_activity",
    "customer_cohorts",
    "shipping_performance",
    "payment_mix",
    "inventory_levels",
    "pipeline_health",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_marts_build_incrementally_and_match_a_rebuild() {
    let lake = shipped_lake();
    let rounds = shop_records(7, 2, 200);
    lake.feed(&rounds[0]).await;
    lake.feed(&rounds[1]).await;
    lake.silver().await;
    let first = gold_run(&lake, GoldOptions::default()).await;
    eprintln!("{first}");
    for mart in MARTS {
        let run = first.marts.iter().find(|m| m.mart == *mart).expect(mart);
        assert!(
            matches!(run.refresh, Refresh::Full(_)),
            "{mart}: {:?}",
            run.refresh
        );
        assert!(run.version.is_some(), "{mart}");
    }
    // Nothing changed: nothing is written (except the health mart, which reads the logs).
    let idle = gold_run(&lake, GoldOptions::default()).await;
    for run in &idle.marts {
        if run.mart != "pipeline_health" {
            assert_eq!(run.refresh, Refresh::Unchanged, "{}", run.mart);
            assert_eq!(run.version, None, "{}", run.mart);
        }
    }

    // New orders: daily marts recompute only the dates that changed.
    lake.feed(&rounds[2]).await;
    lake.silver().await;
    let second = gold_run(&lake, GoldOptions::default()).await;
    eprintln!("{second}");
    let daily = second
        .marts
        .iter()
        .find(|m| m.mart == "daily_sales")
        .unwrap();
    let Refresh::Partitions(dates) = &daily.refresh else {
        panic!("daily_sales: {:?}", daily.refresh)
    };
    assert!(!dates.is_empty());
    let all_dates = lake
        .rows(
            &["fact_sales"],
            "SELECT count(DISTINCT order_date) FROM fact_sales WHERE order_date IS NOT NULL",
        )
        .await[0][0]
        .parse::<usize>()
        .unwrap();
    assert!(
        dates.len() < all_dates,
        "{} of {all_dates} dates",
        dates.len()
    );

    // The mart equals its definition over silver.
    let gold_rows = mart_rows(
        &lake,
        "SELECT order_date, orders, items, net_revenue, discounts FROM daily_sales",
    )
    .await;
    let silver_rows = lake
        .rows(
            &["fact_sales"],
            "SELECT order_date, CAST(count(DISTINCT order_id) AS BIGINT), CAST(sum(quantity) AS BIGINT), \
             CAST(sum(net_amount) AS DECIMAL(18,2)), CAST(sum(discount) AS DECIMAL(18,2)) \
             FROM fact_sales WHERE order_date IS NOT NULL GROUP BY order_date",
        )
        .await;
    assert_eq!(gold_rows, silver_rows);

    // Incremental results equal a full rebuild, mart by mart.
    let mut before = Vec::new();
    for mart in MARTS.iter().filter(|m| **m != "pipeline_health") {
        before.push(mart_rows(&lake, &format!("SELECT * FROM {mart}")).await);
    }
    let rebuilt = gold_run(
        &lake,
        GoldOptions {
            full_refresh: Some(Vec::new()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        rebuilt
            .marts
            .iter()
            .all(|m| matches!(m.refresh, Refresh::Full(_)))
    );
    for (i, mart) in MARTS
        .iter()
        .filter(|m| **m != "pipeline_health")
        .enumerate()
    {
        assert_eq!(
            mart_rows(&lake, &format!("SELECT * FROM {mart}")).await,
            before[i],
            "{mart} after a full refresh"
        );
    }

    // Pipeline health lists every layer's tables.
    let health = mart_rows(&lake, "SELECT layer, table_name, rows FROM pipeline_health").await;
    for table in ["bronze_events", "fact_sales", "daily_sales"] {
        assert!(
            health.iter().any(|r| r[1] == table),
            "{table} in {health:?}"
        );
    }
}

/// Rows of `sql` through `lakehouse query`'s session (every layer by name).
pub async fn mart_rows(lake: &crate::silver_support::Lake, sql: &str) -> Vec<Vec<String>> {
    let ctx = lakehouse::pipeline::jobs::query_session(&lake.config)
        .await
        .expect("session");
    let batches = lakehouse::gold::adhoc::run(&ctx, sql).await.expect(sql);
    let mut rows = crate::silver_support::text_rows(&batches);
    rows.sort();
    rows
}
