//! An in-process Kafka-protocol broker: librdkafka's mock cluster, through
//! rdkafka's [`MockCluster`](rdkafka::mocking::MockCluster).
//!
//! It listens on real loopback sockets, so other processes can connect to
//! [`EmbeddedKafka::bootstrap_servers`] too. Known limits (librdkafka 2.12):
//! each partition keeps only about 5 MiB, and the admin CreateTopics call
//! hangs, so topics are created with [`EmbeddedKafka::create_topic`] (the mock
//! API).

use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};

use super::{Error, Result};

/// A running mock cluster. Dropping it stops the brokers.
///
/// The cluster belongs to a client created with `test.mock.num.brokers`
/// (rdkafka's documented other way to get one): the client creates it,
/// [`rdkafka::client::Client::mock_cluster`] hands out a safe view of it for
/// each operation, and dropping the client destroys it. `MockCluster::new`
/// would keep its client private, so the one setting `MockCluster` lacks (see
/// [`EmbeddedKafka::start`]) could not be made; and an owned `MockCluster`
/// holds a raw pointer, so it is neither `Send` nor `Sync`, while this type is
/// both with no `unsafe impl`.
pub struct EmbeddedKafka {
    owner: BaseProducer,
    bootstrap: String,
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers with the consumer-group initial
    /// rebalance delay set to 0.
    pub fn start(brokers: i32) -> Result<Self> {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            // The owner never produces; silence the mock cluster's own logs.
            .set("log_level", "0")
            .create()
            .map_err(|e| Error::kafka("cannot create the mock cluster's client", e))?;
        let bootstrap = cluster(&owner)?.bootstrap_servers();
        // The mock cluster delays a consumer group's first join (the group is
        // empty) by the broker's `group.initial.rebalance.delay.ms`, 3 s by
        // default, and `MockCluster` has no setter for it, nor a way to reach
        // its raw pointer. Measured with the delay left at 3 s: `lakehouse demo
        // --changes 2000` took 7.4 s instead of 4.3-5.9 s (bronze 4.4 s instead
        // of 1.5-1.9 s), and the tests `demo`, `mock_replay` and `watch` 60 s
        // instead of 47 s; every consumer group a test or the freshness
        // benchmark starts pays it once. So this one raw call stays.
        //
        // SAFETY: `owner` is a live client created with `test.mock.num.brokers`,
        // so `rd_kafka_handle_mock_cluster` returns the cluster it owns (checked
        // non-null above through `mock_cluster`, and again here), valid while
        // `owner` is, which outlives this block. The setter only stores the
        // value under the cluster's lock, so it is safe from any thread.
        unsafe {
            let raw = rd::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
            if raw.is_null() {
                return Err(Error::MockCluster);
            }
            rd::rd_kafka_mock_group_initial_rebalance_delay_ms(raw, 0);
        }
        Ok(Self { owner, bootstrap })
    }

    /// The `bootstrap.servers` of the cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with `partitions` partitions (replication factor 1).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        cluster(&self.owner)?
            .create_topic(name, partitions, 1)
            .map_err(|e| Error::kafka(format!("cannot create topic {name}"), e))
    }
}

/// The mock cluster `owner` runs.
fn cluster(owner: &BaseProducer) -> Result<MockCluster<'_, DefaultProducerContext>> {
    owner.client().mock_cluster().ok_or(Error::MockCluster)
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}
