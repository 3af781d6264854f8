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
use std::io::BufRead;
use std::path::{Path, PathBuf};

use jiter::Jiter;

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
}

/// Frames one line. Errors say what is wrong with it.
///
/// The line's own fields are read with jiter; an embedded key or value
/// (a JSON object or array) is only delimited, by matching brackets outside
/// strings: the decoder parses and validates it, so it is never parsed twice
/// (an invalid one becomes a decode dead letter naming its topic and offset).
pub fn frame_line(line: &[u8]) -> std::result::Result<FramedLine<'_>, String> {
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
    framed.topic = topic.ok_or("missing \"topic\"")?;
    if framed.topic.is_empty() {
        return Err("empty \"topic\"".into());
    }
    Ok(framed)
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

/// The index after the object or array starting at `line[start]`: brackets
/// are matched outside strings (whose escapes are skipped).
fn container_end(line: &[u8], start: usize) -> std::result::Result<usize, String> {
    let mut depth = 0usize;
    let mut at = start;
    while let Some(&byte) = line.get(at) {
        match byte {
            b'"' => {
                at += 1;
                loop {
                    let rest = line.get(at..).unwrap_or_default();
                    let found = memchr::memchr2(b'"', b'\\', rest)
                        .ok_or_else(|| format!("unterminated string at column {}", at + 1))?;
                    at += found;
                    if line[at] == b'\\' {
                        at += 2;
                    } else {
                        break;
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    Err(format!(
        "unterminated object or array starting at column {}",
        start + 1
    ))
}

/// Ingests a JSON-lines file into bronze.
pub async fn run(ingestor: &mut Ingestor, path: &Path, stop: StopCondition) -> Result<()> {
    let app_id = app_id(path)?;
    let streams = ingestor.open_streams(std::slice::from_ref(&app_id)).await?;
    let (stream, mut committed) = streams[0];
    let mut taken: u64 = 0;
    loop {
        if let Some(line) = committed {
            tracing::info!(file = %path.display(), line, "resuming after the last committed line");
        }
        if read_pass(ingestor, path, stream, committed, stop, &mut taken).await? {
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

/// Reads `path` once from the line after `committed`. Returns `false` when a
/// commit found the file's stream advanced by another process (the lines
/// not committed were dropped: read again), `true` when the file is done.
async fn read_pass(
    ingestor: &mut Ingestor,
    path: &Path,
    stream: usize,
    committed: Option<i64>,
    stop: StopCondition,
    taken: &mut u64,
) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    ingestor.progress().set_total(total_bytes / 1024);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let mut line_number: i64 = 0;
    let fallback_topic = format!("file:{}", path.display());
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        if stop.max_records.is_some_and(|max| *taken >= max) {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if committed.is_some_and(|c| line_number <= c) {
            continue;
        }
        *taken += 1;
        match frame_line(text) {
            Ok(framed) => {
                let meta = RecordMeta {
                    stream,
                    position: line_number,
                    topic: &framed.topic,
                    partition: framed.partition,
                    offset: framed.offset.unwrap_or(line_number),
                    timestamp_ms: None,
                    key: framed.key.as_deref(),
                    value: framed.value.as_deref(),
                };
                ingestor.ingest(&meta)?;
            }
            Err(message) => {
                let meta = RecordMeta {
                    stream,
                    position: line_number,
                    topic: &fallback_topic,
                    partition: 0,
                    offset: line_number,
                    timestamp_ms: None,
                    key: None,
                    value: Some(text),
                };
                let message = format!("{}:{line_number}: {message}", path.display());
                tracing::warn!(%message, "bad input line sent to the dead letters");
                ingestor.dead_letter(&meta, "bad_line", &message);
            }
        }
        if ingestor.should_flush() && ingestor.flush().await?.rewind {
            return Ok(false);
        }
    }
    Ok(!ingestor.drain().await?.rewind)
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
        let unterminated = frame_line(br#"{"topic":"t","value":{"a":"x}"#).unwrap_err();
        assert!(
            unterminated.contains("value: unterminated"),
            "{unterminated}"
        );
        let unbalanced = frame_line(br#"{"topic":"t","value":{"a":1}"#).unwrap_err();
        assert!(unbalanced.contains("expected `,` or `}`"), "{unbalanced}");
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
