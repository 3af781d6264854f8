//! File pruning by key statistics: which files of a table may hold a key.
//!
//! A rewrite never touches more than the files whose key range (the
//! `minValues` / `maxValues` statistics of the first key column) may hold a
//! changed key; of those, only files where a row actually changed are removed.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};

use super::TableFile;
use crate::error::{Error, Result};

/// Separates key parts in a key string (a control character no canonical
/// text contains).
pub const KEY_SEPARATOR: char = '\u{1f}';

/// Sorted values of one key column, for pruning.
#[derive(Debug, Clone)]
pub enum KeyValues {
    /// Integer keys.
    Int(Vec<i64>),
    /// Text-like keys compared as strings (text, dates).
    Text(Vec<String>),
    /// Keys of a type statistics cannot prune on: every file is a candidate.
    Any,
}

impl KeyValues {
    /// The non-null values of `array`.
    pub fn from_array(array: &dyn Array) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => {
                let ints = cast(array, &DataType::Int64)?;
                let mut v: Vec<i64> = ints.as_primitive::<Int64Type>().iter().flatten().collect();
                v.sort_unstable();
                v.dedup();
                KeyValues::Int(v)
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Date32 => {
                let text = cast(array, &DataType::Utf8)?;
                let mut v: Vec<String> = text
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect();
                v.sort_unstable();
                v.dedup();
                KeyValues::Text(v)
            }
            _ => KeyValues::Any,
        })
    }

    /// Per element of `array`, whether it is one of the values (`None`:
    /// values of a type that cannot be compared, any row may match).
    pub fn mask(&self, array: &dyn Array) -> Result<Option<arrow::array::BooleanArray>> {
        Ok(match self {
            KeyValues::Any => None,
            KeyValues::Int(values) => {
                let ints = cast(array, &DataType::Int64)?;
                Some(
                    ints.as_primitive::<Int64Type>()
                        .iter()
                        .map(|v| Some(v.is_some_and(|v| values.binary_search(&v).is_ok())))
                        .collect(),
                )
            }
            KeyValues::Text(values) => {
                let text = cast(array, &DataType::Utf8)?;
                Some(
                    text.as_string::<i32>()
                        .iter()
                        .map(|v| {
                            Some(v.is_some_and(|v| {
                                values.binary_search_by(|x| x.as_str().cmp(v)).is_ok()
                            }))
                        })
                        .collect(),
                )
            }
        })
    }

    /// Whether any value may be in `[min, max]` (JSON statistics).
    fn any_within(&self, min: Option<&serde_json::Value>, max: Option<&serde_json::Value>) -> bool {
        match self {
            KeyValues::Any => true,
            KeyValues::Int(values) => {
                let (Some(min), Some(max)) =
                    (min.and_then(|v| v.as_i64()), max.and_then(|v| v.as_i64()))
                else {
                    return true;
                };
                let start = values.partition_point(|v| *v < min);
                values.get(start).is_some_and(|v| *v <= max)
            }
            KeyValues::Text(values) => {
                let (Some(min), Some(max)) =
                    (min.and_then(|v| v.as_str()), max.and_then(|v| v.as_str()))
                else {
                    return true;
                };
                // Statistics may be truncated prefixes: compare on the prefix
                // (prefixes keep the order, so the first value >= min decides).
                let start = values.partition_point(|v| v.as_str() < min);
                values.get(start).is_some_and(|v| {
                    let prefix: String = v.chars().take(max.chars().count()).collect();
                    prefix.as_str() <= max
                })
            }
        }
    }
}

/// Indexes of `files` that may hold one of `values` in `column`.
pub fn candidates(files: &[TableFile], column: &str, values: &KeyValues) -> Vec<usize> {
    files
        .iter()
        .enumerate()
        .filter(|(_, file)| {
            let Some(stats) = &file.stats else {
                return true;
            };
            if stats.get("numRecords").and_then(|n| n.as_i64()) == Some(0) {
                return false;
            }
            let min = stats.get("minValues").and_then(|m| m.get(column));
            let max = stats.get("maxValues").and_then(|m| m.get(column));
            if min.is_none() && max.is_none() {
                // Only nulls (the unknown member) or no statistics.
                let nulls = stats
                    .get("nullCount")
                    .and_then(|m| m.get(column))
                    .and_then(|n| n.as_i64());
                let rows = stats.get("numRecords").and_then(|n| n.as_i64());
                return !(nulls.is_some() && nulls == rows);
            }
            values.any_within(min, max)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The key strings of `columns` in `batch`; `None` where any part is null.
pub fn key_strings(batch: &RecordBatch, columns: &[String]) -> Result<Vec<Option<String>>> {
    let mut parts: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for column in columns {
        let array = batch
            .column_by_name(column)
            .ok_or_else(|| Error::Internal(format!("key column `{column}` is missing")))?;
        parts.push(cast(array, &DataType::Utf8)?);
    }
    let strings: Vec<_> = parts.iter().map(|a| a.as_string::<i32>()).collect();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if strings.iter().any(|s| s.is_null(row)) {
            out.push(None);
            continue;
        }
        let mut key = String::new();
        for (i, s) in strings.iter().enumerate() {
            if i > 0 {
                key.push(KEY_SEPARATOR);
            }
            key.push_str(s.value(row));
        }
        out.push(Some(key));
    }
    Ok(out)
}
