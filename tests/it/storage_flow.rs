//! The whole bronze → silver → gold flow on each object-store server, against
//! the same flow on local storage: same rows in every silver table and mart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::config::{Config, StorageConfig};
use lakehouse::storage::StorageRoot;
use lakehouse_mock::SimConfig;

use crate::storage_support::Server;

/// Mock e-commerce changes as Debezium JSON lines (snapshot + transactions).
pub fn mock_jsonl(path: &Path) {
    let cfg = SimConfig {
        seed: 5,
        customers: 30,
        products: 20,
        sellers: 4,
        ..SimConfig::default()
    };
    let mut text = crate::support::mock_rounds(cfg, 1, 60).concat().join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// A config over the shipped silver and gold specs.
pub fn config(storage: StorageConfig) -> Config {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config {
        storage,
        ..Config::default()
    };
    config.silver.layers_dir = repo.join("layers/silver");
    config.silver.sql_dir = repo.join("sql/silver");
    config.gold.layers_dir = repo.join("layers/gold");
    config.gold.sql_dir = repo.join("sql/gold");
    config.silver.memory_limit = 256 * 1024 * 1024;
    config
}

/// Runs every layer; returns the row count of every silver table and mart.
async fn flow(config: &Config, input: &Path) -> BTreeMap<String, i64> {
    let root = StorageRoot::from_config(&config.storage).unwrap();
    root.check().await.unwrap();
    let bronze = lakehouse::pipeline::jobs::bronze(
        config,
        BronzeSource::Files(vec![input.to_path_buf()]),
        StopCondition::default(),
        tokio::sync::watch::channel(false).1,
    )
    .await
    .unwrap();
    assert!(bronze.counts.rows > 0);
    let silver = lakehouse::pipeline::jobs::silver(config, &Default::default())
        .await
        .unwrap();
    let gold = lakehouse::pipeline::jobs::gold(
        config,
        &lakehouse::pipeline::jobs::GoldOptions {
            no_publish: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let tables: Vec<(&str, String)> = silver
        .tables
        .iter()
        .map(|t| ("silver", t.table.clone()))
        .chain(gold.marts.iter().map(|m| ("gold", m.mart.clone())))
        .collect();
    counts(config, &tables).await
}

/// Row count of each `(layer, table)`, keyed `layer.table` (-1: no table).
pub async fn counts(config: &Config, tables: &[(&str, String)]) -> BTreeMap<String, i64> {
    let root = StorageRoot::from_config(&config.storage).unwrap();
    let ctx = SessionContext::new();
    let mut counts = BTreeMap::new();
    for (layer, table) in tables {
        if !lakehouse::delta::session::register_table(&ctx, &root, layer, table)
            .await
            .unwrap()
        {
            counts.insert(format!("{layer}.{table}"), -1);
            continue;
        }
        let batches =
            lakehouse::delta::session::collect(&ctx, &format!("SELECT count(*) FROM {table}"))
                .await
                .unwrap();
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        counts.insert(format!("{layer}.{table}"), n);
    }
    counts
}

async fn flow_matches_local(server: Server) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mock.jsonl");
    mock_jsonl(&input);
    let local = config(StorageConfig {
        root: dir.path().join("lake").display().to_string(),
        options: Default::default(),
    });
    let remote = config(server.storage("flow"));
    let started = std::time::Instant::now();
    let expected = flow(&local, &input).await;
    let local_time = started.elapsed();
    let started = std::time::Instant::now();
    let got = flow(&remote, &input).await;
    eprintln!(
        "{:?}: bronze→silver→gold in {:.1}s (local {:.1}s)",
        server.kind,
        started.elapsed().as_secs_f64(),
        local_time.as_secs_f64()
    );
    assert!(
        expected.get("silver.fact_sales").is_some_and(|n| *n > 0),
        "{expected:?}"
    );
    assert!(
        expected.get("gold.daily_sales").is_some_and(|n| *n > 0),
        "{expected:?}"
    );
    assert_eq!(got, expected, "{:?} vs local", server.kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bronze_silver_gold_match_local() {
    let Some(server) = Server::s3() else { return };
    flow_matches_local(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_bronze_silver_gold_match_local() {
    let Some(server) = Server::azure() else {
        return;
    };
    flow_matches_local(server).await;
}
