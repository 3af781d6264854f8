//! What each shaped change row does: the pure half of turning a chunk of
//! shaped rows into [`Changes`](super::apply::Changes).
//!
//! A row is a truncate (applied from the run's list of truncates, never as a
//! row), a tombstone, a delete (a delete event, or a row that no longer
//! matches the SQL's `WHERE`) or an upsert. Upserts with a null key, and
//! upserts failing a `drop` expectation, are skipped and quarantined; a
//! `fail` expectation aborts the run. Columns whose source value was a TOAST
//! placeholder are reported so the held value is kept.
//!
//! Everything here takes Arrow arrays and returns plain values: no I/O, no
//! session, no logging, so every branch is unit-tested on small hand-built
//! batches. The run ([`super::job`]) resolves lookups before, and counts,
//! logs and reports what these functions decide.
//!
//! The metadata flags are produced by the source view over non-null bronze
//! columns and the expectation results by `IS TRUE`, so none is NULL in a
//! run; a NULL is still read the safe way: a NULL flag is not set (a NULL
//! never deletes, tombstones or truncates), a NULL `_keep` does not keep the
//! row (as a `WHERE` drops it) and a NULL expectation result fails (a row
//! passes only when the rule is TRUE).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Schema};

use super::apply::ChangeKind;
use super::keys::{Seq, sequences};
use super::plan::{KEEP, expectation_column};
use super::side::{self, Quarantined};
use super::spec::{Action, ExpectationSpec};
use crate::delta::key_strings;
use crate::error::{Error, Result};

/// The rule name a null-key upsert is quarantined under.
pub const KEY_NOT_NULL: &str = "key_not_null";

/// What classification needs to know about the table.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The business key columns.
    pub keys: &'a [String],
    /// The table's data columns (the SQL's, then lookup keys): the indexes
    /// [`Classified::unavailable`] refers to.
    pub data_schema: &'a Schema,
    /// Per SQL output column, the source columns it reads.
    pub lineage: &'a BTreeMap<String, BTreeSet<String>>,
    /// Whether the batch has a [`KEEP`] column (the SQL has a `WHERE`).
    pub has_keep: bool,
    /// The table's expectations, in spec order.
    pub expectations: &'a [ExpectationSpec],
}

/// One chunk's rows, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Key strings (`None`: a key part is null).
    pub keys: Vec<Option<String>>,
    /// Sequences.
    pub seq: Vec<Seq>,
    /// What each row does.
    pub kind: Vec<ChangeKind>,
    /// Per row, data column indexes holding a TOAST placeholder.
    pub unavailable: Vec<Vec<usize>>,
    /// Null keys and expectations.
    pub verdict: Verdict,
}

/// What the null-key check and the expectations decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Per row: an upsert kept out of the table.
    pub skip: Vec<bool>,
    /// Rows kept out, with the rules they broke (in rule order), by row.
    pub dropped: BTreeMap<usize, Vec<String>>,
    /// Per expectation checked, in spec order: the rows failing it. Rows
    /// that are not upserts or that an earlier rule already kept out are
    /// not checked. Stops after the expectation in [`Verdict::abort`].
    pub failed: Vec<Vec<usize>>,
    /// The first `fail` expectation that rows failed: the run must abort,
    /// and later expectations were not checked.
    pub abort: Option<usize>,
}

/// Classifies `batch` (shaped rows, truncates removed, lookups resolved).
///
/// Columns are read in a fixed order (keys, sequence, flags, `_keep`,
/// `_unavailable`, expectation results), so a batch missing several always
/// names the same one.
pub fn classify(batch: &RecordBatch, rules: &Rules<'_>) -> Result<Classified> {
    let keys = key_strings(batch, rules.keys)?;
    let seq = sequences(
        column(batch, "_position")?.as_ref(),
        column(batch, "_source_ts_ms")?.as_ref(),
    )?;
    let is_delete = column(batch, "_is_delete")?;
    let is_tombstone = column(batch, "_is_tombstone")?;
    let keep = if rules.has_keep {
        Some(column(batch, KEEP)?)
    } else {
        None
    };
    let kind = kinds(is_tombstone.as_ref(), is_delete.as_ref(), keep.as_deref())?;
    let unavailable = unavailable_columns(
        column(batch, "_unavailable")?.as_ref(),
        rules.data_schema,
        rules.lineage,
    )?;
    let verdict = check(batch, rules.expectations, &kind, &keys)?;
    Ok(Classified {
        keys,
        seq,
        kind,
        unavailable,
        verdict,
    })
}

/// The rows to keep before anything else: all but truncates, which the run
/// applies from its own list of truncate sequences (they carry no key).
pub fn not_truncates(is_truncate: &dyn Array) -> Result<BooleanArray> {
    let is_truncate = flags(is_truncate, "_is_truncate")?;
    Ok(is_truncate.iter().map(|t| Some(t != Some(true))).collect())
}

/// What each row does to its key. A tombstone is a tombstone even when
/// flagged a delete too (it has no position of its own, see
/// [`super::apply`]); a row the SQL's `WHERE` (`keep`) no longer keeps
/// deletes the key, like a materialised view would.
pub fn kinds(
    is_tombstone: &dyn Array,
    is_delete: &dyn Array,
    keep: Option<&dyn Array>,
) -> Result<Vec<ChangeKind>> {
    let is_tombstone = flags(is_tombstone, "_is_tombstone")?;
    let is_delete = flags(is_delete, "_is_delete")?;
    let keep = keep.map(|k| flags(k, KEEP)).transpose()?;
    let n = is_tombstone.len();
    if is_delete.len() != n || keep.is_some_and(|k| k.len() != n) {
        return Err(Error::Internal(format!(
            "change flags of different lengths: _is_tombstone {n}, _is_delete {}, {KEEP} {:?}",
            is_delete.len(),
            keep.map(|k| k.len())
        )));
    }
    Ok((0..n)
        .map(|i| {
            if is_set(is_tombstone, i) {
                ChangeKind::Tombstone
            } else if is_set(is_delete, i) || keep.is_some_and(|k| !is_set(k, i)) {
                // A delete event, or a row no longer matching the SQL's
                // WHERE: either way the key leaves the table.
                ChangeKind::Delete
            } else {
                ChangeKind::Upsert
            }
        })
        .collect())
}

/// Per row, the indexes of the `data_schema` columns that read a source
/// column whose value was a TOAST placeholder. `unavailable` holds, per row,
/// the comma-separated names of those source columns (NULL: none), and
/// `lineage` which source columns each output column reads; a column
/// missing from `lineage` (a lookup key) reads none.
pub fn unavailable_columns(
    unavailable: &dyn Array,
    data_schema: &Schema,
    lineage: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<Vec<usize>>> {
    let text = arrow::compute::cast(unavailable, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut out = vec![Vec::new(); text.len()];
    for (i, slot) in out.iter_mut().enumerate() {
        if text.is_valid(i) {
            let sources: Vec<&str> = text.value(i).split(',').collect();
            for (index, field) in data_schema.fields().iter().enumerate() {
                if lineage
                    .get(field.name())
                    .is_some_and(|refs| sources.iter().any(|s| refs.contains(*s)))
                {
                    slot.push(index);
                }
            }
        }
    }
    Ok(out)
}

/// The null-key check, then the expectations in spec order (each result in
/// column [`expectation_column`]). Only upserts are checked: deletes and
/// tombstones store no row. An upsert with a null key is kept
/// out under [`KEY_NOT_NULL`]; one failing a `drop` rule is kept out under
/// the rule's name and not checked by later rules (it is quarantined once);
/// `warn` rules only count; the first `fail` rule with failures stops the
/// checks ([`Verdict::abort`]).
pub fn check(
    batch: &RecordBatch,
    expectations: &[ExpectationSpec],
    kind: &[ChangeKind],
    keys: &[Option<String>],
) -> Result<Verdict> {
    let n = batch.num_rows();
    if kind.len() != n || keys.len() != n {
        return Err(Error::Internal(format!(
            "{n} rows but {} kinds and {} keys",
            kind.len(),
            keys.len()
        )));
    }
    let mut verdict = Verdict {
        skip: vec![false; n],
        ..Default::default()
    };
    for i in 0..n {
        if kind[i] == ChangeKind::Upsert && keys[i].is_none() {
            verdict.skip[i] = true;
            verdict
                .dropped
                .entry(i)
                .or_default()
                .push(KEY_NOT_NULL.into());
        }
    }
    for (index, expectation) in expectations.iter().enumerate() {
        let name = expectation_column(index);
        let passed = column(batch, &name)?;
        let passed = flags(passed.as_ref(), &name)?;
        let failed: Vec<usize> = (0..n)
            .filter(|&i| kind[i] == ChangeKind::Upsert && !verdict.skip[i] && !is_set(passed, i))
            .collect();
        match expectation.action {
            Action::Warn => {}
            Action::Drop => {
                for &i in &failed {
                    verdict.skip[i] = true;
                    verdict
                        .dropped
                        .entry(i)
                        .or_default()
                        .push(expectation.name.clone());
                }
            }
            Action::Fail => {
                if !failed.is_empty() {
                    verdict.abort = Some(index);
                }
            }
        }
        verdict.failed.push(failed);
        if verdict.abort.is_some() {
            break;
        }
    }
    Ok(verdict)
}

/// The quarantine rows of `dropped` (see [`Verdict::dropped`]): one per
/// broken rule, in row order, each with the row of `data` as JSON.
pub fn quarantined(
    data: &RecordBatch,
    dropped: &BTreeMap<usize, Vec<String>>,
    keys: &[Option<String>],
    seq: &[Seq],
) -> Result<Vec<Quarantined>> {
    if dropped.is_empty() {
        return Ok(Vec::new());
    }
    let indices: Vec<u32> = dropped
        .keys()
        .map(|&i| row_index(data, i))
        .collect::<Result<_>>()?;
    let rows = take_record_batch(data, &UInt32Array::from(indices))?;
    let json = side::rows_as_json(&rows)?;
    let mut out = Vec::new();
    for ((&i, rules), row) in dropped.iter().zip(json) {
        let (Some(key), Some(seq)) = (keys.get(i), seq.get(i)) else {
            return Err(Error::Internal(format!(
                "quarantined row {i} is beyond the {} keys and {} sequences",
                keys.len(),
                seq.len()
            )));
        };
        for rule in rules {
            out.push(Quarantined {
                rule: rule.clone(),
                key: key.clone(),
                row: row.clone(),
                seq: *seq,
            });
        }
    }
    Ok(out)
}

/// Row `index` of `data` as a JSON object (the sample a `fail` reports).
pub fn row_as_json(data: &RecordBatch, index: usize) -> Result<String> {
    let sample = take_record_batch(data, &UInt32Array::from(vec![row_index(data, index)?]))?;
    Ok(side::rows_as_json(&sample)?.pop().unwrap_or_default())
}

/// `index` as a `take` index, checked: `take` panics beyond the batch.
fn row_index(data: &RecordBatch, index: usize) -> Result<u32> {
    u32::try_from(index)
        .ok()
        .filter(|_| index < data.num_rows())
        .ok_or_else(|| {
            Error::Internal(format!(
                "row {index} is beyond the batch's {} rows",
                data.num_rows()
            ))
        })
}

fn column(batch: &RecordBatch, name: &str) -> Result<std::sync::Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::Internal(format!("{name} is missing")))
}

/// `array` as booleans; another type is an engine bug, reported, not a panic.
fn flags<'a>(array: &'a dyn Array, name: &str) -> Result<&'a BooleanArray> {
    array.as_boolean_opt().ok_or_else(|| {
        Error::Internal(format!(
            "{name} is {} where booleans were expected",
            array.data_type()
        ))
    })
}

/// Whether the flag is TRUE (NULL is not).
fn is_set(flags: &BooleanArray, i: usize) -> bool {
    flags.is_valid(i) && flags.value(i)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, LargeStringArray, RecordBatchOptions, StringArray};
    use arrow::datatypes::Field;

    use super::*;
    use ChangeKind::*;

    fn bools(values: &[Option<bool>]) -> BooleanArray {
        BooleanArray::from(values.to_vec())
    }

    fn expectation(name: &str, action: Action) -> ExpectationSpec {
        ExpectationSpec {
            name: name.into(),
            expr: format!("{name} holds"),
            action,
        }
    }

    fn seq(p: i128) -> Seq {
        Seq {
            position: Some(p),
            ts_ms: Some(p as i64 * 10),
        }
    }

    /// A batch of `columns` (name, array), in that order.
    fn batch<S: AsRef<str>>(columns: Vec<(S, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, array)| Field::new(name.as_ref(), array.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, array)| array).collect(),
        )
        .unwrap()
    }

    /// Expectation results only: what [`check`] reads.
    fn results(columns: &[&[Option<bool>]]) -> RecordBatch {
        batch(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| (expectation_column(i), Arc::new(bools(c)) as ArrayRef))
                .collect(),
        )
    }

    /// `n` rows of no columns: a table without expectations.
    fn rows(n: usize) -> RecordBatch {
        RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .unwrap()
    }

    fn keyed(n: usize) -> Vec<Option<String>> {
        (0..n).map(|i| Some(i.to_string())).collect()
    }

    fn dropped(entries: &[(usize, &[&str])]) -> BTreeMap<usize, Vec<String>> {
        entries
            .iter()
            .map(|(i, rules)| (*i, rules.iter().map(|r| r.to_string()).collect()))
            .collect()
    }

    // Truncates.

    #[test]
    fn truncates_are_set_aside_and_a_null_flag_is_not_a_truncate() {
        let keep = not_truncates(&bools(&[Some(true), Some(false), None])).unwrap();
        assert_eq!(keep, bools(&[Some(false), Some(true), Some(true)]));
    }

    #[test]
    fn a_truncate_flag_that_is_not_boolean_is_an_error() {
        let error = not_truncates(&Int64Array::from(vec![1])).unwrap_err();
        assert!(
            error.to_string().contains("_is_truncate is Int64"),
            "{error}"
        );
    }

    // Kinds.

    #[test]
    fn a_tombstone_is_a_tombstone_whatever_the_other_flags() {
        let kind = kinds(
            &bools(&[Some(true), Some(true), Some(true)]),
            &bools(&[Some(true), Some(false), Some(false)]),
            Some(&bools(&[Some(true), Some(false), None])),
        )
        .unwrap();
        assert_eq!(kind, vec![Tombstone, Tombstone, Tombstone]);
    }

    #[test]
    fn a_delete_event_deletes_even_when_the_where_keeps_the_row() {
        let kind = kinds(
            &bools(&[Some(false), Some(false)]),
            &bools(&[Some(true), Some(true)]),
            Some(&bools(&[Some(true), Some(false)])),
        )
        .unwrap();
        assert_eq!(kind, vec![Delete, Delete]);
    }

    #[test]
    fn a_row_the_where_no_longer_keeps_deletes_its_key() {
        let no = Some(false);
        let kind = kinds(
            &bools(&[no, no, no]),
            &bools(&[no, no, no]),
            Some(&bools(&[Some(true), Some(false), None])),
        )
        .unwrap();
        // A NULL predicate does not keep the row, as in a WHERE.
        assert_eq!(kind, vec![Upsert, Delete, Delete]);
    }

    #[test]
    fn without_a_where_every_other_row_is_an_upsert() {
        let kind = kinds(
            &bools(&[Some(false), Some(false)]),
            &bools(&[Some(false), Some(false)]),
            None,
        )
        .unwrap();
        assert_eq!(kind, vec![Upsert, Upsert]);
    }

    #[test]
    fn null_flags_are_not_set() {
        let kind = kinds(
            &bools(&[None, None, Some(false)]),
            &bools(&[None, Some(true), None]),
            None,
        )
        .unwrap();
        assert_eq!(kind, vec![Upsert, Delete, Upsert]);
    }

    #[test]
    fn no_rows_no_kinds() {
        assert_eq!(kinds(&bools(&[]), &bools(&[]), None).unwrap(), vec![]);
    }

    #[test]
    fn flags_of_other_lengths_or_types_are_errors() {
        let two = bools(&[Some(false), Some(false)]);
        let one = bools(&[Some(false)]);
        assert!(kinds(&two, &one, None).is_err());
        assert!(kinds(&two, &two, Some(&one)).is_err());
        let error = kinds(&two, &two, Some(&Int64Array::from(vec![1, 1]))).unwrap_err();
        assert!(error.to_string().contains("_keep is Int64"), "{error}");
        let error = kinds(&StringArray::from(vec!["t"]), &one, None).unwrap_err();
        assert!(
            error.to_string().contains("_is_tombstone is Utf8"),
            "{error}"
        );
    }

    // TOAST placeholders.

    fn lineage(entries: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        entries
            .iter()
            .map(|(column, sources)| {
                (
                    column.to_string(),
                    sources.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect()
    }

    fn data_schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("full_name", DataType::Utf8, true),
            // A fact's lookup key: no lineage, never unavailable.
            Field::new("customer_sk", DataType::Int64, true),
        ])
    }

    #[test]
    fn placeholders_map_to_every_column_reading_their_source() {
        let lineage = lineage(&[
            ("id", &["id"]),
            ("name", &["name"]),
            ("full_name", &["first", "last"]),
        ]);
        let text = StringArray::from(vec![
            None,
            Some("name"),
            Some("last"),
            Some("name,first"),
            Some("first,last"),
            Some("other"),
            Some(""),
            Some("customer_sk"),
        ]);
        let columns = unavailable_columns(&text, &data_schema(), &lineage).unwrap();
        let expected: Vec<Vec<usize>> = vec![
            vec![],     // NULL: every value was there
            vec![1],    // one source, one column
            vec![2],    // a column reading several sources
            vec![1, 2], // several sources, in column order
            vec![2],    // a column listed once
            vec![],     // a source no column reads
            vec![],     // an empty list
            vec![],     // a column without lineage is never unavailable
        ];
        assert_eq!(columns, expected);
    }

    #[test]
    fn placeholders_are_read_from_any_string_type() {
        let lineage = lineage(&[("name", &["name"])]);
        let text = LargeStringArray::from(vec![Some("name"), None]);
        let columns = unavailable_columns(&text, &data_schema(), &lineage).unwrap();
        assert_eq!(columns, vec![vec![1], vec![]]);
    }

    // Null keys and expectations.

    #[test]
    fn without_expectations_every_row_with_a_key_is_kept() {
        let verdict = check(&rows(3), &[], &[Upsert; 3], &keyed(3)).unwrap();
        assert_eq!(
            verdict,
            Verdict {
                skip: vec![false; 3],
                ..Default::default()
            }
        );
    }

    #[test]
    fn an_upsert_with_a_null_key_is_kept_out_but_a_delete_is_not() {
        let keys = vec![None, Some("1".into()), None, None];
        let kind = [Upsert, Upsert, Delete, Tombstone];
        let verdict = check(&rows(4), &[], &kind, &keys).unwrap();
        assert_eq!(verdict.skip, vec![true, false, false, false]);
        assert_eq!(verdict.dropped, dropped(&[(0, &[KEY_NOT_NULL])]));
        assert_eq!(verdict.abort, None);
    }

    #[test]
    fn warn_counts_the_failing_upserts_and_keeps_them() {
        let t = Some(true);
        let f = Some(false);
        let verdict = check(
            &results(&[&[t, f, f, f]]),
            &[expectation("positive", Action::Warn)],
            &[Upsert, Upsert, Delete, Tombstone],
            &keyed(4),
        )
        .unwrap();
        // Deletes and tombstones store no row: not checked.
        assert_eq!(verdict.failed, vec![vec![1]]);
        assert_eq!(verdict.skip, vec![false; 4]);
        assert!(verdict.dropped.is_empty());
        assert_eq!(verdict.abort, None);
    }

    #[test]
    fn a_null_result_fails_the_rule() {
        let verdict = check(
            &results(&[&[None, Some(true)]]),
            &[expectation("known", Action::Warn)],
            &[Upsert, Upsert],
            &keyed(2),
        )
        .unwrap();
        assert_eq!(verdict.failed, vec![vec![0]]);
    }

    #[test]
    fn drop_keeps_the_row_out_and_later_rules_do_not_check_it_again() {
        let t = Some(true);
        let f = Some(false);
        let keys = vec![Some("0".into()), Some("1".into()), None, Some("3".into())];
        let verdict = check(
            &results(&[&[f, t, f, t], &[f, f, f, f], &[f, t, f, t]]),
            &[
                expectation("first", Action::Drop),
                expectation("second", Action::Warn),
                expectation("third", Action::Drop),
            ],
            &[Upsert; 4],
            &keys,
        )
        .unwrap();
        // Row 2 (null key) and row 0 (dropped by `first`) are out before
        // `second` and `third`; each kept-out row carries one rule.
        assert_eq!(verdict.failed, vec![vec![0], vec![1, 3], vec![]]);
        assert_eq!(verdict.skip, vec![true, false, true, false]);
        assert_eq!(
            verdict.dropped,
            dropped(&[(0, &["first"]), (2, &[KEY_NOT_NULL])])
        );
        assert_eq!(verdict.abort, None);
    }

    #[test]
    fn fail_stops_at_the_first_rule_rows_failed() {
        let t = Some(true);
        let f = Some(false);
        let verdict = check(
            &results(&[&[f, t, t], &[t, t, t], &[t, f, f], &[f, f, f]]),
            &[
                expectation("counted", Action::Warn),
                expectation("holds", Action::Fail),
                expectation("broken", Action::Fail),
                expectation("never_checked", Action::Drop),
            ],
            &[Upsert; 3],
            &keyed(3),
        )
        .unwrap();
        // A `fail` rule nobody fails lets the checks go on; the one that
        // aborts is the last checked.
        assert_eq!(verdict.failed, vec![vec![0], vec![], vec![1, 2]]);
        assert_eq!(verdict.abort, Some(2));
        assert!(verdict.dropped.is_empty());
    }

    #[test]
    fn fail_ignores_rows_kept_out_before_it() {
        let f = Some(false);
        let verdict = check(
            &results(&[&[f, Some(true)], &[f, Some(true)]]),
            &[
                expectation("dropped", Action::Drop),
                expectation("strict", Action::Fail),
            ],
            &[Upsert, Upsert],
            &keyed(2),
        )
        .unwrap();
        assert_eq!(verdict.failed, vec![vec![0], vec![]]);
        assert_eq!(verdict.abort, None);
        assert_eq!(verdict.dropped, dropped(&[(0, &["dropped"])]));
    }

    #[test]
    fn a_missing_or_mistyped_result_or_mismatched_rows_are_errors() {
        let one = results(&[&[Some(true)]]);
        let rules = [
            expectation("a", Action::Warn),
            expectation("b", Action::Warn),
        ];
        let error = check(&one, &rules, &[Upsert], &keyed(1)).unwrap_err();
        assert!(
            error.to_string().contains("_expect_1 is missing"),
            "{error}"
        );
        assert!(check(&one, &rules[..1], &[Upsert, Upsert], &keyed(1)).is_err());
        assert!(check(&one, &rules[..1], &[Upsert], &keyed(2)).is_err());
        let text = batch(vec![(
            "_expect_0",
            Arc::new(StringArray::from(vec!["true"])) as ArrayRef,
        )]);
        assert!(check(&text, &rules[..1], &[Upsert], &keyed(1)).is_err());
    }

    // Quarantine rows.

    fn data() -> RecordBatch {
        batch(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
            ),
        ])
    }

    #[test]
    fn each_broken_rule_quarantines_the_row_once_in_row_order() {
        let keys = vec![Some("1".into()), None, Some("3".into())];
        let seqs = vec![seq(1), seq(2), seq(3)];
        let rows = quarantined(
            &data(),
            &dropped(&[(2, &["x", "y"]), (1, &[KEY_NOT_NULL])]),
            &keys,
            &seqs,
        )
        .unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|q| (q.rule.as_str(), q.key.clone(), q.row.as_str(), q.seq))
            .collect();
        assert_eq!(
            got,
            vec![
                (KEY_NOT_NULL, None, r#"{"name":"b"}"#, seq(2)),
                ("x", Some("3".into()), r#"{"id":3}"#, seq(3)),
                ("y", Some("3".into()), r#"{"id":3}"#, seq(3)),
            ]
        );
    }

    #[test]
    fn nothing_dropped_nothing_quarantined() {
        let rows = quarantined(&data(), &BTreeMap::new(), &[], &[]).unwrap();
        assert!(rows.is_empty());
    }

    #[test]
    fn a_dropped_row_beyond_the_batch_is_an_error() {
        let keys = keyed(3);
        let seqs = vec![seq(1); 3];
        assert!(quarantined(&data(), &dropped(&[(5, &["x"])]), &keys, &seqs).is_err());
        assert!(quarantined(&data(), &dropped(&[(2, &["x"])]), &keys[..2], &seqs).is_err());
    }

    #[test]
    fn the_sample_of_a_failed_rule_is_its_row_as_json() {
        assert_eq!(row_as_json(&data(), 0).unwrap(), r#"{"id":1,"name":"a"}"#);
        assert!(row_as_json(&data(), 3).is_err());
    }

    // A whole shaped batch.

    /// Shaped rows: id, name, then the metadata columns, `_keep` and two
    /// expectation results. Rows: an upsert, a delete, a tombstone, a row
    /// the WHERE drops, a null-key upsert, an upsert failing `drop`, an
    /// upsert failing `warn` with its name TOASTed.
    fn shaped(with_keep: bool) -> RecordBatch {
        let t = Some(true);
        let f = Some(false);
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(2),
                    Some(3),
                    Some(4),
                    None,
                    Some(6),
                    Some(7),
                ])),
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    None,
                    Some("d"),
                    Some("e"),
                    Some("f"),
                    None,
                ])),
            ),
            (
                "_position",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(2),
                    None,
                    Some(4),
                    Some(5),
                    Some(6),
                    Some(7),
                ])),
            ),
            (
                "_source_ts_ms",
                Arc::new(Int64Array::from(vec![
                    Some(10),
                    Some(20),
                    None,
                    Some(40),
                    Some(50),
                    Some(60),
                    Some(70),
                ])),
            ),
            ("_is_delete", Arc::new(bools(&[f, t, t, f, f, f, f]))),
            ("_is_tombstone", Arc::new(bools(&[f, f, t, f, f, f, f]))),
            (
                "_unavailable",
                Arc::new(StringArray::from(vec![
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some("name"),
                ])),
            ),
        ];
        if with_keep {
            columns.push(("_keep", Arc::new(bools(&[t, t, t, f, t, t, t]))));
        }
        columns.push(("_expect_0", Arc::new(bools(&[t, f, f, f, f, f, t]))));
        columns.push(("_expect_1", Arc::new(bools(&[t, f, f, f, f, t, f]))));
        batch(columns)
    }

    #[test]
    fn a_shaped_batch_is_classified_row_by_row() {
        let keys = vec!["id".to_string()];
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        let lineage = lineage(&[("id", &["id"]), ("name", &["name"])]);
        let expectations = [
            expectation("dropped", Action::Drop),
            expectation("warned", Action::Warn),
        ];
        let rules = Rules {
            keys: &keys,
            data_schema: &schema,
            lineage: &lineage,
            has_keep: true,
            expectations: &expectations,
        };
        let classified = classify(&shaped(true), &rules).unwrap();
        let key = |k: &str| Some(k.to_string());
        assert_eq!(
            classified,
            Classified {
                keys: vec![
                    key("1"),
                    key("2"),
                    key("3"),
                    key("4"),
                    None,
                    key("6"),
                    key("7")
                ],
                seq: vec![
                    seq(1),
                    seq(2),
                    Seq::default(),
                    seq(4),
                    seq(5),
                    seq(6),
                    seq(7)
                ],
                kind: vec![Upsert, Delete, Tombstone, Delete, Upsert, Upsert, Upsert],
                unavailable: vec![vec![], vec![], vec![], vec![], vec![], vec![], vec![1]],
                verdict: Verdict {
                    skip: vec![false, false, false, false, true, true, false],
                    dropped: dropped(&[(4, &[KEY_NOT_NULL]), (5, &["dropped"])]),
                    failed: vec![vec![5], vec![6]],
                    abort: None,
                },
            }
        );

        // Without a WHERE the row is an upsert, failing both rules.
        let rules = Rules {
            has_keep: false,
            ..rules
        };
        let classified = classify(&shaped(false), &rules).unwrap();
        assert_eq!(classified.kind[3], Upsert);
        assert_eq!(classified.verdict.failed, vec![vec![3, 5], vec![6]]);
    }

    #[test]
    fn a_missing_column_is_named() {
        let keys = vec!["id".to_string()];
        let schema = Schema::empty();
        let lineage = BTreeMap::new();
        let rules = Rules {
            keys: &keys,
            data_schema: &schema,
            lineage: &lineage,
            has_keep: true,
            expectations: &[],
        };
        // The SQL has a WHERE but the batch lacks its column.
        let error = classify(&shaped(false), &rules).unwrap_err();
        assert!(error.to_string().contains("_keep is missing"), "{error}");
        for column in ["_position", "_is_delete", "_unavailable"] {
            let batch = shaped(true);
            let index = batch.schema().index_of(column).unwrap();
            let mut batch = batch;
            batch.remove_column(index);
            let error = classify(&batch, &rules).unwrap_err();
            assert!(error.to_string().contains(column), "{column}: {error}");
        }
        let other_keys = vec!["code".to_string()];
        let rules = Rules {
            keys: &other_keys,
            ..rules
        };
        let error = classify(&shaped(true), &rules).unwrap_err();
        assert!(error.to_string().contains("`code`"), "{error}");
    }
}
