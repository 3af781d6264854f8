//! The simulation as a bounded stream of Kafka records, generated chunk by
//! chunk so that memory stays bounded whatever the size.
//!
//! Shared by the producers of [`crate::kafka`] (feature `kafka`), the
//! `lakehouse` benchmarks and tests that replay the mock without a broker.

use crate::{DebeziumEncoder, KafkaRecord, SimConfig, Simulator, Table};

/// When a [`MockStream`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockLimit {
    /// After this many Kafka records (cut mid-transaction if need be).
    Records(u64),
    /// After the transaction that reaches this many data changes.
    Changes(u64),
}

/// The mock database's Kafka records: the snapshot, then whole transactions
/// until the [`MockLimit`], optionally followed by a replay of the last ones.
pub struct MockStream {
    sim: Simulator,
    encoder: DebeziumEncoder,
    limit: MockLimit,
    records: u64,
    changes: u64,
    snapshot_done: bool,
    replay_last: usize,
    replayed_changes: u64,
}

impl MockStream {
    /// A deterministic stream for `seed`, with topics named `<prefix>.public.<table>`.
    pub fn new(limit: MockLimit, seed: u64, prefix: &str) -> Self {
        Self::with_config(
            limit,
            SimConfig {
                seed,
                topic_prefix: prefix.to_string(),
                ..SimConfig::default()
            },
        )
    }

    /// A stream of the simulation configured by `config`.
    pub fn with_config(limit: MockLimit, config: SimConfig) -> Self {
        Self {
            encoder: DebeziumEncoder::new(&config.topic_prefix),
            sim: Simulator::new(config),
            limit,
            records: 0,
            changes: 0,
            snapshot_done: false,
            replay_last: 0,
            replayed_changes: 0,
        }
    }

    /// A stream that, once `limit` is reached, re-emits its last `replay_last`
    /// transactions with their original LSNs and payloads — what a Debezium
    /// connector restarting from an older offset (e.g. without committed
    /// offsets) writes again.
    pub fn with_replay(limit: MockLimit, config: SimConfig, replay_last: usize) -> Self {
        let history = config.history.max(replay_last);
        let mut stream = Self::with_config(limit, SimConfig { history, ..config });
        stream.replay_last = replay_last;
        stream
    }

    /// Data changes re-emitted by the replay so far.
    pub fn replayed_changes(&self) -> u64 {
        self.replayed_changes
    }

    /// The encoder (topic names).
    pub fn encoder(&self) -> &DebeziumEncoder {
        &self.encoder
    }

    /// Data changes emitted so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn done(&self) -> bool {
        match self.limit {
            MockLimit::Records(n) => self.records >= n,
            MockLimit::Changes(n) => self.changes >= n,
        }
    }

    /// Replaces `out` with the next chunk of about `chunk` records; `false` at the end.
    pub fn next_chunk(&mut self, chunk: usize, out: &mut Vec<KafkaRecord>) -> bool {
        out.clear();
        if !self.snapshot_done {
            self.snapshot_done = true;
            let snapshot = self.sim.snapshot();
            self.changes += snapshot.changes.len() as u64;
            self.encoder.encode_snapshot(&snapshot, out);
        }
        while out.len() < chunk && !self.done_with(out.len()) {
            let tx = self.sim.next_transaction();
            self.changes += tx.changes.len() as u64;
            self.encoder.encode_transaction(&tx, out);
        }
        if self.replay_last > 0 && self.done_with(out.len()) {
            for tx in self.sim.replay_last(std::mem::take(&mut self.replay_last)) {
                self.replayed_changes += tx.changes.len() as u64;
                self.encoder.encode_transaction(&tx, out);
            }
        }
        if let MockLimit::Records(n) = self.limit {
            out.truncate(n.saturating_sub(self.records).min(out.len() as u64) as usize);
        }
        self.records += out.len() as u64;
        !out.is_empty()
    }

    fn done_with(&self, buffered: usize) -> bool {
        match self.limit {
            MockLimit::Records(n) => self.records + buffered as u64 >= n,
            MockLimit::Changes(_) => self.done(),
        }
    }
}

/// The topics the mock writes to: one per table plus the transaction topic.
pub fn mock_topics(prefix: &str) -> Vec<String> {
    let encoder = DebeziumEncoder::new(prefix);
    let mut topics: Vec<String> = Table::ALL
        .iter()
        .map(|t| encoder.topic(*t).to_string())
        .collect();
    topics.push(encoder.transaction_topic().to_string());
    topics
}

/// Bytes of a record's key and value.
pub fn record_bytes(record: &KafkaRecord) -> u64 {
    (record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len)) as u64
}
