//! Gold marts at scale and by key: the shipped marts' spillable SQL equals
//! the `count(DISTINCT ...)` SQL it replaced, `product_performance` is
//! incremental by product (only the changed products' files are rewritten,
//! and the result equals a full rebuild), and a mart whose columns change
//! gets its new schema and data in one Delta commit.

use std::collections::BTreeSet;

use lakehouse::gold::Refresh;
use lakehouse::pipeline::jobs::GoldOptions;
use lakehouse::storage::StorageRoot;

use crate::gold_marts::mart_rows;
use crate::gold_support::*;

/// The marts rewritten as multi-level GROUP BYs, with the direct
/// `count(DISTINCT ...)` SQL they replaced (tests/it/gold_expected/).
const REWRITTEN: &[(&str, &str)] = &[
    ("daily_sales", include_str!("gold_expected/daily_sales.sql")),
    (
        "category_daily",
        include_str!("gold_expected/category_daily.sql"),
    ),
    (
        "customer_cohorts",
        include_str!("gold_expected/customer_cohorts.sql"),
    ),
    (
        "product_performance",
        include_str!("gold_expected/product_performance.sql"),
    ),
];

fn only(marts: &[&str]) -> GoldOptions {
    GoldOptions {
        marts: marts.iter().map(|m| m.to_string()).collect(),
        no_publish: true,
        ..Default::default()
    }
}

async fn file_paths(lake: &crate::silver_support::Lake, mart: &str) -> BTreeSet<String> {
    let root = StorageRoot::from_config(&lake.config.storage).expect("root");
    let table = root.open_table("gold", mart).await.expect("open");
    lakehouse::delta::files(&table, mart)
        .expect("files")
        .into_iter()
        .map(|f| f.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillable_marts_equal_their_count_distinct_definitions() {
    let lake = shipped_lake();
    let rounds = shop_records(11, 2, 150);
    for round in &rounds {
        lake.feed(round).await;
    }
    lake.silver().await;
    let names: Vec<&str> = REWRITTEN.iter().map(|(m, _)| *m).collect();
    gold_run(&lake, only(&names)).await;
    for (mart, sql) in REWRITTEN {
        let expected = mart_rows(&lake, sql).await;
        assert!(!expected.is_empty(), "{mart}: no rows to compare");
        assert_eq!(
            mart_rows(&lake, &format!("SELECT * FROM {mart}")).await,
            expected,
            "{mart} differs from its count(DISTINCT) definition"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_performance_is_incremental_by_product() {
    let mut lake = shipped_lake();
    // Small files, so a few changed products touch a few of many files.
    lake.config.gold.file_rows = 4;
    let rounds = shop_records(5, 16, 10);
    lake.feed(&rounds[..16].concat()).await;
    lake.silver().await;
    let first = gold_run(&lake, only(&["product_performance"])).await;
    assert!(matches!(first.marts[0].refresh, Refresh::Full(_)));
    let before_files = file_paths(&lake, "product_performance").await;
    let before_rows = mart_rows(&lake, "SELECT * FROM product_performance").await;
    assert!(before_files.len() >= 5, "{} files", before_files.len());

    // A few more transactions: only their products are recomputed.
    lake.feed(&rounds[16]).await;
    lake.silver().await;
    let second = gold_run(&lake, only(&["product_performance"])).await;
    eprintln!("{second}");
    let run = &second.marts[0];
    let Refresh::Keys(keys) = &run.refresh else {
        panic!("product_performance: {:?}", run.refresh)
    };
    assert!(!keys.is_empty());
    assert!(keys.len() * 2 <= before_rows.len(), "{} keys", keys.len());
    let after_files = file_paths(&lake, "product_performance").await;
    let removed: BTreeSet<_> = before_files.difference(&after_files).collect();
    assert_eq!(removed.len(), run.files_removed);
    assert!(
        run.files_removed > 0 && run.files_removed < before_files.len(),
        "{} of {} files rewritten",
        run.files_removed,
        before_files.len()
    );
    // Each changed product is in one file (rows are sorted by product).
    assert!(run.files_removed <= keys.len());
    // Rows of products that did not change are as before.
    let changed: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
    let after_rows = mart_rows(&lake, "SELECT * FROM product_performance").await;
    let unchanged = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter()
            .filter(|r| !changed.contains(&r[0]))
            .cloned()
            .collect()
    };
    assert_eq!(unchanged(&after_rows), unchanged(&before_rows));
    assert_ne!(after_rows, before_rows);

    // The incremental result is exactly what a full rebuild gives.
    let rebuilt = gold_run(
        &lake,
        GoldOptions {
            full_refresh: Some(vec!["product_performance".into()]),
            ..only(&["product_performance"])
        },
    )
    .await;
    assert!(matches!(rebuilt.marts[0].refresh, Refresh::Full(_)));
    assert_eq!(
        mart_rows(&lake, "SELECT * FROM product_performance").await,
        after_rows
    );
    assert_eq!(
        after_rows,
        mart_rows(&lake, include_str!("gold_expected/product_performance.sql")).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_change_commits_schema_and_data_together() {
    let mut lake = shipped_lake();
    let layers = lake.path().join("gold_layers");
    let sql = lake.path().join("gold_sql");
    std::fs::create_dir_all(&layers).unwrap();
    std::fs::create_dir_all(&sql).unwrap();
    lake.config.gold.layers_dir = layers.clone();
    lake.config.gold.sql_dir = sql.clone();
    std::fs::write(
        layers.join("day_lines.toml"),
        "keys = [\"order_date\"]\npartition_by = \"order_date\"\n",
    )
    .unwrap();
    let write_sql = |extra: &str| {
        std::fs::write(
            sql.join("day_lines.sql"),
            format!(
                "SELECT order_date, CAST(count(*) AS BIGINT) AS lines{extra} \
                 FROM fact_sales WHERE order_date IS NOT NULL GROUP BY order_date"
            ),
        )
        .unwrap()
    };
    write_sql("");
    let rounds = shop_records(3, 1, 80);
    for round in &rounds {
        lake.feed(round).await;
    }
    lake.silver().await;
    let first = gold_run(&lake, only(&["day_lines"])).await;
    let v1 = first.marts[0].version.expect("built");

    write_sql(", CAST(sum(quantity) AS BIGINT) AS items");
    let second = gold_run(&lake, only(&["day_lines"])).await;
    let run = &second.marts[0];
    assert!(
        matches!(&run.refresh, Refresh::Full(why) if why.contains("columns")),
        "{:?}",
        run.refresh
    );
    // One commit: no version in between where the mart is empty.
    assert_eq!(run.version, Some(v1 + 1));
    let log = std::path::Path::new(&lake.config.storage.root)
        .join("gold/day_lines/_delta_log")
        .join(format!("{:020}.json", v1 + 1));
    let commit = std::fs::read_to_string(&log).expect("the commit file");
    for action in ["\"metaData\"", "\"add\"", "\"remove\"", "\"txn\""] {
        assert!(commit.contains(action), "{action} missing in {commit}");
    }
    let expected = lake
        .rows(
            &["fact_sales"],
            "SELECT order_date, CAST(count(*) AS BIGINT), CAST(sum(quantity) AS BIGINT) \
             FROM fact_sales WHERE order_date IS NOT NULL GROUP BY order_date",
        )
        .await;
    assert!(!expected.is_empty());
    assert_eq!(
        mart_rows(&lake, "SELECT order_date, lines, items FROM day_lines").await,
        expected
    );
    // The table at the previous version is still the old mart (time travel).
    let root = StorageRoot::from_config(&lake.config.storage).expect("root");
    let mut old = root.open_table("gold", "day_lines").await.expect("open");
    old.load_version(v1 as u64).await.expect("load v1");
    let old_schema = old.snapshot().expect("snapshot").schema();
    assert!(old_schema.field("items").is_none());
    assert_eq!(
        lakehouse::delta::files(&old, "day_lines").unwrap().len(),
        expected.len()
    );
}
