//! Conformance tests against the Debezium corpus in `tests/fixtures/debezium`
//! (see its `PROVENANCE.md`), hand-made cases for what the corpus lacks, and a
//! small mutation fuzz loop.

use std::collections::HashMap;

use base64::Engine as _;

use super::*;

macro_rules! fixture {
    ($path:literal) => {
        (
            $path,
            include_str!(concat!("../../tests/fixtures/debezium/", $path)),
        )
    };
}

/// Every data file of the corpus: (path, text).
const CORPUS: [(&str, &str); 17] = [
    fixture!("postgres/pg-1.2.1-products-replica-full-schema.jsonl"),
    fixture!("postgres/pg-1.2.1-products-replica-full-noschema.jsonl"),
    fixture!("postgres/pg-1.4.0-orders-default-identity-noschema-keyed.jsonl"),
    fixture!("postgres/pg-1.9.5-tpcc-customer-float32-snapshot-schema.jsonl"),
    fixture!("postgres/pg-2.1.1-movies-variablescaledecimal-schema.json"),
    fixture!("mysql/mysql-1.1.1-products-schema.jsonl"),
    fixture!("mysql/mysql-1.1.1-products-noschema.jsonl"),
    fixture!("mysql/mysql-1.9.5-customers-schema.jsonl"),
    fixture!("mysql/mysql-2.7.0-orders-snapshot-schema-keyed.json"),
    fixture!("mysql/mysql-2.7.0-customers-delete-schema-keyed.json"),
    fixture!("mysql/mysql-3.0.1-customers-noschema.jsonl"),
    fixture!("mysql/mysql-1.9.7-alltypes-numeric-decimal-schema.json"),
    fixture!("mysql/mysql-1.7.0-schema-change-schema.json"),
    fixture!("mysql/mysql-0.10.0-legacy-fixture-schema.json"),
    fixture!("unwrap/pg-unwrap-orders-schema.json"),
    fixture!("unwrap/pg-unwrap-arrays-schema.json"),
    fixture!("unwrap/pg-unwrap-geometry-schema.json"),
];

/// One corpus record: the Kafka topic, key bytes and value bytes.
#[derive(Debug, Clone)]
struct Rec {
    topic: String,
    key: Option<String>,
    value: Option<String>,
}

/// The exact text of each top-level member of a JSON object (the corpus splices
/// the Kafka value in as raw text, so it must not be re-serialised).
fn members(doc: &str) -> HashMap<String, &str> {
    let mut c = json::Cursor::new(doc.as_bytes());
    c.peek().unwrap();
    let mut out = HashMap::new();
    let mut key = c.first_key().unwrap();
    while let Some(k) = key {
        let peek = c.peek().unwrap();
        let raw = c.skip(peek).unwrap();
        out.insert(k.into_owned(), std::str::from_utf8(raw).unwrap());
        key = c.next_key().unwrap();
    }
    out
}

/// Splits a corpus file into records, extracting the exact bytes of `key` and
/// `value` (a placeholder key of `key_captured:false` becomes `None`).
fn records(path: &str, text: &str) -> Vec<Rec> {
    let docs: Vec<&str> = if path.ends_with(".jsonl") {
        text.lines().filter(|l| !l.trim().is_empty()).collect()
    } else {
        vec![text]
    };
    docs.into_iter()
        .map(|d| {
            let m = members(d);
            let topic: String = serde_json::from_str(m["topic"]).unwrap();
            let captured = m["key_captured"] == "true";
            let raw = |name: &str| {
                let r = m[name];
                (r != "null").then(|| r.to_string())
            };
            Rec {
                topic,
                key: if captured { raw("key") } else { None },
                value: raw("value"),
            }
        })
        .collect()
}

fn corpus(name: &str) -> Vec<Rec> {
    let (path, text) = CORPUS.iter().find(|(p, _)| p.ends_with(name)).unwrap();
    records(path, text)
}

fn decode_with(dec: &mut Decoder, rec: &Rec) -> Result<(RecordKind, DecodedRecord), DecodeError> {
    let mut out = DecodedRecord::default();
    let kind = dec.decode(
        &rec.topic,
        rec.key.as_deref().map(str::as_bytes),
        rec.value.as_deref().map(str::as_bytes),
        &mut out,
    )?;
    Ok((kind, out))
}

fn decode_file(name: &str, hints: TypeHints) -> Vec<(RecordKind, DecodedRecord)> {
    let mut dec = Decoder::new(hints);
    corpus(name)
        .iter()
        .enumerate()
        .map(|(i, r)| decode_with(&mut dec, r).unwrap_or_else(|e| panic!("{name} record {i}: {e}")))
        .collect()
}

fn decode_one(
    topic: &str,
    key: Option<&str>,
    value: Option<&str>,
) -> Result<(RecordKind, DecodedRecord), DecodeError> {
    let mut dec = Decoder::default();
    decode_with(
        &mut dec,
        &Rec {
            topic: topic.to_string(),
            key: key.map(str::to_string),
            value: value.map(str::to_string),
        },
    )
}

fn col<'r>(row: &'r Option<Row>, name: &str) -> Option<&'r str> {
    row.as_ref()
        .unwrap_or_else(|| panic!("no row when reading {name}"))
        .get(name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn ops(recs: &[(RecordKind, DecodedRecord)]) -> String {
    recs.iter()
        .map(|(_, r)| r.op.map_or("-", Op::code))
        .collect()
}

fn has_meta_columns(row: &Option<Row>) -> bool {
    row.as_ref()
        .unwrap()
        .iter()
        .any(|(n, _)| n.starts_with("__"))
}

// ---------------------------------------------------------------------------
// Conformance corpus
// ---------------------------------------------------------------------------

#[test]
fn every_corpus_record_decodes() {
    let mut dec = Decoder::default();
    let mut total = 0;
    for (path, text) in CORPUS {
        for (i, rec) in records(path, text).iter().enumerate() {
            let (kind, out) =
                decode_with(&mut dec, rec).unwrap_or_else(|e| panic!("{path} record {i}: {e}"));
            total += 1;
            if path.contains("schema-change") {
                assert_eq!(kind, RecordKind::SchemaChange, "{path}");
            } else {
                assert_eq!(kind, RecordKind::Change, "{path} record {i}");
                assert!(out.op.is_some(), "{path} record {i}");
                assert!(
                    out.before.is_some() || out.after.is_some(),
                    "{path} record {i}"
                );
            }
        }
    }
    assert_eq!(total, 114, "the README counts 114 records");
}

#[test]
fn pg_1_4_0_schemaless_with_hints() {
    let mut hints = TypeHints::default();
    hints.insert(
        "dbserver1.inventory.orderline",
        "totalprice",
        FieldType::from_hint("decimal(2)").unwrap(),
    );
    hints.insert(
        "dbserver1.inventory.purchaseorder",
        "orderdate",
        FieldType::from_hint("timestamp_us").unwrap(),
    );
    let recs = decode_file(
        "pg-1.4.0-orders-default-identity-noschema-keyed.jsonl",
        hints,
    );
    assert_eq!(recs.len(), 4);
    assert_eq!(ops(&recs), "cccu");
    let (_, r0) = &recs[0];
    assert_eq!(
        col(&r0.after, "orderdate"),
        Some("2019-01-31T12:13:01.000000")
    );
    assert_eq!(r0.source.lsn, Some(34_250_896));
    assert_eq!(
        format!(
            "{:X}/{:X}",
            r0.source.lsn.unwrap() >> 32,
            r0.source.lsn.unwrap() & 0xffff_ffff
        ),
        "0/20AA090"
    );
    assert_eq!(col(&r0.key, "id"), Some("1"));
    assert_eq!(r0.source.connector.as_deref(), Some("postgresql"));
    assert_eq!(r0.source.tx_id, Some(608));
    assert_eq!(r0.source.snapshot.as_deref(), Some("false"));
    assert_eq!(r0.event_ts_ms, Some(1_610_716_847_249));
    assert_eq!(col(&recs[1].1.after, "totalprice"), Some("39.98"));
    assert_eq!(col(&recs[2].1.after, "totalprice"), Some("29.99"));
    assert_eq!(col(&recs[2].1.key, "id"), Some("2"));
    // Default replica identity: an update without `before`.
    let (_, r3) = &recs[3];
    assert_eq!(r3.op, Some(Op::Update));
    assert!(r3.before.is_none());
    assert_eq!(col(&r3.after, "status"), Some("CANCELLED"));
    assert_eq!(col(&r3.after, "totalprice"), Some("29.99"));

    // Without hints the wire text passes through.
    let raw = decode_file(
        "pg-1.4.0-orders-default-identity-noschema-keyed.jsonl",
        TypeHints::default(),
    );
    assert_eq!(col(&raw[1].1.after, "totalprice"), Some("D54="));
    assert_eq!(col(&raw[0].1.after, "orderdate"), Some("1548936781000000"));
}

#[test]
fn pg_2_1_1_variable_scale_decimal() {
    let recs = decode_file(
        "pg-2.1.1-movies-variablescaledecimal-schema.json",
        TypeHints::default(),
    );
    let (kind, r) = &recs[0];
    assert_eq!(*kind, RecordKind::Change);
    assert_eq!(r.op, Some(Op::Read));
    assert_eq!(col(&r.after, "rating"), Some("9.3"));
    assert_eq!(col(&r.after, "title"), Some("The Shawshank Redemption"));
    assert_eq!(col(&r.after, "year"), Some("1994"));
    assert_eq!(r.source.snapshot.as_deref(), Some("first"));
    assert_eq!(r.source.ts_ms, Some(1_675_103_983_563));
    assert_eq!(r.source.sequence.as_deref(), Some("[null,\"26612016\"]"));
    assert_eq!(r.source.lsn, Some(26_612_016));
    assert_eq!(r.source.tx_id, Some(744));
    assert_eq!(r.source.schema.as_deref(), Some("public"));
    assert_eq!(r.source.table.as_deref(), Some("movies"));
    assert_eq!(r.source.version.as_deref(), Some("2.1.1.Final"));
    assert!(r.before.is_none());
}

#[test]
fn pg_1_2_1_schema_and_schemaless_agree() {
    let with = decode_file(
        "pg-1.2.1-products-replica-full-schema.jsonl",
        TypeHints::default(),
    );
    let without = decode_file(
        "pg-1.2.1-products-replica-full-noschema.jsonl",
        TypeHints::default(),
    );
    assert_eq!(with.len(), 16);
    assert_eq!(ops(&with), ops(&without));
    let o = ops(&with);
    assert_eq!(o.matches('r').count(), 9);
    assert_eq!(o.matches('c').count(), 2);
    assert_eq!(o.matches('u').count(), 4);
    assert_eq!(o.matches('d').count(), 1);
    for ((k1, a), (k2, b)) in with.iter().zip(&without) {
        assert_eq!(k1, k2);
        assert_eq!(a.source, b.source);
        assert_eq!(a.before, b.before);
        assert_eq!(a.after, b.after);
        assert_eq!(a.event_ts_ms, b.event_ts_ms);
    }
    let r0 = &with[0].1;
    assert_eq!(r0.source.lsn, Some(34_078_720));
    assert_eq!(r0.source.ts_ms, Some(1_596_001_099_434));
    assert_eq!(r0.source.snapshot.as_deref(), Some("true"));
    assert_eq!(col(&r0.after, "weight"), Some("3.14"));
    assert_eq!(col(&r0.after, "id"), Some("101"));
    // REPLICA IDENTITY FULL: every update and delete has a full before.
    for (_, r) in &with {
        if matches!(r.op, Some(Op::Update | Op::Delete)) {
            assert_eq!(r.before.as_ref().unwrap().len(), 4);
        }
        let snap = r.source.snapshot.as_deref().unwrap();
        assert!(snap == "true" || snap == "false");
        assert!(r.transaction.id.is_none());
    }
    let delete = &with
        .iter()
        .find(|(_, r)| r.op == Some(Op::Delete))
        .unwrap()
        .1;
    assert_eq!(delete.source.lsn, Some(34_133_800));
    assert_eq!(format!("{:X}", delete.source.lsn.unwrap()), "208D728");
    assert!(delete.after.is_none());
}

#[test]
fn pg_1_9_5_float32_short_form() {
    let recs = decode_file(
        "pg-1.9.5-tpcc-customer-float32-snapshot-schema.jsonl",
        TypeHints::default(),
    );
    assert_eq!(recs.len(), 25);
    for (_, r) in &recs {
        assert_eq!(r.op, Some(Op::Read));
        assert_eq!(r.source.snapshot.as_deref(), Some("true"));
        let seq = r.source.sequence.as_deref().unwrap();
        assert!(seq.starts_with("[null,\""), "{seq}");
        for c in ["c_credit_lim", "c_discount", "c_balance", "c_ytd_payment"] {
            if let Some(t) = col(&r.after, c) {
                let f: f32 = t.parse().unwrap();
                assert_eq!(f.to_string(), t);
            }
        }
    }
    let r0 = &recs[0].1;
    assert_eq!(col(&r0.after, "c_discount"), Some("0.3173"));
    assert_eq!(col(&r0.after, "c_credit_lim"), Some("50000"));
    assert_eq!(col(&r0.after, "c_balance"), Some("-10"));
    assert_eq!(col(&r0.after, "c_since"), Some("2015-11-22 00:00:00"));
    assert_eq!(r0.source.sequence.as_deref(), Some("[null,\"24363832\"]"));
    assert_eq!(r0.source.lsn, Some(24_363_832));
}

#[test]
fn mysql_1_1_1_widened_float_is_exact() {
    let with = decode_file("mysql-1.1.1-products-schema.jsonl", TypeHints::default());
    let without = decode_file("mysql-1.1.1-products-noschema.jsonl", TypeHints::default());
    assert_eq!(with.len(), 16);
    let o = ops(&with);
    assert_eq!(o, ops(&without));
    assert_eq!(
        (
            o.matches('c').count(),
            o.matches('u').count(),
            o.matches('d').count()
        ),
        (11, 4, 1)
    );
    // The two Flink files spell one weight differently (`1.0` vs `1`): the
    // wire text is kept, so compare the weights numerically.
    let numeric = |row: &Option<Row>| -> Vec<(String, Option<String>)> {
        row.iter()
            .flat_map(|r| r.iter())
            .map(|(n, v)| {
                let v = match (n, v) {
                    ("weight", Some(w)) => Some(w.parse::<f64>().unwrap().to_string()),
                    (_, v) => v.map(str::to_string),
                };
                (n.to_string(), v)
            })
            .collect()
    };
    for ((_, a), (_, b)) in with.iter().zip(&without) {
        assert_eq!(a.source, b.source);
        assert_eq!(numeric(&a.before), numeric(&b.before));
        assert_eq!(numeric(&a.after), numeric(&b.after));
    }
    let weights: Vec<&str> = with
        .iter()
        .flat_map(|(_, r)| [&r.before, &r.after])
        .filter_map(|row| row.as_ref())
        .filter_map(|row| row.get("weight").flatten())
        .collect();
    for w in [
        "3.140000104904175",
        "8.100000381469727",
        "0.800000011920929",
        "5.300000190734863",
        "0.10000000149011612",
        "22.200000762939453",
        "5.099999904632568",
        "0.20000000298023224",
        "5.179999828338623",
        "5.170000076293945",
    ] {
        assert!(
            weights.contains(&w),
            "weight {w} not decoded exactly: {weights:?}"
        );
    }
    let r0 = &with[0].1;
    assert_eq!(r0.source.binlog_file.as_deref(), Some("mysql-bin.000003"));
    assert_eq!(r0.source.binlog_pos, Some(154));
    assert_eq!(r0.source.binlog_row, Some(0));
    assert_eq!(r0.source.server_id, Some(0));
    assert_eq!(r0.source.gtid, None);
    assert_eq!(r0.source.ts_ms, Some(0));
    assert_eq!(r0.source.snapshot.as_deref(), Some("true"));
    assert_eq!(
        r0.source.position(),
        Some(3 * 10_i128.pow(16) + 154 * 10_i128.pow(6))
    );
    assert_eq!(
        with.iter()
            .filter(|(_, r)| r.source.snapshot.as_deref() == Some("true"))
            .count(),
        9
    );
}

#[test]
fn mysql_1_9_5_multi_row_update() {
    let recs = decode_file("mysql-1.9.5-customers-schema.jsonl", TypeHints::default());
    assert_eq!(recs.len(), 10);
    let o = ops(&recs);
    assert_eq!(
        (
            o.matches('r').count(),
            o.matches('c').count(),
            o.matches('u').count(),
            o.matches('d').count()
        ),
        (4, 2, 3, 1)
    );
    let a = &recs[recs.len() - 3].1;
    let b = &recs[recs.len() - 2].1;
    // The last two updates may not be the last two records; find them by pos.
    let multi: Vec<&DecodedRecord> = recs
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.op == Some(Op::Update) && r.source.binlog_pos == Some(1442))
        .collect();
    assert_eq!(multi.len(), 2, "{a:?} {b:?}");
    assert_eq!(multi[0].source.binlog_row, Some(0));
    assert_eq!(multi[1].source.binlog_row, Some(1));
    assert_eq!(multi[0].source.ts_ms, multi[1].source.ts_ms);
    assert!(multi[0].source.position() < multi[1].source.position());
}

#[test]
fn mysql_2_7_0_keyed_with_ts_ns() {
    let recs = decode_file(
        "mysql-2.7.0-orders-snapshot-schema-keyed.json",
        TypeHints::default(),
    );
    let r = &recs[0].1;
    assert_eq!(r.op, Some(Op::Read));
    assert_eq!(col(&r.key, "order_number"), Some("10004"));
    assert_eq!(r.key.as_ref().unwrap().len(), 1);
    assert_eq!(col(&r.after, "order_date"), Some("2016-02-21"));
    assert_eq!(col(&r.after, "quantity"), Some("1"));
    assert_eq!(r.source.ts_ms, Some(1_718_461_481_000));
    assert_eq!(r.source.ts_us, Some(1_718_461_481_000_000));
    assert_eq!(r.source.ts_ns, Some(1_718_461_481_000_000_000));
    assert_eq!(r.event_ts_ms, Some(1_718_461_481_941));
    assert_eq!(r.event_ts_us, Some(1_718_461_481_941_184));
    assert_eq!(r.event_ts_ns, Some(1_718_461_481_941_184_957));
    let mut ts = String::new();
    logical::write_timestamp(r.event_ts_ns.unwrap(), 1_000_000_000, 9, &mut ts);
    assert_eq!(ts, "2024-06-15T14:24:41.941184957");
    assert_eq!(
        r.source.snapshot.as_deref(),
        Some("last_in_data_collection")
    );

    let recs = decode_file(
        "mysql-2.7.0-customers-delete-schema-keyed.json",
        TypeHints::default(),
    );
    let d = &recs[0].1;
    assert_eq!(d.op, Some(Op::Delete));
    assert!(d.after.is_none());
    assert_eq!(col(&d.key, "id"), Some("1004"));
    assert_eq!(col(&d.before, "email"), Some("annek@noanswer.org"));
    assert_eq!(d.before.as_ref().unwrap().len(), 4);
    assert_eq!(d.event_ts_ns, Some(1_718_486_007_972_986_077));
    ts.clear();
    logical::write_timestamp(d.event_ts_ns.unwrap(), 1_000_000_000, 9, &mut ts);
    assert_eq!(ts, "2024-06-15T21:13:27.972986077");
    assert_eq!(d.source.snapshot.as_deref(), Some("false"));
}

#[test]
fn mysql_3_0_1_schemaless_ts_ns() {
    let recs = decode_file("mysql-3.0.1-customers-noschema.jsonl", TypeHints::default());
    assert_eq!(ops(&recs), "ru");
    assert_eq!(recs[0].1.event_ts_ns, Some(1_731_327_512_006_319_782));
    assert_eq!(recs[1].1.event_ts_ns, Some(1_731_327_659_957_757_335));
    let mut ts = String::new();
    logical::write_timestamp(1_731_327_512_006_319_782, 1_000_000_000, 9, &mut ts);
    assert_eq!(ts, "2024-11-11T12:18:32.006319782");
    assert_eq!(col(&recs[1].1.before, "first_name"), Some("Sally"));
    assert_eq!(col(&recs[1].1.after, "first_name"), Some("Sarah"));
    assert_eq!(recs[1].1.source.server_id, Some(223_344));
    assert_eq!(recs[1].1.source.name.as_deref(), Some("wasm"));
}

/// Minimal WKB → WKT, enough to check the corpus geometries.
fn wkt(b: &[u8]) -> String {
    fn u32_at(b: &[u8], pos: &mut usize, le: bool) -> u32 {
        let w: [u8; 4] = b[*pos..*pos + 4].try_into().unwrap();
        *pos += 4;
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    }
    fn f64_at(b: &[u8], pos: &mut usize, le: bool) -> f64 {
        let w: [u8; 8] = b[*pos..*pos + 8].try_into().unwrap();
        *pos += 8;
        if le {
            f64::from_le_bytes(w)
        } else {
            f64::from_be_bytes(w)
        }
    }
    fn points(b: &[u8], pos: &mut usize, le: bool) -> String {
        let n = u32_at(b, pos, le);
        (0..n)
            .map(|_| format!("{} {}", f64_at(b, pos, le), f64_at(b, pos, le)))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn body(b: &[u8], pos: &mut usize) -> (u32, String) {
        let le = b[*pos] == 1;
        *pos += 1;
        let ty = u32_at(b, pos, le);
        let text = match ty {
            1 => format!("{} {}", f64_at(b, pos, le), f64_at(b, pos, le)),
            2 => points(b, pos, le),
            3 => {
                let n = u32_at(b, pos, le);
                (0..n)
                    .map(|_| format!("({})", points(b, pos, le)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            4..=6 => {
                let n = u32_at(b, pos, le);
                (0..n)
                    .map(|_| format!("({})", body(b, pos).1))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            7 => {
                let n = u32_at(b, pos, le);
                (0..n).map(|_| geom(b, pos)).collect::<Vec<_>>().join(", ")
            }
            other => panic!("WKB type {other}"),
        };
        (ty, text)
    }
    fn geom(b: &[u8], pos: &mut usize) -> String {
        let (ty, text) = body(b, pos);
        let name = [
            "",
            "POINT",
            "LINESTRING",
            "POLYGON",
            "MULTIPOINT",
            "MULTILINESTRING",
            "MULTIPOLYGON",
            "GEOMETRYCOLLECTION",
        ][ty as usize];
        format!("{name}({text})")
    }
    geom(b, &mut 0)
}

fn geometry_wkt(json_text: &str) -> (String, serde_json::Value) {
    let v: serde_json::Value = serde_json::from_str(json_text).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["wkb"].as_str().unwrap())
        .unwrap();
    (wkt(&bytes), v["srid"].clone())
}

#[test]
fn mysql_1_9_7_all_types() {
    let recs = decode_file(
        "mysql-1.9.7-alltypes-numeric-decimal-schema.json",
        TypeHints::default(),
    );
    let r = &recs[0].1;
    assert_eq!(r.op, Some(Op::Read));
    assert!(r.before.is_none());
    assert_eq!(r.source.ts_ms, Some(0));
    assert_eq!(r.source.snapshot.as_deref(), Some("false"));
    assert_eq!(r.source.binlog_file.as_deref(), Some(""));
    assert_eq!(r.source.binlog_pos, Some(0));
    let a = &r.after;
    let expect = [
        ("pt", "1.1"),
        ("_bit", "1991"),
        ("_bit1", "true"),
        ("_bigint_unsigned", "20000000000"),
        ("_bigint_unsigned_zerofill", "30000000000"),
        ("_serial", "40000000000"),
        ("_numeric", "12345.110"),
        ("_numeric_unsigned", "12345.220"),
        ("_numeric_unsigned_zerofill", "12345.330"),
        ("_fixed", "123456789876543212345678987654321.110"),
        ("_fixed_unsigned", "123456789876543212345678987654321.220"),
        (
            "_fixed_unsigned_zerofill",
            "123456789876543212345678987654321.330",
        ),
        ("_decimal", "11111"),
        ("_decimal_unsigned", "22222"),
        ("_decimal_unsigned_zerofill", "33333"),
        ("_big_decimal", "2222222222222222300000001111.1234567890"),
        ("_date", "2023-03-23"),
        ("_datetime", "2023-03-23T14:30:05.000"),
        ("_datetime3", "2023-03-23T14:30:05.123"),
        ("_datetime6", "2023-03-23T14:30:05.123456"),
        ("_datetime_p", "2023-03-24T14:30:00.000"),
        ("_datetime_p2", "2023-03-24T14:30:05.120"),
        ("_timestamp", "2023-03-23T22:00:10.123456Z"),
        ("_timestamp0", "2023-03-23T07:10:00Z"),
        ("_time", "10:13:23.000000"),
        ("_year", "2023"),
        ("_json", "{\"a\": \"b\"}"),
        ("_enum", "value1"),
        ("_set", "a,b"),
        ("_tinyint1", "1"),
        ("_boolean", "1"),
        ("_bool", "0"),
        ("_bigint", "10000000000"),
        ("_float", "1.5"),
        ("_real", "1.000001"),
        ("_double_precision_unsigned_zerofill", "3.000333"),
        ("_char", "Paimon"),
        ("_bin", "Ynl0ZXMAAAAAAA=="),
    ];
    for (name, want) in expect {
        assert_eq!(col(a, name), Some(want), "column {name}");
    }
    let json: serde_json::Value = serde_json::from_str(col(a, "_json").unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({"a": "b"}));
    let b64 = |name: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(col(a, name).unwrap())
            .unwrap()
    };
    assert_eq!(b64("_bin"), b"bytes\0\0\0\0\0");
    assert_eq!(b64("_varbin"), b"more bytes");
    assert_eq!(b64("_tinyblob"), b"TINYBLOB type test data");
    assert_eq!(b64("_blob"), b"BLOB type test data");
    assert_eq!(b64("_mediumblob"), b"MEDIUMBLOB type test data");
    assert_eq!(b64("_longblob"), b"LONGBLOB  bytes test data");
    assert_eq!(
        u64::from_str_radix("11111000111", 2).unwrap().to_string(),
        col(a, "_bit").unwrap()
    );

    assert_eq!(
        col(a, "_point"),
        Some(r#"{"x":1.0,"y":1.0,"wkb":"AQEAAAAAAAAAAADwPwAAAAAAAPA/","srid":null}"#)
    );
    let geoms = [
        ("_point", "POINT(1 1)"),
        ("_geometry", "POLYGON((1 1, 2 1, 2 2, 1 2, 1 1))"),
        ("_polygon", "POLYGON((1 1, 2 1, 2 2, 1 2, 1 1))"),
        ("_linestring", "LINESTRING(3 0, 3 3, 3 5)"),
        ("_multipoint", "MULTIPOINT((1 1), (2 2))"),
        ("_multiline", "MULTILINESTRING((1 1, 2 2, 3 3), (4 4, 5 5))"),
        (
            "_multipolygon",
            "MULTIPOLYGON(((0 0, 10 0, 10 10, 0 10, 0 0)), ((5 5, 7 5, 7 7, 5 7, 5 5)))",
        ),
        (
            "_geometrycollection",
            "GEOMETRYCOLLECTION(POINT(10 10), POINT(30 30), LINESTRING(15 15, 20 20))",
        ),
    ];
    for (name, want) in geoms {
        let (w, srid) = geometry_wkt(col(a, name).unwrap());
        assert_eq!(w, want, "{name}");
        assert!(srid.is_null());
    }
}

#[test]
fn mysql_schema_change_and_legacy() {
    let recs = decode_file(
        "mysql-1.7.0-schema-change-schema.json",
        TypeHints::default(),
    );
    let (kind, r) = &recs[0];
    assert_eq!(*kind, RecordKind::SchemaChange);
    assert!(!kind.is_table_row());
    assert_eq!(r.op, None);
    let ddl = r.ddl.as_deref().unwrap();
    assert!(
        ddl.starts_with("CREATE TABLE `geom` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"),
        "{ddl}"
    );
    assert_eq!(r.source.db.as_deref(), Some("inventory"));
    assert_eq!(r.source.snapshot.as_deref(), Some("true"));
    assert_eq!(r.source.binlog_pos, Some(154));

    let recs = decode_file(
        "mysql-0.10.0-legacy-fixture-schema.json",
        TypeHints::default(),
    );
    let (kind, r) = &recs[0];
    assert_eq!(*kind, RecordKind::Change);
    assert_eq!(r.op, Some(Op::Create));
    assert_eq!(r.source.snapshot.as_deref(), Some("false"));
    assert_eq!(r.source.version.as_deref(), Some("0.10.0.Final"));
    assert_eq!(r.source.binlog_file.as_deref(), Some("mysql-bin.000003"));
    assert_eq!(col(&r.after, "id"), Some("1004"));
    assert_eq!(r.event_ts_ms, Some(1_465_491_411_815));
    assert_eq!(r.event_ts_ns, Some(1_465_491_411_815_000_000));
    assert!(r.transaction.id.is_none());
}

#[test]
fn unwrapped_records() {
    let recs = decode_file("pg-unwrap-orders-schema.json", TypeHints::default());
    let r = &recs[0].1;
    assert_eq!(r.op, Some(Op::Read));
    assert!(r.before.is_none());
    assert!(!has_meta_columns(&r.after));
    assert_eq!(r.after.as_ref().unwrap().len(), 5);
    assert_eq!(col(&r.after, "order_date"), Some("2016-02-19"));
    assert_eq!(col(&r.after, "id"), Some("10003"));
    assert_eq!(r.source.lsn, Some(33_832_960));
    assert_eq!(format!("{:X}", r.source.lsn.unwrap()), "2044000");
    assert_eq!(r.source.ts_ms, Some(1_596_309_876_678));
    assert_eq!(r.source.table.as_deref(), Some("orders"));

    let recs = decode_file("pg-unwrap-arrays-schema.json", TypeHints::default());
    let r = &recs[0].1;
    assert_eq!(r.op, Some(Op::Create));
    assert!(!has_meta_columns(&r.after));
    assert_eq!(col(&r.after, "name"), Some("Bill"));
    assert_eq!(
        col(&r.after, "pay_by_quarter"),
        Some("[10000,10001,10002,10003]")
    );
    assert_eq!(
        col(&r.after, "schedule"),
        Some(r#"["[Ljava.lang.String;@508917a0","[Ljava.lang.String;@7412bd2"]"#)
    );
    assert_eq!(r.source.db.as_deref(), Some("postgres"));
    assert_eq!(r.source.table.as_deref(), Some("array_data"));
    assert_eq!(r.source.ts_ms, Some(1_638_128_893_618));

    let recs = decode_file("pg-unwrap-geometry-schema.json", TypeHints::default());
    let r = &recs[0].1;
    assert_eq!(r.op, Some(Op::Read));
    assert!(!has_meta_columns(&r.after));
    assert_eq!(col(&r.after, "id"), Some("1"));
    assert_eq!(col(&r.after, "h"), None);
    let g = col(&r.after, "g").unwrap();
    assert_eq!(g, r#"{"wkb":"AQEAAAAAAAAAAADwPwAAAAAAAPA/","srid":123}"#);
    let (w, srid) = geometry_wkt(g);
    assert_eq!(w, "POINT(1 1)");
    assert_eq!(srid, 123);

    // Rewrite mode: `__deleted` is the string "true" → the row is `before`.
    let deleted = r#"{"id":7,"name":"x","__table":"t","__lsn":5,"__deleted":"true","__source_ts_ms":9,"__db":"d","__schema":"s"}"#;
    let (kind, r) = decode_one("p.s.t", None, Some(deleted)).unwrap();
    assert_eq!(kind, RecordKind::Change);
    assert_eq!(r.op, Some(Op::Delete));
    assert!(r.after.is_none());
    assert_eq!(col(&r.before, "id"), Some("7"));
    assert!(!has_meta_columns(&r.before));
    assert_eq!((r.source.lsn, r.source.ts_ms), (Some(5), Some(9)));
    assert_eq!(r.source.schema.as_deref(), Some("s"));
    let kept = r#"{"id":7,"__deleted":"false"}"#;
    let (_, r) = decode_one("p.s.t", None, Some(kept)).unwrap();
    assert_eq!(r.op, Some(Op::Update));
    assert_eq!(col(&r.after, "id"), Some("7"));
    let mysql = r#"{"id":1,"__op":"u","__source_file":"mysql-bin.000004","__source_pos":77,"__source_row":2,"__ts_ms":11}"#;
    let (_, r) = decode_one("p.d.t", None, Some(mysql)).unwrap();
    assert_eq!(r.op, Some(Op::Update));
    assert_eq!(r.source.binlog_file.as_deref(), Some("mysql-bin.000004"));
    assert_eq!(
        (r.source.binlog_pos, r.source.binlog_row),
        (Some(77), Some(2))
    );
    assert_eq!(r.event_ts_ms, Some(11));
}

// ---------------------------------------------------------------------------
// Hand-made cases for what the corpus lacks
// ---------------------------------------------------------------------------

const PG_SOURCE: &str = r#"{"version":"2.5.0.Final","connector":"postgresql","name":"pg","ts_ms":1700000000000,"snapshot":"false","db":"shop","sequence":"[\"100\",\"200\"]","schema":"public","table":"t","txId":571,"lsn":53195832,"xmin":null}"#;

/// A schema-enabled envelope whose row has the given field schemas.
fn envelope(fields: &str, after: &str, extra: &str) -> String {
    format!(
        r#"{{"schema":{{"type":"struct","name":"pg.public.t.Envelope","fields":[{{"type":"struct","optional":true,"field":"before","fields":[{fields}]}},{{"type":"struct","optional":true,"field":"after","fields":[{fields}]}},{{"type":"struct","field":"source","fields":[]}},{{"type":"string","field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}]}},"payload":{{"before":null,"after":{after},"source":{PG_SOURCE},"op":"c","ts_ms":1700000000001{extra}}}}}"#
    )
}

#[test]
fn tombstones() {
    for value in [
        None,
        Some(""),
        Some(r#"{"schema":null,"payload":null}"#),
        Some("null"),
    ] {
        let (kind, r) = decode_one("pg.public.t", Some(r#"{"id":1}"#), value).unwrap();
        assert_eq!(kind, RecordKind::Tombstone, "{value:?}");
        assert!(kind.is_table_row());
        assert_eq!(r.op, None);
        assert_eq!(col(&r.key, "id"), Some("1"));
        assert!(r.after.is_none() && r.before.is_none());
    }
    let key = r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"pg.public.t.Key"},"payload":{"id":42}}"#;
    let (kind, r) = decode_one("pg.public.t", Some(key), None).unwrap();
    assert_eq!(kind, RecordKind::Tombstone);
    assert_eq!(col(&r.key, "id"), Some("42"));
}

#[test]
fn truncate() {
    let v = format!(r#"{{"source":{PG_SOURCE},"op":"t","ts_ms":1700000000002}}"#);
    let (kind, r) = decode_one("pg.public.t", None, Some(&v)).unwrap();
    assert_eq!(kind, RecordKind::Change);
    assert_eq!(r.op, Some(Op::Truncate));
    assert!(r.before.is_none() && r.after.is_none() && r.key.is_none());
    assert_eq!(r.source.lsn, Some(53_195_832));
    assert_eq!(r.source.sequence.as_deref(), Some(r#"["100","200"]"#));
    assert_eq!(r.event_ts_ms, Some(1_700_000_000_002));
}

#[test]
fn transactions() {
    let begin = r#"{"status":"BEGIN","id":"571:53195829","ts_ms":1486500577125,"event_count":null,"data_collections":null}"#;
    let (kind, r) = decode_one(
        "pg.transaction",
        Some(r#"{"id":"571:53195829"}"#),
        Some(begin),
    )
    .unwrap();
    assert_eq!(kind, RecordKind::TransactionMarker);
    assert!(!kind.is_table_row());
    assert_eq!(r.transaction.status.as_deref(), Some("BEGIN"));
    assert_eq!(r.transaction.id.as_deref(), Some("571:53195829"));
    assert_eq!(r.transaction.event_count, None);
    assert_eq!(r.event_ts_ms, Some(1_486_500_577_125));
    let end = r#"{"schema":{"type":"struct","name":"io.debezium.connector.common.TransactionMetadataValue","fields":[{"type":"string","field":"status"},{"type":"string","field":"id"},{"type":"int64","optional":true,"field":"event_count"}]},"payload":{"status":"END","id":"571:53195829","ts_ms":1486500577691,"event_count":2,"data_collections":[{"data_collection":"s1.a","event_count":1},{"data_collection":"s1.b","event_count":1}]}}"#;
    let (kind, r) = decode_one("pg.transaction", None, Some(end)).unwrap();
    assert_eq!(kind, RecordKind::TransactionMarker);
    assert_eq!(r.transaction.status.as_deref(), Some("END"));
    assert_eq!(r.transaction.event_count, Some(2));

    let data = envelope(
        r#"{"type":"int32","optional":false,"field":"id"}"#,
        r#"{"id":5}"#,
        r#","transaction":{"id":"571:53195832","total_order":1,"data_collection_order":1}"#,
    );
    let (kind, r) = decode_one("pg.public.t", None, Some(&data)).unwrap();
    assert_eq!(kind, RecordKind::Change);
    assert_eq!(r.transaction.id.as_deref(), Some("571:53195832"));
    assert_eq!(r.transaction.total_order, Some(1));
    assert_eq!(r.transaction.data_collection_order, Some(1));
    assert_eq!(r.transaction.status, None);
}

#[test]
fn heartbeats_and_logical_messages() {
    let (kind, r) = decode_one(
        "__debezium-heartbeat.pg",
        Some(r#"{"serverName":"pg"}"#),
        Some(r#"{"ts_ms":1700000000000}"#),
    )
    .unwrap();
    assert_eq!(kind, RecordKind::Heartbeat);
    assert_eq!(r.event_ts_ms, Some(1_700_000_000_000));
    assert_eq!(col(&r.key, "serverName"), Some("pg"));
    let hb = r#"{"schema":{"type":"struct","name":"io.debezium.connector.common.Heartbeat","fields":[{"type":"int64","field":"ts_ms"}]},"payload":{"ts_ms":5}}"#;
    let (kind, _) = decode_one("custom-heartbeats", None, Some(hb)).unwrap();
    assert_eq!(kind, RecordKind::Heartbeat);
    let msg = format!(
        r#"{{"op":"m","ts_ms":1,"source":{PG_SOURCE},"message":{{"prefix":"p","content":"aGk="}}}}"#
    );
    let (kind, r) = decode_one("pg.message", None, Some(&msg)).unwrap();
    assert_eq!(kind, RecordKind::LogicalMessage);
    assert_eq!(r.op, None);
    assert_eq!(r.source.lsn, Some(53_195_832));
}

#[test]
fn temporal_types() {
    let fields = r#"{"type":"int64","optional":true,"name":"io.debezium.time.NanoTimestamp","field":"nts"},
        {"type":"int64","optional":true,"name":"io.debezium.time.NanoTime","field":"nt"},
        {"type":"int32","optional":true,"name":"org.apache.kafka.connect.data.Date","field":"cd"},
        {"type":"int32","optional":true,"name":"org.apache.kafka.connect.data.Time","field":"ct"},
        {"type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","field":"cts"},
        {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","field":"inf"},
        {"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","field":"ninf"},
        {"type":"int64","optional":true,"name":"io.debezium.time.Timestamp","field":"tinf"},
        {"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","field":"zts"},
        {"type":"string","optional":true,"name":"io.debezium.time.ZonedTime","field":"zt"},
        {"type":"int64","optional":true,"name":"io.debezium.time.MicroDuration","field":"dur"},
        {"type":"string","optional":true,"name":"io.debezium.time.Interval","field":"iv"}"#;
    let after = r#"{"nts":1529507596945104123,"nt":54796945104123,"cd":17702,"ct":54796945,"cts":1529507596945,
        "inf":9223372036825200000,"ninf":-9223372036832400000,"tinf":9223372036825200000,"zts":"2018-06-20T13:37:03.5Z",
        "zt":"15:13:16.945104Z","dur":3600000000,"iv":"P1Y2M3DT4H5M6.78S"}"#;
    let (_, r) = decode_one("pg.public.t", None, Some(&envelope(fields, after, ""))).unwrap();
    let expect = [
        ("nts", "2018-06-20T15:13:16.945104123"),
        ("nt", "15:13:16.945104123"),
        ("cd", "2018-06-20"),
        ("ct", "15:13:16.945"),
        ("cts", "2018-06-20T15:13:16.945"),
        ("inf", "infinity"),
        ("ninf", "-infinity"),
        ("tinf", "infinity"),
        ("zts", "2018-06-20T13:37:03.5Z"),
        ("zt", "15:13:16.945104Z"),
        ("dur", "3600000000"),
        ("iv", "P1Y2M3DT4H5M6.78S"),
    ];
    for (name, want) in expect {
        assert_eq!(col(&r.after, name), Some(want), "{name}");
    }
}

#[test]
fn decimal_modes() {
    let mut big = vec![0x01u8];
    big.extend([0u8; 16]);
    let big = base64::engine::general_purpose::STANDARD.encode(&big);
    let fields = r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"neg"},
        {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"3"},"field":"big"},
        {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"as_str"},
        {"type":"string","optional":true,"field":"mode_string"},
        {"type":"double","optional":true,"field":"mode_double"},
        {"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal","fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}],"field":"vsd"}"#;
    let after = format!(
        r#"{{"neg":"8GE=","big":"{big}","as_str":"12.5","mode_string":"1234.50","mode_double":1234.5,"vsd":{{"scale":3,"value":"/w=="}}}}"#
    );
    let (_, r) = decode_one("pg.public.t", None, Some(&envelope(fields, &after, ""))).unwrap();
    assert_eq!(col(&r.after, "neg"), Some("-39.99"));
    assert_eq!(
        col(&r.after, "big"),
        Some("340282366920938463463374607431768211.456")
    );
    assert_eq!(col(&r.after, "as_str"), Some("12.50"));
    assert_eq!(col(&r.after, "mode_string"), Some("1234.50"));
    assert_eq!(col(&r.after, "mode_double"), Some("1234.5"));
    assert_eq!(col(&r.after, "vsd"), Some("-0.001"));
}

#[test]
fn string_logical_types_and_nested() {
    let fields = r#"{"type":"string","optional":true,"name":"io.debezium.data.Json","field":"j"},
        {"type":"string","optional":true,"name":"io.debezium.data.Uuid","field":"u"},
        {"type":"string","optional":true,"name":"io.debezium.data.Enum","parameters":{"allowed":"a,b"},"field":"e"},
        {"type":"string","optional":true,"name":"io.debezium.data.EnumSet","parameters":{"allowed":"a,b"},"field":"es"},
        {"type":"string","optional":true,"name":"io.debezium.data.Xml","field":"x"},
        {"type":"string","optional":true,"name":"io.debezium.data.Ltree","field":"lt"},
        {"type":"bytes","optional":true,"field":"raw"},
        {"type":"array","optional":true,"items":{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"1"}},"field":"prices"},
        {"type":"map","optional":true,"keys":{"type":"string"},"values":{"type":"int32","optional":true,"name":"io.debezium.time.Date"},"field":"m"},
        {"type":"string","optional":false,"default":"dflt","field":"with_default"},
        {"type":"int32","optional":true,"default":3,"field":"missing_opt"}"#;
    let after = r#"{"j":"{\"k\": [1, 2]}","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","e":"a","es":"a,b","x":"<a>1</a>","lt":"Top.Science","raw":"AAE=","prices":["AQ==",null],"m":{"d":1},"with_default":null,"undeclared":"x\ny"}"#;
    let (_, r) = decode_one("pg.public.t", None, Some(&envelope(fields, after, ""))).unwrap();
    let expect = [
        ("j", Some("{\"k\": [1, 2]}")),
        ("u", Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        ("e", Some("a")),
        ("es", Some("a,b")),
        ("x", Some("<a>1</a>")),
        ("lt", Some("Top.Science")),
        ("raw", Some("AAE=")),
        ("prices", Some(r#"["0.1",null]"#)),
        ("m", Some(r#"{"d":"1970-01-02"}"#)),
        ("with_default", Some("dflt")),
        ("missing_opt", Some("3")),
        ("undeclared", Some("x\ny")),
    ];
    for (name, want) in expect {
        assert_eq!(r.after.as_ref().unwrap().get(name), Some(want), "{name}");
    }
}

#[test]
fn envelope_field_orders_and_mixed_keys() {
    let fields = r#"{"type":"int32","optional":false,"field":"id"}"#;
    let normal = envelope(fields, r#"{"id":5}"#, "");
    // Move "schema" after "payload".
    let v = members(&normal);
    let swapped = format!(r#"{{"payload":{},"schema":{}}}"#, v["payload"], v["schema"]);
    let key_with_schema = r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"k"},"payload":{"id":5}}"#;
    let primitive_key = r#"{"schema":{"type":"int64","optional":false},"payload":77}"#;
    let schemaless_value =
        format!(r#"{{"before":null,"after":{{"id":5}},"source":{PG_SOURCE},"op":"c","ts_ms":1}}"#);
    let mut dec = Decoder::default();
    let mut out = DecodedRecord::default();
    for (key, value) in [
        (Some(key_with_schema), normal.as_str()),
        (Some(key_with_schema), swapped.as_str()),
        (Some(key_with_schema), schemaless_value.as_str()),
        (Some(r#"{"id":5}"#), normal.as_str()),
    ] {
        let kind = dec
            .decode(
                "pg.public.t",
                key.map(str::as_bytes),
                Some(value.as_bytes()),
                &mut out,
            )
            .unwrap();
        assert_eq!(kind, RecordKind::Change);
        assert_eq!(out.op, Some(Op::Create));
        assert_eq!(col(&out.after, "id"), Some("5"));
        assert_eq!(col(&out.key, "id"), Some("5"));
        assert_eq!(out.source.lsn, Some(53_195_832));
    }
    dec.decode(
        "t",
        Some(primitive_key.as_bytes()),
        Some(normal.as_bytes()),
        &mut out,
    )
    .unwrap();
    assert_eq!(col(&out.key, "key"), Some("77"));
    dec.decode("t", Some(br#""abc""#), Some(normal.as_bytes()), &mut out)
        .unwrap();
    assert_eq!(col(&out.key, "key"), Some("abc"));
}

#[test]
fn schema_cache_hits() {
    let rec = &corpus("mysql-1.9.7-alltypes-numeric-decimal-schema.json")[0];
    let mut dec = Decoder::default();
    decode_with(&mut dec, rec).unwrap();
    assert_eq!(dec.schema_cache_len(), 1);
    assert_eq!(dec.schema_cache_stats(), (0, 1));
    let (_, again) = decode_with(&mut dec, rec).unwrap();
    assert_eq!(dec.schema_cache_len(), 1);
    assert_eq!(dec.schema_cache_stats(), (1, 1));
    assert_eq!(
        col(&again.after, "_fixed"),
        Some("123456789876543212345678987654321.110")
    );

    // More distinct schemas than the recently-used list: the hash path hits.
    let values: Vec<String> = (0..6)
        .map(|i| {
            envelope(
                &format!(r#"{{"type":"int32","optional":false,"field":"c{i}"}}"#),
                &format!(r#"{{"c{i}":{i}}}"#),
                "",
            )
        })
        .collect();
    let mut dec = Decoder::default();
    let mut out = DecodedRecord::default();
    for v in values.iter().chain(values.iter()) {
        dec.decode("t", None, Some(v.as_bytes()), &mut out).unwrap();
    }
    assert_eq!(dec.schema_cache_len(), 6);
    assert_eq!(dec.schema_cache_stats(), (6, 6));
    // Pretty-printed twice with the same bytes is one schema.
    let tpcc = corpus("pg-1.9.5-tpcc-customer-float32-snapshot-schema.jsonl");
    let mut dec = Decoder::default();
    for rec in &tpcc {
        decode_with(&mut dec, rec).unwrap();
    }
    assert_eq!(dec.schema_cache_len(), 1);
    assert_eq!(dec.schema_cache_stats(), (24, 1));
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn err(topic: &str, key: Option<&str>, value: &str) -> DecodeError {
    match decode_one(topic, key, Some(value)) {
        Ok(r) => panic!("expected an error for {value}, got {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn junk_is_an_error_naming_the_field() {
    let e = err("t", None, "hello");
    assert_eq!(
        e.to_string(),
        "value is not JSON: expected value at line 1 column 1"
    );
    assert_eq!(e.kind(), "not_json");

    let truncated = &corpus("pg-1.2.1-products-replica-full-schema.jsonl")[0]
        .value
        .clone()
        .unwrap()[..500];
    let e = err("t", None, truncated);
    assert_eq!(e.kind(), "not_json");
    assert!(e.to_string().starts_with("value is not JSON: "), "{e}");

    for non_object in ["[1,2]", "\"str\"", "42", "true"] {
        let e = err("t", None, non_object);
        assert_eq!(e.kind(), "not_debezium", "{non_object}");
    }
    let e = err("t", None, r#"{"a":1,"b":2}"#);
    assert_eq!(e.kind(), "not_debezium");
    assert!(e.to_string().contains("[a, b]"), "{e}");

    let e = err("t", Some("{nope"), r#"{"a":1}"#);
    assert_eq!(e.kind(), "not_json");
    assert!(e.to_string().starts_with("key is not JSON"), "{e}");

    let e = err(
        "t",
        None,
        &format!(r#"{{"op":"x","source":{PG_SOURCE},"after":{{"id":1}}}}"#),
    );
    assert_eq!(e.kind(), "unknown_op");
    assert_eq!(e.to_string(), r#"op: unknown operation "x""#);
    let e = err("t", None, r#"{"id":1,"__op":"z"}"#);
    assert_eq!(e.to_string(), r#"__op: unknown operation "z""#);

    let int_field = r#"{"type":"int32","optional":false,"field":"qty"}"#;
    let e = err("t", None, &envelope(int_field, r#"{"qty":"3"}"#, ""));
    assert_eq!(e.kind(), "schema_mismatch");
    assert_eq!(
        e.to_string(),
        r#"after.qty: expected an integer for int32, got string "3""#
    );
    let e = err("t", None, &envelope(int_field, r#"{"qty":3000000000}"#, ""));
    assert_eq!(
        e.to_string(),
        "after.qty: 3000000000 is out of range for int32"
    );
    let e = err("t", None, &envelope(int_field, r#"{"qty":null}"#, ""));
    assert_eq!(
        e.to_string(),
        "after.qty: null in a required (optional:false) field"
    );
    let e = err("t", None, &envelope(int_field, r#"{}"#, ""));
    assert_eq!(e.path(), Some("after.qty"));

    let dec_field = r#"{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"price"}"#;
    let e = err(
        "t",
        None,
        &envelope(dec_field, r#"{"price":"!!not base64!!"}"#, ""),
    );
    assert_eq!(
        e.to_string(),
        r#"after.price: expected base64 bytes for org.apache.kafka.connect.data.Decimal, got string "!!not base64!!""#
    );
    let e = err("t", None, &envelope(dec_field, r#"{"price":12.555}"#, ""));
    assert_eq!(e.path(), Some("after.price"));
    let e = err("t", None, &envelope(dec_field, r#"{"price":true}"#, ""));
    assert_eq!(
        e.to_string(),
        "after.price: expected base64 bytes for org.apache.kafka.connect.data.Decimal, got boolean true"
    );

    let geo = r#"{"type":"struct","optional":true,"name":"io.debezium.data.geometry.Geometry","fields":[{"type":"bytes","field":"wkb"},{"type":"int32","optional":true,"field":"srid"}],"field":"g"}"#;
    let e = err(
        "t",
        None,
        &envelope(geo, r#"{"g":{"wkb":"AQ==","srid":"x"}}"#, ""),
    );
    assert_eq!(e.path(), Some("after.g.srid"));
    let arr = r#"{"type":"array","optional":true,"items":{"type":"int32"},"field":"a"}"#;
    let e = err("t", None, &envelope(arr, r#"{"a":[1,"2"]}"#, ""));
    assert_eq!(e.path(), Some("after.a[1]"));

    let key_schema = r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}]},"payload":{"id":"x"}}"#;
    let e = err("t", Some(key_schema), r#"{"id":1,"__op":"c"}"#);
    assert_eq!(e.path(), Some("key.id"));

    let e = err(
        "t",
        None,
        r#"{"op":"c","source":{"lsn":"abc"},"after":{"id":1}}"#,
    );
    assert_eq!(
        e.to_string(),
        r#"source.lsn: expected int64, got string "abc""#
    );

    let e = err(
        "t",
        None,
        r#"{"schema":{"type":"wat"},"payload":{"op":"c"}}"#,
    );
    assert_eq!(e.kind(), "bad_schema");
    assert_eq!(e.path(), Some("value.schema"));

    let e = decode_one(
        "t",
        None,
        Some("{\"op\":\"c\",\"after\":{\"a\":\"\u{0}\"}}"),
    );
    assert_eq!(
        e.unwrap_err().kind(),
        "not_json",
        "raw control characters are invalid JSON"
    );
    let mut dec = Decoder::default();
    let mut out = DecodedRecord::default();
    let e = dec.decode(
        "t",
        None,
        Some(b"{\"op\":\"c\",\"after\":{\"a\":\"\xff\"}}"),
        &mut out,
    );
    assert_eq!(e.unwrap_err().kind(), "not_json");
    assert!(
        out.after.is_none() && out.op.is_none(),
        "out is cleared on error"
    );
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn fuzz_mutated_corpus_never_panics() {
    let mut recs: Vec<Rec> = CORPUS.iter().flat_map(|(p, t)| records(p, t)).collect();
    recs.retain(|r| r.value.is_some());
    let interesting: &[u8] = b"{}[]\",:0123456789-.eE\\ntfu\"AQ==";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut dec = Decoder::default();
    let mut out = DecodedRecord::default();
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..6000 {
        let rec = &recs[rng.below(recs.len())];
        let mut bytes = rec.value.clone().unwrap().into_bytes();
        for _ in 0..=rng.below(4) {
            let len = bytes.len();
            match rng.below(5) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    bytes[i] = interesting[rng.below(interesting.len())];
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    bytes[i] = rng.next() as u8;
                }
                2 if len > 0 => {
                    let i = rng.below(len);
                    let n = rng.below(16).min(len - i);
                    bytes.drain(i..i + n);
                }
                3 => {
                    let i = rng.below(len + 1);
                    bytes.insert(i, interesting[rng.below(interesting.len())]);
                }
                _ => bytes.truncate(rng.below(len + 1)),
            }
        }
        let key = rec.key.as_deref().map(str::as_bytes);
        match dec.decode(&rec.topic, key, Some(&bytes), &mut out) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                failed += 1;
            }
        }
    }
    assert!(ok > 100 && failed > 100, "ok {ok} failed {failed}");
    // Pure random bytes.
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        let _ = dec.decode("t", Some(&bytes), Some(&bytes), &mut out);
    }
}

/// The README's epoch → UTC conversions of the metadata timestamps decoded above.
#[test]
fn readme_metadata_times() {
    let ts = |v: i64, per_sec: i64, digits: usize| {
        let mut s = String::new();
        logical::write_timestamp(v, per_sec, digits, &mut s);
        s
    };
    let pg = &decode_file(
        "pg-1.2.1-products-replica-full-schema.jsonl",
        TypeHints::default(),
    )[0]
    .1;
    assert_eq!(
        ts(pg.source.ts_ms.unwrap(), 1_000, 3),
        "2020-07-29T05:38:19.434"
    );
    let lsn = pg.source.lsn.unwrap();
    assert_eq!(
        format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff),
        "0/2080000"
    );
    let movies = &decode_file(
        "pg-2.1.1-movies-variablescaledecimal-schema.json",
        TypeHints::default(),
    )[0]
    .1;
    assert_eq!(
        ts(movies.source.ts_ms.unwrap(), 1_000, 3),
        "2023-01-30T18:39:43.563"
    );
    let unwrap = &decode_file("pg-unwrap-orders-schema.json", TypeHints::default())[0].1;
    assert_eq!(
        ts(unwrap.source.ts_ms.unwrap(), 1_000, 3),
        "2020-08-01T19:24:36.678"
    );
    let orders = &decode_file(
        "mysql-2.7.0-orders-snapshot-schema-keyed.json",
        TypeHints::default(),
    )[0]
    .1;
    assert_eq!(
        ts(orders.source.ts_ms.unwrap(), 1_000, 3),
        "2024-06-15T14:24:41.000"
    );
    assert_eq!(
        ts(orders.source.ts_us.unwrap(), 1_000_000, 6),
        "2024-06-15T14:24:41.000000"
    );
    assert_eq!(
        ts(orders.source.ts_ns.unwrap(), 1_000_000_000, 9),
        "2024-06-15T14:24:41.000000000"
    );
    let wasm = decode_file("mysql-3.0.1-customers-noschema.jsonl", TypeHints::default());
    assert_eq!(
        ts(wasm[1].1.event_ts_ns.unwrap(), 1_000_000_000, 9),
        "2024-11-11T12:20:59.957757335"
    );
}
