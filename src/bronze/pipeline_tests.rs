//! The pipelined flush against another writer of the same stream: the batch
//! in flight and the one being decoded are both dropped, the stream restarts
//! after what the other writer committed, and every position lands once.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use super::*;
use crate::delta::session::{SessionLimits, collect, new_session, register_table};
use crate::tables::bronze::{EVENTS_TABLE, LAYER};

const APP_ID: &str = "lakehouse-bronze:shop.public.t:0";

fn value(id: i64) -> Vec<u8> {
    format!(
        r#"{{"before":null,"after":{{"id":{id}}},"source":{{"connector":"postgresql","db":"shop","schema":"public","table":"t","lsn":{id},"ts_ms":0}},"op":"c","ts_ms":0}}"#
    )
    .into_bytes()
}

fn ingest(ingestor: &mut Ingestor, stream: usize, positions: std::ops::Range<i64>) {
    for position in positions {
        let value = value(position);
        let meta = RecordMeta {
            stream,
            position,
            topic: "shop.public.t",
            partition: 0,
            offset: position,
            timestamp_ms: None,
            key: None,
            value: Some(&value),
        };
        ingestor.ingest(&meta).expect("ingest");
    }
}

async fn open(root: &StorageRoot) -> (Ingestor, usize) {
    let mut ingestor = Ingestor::open(
        root,
        &BronzeConfig::default(),
        TypeHints::default(),
        Progress::new(false),
    )
    .await
    .expect("open");
    let stream = ingestor
        .open_streams(&[APP_ID.to_string()])
        .await
        .expect("streams")[0]
        .0;
    (ingestor, stream)
}

/// Offsets in `bronze_events`, sorted.
async fn offsets(root: &StorageRoot) -> Vec<i64> {
    let ctx = new_session(&SessionLimits {
        memory_limit: 64 << 20,
        spill_dir: None,
    })
    .expect("session");
    root.register_object_store(&ctx).expect("store");
    register_table(&ctx, root, LAYER, EVENTS_TABLE)
        .await
        .expect("register");
    let batches = collect(
        &ctx,
        "SELECT kafka_offset FROM bronze_events ORDER BY kafka_offset",
    )
    .await
    .expect("query");
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_taken_by_another_writer_rewinds_the_pipelined_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = StorageRoot::local(dir.path()).expect("root");
    let (mut ours, stream) = open(&root).await;
    let (mut theirs, their_stream) = open(&root).await;

    // Ours: 0..10 in flight, 10..20 being decoded.
    ingest(&mut ours, stream, 0..10);
    let flushed = ours.flush().await.expect("flush");
    assert!(flushed.outcome.is_none(), "a flush only stages its batch");
    assert_eq!(ours.next_position(stream), Some(10));
    ingest(&mut ours, stream, 10..20);

    // Theirs commits 0..5 of the same stream first.
    ingest(&mut theirs, their_stream, 0..5);
    let flushed = theirs.drain().await.expect("drain");
    assert!(!flushed.rewind);
    assert_eq!(theirs.committed(their_stream), Some(4));

    // Our commit finds the stream taken: nothing of ours lands, both batches
    // are dropped, and the stream restarts after their position.
    let flushed = ours.flush().await.expect("flush");
    assert!(flushed.rewind);
    let outcome = flushed.outcome.expect("a commit was attempted");
    assert_eq!(outcome.lost, vec![(stream, Some(4))]);
    assert_eq!(outcome.rows_written, 0);
    assert_eq!(ours.committed(stream), Some(4));
    assert_eq!(ours.next_position(stream), Some(5));
    assert_eq!(ours.buffered().records, 0);

    ingest(&mut ours, stream, 5..20);
    let flushed = ours.drain().await.expect("drain");
    assert!(!flushed.rewind);
    assert_eq!(ours.committed(stream), Some(19));
    assert_eq!(offsets(&root).await, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_commit_in_order_and_resume_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = StorageRoot::local(dir.path()).expect("root");
    let (mut ingestor, stream) = open(&root).await;
    for chunk in 0..5 {
        ingest(&mut ingestor, stream, chunk * 7..(chunk + 1) * 7);
        let flushed = ingestor.flush().await.expect("flush");
        // Each flush commits the batch staged by the one before.
        let committed = flushed.outcome.map(|o| o.committed);
        if chunk == 0 {
            assert_eq!(committed, None);
        } else {
            assert_eq!(committed, Some(vec![(stream, chunk * 7 - 1)]));
        }
    }
    // A crash now loses only the batch in flight: it was never committed.
    drop(ingestor);
    assert_eq!(offsets(&root).await, (0..28).collect::<Vec<_>>());
    let (mut restarted, stream) = open(&root).await;
    assert_eq!(restarted.next_position(stream), Some(28));
    ingest(&mut restarted, stream, 0..35);
    let summary = restarted.finish().await.expect("finish");
    assert_eq!(summary.already_committed, 28);
    assert_eq!(offsets(&root).await, (0..35).collect::<Vec<_>>());
}
