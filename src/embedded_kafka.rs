//! An in-process Kafka-protocol broker: librdkafka's mock cluster.
//!
//! Used by `lakehouse demo` (no external service at all) and the fast test
//! suite. It listens on real loopback sockets, so other processes can connect
//! to [`EmbeddedKafka::bootstrap_servers`] too. Known limits (librdkafka
//! 2.12): each partition keeps only about 5 MiB, and the admin CreateTopics call
//! hangs, so topics are created with [`EmbeddedKafka::create_topic`].

use std::ffi::{CStr, CString};

use rdkafka::ClientConfig;
use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, Producer};

use crate::error::{Error, Result};

/// A running mock cluster. Dropping it stops the brokers.
pub struct EmbeddedKafka {
    cluster: *mut rd::rd_kafka_mock_cluster_t,
    bootstrap: String,
    // The handle that owns the cluster; must outlive it (dropped after `cluster`).
    _owner: BaseProducer,
}

// SAFETY: the mock cluster API is thread-safe (librdkafka runs the brokers on
// their own threads and serialises operations through its op queue).
unsafe impl Send for EmbeddedKafka {}
// SAFETY: as above; every method takes `&self` and calls thread-safe C functions.
unsafe impl Sync for EmbeddedKafka {}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers with the consumer-group initial
    /// rebalance delay set to 0 (the default 3 s would slow every group join).
    pub fn start(brokers: i32) -> Result<Self> {
        let owner: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("log_level", "0")
            .create()
            .map_err(|e| Error::kafka("cannot create the mock cluster's client", e))?;
        // SAFETY: the client pointer is valid for the lifetime of `owner`, which
        // this struct keeps alive until after the cluster is destroyed.
        let cluster =
            unsafe { rd::rd_kafka_mock_cluster_new(owner.client().native_ptr(), brokers) };
        if cluster.is_null() {
            return Err(Error::Other(
                "librdkafka could not start the mock cluster".into(),
            ));
        }
        // SAFETY: `cluster` is a live mock cluster.
        let bootstrap = unsafe {
            rd::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
            CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(cluster))
                .to_string_lossy()
                .into_owned()
        };
        Ok(Self {
            cluster,
            bootstrap,
            _owner: owner,
        })
    }

    /// The `bootstrap.servers` of the cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let c_name = CString::new(name)
            .map_err(|_| Error::Other(format!("topic name {name:?} contains NUL")))?;
        // SAFETY: `cluster` is live and `c_name` is a valid C string for the call.
        let err =
            unsafe { rd::rd_kafka_mock_topic_create(self.cluster, c_name.as_ptr(), partitions, 1) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(Error::Other(format!("cannot create topic {name}: {err:?}")));
        }
        Ok(())
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_mock_cluster_new and destroyed exactly once.
        unsafe { rd::rd_kafka_mock_cluster_destroy(self.cluster) };
    }
}
