//! `lakehouse run bronze --from-file F.jsonl`: Debezium records exported as JSON lines.
//!
//! Each line is `{"topic": ..., "partition"?: N, "offset"?: N, "key": K, "value": V}`
//! where K and V are a JSON string holding the record's bytes, embedded JSON
//! (taken byte for byte from the line), or null. Other fields are ignored, so the
//! conformance corpus format (`topic_source`, `key_captured`) is accepted too.
//! The file is one stream whose position is the line number: a rerun skips the
//! lines already committed, so each line lands once. A line that cannot be framed
//! goes to the dead letters with `file:line` in its error.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiter::Jiter;

use super::parts::SpareBuffers;
use super::{Ingestor, RecordMeta, RunSummary, StopCondition};
use crate::error::{Error, Result};

/// The Delta application id of a file: its canonical path.
pub fn app_id(path: &Path) -> Result<String> {
    let canonical = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("lakehouse-file:{}", canonical.display()))
}

/// One framed line. Borrowed payloads point into the line (embedded JSON);
/// owned ones hold unescaped JSON strings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FramedLine<'a> {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition (0 when absent).
    pub partition: i32,
    /// Kafka offset (the line number when absent).
    pub offset: Option<i64>,
    /// Record key bytes.
    pub key: Option<Cow<'a, [u8]>>,
    /// Record value bytes.
    pub value: Option<Cow<'a, [u8]>>,
    /// The value was taken as the rest of the line without being delimited
    /// (see [`frame_line_fast`]): only a successful decode confirms it.
    pub value_unchecked: bool,
}

/// Frames one line. Errors say what is wrong with it.
///
/// The line's own fields are read with jiter; an embedded key or value
/// (a JSON object or array) is only delimited, by matching brackets outside
/// strings: the decoder parses and validates it, so it is never parsed twice
/// (an invalid one becomes a decode dead letter naming its topic and offset).
pub fn frame_line(line: &[u8]) -> std::result::Result<FramedLine<'_>, String> {
    frame(line, false)
}

/// Frames one line like [`frame_line`], except that an embedded value that
/// is the line's last field is not delimited: it is taken as everything up
/// to the line's closing brace, and marked [`FramedLine::value_unchecked`].
/// The value is most of a line's bytes, and the decoder parses it anyway:
/// if it decodes, with nothing after it (the decoder checks), it was the
/// last field and the slice is exact; otherwise the caller frames the line
/// again with [`frame_line`]. Any other line is framed exactly.
pub fn frame_line_fast(line: &[u8]) -> std::result::Result<FramedLine<'_>, String> {
    frame(line, true)
}

fn frame(line: &[u8], fast: bool) -> std::result::Result<FramedLine<'_>, String> {
    let mut at = skip_ws(line, 0);
    if line.get(at) != Some(&b'{') {
        return Err("not a JSON object: expected `{` at column 1".into());
    }
    at = skip_ws(line, at + 1);
    let mut framed = FramedLine::default();
    let mut topic = None;
    if line.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            let (name, next) = scalar(line, at, |j| j.next_str().map(str::to_owned))
                .map_err(|e| format!("not a JSON object: {e}"))?;
            at = skip_ws(line, next);
            if line.get(at) != Some(&b':') {
                return Err(format!(
                    "not a JSON object: expected `:` at column {}",
                    at + 1
                ));
            }
            at = skip_ws(line, at + 1);
            at = match name.as_str() {
                "topic" => {
                    let (value, next) = scalar(line, at, |j| j.next_str().map(str::to_owned))
                        .map_err(|e| format!("topic: {e}"))?;
                    topic = Some(value);
                    next
                }
                "partition" => {
                    let (n, next) = int(line, at).map_err(|e| format!("partition: {e}"))?;
                    framed.partition =
                        i32::try_from(n).map_err(|_| format!("partition {n} out of range"))?;
                    next
                }
                "offset" => {
                    let (n, next) = int(line, at).map_err(|e| format!("offset: {e}"))?;
                    framed.offset = Some(n);
                    next
                }
                "key" => {
                    let (payload, next) = payload(line, at).map_err(|e| format!("key: {e}"))?;
                    framed.key = payload;
                    next
                }
                "value" => {
                    if fast
                        && matches!(line.get(at), Some(b'{' | b'['))
                        && let Some(close) = line.trim_ascii_end().len().checked_sub(1)
                        && line.get(close) == Some(&b'}')
                        && close > at
                    {
                        framed.value = Some(Cow::Borrowed(line[at..close].trim_ascii_end()));
                        framed.value_unchecked = true;
                        set_topic(&mut framed, topic)?;
                        return Ok(framed);
                    }
                    let (payload, next) = payload(line, at).map_err(|e| format!("value: {e}"))?;
                    framed.value = payload;
                    next
                }
                _ => {
                    payload(line, at)
                        .map_err(|e| format!("not a JSON object: {name}: {e}"))?
                        .1
                }
            };
            at = skip_ws(line, at);
            match line.get(at) {
                Some(b',') => at = skip_ws(line, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => {
                    return Err(format!(
                        "not a JSON object: expected `,` or `}}` at column {}",
                        at + 1
                    ));
                }
            }
        }
    }
    if skip_ws(line, at) != line.len() {
        return Err(format!("trailing characters at column {}", at + 1));
    }
    set_topic(&mut framed, topic)?;
    Ok(framed)
}

/// Sets the framed line's topic, which must have been given and not be empty.
fn set_topic(
    framed: &mut FramedLine<'_>,
    topic: Option<String>,
) -> std::result::Result<(), String> {
    framed.topic = topic.ok_or("missing \"topic\"")?;
    if framed.topic.is_empty() {
        return Err("empty \"topic\"".into());
    }
    Ok(())
}

fn skip_ws(line: &[u8], mut at: usize) -> usize {
    while line.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// Reads one scalar at `at` with jiter; returns it and the index after it.
fn scalar<T>(
    line: &[u8],
    at: usize,
    read: impl FnOnce(&mut Jiter<'_>) -> std::result::Result<T, jiter::JiterError>,
) -> std::result::Result<(T, usize), String> {
    let rest = line.get(at..).ok_or("unexpected end of line")?;
    let mut jiter = Jiter::new(rest);
    let value = read(&mut jiter).map_err(|e| e.to_string())?;
    Ok((value, at + jiter.current_index()))
}

fn int(line: &[u8], at: usize) -> std::result::Result<(i64, usize), String> {
    let (n, next) = scalar(line, at, |j| j.next_int())?;
    match n {
        jiter::NumberInt::Int(n) => Ok((n, next)),
        jiter::NumberInt::BigInt(_) => Err("integer out of range".into()),
    }
}

/// A record key or value: its bytes, or none (JSON null).
type Payload<'a> = Option<Cow<'a, [u8]>>;

/// A key or value at `at`: a string holds the bytes, null is none, an
/// object or array is embedded JSON taken verbatim from the line (delimited,
/// not parsed), any other scalar is taken verbatim too.
fn payload(line: &[u8], at: usize) -> std::result::Result<(Payload<'_>, usize), String> {
    match line.get(at) {
        Some(b'{' | b'[') => {
            let end = container_end(line, at)?;
            Ok((Some(Cow::Borrowed(&line[at..end])), end))
        }
        Some(b'"') => {
            let (text, next) = scalar(line, at, |j| j.next_str().map(|s| s.as_bytes().to_vec()))?;
            Ok((Some(Cow::Owned(text)), next))
        }
        Some(b'n') => {
            let ((), next) = scalar(line, at, |j| j.next_null())?;
            Ok((None, next))
        }
        Some(_) => {
            let ((), next) = scalar(line, at, |j| j.next_skip())?;
            Ok((Some(Cow::Borrowed(&line[at..next])), next))
        }
        None => Err("unexpected end of line".into()),
    }
}

/// The index after the object or array starting at `line[start]`. Only its
/// own kind of bracket is counted, outside strings (whose escapes are
/// skipped): in valid JSON the other kind is balanced within it, and
/// invalid JSON is the decoder's to report.
fn container_end(line: &[u8], start: usize) -> std::result::Result<usize, String> {
    let (open, close) = match line.get(start) {
        Some(b'[') => (b'[', b']'),
        _ => (b'{', b'}'),
    };
    let mut depth = 0usize;
    let mut at = start;
    while let Some(found) = find_any(line, at, [b'"', open, close]) {
        at = found;
        match line[at] {
            b'"' => {
                at = string_end(line, at + 1)?;
                continue;
            }
            byte if byte == open => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Ok(at + 1);
                }
            }
        }
        at += 1;
    }
    Err(format!(
        "unterminated object or array starting at column {}",
        start + 1
    ))
}

/// The index after the closing quote of the string whose content starts at
/// `line[at]`.
fn string_end(line: &[u8], mut at: usize) -> std::result::Result<usize, String> {
    let opened = at;
    loop {
        at = find_any(line, at, [b'"', b'\\', b'\\'])
            .ok_or_else(|| format!("unterminated string at column {opened}"))?;
        if line[at] == b'"' {
            return Ok(at + 1);
        }
        at += 2;
    }
}

/// The index of the first of `bytes` in `line` from `at`. JSON's strings
/// and the gaps between them are a few bytes long, so this looks at eight
/// bytes per step in a register (no call, unlike `memchr` whose set-up
/// dominated for such short runs): a byte equal to a wanted one is a zero
/// byte of `word ^ wanted`, found with the usual borrow trick, whose lowest
/// flagged byte is exact.
fn find_any(line: &[u8], mut at: usize, bytes: [u8; 3]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let [a, b, c] = bytes.map(|byte| ONES * u64::from(byte));
    while let Some(word) = line.get(at..at + 8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let word = u64::from_le_bytes(eight);
        let flagged = zero_bytes(word ^ a) | zero_bytes(word ^ b) | zero_bytes(word ^ c);
        if flagged != 0 {
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    line.get(at..)?
        .iter()
        .position(|byte| bytes.contains(byte))
        .map(|found| at + found)
}

/// Ingests a JSON-lines file into bronze.
pub async fn run(ingestor: &mut Ingestor, path: &Path, stop: StopCondition) -> Result<()> {
    run_in_chunks(ingestor, path, stop, CHUNK_BYTES).await
}

/// [`run`], reading chunks of `chunk_bytes` (tests use tiny ones).
pub(super) async fn run_in_chunks(
    ingestor: &mut Ingestor,
    path: &Path,
    stop: StopCondition,
    chunk_bytes: usize,
) -> Result<()> {
    let app_id = app_id(path)?;
    let streams = ingestor.open_streams(std::slice::from_ref(&app_id)).await?;
    let (stream, mut committed) = streams[0];
    let mut taken: u64 = 0;
    loop {
        if let Some(line) = committed {
            tracing::info!(file = %path.display(), line, "resuming after the last committed line");
        }
        let pass = Pass {
            stream,
            committed,
            stop,
            chunk_bytes,
        };
        if read_pass(ingestor, path, pass, &mut taken).await? {
            return Ok(());
        }
        // Another process committed lines of this file while this run held
        // some in flight: those were dropped; read on after its position.
        committed = ingestor.committed(stream);
        tracing::warn!(
            file = %path.display(),
            line = ?committed,
            "another process is ingesting this file; reading on after the line it committed"
        );
    }
}

/// Bytes of the file read into one chunk of lines (the chunk ends at the
/// last line break within it). Small enough that the decoding threads'
/// builders are reused from the allocator's warm memory, large enough that
/// a chunk's record batches are worth encoding.
const CHUNK_BYTES: usize = 8 << 20;

/// Reads `path` once from the line after `committed`. Returns `false` when a
/// commit found the file's stream advanced by another process (the lines
/// not committed were dropped: read again), `true` when the file is done.
///
/// The file is cut into chunks of whole lines; the chunks are framed and
/// decoded on the ingestor's decoding threads ([`super::parts`]), each into a
/// part of its own, and the parts join the batch in file order. This thread
/// only reads, splits lines and commits.
async fn read_pass(
    ingestor: &mut Ingestor,
    path: &Path,
    pass: Pass,
    taken: &mut u64,
) -> Result<bool> {
    let Pass {
        stream,
        committed,
        stop,
        chunk_bytes,
    } = pass;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    ingestor.progress().set_total(total_bytes / 1024);
    let mut chunks = LineChunks {
        file,
        path,
        chunk_bytes,
        carry: Vec::new(),
        spares: ingestor.spare_buffers().clone(),
        line_number: 0,
        committed,
        max_records: stop.max_records,
        taken,
        done: false,
    };
    let context = Arc::new(ChunkContext {
        stream,
        path: path.to_path_buf(),
        fallback_topic: format!("file:{}", path.display()),
    });
    loop {
        while ingestor.can_submit() {
            let Some(chunk) = chunks.next_chunk()? else {
                break;
            };
            let context = Arc::clone(&context);
            let spares = chunks.spares.clone();
            ingestor
                .submit(Box::new(move |decoder| {
                    let part = context.decode(decoder, &chunk);
                    spares.give(chunk.data);
                    part
                }))
                .await?;
        }
        if !ingestor.absorb_next().await? {
            break;
        }
        if ingestor.should_flush() && ingestor.flush().await?.rewind {
            return Ok(false);
        }
    }
    Ok(!ingestor.drain().await?.rewind)
}

/// What one reading pass over a file starts from.
#[derive(Debug, Clone, Copy)]
struct Pass {
    stream: usize,
    /// The last line committed before the pass.
    committed: Option<i64>,
    stop: StopCondition,
    chunk_bytes: usize,
}

/// Lines of a chunk: the bytes read and where each line to ingest is.
struct Chunk {
    data: Vec<u8>,
    lines: Vec<ChunkLine>,
}

/// One non-empty line of a [`Chunk`], trimmed.
struct ChunkLine {
    number: i64,
    start: usize,
    end: usize,
}

/// What decoding a chunk needs to know besides its lines.
struct ChunkContext {
    stream: usize,
    path: PathBuf,
    fallback_topic: String,
}

impl ChunkContext {
    /// Where the record of line `number` came from.
    fn meta<'a>(&'a self, number: i64, framed: &'a FramedLine<'a>) -> RecordMeta<'a> {
        RecordMeta {
            stream: self.stream,
            position: number,
            topic: &framed.topic,
            partition: framed.partition,
            offset: framed.offset.unwrap_or(number),
            timestamp_ms: None,
            key: framed.key.as_deref(),
            value: framed.value.as_deref(),
        }
    }

    /// Frames and decodes every line of `chunk` into a part; a line that
    /// cannot be framed becomes a dead letter naming `file:line`.
    fn decode(
        &self,
        decoder: &mut super::PartDecoder,
        chunk: &Chunk,
    ) -> Result<super::FinishedBatch> {
        for line in &chunk.lines {
            let text = &chunk.data[line.start..line.end];
            let framed = match frame_line_fast(text) {
                Ok(framed) if framed.value_unchecked => {
                    if decoder.decode_if_valid(&self.meta(line.number, &framed))? {
                        continue;
                    }
                    // Not a last field, or not a valid record: frame it exactly
                    // (the decoder then says what is wrong, if anything).
                    frame_line(text)
                }
                framed => framed,
            };
            match framed {
                Ok(framed) => decoder.decode(&self.meta(line.number, &framed))?,
                Err(message) => {
                    let meta = RecordMeta {
                        stream: self.stream,
                        position: line.number,
                        topic: &self.fallback_topic,
                        partition: 0,
                        offset: line.number,
                        timestamp_ms: None,
                        key: None,
                        value: Some(text),
                    };
                    let message = format!("{}:{}: {message}", self.path.display(), line.number);
                    tracing::warn!(%message, "bad input line sent to the dead letters");
                    decoder.dead_letter(&meta, "bad_line", &message);
                }
            }
        }
        decoder.finish()
    }
}

/// Cuts a file into chunks of whole lines, skipping empty lines and those
/// already committed, and stopping after `max_records` taken lines.
struct LineChunks<'a, R> {
    file: R,
    path: &'a Path,
    chunk_bytes: usize,
    /// The start of a line whose end is not read yet.
    carry: Vec<u8>,
    /// Buffers of chunks already decoded, filled again.
    spares: SpareBuffers,
    /// Number of the last line split off.
    line_number: i64,
    committed: Option<i64>,
    max_records: Option<u64>,
    taken: &'a mut u64,
    done: bool,
}

impl<R: Read> LineChunks<'_, R> {
    /// The next chunk with at least one line to ingest, or none at the end.
    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        while !self.done {
            let mut data = if self.carry.len() >= self.chunk_bytes {
                // A line longer than a chunk: read on into the same buffer.
                std::mem::take(&mut self.carry)
            } else {
                let mut data = self.spares.take();
                data.extend_from_slice(&self.carry);
                self.carry.clear();
                data
            };
            data.reserve(self.chunk_bytes);
            let read = (&mut self.file)
                .take(self.chunk_bytes as u64)
                .read_to_end(&mut data)
                .map_err(|e| Error::io(self.path, e))?;
            if read == 0 {
                // The end of the file: a last line without a line break.
                self.done = true;
            } else {
                match memchr::memrchr(b'\n', &data) {
                    Some(last) => {
                        self.carry.extend_from_slice(&data[last + 1..]);
                        data.truncate(last + 1);
                    }
                    None => {
                        // A line longer than a chunk: read on.
                        self.carry = data;
                        continue;
                    }
                }
            }
            let lines = self.split(&data);
            if !lines.is_empty() {
                return Ok(Some(Chunk { data, lines }));
            }
        }
        Ok(None)
    }

    /// The lines of `data` to ingest.
    fn split(&mut self, data: &[u8]) -> Vec<ChunkLine> {
        let mut lines = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |at| start + at);
            let line = &data[start..end];
            let next = end + 1;
            self.line_number += 1;
            if self.max_records.is_some_and(|max| *self.taken >= max) {
                self.done = true;
                break;
            }
            let trimmed_start = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let trimmed = line[trimmed_start..].trim_ascii_end();
            if !trimmed.is_empty() && self.committed.is_none_or(|c| self.line_number > c) {
                *self.taken += 1;
                lines.push(ChunkLine {
                    number: self.line_number,
                    start: start + trimmed_start,
                    end: start + trimmed_start + trimmed.len(),
                });
            }
            start = next;
        }
        lines
    }
}

/// Ingests several files, one after the other, and returns the run's summary.
pub async fn run_files(
    mut ingestor: Ingestor,
    paths: &[PathBuf],
    stop: StopCondition,
) -> Result<RunSummary> {
    for path in paths {
        run(&mut ingestor, path, stop).await?;
    }
    ingestor.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_string_embedded_and_null_payloads() {
        let line = br#"{"topic":"a.b.c","partition":2,"offset":7,"key":"{\"id\":1}","value": {"x": [1, 2]} }"#;
        let framed = frame_line(line).unwrap();
        assert_eq!(framed.topic, "a.b.c");
        assert_eq!(framed.partition, 2);
        assert_eq!(framed.offset, Some(7));
        assert_eq!(framed.key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(framed.value.as_deref(), Some(&br#"{"x": [1, 2]}"#[..]));
        let tombstone =
            frame_line(br#"{"topic":"t","key":null,"value":null,"key_captured":false}"#).unwrap();
        assert_eq!(tombstone.value, None);
        assert_eq!(tombstone.offset, None);
    }

    #[test]
    fn embedded_payloads_are_delimited_outside_strings() {
        let line = br#"{"topic":"t","value":{"a":"}]\"{[","b":[1,{"c":"\\"}]},"offset":3}"#;
        let framed = frame_line(line).unwrap();
        assert_eq!(
            framed.value.as_deref(),
            Some(&br#"{"a":"}]\"{[","b":[1,{"c":"\\"}]}"#[..])
        );
        assert_eq!(framed.offset, Some(3));
        // Strings longer than the byte-by-byte look-ahead, escapes at its edge.
        for pad in 28..36 {
            let text = format!(r#"{}\"}}{{"#, "x".repeat(pad));
            let line = format!(r#"{{"topic":"t","value":{{"s":"{text}","n":[{{}}]}},"offset":1}}"#);
            let framed = frame_line(line.as_bytes()).unwrap();
            let value = format!(r#"{{"s":"{text}","n":[{{}}]}}"#);
            assert_eq!(framed.value.as_deref(), Some(value.as_bytes()), "pad {pad}");
            assert_eq!(framed.offset, Some(1));
        }
        let long = format!(r#"{{"topic":"t","value":{{"a":"{}"#, "y".repeat(50));
        assert!(
            frame_line(long.as_bytes())
                .unwrap_err()
                .contains("unterminated string")
        );
        let unterminated = frame_line(br#"{"topic":"t","value":{"a":"x}"#).unwrap_err();
        assert!(
            unterminated.contains("value: unterminated"),
            "{unterminated}"
        );
        let unbalanced = frame_line(br#"{"topic":"t","value":{"a":1}"#).unwrap_err();
        assert!(unbalanced.contains("expected `,` or `}`"), "{unbalanced}");
    }

    /// The lines `LineChunks` yields, as (number, text), and the count taken.
    fn chunked(
        input: &[u8],
        chunk_bytes: usize,
        committed: Option<i64>,
        max_records: Option<u64>,
    ) -> (Vec<(i64, String)>, u64) {
        let mut taken = 0;
        let mut chunks = LineChunks {
            file: input,
            path: Path::new("test.jsonl"),
            chunk_bytes,
            carry: Vec::new(),
            spares: SpareBuffers::default(),
            line_number: 0,
            committed,
            max_records,
            taken: &mut taken,
            done: false,
        };
        let mut lines = Vec::new();
        while let Some(chunk) = chunks.next_chunk().unwrap() {
            assert!(!chunk.lines.is_empty(), "no empty chunks");
            for line in &chunk.lines {
                let text = String::from_utf8(chunk.data[line.start..line.end].to_vec()).unwrap();
                lines.push((line.number, text));
            }
            // As the decoding threads do: the next chunks refill this buffer.
            chunks.spares.give(chunk.data);
        }
        (lines, taken)
    }

    #[test]
    fn chunks_hold_whole_lines_and_skip_what_is_not_ingested() {
        let input = b"a\n\n  b  \ncccccccccccccccccccc\r\nd";
        let all = |lines: &[(i64, &str)]| -> Vec<(i64, String)> {
            lines.iter().map(|(n, t)| (*n, t.to_string())).collect()
        };
        for chunk_bytes in [1, 3, 4, 7, 64] {
            let (lines, taken) = chunked(input, chunk_bytes, None, None);
            let expected = all(&[(1, "a"), (3, "b"), (4, "cccccccccccccccccccc"), (5, "d")]);
            assert_eq!(lines, expected, "chunk_bytes {chunk_bytes}");
            assert_eq!(taken, 4);
        }
        // After a restart: the committed lines are skipped, numbers kept.
        let (lines, taken) = chunked(input, 4, Some(3), None);
        assert_eq!(lines, all(&[(4, "cccccccccccccccccccc"), (5, "d")]));
        assert_eq!(taken, 2);
        // A limit stops after that many lines taken.
        let (lines, taken) = chunked(input, 4, None, Some(2));
        assert_eq!(lines, all(&[(1, "a"), (3, "b")]));
        assert_eq!(taken, 2);
        assert_eq!(chunked(b"", 4, None, None).0, vec![]);
        assert_eq!(chunked(b"\n\n", 1, None, None).0, vec![]);
    }

    #[test]
    fn a_last_value_is_taken_unchecked_and_any_other_exactly() {
        let last = br#"{"topic":"t","offset":4,"key":{"id":1},"value":{"a":"}"} }  "#;
        let fast = frame_line_fast(last).unwrap();
        assert!(fast.value_unchecked);
        assert_eq!(fast.value.as_deref(), Some(&br#"{"a":"}"}"#[..]));
        assert_eq!(fast.key.as_deref(), Some(&br#"{"id":1}"#[..]));
        assert_eq!(fast.offset, Some(4));
        let exact = frame_line(last).unwrap();
        assert!(!exact.value_unchecked);
        assert_eq!(exact.value, fast.value);
        // Not the last field: the unchecked slice runs on (the decoder
        // rejects it, and the line is framed again exactly).
        let inner = br#"{"topic":"t","value":{"a":1},"offset":4}"#;
        let fast = frame_line_fast(inner).unwrap();
        assert_eq!(fast.value.as_deref(), Some(&br#"{"a":1},"offset":4"#[..]));
        assert_eq!(
            frame_line(inner).unwrap().value.as_deref(),
            Some(&br#"{"a":1}"#[..])
        );
        // Null values and strings are never unchecked.
        let null = frame_line_fast(br#"{"topic":"t","value":null}"#).unwrap();
        assert!(!null.value_unchecked && null.value.is_none());
    }

    #[test]
    fn find_any_finds_the_first_wanted_byte_at_any_offset() {
        let wanted = [b'"', b'{', b'}'];
        let mut state = 7_u64;
        for len in 0..40 {
            for _ in 0..50 {
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        b"ab\"{}\x00\xff\x7b\x22z"[(state >> 59) as usize % 10]
                    })
                    .collect();
                for at in 0..=len {
                    let naive = line[at..]
                        .iter()
                        .position(|b| wanted.contains(b))
                        .map(|i| at + i);
                    assert_eq!(find_any(&line, at, wanted), naive, "{line:?} from {at}");
                }
            }
        }
    }

    #[test]
    fn framing_errors_say_what_is_wrong() {
        assert!(
            frame_line(b"not json")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            frame_line(br#"{"value":null}"#)
                .unwrap_err()
                .contains("topic")
        );
        assert!(
            frame_line(br#"{"topic":"t","partition":"x"}"#)
                .unwrap_err()
                .contains("partition")
        );
        assert!(
            frame_line(br#"{"topic":"t"} extra"#)
                .unwrap_err()
                .contains("trailing")
        );
    }
}
