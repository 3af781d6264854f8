//! `lakehouse run bronze --from-file`: the conformance corpus, bad lines, and reruns.

use std::io::Write;

use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::config::Config;

use crate::support::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/debezium");

fn corpus_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["postgres", "mysql", "unwrap"] {
        for entry in std::fs::read_dir(format!("{FIXTURES}/{dir}")).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    files
}

/// A `.json` fixture is one pretty-printed record: make it one line.
fn as_jsonl(path: &std::path::Path, out: &mut Vec<u8>) {
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "jsonl") {
        out.extend_from_slice(text.as_bytes());
        if !text.ends_with('\n') {
            out.push(b'\n');
        }
    } else {
        // Keep the value's bytes: only the newlines between tokens go.
        let one_line: String = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        out.extend_from_slice(one_line.as_bytes());
        out.push(b'\n');
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_corpus_lands_once_with_bad_lines_in_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.jsonl");
    let mut lines = Vec::new();
    for file in corpus_files() {
        as_jsonl(&file, &mut lines);
    }
    let corpus_lines = lines.iter().filter(|b| **b == b'\n').count();
    lines.extend_from_slice(b"this is not json\n");
    lines.extend_from_slice(b"{\"partition\":1,\"value\":null}\n");
    lines.extend_from_slice(
        b"{\"topic\":\"x.public.t\",\"value\":\"{\\\"op\\\":\\\"z\\\",\\\"after\\\":{}}\"}\n",
    );
    std::fs::File::create(&input)
        .unwrap()
        .write_all(&lines)
        .unwrap();

    let mut config = Config::default();
    config.storage.root = dir.path().join("lake").display().to_string();
    config.bronze.flush_rows = 13;
    let once = StopCondition::default();
    let summary = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Files(vec![input.clone()]),
        once,
        no_shutdown(),
    )
    .await
    .unwrap();
    assert_eq!(summary.counts.records as usize, corpus_lines + 3);
    // 114 corpus records: 1 schema change is not a row; the 3 junk lines are dead letters.
    assert_eq!(
        summary.counts.skipped, 1,
        "the MySQL schema change is recognised and not written"
    );
    assert_eq!(summary.counts.dead_letters, 3);
    assert_eq!(summary.counts.rows as usize, corpus_lines - 1);
    let errors = query(
        &config,
        "SELECT error FROM bronze_dead_letters ORDER BY kafka_offset",
    )
    .await;
    let text = format!("{errors:?}");
    assert!(text.contains("corpus.jsonl:115"), "{text}");
    assert!(text.contains("missing \\\"topic\\\""), "{text}");
    assert!(text.contains("op"), "{text}");

    // Exact values survive into the table.
    let exact = scalar_i64(&config, "SELECT count(*) FROM bronze_events WHERE after['_fixed'] = '123456789876543212345678987654321.110'").await;
    assert_eq!(exact, 1);

    // Rerun: every line was committed once, nothing is added.
    let again = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Files(vec![input.clone()]),
        once,
        no_shutdown(),
    )
    .await
    .unwrap();
    assert_eq!(again.counts.records, 0);
    assert_eq!(again.events_version, None);
    let rows = bronze_positions(&config, "bronze_events").await;
    assert_eq!(rows.values().sum::<usize>(), corpus_lines - 1);

    // Appended lines are picked up on the next run, once.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap()
        .write_all(&lines[..lines.iter().position(|b| *b == b'\n').unwrap() + 1])
        .unwrap();
    let third = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Files(vec![input]),
        once,
        no_shutdown(),
    )
    .await
    .unwrap();
    assert_eq!(third.counts.records, 1);
    assert_eq!(third.counts.rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_records_stops_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pg.jsonl");
    std::fs::copy(
        format!("{FIXTURES}/postgres/pg-1.2.1-products-replica-full-schema.jsonl"),
        &input,
    )
    .unwrap();
    let mut config = Config::default();
    config.storage.root = dir.path().join("lake").display().to_string();
    let first = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Files(vec![input.clone()]),
        StopCondition {
            until_idle: false,
            max_records: Some(5),
        },
        no_shutdown(),
    )
    .await
    .unwrap();
    assert_eq!(first.counts.rows, 5);
    let rest = lakehouse::pipeline::jobs::bronze(
        &config,
        BronzeSource::Files(vec![input]),
        StopCondition::default(),
        no_shutdown(),
    )
    .await
    .unwrap();
    assert_eq!(rest.counts.rows, 11);
    let rows = bronze_positions(&config, "bronze_events").await;
    assert_eq!(rows.len(), 16);
    assert!(rows.values().all(|n| *n == 1));
}
