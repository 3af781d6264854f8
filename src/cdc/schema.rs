//! Kafka Connect schemas as JsonConverter writes them (`{"type":"struct",
//! "fields":[...], "name":..., "parameters":{...}}`), parsed into [`Field`]s.

use std::collections::HashMap;

use super::json::Json;
use super::logical::{FieldType, write_field_json, write_text};

/// One node of a Connect schema: a struct field, an array item, a map key or
/// value, or the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name (`""` for a root, array item or map key/value).
    pub name: String,
    /// The resolved type.
    pub ty: FieldType,
    /// `optional` (false when absent, as in Connect).
    pub optional: bool,
    /// The Connect schema `name` (`io.debezium.time.Date`, `x.y.Envelope`, ...).
    pub schema_name: Option<String>,
    /// The `default`, pre-rendered; `None` when absent or `null`.
    pub default: Option<FieldDefault>,
}

/// A schema default rendered once, when the schema is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDefault {
    /// Canonical column text.
    pub text: String,
    /// JSON rendering, for nested values.
    pub json: String,
}

/// The fields of a Connect `struct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructType {
    /// The struct's Connect schema name.
    pub name: Option<String>,
    /// Fields in schema order.
    pub fields: Vec<Field>,
    /// Name → index, for wide structs whose payload is not in schema order.
    index: HashMap<String, usize>,
}

/// Below this many fields a linear scan beats hashing.
const INDEX_MIN_FIELDS: usize = 12;

impl StructType {
    /// A struct type of `fields`.
    pub fn new(name: Option<String>, fields: Vec<Field>) -> Self {
        let index = if fields.len() >= INDEX_MIN_FIELDS {
            fields
                .iter()
                .enumerate()
                .rev()
                .map(|(i, f)| (f.name.clone(), i))
                .collect()
        } else {
            HashMap::new()
        };
        StructType {
            name,
            fields,
            index,
        }
    }

    /// Position of field `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        if self.fields.len() >= INDEX_MIN_FIELDS {
            self.index.get(name).copied()
        } else {
            self.fields.iter().position(|f| f.name == name)
        }
    }

    /// Field `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.position(name).and_then(|i| self.fields.get(i))
    }
}

impl Field {
    /// The struct type when this field is a struct.
    pub fn as_struct(&self) -> Option<&StructType> {
        match &self.ty {
            FieldType::Struct(st) => Some(st),
            _ => None,
        }
    }

    /// Parses a schema node. `path` names it in errors.
    pub fn parse(node: &Json<'_>, path: &str) -> Result<Field, (String, String)> {
        parse_field(node, path, String::new(), 0)
    }
}

fn bad(path: &str, message: impl Into<String>) -> (String, String) {
    (path.to_string(), message.into())
}

/// Deeper schemas are rejected (the JSON depth limit bounds this too).
const MAX_SCHEMA_DEPTH: usize = 64;

fn parse_field(
    node: &Json<'_>,
    path: &str,
    name: String,
    depth: usize,
) -> Result<Field, (String, String)> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(bad(path, "schema nested too deeply"));
    }
    let Json::Object(entries) = node else {
        return Err(bad(
            path,
            format!("expected a schema object, got {}", node.snippet()),
        ));
    };
    let mut ty_name = None;
    let mut optional = false;
    let mut schema_name = None;
    let mut parameters = None;
    let mut default = None;
    let mut fields = None;
    let mut items = None;
    let mut keys = None;
    let mut values = None;
    for (k, v) in entries {
        match k.as_ref() {
            "type" => ty_name = v.as_str(),
            "optional" => optional = matches!(v, Json::Bool(true)),
            "name" => schema_name = v.as_str().map(str::to_string),
            "parameters" => parameters = Some(v),
            "default" => default = Some(v),
            "fields" => fields = Some(v),
            "items" => items = Some(v),
            "keys" => keys = Some(v),
            "values" => values = Some(v),
            _ => {}
        }
    }
    let ty_name = ty_name.ok_or_else(|| bad(path, "missing \"type\""))?;
    let param = |key: &str| -> Option<String> {
        parameters.and_then(|p| p.get(key)).and_then(|v| match v {
            Json::String(s) => Some(s.to_string()),
            Json::Number(n) => Some((*n).to_string()),
            _ => None,
        })
    };
    let physical = match ty_name {
        "int8" => FieldType::Int8,
        "int16" => FieldType::Int16,
        "int32" => FieldType::Int32,
        "int64" => FieldType::Int64,
        "float" | "float32" => FieldType::Float32,
        "double" | "float64" => FieldType::Float64,
        "boolean" => FieldType::Boolean,
        "string" => FieldType::String,
        "bytes" => FieldType::Bytes,
        "struct" => {
            let list = match fields {
                Some(Json::Array(list)) => list.as_slice(),
                None | Some(Json::Null) => &[],
                Some(other) => return Err(bad(path, format!("\"fields\" is {}", other.snippet()))),
            };
            let mut parsed = Vec::with_capacity(list.len());
            for (i, f) in list.iter().enumerate() {
                let fpath = format!("{path}.fields[{i}]");
                let fname = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad(&fpath, "missing \"field\" name"))?;
                parsed.push(parse_field(f, &fpath, fname.to_string(), depth + 1)?);
            }
            FieldType::Struct(Box::new(StructType::new(schema_name.clone(), parsed)))
        }
        "array" => {
            let item = items.ok_or_else(|| bad(path, "array without \"items\""))?;
            FieldType::Array(Box::new(parse_field(
                item,
                &format!("{path}.items"),
                String::new(),
                depth + 1,
            )?))
        }
        "map" => {
            let k = keys.ok_or_else(|| bad(path, "map without \"keys\""))?;
            let v = values.ok_or_else(|| bad(path, "map without \"values\""))?;
            FieldType::Map(
                Box::new(parse_field(
                    k,
                    &format!("{path}.keys"),
                    String::new(),
                    depth + 1,
                )?),
                Box::new(parse_field(
                    v,
                    &format!("{path}.values"),
                    String::new(),
                    depth + 1,
                )?),
            )
        }
        other => return Err(bad(path, format!("unknown type {other:?}"))),
    };
    let ty = match schema_name.as_deref() {
        Some(logical) => resolve_logical(logical, physical, &param).map_err(|m| bad(path, m))?,
        None => physical,
    };
    let mut field = Field {
        name,
        ty,
        optional,
        schema_name,
        default: None,
    };
    if let Some(d) = default.filter(|d| !d.is_null()) {
        field.default = render_default(d, &field);
    }
    Ok(field)
}

/// Applies a logical type name when it fits the physical type; unknown names
/// or unexpected physical types keep the physical type (e.g. RisingWave
/// writes some logical names on strings).
fn resolve_logical(
    logical: &str,
    physical: FieldType,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<FieldType, String> {
    use FieldType as T;
    let is_int = matches!(physical, T::Int8 | T::Int16 | T::Int32 | T::Int64);
    let resolved = match (logical, &physical) {
        ("org.apache.kafka.connect.data.Decimal", T::Bytes) => {
            let scale = param("scale").unwrap_or_else(|| "0".to_string());
            let scale = scale
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|s| (-1000..=1000).contains(s))
                .ok_or_else(|| format!("bad Decimal scale {scale:?}"))?;
            T::Decimal { scale }
        }
        ("io.debezium.data.VariableScaleDecimal", T::Struct(_)) => T::VariableScaleDecimal,
        ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", _) if is_int => T::Date,
        ("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time", _) if is_int => T::Time,
        ("io.debezium.time.MicroTime", _) if is_int => T::MicroTime,
        ("io.debezium.time.NanoTime", _) if is_int => T::NanoTime,
        ("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp", _) if is_int => {
            T::Timestamp
        }
        ("io.debezium.time.MicroTimestamp", _) if is_int => T::MicroTimestamp,
        ("io.debezium.time.NanoTimestamp", _) if is_int => T::NanoTimestamp,
        ("io.debezium.time.Year", _) if is_int => T::Year,
        ("io.debezium.time.MicroDuration", _) if is_int => T::MicroDuration,
        ("io.debezium.time.ZonedTimestamp", T::String) => T::ZonedTimestamp,
        ("io.debezium.time.ZonedTime", T::String) => T::ZonedTime,
        ("io.debezium.time.Interval", T::String) => T::Interval,
        ("io.debezium.data.Json", T::String) => T::Json,
        ("io.debezium.data.Uuid", T::String) => T::Uuid,
        ("io.debezium.data.Enum", T::String) => T::Enum,
        ("io.debezium.data.EnumSet", T::String) => T::EnumSet,
        ("io.debezium.data.Xml", T::String) => T::Xml,
        ("io.debezium.data.Ltree", T::String) => T::Ltree,
        ("io.debezium.data.Bits", T::Bytes) => T::Bits {
            length: param("length")
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0),
        },
        _ => physical,
    };
    Ok(resolved)
}

/// Renders a schema default once; a default that does not fit its own type is
/// ignored rather than failing every record of the table.
fn render_default(d: &Json<'_>, field: &Field) -> Option<FieldDefault> {
    let mut scratch = Vec::new();
    let mut text = String::new();
    write_text(d, &field.ty, &mut text, &mut scratch).ok()?;
    let mut json = String::new();
    let probe = Field {
        default: None,
        ..field.clone()
    };
    write_field_json(Some(d), &probe, &mut json, &mut scratch).ok()?;
    Some(FieldDefault { text, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_logical_types_and_defaults() {
        let s = br#"{"type":"struct","name":"x.Value","fields":[
            {"type":"int32","optional":false,"default":0,"field":"id"},
            {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"p"},
            {"type":"string","name":"io.debezium.time.Date","field":"odd"},
            {"type":"array","items":{"type":"int32","optional":true},"field":"a"}]}"#;
        let j = crate::cdc::json::parse(s).unwrap();
        let f = Field::parse(&j, "value.schema").unwrap();
        let st = f.as_struct().unwrap();
        assert_eq!(st.name.as_deref(), Some("x.Value"));
        assert_eq!(
            st.fields[0].default.as_ref().map(|d| d.text.as_str()),
            Some("0")
        );
        assert_eq!(st.fields[1].ty, FieldType::Decimal { scale: 2 });
        assert_eq!(st.fields[2].ty, FieldType::String);
        assert!(matches!(st.fields[3].ty, FieldType::Array(_)));
        assert_eq!(st.position("a"), Some(3));
        let bad =
            crate::cdc::json::parse(br#"{"type":"struct","fields":[{"type":"nope","field":"x"}]}"#)
                .unwrap();
        let e = Field::parse(&bad, "value.schema").unwrap_err();
        assert_eq!(e.0, "value.schema.fields[0]");
    }
}
