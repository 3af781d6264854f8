//! Conformance tests (bronze's framing, then the decoder) against the real Debezium 3.4 records captured from
//! Postgres 15 and MariaDB 10.11 in `tests/fixtures/debezium/captured` (see its
//! `README.md`): every record of every `*.jsonl` there is framed and decoded the
//! way bronze does it and compared with its entry in `expected.json`.
//!
//! The files are read at test time (they are ~700 KB, and a regenerated capture
//! should not need a source edit). Mismatches are collected over the whole
//! corpus and reported together, so one run shows every disagreement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::file::frame_line;
use crate::cdc::*;

fn captured_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debezium/captured")
}

fn expected() -> Value {
    let path = captured_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).expect("read expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// The `*.jsonl` files of the captured folder, sorted by name.
fn jsonl_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(captured_dir())
        .expect("read captured dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

/// A decoded row as `column → value`, or `None` when the block is absent.
/// Duplicate column names would be a decoder bug, so they fail here.
fn row_map(row: &Option<Row>) -> Option<BTreeMap<String, Option<String>>> {
    let row = row.as_ref()?;
    let mut map = BTreeMap::new();
    for (name, value) in row.iter() {
        let old = map.insert(name.to_string(), value.map(str::to_string));
        assert!(
            old.is_none(),
            "column {name} appears twice in a decoded row"
        );
    }
    Some(map)
}

/// An expected row (`{column: text | null}` or `null`) in the form of [`row_map`].
fn expected_row(v: &Value) -> Result<Option<BTreeMap<String, Option<String>>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Object(cols) => cols
            .iter()
            .map(|(name, value)| match value {
                Value::Null => Ok((name.clone(), None)),
                Value::String(s) => Ok((name.clone(), Some(s.clone()))),
                other => Err(format!("column {name}: expected text or null, got {other}")),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(format!("expected a row object or null, got {other}")),
    }
}

/// Collects the differences of one record into `diffs`.
struct Check<'a> {
    diffs: &'a mut Vec<String>,
}

impl Check<'_> {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.diffs
                .push(format!("{what}: decoded {got:?}, expected {want:?}"));
        }
    }

    fn row(&mut self, what: &str, got: &Option<Row>, want: Option<&Value>) {
        let Some(want) = want else {
            self.diffs.push(format!("{what}: missing in expected.json"));
            return;
        };
        let want = match expected_row(want) {
            Ok(want) => want,
            Err(e) => return self.diffs.push(format!("{what}: {e}")),
        };
        match (row_map(got), want) {
            // Name the differing columns only: a types row has 29 of them.
            (Some(got), Some(want)) => {
                let names: std::collections::BTreeSet<&String> =
                    got.keys().chain(want.keys()).collect();
                for name in names {
                    self.eq(&format!("{what}.{name}"), got.get(name), want.get(name));
                }
            }
            (got, want) => self.eq(what, got, want),
        }
    }

    /// Fails on fields of the entry that this test does not compare, so that
    /// nothing expected.json states is skipped silently.
    fn only_fields(&mut self, entry: &Value, allowed: &[&str]) {
        let Some(obj) = entry.as_object() else {
            self.diffs.push("entry is not an object".into());
            return;
        };
        for name in obj.keys() {
            if !["topic", "partition", "offset", "kind"].contains(&name.as_str())
                && !allowed.contains(&name.as_str())
            {
                self.diffs
                    .push(format!("field {name:?} of the entry is not checked"));
            }
        }
    }
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// The `payload` of a record's value bytes, for the few fields the decoder does
/// not surface (END markers' `data_collections`, schema changes' `databaseName`).
fn raw_payload(value: Option<&[u8]>) -> Value {
    let value = value.expect("record has a value");
    let doc: Value = serde_json::from_slice(value).expect("value is JSON");
    doc["payload"].clone()
}

fn check_change(c: &mut Check<'_>, entry: &Value, out: &DecodedRecord) {
    c.only_fields(
        entry,
        &["op", "key", "before", "after", "source", "transaction"],
    );
    c.eq("op", out.op.map(Op::code), opt_str(&entry["op"]));
    c.row("key", &out.key, entry.get("key"));
    c.row("before", &out.before, entry.get("before"));
    c.row("after", &out.after, entry.get("after"));
    let src = &out.source;
    let Some(want) = entry["source"].as_object() else {
        c.diffs.push("source: missing in expected.json".into());
        return;
    };
    for (name, want) in want {
        let got = match name.as_str() {
            "connector" => &src.connector,
            "name" => &src.name,
            "db" => &src.db,
            "schema" => &src.schema,
            "table" => &src.table,
            "snapshot" => &src.snapshot,
            other => {
                c.diffs.push(format!("source.{other}: not checked"));
                continue;
            }
        };
        c.eq(&format!("source.{name}"), got.as_deref(), want.as_str());
    }
    // Every change of these connectors carries a log position (LSN, or binlog
    // file and pos): silver orders by it.
    if src.position().is_none() {
        c.diffs.push("source: no position (lsn / binlog)".into());
    }
    let tx = &out.transaction;
    match &entry["transaction"] {
        Value::Null => {
            c.eq("transaction.id", tx.id.as_deref(), None);
            c.eq("transaction.total_order", tx.total_order, None);
        }
        want => {
            c.eq("transaction.id", tx.id.as_deref(), want["id"].as_str());
            c.eq(
                "transaction.total_order",
                tx.total_order,
                want["total_order"].as_i64(),
            );
            c.eq(
                "transaction.data_collection_order",
                tx.data_collection_order,
                want["data_collection_order"].as_i64(),
            );
            // README: a Postgres id is `<txId>:<LSN of the record>`, a MariaDB id the GTID.
            let id = tx.id.as_deref().unwrap_or_default();
            match src.connector.as_deref() {
                Some("postgresql") => {
                    let (tx_id, lsn) = id.split_once(':').unwrap_or((id, ""));
                    c.eq("txId part of transaction.id", tx_id.parse().ok(), src.tx_id);
                    c.eq("LSN part of transaction.id", lsn.parse().ok(), src.lsn);
                }
                Some("mariadb") => c.eq("source.gtid", src.gtid.as_deref(), Some(id)),
                other => c.diffs.push(format!("unexpected connector {other:?}")),
            }
        }
    }
}

fn check_transaction(c: &mut Check<'_>, entry: &Value, out: &DecodedRecord, value: Option<&[u8]>) {
    c.only_fields(entry, &["status", "id", "event_count", "data_collections"]);
    c.eq("op", out.op, None);
    let tx = &out.transaction;
    c.eq("status", tx.status.as_deref(), entry["status"].as_str());
    c.eq("id", tx.id.as_deref(), entry["id"].as_str());
    c.eq("event_count", tx.event_count, entry["event_count"].as_i64());
    if let Some(want) = entry.get("data_collections") {
        // The decoder keeps no per-table counts; check the record itself so that
        // the expectation is not taken on trust. MariaDB lists them in no order.
        let mut got = raw_payload(value)["data_collections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        got.sort_by(|a, b| {
            a["data_collection"]
                .as_str()
                .cmp(&b["data_collection"].as_str())
        });
        c.eq(
            "data_collections (of the raw record)",
            &Value::Array(got),
            want,
        );
    }
}

/// Compares one framed, decoded record with its entry of expected.json.
fn check_record(
    entry: &Value,
    kind: Result<RecordKind, DecodeError>,
    out: &DecodedRecord,
    value: Option<&[u8]>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let kind = match kind {
        Ok(kind) => kind,
        Err(e) => return vec![format!("decode error: {e}")],
    };
    let mut c = Check { diffs: &mut diffs };
    c.eq("kind", kind.as_str(), entry["kind"].as_str().unwrap_or("?"));
    match entry["kind"].as_str() {
        Some("change") => check_change(&mut c, entry, out),
        Some("tombstone") => {
            c.only_fields(entry, &["key"]);
            c.eq("op", out.op, None);
            c.row("key", &out.key, entry.get("key"));
            c.eq("before", row_map(&out.before), None);
            c.eq("after", row_map(&out.after), None);
        }
        Some("transaction") => check_transaction(&mut c, entry, out, value),
        Some("heartbeat") => {
            c.only_fields(entry, &["key"]);
            c.eq("op", out.op, None);
            c.row("key", &out.key, entry.get("key"));
        }
        Some("schema_change") => {
            c.only_fields(entry, &["key", "databaseName", "ddl"]);
            c.eq("op", out.op, None);
            c.row("key", &out.key, entry.get("key"));
            c.eq("ddl", out.ddl.as_deref(), entry["ddl"].as_str());
            // `databaseName` of the value is not surfaced by the decoder (the
            // key holds the same name); check the record itself.
            let payload = raw_payload(value);
            c.eq(
                "databaseName",
                payload["databaseName"].as_str(),
                entry["databaseName"].as_str(),
            );
        }
        other => c.diffs.push(format!("unknown expected kind {other:?}")),
    }
    diffs
}

#[test]
fn every_captured_record_decodes_as_expected() {
    let expected = expected();
    let files = expected["files"].as_object().expect("files object");
    let on_disk = jsonl_files();
    let listed: Vec<String> = files.keys().cloned().collect();
    assert_eq!(
        on_disk, listed,
        "every captured file must be described by expected.json and vice versa"
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for name in &on_disk {
        let text = std::fs::read_to_string(captured_dir().join(name)).expect("read fixture");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let entries = files[name]["records"].as_array().expect("records array");
        assert_eq!(
            lines.len(),
            entries.len(),
            "{name}: every line needs exactly one entry in expected.json"
        );
        // One decoder per file, as bronze has one per run: its schema cache is
        // exercised by the records that share a schema.
        let mut decoder = Decoder::new(TypeHints::default());
        let mut out = DecodedRecord::default();
        for (i, (line, entry)) in lines.iter().zip(entries).enumerate() {
            let framed = frame_line(line.as_bytes())
                .unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1));
            let at = format!(
                "{name} line {} ({}@{}/{})",
                i + 1,
                framed.topic,
                framed.partition,
                framed.offset.unwrap_or(-1)
            );
            let position_ok = entry["topic"].as_str() == Some(framed.topic.as_str())
                && entry["partition"].as_i64() == Some(i64::from(framed.partition))
                && entry["offset"].as_i64() == framed.offset;
            if !position_ok {
                failures.push(format!(
                    "{at}: entry is for {}@{}/{}",
                    entry["topic"], entry["partition"], entry["offset"]
                ));
                continue;
            }
            let kind = decoder.decode(
                &framed.topic,
                framed.key.as_deref(),
                framed.value.as_deref(),
                &mut out,
            );
            for diff in check_record(entry, kind, &out, framed.value.as_deref()) {
                failures.push(format!("{at}: {diff}"));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) over {checked} records:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 140, "the README's file table sums to 140 records");
}
