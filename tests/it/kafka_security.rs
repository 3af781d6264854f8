//! Bronze through a TLS + SASL/SCRAM-SHA-512 listener of the real Apache
//! Kafka broker that scripts/test.sh starts (a CA of its own signs the
//! broker's certificate), and a wrong password: a clear error that names the
//! broker, at once, not a hang.

use std::time::{Duration, Instant};

use lakehouse::bronze::{BronzeSource, StopCondition};

use crate::bronze_kafka::{Produced, assert_exactly_once, produce_mix};
use crate::support::*;

/// The SASL_SSL listener of the test broker (skipped without one, failed
/// when services are required).
struct SecureListener {
    address: String,
    ca: String,
    user: String,
    password: String,
}

impl SecureListener {
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (
            var("LAKEHOUSE_TEST_KAFKA_SASL_SSL"),
            var("LAKEHOUSE_TEST_KAFKA_CA"),
            var("LAKEHOUSE_TEST_KAFKA_USER"),
            var("LAKEHOUSE_TEST_KAFKA_PASSWORD"),
        ) {
            (Some(address), Some(ca), Some(user), Some(password)) => Some(Self {
                address,
                ca,
                user,
                password,
            }),
            _ => {
                assert!(
                    std::env::var_os("LAKEHOUSE_TEST_REQUIRE_SERVICES").is_none(),
                    "LAKEHOUSE_TEST_KAFKA_SASL_SSL and its CA and credentials are not set \
                     but services are required"
                );
                eprintln!("skipping: no SASL_SSL Kafka listener (run scripts/test.sh)");
                None
            }
        }
    }

    /// A bronze config reaching the broker through this listener.
    fn config(
        &self,
        dir: &std::path::Path,
        broker: &Broker,
        topic: &str,
        password: &str,
    ) -> lakehouse::config::Config {
        let mut config = config(dir, broker, &unique("secure"), &[topic], None);
        config.kafka.brokers = Some(self.address.clone());
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", self.user.as_str()),
            ("sasl.password", password),
            ("ssl.ca.location", self.ca.as_str()),
        ] {
            config.kafka.properties.insert(key.into(), value.into());
        }
        config
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bronze_consumes_through_tls_and_scram() {
    let (Some(listener), Some(broker)) = (SecureListener::from_env(), Broker::external()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("secure.public.customers");
    broker.create_topic(&topic, 2).await;
    let mut produced = Produced::default();
    // Produced through the plaintext listener, consumed through the secure one.
    produce_mix(&broker, &[(topic.as_str(), 2)], 30, &mut produced).await;
    let config = listener.config(dir.path(), &broker, &topic, &listener.password);
    let summary = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Kafka,
        StopCondition {
            until_idle: true,
            max_records: None,
        },
        no_shutdown(),
    )
    .await
    .expect("bronze over SASL_SSL");
    assert!(summary.counts.records >= 60, "{summary:?}");
    assert_exactly_once(&config, &produced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_naming_the_broker() {
    let (Some(listener), Some(broker)) = (SecureListener::from_env(), Broker::external()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("secure.public.orders");
    broker.create_topic(&topic, 1).await;
    let started = Instant::now();
    for until_idle in [true, false] {
        let config = listener.config(dir.path(), &broker, &topic, "not-the-password");
        let run = lakehouse::pipeline::jobs::bronze(
            &config,
            BronzeSource::Kafka,
            StopCondition {
                until_idle,
                max_records: None,
            },
            no_shutdown(),
        );
        let error = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("a wrong password must fail the run, not hang it")
            .expect_err("a wrong password must fail")
            .to_string();
        eprintln!("until_idle {until_idle}: {error}");
        assert!(
            error.contains(&listener.address) && error.to_lowercase().contains("authentication"),
            "until_idle {until_idle}: {error}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
