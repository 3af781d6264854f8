//! Shared helpers for the integration tests: generation and an order-preserving,
//! typed decoder of the Debezium JSON.
#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use lakehouse_mock::debezium::json::decode_decimal_base64;
use lakehouse_mock::model::ColumnType;
use lakehouse_mock::{
    DebeziumEncoder, KafkaRecord, RowValues, SimConfig, Simulator, Snapshot, Table, Transaction,
    Value,
};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;

/// Snapshot, transactions and all their records for a seed.
pub struct Run {
    pub snapshot: Snapshot,
    pub txs: Vec<Transaction>,
    pub snapshot_records: Vec<KafkaRecord>,
    /// Records per transaction, in order.
    pub tx_records: Vec<Vec<KafkaRecord>>,
}

pub fn generate(cfg: SimConfig, n_tx: usize) -> Run {
    let enc = DebeziumEncoder::new(&cfg.topic_prefix);
    let mut sim = Simulator::new(cfg);
    let snapshot = sim.snapshot();
    let mut snapshot_records = Vec::new();
    enc.encode_snapshot(&snapshot, &mut snapshot_records);
    let mut txs = Vec::new();
    let mut tx_records = Vec::new();
    for _ in 0..n_tx {
        let tx = sim.next_transaction();
        let mut recs = Vec::new();
        enc.encode_transaction(&tx, &mut recs);
        txs.push(tx);
        tx_records.push(recs);
    }
    Run {
        snapshot,
        txs,
        snapshot_records,
        tx_records,
    }
}

impl Run {
    pub fn all_records(&self) -> impl Iterator<Item = &KafkaRecord> {
        self.snapshot_records
            .iter()
            .chain(self.tx_records.iter().flatten())
    }
}

/// A JSON object that keeps its key order.
#[derive(Debug)]
pub struct Ordered(pub Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Ordered {
    pub fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// An order-preserving JSON tree (only object key order matters here).
#[derive(Debug)]
enum Node {
    Object(Vec<(String, Node)>),
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry()? {
                    out.push((k, v));
                }
                Ok(Node::Object(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                while s.next_element::<Node>()?.is_some() {}
                Ok(Node::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Key order of the object at `path` (a list of keys from the root) in `json`.
pub fn key_order(json: &[u8], path: &[&str]) -> Vec<String> {
    let mut cur: Node = serde_json::from_slice(json).unwrap();
    for p in path {
        let Node::Object(entries) = cur else {
            panic!("not an object at {p}")
        };
        cur = entries.into_iter().find(|(k, _)| k == p).unwrap().1;
    }
    match cur {
        Node::Object(entries) => entries.into_iter().map(|(k, _)| k).collect(),
        Node::Other => panic!("not an object"),
    }
}

/// Decodes a row payload into typed values using the table's column types and checks
/// its key order against the table definition.
pub fn decode_row(table: Table, v: &serde_json::Value) -> Option<RowValues> {
    if v.is_null() {
        return None;
    }
    let obj = v.as_object().expect("row is an object");
    assert_eq!(obj.len(), table.columns().len(), "{table}: column count");
    Some(
        table
            .columns()
            .iter()
            .map(|c| {
                let j = &obj[c.name];
                (c.name, decode_value(c.ty, j))
            })
            .collect(),
    )
}

pub fn decode_value(ty: ColumnType, j: &serde_json::Value) -> Value {
    if j.is_null() {
        return Value::Null;
    }
    match ty {
        ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64 => {
            Value::Int(j.as_i64().unwrap())
        }
        ColumnType::Text => Value::Text(j.as_str().unwrap().to_string()),
        ColumnType::Jsonb => Value::Json(j.as_str().unwrap().to_string()),
        ColumnType::Bool => Value::Bool(j.as_bool().unwrap()),
        ColumnType::Numeric { scale, .. } => Value::Decimal {
            unscaled: decode_decimal_base64(j.as_str().unwrap()).unwrap(),
            scale,
        },
        ColumnType::Date => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
            Value::Date(epoch + TimeDelta::days(j.as_i64().unwrap()))
        }
        ColumnType::Timestamp => Value::Timestamp(
            DateTime::<Utc>::from_timestamp_micros(j.as_i64().unwrap())
                .unwrap()
                .naive_utc(),
        ),
        ColumnType::TimestampTz => {
            let s = j.as_str().unwrap();
            assert!(s.ends_with('Z') && s.len() == 27, "zoned timestamp {s}");
            Value::TimestampTz(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
        }
        ColumnType::Uuid => {
            let s = j.as_str().unwrap();
            assert_eq!(s.len(), 36);
            Value::Uuid(u128::from_str_radix(&s.replace('-', ""), 16).unwrap())
        }
    }
}

pub fn parse(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}
