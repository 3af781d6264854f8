//! The column layout of a silver table: keys first (their statistics prune
//! files), then the surrogate key and lookup keys, the SQL's other columns,
//! and the engine's columns last.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};

use super::apply::{EngineColumns, Existing};
use super::keys::sequences;
use super::lookups::{self, Lookup};
use super::plan::Shaped;
use super::spec::{Kind, TableSpec};
use crate::delta::key_strings;
use crate::error::{Error, Result};

/// Engine column: sequence position of the last change applied.
pub const SEQ: &str = "_seq";
/// Engine column: source `ts_ms` of the last change applied.
pub const SEQ_TS: &str = "_seq_ts";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A table's schemas.
#[derive(Debug, Clone)]
pub struct Layout {
    /// SQL columns plus lookup columns, in SQL order.
    pub data_schema: SchemaRef,
    /// The Delta table's columns, in table order.
    pub table_schema: SchemaRef,
    /// Business keys.
    pub keys: Vec<String>,
    /// Surrogate key column.
    pub surrogate_key: Option<String>,
    /// Whether the table is SCD2.
    pub scd2: bool,
    /// Lookup key columns (facts).
    pub lookup_keys: Vec<String>,
}

impl Layout {
    /// The layout of `spec` given its planned SQL and lookups.
    pub fn new(spec: &TableSpec, shaped: &Shaped, lookups: &[Lookup]) -> Result<Self> {
        let mut data: Vec<Field> = shaped
            .data_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        data.extend(lookups::added_fields(lookups));
        let data_schema = Arc::new(Schema::new(data.clone()));
        let lookup_keys = lookups::key_columns(lookups);
        let scd2 = spec.kind == Kind::Scd2;
        let mut fields: Vec<Field> = Vec::new();
        for key in &spec.keys {
            let field = data
                .iter()
                .find(|f| f.name() == key)
                .ok_or_else(|| spec.sql_error(format!("does not select the key column `{key}`")))?;
            fields.push(field.clone());
        }
        if let Some(sk) = &spec.surrogate_key {
            fields.push(Field::new(sk, DataType::Int64, true));
        }
        for key in &lookup_keys {
            if let Some(field) = data.iter().find(|f| f.name() == key) {
                fields.push(field.clone());
            }
        }
        for field in &data {
            if !spec.keys.contains(field.name()) && !lookup_keys.contains(field.name()) {
                fields.push(field.clone());
            }
        }
        if scd2 {
            fields.push(Field::new("valid_from", timestamp(), true));
            fields.push(Field::new("valid_to", timestamp(), true));
            fields.push(Field::new("is_current", DataType::Boolean, true));
        }
        fields.push(Field::new(SEQ, DataType::Decimal128(38, 0), true));
        fields.push(Field::new(SEQ_TS, DataType::Int64, true));
        Ok(Self {
            data_schema,
            table_schema: Arc::new(Schema::new(fields)),
            keys: spec.keys.clone(),
            surrogate_key: spec.surrogate_key.clone(),
            scd2,
            lookup_keys,
        })
    }

    /// A table batch from data cells and engine columns.
    pub fn assemble(&self, data: &RecordBatch, engine: &EngineColumns) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.table_schema.fields().len());
        for field in self.table_schema.fields() {
            let name = field.name().as_str();
            let column = if Some(name) == self.surrogate_key.as_deref() {
                engine.sk.clone()
            } else if self.scd2 && name == "valid_from" {
                engine.valid_from.clone()
            } else if self.scd2 && name == "valid_to" {
                engine.valid_to.clone()
            } else if self.scd2 && name == "is_current" {
                engine.is_current.clone()
            } else if name == SEQ {
                engine.seq.clone()
            } else if name == SEQ_TS {
                engine.seq_ts.clone()
            } else {
                data.column_by_name(name)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("column `{name}` is missing")))?
            };
            columns.push(if column.data_type() == field.data_type() {
                column
            } else {
                cast(&column, field.data_type())?
            });
        }
        Ok(RecordBatch::try_new(self.table_schema.clone(), columns)?)
    }

    /// Splits table rows (in table schema) into data cells and engine state.
    pub fn existing(&self, rows: &RecordBatch, file: Vec<usize>) -> Result<Existing> {
        let data = crate::delta::conform(rows, &self.data_schema)?;
        let keys = key_strings(rows, &self.keys)?;
        let column = |name: &str| -> Result<ArrayRef> {
            rows.column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::Internal(format!("column `{name}` is missing")))
        };
        let seq = sequences(column(SEQ)?.as_ref(), column(SEQ_TS)?.as_ref())?;
        let n = rows.num_rows();
        let sk = match &self.surrogate_key {
            Some(sk) => {
                let array = cast(&column(sk)?, &DataType::Int64)?;
                array.as_primitive::<Int64Type>().iter().collect()
            }
            None => vec![None; n],
        };
        let micros = |name: &str| -> Result<Vec<Option<i64>>> {
            let array = cast(
                &column(name)?,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?;
            let array = cast(&array, &DataType::Int64)?;
            Ok(array.as_primitive::<Int64Type>().iter().collect())
        };
        let (valid_from, valid_to, is_current) = if self.scd2 {
            let current = column("is_current")?;
            let current: &BooleanArray = current.as_boolean();
            (
                micros("valid_from")?,
                micros("valid_to")?,
                (0..n)
                    .map(|i| current.is_valid(i) && current.value(i))
                    .collect(),
            )
        } else {
            (vec![None; n], vec![None; n], vec![true; n])
        };
        Ok(Existing {
            data,
            keys,
            seq,
            file,
            sk,
            valid_from,
            valid_to,
            is_current,
        })
    }
}
