//! Connect and Debezium types ([`FieldType`]), schemaless type hints
//! ([`TypeHints`]) and the canonical text of every value.
//!
//! Canonical value text, as stored in [`super::Row`]:
//!
//! | Type | Text |
//! |---|---|
//! | int8/16/32/64, `Year`, `MicroDuration` | the integer (`-12`) |
//! | boolean | `true` / `false` |
//! | float64 | the exact JSON number text (`3.140000104904175`); `NaN`, `Infinity`, `-Infinity` |
//! | float32 | the shortest text of the `f32` (`0.3173`) |
//! | string and string logical types (`Json`, `Uuid`, `Enum`, `EnumSet`, `Xml`, `Ltree`, `Interval`, `ZonedTimestamp`, `ZonedTime`) | the string |
//! | bytes | base64 as on the wire |
//! | `Decimal`, `VariableScaleDecimal` | exact decimal, `scale` fraction digits (`39.98`, `-0.05`) |
//! | `Date` | `YYYY-MM-DD` |
//! | `Time` / `MicroTime` / `NanoTime` | `HH:MM:SS.fff` / `.ffffff` / `.fffffffff` |
//! | `Timestamp` / `MicroTimestamp` / `NanoTimestamp` | `YYYY-MM-DDTHH:MM:SS.fff` (3/6/9 digits, wall clock, no zone); `infinity` / `-infinity` for Postgres infinities |
//! | `Bits` | the unsigned integer (little-endian bytes) in decimal; over 128 bits `0x` + lowercase hex |
//! | struct, array, map | compact JSON; nested logical values as JSON strings of their text, numbers as numbers, bytes as base64 strings |

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{Datelike, NaiveDate};

use super::json::{Json, write_json_string};
use super::schema::{Field, StructType};

/// A Kafka Connect type, with the Debezium / Connect logical type resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// Connect `int8`.
    Int8,
    /// Connect `int16`.
    Int16,
    /// Connect `int32`.
    Int32,
    /// Connect `int64`.
    Int64,
    /// Connect `float` (32 bits).
    Float32,
    /// Connect `double`.
    Float64,
    /// Connect `boolean`.
    Boolean,
    /// Connect `string`.
    String,
    /// Connect `bytes` (base64 in JSON).
    Bytes,
    /// `org.apache.kafka.connect.data.Decimal`: big-endian two's complement
    /// bytes (or a JSON number under `decimal.format=NUMERIC`).
    Decimal {
        /// `parameters.scale`.
        scale: i32,
    },
    /// `io.debezium.data.VariableScaleDecimal`: struct `{scale, value}`.
    VariableScaleDecimal,
    /// `io.debezium.time.Date` / connect `Date`: days since the epoch.
    Date,
    /// `io.debezium.time.Time` / connect `Time`: milliseconds past midnight.
    Time,
    /// `io.debezium.time.MicroTime`: microseconds past midnight.
    MicroTime,
    /// `io.debezium.time.NanoTime`: nanoseconds past midnight.
    NanoTime,
    /// `io.debezium.time.Timestamp` / connect `Timestamp`: epoch milliseconds, wall clock.
    Timestamp,
    /// `io.debezium.time.MicroTimestamp`: epoch microseconds, wall clock.
    MicroTimestamp,
    /// `io.debezium.time.NanoTimestamp`: epoch nanoseconds, wall clock.
    NanoTimestamp,
    /// `io.debezium.time.ZonedTimestamp`: ISO-8601 string.
    ZonedTimestamp,
    /// `io.debezium.time.ZonedTime`: ISO-8601 string.
    ZonedTime,
    /// `io.debezium.time.Year`: the year number.
    Year,
    /// `io.debezium.time.MicroDuration`: microseconds.
    MicroDuration,
    /// `io.debezium.time.Interval`: ISO-8601 duration string.
    Interval,
    /// `io.debezium.data.Json`: a string holding JSON text.
    Json,
    /// `io.debezium.data.Uuid`.
    Uuid,
    /// `io.debezium.data.Enum`.
    Enum,
    /// `io.debezium.data.EnumSet`: comma-separated.
    EnumSet,
    /// `io.debezium.data.Xml`.
    Xml,
    /// `io.debezium.data.Ltree`.
    Ltree,
    /// `io.debezium.data.Bits`: little-endian bytes.
    Bits {
        /// `parameters.length` in bits (0 when unknown).
        length: u32,
    },
    /// Connect `struct` (geometry, nested rows, ...).
    Struct(Box<StructType>),
    /// Connect `array` of the item schema.
    Array(Box<Field>),
    /// Connect `map` of key and value schemas.
    Map(Box<Field>, Box<Field>),
}

impl FieldType {
    /// Parses a type-hint name: `int8 int16 int32 int64 float32 float64 boolean
    /// string bytes json uuid date time_ms time_us time_ns timestamp_ms
    /// timestamp_us timestamp_ns zoned_timestamp year bits decimal(S)
    /// variable_scale_decimal` (plus `bits(N)`, `enum`, `enum_set`, `xml`,
    /// `ltree`, `interval`, `zoned_time`, `micro_duration`).
    pub fn from_hint(hint: &str) -> Result<FieldType, String> {
        let h = hint.trim().to_ascii_lowercase();
        let ty = match h.as_str() {
            "int8" => FieldType::Int8,
            "int16" => FieldType::Int16,
            "int32" => FieldType::Int32,
            "int64" => FieldType::Int64,
            "float32" | "float" => FieldType::Float32,
            "float64" | "double" => FieldType::Float64,
            "boolean" | "bool" => FieldType::Boolean,
            "string" => FieldType::String,
            "bytes" => FieldType::Bytes,
            "json" => FieldType::Json,
            "uuid" => FieldType::Uuid,
            "enum" => FieldType::Enum,
            "enum_set" => FieldType::EnumSet,
            "xml" => FieldType::Xml,
            "ltree" => FieldType::Ltree,
            "interval" => FieldType::Interval,
            "date" => FieldType::Date,
            "time_ms" => FieldType::Time,
            "time_us" => FieldType::MicroTime,
            "time_ns" => FieldType::NanoTime,
            "timestamp_ms" => FieldType::Timestamp,
            "timestamp_us" | "micro_timestamp" => FieldType::MicroTimestamp,
            "timestamp_ns" | "nano_timestamp" => FieldType::NanoTimestamp,
            "zoned_timestamp" => FieldType::ZonedTimestamp,
            "zoned_time" => FieldType::ZonedTime,
            "year" => FieldType::Year,
            "micro_duration" => FieldType::MicroDuration,
            "bits" => FieldType::Bits { length: 0 },
            "variable_scale_decimal" => FieldType::VariableScaleDecimal,
            other => {
                let arg = |prefix: &str| {
                    other
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.strip_suffix(')'))
                        .map(str::trim)
                };
                if let Some(s) = arg("decimal(") {
                    let scale = s
                        .parse::<i32>()
                        .map_err(|_| format!("type hint {hint:?}: bad decimal scale {s:?}"))?;
                    FieldType::Decimal { scale }
                } else if let Some(s) = arg("bits(") {
                    let length = s
                        .parse::<u32>()
                        .map_err(|_| format!("type hint {hint:?}: bad bits length {s:?}"))?;
                    FieldType::Bits { length }
                } else {
                    return Err(format!("unknown type hint {hint:?}"));
                }
            }
        };
        Ok(ty)
    }

    /// The Connect / Debezium name of the type, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Int8 => "int8",
            FieldType::Int16 => "int16",
            FieldType::Int32 => "int32",
            FieldType::Int64 => "int64",
            FieldType::Float32 => "float",
            FieldType::Float64 => "double",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
            FieldType::Bytes => "bytes",
            FieldType::Decimal { .. } => "org.apache.kafka.connect.data.Decimal",
            FieldType::VariableScaleDecimal => "io.debezium.data.VariableScaleDecimal",
            FieldType::Date => "io.debezium.time.Date",
            FieldType::Time => "io.debezium.time.Time",
            FieldType::MicroTime => "io.debezium.time.MicroTime",
            FieldType::NanoTime => "io.debezium.time.NanoTime",
            FieldType::Timestamp => "io.debezium.time.Timestamp",
            FieldType::MicroTimestamp => "io.debezium.time.MicroTimestamp",
            FieldType::NanoTimestamp => "io.debezium.time.NanoTimestamp",
            FieldType::ZonedTimestamp => "io.debezium.time.ZonedTimestamp",
            FieldType::ZonedTime => "io.debezium.time.ZonedTime",
            FieldType::Year => "io.debezium.time.Year",
            FieldType::MicroDuration => "io.debezium.time.MicroDuration",
            FieldType::Interval => "io.debezium.time.Interval",
            FieldType::Json => "io.debezium.data.Json",
            FieldType::Uuid => "io.debezium.data.Uuid",
            FieldType::Enum => "io.debezium.data.Enum",
            FieldType::EnumSet => "io.debezium.data.EnumSet",
            FieldType::Xml => "io.debezium.data.Xml",
            FieldType::Ltree => "io.debezium.data.Ltree",
            FieldType::Bits { .. } => "io.debezium.data.Bits",
            FieldType::Struct(_) => "struct",
            FieldType::Array(_) => "array",
            FieldType::Map(..) => "map",
        }
    }
}

/// Types for the columns of schemaless messages, which carry no type on the
/// wire: topic → column → type. The topic `*` applies to every topic (an exact
/// topic entry wins).
#[derive(Debug, Clone, Default)]
pub struct TypeHints {
    topics: HashMap<String, HashMap<String, FieldType>>,
}

impl TypeHints {
    /// Declares that `column` of schemaless messages on `topic` has type `ty`.
    pub fn insert(&mut self, topic: &str, column: &str, ty: FieldType) {
        self.topics
            .entry(topic.to_string())
            .or_default()
            .insert(column.to_string(), ty);
    }

    /// The hinted type of `column` on `topic`.
    pub fn get(&self, topic: &str, column: &str) -> Option<&FieldType> {
        self.for_topic(topic).get(column)
    }

    /// Whether no hint is declared.
    pub fn is_empty(&self) -> bool {
        self.topics.values().all(HashMap::is_empty)
    }

    pub(crate) fn for_topic(&self, topic: &str) -> TopicHints<'_> {
        TopicHints {
            exact: self.topics.get(topic).filter(|m| !m.is_empty()),
            wildcard: self.topics.get("*").filter(|m| !m.is_empty()),
        }
    }
}

/// The hints that apply to one topic, looked up once per record.
#[derive(Clone, Copy)]
pub(crate) struct TopicHints<'h> {
    exact: Option<&'h HashMap<String, FieldType>>,
    wildcard: Option<&'h HashMap<String, FieldType>>,
}

impl<'h> TopicHints<'h> {
    pub(crate) fn get(&self, column: &str) -> Option<&'h FieldType> {
        if let Some(t) = self.exact.and_then(|m| m.get(column)) {
            return Some(t);
        }
        self.wildcard.and_then(|m| m.get(column))
    }
}

/// A value that does not fit its type: `path` is the part below the column
/// (`.srid`, `[2]`), empty for the column itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError {
    pub path: String,
    pub message: String,
}

impl ValueError {
    fn new(message: String) -> Self {
        ValueError {
            path: String::new(),
            message,
        }
    }

    fn expected(what: &str, ty: &FieldType, got: &Json<'_>) -> Self {
        ValueError::new(format!(
            "expected {what} for {}, got {}",
            ty.name(),
            got.snippet()
        ))
    }

    fn under(mut self, segment: &str) -> Self {
        self.path.insert_str(0, segment);
        self
    }
}

type VResult = Result<(), ValueError>;

/// Standard alphabet; padding optional because some producers strip it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Postgres `±infinity` as Debezium writes them for `Timestamp` / `MicroTimestamp`.
const PG_POS_INFINITY: i64 = 9_223_372_036_825_200_000;
const PG_NEG_INFINITY: i64 = -9_223_372_036_832_400_000;

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i64 = 719_163;

/// Appends the canonical text of non-null `v` as a column value of type `ty`.
pub(crate) fn write_text(
    v: &Json<'_>,
    ty: &FieldType,
    out: &mut String,
    scratch: &mut Vec<u8>,
) -> VResult {
    write_value(v, ty, out, scratch, false)
}

/// Appends `v` (which may be null or absent) as a JSON value of `field`'s type.
pub(crate) fn write_field_json(
    v: Option<&Json<'_>>,
    field: &Field,
    out: &mut String,
    scratch: &mut Vec<u8>,
) -> VResult {
    match v {
        Some(Json::Null) | None => {
            let absent = v.is_none();
            match &field.default {
                Some(d) if absent || !field.optional => out.push_str(&d.json),
                _ if field.optional || absent => out.push_str("null"),
                _ => {
                    return Err(ValueError::new(
                        "null in a required (optional:false) field".into(),
                    ));
                }
            }
            Ok(())
        }
        Some(v) => write_value(v, &field.ty, out, scratch, true),
    }
}

fn quoted(nested: bool, out: &mut String, f: impl FnOnce(&mut String) -> VResult) -> VResult {
    if nested {
        out.push('"');
        f(out)?;
        out.push('"');
        Ok(())
    } else {
        f(out)
    }
}

/// Writes `v` (not null) as type `ty`: as column text, or as a JSON value when `nested`.
pub(crate) fn write_value(
    v: &Json<'_>,
    ty: &FieldType,
    out: &mut String,
    scratch: &mut Vec<u8>,
    nested: bool,
) -> VResult {
    match ty {
        FieldType::Int8 => write_int(v, ty, i64::from(i8::MIN), i64::from(i8::MAX), out),
        FieldType::Int16 => write_int(v, ty, i64::from(i16::MIN), i64::from(i16::MAX), out),
        FieldType::Int32 => write_int(v, ty, i64::from(i32::MIN), i64::from(i32::MAX), out),
        FieldType::Int64 | FieldType::Year => write_int(v, ty, i64::MIN, i64::MAX, out),
        FieldType::MicroDuration => write_int(v, ty, i64::MIN, i64::MAX, out),
        FieldType::Float32 => write_f32(v, ty, out, nested),
        FieldType::Float64 => write_f64(v, ty, out, nested),
        FieldType::Boolean => match v {
            Json::Bool(b) => {
                out.push_str(if *b { "true" } else { "false" });
                Ok(())
            }
            _ => Err(ValueError::expected("a boolean", ty, v)),
        },
        FieldType::String
        | FieldType::Json
        | FieldType::Uuid
        | FieldType::Enum
        | FieldType::EnumSet
        | FieldType::Xml
        | FieldType::Ltree
        | FieldType::Interval
        | FieldType::ZonedTimestamp
        | FieldType::ZonedTime => match v {
            Json::String(s) => {
                if nested {
                    write_json_string(s, out);
                } else {
                    out.push_str(s);
                }
                Ok(())
            }
            _ => Err(ValueError::expected("a string", ty, v)),
        },
        FieldType::Bytes => match v {
            Json::String(s) => {
                decode_base64(s, scratch)
                    .map_err(|_| ValueError::expected("base64 bytes", ty, v))?;
                quoted(nested, out, |o| {
                    o.push_str(s);
                    Ok(())
                })
            }
            _ => Err(ValueError::expected("base64 bytes", ty, v)),
        },
        FieldType::Decimal { scale } => {
            quoted(nested, out, |o| write_decimal(v, *scale, ty, o, scratch))
        }
        FieldType::VariableScaleDecimal => {
            quoted(nested, out, |o| write_variable_scale(v, ty, o, scratch))
        }
        FieldType::Date => {
            let days = int_value(v, ty)?;
            quoted(nested, out, |o| {
                write_date_or_infinity(days, o);
                Ok(())
            })
        }
        FieldType::Time => time_value(v, ty, 1_000, 3, out, nested),
        FieldType::MicroTime => time_value(v, ty, 1_000_000, 6, out, nested),
        FieldType::NanoTime => time_value(v, ty, 1_000_000_000, 9, out, nested),
        FieldType::Timestamp => timestamp_value(v, ty, 1_000, 3, out, nested),
        FieldType::MicroTimestamp => timestamp_value(v, ty, 1_000_000, 6, out, nested),
        FieldType::NanoTimestamp => timestamp_value(v, ty, 1_000_000_000, 9, out, nested),
        FieldType::Bits { .. } => match v {
            Json::String(s) => {
                decode_base64(s, scratch)
                    .map_err(|_| ValueError::expected("base64 bytes", ty, v))?;
                quoted(nested, out, |o| {
                    write_bits(scratch, o);
                    Ok(())
                })
            }
            _ => Err(ValueError::expected("base64 bytes", ty, v)),
        },
        FieldType::Struct(st) => write_struct_json(v, st, ty, out, scratch),
        FieldType::Array(item) => match v {
            Json::Array(items) => {
                out.push('[');
                for (i, el) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_field_json(Some(el), item, out, scratch)
                        .map_err(|e| e.under(&format!("[{i}]")))?;
                }
                out.push(']');
                Ok(())
            }
            _ => Err(ValueError::expected("an array", ty, v)),
        },
        FieldType::Map(key, value) => write_map_json(v, key, value, ty, out, scratch),
    }
}

fn write_struct_json(
    v: &Json<'_>,
    st: &StructType,
    ty: &FieldType,
    out: &mut String,
    scratch: &mut Vec<u8>,
) -> VResult {
    let Json::Object(entries) = v else {
        return Err(ValueError::expected("a struct", ty, v));
    };
    out.push('{');
    let mut first = true;
    let mut found = 0usize;
    let mut hint = 0usize;
    for field in &st.fields {
        let idx = find_entry(entries, &field.name, hint);
        if let Some(i) = idx {
            found += 1;
            hint = i + 1;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_json_string(&field.name, out);
        out.push(':');
        let value = idx.and_then(|i| entries.get(i)).map(|(_, v)| v);
        write_field_json(value, field, out, scratch)
            .map_err(|e| e.under(&format!(".{}", field.name)))?;
    }
    if found < entries.len() {
        // Keys the schema does not declare are kept verbatim.
        for (k, val) in entries {
            if st.position(k).is_none() {
                if !first {
                    out.push(',');
                }
                first = false;
                write_json_string(k, out);
                out.push(':');
                val.write_compact(out);
            }
        }
    }
    out.push('}');
    Ok(())
}

fn write_map_json(
    v: &Json<'_>,
    key: &Field,
    value: &Field,
    ty: &FieldType,
    out: &mut String,
    scratch: &mut Vec<u8>,
) -> VResult {
    match v {
        // String keys: JsonConverter writes an object.
        Json::Object(entries) => {
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_field_json(Some(val), value, out, scratch)
                    .map_err(|e| e.under(&format!("[{k:?}]")))?;
            }
            out.push('}');
            Ok(())
        }
        // Other keys: an array of [key, value] pairs.
        Json::Array(pairs) => {
            out.push('[');
            for (i, pair) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let (k, val) = match pair {
                    Json::Array(kv) if kv.len() == 2 => (kv.first(), kv.get(1)),
                    _ => {
                        return Err(ValueError::expected("a [key, value] pair", ty, pair)
                            .under(&format!("[{i}]")));
                    }
                };
                out.push('[');
                write_field_json(k, key, out, scratch)
                    .map_err(|e| e.under(&format!("[{i}].key")))?;
                out.push(',');
                write_field_json(val, value, out, scratch)
                    .map_err(|e| e.under(&format!("[{i}].value")))?;
                out.push(']');
            }
            out.push(']');
            Ok(())
        }
        _ => Err(ValueError::expected("a map", ty, v)),
    }
}

/// Index of key `name` in `entries`, trying `hint` first because Debezium
/// writes payload fields in schema order.
pub(crate) fn find_entry(
    entries: &[(std::borrow::Cow<'_, str>, Json<'_>)],
    name: &str,
    hint: usize,
) -> Option<usize> {
    if let Some((k, _)) = entries.get(hint)
        && k == name
    {
        return Some(hint);
    }
    entries.iter().position(|(k, _)| k == name)
}

fn decode_base64(s: &str, scratch: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
    scratch.clear();
    B64.decode_vec(s.as_bytes(), scratch)
}

/// Parses the text of a JSON integer.
fn parse_int_text(n: &str) -> Option<i64> {
    n.parse::<i64>().ok()
}

fn int_value(v: &Json<'_>, ty: &FieldType) -> Result<i64, ValueError> {
    match v {
        Json::Number(n) => {
            parse_int_text(n).ok_or_else(|| ValueError::expected("an integer", ty, v))
        }
        _ => Err(ValueError::expected("an integer", ty, v)),
    }
}

fn write_int(v: &Json<'_>, ty: &FieldType, min: i64, max: i64, out: &mut String) -> VResult {
    let Json::Number(n) = v else {
        return Err(ValueError::expected("an integer", ty, v));
    };
    match parse_int_text(n) {
        Some(i) if (min..=max).contains(&i) => {
            if i == 0 {
                out.push('0'); // `-0` is valid JSON
            } else {
                out.push_str(n);
            }
            Ok(())
        }
        Some(_) => Err(ValueError::new(format!(
            "{n} is out of range for {}",
            ty.name()
        ))),
        None => Err(ValueError::expected("an integer", ty, v)),
    }
}

/// `NaN` / `Infinity` / `-Infinity` as a JSON token or string.
fn non_finite_token<'v>(v: &'v Json<'_>) -> Option<&'v str> {
    let t = match v {
        Json::Number(n) => n,
        Json::String(s) => s.as_ref(),
        _ => return None,
    };
    matches!(t, "NaN" | "Infinity" | "-Infinity").then_some(t)
}

fn write_non_finite(token: &str, out: &mut String, nested: bool) {
    if nested {
        out.push('"');
        out.push_str(token);
        out.push('"');
    } else {
        out.push_str(token);
    }
}

fn write_f32(v: &Json<'_>, ty: &FieldType, out: &mut String, nested: bool) -> VResult {
    if let Some(t) = non_finite_token(v) {
        write_non_finite(t, out, nested);
        return Ok(());
    }
    let Json::Number(n) = v else {
        return Err(ValueError::expected("a number", ty, v));
    };
    let f: f32 = n
        .parse()
        .map_err(|_| ValueError::expected("a number", ty, v))?;
    if !f.is_finite() {
        return Err(ValueError::new(format!("{n} is out of range for float")));
    }
    let _ = write!(out, "{f}");
    Ok(())
}

fn write_f64(v: &Json<'_>, ty: &FieldType, out: &mut String, nested: bool) -> VResult {
    if let Some(t) = non_finite_token(v) {
        write_non_finite(t, out, nested);
        return Ok(());
    }
    let Json::Number(n) = v else {
        return Err(ValueError::expected("a number", ty, v));
    };
    let f: f64 = n
        .parse()
        .map_err(|_| ValueError::expected("a number", ty, v))?;
    if !f.is_finite() {
        return Err(ValueError::new(format!("{n} is out of range for double")));
    }
    out.push_str(n);
    Ok(())
}

fn write_decimal(
    v: &Json<'_>,
    scale: i32,
    ty: &FieldType,
    out: &mut String,
    scratch: &mut Vec<u8>,
) -> VResult {
    match v {
        Json::String(s) => {
            if decode_base64(s, scratch).is_ok() && !scratch.is_empty() {
                write_twos_complement(scratch, scale, out);
                return Ok(());
            }
            // decimal.handling.mode=string keeps the Decimal schema on some
            // pipelines: accept a plain decimal string.
            if write_decimal_text(s, scale, out).is_some() {
                return Ok(());
            }
            Err(ValueError::expected("base64 bytes", ty, v))
        }
        Json::Number(n) => match write_decimal_text(n, scale, out) {
            Some(()) => Ok(()),
            None => Err(ValueError::new(format!(
                "expected a decimal with at most {scale} fraction digits for {}, got number {n}",
                ty.name()
            ))),
        },
        _ => Err(ValueError::expected("base64 bytes", ty, v)),
    }
}

fn write_variable_scale(
    v: &Json<'_>,
    ty: &FieldType,
    out: &mut String,
    scratch: &mut Vec<u8>,
) -> VResult {
    let (Some(scale), Some(value)) = (v.get("scale"), v.get("value")) else {
        return Err(ValueError::expected("a struct {scale, value}", ty, v));
    };
    let scale = match scale {
        Json::Number(n) => n.parse::<i32>().ok(),
        _ => None,
    }
    .ok_or_else(|| ValueError::expected("an int32 scale", ty, scale).under(".scale"))?;
    if !(-1000..=1000).contains(&scale) {
        return Err(ValueError::new(format!("scale {scale} is out of range")).under(".scale"));
    }
    write_decimal(value, scale, &FieldType::Decimal { scale }, out, scratch)
        .map_err(|e| e.under(".value"))
}

/// Appends the two's-complement big-endian integer `bytes` scaled by `10^-scale`.
pub(crate) fn write_twos_complement(bytes: &[u8], scale: i32, out: &mut String) {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut digits = String::new();
    if bytes.len() <= 16 {
        let mut v: i128 = if negative { -1 } else { 0 };
        for &b in bytes {
            v = (v << 8) | i128::from(b);
        }
        let _ = write!(digits, "{}", v.unsigned_abs());
    } else {
        // Magnitude of the two's complement, then base-256 → base-10^9.
        let mut mag: Vec<u8> = bytes.to_vec();
        if negative {
            for b in mag.iter_mut() {
                *b = !*b;
            }
            for b in mag.iter_mut().rev() {
                let (sum, carry) = b.overflowing_add(1);
                *b = sum;
                if !carry {
                    break;
                }
            }
        }
        big_to_decimal(&mag, &mut digits);
    }
    write_scaled(negative, &digits, scale, out);
}

/// Unsigned big-endian bytes to decimal digits (no leading zeros, `0` for zero).
fn big_to_decimal(bytes: &[u8], digits: &mut String) {
    // Little-endian limbs in base 10^9.
    let mut limbs: Vec<u32> = Vec::with_capacity(bytes.len() / 3 + 1);
    for &b in bytes {
        let mut carry = u64::from(b);
        for limb in limbs.iter_mut() {
            let x = u64::from(*limb) * 256 + carry;
            *limb = (x % 1_000_000_000) as u32;
            carry = x / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    match limbs.split_last() {
        None => digits.push('0'),
        Some((top, rest)) => {
            let _ = write!(digits, "{top}");
            for limb in rest.iter().rev() {
                let _ = write!(digits, "{limb:09}");
            }
        }
    }
}

/// Appends `±digits × 10^-scale` with exactly `scale` fraction digits
/// (`digits` has no leading zeros; `0` is written without sign).
fn write_scaled(negative: bool, digits: &str, scale: i32, out: &mut String) {
    let zero = digits.bytes().all(|b| b == b'0');
    if negative && !zero {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(digits);
        if !zero {
            for _ in 0..scale.unsigned_abs() {
                out.push('0');
            }
        }
        return;
    }
    let scale = scale.unsigned_abs() as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(digits);
    }
}

/// Appends a decimal number text (`-12.5`, `1.2E+3`) normalised to exactly
/// `scale` fraction digits, without going through floating point. `None` when
/// the text is not a decimal number or has significant digits beyond `scale`.
pub(crate) fn write_decimal_text(text: &str, scale: i32, out: &mut String) -> Option<()> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (rest.get(..i)?, rest.get(i + 1..)?.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (mantissa.get(..i)?, mantissa.get(i + 1..)?),
        None => (mantissa, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = all_digits × 10^(exp - frac.len()); unscaled = value × 10^scale.
    let shift = exp
        .checked_sub(i64::try_from(frac.len()).ok()?)?
        .checked_add(i64::from(scale))?;
    let mut digits = String::with_capacity(int.len() + frac.len());
    digits.push_str(int.trim_start_matches('0'));
    digits.push_str(frac);
    let digits = digits.trim_start_matches('0');
    let mut unscaled = String::from(if digits.is_empty() { "0" } else { digits });
    if shift >= 0 {
        if unscaled != "0" {
            if shift > 4096 || unscaled.len() + shift as usize > 4096 {
                return None;
            }
            unscaled.extend(std::iter::repeat_n('0', shift as usize));
        }
    } else {
        let drop = usize::try_from(shift.unsigned_abs()).ok()?;
        let keep = unscaled.len().saturating_sub(drop);
        let dropped = unscaled.get(keep..)?;
        if !dropped.bytes().all(|b| b == b'0') {
            return None;
        }
        unscaled.truncate(keep);
        if unscaled.is_empty() {
            unscaled.push('0');
        }
    }
    write_scaled(negative, &unscaled, scale, out);
    Some(())
}

/// Little-endian bytes as an unsigned integer: decimal up to 128 bits, else `0x` hex.
fn write_bits(bytes: &[u8], out: &mut String) {
    if bytes.len() <= 16 {
        let mut v: u128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            v |= u128::from(b) << (8 * i);
        }
        let _ = write!(out, "{v}");
    } else {
        out.push_str("0x");
        let mut started = false;
        for &b in bytes.iter().rev() {
            if !started && b == 0 {
                continue;
            }
            if started {
                let _ = write!(out, "{b:02x}");
            } else {
                let _ = write!(out, "{b:x}");
                started = true;
            }
        }
        if !started {
            out.push('0');
        }
    }
}

fn push_2(out: &mut String, v: u32) {
    out.push(char::from(b'0' + (v / 10 % 10) as u8));
    out.push(char::from(b'0' + (v % 10) as u8));
}

fn push_frac(out: &mut String, mut v: u64, digits: usize) {
    let mut buf = [b'0'; 9];
    for slot in buf.iter_mut().take(digits).rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &b in buf.iter().take(digits) {
        out.push(char::from(b));
    }
}

fn write_year(out: &mut String, year: i32) {
    if (0..=9999).contains(&year) {
        let y = year.unsigned_abs();
        push_2(out, y / 100);
        push_2(out, y % 100);
    } else if year > 9999 {
        let _ = write!(out, "+{year}");
    } else {
        let _ = write!(out, "-{:04}", year.unsigned_abs());
    }
}

fn date_from_days(days: i64) -> Option<NaiveDate> {
    let ce = i32::try_from(days.checked_add(UNIX_EPOCH_CE_DAYS)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(ce)
}

fn write_date(out: &mut String, d: NaiveDate) {
    write_year(out, d.year());
    out.push('-');
    push_2(out, d.month());
    out.push('-');
    push_2(out, d.day());
}

fn write_infinity(negative: bool, out: &mut String) {
    out.push_str(if negative { "-infinity" } else { "infinity" });
}

/// `YYYY-MM-DD` of a day count since the epoch (`±infinity` beyond chrono's range).
pub(crate) fn write_date_or_infinity(days: i64, out: &mut String) {
    match date_from_days(days) {
        Some(d) => write_date(out, d),
        None => write_infinity(days < 0, out),
    }
}

fn time_value(
    v: &Json<'_>,
    ty: &FieldType,
    per_sec: i64,
    digits: usize,
    out: &mut String,
    nested: bool,
) -> VResult {
    let value = int_value(v, ty)?;
    quoted(nested, out, |o| {
        write_time_of_day(value, per_sec, digits, o);
        Ok(())
    })
}

/// `HH:MM:SS.fff…` of a duration past midnight; hours may exceed 23 and a
/// negative value gets a `-` (MySQL `TIME` range).
pub(crate) fn write_time_of_day(value: i64, per_sec: i64, digits: usize, out: &mut String) {
    if value < 0 {
        out.push('-');
    }
    let abs = value.unsigned_abs();
    let per_sec = per_sec.unsigned_abs();
    let secs = abs / per_sec;
    let frac = abs % per_sec;
    let hours = secs / 3600;
    if hours < 100 {
        push_2(out, hours as u32);
    } else {
        let _ = write!(out, "{hours}");
    }
    out.push(':');
    push_2(out, (secs / 60 % 60) as u32);
    out.push(':');
    push_2(out, (secs % 60) as u32);
    out.push('.');
    push_frac(out, frac, digits);
}

fn timestamp_value(
    v: &Json<'_>,
    ty: &FieldType,
    per_sec: i64,
    digits: usize,
    out: &mut String,
    nested: bool,
) -> VResult {
    let value = int_value(v, ty)?;
    quoted(nested, out, |o| {
        write_timestamp(value, per_sec, digits, o);
        Ok(())
    })
}

/// `YYYY-MM-DDTHH:MM:SS.fff…` of an epoch count in `1/per_sec` seconds.
pub(crate) fn write_timestamp(value: i64, per_sec: i64, digits: usize, out: &mut String) {
    let sentinel = if per_sec == 1_000_000_000 {
        value == i64::MAX || value == i64::MIN
    } else {
        value == PG_POS_INFINITY || value == PG_NEG_INFINITY
    };
    if sentinel {
        write_infinity(value < 0, out);
        return;
    }
    let secs = value.div_euclid(per_sec);
    let frac = value.rem_euclid(per_sec).unsigned_abs();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400).unsigned_abs();
    let Some(date) = date_from_days(days) else {
        write_infinity(value < 0, out);
        return;
    };
    write_date(out, date);
    out.push('T');
    push_2(out, (sod / 3600) as u32);
    out.push(':');
    push_2(out, (sod / 60 % 60) as u32);
    out.push(':');
    push_2(out, (sod % 60) as u32);
    out.push('.');
    push_frac(out, frac, digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str, ty: FieldType) -> Result<String, ValueError> {
        let j = crate::cdc::json::parse(v.as_bytes()).unwrap();
        let mut out = String::new();
        write_text(&j, &ty, &mut out, &mut Vec::new()).map(|()| out)
    }

    #[test]
    fn decimals() {
        let d = |s| FieldType::Decimal { scale: s };
        assert_eq!(text("\"D54=\"", d(2)).unwrap(), "39.98");
        assert_eq!(text("\"C7c=\"", d(2)).unwrap(), "29.99");
        assert_eq!(text("\"/w==\"", d(2)).unwrap(), "-0.01");
        assert_eq!(text("\"AA==\"", d(2)).unwrap(), "0.00");
        assert_eq!(text("\"AQ==\"", d(-2)).unwrap(), "100");
        assert_eq!(text("12345.110", d(3)).unwrap(), "12345.110");
        assert_eq!(text("1.1", d(1)).unwrap(), "1.1");
        assert_eq!(text("12.5", d(3)).unwrap(), "12.500");
        assert_eq!(text("-1.2E+3", d(1)).unwrap(), "-1200.0");
        assert_eq!(text("0.0", d(0)).unwrap(), "0");
        assert_eq!(text("-0.05", d(2)).unwrap(), "-0.05");
        assert!(text("12.55", d(1)).is_err());
        assert_eq!(text("\"12.5\"", d(2)).unwrap(), "12.50");
        assert!(text("\"!!\"", d(2)).is_err());
        // 2^127 and -(2^127) - 1 … beyond i128: 17 bytes.
        let mut big = vec![0x01u8];
        big.extend([0u8; 16]);
        let mut out = String::new();
        write_twos_complement(&big, 0, &mut out);
        assert_eq!(out, "340282366920938463463374607431768211456");
        let mut neg = vec![0xffu8];
        neg.extend([0u8; 16]);
        out.clear();
        write_twos_complement(&neg, 2, &mut out);
        assert_eq!(out, "-3402823669209384634633746074317682114.56");
    }

    #[test]
    fn times() {
        assert_eq!(text("16852", FieldType::Date).unwrap(), "2016-02-21");
        assert_eq!(text("-1", FieldType::Date).unwrap(), "1969-12-31");
        assert_eq!(
            text("36803000000", FieldType::MicroTime).unwrap(),
            "10:13:23.000000"
        );
        assert_eq!(text("36803123", FieldType::Time).unwrap(), "10:13:23.123");
        assert_eq!(
            text("36803123456789", FieldType::NanoTime).unwrap(),
            "10:13:23.123456789"
        );
        assert_eq!(
            text("1679581805123", FieldType::Timestamp).unwrap(),
            "2023-03-23T14:30:05.123"
        );
        assert_eq!(
            text("-1", FieldType::Timestamp).unwrap(),
            "1969-12-31T23:59:59.999"
        );
        assert_eq!(
            text("1718461481941184957", FieldType::NanoTimestamp).unwrap(),
            "2024-06-15T14:24:41.941184957"
        );
        assert_eq!(
            text("9223372036825200000", FieldType::MicroTimestamp).unwrap(),
            "infinity"
        );
        assert_eq!(
            text("-9223372036832400000", FieldType::Timestamp).unwrap(),
            "-infinity"
        );
        assert_eq!(
            text("9223372036854775807", FieldType::NanoTimestamp).unwrap(),
            "infinity"
        );
    }

    #[test]
    fn floats_bits_ints() {
        assert_eq!(text("0.3173", FieldType::Float32).unwrap(), "0.3173");
        assert_eq!(text("NaN", FieldType::Float32).unwrap(), "NaN");
        assert!(text("1e39", FieldType::Float32).is_err());
        assert_eq!(
            text("3.140000104904175", FieldType::Float64).unwrap(),
            "3.140000104904175"
        );
        assert_eq!(
            text("\"xwcAAAAAAAA=\"", FieldType::Bits { length: 64 }).unwrap(),
            "1991"
        );
        assert_eq!(text("128", FieldType::Int16).unwrap(), "128");
        assert!(text("128", FieldType::Int8).is_err());
        assert!(text("1.5", FieldType::Int32).is_err());
        assert!(text("\"1\"", FieldType::Int32).is_err());
    }

    #[test]
    fn hints() {
        assert_eq!(
            FieldType::from_hint("decimal(2)"),
            Ok(FieldType::Decimal { scale: 2 })
        );
        assert_eq!(
            FieldType::from_hint("timestamp_us"),
            Ok(FieldType::MicroTimestamp)
        );
        assert!(FieldType::from_hint("nope").is_err());
        let mut h = TypeHints::default();
        h.insert("*", "a", FieldType::Int32);
        h.insert("t", "b", FieldType::Date);
        assert_eq!(h.get("t", "a"), Some(&FieldType::Int32));
        assert_eq!(h.get("t", "b"), Some(&FieldType::Date));
        assert_eq!(h.get("u", "b"), None);
    }
}
