//! `[kafka]` and `[bronze]`: what bronze consumes and how it batches and decodes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::cdc::{FieldType, TypeHints};
use crate::error::{Error, Result};

/// `[kafka]`: brokers, consumer group and topics. `Debug` masks secret
/// property values (`sasl.password`, `sasl.oauthbearer.client.secret`, ...).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: Option<String>,
    /// Consumer group id shared by all bronze processes.
    pub group_id: String,
    /// Topics to consume, by name.
    pub topics: Vec<String>,
    /// Topics to consume, by regular expression (librdkafka syntax, without the
    /// leading `^`, which is added). Topics created later that match are picked up.
    pub topic_pattern: Option<String>,
    /// Extra librdkafka properties, passed through verbatim.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            group_id: "lakehouse-bronze".to_string(),
            topics: Vec::new(),
            topic_pattern: None,
            properties: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if crate::redact::is_secret_key(k) {
                    crate::redact::MASK
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("topic_pattern", &self.topic_pattern)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// The brokers, or an error naming the key (and `origin`, the
    /// configuration file) when they are required but unset.
    pub fn require_brokers(&self, origin: &Path) -> Result<&str> {
        self.brokers.as_deref().ok_or_else(|| Error::Config {
            file: origin.to_path_buf(),
            message: "kafka.brokers is required to consume from Kafka \
                      (set it in the file or LAKEHOUSE_KAFKA__BROKERS)"
                .into(),
        })
    }

    /// The subscription as librdkafka understands it: names, plus `^pattern`.
    pub fn subscription(&self) -> Vec<String> {
        let mut topics = self.topics.clone();
        if let Some(pattern) = &self.topic_pattern {
            let pattern = pattern.trim_start_matches('^');
            topics.push(format!("^{pattern}"));
        }
        topics
    }
}

/// `[bronze]`: batching and decoding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BronzeConfig {
    /// Flush once this many records are buffered.
    pub flush_rows: usize,
    /// Flush once this many bytes of Kafka payload are buffered.
    pub flush_bytes: usize,
    /// Flush at least this often (milliseconds) while records arrive.
    pub flush_interval_ms: u64,
    /// `--until-idle`: how long a poll must return nothing, after the high
    /// watermarks seen at start are reached, before the run ends.
    pub idle_timeout_ms: u64,
    /// `--until-idle`: how long to wait for the consumer group to assign
    /// partitions before failing (a stuck group must not hang a scheduled run).
    pub assignment_timeout_ms: u64,
    /// Target Parquet file size in bytes.
    pub target_file_size: u64,
    /// Columns `lakehouse optimize` Z-orders `bronze_events` by (empty: plain compaction).
    pub zorder: Vec<String>,
    /// Types of columns in schemaless (`schemas.enable=false`) topics, which
    /// carry no types on the wire: `topic -> column -> type`, e.g.
    /// `"shop.public.orders" = { total = "decimal(2)", created = "timestamp_us" }`.
    /// The topic `*` applies to every topic.
    pub schemaless_types: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for BronzeConfig {
    fn default() -> Self {
        Self {
            flush_rows: 100_000,
            flush_bytes: 128 * 1024 * 1024,
            flush_interval_ms: 5_000,
            idle_timeout_ms: 2_000,
            assignment_timeout_ms: 120_000,
            target_file_size: 128 * 1024 * 1024,
            zorder: Vec::new(),
            schemaless_types: BTreeMap::new(),
        }
    }
}

impl BronzeConfig {
    /// The schemaless type hints, parsed.
    pub fn type_hints(&self, file: &Path) -> Result<TypeHints> {
        let mut hints = TypeHints::default();
        for (topic, columns) in &self.schemaless_types {
            for (column, spec) in columns {
                let ty = FieldType::from_hint(spec).map_err(|e| Error::Config {
                    file: file.to_path_buf(),
                    message: format!("bronze.schemaless_types.\"{topic}\".{column}: {e}"),
                })?;
                hints.insert(topic, column, ty);
            }
        }
        Ok(hints)
    }
}
