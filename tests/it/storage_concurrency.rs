//! Concurrent writers on one table, on each object-store server. deltalake 1.1
//! commits `_delta_log/N.json` with a create-only PUT (If-None-Match: *) on S3
//! and Azure alike (its DefaultLogStore; no temp file + rename, no DynamoDB),
//! so a lost race is a conflict deltalake retries, never a lost commit.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::prelude::SessionContext;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use lakehouse::storage::StorageRoot;

use crate::storage_support::Server;

const WRITERS: i64 = 4;
const COMMITS: i64 = 10;
const ROWS_PER_COMMIT: i64 = 3;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("writer", DataType::Int64, false),
        Field::new("commit_no", DataType::Int64, false),
        Field::new("row_no", DataType::Int64, false),
    ]))
}

fn batch(writer: i64, commit: i64) -> RecordBatch {
    let n = ROWS_PER_COMMIT as usize;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![writer; n])),
            Arc::new(Int64Array::from(vec![commit; n])),
            Arc::new(Int64Array::from_iter_values(0..ROWS_PER_COMMIT)),
        ],
    )
    .unwrap()
}

/// Versions of the commit files in `_delta_log/`.
async fn log_versions(root: &StorageRoot, table: &str) -> Vec<u64> {
    let delta = root.open_table("test", table).await.unwrap();
    let store = delta.log_store().object_store(None);
    let prefix = deltalake::Path::from("_delta_log");
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    let mut versions: Vec<u64> = metas
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            let stem = name.strip_suffix(".json")?;
            (stem.len() == 20).then(|| stem.parse().ok()).flatten()
        })
        .collect();
    versions.sort_unstable();
    versions
}

async fn concurrent_appends_lose_nothing(server: Server) {
    let config = server.storage("concurrency");
    let root = StorageRoot::from_config(&config).unwrap();
    root.check().await.unwrap();
    let table = "appends";
    let fields: StructType = schema().as_ref().try_into_kernel().unwrap();
    root.open_table("test", table)
        .await
        .unwrap()
        .create()
        .with_columns(fields.fields().cloned())
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let root = root.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed = Vec::new();
            for commit in 0..COMMITS {
                // A separate handle per commit, as a separate process would have.
                let delta = root.open_table("test", table).await.unwrap();
                match delta
                    .write(vec![batch(writer, commit)])
                    .with_save_mode(SaveMode::Append)
                    .await
                {
                    Ok(_) => acknowledged.push((writer, commit)),
                    Err(e) => failed.push(format!("writer {writer} commit {commit}: {e}")),
                }
            }
            (acknowledged, failed)
        }));
    }
    let mut acknowledged = BTreeSet::new();
    let mut failed = Vec::new();
    for task in tasks {
        let (ok, bad) = task.await.unwrap();
        acknowledged.extend(ok);
        failed.extend(bad);
    }
    eprintln!(
        "{:?}: {} commits by {WRITERS} writers in {:.2}s ({} failed)",
        server.kind,
        acknowledged.len(),
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    // deltalake retries a lost race 15 times; at this size none may fail.
    assert!(failed.is_empty(), "commits reported as failed: {failed:#?}");

    // Every acknowledged append is in the table exactly once ...
    let ctx = SessionContext::new();
    let delta = root.open_table("test", table).await.unwrap();
    delta.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("appends", delta.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql("SELECT writer, commit_no, count(*) FROM appends GROUP BY writer, commit_no")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut found = BTreeSet::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let key = (
                b.column(0).as_primitive::<Int64Type>().value(i),
                b.column(1).as_primitive::<Int64Type>().value(i),
            );
            assert_eq!(
                b.column(2).as_primitive::<Int64Type>().value(i),
                ROWS_PER_COMMIT,
                "rows of {key:?}"
            );
            assert!(found.insert(key), "{key:?} twice");
        }
    }
    assert_eq!(
        found, acknowledged,
        "rows in the table vs acknowledged appends"
    );
    // ... and the log is versions 0..=N*M without a gap.
    let versions = log_versions(&root, table).await;
    let expected: Vec<u64> = (0..=(WRITERS * COMMITS) as u64).collect();
    assert_eq!(versions, expected, "commit versions");
    assert_eq!(delta.version(), Some((WRITERS * COMMITS) as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_concurrent_writers_lose_no_commit() {
    let Some(server) = Server::s3() else { return };
    concurrent_appends_lose_nothing(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_concurrent_writers_lose_no_commit() {
    let Some(server) = Server::azure() else {
        return;
    };
    concurrent_appends_lose_nothing(server).await;
}

/// The commit primitive itself: writers racing to create the same object with
/// a create-only PUT (what a Delta commit does): exactly one wins per round,
/// the others get `AlreadyExists`, and the winner's bytes stay.
///
/// (object_store's `rename_if_not_exists` on S3, a multipart copy completed
/// with If-None-Match, is NOT atomic on SeaweedFS 4.48: two racers both won.
/// deltalake 1.1 does not use it for commits.)
async fn create_if_absent_is_atomic(server: Server) {
    use deltalake::logstore::object_store::{
        ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    };
    let root = StorageRoot::from_config(&server.storage("atomic")).unwrap();
    let store = root
        .open_table("test", "atomic")
        .await
        .unwrap()
        .log_store()
        .object_store(None);
    for round in 0..5 {
        let target = deltalake::Path::from(format!("round-{round}.json"));
        let mut tasks = Vec::new();
        for writer in 0..6 {
            let store = store.clone();
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                let body = format!("writer {writer}");
                let create = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let result = store
                    .put_opts(&target, PutPayload::from(body.clone().into_bytes()), create)
                    .await
                    .map(|_| ());
                (body, result)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (body, Ok(())) => winners.push(body),
                (_, Err(deltalake::ObjectStoreError::AlreadyExists { .. })) => {}
                (_, Err(e)) => panic!("round {round}: unexpected error {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = store.get(&target).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), winners[0].as_bytes(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_create_if_absent_is_atomic() {
    let Some(server) = Server::s3() else { return };
    create_if_absent_is_atomic(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_create_if_absent_is_atomic() {
    let Some(server) = Server::azure() else {
        return;
    };
    create_if_absent_is_atomic(server).await;
}

/// Our bronze writer, started three times at once on the same input (a
/// scheduler started twice): every line lands exactly once.
async fn racing_bronze_runs_land_each_record_once(server: Server) {
    use lakehouse::bronze::{BronzeSource, StopCondition};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mock.jsonl");
    crate::storage_flow::mock_jsonl(&input);
    let mut config = lakehouse::config::Config {
        storage: server.storage("bronze-race"),
        ..Default::default()
    };
    config.bronze.flush_rows = 150;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let config = config.clone();
        let input = input.clone();
        runs.push(tokio::spawn(async move {
            lakehouse::pipeline::jobs::bronze(
                &config,
                BronzeSource::Files(vec![input]),
                StopCondition::default(),
                tokio::sync::watch::channel(false).1,
            )
            .await
        }));
    }
    let mut rows = 0;
    for run in runs {
        let summary = run.await.unwrap().unwrap();
        rows += summary.counts.rows;
    }
    let lines = std::fs::read_to_string(&input).unwrap().lines().count() as i64;
    let stored = crate::support::scalar_i64(&config, "SELECT count(*) FROM bronze_events").await;
    let distinct = crate::support::scalar_i64(
        &config,
        "SELECT count(*) FROM (SELECT DISTINCT topic, kafka_partition, kafka_offset FROM bronze_events)",
    )
    .await;
    eprintln!(
        "{:?}: {lines} lines, {rows} rows written by 3 racing runs, {stored} stored",
        server.kind
    );
    assert_eq!(stored, distinct, "duplicates in bronze_events");
    assert!(
        stored > 0 && stored <= lines,
        "{stored} rows for {lines} lines"
    );
    // The same input on local storage by one run: the same rows.
    let local = lakehouse::config::Config {
        storage: lakehouse::config::StorageConfig {
            root: dir.path().join("lake").display().to_string(),
            options: Default::default(),
        },
        ..config.clone()
    };
    lakehouse::pipeline::jobs::bronze(
        &local,
        BronzeSource::Files(vec![input.clone()]),
        StopCondition::default(),
        tokio::sync::watch::channel(false).1,
    )
    .await
    .unwrap();
    let expected = crate::support::scalar_i64(&local, "SELECT count(*) FROM bronze_events").await;
    assert_eq!(stored, expected, "rows vs a single local run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_racing_bronze_runs_land_each_record_once() {
    let Some(server) = Server::s3() else { return };
    racing_bronze_runs_land_each_record_once(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_racing_bronze_runs_land_each_record_once() {
    let Some(server) = Server::azure() else {
        return;
    };
    racing_bronze_runs_land_each_record_once(server).await;
}

/// Our silver writer, started twice at once (a scheduler started twice): each
/// run either commits or fails with a reported conflict, never silently
/// duplicates; a later run completes the work, and every table then matches a
/// single run on local storage.
async fn racing_silver_runs_never_lose_or_duplicate(server: Server) {
    use lakehouse::bronze::{BronzeSource, StopCondition};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mock.jsonl");
    crate::storage_flow::mock_jsonl(&input);
    let remote = crate::storage_flow::config(server.storage("silver-race"));
    let local = crate::storage_flow::config(lakehouse::config::StorageConfig {
        root: dir.path().join("lake").display().to_string(),
        options: Default::default(),
    });
    for config in [&remote, &local] {
        lakehouse::pipeline::jobs::bronze(
            config,
            BronzeSource::Files(vec![input.clone()]),
            StopCondition::default(),
            tokio::sync::watch::channel(false).1,
        )
        .await
        .unwrap();
    }
    let local_run = lakehouse::pipeline::jobs::silver(&local, &Default::default())
        .await
        .unwrap();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let config = remote.clone();
            tokio::spawn(async move {
                lakehouse::pipeline::jobs::silver(&config, &Default::default()).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.unwrap());
    }
    let shown: Vec<_> = outcomes
        .iter()
        .map(|o| o.as_ref().map(|_| "committed").map_err(|e| e.to_string()))
        .collect();
    eprintln!("{:?}: racing silver runs: {shown:?}", server.kind);
    for outcome in &outcomes {
        match outcome {
            Ok(_) => {}
            Err(e @ lakehouse::Error::CommitConflict { .. }) => {
                assert!(e.to_string().contains("next run redoes it"), "{e}");
            }
            Err(e) => panic!("a racing run failed for another reason: {e}"),
        }
    }
    // The next scheduled run picks up whatever a failed run left.
    lakehouse::pipeline::jobs::silver(&remote, &Default::default())
        .await
        .unwrap();
    let tables: Vec<(&str, String)> = local_run
        .tables
        .iter()
        .map(|t| ("silver", t.table.clone()))
        .collect();
    let expected = crate::storage_flow::counts(&local, &tables).await;
    assert!(expected.get("silver.fact_sales").is_some_and(|n| *n > 0));
    assert_eq!(
        crate::storage_flow::counts(&remote, &tables).await,
        expected,
        "silver tables after racing runs vs one local run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_racing_silver_runs_never_lose_or_duplicate() {
    let Some(server) = Server::s3() else { return };
    racing_silver_runs_never_lose_or_duplicate(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_racing_silver_runs_never_lose_or_duplicate() {
    let Some(server) = Server::azure() else {
        return;
    };
    racing_silver_runs_never_lose_or_duplicate(server).await;
}
