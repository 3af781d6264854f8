//! [`Decoder`]: Kafka record bytes → [`DecodedRecord`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use jiter::Peek;

use super::error::DecodeError;
use super::json::{self, Cursor, Json, SyntaxError};
use super::logical::{FieldType, TopicHints, TypeHints, find_entry, write_text};
use super::row::Row;
use super::schema::{Field, StructType};
use super::{DecodedRecord, Op, RecordKind, SourceInfo, TransactionInfo};

/// Schemas kept before the cache is reset (a connector has one key and one
/// value schema per table and per schema version).
const MAX_CACHED_SCHEMAS: usize = 512;
/// Total schema bytes kept before the cache is reset.
const MAX_CACHED_BYTES: usize = 64 << 20;
/// Recently used schemas tried by prefix comparison before hashing.
const MRU_LEN: usize = 4;

/// Decodes Debezium records written by Kafka Connect's `JsonConverter`.
///
/// A decoder keeps a cache of the Connect schemas it has seen: a
/// schema-enabled message is mostly schema, so the schema of a record is
/// recognised by its bytes (most often by a plain prefix comparison with a
/// recently used one) and parsed only the first time. Use one decoder per
/// thread.
#[derive(Debug, Default)]
pub struct Decoder {
    hints: TypeHints,
    cache: SchemaCache,
    /// Rows of the previous record, reused to keep their buffers.
    spare_rows: Vec<Row>,
    /// Scratch buffer for base64 decoding.
    scratch: Vec<u8>,
}

/// Which Kafka record part is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Key,
    Value,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// A parsed `schema` of a message, shared by every record that carries the same bytes.
#[derive(Debug)]
struct CachedSchema {
    bytes: Box<[u8]>,
    root: Field,
}

/// The `schema` and `payload` of a message (`schema` is `None` when the message
/// has none, or a null one).
struct Message<'a> {
    schema: Option<Arc<CachedSchema>>,
    payload: Json<'a>,
}

/// Identity hasher: cache keys are already hashes.
#[derive(Default)]
struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A fast non-cryptographic hash of the schema bytes (FxHash-style, 8 bytes at a
/// time); hits are confirmed by comparing the bytes, so collisions are harmless.
fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    h
}

#[derive(Debug, Default)]
struct SchemaCache {
    by_hash: HashMap<u64, Vec<Arc<CachedSchema>>, BuildHasherDefault<U64Hasher>>,
    entries: usize,
    bytes: usize,
    /// Most recently used schemas, per part, most recent first.
    mru: [Vec<Arc<CachedSchema>>; 2],
    hits: u64,
    misses: u64,
}

impl SchemaCache {
    fn touch(&mut self, part: Part, entry: &Arc<CachedSchema>) {
        let mru = &mut self.mru[part as usize];
        if let Some(pos) = mru.iter().position(|e| Arc::ptr_eq(e, entry)) {
            mru[..=pos].rotate_right(1);
        } else {
            if mru.len() >= MRU_LEN {
                mru.pop();
            }
            mru.insert(0, Arc::clone(entry));
        }
    }

    /// Reads the `schema` value at the cursor. `Ok(None)` when it is neither
    /// `null` nor an object (so the message is not a JsonConverter envelope).
    #[allow(clippy::option_option)]
    fn read_schema(
        &mut self,
        part: Part,
        c: &mut Cursor<'_>,
    ) -> Result<Option<Option<Arc<CachedSchema>>>, DecodeError> {
        let input = c.input();
        let not_json = |e: SyntaxError| DecodeError::NotJson {
            part: part.name(),
            message: e.describe(input),
        };
        let peek = c.peek().map_err(not_json)?;
        if peek == Peek::Null {
            c.known_null().map_err(not_json)?;
            return Ok(Some(None));
        }
        if peek != Peek::Object {
            return Ok(None);
        }
        let start = c.position();
        // Fast path: a JSON object is prefix-free, so if the input at `start`
        // begins with the bytes of a known schema, that schema is the value.
        let rest = input.get(start..).unwrap_or_default();
        let hit = self.mru[part as usize]
            .iter()
            .find(|e| rest.starts_with(&e.bytes))
            .cloned();
        if let Some(entry) = hit {
            c.jump_to(start + entry.bytes.len()).map_err(not_json)?;
            self.hits += 1;
            self.touch(part, &entry);
            return Ok(Some(Some(entry)));
        }
        let raw = c.skip(peek).map_err(not_json)?;
        let h = hash_bytes(raw);
        let found = self
            .by_hash
            .get(&h)
            .and_then(|list| list.iter().find(|e| *e.bytes == *raw))
            .cloned();
        if let Some(entry) = found {
            self.hits += 1;
            self.touch(part, &entry);
            return Ok(Some(Some(entry)));
        }
        self.misses += 1;
        let dom = json::parse(raw).map_err(|e| {
            not_json(SyntaxError {
                index: start + e.index,
                message: e.message,
            })
        })?;
        let root = Field::parse(&dom, &format!("{}.schema", part.name()))
            .map_err(|(path, message)| DecodeError::BadSchema { path, message })?;
        if self.entries >= MAX_CACHED_SCHEMAS || self.bytes + raw.len() > MAX_CACHED_BYTES {
            self.by_hash.clear();
            self.entries = 0;
            self.bytes = 0;
        }
        let entry = Arc::new(CachedSchema {
            bytes: raw.into(),
            root,
        });
        self.by_hash.entry(h).or_default().push(Arc::clone(&entry));
        self.entries += 1;
        self.bytes += raw.len();
        self.touch(part, &entry);
        Ok(Some(Some(entry)))
    }

    /// Parses a key or value: a `{"schema":…,"payload":…}` envelope (in either
    /// order) or, for anything else, the whole JSON as a schemaless payload.
    fn read_message<'a>(
        &mut self,
        part: Part,
        bytes: &'a [u8],
    ) -> Result<Message<'a>, DecodeError> {
        let not_json = |e: SyntaxError| DecodeError::NotJson {
            part: part.name(),
            message: e.describe(bytes),
        };
        let mut c = Cursor::new(bytes);
        if c.peek().map_err(not_json)? == Peek::Object
            && let Some(m) = self.read_envelope(part, &mut c)?
        {
            return Ok(m);
        }
        let payload = json::parse(bytes).map_err(not_json)?;
        Ok(Message {
            schema: None,
            payload,
        })
    }

    fn read_envelope<'a>(
        &mut self,
        part: Part,
        c: &mut Cursor<'a>,
    ) -> Result<Option<Message<'a>>, DecodeError> {
        let input = c.input();
        let not_json = |e: SyntaxError| DecodeError::NotJson {
            part: part.name(),
            message: e.describe(input),
        };
        let first = c.first_key().map_err(not_json)?;
        let (schema, payload) = match first.as_deref() {
            Some("schema") => {
                let Some(schema) = self.read_schema(part, c)? else {
                    return Ok(None);
                };
                if c.next_key().map_err(not_json)?.as_deref() != Some("payload") {
                    return Ok(None);
                }
                (schema, c.value(1).map_err(not_json)?)
            }
            Some("payload") => {
                let payload = c.value(1).map_err(not_json)?;
                if c.next_key().map_err(not_json)?.as_deref() != Some("schema") {
                    return Ok(None);
                }
                let Some(schema) = self.read_schema(part, c)? else {
                    return Ok(None);
                };
                (schema, payload)
            }
            _ => return Ok(None),
        };
        if c.next_key().map_err(not_json)?.is_some() {
            return Ok(None);
        }
        c.finish().map_err(not_json)?;
        Ok(Some(Message { schema, payload }))
    }
}

/// Mutable state the row decoders need, borrowed from disjoint decoder fields.
struct RowCtx<'d> {
    hints: TopicHints<'d>,
    spare: &'d mut Vec<Row>,
    scratch: &'d mut Vec<u8>,
}

impl RowCtx<'_> {
    fn new_row(&mut self) -> Row {
        match self.spare.pop() {
            Some(mut r) => {
                r.clear();
                r
            }
            None => Row::new(),
        }
    }

    /// Decodes a `before`/`after`/key struct. `skip_meta` drops the `__`
    /// fields that `ExtractNewRecordState` adds.
    fn row(
        &mut self,
        value: &Json<'_>,
        ty: Option<&FieldType>,
        path: &str,
        skip_meta: bool,
    ) -> Result<Option<Row>, DecodeError> {
        let entries = match value {
            Json::Null => return Ok(None),
            Json::Object(entries) => entries,
            other => {
                return Err(DecodeError::mismatch(
                    path,
                    format!("expected a struct, got {}", other.snippet()),
                ));
            }
        };
        let mut row = self.new_row();
        let result = match ty {
            Some(FieldType::Struct(st)) => self.struct_row(entries, st, path, skip_meta, &mut row),
            _ => self.schemaless_row(entries, path, skip_meta, &mut row),
        };
        match result {
            Ok(()) => Ok(Some(row)),
            Err(e) => {
                self.spare.push(row);
                Err(e)
            }
        }
    }

    fn struct_row(
        &mut self,
        entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
        st: &StructType,
        path: &str,
        skip_meta: bool,
        row: &mut Row,
    ) -> Result<(), DecodeError> {
        let mut found = 0usize;
        let mut hint = 0usize;
        for field in &st.fields {
            if skip_meta && field.name.starts_with("__") {
                continue;
            }
            let idx = find_entry(entries, &field.name, hint);
            if let Some(i) = idx {
                found += 1;
                hint = i + 1;
            }
            match idx.and_then(|i| entries.get(i)).map(|(_, v)| v) {
                Some(Json::Null) | None => {
                    let absent = idx.is_none();
                    match &field.default {
                        Some(d) if absent || !field.optional => row.push(&field.name, &d.text),
                        _ if field.optional => row.push_null(&field.name),
                        _ => {
                            let what = if absent {
                                "missing required (optional:false) field"
                            } else {
                                "null in a required (optional:false) field"
                            };
                            return Err(DecodeError::mismatch(
                                format!("{path}.{}", field.name),
                                what,
                            ));
                        }
                    }
                }
                Some(v) => {
                    let scratch = &mut *self.scratch;
                    row.push_with(&field.name, |buf| write_text(v, &field.ty, buf, scratch))
                        .map_err(|e| {
                            DecodeError::mismatch(
                                format!("{path}.{}{}", field.name, e.path),
                                e.message,
                            )
                        })?;
                }
            }
        }
        if found < entries.len() {
            // Fields the schema does not list are kept with their raw rendering.
            for (k, v) in entries {
                if (skip_meta && k.starts_with("__")) || st.position(k).is_some() {
                    continue;
                }
                if v.is_null() {
                    row.push_null(k);
                } else {
                    row.push_with(k, |buf| {
                        v.write_plain(buf);
                        Ok::<(), std::convert::Infallible>(())
                    })
                    .unwrap_or_else(|never| match never {});
                }
            }
        }
        Ok(())
    }

    fn schemaless_row(
        &mut self,
        entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
        path: &str,
        skip_meta: bool,
        row: &mut Row,
    ) -> Result<(), DecodeError> {
        for (k, v) in entries {
            if skip_meta && k.starts_with("__") {
                continue;
            }
            self.schemaless_column(k, v, path, row)?;
        }
        Ok(())
    }

    fn schemaless_column(
        &mut self,
        name: &str,
        v: &Json<'_>,
        path: &str,
        row: &mut Row,
    ) -> Result<(), DecodeError> {
        if v.is_null() {
            row.push_null(name);
            return Ok(());
        }
        match self.hints.get(name) {
            Some(ty) => {
                let scratch = &mut *self.scratch;
                row.push_with(name, |buf| write_text(v, ty, buf, scratch))
                    .map_err(|e| {
                        DecodeError::mismatch(format!("{path}.{name}{}", e.path), e.message)
                    })
            }
            None => {
                row.push_with(name, |buf| {
                    v.write_plain(buf);
                    Ok::<(), std::convert::Infallible>(())
                })
                .unwrap_or_else(|never| match never {});
                Ok(())
            }
        }
    }

    /// Decodes a key message: a struct becomes its columns, a primitive one
    /// column named `key`.
    fn key(&mut self, msg: &Message<'_>) -> Result<Option<Row>, DecodeError> {
        let root = msg.schema.as_ref().map(|s| &s.root);
        match (&msg.payload, root.map(|r| &r.ty)) {
            (Json::Null, _) => Ok(None),
            (Json::Object(_), ty @ (Some(FieldType::Struct(_)) | None)) => {
                self.row(&msg.payload, ty, "key", false)
            }
            (v, Some(FieldType::Struct(_))) => Err(DecodeError::mismatch(
                "key",
                format!("expected a struct, got {}", v.snippet()),
            )),
            (v, Some(ty)) => {
                let mut row = self.new_row();
                let scratch = &mut *self.scratch;
                match row.push_with("key", |buf| write_text(v, ty, buf, scratch)) {
                    Ok(()) => Ok(Some(row)),
                    Err(e) => {
                        self.spare.push(row);
                        Err(DecodeError::mismatch(format!("key{}", e.path), e.message))
                    }
                }
            }
            (v, None) => {
                let mut row = self.new_row();
                match self.schemaless_column("key", v, "key", &mut row) {
                    Ok(()) => Ok(Some(row)),
                    Err(e) => {
                        self.spare.push(row);
                        Err(e)
                    }
                }
            }
        }
    }
}

impl Decoder {
    /// A decoder resolving schemaless columns with `hints`.
    pub fn new(hints: TypeHints) -> Decoder {
        Decoder {
            hints,
            ..Decoder::default()
        }
    }

    /// The type hints in use.
    pub fn hints(&self) -> &TypeHints {
        &self.hints
    }

    /// Number of distinct schemas currently cached.
    pub fn schema_cache_len(&self) -> usize {
        self.cache.entries
    }

    /// `(hits, misses)` of the schema cache since the decoder was created.
    pub fn schema_cache_stats(&self) -> (u64, u64) {
        (self.cache.hits, self.cache.misses)
    }

    /// Decodes one Kafka record of `topic` into `out` (cleared first) and says
    /// what kind of record it was. `value` `None` or empty is a tombstone.
    /// On error `out` is left cleared.
    pub fn decode(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        out: &mut DecodedRecord,
    ) -> Result<RecordKind, DecodeError> {
        for row in [out.key.take(), out.before.take(), out.after.take()]
            .into_iter()
            .flatten()
        {
            if self.spare_rows.len() < 8 {
                self.spare_rows.push(row);
            }
        }
        out.clear();
        let result = self.decode_inner(topic, key, value, out);
        if result.is_err() {
            for row in [out.key.take(), out.before.take(), out.after.take()]
                .into_iter()
                .flatten()
            {
                if self.spare_rows.len() < 8 {
                    self.spare_rows.push(row);
                }
            }
            out.clear();
        }
        result
    }

    fn decode_inner(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        out: &mut DecodedRecord,
    ) -> Result<RecordKind, DecodeError> {
        let mut ctx = RowCtx {
            hints: self.hints.for_topic(topic),
            spare: &mut self.spare_rows,
            scratch: &mut self.scratch,
        };
        if let Some(k) = key.filter(|k| !k.is_empty()) {
            let msg = self.cache.read_message(Part::Key, k)?;
            out.key = ctx.key(&msg)?;
        }
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(RecordKind::Tombstone);
        };
        let msg = self.cache.read_message(Part::Value, value)?;
        let entries = match &msg.payload {
            Json::Null => return Ok(RecordKind::Tombstone),
            Json::Object(entries) => entries.as_slice(),
            other => {
                return Err(DecodeError::NotDebezium {
                    part: "value",
                    reason: format!("expected an object, got {}", other.snippet()),
                });
            }
        };
        let root = msg.schema.as_ref().map(|s| &s.root);
        let name = root.and_then(|r| r.schema_name.as_deref()).unwrap_or("");
        let value_struct = root.and_then(Field::as_struct);

        if name == "io.debezium.connector.common.Heartbeat"
            || topic.starts_with("__debezium-heartbeat")
        {
            read_envelope_times(entries, out)?;
            return Ok(RecordKind::Heartbeat);
        }
        if name.ends_with(".Envelope") {
            return decode_change(entries, value_struct, &mut ctx, out);
        }
        if name == "io.debezium.connector.common.TransactionMetadataValue" {
            return decode_transaction_marker(entries, out);
        }
        if name.ends_with(".SchemaChangeValue") {
            return decode_schema_change(entries, out);
        }
        let has = |k: &str| entries.iter().any(|(n, _)| n == k);
        if entries.iter().any(|(k, _)| k.starts_with("__")) {
            return decode_unwrapped(entries, value_struct, &mut ctx, out);
        }
        if has("op") {
            return decode_change(entries, value_struct, &mut ctx, out);
        }
        let status = entries
            .iter()
            .find(|(k, _)| k == "status")
            .and_then(|(_, v)| v.as_str());
        if matches!(status, Some("BEGIN" | "END")) && has("id") {
            return decode_transaction_marker(entries, out);
        }
        if has("ddl") && has("databaseName") {
            return decode_schema_change(entries, out);
        }
        let mut keys: Vec<&str> = entries.iter().take(8).map(|(k, _)| k.as_ref()).collect();
        if entries.len() > 8 {
            keys.push("...");
        }
        Err(DecodeError::NotDebezium {
            part: "value",
            reason: format!(
                "object with keys [{}] has no recognisable Debezium shape",
                keys.join(", ")
            ),
        })
    }
}

/// The `ts_ms` / `ts_us` / `ts_ns` of an envelope or special record.
fn read_envelope_times(
    entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
    out: &mut DecodedRecord,
) -> Result<(), DecodeError> {
    for (k, v) in entries {
        match k.as_ref() {
            "ts_ms" => out.event_ts_ms = opt_i64(v, "ts_ms")?,
            "ts_us" => out.event_ts_us = opt_i64(v, "ts_us")?,
            "ts_ns" => out.event_ts_ns = opt_i64(v, "ts_ns")?,
            _ => {}
        }
    }
    Ok(())
}

fn decode_change(
    entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
    schema: Option<&StructType>,
    ctx: &mut RowCtx<'_>,
    out: &mut DecodedRecord,
) -> Result<RecordKind, DecodeError> {
    let row_type = |name: &str| schema.and_then(|s| s.field(name)).map(|f| &f.ty);
    let mut op = None;
    for (k, v) in entries {
        match k.as_ref() {
            "op" => match v {
                Json::String(s) => op = Some(s.as_ref()),
                other => {
                    return Err(DecodeError::mismatch(
                        "op",
                        format!("expected a string, got {}", other.snippet()),
                    ));
                }
            },
            "before" => out.before = ctx.row(v, row_type("before"), "before", false)?,
            "after" => out.after = ctx.row(v, row_type("after"), "after", false)?,
            "source" => decode_source(v, &mut out.source)?,
            "transaction" => decode_transaction_block(v, &mut out.transaction)?,
            "ts_ms" => out.event_ts_ms = opt_i64(v, "ts_ms")?,
            "ts_us" => out.event_ts_us = opt_i64(v, "ts_us")?,
            "ts_ns" => out.event_ts_ns = opt_i64(v, "ts_ns")?,
            _ => {}
        }
    }
    match op {
        None => Err(DecodeError::mismatch("op", "missing operation code")),
        Some("m") => Ok(RecordKind::LogicalMessage),
        Some(code) => match Op::from_code(code) {
            Some(op) => {
                out.op = Some(op);
                Ok(RecordKind::Change)
            }
            None => Err(DecodeError::UnknownOp {
                path: "op",
                op: code.to_string(),
            }),
        },
    }
}

fn decode_unwrapped(
    entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
    schema: Option<&StructType>,
    ctx: &mut RowCtx<'_>,
    out: &mut DecodedRecord,
) -> Result<RecordKind, DecodeError> {
    let mut op_code = None;
    let mut deleted = false;
    for (k, v) in entries {
        let Some(meta) = k.strip_prefix("__") else {
            continue;
        };
        match meta {
            "op" => match v {
                Json::String(s) => op_code = Some(s.as_ref()),
                Json::Null => {}
                other => {
                    return Err(DecodeError::mismatch(
                        "__op",
                        format!("expected a string, got {}", other.snippet()),
                    ));
                }
            },
            "deleted" => deleted = matches!(v, Json::Bool(true)) || v.as_str() == Some("true"),
            "ts_ms" => out.event_ts_ms = opt_i64(v, k)?,
            "ts_us" => out.event_ts_us = opt_i64(v, k)?,
            "ts_ns" => out.event_ts_ns = opt_i64(v, k)?,
            "transaction_id" => out.transaction.id = opt_text(v),
            "transaction_total_order" => out.transaction.total_order = opt_i64(v, k)?,
            "transaction_data_collection_order" => {
                out.transaction.data_collection_order = opt_i64(v, k)?
            }
            other => {
                let field = other.strip_prefix("source_").unwrap_or(other);
                set_source_field(&mut out.source, field, v, k)?;
            }
        }
    }
    let op = match op_code {
        Some(code) => Op::from_code(code).ok_or_else(|| DecodeError::UnknownOp {
            path: "__op",
            op: code.to_string(),
        })?,
        None if deleted => Op::Delete,
        None => Op::Update,
    };
    let is_before = deleted || op == Op::Delete;
    let path = if is_before { "before" } else { "after" };
    let row = match schema {
        Some(st) => {
            let mut row = ctx.new_row();
            match ctx.struct_row(entries, st, path, true, &mut row) {
                Ok(()) => Some(row),
                Err(e) => {
                    ctx.spare.push(row);
                    return Err(e);
                }
            }
        }
        None => {
            let mut row = ctx.new_row();
            match ctx.schemaless_row(entries, path, true, &mut row) {
                Ok(()) => Some(row),
                Err(e) => {
                    ctx.spare.push(row);
                    return Err(e);
                }
            }
        }
    };
    if is_before {
        out.before = row;
    } else {
        out.after = row;
    }
    out.op = Some(op);
    Ok(RecordKind::Change)
}

fn decode_transaction_marker(
    entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
    out: &mut DecodedRecord,
) -> Result<RecordKind, DecodeError> {
    for (k, v) in entries {
        match k.as_ref() {
            "status" => out.transaction.status = opt_text(v),
            "id" => out.transaction.id = opt_text(v),
            "event_count" => out.transaction.event_count = opt_i64(v, "event_count")?,
            "ts_ms" => out.event_ts_ms = opt_i64(v, "ts_ms")?,
            "ts_us" => out.event_ts_us = opt_i64(v, "ts_us")?,
            "ts_ns" => out.event_ts_ns = opt_i64(v, "ts_ns")?,
            _ => {}
        }
    }
    Ok(RecordKind::TransactionMarker)
}

fn decode_schema_change(
    entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
    out: &mut DecodedRecord,
) -> Result<RecordKind, DecodeError> {
    let mut database = None;
    for (k, v) in entries {
        match k.as_ref() {
            "source" => decode_source(v, &mut out.source)?,
            "ddl" => out.ddl = opt_text(v),
            "databaseName" => database = opt_text(v),
            "ts_ms" => out.event_ts_ms = opt_i64(v, "ts_ms")?,
            "ts_us" => out.event_ts_us = opt_i64(v, "ts_us")?,
            "ts_ns" => out.event_ts_ns = opt_i64(v, "ts_ns")?,
            _ => {}
        }
    }
    if out.source.db.is_none() {
        out.source.db = database;
    }
    Ok(RecordKind::SchemaChange)
}

fn decode_source(v: &Json<'_>, src: &mut SourceInfo) -> Result<(), DecodeError> {
    match v {
        Json::Null => Ok(()),
        Json::Object(entries) => {
            let mut path = String::new();
            for (k, val) in entries {
                path.clear();
                path.push_str("source.");
                path.push_str(k);
                set_source_field(src, k, val, &path)?;
            }
            Ok(())
        }
        other => Err(DecodeError::mismatch(
            "source",
            format!("expected a struct, got {}", other.snippet()),
        )),
    }
}

/// Sets the source field `name` (a `source` block key, or an unwrap `__`
/// field without its prefix). Unknown names are ignored.
fn set_source_field(
    src: &mut SourceInfo,
    name: &str,
    v: &Json<'_>,
    path: &str,
) -> Result<(), DecodeError> {
    match name {
        "version" => src.version = opt_text(v),
        "connector" => src.connector = opt_text(v),
        "name" => src.name = opt_text(v),
        "db" => src.db = opt_text(v),
        "schema" => src.schema = opt_text(v),
        "table" => src.table = opt_text(v),
        "sequence" => src.sequence = opt_text(v),
        "file" => src.binlog_file = opt_text(v),
        "gtid" => src.gtid = opt_text(v),
        "lsn" => src.lsn = opt_i64(v, path)?,
        "txId" => src.tx_id = opt_i64(v, path)?,
        "pos" => src.binlog_pos = opt_i64(v, path)?,
        "server_id" => src.server_id = opt_i64(v, path)?,
        "ts_ms" => src.ts_ms = opt_i64(v, path)?,
        "ts_us" => src.ts_us = opt_i64(v, path)?,
        "ts_ns" => src.ts_ns = opt_i64(v, path)?,
        "row" => {
            src.binlog_row = opt_i64(v, path)?
                .map(i32::try_from)
                .transpose()
                .map_err(|_| {
                    DecodeError::mismatch(path, format!("expected int32, got {}", v.snippet()))
                })?;
        }
        "snapshot" => {
            src.snapshot = match v {
                Json::Bool(b) => Some(if *b { "true" } else { "false" }.to_string()),
                other => opt_text(other),
            }
        }
        _ => {}
    }
    Ok(())
}

fn decode_transaction_block(v: &Json<'_>, tx: &mut TransactionInfo) -> Result<(), DecodeError> {
    match v {
        Json::Null => Ok(()),
        Json::Object(entries) => {
            for (k, val) in entries {
                match k.as_ref() {
                    "id" => tx.id = opt_text(val),
                    "total_order" => tx.total_order = opt_i64(val, "transaction.total_order")?,
                    "data_collection_order" => {
                        tx.data_collection_order =
                            opt_i64(val, "transaction.data_collection_order")?;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        other => Err(DecodeError::mismatch(
            "transaction",
            format!("expected a struct, got {}", other.snippet()),
        )),
    }
}

/// Text of a metadata value: strings as is, other scalars as their JSON text.
fn opt_text(v: &Json<'_>) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.to_string()),
        other => {
            let mut s = String::new();
            other.write_plain(&mut s);
            Some(s)
        }
    }
}

/// An int64 metadata value (a JSON integer, or a string holding one).
fn opt_i64(v: &Json<'_>, path: &str) -> Result<Option<i64>, DecodeError> {
    let parsed = match v {
        Json::Null => return Ok(None),
        Json::Number(n) => n.parse::<i64>().ok(),
        Json::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| DecodeError::mismatch(path, format!("expected int64, got {}", v.snippet())))
}
