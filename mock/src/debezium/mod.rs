//! Encoding of simulated changes into the Kafka records a Debezium 2.7 PostgreSQL
//! connector writes with JsonConverter (`schemas.enable=true` for key and value,
//! `decimal.format=BASE64`), `decimal.handling.mode=precise`,
//! `time.precision.mode=adaptive`, `provide.transaction.metadata=true` and
//! `tombstones.on.delete=true`.
//!
//! JSON is written by hand into `String` buffers and each table's schema JSON is
//! rendered once, because benchmarks push millions of records through here.

pub mod json;
pub mod schema;

use crate::model::{Change, Op, RowValues, Snapshot, Table, Transaction, Value};
use chrono::NaiveDateTime;
use json::{
    epoch_days, epoch_micros, push_decimal_base64, push_int, push_str, push_uuid,
    push_zoned_timestamp,
};

/// One Kafka record: topic, key bytes and value bytes (`None` value = tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRecord {
    /// Destination topic.
    pub topic: String,
    /// Serialized key (JSON with schema), if any.
    pub key: Option<Vec<u8>>,
    /// Serialized value (JSON with schema); `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Per-table pre-rendered fragments.
struct TableCache {
    topic: String,
    /// `{"schema":<key schema>,"payload":{`
    key_head: String,
    /// `{"schema":<envelope schema>,"payload":{"before":`
    value_head: String,
    /// `,"schema":"public","table":"<t>","txId":`
    source_tail: String,
    /// `"public.<table>"` for transaction metadata.
    data_collection: String,
    /// `"<column>":` per column, in table order.
    col_keys: Vec<String>,
    /// Index of each primary-key column in the row.
    pk_idx: Vec<usize>,
}

/// Encodes [`Change`]s, [`Snapshot`]s and [`Transaction`]s into [`KafkaRecord`]s.
pub struct DebeziumEncoder {
    prefix: String,
    tx_topic: String,
    tables: Vec<TableCache>,
    /// `"source":{"version":..,"connector":"postgresql","name":"<prefix>","ts_ms":`
    source_head: String,
    /// `"db":"<database>","sequence":`
    db_part: String,
}

/// Snapshot position marker of a read event (`source.snapshot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SnapshotMark {
    First,
    FirstInCollection,
    True,
    LastInCollection,
    Last,
}

impl SnapshotMark {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotMark::First => "first",
            SnapshotMark::FirstInCollection => "first_in_data_collection",
            SnapshotMark::True => "true",
            SnapshotMark::LastInCollection => "last_in_data_collection",
            SnapshotMark::Last => "last",
        }
    }
}

/// Source-block context that differs between snapshot and streaming events.
struct SourceCtx<'a> {
    ts_us: i64,
    snapshot: &'a str,
    /// Previous commit LSN for streaming events; `None` renders `null` (snapshot).
    last_commit_lsn: Option<i64>,
    tx_id: i64,
}

/// `transaction` block of a streamed data event.
struct TxBlock<'a> {
    id: &'a str,
    total_order: usize,
    collection_order: usize,
}

impl DebeziumEncoder {
    /// Encoder for `topic.prefix = prefix` and database name `shop`.
    pub fn new(prefix: &str) -> Self {
        Self::with_database(prefix, "shop")
    }

    /// Encoder for `topic.prefix = prefix` and the given `database.dbname`.
    pub fn with_database(prefix: &str, database: &str) -> Self {
        let tables = Table::ALL
            .iter()
            .map(|&t| {
                let cols = t.columns();
                let mut source_tail = String::from(",\"schema\":\"public\",\"table\":");
                push_str(&mut source_tail, t.name());
                source_tail.push_str(",\"txId\":");
                TableCache {
                    topic: format!("{prefix}.public.{}", t.name()),
                    key_head: format!(
                        "{{\"schema\":{},\"payload\":{{",
                        schema::key_schema(prefix, t)
                    ),
                    value_head: format!(
                        "{{\"schema\":{},\"payload\":{{\"before\":",
                        schema::envelope_schema(prefix, t)
                    ),
                    source_tail,
                    data_collection: format!("\"public.{}\"", t.name()),
                    col_keys: cols
                        .iter()
                        .map(|c| {
                            let mut k = String::new();
                            push_str(&mut k, c.name);
                            k.push(':');
                            k
                        })
                        .collect(),
                    pk_idx: cols
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.primary_key)
                        .map(|(i, _)| i)
                        .collect(),
                }
            })
            .collect();
        let mut source_head = String::from("\"source\":{\"version\":\"");
        source_head.push_str(schema::DEBEZIUM_VERSION);
        source_head.push_str("\",\"connector\":\"postgresql\",\"name\":");
        push_str(&mut source_head, prefix);
        source_head.push_str(",\"ts_ms\":");
        let mut db_part = String::from("\"db\":");
        push_str(&mut db_part, database);
        db_part.push_str(",\"sequence\":");
        DebeziumEncoder {
            prefix: prefix.to_string(),
            tx_topic: format!("{prefix}.transaction"),
            tables,
            source_head,
            db_part,
        }
    }

    /// The configured `topic.prefix`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Topic of a table's change events: `<prefix>.public.<table>`.
    pub fn topic(&self, table: Table) -> &str {
        &self.tables[table.index()].topic
    }

    /// Topic of transaction metadata (BEGIN/END) records: `<prefix>.transaction`.
    pub fn transaction_topic(&self) -> &str {
        &self.tx_topic
    }

    /// Encodes the snapshot reads (no BEGIN/END, `transaction: null`), appending to `out`.
    pub fn encode_snapshot(&self, snap: &Snapshot, out: &mut Vec<KafkaRecord>) {
        let marks = snapshot_marks(&snap.changes);
        for (change, mark) in snap.changes.iter().zip(marks) {
            let ctx = SourceCtx {
                ts_us: change.ts_ms * 1000,
                snapshot: mark.as_str(),
                last_commit_lsn: None,
                tx_id: snap.tx_id,
            };
            self.push_change(change, &ctx, None, out);
        }
    }

    /// Encodes one transaction: BEGIN, its data events (each delete followed by its
    /// tombstone), END. Appends to `out`.
    pub fn encode_transaction(&self, tx: &Transaction, out: &mut Vec<KafkaRecord>) {
        let id = tx.debezium_id();
        let commit_us = epoch_micros(tx.commit_ts);
        let commit_ms = commit_us.div_euclid(1000);
        out.push(self.tx_record("BEGIN", &id, commit_ms, None));
        // Per-table counters, in first-seen order (also the END's data_collections order).
        let mut counts: Vec<(Table, usize)> = Vec::new();
        for (i, change) in tx.changes.iter().enumerate() {
            let collection_order = match counts.iter_mut().find(|(t, _)| *t == change.table) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((change.table, 1));
                    1
                }
            };
            let ctx = SourceCtx {
                ts_us: commit_us,
                snapshot: "false",
                last_commit_lsn: Some(tx.prev_commit_lsn),
                tx_id: tx.tx_id,
            };
            let block = TxBlock {
                id: &id,
                total_order: i + 1,
                collection_order,
            };
            self.push_change(change, &ctx, Some(&block), out);
        }
        out.push(self.tx_record("END", &id, commit_ms, Some(&counts)));
    }

    /// Encodes a single data change (plus its tombstone when it is a delete).
    fn push_change(
        &self,
        change: &Change,
        ctx: &SourceCtx<'_>,
        tx: Option<&TxBlock<'_>>,
        out: &mut Vec<KafkaRecord>,
    ) {
        let cache = &self.tables[change.table.index()];
        let key_row = change.after.as_ref().or(change.before.as_ref());
        let key = key_row.map(|row| self.key_bytes(cache, row));
        let value = self.value_bytes(cache, change, ctx, tx);
        out.push(KafkaRecord {
            topic: cache.topic.clone(),
            key: key.clone(),
            value: Some(value),
        });
        if change.op == Op::Delete {
            out.push(KafkaRecord {
                topic: cache.topic.clone(),
                key,
                value: None,
            });
        }
    }

    fn key_bytes(&self, cache: &TableCache, row: &RowValues) -> Vec<u8> {
        let mut buf = String::with_capacity(cache.key_head.len() + 64);
        buf.push_str(&cache.key_head);
        for (n, &i) in cache.pk_idx.iter().enumerate() {
            if n > 0 {
                buf.push(',');
            }
            buf.push_str(&cache.col_keys[i]);
            match row.get(i) {
                Some((_, v)) => push_value(&mut buf, v),
                None => buf.push_str("null"),
            }
        }
        buf.push_str("}}");
        buf.into_bytes()
    }

    fn value_bytes(
        &self,
        cache: &TableCache,
        change: &Change,
        ctx: &SourceCtx<'_>,
        tx: Option<&TxBlock<'_>>,
    ) -> Vec<u8> {
        let mut buf = String::with_capacity(cache.value_head.len() + 2048);
        buf.push_str(&cache.value_head);
        push_row(&mut buf, cache, change.before.as_ref());
        buf.push_str(",\"after\":");
        push_row(&mut buf, cache, change.after.as_ref());
        buf.push(',');
        buf.push_str(&self.source_head);
        push_int(&mut buf, ctx.ts_us.div_euclid(1000));
        buf.push_str(",\"snapshot\":\"");
        buf.push_str(ctx.snapshot);
        buf.push_str("\",");
        buf.push_str(&self.db_part);
        // `sequence` is a JSON array serialised into a string: ["<lastCommitLsn>","<lsn>"].
        buf.push_str("\"[");
        match ctx.last_commit_lsn {
            Some(l) => {
                buf.push_str("\\\"");
                push_int(&mut buf, l);
                buf.push_str("\\\"");
            }
            None => buf.push_str("null"),
        }
        buf.push_str(",\\\"");
        push_int(&mut buf, change.lsn);
        buf.push_str("\\\"]\",\"ts_us\":");
        push_int(&mut buf, ctx.ts_us);
        buf.push_str(",\"ts_ns\":");
        push_int(&mut buf, ctx.ts_us * 1000);
        buf.push_str(&cache.source_tail);
        push_int(&mut buf, ctx.tx_id);
        buf.push_str(",\"lsn\":");
        push_int(&mut buf, change.lsn);
        buf.push_str(",\"xmin\":null},\"transaction\":");
        match tx {
            Some(t) => {
                buf.push_str("{\"id\":");
                push_str(&mut buf, t.id);
                buf.push_str(",\"total_order\":");
                push_int(&mut buf, t.total_order);
                buf.push_str(",\"data_collection_order\":");
                push_int(&mut buf, t.collection_order);
                buf.push('}');
            }
            None => buf.push_str("null"),
        }
        buf.push_str(",\"op\":\"");
        buf.push_str(change.op.code());
        buf.push_str("\",\"ts_ms\":");
        push_int(&mut buf, change.ts_ms);
        buf.push_str(",\"ts_us\":");
        push_int(&mut buf, change.ts_ms * 1000);
        buf.push_str(",\"ts_ns\":");
        push_int(&mut buf, change.ts_ms * 1_000_000);
        buf.push_str("}}");
        buf.into_bytes()
    }

    fn tx_record(
        &self,
        status: &str,
        id: &str,
        ts_ms: i64,
        counts: Option<&[(Table, usize)]>,
    ) -> KafkaRecord {
        let mut key = String::with_capacity(256);
        key.push_str("{\"schema\":");
        key.push_str(schema::TX_KEY_SCHEMA);
        key.push_str(",\"payload\":{\"id\":");
        push_str(&mut key, id);
        key.push_str("}}");
        let mut value = String::with_capacity(1024);
        value.push_str("{\"schema\":");
        value.push_str(schema::TX_VALUE_SCHEMA);
        value.push_str(",\"payload\":{\"status\":\"");
        value.push_str(status);
        value.push_str("\",\"id\":");
        push_str(&mut value, id);
        match counts {
            Some(counts) => {
                value.push_str(",\"event_count\":");
                push_int(&mut value, counts.iter().map(|(_, n)| n).sum::<usize>());
                value.push_str(",\"data_collections\":[");
                for (i, (table, n)) in counts.iter().enumerate() {
                    if i > 0 {
                        value.push(',');
                    }
                    value.push_str("{\"data_collection\":");
                    value.push_str(&self.tables[table.index()].data_collection);
                    value.push_str(",\"event_count\":");
                    push_int(&mut value, *n);
                    value.push('}');
                }
                value.push(']');
            }
            None => value.push_str(",\"event_count\":null,\"data_collections\":null"),
        }
        value.push_str(",\"ts_ms\":");
        push_int(&mut value, ts_ms);
        value.push_str("}}");
        KafkaRecord {
            topic: self.tx_topic.clone(),
            key: Some(key.into_bytes()),
            value: Some(value.into_bytes()),
        }
    }
}

/// `source.snapshot` markers as Debezium 2.6+ assigns them: the very first read is
/// `first`, the very last `last`, the first/last read of every other table
/// `first_in_data_collection`/`last_in_data_collection`, everything else `true`.
fn snapshot_marks(changes: &[Change]) -> Vec<SnapshotMark> {
    let n = changes.len();
    (0..n)
        .map(|i| {
            let table = changes[i].table;
            let first_in_table = i == 0 || changes[i - 1].table != table;
            let last_in_table = i + 1 == n || changes[i + 1].table != table;
            if i + 1 == n {
                SnapshotMark::Last
            } else if i == 0 {
                SnapshotMark::First
            } else if last_in_table {
                SnapshotMark::LastInCollection
            } else if first_in_table {
                SnapshotMark::FirstInCollection
            } else {
                SnapshotMark::True
            }
        })
        .collect()
}

fn push_row(buf: &mut String, cache: &TableCache, row: Option<&RowValues>) {
    let Some(row) = row else {
        buf.push_str("null");
        return;
    };
    buf.push('{');
    for (i, (_, v)) in row.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        match cache.col_keys.get(i) {
            Some(k) => buf.push_str(k),
            None => continue,
        }
        push_value(buf, v);
    }
    buf.push('}');
}

/// Renders one cell the way JsonConverter serialises its Debezium logical type.
fn push_value(buf: &mut String, v: &Value) {
    match v {
        Value::Null => buf.push_str("null"),
        Value::Int(i) => push_int(buf, *i),
        Value::Text(s) | Value::Json(s) => push_str(buf, s),
        Value::Bool(b) => buf.push_str(if *b { "true" } else { "false" }),
        Value::Decimal { unscaled, .. } => {
            buf.push('"');
            push_decimal_base64(buf, *unscaled);
            buf.push('"');
        }
        Value::Date(d) => push_int(buf, epoch_days(*d)),
        Value::Timestamp(t) => push_int(buf, epoch_micros(*t)),
        Value::TimestampTz(t) => push_zoned_timestamp(buf, t),
        Value::Uuid(u) => push_uuid(buf, *u),
    }
}

/// Simulated epoch milliseconds of a naive (UTC) timestamp.
pub fn epoch_millis(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}
