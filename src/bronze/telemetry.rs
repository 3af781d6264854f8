//! Bronze's Prometheus metrics, recorded through the `metrics` facade (a
//! no-op until the binary installs an exporter): what each commit wrote per
//! topic, commit latency, and the consumer lag per partition.
//!
//! Counters move only for what a commit wrote, never for what was buffered:
//! a batch dropped on a rebalance is read again and would count twice.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::buffer::{FinishedBatch, TopicEvents};
use super::sink::CommitOutcome;

/// Records consumed and committed (rows, dead letters and non-row records), by `topic`.
pub const RECORDS: &str = "lakehouse_bronze_records_total";
/// Key + value bytes of those records, by `topic`.
pub const BYTES: &str = "lakehouse_bronze_bytes_total";
/// Rows committed to `bronze_events`, by `topic`.
pub const ROWS: &str = "lakehouse_bronze_rows_total";
/// Rows committed to `bronze_dead_letters`, by `topic` and `kind` (`error_kind`).
pub const DEAD_LETTERS: &str = "lakehouse_bronze_dead_letters_total";
/// Batches committed.
pub const BATCHES: &str = "lakehouse_bronze_batches_total";
/// Time to commit one batch (both tables), in seconds.
pub const COMMIT_SECONDS: &str = "lakehouse_bronze_commit_duration_seconds";
/// Records between the group's committed offset and the high watermark, by
/// `topic` and `partition`, from librdkafka's statistics.
pub const CONSUMER_LAG: &str = "lakehouse_bronze_consumer_lag";

/// Registers the help text of bronze's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(
        RECORDS,
        "Kafka records committed to bronze (rows, dead letters, non-row records) by topic"
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Key and value bytes of the records committed to bronze, by topic"
    );
    describe_counter!(ROWS, "Rows committed to bronze_events, by topic");
    describe_counter!(
        DEAD_LETTERS,
        "Rows committed to bronze_dead_letters, by topic and error kind"
    );
    describe_counter!(BATCHES, "Bronze batches committed");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time to commit one bronze batch to Delta"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Records between the consumer group's committed offset and the high watermark, by partition"
    );
}

/// Records what a commit of `batch` wrote (`outcome`), and how long it took.
pub fn batch_committed(batch: &FinishedBatch, outcome: &CommitOutcome, elapsed: Duration) {
    counter!(BATCHES).increment(1);
    histogram!(COMMIT_SECONDS).record(elapsed.as_secs_f64());
    // Per topic: streams are partitions, and only the committed ones count.
    let mut consumed: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (stream, _) in &outcome.committed {
        if let Some(range) = batch.streams.get(*stream) {
            let topic = range.topic.as_deref().unwrap_or("");
            let entry = consumed.entry(topic).or_default();
            entry.0 += range.records;
            entry.1 += range.bytes;
        }
    }
    for (topic, (records, bytes)) in consumed {
        counter!(RECORDS, "topic" => topic.to_string()).increment(records);
        counter!(BYTES, "topic" => topic.to_string()).increment(bytes);
    }
    for (topic, rows) in &outcome.rows_by_topic {
        counter!(ROWS, "topic" => topic.clone()).increment(*rows);
    }
    for ((topic, kind), rows) in &outcome.dead_letters_by_kind {
        counter!(DEAD_LETTERS, "topic" => topic.clone(), "kind" => kind.clone()).increment(*rows);
    }
}

/// Sets the consumer lag of one partition (librdkafka reports -1 when it
/// does not know it yet; those are left out).
pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    if lag >= 0 {
        gauge!(CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
            .set(lag as f64);
    }
}

/// The string column `name` of `batch` (the bronze builders write `Utf8`).
fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a arrow::array::StringArray> {
    batch.column_by_name(name)?.as_string_opt::<i32>()
}

/// Rows of a `bronze_events` batch per topic.
pub fn rows_by_topic(events: &[TopicEvents]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for group in events {
        *out.entry(group.topic.clone()).or_default() += group.num_rows() as u64;
    }
    out
}

/// Rows of a `bronze_dead_letters` batch per topic and `error_kind`.
pub fn dead_letters_by_kind(dead_letters: &RecordBatch) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    if let (Some(topics), Some(kinds)) = (
        strings(dead_letters, "topic"),
        strings(dead_letters, "error_kind"),
    ) {
        for i in 0..topics.len().min(kinds.len()) {
            *out.entry((topics.value(i).to_string(), kinds.value(i).to_string()))
                .or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;
    use crate::bronze::buffer::StreamRange;

    fn strings_batch(columns: &[(&str, &[&str])]) -> RecordBatch {
        let schema = Schema::new(
            columns
                .iter()
                .map(|(name, _)| Field::new(*name, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(
            Arc::new(schema),
            columns
                .iter()
                .map(|(_, values)| {
                    Arc::new(StringArray::from(values.to_vec())) as arrow::array::ArrayRef
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn rows_are_counted_per_topic_group() {
        let group = |topic: &str, rows: &[&str]| TopicEvents {
            topic: topic.to_string(),
            rows: vec![strings_batch(&[("topic", rows)])],
            streams: vec![0; rows.len()],
        };
        let groups = [
            group("a", &["a", "a"]),
            group("b", &["b"]),
            group("a", &["a"]),
        ];
        assert_eq!(
            rows_by_topic(&groups),
            BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 1)])
        );
        assert!(rows_by_topic(&[]).is_empty());
    }

    #[test]
    fn dead_letters_are_counted_per_topic_and_kind() {
        let batch = strings_batch(&[
            ("topic", &["a", "a", "b"]),
            ("error_kind", &["json", "json", "envelope"]),
        ]);
        assert_eq!(
            dead_letters_by_kind(&batch),
            BTreeMap::from([
                (("a".to_string(), "json".to_string()), 2),
                (("b".to_string(), "envelope".to_string()), 1),
            ])
        );
    }

    fn range(topic: &str, records: u64, bytes: u64) -> StreamRange {
        StreamRange {
            app_id: format!("lakehouse-bronze:{topic}:0"),
            first: Some(0),
            last: Some(records as i64 - 1),
            topic: Some(topic.to_string()),
            records,
            bytes,
        }
    }

    #[test]
    fn a_commit_counts_only_the_streams_it_committed() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let empty = strings_batch(&[("topic", &[])]);
        let batch = FinishedBatch {
            events: Vec::new(),
            dead_letters: empty,
            dead_letter_positions: Vec::new(),
            streams: vec![range("a", 5, 500), range("b", 7, 700), range("a", 2, 20)],
            counts: Default::default(),
            batch_id: "b1".into(),
        };
        let outcome = CommitOutcome {
            // Stream 1 (topic b) was lost to another process.
            committed: vec![(0, 4), (2, 1)],
            lost: vec![(1, Some(10))],
            rows_by_topic: BTreeMap::from([("a".to_string(), 6)]),
            dead_letters_by_kind: BTreeMap::from([(("a".to_string(), "json".to_string()), 1)]),
            ..Default::default()
        };
        metrics::with_local_recorder(&recorder, || {
            describe();
            batch_committed(&batch, &outcome, Duration::from_millis(20));
            consumer_lag("a", 0, 42);
            consumer_lag("a", 1, -1);
        });
        let text = handle.render();
        for line in [
            "lakehouse_bronze_records_total{topic=\"a\"} 7",
            "lakehouse_bronze_bytes_total{topic=\"a\"} 520",
            "lakehouse_bronze_rows_total{topic=\"a\"} 6",
            "lakehouse_bronze_dead_letters_total{topic=\"a\",kind=\"json\"} 1",
            "lakehouse_bronze_batches_total 1",
            "lakehouse_bronze_commit_duration_seconds_count 1",
            "lakehouse_bronze_consumer_lag{topic=\"a\",partition=\"0\"} 42",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("topic=\"b\""), "{text}");
        assert!(!text.contains("partition=\"1\""), "{text}");
    }
}
