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

/// A session with `bronze_events` registered.
async fn events_session(root: &StorageRoot) -> datafusion::prelude::SessionContext {
    let ctx = new_session(&SessionLimits {
        memory_limit: 64 << 20,
        spill_dir: None,
    })
    .expect("session");
    root.register_object_store(&ctx).expect("store");
    register_table(&ctx, root, LAYER, EVENTS_TABLE)
        .await
        .expect("register");
    ctx
}

/// Offsets in `bronze_events`, sorted.
async fn offsets(root: &StorageRoot) -> Vec<i64> {
    let ctx = events_session(root).await;
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

/// The file path decodes chunks of lines on several threads into parts that
/// join batches in file order: with chunks of a few lines and batches of 30
/// records, every line lands once, in order, each batch's rows carry that
/// batch's id, a bad line is a dead letter naming `file:line`, and a rerun
/// adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_chunks_decoded_in_parallel_land_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = StorageRoot::local(&dir.path().join("lake")).expect("root");
    let path = dir.path().join("events.jsonl");
    let mut text = String::new();
    let mut expected = Vec::new();
    for line in 1..=240_i64 {
        match line {
            57 => text.push_str("{not json\n"),
            90 | 91 => text.push('\n'),
            // The value after the offset, then before it: both framed right.
            _ if line % 3 == 0 => {
                let value = String::from_utf8(value(line)).expect("utf-8");
                text.push_str(&format!(
                    "{{\"topic\":\"shop.public.t\",\"value\":{value} ,\"offset\":{}}}\n",
                    1000 + line
                ));
                expected.push(1000 + line);
            }
            _ => {
                let value = String::from_utf8(value(line)).expect("utf-8");
                text.push_str(&format!(
                    "{{\"topic\":\"shop.public.t\",\"value\":{value} }}\n"
                ));
                expected.push(line);
            }
        }
    }
    std::fs::write(&path, text).expect("write");
    let policy = FlushPolicy {
        max_records: 30,
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(3600),
    };
    let mut batches = 0;
    for run in 0..2 {
        let mut ingestor = Ingestor::open(
            &root,
            &BronzeConfig::default(),
            TypeHints::default(),
            Progress::new(false),
        )
        .await
        .expect("open")
        .with_policy(policy);
        file::run_in_chunks(&mut ingestor, &path, StopCondition::default(), 700)
            .await
            .expect("run");
        let summary = ingestor.finish().await.expect("finish");
        let landed = if run == 0 { expected.len() as u64 } else { 0 };
        assert_eq!(summary.counts.rows, landed, "run {run}");
        assert_eq!(
            summary.counts.dead_letters,
            u64::from(run == 0),
            "run {run}"
        );
        batches += summary.batches;
    }
    expected.sort_unstable();
    assert_eq!(offsets(&root).await, expected);

    let ctx = events_session(&root).await;
    register_table(
        &ctx,
        &root,
        LAYER,
        crate::tables::bronze::DEAD_LETTERS_TABLE,
    )
    .await
    .expect("register");
    // Every raw value is exactly the embedded object, wherever it was.
    let raw = collect(
        &ctx,
        "SELECT count(*) FROM bronze_events \
         WHERE NOT starts_with(CAST(raw_value AS VARCHAR), '{\"before\"') \
            OR NOT ends_with(CAST(raw_value AS VARCHAR), '\"ts_ms\":0}')",
    )
    .await
    .expect("query");
    assert_eq!(raw[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    // Batches hold consecutive lines: their line ranges do not interleave.
    let ranges = collect(
        &ctx,
        "SELECT min(kafka_offset % 1000), max(kafka_offset % 1000) FROM bronze_events \
         GROUP BY batch_id ORDER BY 1",
    )
    .await
    .expect("query");
    let ranges: Vec<(i64, i64)> = ranges
        .iter()
        .flat_map(|b| {
            let lows = b.column(0).as_primitive::<Int64Type>().values().to_vec();
            let highs = b.column(1).as_primitive::<Int64Type>().values().to_vec();
            lows.into_iter().zip(highs)
        })
        .collect();
    // One batch id per commit, though each batch joined many parts.
    assert!(batches >= 7, "{batches} batches");
    assert_eq!(ranges.len() as u64, batches, "{ranges:?}");
    assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "{ranges:?}");
    let dead = collect(&ctx, "SELECT kafka_offset, error FROM bronze_dead_letters")
        .await
        .expect("query");
    assert_eq!(dead.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(dead[0].column(0).as_primitive::<Int64Type>().value(0), 57);
    let error = dead[0].column(1);
    let error = arrow::compute::cast(error, &arrow::datatypes::DataType::Utf8).expect("cast");
    let error = error.as_string::<i32>().value(0).to_string();
    assert!(
        error.contains("events.jsonl:57: not a JSON object"),
        "{error}"
    );
}

/// Queues one record of `shop.public.t` (the Kafka path's way in).
async fn queue(
    ingestor: &mut Ingestor,
    stream: usize,
    partition: i32,
    position: i64,
    offset: i64,
) -> Ingested {
    let value = value(offset);
    let meta = RecordMeta {
        stream,
        position,
        topic: "shop.public.t",
        partition,
        offset,
        timestamp_ms: None,
        key: None,
        value: Some(&value),
    };
    ingestor.queue(&meta).await.expect("queue")
}

fn small_batches(records: u64) -> FlushPolicy {
    FlushPolicy {
        max_records: records,
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(3600),
    }
}

/// The Kafka path copies records into chunks decoded on other threads: with
/// chunks and batches of 25 records, replays of queued positions skipped and
/// a stream registered while chunks are being decoded, every record lands
/// once, each batch holds consecutive records of each stream, and a restart
/// takes nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_decoded_in_parallel_land_once_in_order() {
    const SECOND: &str = "lakehouse-bronze:shop.public.t:1";
    let dir = tempfile::tempdir().expect("tempdir");
    let root = StorageRoot::local(dir.path()).expect("root");
    let (ingestor, first) = open(&root).await;
    let mut ingestor = ingestor.with_policy(small_batches(25));
    let mut second = None;
    let mut expected = Vec::new();
    for position in 0..200 {
        assert_eq!(
            queue(&mut ingestor, first, 0, position, position).await,
            Ingested::Buffered
        );
        expected.push(position);
        if position == 50 {
            second = Some(ingestor.set_position(SECOND, None));
        }
        if let Some(second) = second {
            let theirs = position - 50;
            queue(&mut ingestor, second, 1, theirs, 1000 + theirs).await;
            expected.push(1000 + theirs);
        }
        if position % 10 == 9 {
            // A replay of a record still queued or being decoded.
            let replayed = queue(&mut ingestor, first, 0, position - 3, position - 3).await;
            assert_eq!(replayed, Ingested::AlreadyCommitted);
        }
        ingestor.absorb_decoded().await.expect("absorb");
        if ingestor.should_flush() {
            assert!(!ingestor.flush().await.expect("flush").rewind);
        }
    }
    let summary = ingestor.finish().await.expect("finish");
    assert_eq!(summary.already_committed, 20);
    assert_eq!(summary.counts.rows, expected.len() as u64);
    assert!(summary.batches >= 4, "{} batches", summary.batches);
    expected.sort_unstable();
    assert_eq!(offsets(&root).await, expected);

    let ctx = events_session(&root).await;
    let ranges = collect(
        &ctx,
        "SELECT kafka_partition, min(kafka_offset), max(kafka_offset), count(*) \
         FROM bronze_events GROUP BY batch_id, kafka_partition ORDER BY 1, 2",
    )
    .await
    .expect("query");
    let mut ends: std::collections::HashMap<i32, i64> = Default::default();
    for batch in &ranges {
        let partitions = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let lows = batch.column(1).as_primitive::<Int64Type>();
        let highs = batch.column(2).as_primitive::<Int64Type>();
        let counts = batch.column(3).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let (low, high) = (lows.value(row), highs.value(row));
            assert_eq!(high - low + 1, counts.value(row), "a gap in a batch");
            let end = ends.entry(partitions.value(row)).or_insert(low - 1);
            assert_eq!(*end + 1, low, "batches of a partition interleave");
            *end = high;
        }
    }

    let (mut restarted, _) = open(&root).await;
    let streams = restarted
        .open_streams(&[APP_ID.to_string(), SECOND.to_string()])
        .await
        .expect("streams");
    assert_eq!(streams[1].1, Some(149), "the late stream's position");
    for position in 0..200 {
        let taken = queue(&mut restarted, streams[0].0, 0, position, position).await;
        assert_eq!(taken, Ingested::AlreadyCommitted);
    }
    let summary = restarted.finish().await.expect("finish");
    assert_eq!(
        (summary.already_committed, summary.counts.records),
        (200, 0)
    );
}

/// A commit that finds a stream taken by another writer drops the records
/// being decoded and queued too, not only the batches: the stream restarts
/// after the other writer's position and every position lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_taken_by_another_writer_drops_the_queued_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = StorageRoot::local(dir.path()).expect("root");
    let (ours, stream) = open(&root).await;
    let mut ours = ours.with_policy(small_batches(10));
    let (mut theirs, their_stream) = open(&root).await;

    // Ours: 0..10 in flight, 10..20 being decoded, 20..25 queued.
    for position in 0..10 {
        queue(&mut ours, stream, 0, position, position).await;
    }
    assert!(ours.absorb_next().await.expect("absorb"));
    assert!(ours.flush().await.expect("flush").outcome.is_none());
    for position in 10..25 {
        queue(&mut ours, stream, 0, position, position).await;
    }
    assert_eq!(ours.next_position(stream), Some(25));

    ingest(&mut theirs, their_stream, 0..5);
    assert!(!theirs.drain().await.expect("drain").rewind);

    let flushed = ours.flush().await.expect("flush");
    assert!(flushed.rewind);
    assert_eq!(ours.next_position(stream), Some(5));
    assert_eq!(ours.buffered().records, 0);

    for position in 0..25 {
        let taken = queue(&mut ours, stream, 0, position, position).await;
        let expected = if position < 5 {
            Ingested::AlreadyCommitted
        } else {
            Ingested::Buffered
        };
        assert_eq!(taken, expected, "position {position}");
    }
    assert!(!ours.drain().await.expect("drain").rewind);
    assert_eq!(ours.committed(stream), Some(24));
    assert_eq!(offsets(&root).await, (0..25).collect::<Vec<_>>());
}

/// A trickle of records is flushed by age though its records are still
/// queued or being decoded: the age counts from when the oldest was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_records_are_flushed_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = StorageRoot::local(dir.path()).expect("root");
    let (ingestor, stream) = open(&root).await;
    let max_age = Duration::from_millis(200);
    let mut ingestor = ingestor.with_policy(FlushPolicy {
        max_records: 1000,
        max_bytes: u64::MAX,
        max_age,
    });
    for position in 0..3 {
        queue(&mut ingestor, stream, 0, position, position).await;
    }
    assert!(!ingestor.should_flush());
    assert!(ingestor.time_to_flush() <= max_age);
    tokio::time::sleep(max_age).await;
    assert!(ingestor.should_flush());
    assert!(ingestor.flush().await.expect("flush").outcome.is_none());
    assert!(!ingestor.should_flush(), "nothing is left to flush");
    let flushed = ingestor.flush().await.expect("flush");
    let committed = flushed.outcome.map(|o| o.committed);
    assert_eq!(committed, Some(vec![(stream, 2)]));
}
