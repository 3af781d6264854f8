//! `lakehouse optimize` / `vacuum`, checkpoints and bronze auto-compaction
//! over the shipped pipeline: tables keep their rows, incremental readers
//! neither duplicate nor lose rows.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use lakehouse::config::Config;
use lakehouse::maintenance::{self, Selection, VacuumOptions};
use lakehouse::pipeline::JobKind;
use lakehouse::pipeline::jobs::{self, BronzeMode, LayerSummary};
use lakehouse::silver::FullRefresh;
use lakehouse::storage::StorageRoot;

use crate::gold_support::{shipped_lake, shop_records};
use crate::silver_support::{Lake, text_rows};

/// Every row of every table (bronze, silver, gold), as sorted text, by `layer.table`.
async fn contents(config: &Config) -> BTreeMap<String, Vec<Vec<String>>> {
    let root = StorageRoot::from_config(&config.storage).unwrap();
    let mut out = BTreeMap::new();
    for target in
        lakehouse::pipeline::jobs::maintenance_targets(config, &Selection::default()).unwrap()
    {
        let ctx = SessionContext::new();
        let registered =
            lakehouse::delta::session::register_table(&ctx, &root, target.layer, &target.name)
                .await
                .unwrap();
        if !registered {
            continue;
        }
        let batches = ctx
            .sql(&format!("SELECT * FROM {}", target.name))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rows = text_rows(&batches);
        rows.sort();
        out.insert(format!("{}.{}", target.layer, target.name), rows);
    }
    out
}

/// Asserts two `contents` are equal, naming the tables that differ.
/// `pipeline_health` reports the commit log, which maintenance adds to.
fn assert_same(
    after: &BTreeMap<String, Vec<Vec<String>>>,
    before: &BTreeMap<String, Vec<Vec<String>>>,
    what: &str,
) {
    let skip = |t: &str| t == "gold.pipeline_health";
    let tables: Vec<&String> = before.keys().filter(|t| !skip(t)).collect();
    assert_eq!(
        after.keys().filter(|t| !skip(t)).collect::<Vec<_>>(),
        tables,
        "{what}: tables"
    );
    for table in tables {
        let (a, b) = (&after[table], &before[table]);
        if a != b {
            let missing: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(3).collect();
            let extra: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(3).collect();
            panic!(
                "{what}: {table} differs ({} rows, was {}); missing {missing:?}; extra {extra:?}",
                a.len(),
                b.len()
            );
        }
    }
}

/// Data files in the latest snapshot of a table.
async fn file_count(config: &Config, layer: &str, table: &str) -> usize {
    let root = StorageRoot::from_config(&config.storage).unwrap();
    let table = root.open_table(layer, table).await.unwrap();
    table.snapshot().unwrap().log_data().into_iter().count()
}

async fn gold(lake: &Lake) {
    let options = lakehouse::pipeline::jobs::GoldOptions {
        no_publish: true,
        ..Default::default()
    };
    lakehouse::pipeline::jobs::gold(&lake.config, &options)
        .await
        .unwrap();
}

/// Feeds the rounds one bronze commit each, silver and gold after each.
async fn build(lake: &Lake, rounds: &[Vec<String>]) {
    for round in rounds {
        lake.feed(round).await;
        lake.silver().await;
        gold(lake).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_and_vacuum_keep_every_table_readable_with_the_same_rows() {
    crate::support::init_tracing();
    let mut lake = shipped_lake();
    lake.config.bronze.zorder = vec!["kafka_offset".into()];
    let rounds = shop_records(5, 3, 30);
    build(&lake, &rounds).await;
    let before = contents(&lake.config).await;
    assert!(before["bronze.bronze_events"].len() > 100);
    assert!(!before["silver.fact_sales"].is_empty());
    assert!(!before["gold.daily_sales"].is_empty());
    let files_before = file_count(&lake.config, "bronze", "bronze_events").await;

    let reports = lakehouse::pipeline::jobs::optimize(&lake.config, &Selection::default())
        .await
        .unwrap();
    let events = reports
        .iter()
        .find(|r| r.table == "bronze.bronze_events")
        .unwrap();
    assert!(events.zorder, "bronze.zorder is honoured");
    assert!(events.files_removed > 0, "{reports:?}");
    assert!(
        reports
            .iter()
            .any(|r| r.table.starts_with("silver.") && r.files_removed > 1),
        "silver tables with several files were compacted: {reports:?}"
    );
    assert!(file_count(&lake.config, "bronze", "bronze_events").await < files_before);
    assert_same(&contents(&lake.config).await, &before, "optimize");

    // Incremental runs after optimize see no change to apply.
    let silver = lake.silver().await;
    assert!(
        silver.tables.iter().all(|t| t.rows_in == 0),
        "silver re-read compacted rows: {silver}"
    );
    gold(&lake).await;
    assert_same(
        &contents(&lake.config).await,
        &before,
        "runs after optimize",
    );

    let options = VacuumOptions {
        retention_hours: Some(0),
        force: true,
        ..Default::default()
    };
    let vacuumed = lakehouse::pipeline::jobs::vacuum(&lake.config, &options)
        .await
        .unwrap();
    let deleted: usize = vacuumed.iter().map(|r| r.files.len()).sum();
    assert!(
        deleted > 0,
        "vacuum deleted the replaced files: {vacuumed:?}"
    );
    assert_same(&contents(&lake.config).await, &before, "vacuum");

    // The scheduler's `run = "optimize"` / `run = "vacuum"` jobs run the same
    // code with the configured options: vacuum at the default retention
    // (7 days) deletes nothing now, and neither changes a row.
    let scheduled = jobs::execute(
        &lake.config,
        JobKind::Optimize,
        BronzeMode::UntilIdle,
        crate::support::no_shutdown(),
    )
    .await
    .unwrap();
    let LayerSummary::Optimize(reports) = &scheduled else {
        panic!("{scheduled}")
    };
    assert!(
        reports.iter().any(|r| r.table == "silver.fact_sales"),
        "{scheduled}"
    );
    let scheduled = jobs::execute(
        &lake.config,
        JobKind::Vacuum,
        BronzeMode::UntilIdle,
        crate::support::no_shutdown(),
    )
    .await
    .unwrap();
    let LayerSummary::Vacuum(reports) = &scheduled else {
        panic!("{scheduled}")
    };
    assert!(reports.iter().all(|r| r.files.is_empty()), "{scheduled}");
    assert_same(
        &contents(&lake.config).await,
        &before,
        "scheduled maintenance",
    );

    // And the pipeline goes on after both.
    let more = shop_records(5, 4, 30);
    lake.feed(&more[4]).await;
    let silver = lake.silver().await;
    assert!(silver.tables.iter().any(|t| t.rows_in > 0));
    gold(&lake).await;
}

/// Silver over the same bronze input with and without an optimize of bronze
/// between its runs: the silver tables must be identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_between_bronze_batches_gives_silver_no_duplicates_and_no_loss() {
    crate::support::init_tracing();
    let rounds = shop_records(9, 4, 40);
    let optimized = shipped_lake();
    let plain = shipped_lake();
    for lake in [&optimized, &plain] {
        lake.feed(&rounds[0]).await;
        lake.silver().await;
        // Unread by silver when the optimize below compacts them.
        lake.feed(&rounds[1]).await;
        lake.feed(&rounds[2]).await;
    }
    let reports = lakehouse::pipeline::jobs::optimize(
        &optimized.config,
        &Selection {
            layer: Some("bronze".into()),
            table: Some("bronze_events".into()),
        },
    )
    .await
    .unwrap();
    assert!(reports[0].files_removed > 0, "{reports:?}");
    for lake in [&optimized, &plain] {
        lake.feed(&rounds[3]).await;
        lake.silver().await;
        lake.feed(&rounds[4]).await;
        lake.silver().await;
    }
    let tables = ["fact_sales", "orders", "dim_customer", "fact_payments"];
    for table in tables {
        let sql = format!("SELECT * FROM {table}");
        let a = optimized.rows(&[table], &sql).await;
        let b = plain.rows(&[table], &sql).await;
        assert!(!b.is_empty(), "{table} is empty");
        assert_eq!(
            a.len(),
            b.len(),
            "{table}: row count differs after optimize"
        );
        assert_eq!(a, b, "{table} differs after optimize");
    }
    let keys = optimized
        .rows(
            &["fact_sales"],
            "SELECT count(*) - count(DISTINCT (order_id, line_no)) FROM fact_sales",
        )
        .await;
    assert_eq!(
        keys,
        vec![vec!["0".to_string()]],
        "no duplicate order lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_refuses_unsafe_retention_without_force() {
    crate::support::init_tracing();
    let lake = shipped_lake();
    let rounds = shop_records(3, 2, 20);
    build(&lake, &rounds).await;
    lakehouse::pipeline::jobs::optimize(&lake.config, &Selection::default())
        .await
        .unwrap();
    let unsafe_retention = VacuumOptions {
        retention_hours: Some(1),
        ..Default::default()
    };
    let err = lakehouse::pipeline::jobs::vacuum(&lake.config, &unsafe_retention)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("168"), "{err}");
    // The configured minimum applies too.
    let mut strict = lake.config.clone();
    strict.maintenance.min_retention_hours = 1_000;
    strict.maintenance.retention_hours = 500;
    let err = lakehouse::pipeline::jobs::vacuum(&strict, &VacuumOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1000"), "{err}");

    // A dry run lists the files and deletes none.
    let dry = VacuumOptions {
        retention_hours: Some(0),
        force: true,
        dry_run: true,
        ..Default::default()
    };
    let listed = lakehouse::pipeline::jobs::vacuum(&lake.config, &dry)
        .await
        .unwrap();
    let files: Vec<String> = listed
        .iter()
        .filter(|r| r.table.starts_with("silver."))
        .flat_map(|r| {
            let table = r.table.trim_start_matches("silver.").to_string();
            r.files.iter().map(move |f| format!("{table}/{f}"))
        })
        .collect();
    assert!(!files.is_empty(), "{listed:?}");
    let silver_dir = std::path::Path::new(&lake.config.storage.root).join("silver");
    for file in &files {
        assert!(silver_dir.join(file).exists(), "dry run deleted {file}");
    }
    let forced = VacuumOptions {
        dry_run: false,
        ..dry
    };
    lakehouse::pipeline::jobs::vacuum(&lake.config, &forced)
        .await
        .unwrap();
    for file in &files {
        assert!(!silver_dir.join(file).exists(), "{file} was not vacuumed");
    }
}

fn checkpoints(config: &Config, layer: &str, table: &str) -> Vec<u64> {
    let log = std::path::Path::new(&config.storage.root)
        .join(layer)
        .join(table)
        .join("_delta_log");
    let mut versions: Vec<u64> = std::fs::read_dir(log)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let (version, rest) = name.split_once('.')?;
            rest.starts_with("checkpoint")
                .then(|| version.parse().ok())
                .flatten()
        })
        .collect();
    versions.sort();
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_written_every_interval_commits() {
    crate::support::init_tracing();
    let mut lake = shipped_lake();
    lake.config.maintenance.checkpoint_interval = 3;
    let rounds = shop_records(4, 6, 10);
    for round in &rounds {
        lake.feed(round).await;
        lake.silver().await;
    }
    // bronze_events: version 0 creates it, then one commit per round (7).
    let bronze = checkpoints(&lake.config, "bronze", "bronze_events");
    assert_eq!(bronze, vec![2, 5], "bronze checkpoints");
    let orders = checkpoints(&lake.config, "silver", "orders");
    assert!(!orders.is_empty(), "silver checkpoints: {orders:?}");
    let version = lake.version("silver", "orders").await.unwrap();
    assert!(
        version - orders.last().unwrap() < 3,
        "{orders:?} at {version}"
    );
    // Tables load from their checkpoints with every row.
    let before = contents(&lake.config).await;
    assert!(!before["silver.orders"].is_empty());
    let mut off = lake.config.clone();
    off.maintenance.checkpoint_interval = 0;
    assert_same(&contents(&off).await, &before, "checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_compaction_bounds_bronze_files_and_silver_stays_exact() {
    crate::support::init_tracing();
    let rounds = shop_records(6, 6, 25);
    let mut compacted = shipped_lake();
    compacted.config.bronze.flush_rows = 20;
    compacted.config.maintenance.auto_compact_files = 6;
    let mut plain = shipped_lake();
    plain.config.bronze.flush_rows = 20;
    plain.config.maintenance.auto_compact_files = 0;
    for lake in [&compacted, &plain] {
        for round in &rounds {
            lake.feed(round).await;
            lake.silver().await;
        }
    }
    let root = StorageRoot::from_config(&compacted.config.storage).unwrap();
    let table = root.open_table("bronze", "bronze_events").await.unwrap();
    let small = lakehouse::maintenance::compact::BronzeUpkeep::small_files(
        &table,
        "bronze_events",
        u64::MAX,
    )
    .unwrap();
    assert!(small < 6, "a topic holds {small} files");
    let plain_files = file_count(&plain.config, "bronze", "bronze_events").await;
    let compacted_files = file_count(&compacted.config, "bronze", "bronze_events").await;
    assert!(
        compacted_files * 2 < plain_files,
        "{compacted_files} files with auto-compaction, {plain_files} without"
    );
    assert_eq!(
        crate::support::bronze_positions(&compacted.config, "bronze_events").await,
        crate::support::bronze_positions(&plain.config, "bronze_events").await,
    );
    for table in ["fact_sales", "orders", "inventory"] {
        let sql = format!("SELECT * FROM {table}");
        let a = compacted.rows(&[table], &sql).await;
        assert!(!a.is_empty());
        assert_eq!(a, plain.rows(&[table], &sql).await, "{table} differs");
    }
}

/// `lakehouse optimize` running while silver and gold commit to the same
/// tables (a scheduled optimize overlapping a micro-batch): there is no
/// lock, so a loser's commit is refused. Every failure must be a reported
/// `CommitConflict` (never a silent loss), and once the writers catch up the
/// tables equal those of a lake that was never optimized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_racing_silver_and_gold_reports_conflicts_and_loses_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    crate::support::init_tracing();
    let rounds = shop_records(13, 6, 40);
    let raced = shipped_lake();
    let plain = shipped_lake();
    build(&plain, &rounds).await;

    let is_conflict = |e: &lakehouse::Error| matches!(e, lakehouse::Error::CommitConflict { .. });
    let stop = Arc::new(AtomicBool::new(false));
    let optimizer = {
        let (config, stop) = (raced.config.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut done, mut conflicts) = (0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                match lakehouse::pipeline::jobs::optimize(&config, &Selection::default()).await {
                    Ok(_) => done += 1,
                    Err(e) if is_conflict(&e) => conflicts += 1,
                    Err(e) => panic!("optimize failed with something else than a conflict: {e}"),
                }
            }
            (done, conflicts)
        })
    };
    let gold_options = lakehouse::pipeline::jobs::GoldOptions {
        no_publish: true,
        ..Default::default()
    };
    let mut layer_conflicts = 0u32;
    for round in &rounds {
        // Bronze appends; it retries a lost race itself.
        raced.feed(round).await;
        match raced.try_silver(FullRefresh::No).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => layer_conflicts += 1,
            Err(e) => panic!("silver failed with something else than a conflict: {e}"),
        }
        match lakehouse::pipeline::jobs::gold(&raced.config, &gold_options).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => layer_conflicts += 1,
            Err(e) => panic!("gold failed with something else than a conflict: {e}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (optimized, optimize_conflicts) = optimizer.await.unwrap();
    assert!(optimized > 0, "optimize ran during the rounds");
    tracing::info!(
        optimized,
        optimize_conflicts,
        layer_conflicts,
        "race outcome"
    );
    // Without the optimizer, one more run of each catches up.
    raced.silver().await;
    gold(&raced).await;

    let tables = [
        "fact_sales",
        "orders",
        "dim_customer",
        "dim_product",
        "fact_payments",
        "fact_shipments",
        "inventory",
    ];
    for table in tables {
        let sql = format!("SELECT * FROM {table}");
        let (a, b) = (
            raced.rows(&[table], &sql).await,
            plain.rows(&[table], &sql).await,
        );
        assert!(!b.is_empty(), "{table} is empty");
        assert_eq!(a, b, "{table} differs after racing optimizes");
    }
    let (a, b) = (contents(&raced.config).await, contents(&plain.config).await);
    for mart in [
        "gold.daily_sales",
        "gold.category_daily",
        "gold.product_performance",
    ] {
        assert!(!b[mart].is_empty(), "{mart} is empty");
        assert_eq!(a[mart], b[mart], "{mart} differs after racing optimizes");
    }
}

/// The deterministic core of the race above: a silver/gold rewrite prepared
/// on a snapshot that an optimize has since replaced. deltalake 1.1's
/// conflict checker ignores removals with `dataChange = false`, so retrying
/// such a commit on top of the optimize would keep the optimize's copy of the
/// rows *and* add the rewrite's: duplicates. The commit must be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_of_files_an_optimize_replaced_is_refused() {
    crate::support::init_tracing();
    let lake = shipped_lake();
    build(&lake, &shop_records(17, 3, 40)).await;
    let root = StorageRoot::from_config(&lake.config.storage).unwrap();
    let table = "fact_sales";
    let sql = format!("SELECT * FROM {table}");
    let before = lake.rows(&[table], &sql).await;
    let mut stale = root.open_table("silver", table).await.unwrap();
    let files = lakehouse::delta::files(&stale, table).unwrap();
    assert!(files.len() > 1, "{} file(s)", files.len());

    let reports = lakehouse::pipeline::jobs::optimize(
        &lake.config,
        &Selection {
            layer: Some("silver".into()),
            table: Some(table.into()),
        },
    )
    .await
    .unwrap();
    assert!(reports[0].files_removed > 1, "{reports:?}");

    // "Rewrite" the first file as a writer holding the old snapshot would:
    // remove it and add its replacement (here the same file again).
    let first = &files[0];
    #[allow(deprecated)] // the one way to get an `Add` of an existing file
    let replacement = stale
        .snapshot()
        .unwrap()
        .log_data()
        .into_iter()
        .find(|f| f.path() == first.path.as_str())
        .unwrap()
        .add_action();
    let error = lakehouse::delta::TableCommit::new(lakehouse::delta::CommitMode::Update)
        .with_removes(vec![first.remove.clone()])
        .with_adds(vec![replacement])
        .commit(&mut stale, table)
        .await
        .expect_err("a rewrite of replaced files must not commit");
    assert!(
        matches!(error, lakehouse::Error::CommitConflict { .. }),
        "{error}"
    );
    assert_eq!(lake.rows(&[table], &sql).await, before, "rows unchanged");
}

/// Two compactions of one table at once (two bronze processes
/// auto-compacting, or `lakehouse optimize` started while the scheduler's
/// runs): both would rewrite the same small files, and deltalake retries an
/// optimize over another one (it ignores `dataChange = false` removals), so
/// both copies would stay. Only one may compact; rows stay exactly the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compactions_of_one_table_never_duplicate_rows() {
    crate::support::init_tracing();
    let lake = shipped_lake();
    for round in shop_records(19, 8, 30) {
        lake.feed(&round).await;
    }
    let before = contents(&lake.config).await["bronze.bronze_events"].clone();
    let root = StorageRoot::from_config(&lake.config.storage).unwrap();
    let target = lakehouse::pipeline::jobs::maintenance_targets(
        &lake.config,
        &Selection {
            layer: Some("bronze".into()),
            table: Some("bronze_events".into()),
        },
    )
    .unwrap()
    .remove(0);
    let config = lake.config.maintenance.clone();
    let (a, b) = tokio::join!(
        maintenance::optimize_table(&root, &target, &config),
        maintenance::optimize_table(&root, &target, &config),
    );
    let compacted: Vec<u64> = [a, b]
        .into_iter()
        .map(|r| r.map_or(0, |r| r.files_removed))
        .collect();
    // One of them compacted; the other found the lease held (or, had it
    // come second, nothing left to compact).
    assert_eq!(
        compacted.iter().filter(|&&n| n > 0).count(),
        1,
        "{compacted:?}"
    );
    let after = contents(&lake.config).await["bronze.bronze_events"].clone();
    assert_eq!(
        after.len(),
        before.len(),
        "row count after concurrent compactions"
    );
    assert_eq!(after, before);
}
