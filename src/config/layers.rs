//! The layering of `lakehouse.toml` and `LAKEHOUSE_*` overrides, with figment.
//!
//! figment merges the layers and remembers, for every value, which layer it
//! came from, so an error names the file (and the line) or the environment
//! variable that holds the bad value. The layers are this module's own
//! providers rather than figment's `Toml` and `Env`:
//! - the file is parsed with the crate's `toml` (TOML 1.1, the parser of the
//!   spec files and of the `[schedule]` line lookup), so a file that parses
//!   for one parses for all;
//! - overrides come from the `env` the caller passes (tests and the compose
//!   check pass their own, not the process's), and one provider per variable
//!   makes each value's provenance the variable's own name. figment's `Env`
//!   would also split names at dots, which Kafka property names contain
//!   (`LAKEHOUSE_KAFKA__PROPERTIES__SASL.PASSWORD`).
//!
//! Override values are strings, typed by the field they land in (the
//! configuration is extracted lossily): `LAKEHOUSE_KAFKA__GROUP_ID=12345`
//! is the string `"12345"`, `LAKEHOUSE_BRONZE__FLUSH_ROWS=7` the number 7.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::error::{Kind, OneOf};
use figment::value::{Dict, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use toml::de::{DeTable, DeValue};

use super::ENV_PREFIX;
use crate::error::{Error, Result};

/// The configuration file as a layer: its keys, named by its path.
pub(super) struct FileLayer {
    file: PathBuf,
    dict: Dict,
}

impl FileLayer {
    /// Parses the file's text; a syntax error names `file`, and its message
    /// the line and column.
    pub(super) fn parse(text: &str, file: &Path) -> Result<Self> {
        let dict = toml::from_str::<Dict>(text).map_err(|e| Error::Config {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            file: file.to_path_buf(),
            dict,
        })
    }

    /// The dotted paths of the keys set in the file (`silver.layers_dir`).
    pub(super) fn keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        leaf_keys(&self.dict, "", &mut keys);
        keys
    }
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        Metadata::from(
            self.file.display().to_string(),
            Source::File(self.file.clone()),
        )
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The dotted paths of every leaf key of `dict`, prefixed with `prefix`.
/// Arrays (`schedule.jobs`) are leaves: they are set as a whole.
fn leaf_keys(dict: &Dict, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Dict(_, inner) => leaf_keys(inner, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

/// One `LAKEHOUSE_<SECTION>__<KEY>` override as a layer, named by its variable.
pub(super) struct EnvVar {
    name: String,
    keys: Vec<String>,
    raw: String,
}

impl EnvVar {
    /// The override set by `name=raw`, when `name` is one: it starts with
    /// [`ENV_PREFIX`] and has a `__` (`LAKEHOUSE_LOG`, `LAKEHOUSE_CONFIG` and
    /// the like are not configuration keys). Keys are case-insensitive.
    pub(super) fn from_pair(name: String, raw: String) -> Option<Self> {
        let path = name.strip_prefix(ENV_PREFIX)?;
        if !path.contains("__") {
            return None;
        }
        let keys = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        Some(Self { name, keys, raw })
    }

    /// The dotted key it sets (`kafka.properties.sasl.password`).
    pub(super) fn key(&self) -> String {
        self.keys.join(".")
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::from(
            format!("environment variable {}", self.name),
            Source::Custom(self.name.clone()),
        )
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        if self.keys.iter().any(String::is_empty) {
            return Err(format!(
                "`{}` has an empty key: `__` separates the keys of `{ENV_PREFIX}<SECTION>__<KEY>`",
                self.name
            )
            .into());
        }
        let Some((last, parents)) = self.keys.split_last() else {
            return Err(format!("`{}` names no key", self.name).into());
        };
        // Built segment by segment, not with figment's dotted-key `nest`:
        // a segment may hold dots (Kafka property names).
        let mut dict = Dict::new();
        dict.insert(last.clone(), env_value(last, &self.raw));
        for key in parents.iter().rev() {
            let mut outer = Dict::new();
            outer.insert(key.clone(), Value::from(dict));
            dict = outer;
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// The value of an override, before it meets its field.
///
/// A string, which the lossy extraction turns into the number or boolean a
/// numeric or boolean field asks for and leaves as it is for a string field.
/// Written in figment's value syntax, an array (`[a, b]`), a table
/// (`{k = v}`) or a quoted string (`"a,b"`) is read as one, its scalars as
/// strings for the same reason. A comma-separated `topics` is a list.
fn env_value(key: &str, raw: &str) -> Value {
    if raw.trim_start().starts_with(['[', '{', '"']) {
        // figment's parser falls back to the whole text as a string when
        // the text is not one value.
        if let Ok(value @ (Value::Array(..) | Value::Dict(..))) = raw.parse::<Value>() {
            return scalars_as_strings(value);
        }
        if let Ok(Value::String(_, text)) = raw.trim().parse::<Value>()
            && text != raw.trim()
        {
            return topics_or_string(key, &text);
        }
    }
    topics_or_string(key, raw)
}

/// `text` as a string, or as a list split at commas for `topics` (a list
/// key that took `a,b` from the environment before arrays could be written).
fn topics_or_string(key: &str, text: &str) -> Value {
    if key == "topics" {
        let topics: Vec<Value> = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Value::from)
            .collect();
        return Value::from(topics);
    }
    Value::from(text.to_string())
}

/// `value` with every number, boolean and character turned into its text,
/// so that the field, not the parser, decides the type.
fn scalars_as_strings(value: Value) -> Value {
    match value {
        Value::Array(tag, items) => {
            Value::Array(tag, items.into_iter().map(scalars_as_strings).collect())
        }
        Value::Dict(tag, dict) => Value::Dict(
            tag,
            dict.into_iter()
                .map(|(k, v)| (k, scalars_as_strings(v)))
                .collect(),
        ),
        Value::Num(tag, num) => Value::String(tag, num_text(num)),
        Value::Bool(tag, b) => Value::String(tag, b.to_string()),
        Value::Char(tag, c) => Value::String(tag, c.to_string()),
        other => other,
    }
}

/// The decimal text of a number figment's parser read.
fn num_text(num: Num) -> String {
    num.to_u128()
        .map(|n| n.to_string())
        .or_else(|| num.to_i128().map(|n| n.to_string()))
        .or_else(|| num.to_f64().map(|n| n.to_string()))
        .unwrap_or_default()
}

/// The layers merged: the file, then each override in order (the last wins).
pub(super) fn merge(file: &FileLayer, overrides: &[EnvVar]) -> Figment {
    overrides
        .iter()
        .fold(Figment::from(file), |figment, var| figment.merge(var))
}

/// A figment error as the crate's, with the provenance of the bad value as
/// its `file`: the configuration file (`path:line` when the key is found in
/// `text`), or `environment variable LAKEHOUSE_...`. Without provenance
/// (a problem of the whole document) it is `file`.
pub(super) fn error(err: figment::Error, text: &str, file: &Path) -> Error {
    // Extraction stops at the first bad value; a chain only holds the
    // errors of several layers, and the first is the earliest layer's.
    let Some(first) = err.into_iter().next() else {
        return Error::Config {
            file: file.to_path_buf(),
            message: "invalid configuration".into(),
        };
    };
    let key = dotted(&first.path);
    // figment writes the expected names as "expected `one of `a`, `b``".
    let what = match &first.kind {
        Kind::UnknownField(found, expected) => {
            format!("unknown key `{found}`, expected {}", OneOf(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}`, expected {}", OneOf(expected))
        }
        kind => kind.to_string(),
    };
    let message = if key.is_empty() {
        what
    } else {
        format!("`{key}`: {what}")
    };
    let origin = match first.metadata.as_ref() {
        Some(metadata) => match metadata.source.as_ref().and_then(Source::file_path) {
            Some(path) => match line_of(text, &first.path) {
                Some(line) => PathBuf::from(format!("{}:{line}", path.display())),
                None => path.to_path_buf(),
            },
            None => PathBuf::from(metadata.name.to_string()),
        },
        None => file.to_path_buf(),
    };
    Error::Config {
        file: origin,
        message,
    }
}

/// A validation error (whose message starts with the dotted key, as those
/// of `Config::validate` and `[schedule]` do) blamed on the override that set
/// the key, when one did: the file's value, if any, was not the one used.
pub(super) fn blame(err: Error, overrides: &[EnvVar]) -> Error {
    let Error::Config { file, message } = err else {
        return err;
    };
    // Keys in messages quote segments with dots; override keys do not.
    let unquoted = message.replace('"', "");
    let culprit = overrides.iter().rev().find(|var| {
        unquoted
            .strip_prefix(&var.key())
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    });
    match culprit {
        Some(var) => Error::Config {
            file: PathBuf::from(format!("environment variable {}", var.name)),
            message,
        },
        None => Error::Config { file, message },
    }
}

/// The key path as written in TOML: dotted, with segments that hold a dot
/// quoted (`bronze.schemaless_types."shop.public.orders".total`).
fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|segment| {
            if segment.contains('.') {
                format!("\"{segment}\"")
            } else {
                segment.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The 1-based line of the key at `path` (segments of tables, or indices of
/// arrays) in the TOML `text`, when it is there.
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let mut current = &root;
    let mut start = None;
    for segment in path {
        let (span, next) = match current {
            DeValue::Table(table) => {
                let (key, value) = table.iter().find(|(k, _)| k.get_ref() == segment)?;
                (key.span(), value.get_ref())
            }
            DeValue::Array(array) => {
                let item = array.get(segment.parse::<usize>().ok()?)?;
                (item.span(), item.get_ref())
            }
            _ => return None,
        };
        start = Some(span.start);
        current = next;
    }
    let before = text.get(..start?)?;
    Some(before.matches('\n').count() + 1)
}
