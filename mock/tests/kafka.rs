//! The `kafka` feature: the mock stream produced to the embedded broker
//! arrives whole, each record on the partition its key hashes to.
#![cfg(feature = "kafka")]

use std::time::Duration;

use lakehouse_mock::SimConfig;
use lakehouse_mock::kafka::{EmbeddedKafka, produce_mock};
use lakehouse_mock::stream::{MockLimit, MockStream, mock_topics};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_records_land_on_the_embedded_broker() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let partitions = 3;
    for topic in mock_topics("shop") {
        kafka.create_topic(&topic, partitions).expect("topic");
    }
    let sim = SimConfig {
        seed: 5,
        ..SimConfig::default()
    };
    let produced = produce_mock(kafka.bootstrap_servers(), 500, sim.clone(), 3)
        .await
        .expect("produce");
    assert!(produced.changes >= 500);

    // The same stream, generated again without a broker.
    let mut stream = MockStream::with_config(MockLimit::Changes(500), sim);
    let (mut chunk, mut records) = (Vec::new(), 0u64);
    while stream.next_chunk(1000, &mut chunk) {
        records += chunk.len() as u64;
    }
    assert_eq!(produced.records(), records);
    assert_eq!(produced.changes, stream.changes());

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("consumer");
    let mut on_broker = 0;
    for (topic, count) in &produced.per_topic {
        let mut topic_records = 0;
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            topic_records += high - low;
        }
        assert_eq!(topic_records as u64, *count, "{topic}");
        on_broker += topic_records as u64;
    }
    assert_eq!(on_broker, records);
}

#[test]
fn topics_are_created_with_their_partitions() {
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    kafka.create_topic("t", 5).expect("topic");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some("t"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 5);
}
