//! SIGKILL in the middle of `lakehouse run silver`, then a rerun: every
//! table ends up exactly as in a lake that never crashed.

use std::path::PathBuf;
use std::time::Duration;

use lakehouse_mock::SimConfig;
use rand::{Rng, SeedableRng};

use crate::silver_support::*;

const TABLES: &[&str] = &[
    "dim_customer",
    "dim_product",
    "dim_seller",
    "dim_carrier",
    "orders",
    "fact_sales",
    "fact_payments",
    "fact_shipments",
    "dim_date",
];

fn mock_lines(transactions: usize) -> (Vec<String>, Vec<String>) {
    let cfg = SimConfig {
        seed: 5,
        customers: 300,
        products: 150,
        ..SimConfig::default()
    };
    let mut rounds = crate::support::mock_rounds(cfg, 1, transactions);
    let transactions = rounds.pop().unwrap_or_default();
    let snapshot = rounds.pop().unwrap_or_default();
    (snapshot, transactions)
}

fn shipped(lake: &mut Lake) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lake.config.silver.layers_dir = repo.join("layers/silver");
    lake.config.silver.sql_dir = repo.join("sql/silver");
    // Small chunks and files: a run makes many writes, so kills land mid-run.
    lake.config.silver.chunk_rows = 200;
    lake.config.silver.file_rows = 100;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_rerun_equals_a_clean_run() {
    let (snapshot, stream) = mock_lines(1500);
    let mut crashed = Lake::new();
    shipped(&mut crashed);
    let mut clean = Lake::new();
    shipped(&mut clean);

    let config_file = crashed.path().join("lakehouse.toml");
    std::fs::write(
        &config_file,
        format!(
            "[storage]\nroot = {:?}\n[silver]\nlayers_dir = {:?}\nsql_dir = {:?}\nchunk_rows = 200\nfile_rows = 100\n",
            crashed.config.storage.root,
            crashed.config.silver.layers_dir.display().to_string(),
            crashed.config.silver.sql_dir.display().to_string(),
        ),
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_lakehouse");
    let spawn = || {
        std::process::Command::new(binary)
            .args(["--config", config_file.to_str().unwrap(), "run", "silver"])
            .env("LAKEHOUSE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn lakehouse")
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for (step, lines) in [snapshot, stream].into_iter().enumerate() {
        crashed.feed(&lines).await;
        clean.feed(&lines).await;
        clean.silver().await;
        // Kill the run at random moments, several times.
        let mut killed = 0;
        for _ in 0..4 {
            let mut child = spawn();
            std::thread::sleep(Duration::from_millis(rng.random_range(30..700)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                killed += 1;
            }
            child.wait().unwrap();
        }
        eprintln!("step {step}: {killed} runs killed mid-way");
        let status = spawn().wait().unwrap();
        assert!(status.success(), "the rerun after the crashes failed");
        for table in TABLES {
            if clean.version("silver", table).await.is_none() {
                assert_eq!(crashed.version("silver", table).await, None, "{table}");
                continue;
            }
            let sql = format!("SELECT * FROM {table}");
            assert_eq!(
                crashed.rows(&[table], &sql).await,
                clean.rows(&[table], &sql).await,
                "{table} after step {step}"
            );
        }
    }
}
