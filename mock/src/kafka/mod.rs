//! The mock database over Kafka (cargo feature `kafka`): producers of the
//! [`crate::stream::MockStream`] to any broker, and [`EmbeddedKafka`], an
//! in-process broker for demos and tests that need no external service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lakehouse_mock::kafka::Error> {
//! use lakehouse_mock::SimConfig;
//! use lakehouse_mock::kafka::{EmbeddedKafka, produce_mock};
//! use lakehouse_mock::stream::mock_topics;
//!
//! let kafka = EmbeddedKafka::start(1)?;
//! for topic in mock_topics("shop") {
//!     kafka.create_topic(&topic, 4)?;
//! }
//! let produced = produce_mock(kafka.bootstrap_servers(), 10_000, SimConfig::default(), 4).await?;
//! println!("{} records", produced.records());
//! # Ok(())
//! # }
//! ```

mod embedded;
mod produce;

pub use embedded::EmbeddedKafka;
pub use produce::{
    Delivery, MockOptions, Produced, await_deliveries, produce_mock, produce_mock_with, send,
};

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong producing the mock or running the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kafka client operation failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The producer dropped a delivery future before reporting its outcome.
    #[error("the producer dropped a delivery")]
    DeliveryDropped,
    /// librdkafka did not start the embedded broker.
    #[error("librdkafka could not start the mock cluster")]
    MockCluster,
}

impl Error {
    /// Wraps a Kafka error with what we were doing.
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}
