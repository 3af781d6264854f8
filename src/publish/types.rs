//! Arrow column types → Postgres column types, and values → `COPY` CSV text.
//!
//! Types are exact: decimals stay `numeric(p,s)` and travel as their exact
//! decimal text, zoned timestamps become `timestamptz`, dates `date`.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

/// The Postgres type of an Arrow column type, or an error naming the column.
pub fn pg_type(column: &str, data_type: &DataType) -> Result<String> {
    Ok(match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => {
            if *s < 0 {
                format!("numeric({},0)", i16::from(*p) - i16::from(*s))
            } else {
                format!("numeric({p},{s})")
            }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Duration(TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond) => {
            "interval".into()
        }
        other => {
            return Err(Error::Condition(format!(
                "column `{column}` has type {other}, which has no Postgres mapping; cast it in the mart SQL"
            )));
        }
    })
}

/// Appends `batch` to `out` as Postgres `COPY ... (FORMAT csv)` rows: nulls
/// are empty and unquoted, every other value is quoted (so an empty string
/// stays an empty string).
pub fn append_csv(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    let options = FormatOptions::default()
        .with_null("")
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.f%:z"))
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.f"));
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<_, _>>()?;
    let mut cell = String::new();
    for row in 0..batch.num_rows() {
        for (i, (column, formatter)) in batch.columns().iter().zip(&formatters).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if column.is_null(row) {
                continue;
            }
            cell.clear();
            use std::fmt::Write;
            write!(cell, "{}", formatter.value(row))
                .map_err(|e| Error::Internal(format!("formatting a value: {e}")))?;
            out.push(b'"');
            for byte in cell.bytes() {
                if byte == b'"' {
                    out.push(b'"');
                }
                out.push(byte);
            }
            out.push(b'"');
        }
        out.push(b'\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Decimal128Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn types_are_exact() {
        assert_eq!(
            pg_type("a", &DataType::Decimal128(14, 2)).unwrap(),
            "numeric(14,2)"
        );
        assert_eq!(
            pg_type(
                "a",
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            )
            .unwrap(),
            "timestamptz"
        );
        assert_eq!(pg_type("a", &DataType::Date32).unwrap(), "date");
        let err = pg_type("tags", &DataType::new_list(DataType::Utf8, true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tags"), "{err}");
    }

    #[test]
    fn csv_keeps_decimals_nulls_and_empty_strings() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Decimal128(38, 3), true),
            Field::new("s", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    Decimal128Array::from(vec![
                        Some(123_456_789_876_543_212_345_678_987_654_321_110),
                        None,
                    ])
                    .with_precision_and_scale(38, 3)
                    .unwrap(),
                ),
                Arc::new(StringArray::from(vec![Some("a \"q\", b"), Some("")])),
                Arc::new(Date32Array::from(vec![Some(19_723), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_700_000_000_123_456), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        append_csv(&batch, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"123456789876543212345678987654321.110\",\"a \"\"q\"\", b\",\"2024-01-01\",\"2023-11-14T22:13:20.123456+00:00\"\n,\"\",,\n"
        );
    }
}
