//! Shared test plumbing: brokers, producers, Debezium records and table reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Int32Type, Int64Type};
use datafusion::prelude::SessionContext;
use lakehouse::config::Config;
use lakehouse::storage::StorageRoot;
use lakehouse_mock::kafka::EmbeddedKafka;
use lakehouse_mock::{DebeziumEncoder, JsonlWriter, SimConfig, Simulator};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A Kafka-protocol broker for a test.
pub enum Broker {
    /// librdkafka's in-process mock cluster.
    Embedded(EmbeddedKafka),
    /// An external broker process (Apache Kafka), started by scripts/test.sh.
    External(String),
}

/// Logs to the test output, filtered by `RUST_LOG` (default: warnings).
/// The value of `var`, which scripts/test.sh sets for a service it started.
/// Unset or empty: `None` and the test is skipped, unless
/// `LAKEHOUSE_TEST_REQUIRE_SERVICES` is set (as scripts/test.sh and CI do),
/// in which case the test fails.
pub fn service_var(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var_os("LAKEHOUSE_TEST_REQUIRE_SERVICES").is_none(),
                "{var} is not set but services are required"
            );
            eprintln!("skipping: {var} not set (run scripts/test.sh)");
            None
        }
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl Broker {
    /// The in-process mock cluster.
    pub fn embedded() -> Self {
        init_tracing();
        Broker::Embedded(EmbeddedKafka::start(1).expect("mock cluster"))
    }

    /// The external broker from `LAKEHOUSE_TEST_KAFKA`. When it is not set the
    /// test is skipped, unless `LAKEHOUSE_TEST_REQUIRE_SERVICES` is set (as
    /// scripts/test.sh and CI do), in which case the test fails.
    pub fn external() -> Option<Self> {
        init_tracing();
        service_var("LAKEHOUSE_TEST_KAFKA").map(Broker::External)
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Embedded(k) => k.bootstrap_servers().to_string(),
            Broker::External(b) => b.clone(),
        }
    }

    pub fn is_external(&self) -> bool {
        matches!(self, Broker::External(_))
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        match self {
            Broker::Embedded(k) => k.create_topic(name, partitions).expect("create topic"),
            Broker::External(brokers) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", brokers)
                    .create()
                    .expect("admin client");
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let results = admin
                    .create_topics(
                        [&topic],
                        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
                    )
                    .await
                    .expect("create topics");
                for r in results {
                    r.expect("create topic");
                }
            }
        }
    }

    /// Consumer properties that keep group joins fast on this broker.
    pub fn consumer_properties(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        if self.is_external() {
            // Short session and poll intervals: a member killed by a test
            // leaves the group within seconds, not the 45 s / 5 min defaults.
            p.insert("session.timeout.ms".into(), "6000".into());
            p.insert("heartbeat.interval.ms".into(), "500".into());
            p.insert("fetch.wait.max.ms".into(), "10".into());
            p.insert("max.poll.interval.ms".into(), "10000".into());
        } else {
            p.insert("session.timeout.ms".into(), "6000".into());
            p.insert("heartbeat.interval.ms".into(), "500".into());
        }
        p
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer")
    }
}

/// Produces `(key, value)` to `topic`/`partition` and waits for the ack.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(partition);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// A Debezium Postgres envelope with schema for table `table`, row `id`.
pub fn pg_change(prefix: &str, table: &str, id: i64, op: &str, lsn: i64) -> (Vec<u8>, Vec<u8>) {
    let key = format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}}],"optional":false,"name":"{prefix}.public.{table}.Key"}},"payload":{{"id":{id}}}}}"#
    );
    let row_schema = format!(
        r#"{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}},{{"type":"string","optional":true,"field":"name"}},{{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"2","connect.decimal.precision":"10"}},"field":"price"}}],"optional":true,"name":"{prefix}.public.{table}.Value","field":"FIELD"}}"#
    );
    let before_schema = row_schema.replace("FIELD", "before");
    let after_schema = row_schema.replace("FIELD", "after");
    let row = format!(r#"{{"id":{id},"name":"item \"{id}\"","price":"AN0="}}"#);
    let (before, after) = match op {
        "d" => (row.as_str(), "null"),
        "u" => (row.as_str(), row.as_str()),
        _ => ("null", row.as_str()),
    };
    let value = format!(
        r#"{{"schema":{{"type":"struct","fields":[{before_schema},{after_schema},{{"type":"struct","fields":[{{"type":"string","optional":false,"field":"connector"}},{{"type":"string","optional":false,"field":"name"}},{{"type":"int64","optional":false,"field":"ts_ms"}},{{"type":"string","optional":false,"field":"db"}},{{"type":"string","optional":false,"field":"schema"}},{{"type":"string","optional":false,"field":"table"}},{{"type":"int64","optional":true,"field":"txId"}},{{"type":"int64","optional":true,"field":"lsn"}}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}],"optional":false,"name":"{prefix}.public.{table}.Envelope"}},"payload":{{"before":{before},"after":{after},"source":{{"connector":"postgresql","name":"{prefix}","ts_ms":1700000000000,"db":"shop","schema":"public","table":"{table}","txId":{lsn},"lsn":{lsn}}},"op":"{op}","ts_ms":1700000000001}}}}"#
    );
    (key.into_bytes(), value.into_bytes())
}

/// A config for a test: local storage under `dir`, the broker, and `topics`.
pub fn config(
    dir: &Path,
    broker: &Broker,
    group: &str,
    topics: &[&str],
    pattern: Option<&str>,
) -> Config {
    let mut config = Config::default();
    config.storage.root = dir.join("lake").display().to_string();
    config.kafka.brokers = Some(broker.bootstrap());
    config.kafka.group_id = group.to_string();
    config.kafka.topics = topics.iter().map(|t| t.to_string()).collect();
    config.kafka.topic_pattern = pattern.map(str::to_string);
    config.kafka.properties = broker.consumer_properties();
    config.bronze.flush_interval_ms = 500;
    config.bronze.idle_timeout_ms = 1500;
    config
}

/// Runs a query over the bronze tables of `config`.
pub async fn query(config: &Config, sql: &str) -> Vec<RecordBatch> {
    let root = StorageRoot::from_config(&config.storage).unwrap();
    let ctx = SessionContext::new();
    let tables = [
        ("bronze_events", lakehouse::tables::bronze::events_schema()),
        (
            "bronze_dead_letters",
            lakehouse::tables::bronze::dead_letters_schema(),
        ),
    ];
    for (table, schema) in tables {
        if !lakehouse::delta::session::register_table(&ctx, &root, "bronze", table)
            .await
            .unwrap()
        {
            // Not created yet: query an empty table of the same shape.
            let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]]).unwrap();
            ctx.register_table(table, std::sync::Arc::new(empty))
                .unwrap();
        }
    }
    lakehouse::delta::session::collect(&ctx, sql).await.unwrap()
}

/// `(topic, partition, offset)` of every bronze row, and how often each occurs.
pub async fn bronze_positions(config: &Config, table: &str) -> BTreeMap<(String, i32, i64), usize> {
    let sql = format!("SELECT topic, kafka_partition, kafka_offset FROM {table}");
    let mut out = BTreeMap::new();
    for batch in query(config, &sql).await {
        let topics = cast(batch.column(0), &DataType::Utf8).unwrap();
        let topics = topics.as_string::<i32>();
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            *out.entry((
                topics.value(i).to_string(),
                partitions.value(i),
                offsets.value(i),
            ))
            .or_insert(0) += 1;
        }
    }
    out
}

/// A single integer from a one-row, one-column query.
pub async fn scalar_i64(config: &Config, sql: &str) -> i64 {
    let batches = query(config, sql).await;
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

/// A shutdown receiver that never fires.
pub fn no_shutdown() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

/// A name unique to this test run, so tests can share one external broker.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The mock shop's Debezium stream as JSON lines over two partitions: the
/// snapshot (round 0), then `rounds` rounds of `per_round` transactions,
/// one list of lines per round. One writer, so offsets keep counting.
pub fn mock_rounds(cfg: SimConfig, rounds: usize, per_round: usize) -> Vec<Vec<String>> {
    let encoder = DebeziumEncoder::new(&cfg.topic_prefix);
    let mut sim = Simulator::new(cfg);
    let mut writer = JsonlWriter::new(Vec::new(), 2);
    let mut records = Vec::new();
    let mut lines_per_round = Vec::new();
    for round in 0..=rounds {
        if round == 0 {
            encoder.encode_snapshot(&sim.snapshot(), &mut records);
        } else {
            for _ in 0..per_round {
                encoder.encode_transaction(&sim.next_transaction(), &mut records);
            }
        }
        lines_per_round.push(records.len());
        for r in records.drain(..) {
            writer.write_record(&r).expect("encode");
        }
    }
    writer.flush().expect("flush");
    let text = String::from_utf8(writer.into_inner()).expect("utf8");
    let mut lines = text.lines().map(str::to_string);
    lines_per_round
        .into_iter()
        .map(|n| lines.by_ref().take(n).collect())
        .collect()
}
