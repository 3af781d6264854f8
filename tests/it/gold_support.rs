//! Gold test plumbing: a lake fed by the mock simulator through bronze and
//! the shipped silver pipeline, gold runs, and the test Postgres.

use std::path::PathBuf;

use lakehouse::pipeline::jobs::{GoldOptions, GoldSummary};
use lakehouse_mock::SimConfig;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::silver_support::Lake;

/// The test Postgres from `LAKEHOUSE_TEST_POSTGRES` (scripts/test.sh starts
/// one). Unset: the test is skipped, unless `LAKEHOUSE_TEST_REQUIRE_SERVICES`
/// is set, in which case it fails.
pub fn postgres_url() -> Option<String> {
    crate::support::service_var("LAKEHOUSE_TEST_POSTGRES")
}

/// A lake using the repository's silver and gold specs.
pub fn shipped_lake() -> Lake {
    let mut lake = Lake::new();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lake.config.silver.layers_dir = repo.join("layers/silver");
    lake.config.silver.sql_dir = repo.join("sql/silver");
    lake.config.gold.layers_dir = repo.join("layers/gold");
    lake.config.gold.sql_dir = repo.join("sql/gold");
    lake.config.gold.memory_limit = 256 * 1024 * 1024;
    lake.config.postgres.retry_backoff_ms = 50;
    lake
}

/// Debezium JSON lines of a simulated shop: the snapshot, then `rounds`
/// batches of `per_round` transactions.
pub fn shop_records(seed: u64, rounds: usize, per_round: usize) -> Vec<Vec<String>> {
    let cfg = SimConfig {
        seed,
        customers: 80,
        products: 40,
        sellers: 8,
        // A few orders a day, so rounds span many order dates.
        orders_per_hour: 0.5,
        background_per_hour: 0.3,
        ..SimConfig::default()
    };
    crate::support::mock_rounds(cfg, rounds, per_round)
}

/// Runs gold with `options`.
pub async fn gold_run(lake: &Lake, options: GoldOptions) -> GoldSummary {
    lakehouse::pipeline::jobs::gold(&lake.config, &options)
        .await
        .expect("gold run")
}

/// A fresh schema name per test on the shared test database.
pub fn test_schema(prefix: &str) -> String {
    crate::support::unique(prefix)
}

/// A connection to the test database.
pub async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("connect to the test postgres")
}
