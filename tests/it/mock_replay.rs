//! A connector restart without committed offsets: the mock re-emits its last
//! transactions (`lakehouse mock --replay-last N`), bronze stores them again,
//! and silver ends in exactly the state it has without the replay.

use std::path::PathBuf;

use lakehouse_mock::stream::{MockLimit, MockStream};
use lakehouse_mock::{JsonlWriter, SimConfig};

use crate::silver_support::Lake;

fn shipped_lake() -> Lake {
    let mut lake = Lake::new();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lake.config.silver.layers_dir = repo.join("layers/silver");
    lake.config.silver.sql_dir = repo.join("sql/silver");
    lake
}

/// The stream as JSON lines, split where the replay starts.
fn stream(changes: u64, replay_last: usize) -> (Vec<String>, Vec<String>, u64) {
    let config = SimConfig {
        seed: 19,
        customers: 60,
        products: 40,
        sellers: 6,
        ..SimConfig::default()
    };
    let mut plain = MockStream::with_config(MockLimit::Changes(changes), config.clone());
    let mut replaying = MockStream::with_replay(MockLimit::Changes(changes), config, replay_last);
    let lines = |stream: &mut MockStream| {
        let mut writer = JsonlWriter::new(Vec::new(), 2);
        let mut chunk = Vec::new();
        while stream.next_chunk(500, &mut chunk) {
            writer.write_all(&chunk).expect("write");
        }
        writer.flush().expect("flush");
        let text = String::from_utf8(writer.into_inner()).expect("utf8");
        text.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let original = lines(&mut plain);
    let with_replay = lines(&mut replaying);
    assert_eq!(plain.changes(), replaying.changes());
    // The replay is appended: the stream up to it is the original, byte for byte.
    assert_eq!(&with_replay[..original.len()], &original[..]);
    let replay = with_replay[original.len()..].to_vec();
    (original, replay, replaying.replayed_changes())
}

const TABLES: [&str; 10] = [
    "dim_customer",
    "dim_product",
    "dim_seller",
    "dim_carrier",
    "dim_date",
    "inventory",
    "orders",
    "fact_sales",
    "fact_payments",
    "fact_shipments",
];

async fn silver_state(lake: &Lake) -> Vec<Vec<Vec<String>>> {
    let mut all = Vec::new();
    for table in TABLES {
        all.push(lake.rows(&TABLES, &format!("SELECT * FROM {table}")).await);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_window_leaves_silver_unchanged() {
    let (original, replay, replayed_changes) = stream(3_000, 60);
    assert!(
        replayed_changes >= 60,
        "{replayed_changes} changes replayed"
    );
    // Data events plus each transaction's BEGIN and END markers (and tombstones).
    assert!(
        replay.len() as u64 >= replayed_changes + 2 * 60,
        "{} records",
        replay.len()
    );

    let plain = shipped_lake();
    plain.feed(&original).await;
    plain.silver().await;

    // The replay arrives after silver has applied the originals (a restart
    // some time later), in a bronze batch of its own.
    let restarted = shipped_lake();
    restarted.feed(&original).await;
    restarted.silver().await;
    restarted.feed(&replay).await;
    let summary = restarted.silver().await;
    eprintln!("silver over the replay:\n{summary}");
    let read: u64 = summary.tables.iter().map(|t| t.rows_in).sum();
    assert!(read > 0, "silver read the replayed changes");

    let expected = silver_state(&plain).await;
    let actual = silver_state(&restarted).await;
    for (i, table) in TABLES.iter().enumerate() {
        assert!(!expected[i].is_empty(), "{table} is empty");
        assert_eq!(actual[i], expected[i], "{table} after the replay");
    }
}

/// `lakehouse mock --rate R --replay-last N` against a broker: the produce
/// loop holds the rate, the replay adds its records after the stream, and
/// bronze ingests every record (the replayed ones as new Kafka records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lakehouse_mock_paces_and_replays_over_kafka() {
    use lakehouse::bronze::{BronzeSource, StopCondition};
    use lakehouse_mock::kafka::{MockOptions, produce_mock_with};
    use lakehouse_mock::stream::mock_topics;

    let broker = crate::support::Broker::embedded();
    for topic in mock_topics("shop") {
        broker.create_topic(&topic, 2).await;
    }
    let sim = SimConfig {
        seed: 3,
        customers: 40,
        products: 20,
        sellers: 4,
        ..SimConfig::default()
    };
    let paced = MockOptions {
        changes: 600,
        sim,
        partitions: 2,
        rate: Some(500.0),
        replay_last: 25,
    };
    let brokers = broker.bootstrap();
    let first = produce_mock_with(&brokers, &paced).await.expect("paced");
    let rate = first.changes as f64 / first.elapsed.as_secs_f64();
    eprintln!(
        "{} changes in {:.2}s: {rate:.0} changes/s (target 500), {} replayed",
        first.changes,
        first.elapsed.as_secs_f64(),
        first.replayed_changes
    );
    assert!((350.0..=520.0).contains(&rate), "{rate:.0} changes/s");
    assert!(first.replayed_changes >= 25, "{first:?}");

    // What was produced is the stream plus the replay's records.
    let count = |mut stream: MockStream| {
        let mut chunk = Vec::new();
        let mut n = 0u64;
        while stream.next_chunk(10_000, &mut chunk) {
            n += chunk.len() as u64;
        }
        n
    };
    let with_replay = count(MockStream::with_replay(
        MockLimit::Changes(600),
        paced.sim.clone(),
        25,
    ));
    let without = count(MockStream::with_config(
        MockLimit::Changes(600),
        paced.sim.clone(),
    ));
    assert_eq!(first.records(), with_replay);
    assert!(with_replay >= without + first.replayed_changes + 2 * 25);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::config(
        dir.path(),
        &broker,
        &crate::support::unique("mock-replay"),
        &[],
        Some("shop\\..*"),
    );
    let summary = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Kafka,
        StopCondition {
            until_idle: true,
            max_records: None,
        },
        crate::support::no_shutdown(),
    )
    .await
    .expect("bronze");
    assert_eq!(summary.counts.records, first.records());
}
