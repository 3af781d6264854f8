//! Silver incremental runs touch only the files that hold the keys they
//! change (rewritten, or their replaced rows marked deleted in deletion
//! vectors): counted in the Delta commit's `add` and `remove` actions.

use serde_json::json;

use crate::silver_support::*;

const SPEC: &str = r#"
kind = "scd1"
keys = ["customer_id"]
surrogate_key = "customer_key"
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", city = "VARCHAR" }
"#;

const SQL: &str = "SELECT id AS customer_id, city FROM customers";

fn customer(d: &Dbz, op: &str, id: i64, city: &str, lsn: i64) -> String {
    d.change(
        "customers",
        op,
        json!({ "id": id }),
        json!({ "id": id, "city": city }),
        lsn,
    )
}

/// The actions of commit `version` of silver table `table`, read from its
/// Delta log as written.
fn log_actions(lake: &Lake, table: &str, version: u64) -> Vec<serde_json::Value> {
    let log = lake
        .path()
        .join("lake/silver")
        .join(table)
        .join("_delta_log")
        .join(format!("{version:020}.json"));
    let text = std::fs::read_to_string(&log).expect("commit file");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("action json"))
        .collect()
}

/// (adds, removes) of commit `version` of silver table `table`, with the
/// removed files' paths.
fn commit_actions(lake: &Lake, table: &str, version: u64) -> (usize, Vec<String>) {
    let mut adds = 0;
    let mut removes = Vec::new();
    for action in log_actions(lake, table, version) {
        if action.get("add").is_some() {
            adds += 1;
        }
        if let Some(remove) = action.get("remove") {
            removes.push(remove["path"].as_str().expect("path").to_string());
        }
    }
    (adds, removes)
}

/// Key range (min, max) of every active data file, by path, from the
/// `add` actions of the log (files never removed).
fn file_ranges(lake: &Lake, table: &str, upto: u64) -> Vec<(String, i64, i64)> {
    let mut live: Vec<(String, i64, i64)> = Vec::new();
    for version in 0..=upto {
        for action in log_actions(lake, table, version) {
            if let Some(add) = action.get("add") {
                let stats: serde_json::Value =
                    serde_json::from_str(add["stats"].as_str().expect("stats")).expect("stats");
                if let (Some(min), Some(max)) = (
                    stats["minValues"]["customer_id"].as_i64(),
                    stats["maxValues"]["customer_id"].as_i64(),
                ) {
                    live.push((add["path"].as_str().expect("path").into(), min, max));
                }
            }
            if let Some(remove) = action.get("remove") {
                live.retain(|(p, _, _)| p != remove["path"].as_str().expect("path"));
            }
        }
    }
    live
}

/// A lake whose `dim_c` holds customers 1..=100 in files of 10 rows, with
/// the key range of each file.
async fn loaded() -> (Lake, Dbz, Vec<(String, i64, i64)>) {
    let mut lake = Lake::new();
    lake.config.silver.file_rows = 10;
    lake.table("dim_c", SPEC, SQL);
    let d = Dbz::new();
    let initial: Vec<String> = (1..=100)
        .map(|id| customer(&d, "r", id, "Paris", 100))
        .collect();
    lake.feed(&initial).await;
    lake.silver().await;
    let v0 = lake.version("silver", "dim_c").await.expect("built");
    let ranges = file_ranges(&lake, "dim_c", v0);
    (lake, d, ranges)
}

/// [`loaded`], and a second such lake that rewrites files instead of
/// writing deletion vectors (what the first must read like).
async fn loaded_twice() -> (Lake, Lake, Dbz, Vec<(String, i64, i64)>) {
    let (lake, d, ranges) = loaded().await;
    let (mut rewriting, _, _) = loaded().await;
    rewriting.config.silver.deletion_vectors = false;
    (lake, rewriting, d, ranges)
}

/// The file of `ranges` whose key range holds `key`.
fn file_holding(ranges: &[(String, i64, i64)], key: i64) -> String {
    ranges
        .iter()
        .find(|(_, min, max)| (*min..=*max).contains(&key))
        .map(|(p, _, _)| p.clone())
        .expect("a file holds the key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_run_rewrites_only_the_files_holding_its_keys() {
    let (lake, d, ranges) = loaded().await;
    assert_eq!(ranges.len(), 10, "100 keys in files of 10 rows: {ranges:?}");

    // Two updates in two different files and one new key after all of them.
    lake.feed(&[
        customer(&d, "u", 15, "Oslo", 200),
        customer(&d, "u", 77, "Rome", 201),
        customer(&d, "c", 150, "Bern", 202),
    ])
    .await;
    let summary = lake.silver().await;
    let run = &summary.tables[0];
    let v1 = lake.version("silver", "dim_c").await.expect("built");
    assert_eq!(run.version, Some(v1 as i64));
    let (adds, removed) = commit_actions(&lake, "dim_c", v1);
    let mut expected: Vec<String> = ranges
        .iter()
        .filter(|(_, min, max)| (*min..=*max).contains(&15) || (*min..=*max).contains(&77))
        .map(|(p, _, _)| p.clone())
        .collect();
    let mut removed_sorted = removed.clone();
    removed_sorted.sort();
    expected.sort();
    assert_eq!(removed_sorted, expected, "only the files of keys 15 and 77");
    assert_eq!(
        adds, 3,
        "the two touched files (with deletion vectors) and one for the new rows"
    );
    assert_eq!((run.files_removed, run.files_added), (2, 3));
    let rows = lake
        .rows(
            &["dim_c"],
            "SELECT customer_id, city FROM dim_c WHERE customer_id IN (14, 15, 77, 150)",
        )
        .await;
    let cell = |id: &str, city: &str| vec![id.to_string(), city.to_string()];
    assert_eq!(
        rows,
        vec![
            cell("14", "Paris"),
            cell("15", "Oslo"),
            cell("150", "Bern"),
            cell("77", "Rome"),
        ]
    );
    let count = lake.rows(&["dim_c"], "SELECT count(*) FROM dim_c").await;
    assert_eq!(
        count,
        vec![vec!["102".to_string()]],
        "101 keys and the unknown member"
    );

    // A replay of an applied change touches no file: nothing changes, the
    // commit only moves the watermark.
    lake.feed(&[customer(&d, "u", 15, "Oslo", 200)]).await;
    let summary = lake.silver().await;
    let v2 = lake.version("silver", "dim_c").await.expect("built");
    assert_eq!(summary.tables[0].counts.stale, 1);
    assert_eq!(commit_actions(&lake, "dim_c", v2), (0, Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_run_in_chunks_rewrites_each_file_once() {
    let (mut lake, d, ranges) = loaded().await;

    // 20 updates over two files, a delete, and a stale replay, applied in
    // chunks of 3 changes: chunks share files, each file is still
    // replaced once and no row is lost or doubled.
    lake.config.silver.chunk_rows = 3;
    let mut batch: Vec<String> = (11..=30)
        .map(|id| customer(&d, "u", id, "Oslo", 200 + id))
        .collect();
    batch.push(customer(&d, "d", 12, "Oslo", 300));
    batch.push(customer(&d, "u", 25, "Stale", 90));
    lake.feed(&batch).await;
    let summary = lake.silver().await;
    let v1 = lake.version("silver", "dim_c").await.expect("built");
    let (adds, mut removed) = commit_actions(&lake, "dim_c", v1);
    removed.sort();
    let mut expected: Vec<String> = ranges
        .iter()
        .filter(|(_, min, max)| *max >= 11 && *min <= 30)
        .map(|(p, _, _)| p.clone())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 2);
    assert_eq!(removed, expected, "each touched file removed once");
    assert_eq!(adds, 2, "19 rows rewritten in files of 10");
    let run = &summary.tables[0];
    assert_eq!(
        (run.counts.updated, run.counts.deleted, run.counts.stale),
        (20, 1, 1)
    );
    let rows = lake
        .rows(
            &["dim_c"],
            "SELECT count(*), count(DISTINCT customer_id), sum(CASE WHEN city = 'Oslo' THEN 1 ELSE 0 END) FROM dim_c",
        )
        .await;
    assert_eq!(
        rows,
        vec![vec!["100".to_string(), "99".to_string(), "19".to_string()]],
        "99 keys once each (12 deleted), the unknown member, 19 updated"
    );
}

/// The deletion vectors of commit `version`: (path, cardinality) of each
/// `add` that carries one.
fn deletion_vectors(lake: &Lake, table: &str, version: u64) -> Vec<(String, i64)> {
    let mut vectors: Vec<(String, i64)> = log_actions(lake, table, version)
        .iter()
        .filter_map(|action| {
            let add = action.get("add")?;
            let dv = add.get("deletionVector")?;
            Some((
                add["path"].as_str().expect("path").to_string(),
                dv["cardinality"].as_i64().expect("cardinality"),
            ))
        })
        .collect();
    vectors.sort();
    vectors
}

/// Updates of a few random keys leave their files in place: the replaced
/// rows are marked deleted in each file's deletion vector (a later run adds
/// to it), only the keys' new rows are written, and the table reads the
/// same as with copy-on-write rewrites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_updates_mark_rows_deleted_instead_of_rewriting_files() {
    let (lake, rewriting, d, ranges) = loaded_twice().await;
    let file_of = |key: i64| file_holding(&ranges, key);

    let first = vec![
        customer(&d, "u", 5, "Oslo", 200),
        customer(&d, "u", 45, "Rome", 201),
        customer(&d, "d", 93, "Paris", 202),
    ];
    let second = vec![
        customer(&d, "u", 6, "Lima", 300),
        customer(&d, "c", 150, "Bern", 301),
    ];
    for (round, changes) in [&first, &second].into_iter().enumerate() {
        lake.feed(changes).await;
        rewriting.feed(changes).await;
        let run = lake.silver().await.tables.remove(0);
        rewriting.silver().await;
        let version = lake.version("silver", "dim_c").await.expect("built");
        let (adds, mut removed) = commit_actions(&lake, "dim_c", version);
        removed.sort();
        let vectors = deletion_vectors(&lake, "dim_c", version);
        if round == 0 {
            // Keys 5, 45 and 93 sit in three files: each keeps its other
            // nine rows and has one marked deleted; keys 5 and 45 are
            // written again, 93 is gone.
            let mut touched = vec![file_of(5), file_of(45), file_of(93)];
            touched.sort();
            assert_eq!(removed, touched);
            let marked: Vec<(String, i64)> = touched.iter().map(|p| (p.clone(), 1)).collect();
            assert_eq!(vectors, marked);
            assert_eq!(
                adds, 4,
                "three files with their vectors and one of new rows"
            );
            assert_eq!(run.deletion_vectors, 3);
        } else {
            // Key 6 shares key 5's file: its vector now marks both rows.
            assert_eq!(removed, vec![file_of(6)]);
            assert_eq!(vectors, vec![(file_of(6), 2)]);
            assert_eq!(adds, 2, "the file with its vector and one of new rows");
        }
        let all = "SELECT customer_id, customer_key, city FROM dim_c";
        assert_eq!(
            lake.rows(&["dim_c"], all).await,
            rewriting.rows(&["dim_c"], all).await,
            "round {round}: the table reads as if rewritten"
        );
    }
    let rows = lake
        .rows(
            &["dim_c"],
            "SELECT customer_id, city FROM dim_c WHERE customer_id IN (4, 5, 6, 45, 93, 150)",
        )
        .await;
    let cell = |id: &str, city: &str| vec![id.to_string(), city.to_string()];
    assert_eq!(
        rows,
        vec![
            cell("150", "Bern"),
            cell("4", "Paris"),
            cell("45", "Rome"),
            cell("5", "Oslo"),
            cell("6", "Lima"),
        ]
    );
}

const SCD2_SPEC: &str = r#"
kind = "scd2"
keys = ["customer_id"]
surrogate_key = "customer_key"
track = ["city"]
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", city = "VARCHAR" }
"#;

/// An SCD2 backlog applied in chunks of two keys: scattered updates mark
/// rows of the same files in several chunks, then a truncate (applied to
/// every held row in the first chunk) closes the few versions older than
/// it, in files that later chunks read again for other keys. No version is
/// lost or doubled, and the table reads as with copy-on-write rewrites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_marking_the_same_files_lose_and_double_nothing() {
    let build = |deletion_vectors: bool| async move {
        let mut lake = Lake::new();
        lake.config.silver.file_rows = 10;
        lake.config.silver.deletion_vectors = deletion_vectors;
        lake.table("dim_c", SCD2_SPEC, SQL);
        lake
    };
    let lake = build(true).await;
    let rewriting = build(false).await;
    let d = Dbz::new();
    // 100 keys; then all but keys 5, 45 and 97 move (newer than the
    // truncate). The first chunk (the truncate and key 5) closes 97 beyond
    // its last key: carried, with 97's row marked deleted in its file; the
    // next chunk reads that file again for 97's own change.
    let initial: Vec<String> = (1..=100)
        .map(|id| customer(&d, "r", id, "Paris", 100))
        .collect();
    let moved: Vec<String> = (1..=100)
        .filter(|id| ![5, 45, 97].contains(id))
        .map(|id| customer(&d, "u", id, "Oslo", 500 + id))
        .collect();
    let scattered: Vec<String> = [11, 15, 23, 27, 31, 38, 52, 56]
        .iter()
        .map(|&id| customer(&d, "u", id, "Lima", 700 + id))
        .collect();
    let truncated = vec![
        d.truncate("customers", 450),
        customer(&d, "c", 5, "Rome", 460),
        customer(&d, "u", 46, "Bern", 900),
        customer(&d, "u", 97, "Kyiv", 901),
    ];
    let all = "SELECT customer_id, customer_key, city, valid_from, valid_to, is_current FROM dim_c";
    for (round, changes) in [initial, moved, scattered, truncated].iter().enumerate() {
        for lake in [&lake, &rewriting] {
            let mut lake_config = lake.config.clone();
            lake_config.silver.chunk_rows = if round < 2 { 100_000 } else { 2 };
            lake.feed(changes).await;
            lakehouse::pipeline::jobs::silver(&lake_config, &Default::default())
                .await
                .expect("silver run");
        }
        let rows = lake.rows(&["dim_c"], all).await;
        assert_eq!(
            rows,
            rewriting.rows(&["dim_c"], all).await,
            "round {round}: the table reads as if rewritten"
        );
        let versions: std::collections::HashSet<(&String, &String)> =
            rows.iter().map(|r| (&r[0], &r[3])).collect();
        assert_eq!(versions.len(), rows.len(), "round {round}: a version twice");
    }
    let current = lake
        .rows(
            &["dim_c"],
            "SELECT customer_id, city FROM dim_c WHERE is_current AND customer_id IN (5, 45, 46, 97)",
        )
        .await;
    let cell = |id: &str, city: &str| vec![id.to_string(), city.to_string()];
    assert_eq!(
        current,
        vec![cell("46", "Bern"), cell("5", "Rome"), cell("97", "Kyiv")],
        "45 closed by the truncate, 5 and 97 opened again after it"
    );
}

/// The data files of `dim_c`'s latest snapshot: (path, rows as written,
/// rows its deletion vector marks deleted).
async fn live_files(lake: &Lake) -> Vec<(String, usize, i64)> {
    let root = lakehouse::storage::StorageRoot::from_config(&lake.config.storage).unwrap();
    let table = root.open_table("silver", "dim_c").await.unwrap();
    let mut files: Vec<(String, usize, i64)> = lakehouse::delta::files(&table, "dim_c")
        .unwrap()
        .into_iter()
        .map(|f| {
            let deleted = f.remove.deletion_vector.map_or(0, |v| v.cardinality);
            (f.path, f.num_records.unwrap_or_default(), deleted)
        })
        .collect();
    files.sort();
    files
}

/// `optimize` rewrites, with only its live rows, a file whose deletion
/// vector marks more than `purge_deleted_ratio` of its rows deleted, even
/// where the compaction leaves it (here every file is above the target
/// size); a file with fewer deleted rows keeps its vector. The table reads
/// the same, and later runs change the rewritten file's rows as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_purges_files_with_many_deleted_rows() {
    let (mut lake, rewriting, d, ranges) = loaded_twice().await;
    let file_of = |key: i64| file_holding(&ranges, key);
    assert_eq!(file_of(5), file_of(6));
    assert_ne!(file_of(5), file_of(45));
    // Two of ten rows of one file replaced (20 %), one of another (10 %).
    let changes = vec![
        customer(&d, "u", 5, "Oslo", 200),
        customer(&d, "u", 6, "Lima", 201),
        customer(&d, "u", 45, "Rome", 202),
    ];
    for lake in [&lake, &rewriting] {
        lake.feed(&changes).await;
        lake.silver().await;
    }
    let before = live_files(&lake).await;
    let deleted_in = |files: &[(String, usize, i64)], path: &str| {
        files.iter().find(|f| f.0 == path).map(|f| f.2)
    };
    assert_eq!(deleted_in(&before, &file_of(5)), Some(2), "{before:?}");
    assert_eq!(deleted_in(&before, &file_of(45)), Some(1), "{before:?}");
    let all = "SELECT customer_id, customer_key, city FROM dim_c";
    let rows = lake.rows(&["dim_c"], all).await;

    // Every file is larger than the target: the compaction skips them all.
    lake.config.maintenance.target_file_size = 1;
    lake.config.maintenance.purge_deleted_ratio = 0.15;
    let reports = lakehouse::pipeline::jobs::optimize(
        &lake.config,
        &lakehouse::maintenance::Selection::default(),
    )
    .await
    .unwrap();
    let report = reports
        .iter()
        .find(|r| r.table == "silver.dim_c")
        .expect("dim_c optimized");
    assert_eq!((report.files_removed, report.files_added), (0, 0));
    assert_eq!(
        (report.purged.files, report.purged.rows),
        (1, 2),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("purged 2 deleted rows from 1 files")
    );
    let version = lake.version("silver", "dim_c").await.expect("table");
    let operation = log_actions(&lake, "dim_c", version)
        .iter()
        .find_map(|a| a.get("commitInfo").map(|c| c["operation"].clone()));
    assert_eq!(operation, Some(serde_json::json!("OPTIMIZE")));
    for action in log_actions(&lake, "dim_c", version) {
        for kind in ["add", "remove"] {
            if let Some(file) = action.get(kind) {
                assert_eq!(file["dataChange"], serde_json::json!(false), "{action}");
            }
        }
    }

    let after = live_files(&lake).await;
    assert_eq!(after.len(), before.len(), "one file replaced by one");
    assert_eq!(
        deleted_in(&after, &file_of(5)),
        None,
        "the purged file left"
    );
    assert_eq!(deleted_in(&after, &file_of(45)), Some(1), "below the ratio");
    let fresh: Vec<_> = after
        .iter()
        .filter(|f| !before.iter().any(|b| b.0 == f.0))
        .collect();
    assert_eq!(fresh.len(), 1, "{after:?}");
    assert_eq!((fresh[0].1, fresh[0].2), (8, 0), "its eight live rows");
    assert_eq!(
        lake.rows(&["dim_c"], all).await,
        rows,
        "the rows are the same"
    );

    // A second optimize finds nothing to purge.
    let again = lakehouse::pipeline::jobs::optimize(
        &lake.config,
        &lakehouse::maintenance::Selection::default(),
    )
    .await
    .unwrap();
    let report = again.iter().find(|r| r.table == "silver.dim_c").unwrap();
    assert_eq!(report.purged.files, 0);

    // Later changes to the purged file's keys apply as to any file.
    let later = vec![
        customer(&d, "u", 7, "Bern", 300),
        customer(&d, "d", 5, "Oslo", 301),
    ];
    for lake in [&lake, &rewriting] {
        lake.feed(&later).await;
        lake.silver().await;
    }
    assert_eq!(
        lake.rows(&["dim_c"], all).await,
        rewriting.rows(&["dim_c"], all).await,
        "the table reads as if every change had rewritten its files"
    );
}
