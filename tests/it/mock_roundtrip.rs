//! The mock's Debezium output, decoded by our own `cdc` decoder, gives back
//! exactly the rows the mock applied (its typed ground truth).

use lakehouse::cdc::{DecodedRecord, Decoder, Op, RecordKind, Row};
use lakehouse_mock::{Change, DebeziumEncoder, KafkaRecord, SimConfig, Simulator, Value};

/// The canonical text our decoder gives each Postgres type.
fn canonical(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::Int(i) => i.to_string(),
        Value::Text(s) | Value::Json(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Decimal { unscaled, scale } => {
            let digits = unscaled.unsigned_abs().to_string();
            let scale = *scale as usize;
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (int, frac) = padded.split_at(padded.len() - scale);
            let sign = if *unscaled < 0 { "-" } else { "" };
            if scale == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac}")
            }
        }
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Timestamp(t) => t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        Value::TimestampTz(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Value::Uuid(u) => uuid::Uuid::from_u128(*u).hyphenated().to_string(),
    })
}

fn assert_row(
    table: &str,
    what: &str,
    expected: Option<&Vec<(&'static str, Value)>>,
    decoded: Option<&Row>,
) {
    match (expected, decoded) {
        (None, None) => {}
        (Some(expected), Some(row)) => {
            let want: Vec<(String, Option<String>)> = expected
                .iter()
                .map(|(c, v)| (c.to_string(), canonical(v)))
                .collect();
            let got: Vec<(String, Option<String>)> = row
                .iter()
                .map(|(c, v)| (c.to_string(), v.map(str::to_string)))
                .collect();
            assert_eq!(got, want, "{table}.{what}");
        }
        (e, d) => panic!("{table}.{what}: expected {e:?}, decoded {d:?}"),
    }
}

fn check(
    decoder: &mut Decoder,
    records: &[KafkaRecord],
    changes: &[Change],
    tx_topic: &str,
) -> usize {
    let mut decoded = DecodedRecord::default();
    let mut changes = changes.iter();
    let mut last_delete = false;
    let mut checked = 0;
    for record in records {
        let kind = decoder
            .decode(
                &record.topic,
                record.key.as_deref(),
                record.value.as_deref(),
                &mut decoded,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", record.topic));
        if record.topic == tx_topic {
            assert_eq!(kind, RecordKind::TransactionMarker);
            continue;
        }
        if kind == RecordKind::Tombstone {
            assert!(last_delete, "a tombstone follows a delete");
            last_delete = false;
            continue;
        }
        assert_eq!(kind, RecordKind::Change);
        let change = changes.next().expect("a change for every data event");
        let table = change.table.name();
        assert_eq!(record.topic, format!("shop.public.{table}"));
        let op = match change.op {
            lakehouse_mock::Op::Create => Op::Create,
            lakehouse_mock::Op::Update => Op::Update,
            lakehouse_mock::Op::Delete => Op::Delete,
            lakehouse_mock::Op::Read => Op::Read,
        };
        assert_eq!(decoded.op, Some(op), "{table} op");
        assert_eq!(decoded.source.lsn, Some(change.lsn), "{table} lsn");
        assert_eq!(decoded.source.table.as_deref(), Some(table));
        assert_row(
            table,
            "before",
            change.before.as_ref(),
            decoded.before.as_ref(),
        );
        assert_row(
            table,
            "after",
            change.after.as_ref(),
            decoded.after.as_ref(),
        );
        last_delete = op == Op::Delete;
        checked += 1;
    }
    assert!(changes.next().is_none(), "every change was emitted");
    checked
}

#[test]
fn mock_output_decodes_to_the_applied_rows() {
    let config = SimConfig {
        seed: 11,
        ..SimConfig::default()
    };
    let encoder = DebeziumEncoder::new(&config.topic_prefix);
    let tx_topic = encoder.transaction_topic().to_string();
    let mut sim = Simulator::new(config);
    let mut decoder = Decoder::default();
    let mut records = Vec::new();

    let snapshot = sim.snapshot();
    encoder.encode_snapshot(&snapshot, &mut records);
    let mut checked = check(&mut decoder, &records, &snapshot.changes, &tx_topic);
    for _ in 0..1_500 {
        records.clear();
        let tx = sim.next_transaction();
        encoder.encode_transaction(&tx, &mut records);
        checked += check(&mut decoder, &records, &tx.changes, &tx_topic);
    }
    assert!(checked > 5_000, "{checked} changes checked");
}
