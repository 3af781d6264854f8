//! The generated date dimension: one row per day from the earliest to the
//! latest date of the covered fact columns (`date_key` = `yyyymmdd`), plus
//! the unknown member `-1`.
//!
//! The range is read from the facts' file statistics, not their rows. A run
//! appends the days that extend the calendar and commits nothing when the
//! range is unchanged.

use std::sync::Arc;

use arrow::array::{BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{Datelike, NaiveDate};
use deltalake::kernel::Transaction;

use super::job::{RunContext, TableRun};
use super::spec::TableSpec;
use super::{LAYER, watermark_app_id};
use crate::delta;
use crate::error::Result;

/// The date dimension's columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("date_key", DataType::Int64, false),
        Field::new("date", DataType::Date32, true),
        Field::new("year", DataType::Int32, true),
        Field::new("quarter", DataType::Int32, true),
        Field::new("month", DataType::Int32, true),
        Field::new("month_name", DataType::Utf8, true),
        Field::new("year_month", DataType::Utf8, true),
        Field::new("day", DataType::Int32, true),
        Field::new("day_of_week", DataType::Int32, true),
        Field::new("day_name", DataType::Utf8, true),
        Field::new("week_of_year", DataType::Int32, true),
        Field::new("is_weekend", DataType::Boolean, true),
    ]))
}

fn parse_date(value: &serde_json::Value) -> Option<NaiveDate> {
    let text = value.as_str()?;
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// `(min, max)` of `column` over `files`' statistics.
fn range(files: &[delta::TableFile], column: &str) -> Option<(NaiveDate, NaiveDate)> {
    let mut out: Option<(NaiveDate, NaiveDate)> = None;
    for file in files {
        let Some(stats) = &file.stats else { continue };
        let min = stats
            .get("minValues")
            .and_then(|m| m.get(column))
            .and_then(parse_date);
        let max = stats
            .get("maxValues")
            .and_then(|m| m.get(column))
            .and_then(parse_date);
        if let (Some(min), Some(max)) = (min, max) {
            out = Some(match out {
                None => (min, max),
                Some((a, b)) => (a.min(min), b.max(max)),
            });
        }
    }
    out
}

fn key(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day())
}

/// Calendar rows for `days`, plus the unknown member when `unknown`.
pub fn rows(days: &[NaiveDate], unknown: bool) -> Result<RecordBatch> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let mut all: Vec<Option<NaiveDate>> = days.iter().copied().map(Some).collect();
    if unknown {
        all.insert(0, None);
    }
    let int = |f: &dyn Fn(NaiveDate) -> i32| Int32Array::from_iter(all.iter().map(|d| d.map(f)));
    let text =
        |f: &dyn Fn(NaiveDate) -> String| StringArray::from_iter(all.iter().map(|d| d.map(f)));
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                all.iter().map(|d| d.map_or(-1, key)),
            )),
            Arc::new(Date32Array::from_iter(
                all.iter().map(|d| d.map(|d| (d - epoch).num_days() as i32)),
            )),
            Arc::new(int(&|d| d.year())),
            Arc::new(int(&|d| (d.month0() / 3 + 1) as i32)),
            Arc::new(int(&|d| d.month() as i32)),
            Arc::new(text(&|d| d.format("%B").to_string())),
            Arc::new(text(&|d| d.format("%Y-%m").to_string())),
            Arc::new(int(&|d| d.day() as i32)),
            Arc::new(int(&|d| d.weekday().number_from_monday() as i32)),
            Arc::new(text(&|d| d.format("%A").to_string())),
            Arc::new(int(&|d| d.iso_week().week() as i32)),
            Arc::new(BooleanArray::from_iter(
                all.iter()
                    .map(|d| d.map(|d| d.weekday().number_from_monday() >= 6)),
            )),
        ],
    )?)
}

/// Extends (or, on a full refresh, rebuilds) the calendar.
pub async fn run_date(
    rc: &RunContext<'_>,
    spec: &TableSpec,
    full_refresh: bool,
) -> Result<TableRun> {
    let mut run = TableRun {
        table: spec.name.clone(),
        ..Default::default()
    };
    let Some(date) = &spec.date else {
        return Ok(run);
    };
    let mut wanted: Option<(NaiveDate, NaiveDate)> = None;
    let mut widen = |lo: NaiveDate, hi: NaiveDate| {
        wanted = Some(match wanted {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    };
    for cover in &date.covers {
        let Some((t, column)) = cover.split_once('.') else {
            continue;
        };
        let fact = rc.root.open_table(LAYER, t).await?;
        if let Some((lo, hi)) = range(&delta::files(&fact, t)?, column) {
            widen(lo, hi);
        }
    }
    let fixed = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    if let (Some(from), Some(to)) = (fixed(&date.from), fixed(&date.to)) {
        widen(from, to);
    } else if let Some((lo, hi)) = wanted {
        let lo = fixed(&date.from).map_or(lo, |f| f.min(lo));
        let hi = fixed(&date.to).map_or(hi, |t| t.max(hi));
        wanted = Some((lo, hi));
    }
    let Some((lo, hi)) = wanted else {
        return Ok(run);
    };
    let (mut delta, _) = super::ensure_table(
        rc.root,
        LAYER,
        &spec.name,
        &schema(),
        &[],
        full_refresh,
        &spec.file,
    )
    .await?;
    let files = delta::files(&delta, &spec.name)?;
    let held = if full_refresh {
        None
    } else {
        range(&files, "date")
    };
    let mut days = Vec::new();
    let mut day = lo;
    while day <= hi {
        if held.is_none_or(|(a, b)| day < a || day > b) {
            days.push(day);
        }
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    // Fill the gap between the held range and a disjoint new one, so the
    // calendar stays contiguous.
    if let Some((a, b)) = held {
        let mut gap = b.succ_opt();
        while let Some(d) = gap {
            if d >= lo {
                break;
            }
            days.push(d);
            gap = d.succ_opt();
        }
        let mut gap = hi.succ_opt();
        while let Some(d) = gap {
            if d >= a {
                break;
            }
            days.push(d);
            gap = d.succ_opt();
        }
    }
    days.sort();
    days.dedup();
    let first = files.is_empty() || full_refresh;
    if days.is_empty() && !first {
        return Ok(run);
    }
    let batch = rows(&days, first && spec.unknown_member)?;
    let adds = delta::write(&delta, &spec.name, &batch, rc.config.file_rows).await?;
    let removes = if full_refresh {
        files.into_iter().map(|f| f.remove).collect()
    } else {
        Vec::new()
    };
    run.counts.inserted = days.len() as u64;
    run.files_added = adds.len();
    run.files_removed = removes.len();
    let upto = rc.bronze.and_then(delta::version).unwrap_or(0);
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "lakehouse.silver".into(),
        serde_json::json!({ "days_added": days.len(), "from": lo.to_string(), "to": hi.to_string() }),
    );
    let version = delta::TableCommit::new(delta::CommitMode::from_overwrite(full_refresh))
        .with_removes(removes)
        .with_adds(adds)
        .with_transactions(vec![Transaction::new(watermark_app_id(&spec.name), upto)])
        .with_metadata(metadata)
        .commit(&mut delta, &spec.name)
        .await?;
    run.version = Some(version);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_rows_have_keys_and_attributes() {
        let days = [
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
            NaiveDate::from_ymd_opt(2024, 3, 2).unwrap(),
        ];
        let batch = rows(&days, true).unwrap();
        assert_eq!(batch.num_rows(), 3);
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(keys.values(), &[-1, 20240229, 20240302]);
        let weekend = batch
            .column(11)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert!(weekend.value(2), "2024-03-02 is a Saturday");
    }
}
