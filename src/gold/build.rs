//! One mart's run: plan its SQL, decide what to recompute, write, commit.
//!
//! A mart is rebuilt when it is new, its columns changed, `--full-refresh`
//! asks, it reads the system tables, or an input changed that has no
//! `incremental` rule. Otherwise only the date partitions the inputs' changes
//! map to are recomputed; with no input changed nothing is written. Either way
//! the removed files, the new files and one `txn` per input (the input's
//! version, `lakehouse-gold:<mart>:<layer>.<table>`) go into one Delta
//! commit, so the mart is as before or fully updated and a crashed run is
//! simply redone.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{LogicalPlan, SortExpr};
use datafusion::prelude::{SessionContext, ident, lit};
use deltalake::DeltaTableError;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{Remove, StructType, Transaction};
use futures::StreamExt;

use super::catalog::{Catalog, LAYER, SYSTEM_TABLES, gold_app_id};
use super::changes::{changed_dates, changed_keys, file_changes};
use super::config::GoldConfig;
use super::spec::MartSpec;
use crate::delta::key_strings;
use crate::delta::{self, KeyValues, TableFile, txn_version, version};
use crate::error::{Error, Result};
use crate::storage::StorageRoot;

/// What a mart's run recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// No input changed: nothing written.
    Unchanged,
    /// Every row recomputed, and why.
    Full(String),
    /// Only these partitions (dates as days since 1970-01-01).
    Partitions(BTreeSet<i32>),
    /// Only the rows with these values of the `incremental_by` key column.
    Keys(Vec<ScalarValue>),
}

/// What a mart's run did.
#[derive(Debug, Clone)]
pub struct MartRun {
    /// The mart.
    pub mart: String,
    /// What was recomputed.
    pub refresh: Refresh,
    /// The Delta version committed (`None`: nothing committed).
    pub version: Option<i64>,
    /// The mart's Delta version after the run (published to Postgres).
    pub current_version: Option<i64>,
    /// Rows written.
    pub rows: u64,
    /// Files removed and added.
    pub files_removed: usize,
    /// See `files_removed`.
    pub files_added: usize,
    /// Build time.
    pub elapsed: Duration,
}

/// Names of the tables `plan` scans (including in subqueries).
pub fn scanned_tables(plan: &LogicalPlan) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.insert(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(names)
}

/// The refresh kind's short form, for logs and the commit metadata.
pub fn describe(refresh: &Refresh) -> String {
    match refresh {
        Refresh::Unchanged => "unchanged".to_string(),
        Refresh::Full(why) => format!("rebuilt ({why})"),
        Refresh::Partitions(p) => format!("{} partition(s) recomputed", p.len()),
        Refresh::Keys(k) => format!("{} key(s) recomputed", k.len()),
    }
}

fn date_literal(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|d| d.date_naive().format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The names of the tables `spec`'s SQL refers to (CTE names excluded),
/// from the parsed SQL: nothing needs to be registered.
pub fn referenced_tables(ctx: &SessionContext, spec: &MartSpec) -> Result<BTreeSet<String>> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let references = state
        .sql_to_statement(&spec.sql, &dialect)
        .and_then(|statement| state.resolve_table_references(&statement))
        .map_err(|e| spec.sql_error(crate::spec::describe_sql_error(&spec.sql, &e)))?;
    Ok(references.iter().map(|r| r.table().to_string()).collect())
}

/// A mart's SQL, planned and checked against its spec.
#[derive(Debug, Clone)]
pub struct PlannedMart {
    /// The tables the SQL reads (subqueries included).
    pub reads: BTreeSet<String>,
    /// The mart's columns.
    pub schema: SchemaRef,
}

/// Plans `spec`'s SQL over the tables registered in `ctx` (no data is read)
/// and checks what the spec says of its output: the keys are selected, the
/// partition column is a DATE, and every `incremental` rule is on a table
/// the SQL reads. Used by every build and by `lakehouse validate`.
pub async fn plan_mart(ctx: &SessionContext, spec: &MartSpec) -> Result<PlannedMart> {
    let frame = ctx.sql(&spec.sql).await.map_err(|e| {
        spec.sql_error(format!(
            "does not plan: {}",
            crate::spec::describe_sql_error(&spec.sql, &e)
        ))
    })?;
    let reads = scanned_tables(frame.logical_plan())?;
    let schema: SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
    for key in &spec.keys {
        if schema.field_with_name(key).is_err() {
            return Err(spec.sql_error(format!("does not select the key column `{key}`")));
        }
    }
    if let Some(p) = &spec.partition_by
        && schema.field_with_name(p).ok().map(|f| f.data_type()) != Some(&DataType::Date32)
    {
        return Err(spec.sql_error(format!(
            "partition column `{p}` must be selected as a DATE (e.g. CAST(x AS DATE) AS {p})"
        )));
    }
    for input in spec.incremental.keys() {
        if !reads.contains(input) {
            return Err(spec.error(format!(
                "incremental.{input}: the SQL does not read `{input}` (it reads {})",
                reads.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(PlannedMart { reads, schema })
}

/// Checks that `spec`'s `incremental` rules plan without data: a column
/// rule names a column of its input table, a query rule plans over an empty
/// `changed` with the input's columns. `ctx` holds the inputs (empty tables
/// do); the runs check the same when they evaluate the rules over real rows.
pub async fn check_incremental_rules(ctx: &SessionContext, spec: &MartSpec) -> Result<()> {
    for (input, rule) in &spec.incremental {
        let provider = ctx
            .table_provider(input.as_str())
            .await
            .map_err(|e| spec.error(format!("incremental.{input}: no table `{input}`: {e}")))?;
        let schema = provider.schema();
        if !MartSpec::rule_is_query(rule) {
            if schema.field_with_name(rule).is_err() {
                return Err(spec.error(format!(
                    "incremental.{input}: `{input}` has no column `{rule}`"
                )));
            }
            continue;
        }
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
        let _ = ctx.deregister_table(super::changes::CHANGED)?;
        ctx.register_table(super::changes::CHANGED, std::sync::Arc::new(empty))?;
        let planned = ctx.state().create_logical_plan(rule).await;
        let _ = ctx.deregister_table(super::changes::CHANGED)?;
        planned.map_err(|e| {
            spec.error(format!(
                "incremental.{input}: the rule does not plan over `changed` ({input}'s columns): {}",
                crate::spec::describe_sql_error(rule, &e)
            ))
        })?;
    }
    Ok(())
}

/// Builds one mart. `catalog` must be registered in `ctx`.
pub async fn build_mart(
    ctx: &SessionContext,
    root: &StorageRoot,
    catalog: &Catalog,
    config: &GoldConfig,
    spec: &MartSpec,
    full_refresh: bool,
) -> Result<MartRun> {
    let started = Instant::now();
    let PlannedMart { reads, schema } = plan_mart(ctx, spec).await?;
    let inputs: Vec<_> = reads.iter().filter_map(|name| catalog.get(name)).collect();
    let reads_system = reads.iter().any(|r| SYSTEM_TABLES.contains(&r.as_str()));

    let existing = root.open_table(LAYER, &spec.name).await?;
    let kernel: StructType = schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::delta(&spec.name, DeltaTableError::from(e)))?;
    let partition_by: Vec<String> = spec.partition_by.iter().cloned().collect();
    let same_layout = match existing.version() {
        None => false,
        Some(_) => {
            let snapshot = existing
                .snapshot()
                .map_err(|e| Error::delta(&spec.name, e))?;
            snapshot.schema().as_ref() == &kernel
                && snapshot.metadata().partition_columns() == partition_by
        }
    };
    let mut watermarks = BTreeMap::new();
    for input in &inputs {
        let app = gold_app_id(&spec.name, &input.qualified());
        watermarks.insert(
            input.name.clone(),
            txn_version(&existing, &spec.name, &app).await?,
        );
    }
    let mart_rows = match existing.version() {
        Some(_) => delta::files(&existing, &spec.name)?
            .iter()
            .filter_map(|f| f.stats.as_ref()?.get("numRecords")?.as_u64())
            .sum(),
        None => 0,
    };
    let refresh = decide(
        ctx,
        spec,
        &schema,
        &inputs,
        &watermarks,
        Layout {
            full_refresh,
            reads_system,
            same_layout,
            exists: existing.version().is_some(),
            mart_rows,
        },
    )
    .await?;
    let mut run = MartRun {
        mart: spec.name.clone(),
        refresh: refresh.clone(),
        version: None,
        current_version: version(&existing),
        rows: 0,
        files_removed: 0,
        files_added: 0,
        elapsed: Duration::ZERO,
    };
    if refresh == Refresh::Unchanged {
        run.elapsed = started.elapsed();
        return Ok(run);
    }
    let full = matches!(refresh, Refresh::Full(_));
    // A changed layout comes back as `relayout` and goes into the data's
    // commit, so readers see the old mart or the new one, never an empty one.
    let (mut delta, relayout) =
        delta::open_for_refresh(root, LAYER, &spec.name, &schema, &partition_by).await?;

    let mart = ctx
        .sql(&format!(
            "SELECT * FROM ({}) AS __mart",
            spec.sql.trim().trim_end_matches(';')
        ))
        .await?;
    let (frame, removes) = match &refresh {
        // The inputs moved but no row changed (an `optimize` of an input
        // rewrote files with the same rows): only the watermarks advance.
        Refresh::Partitions(dates) if dates.is_empty() => (mart.filter(lit(false))?, Vec::new()),
        Refresh::Keys(keys) if keys.is_empty() => (mart.filter(lit(false))?, Vec::new()),
        Refresh::Partitions(dates) => {
            let Some(p) = &spec.partition_by else {
                return Err(spec.error("partition_by: missing"));
            };
            let values: BTreeSet<String> = dates.iter().map(|d| date_literal(*d)).collect();
            let list = dates
                .iter()
                .map(|d| lit(ScalarValue::Date32(Some(*d))))
                .collect();
            let removes = partition_files(&delta, &spec.name, p, &values)?;
            (mart.filter(ident(p).in_list(list, false))?, removes)
        }
        Refresh::Keys(keys) => {
            let Some(column) = &spec.incremental_by else {
                return Err(spec.error("incremental_by: missing"));
            };
            let (removes, kept) = key_files(ctx, &delta, spec, column, keys, &schema).await?;
            let list = keys.iter().cloned().map(lit).collect();
            let recomputed = mart.filter(ident(column).in_list(list, false))?;
            (recomputed.union(ctx.read_batch(kept)?)?, removes)
        }
        _ => (mart, all_files(&delta, &spec.name)?),
    };
    let order: Vec<SortExpr> = spec
        .keys
        .iter()
        .map(|k| ident(k).sort(true, false))
        .collect();
    let mut stream = crate::delta::session::execute_stream(frame.sort(order)?).await?;
    let mut adds = Vec::new();
    // Sorted rows go out in files of `file_rows`, into the relayout when the
    // layout changed (one commit either way).
    let write = |rows: &RecordBatch| {
        let rows = rows.clone();
        let (delta, relayout, name) = (&delta, relayout.as_ref(), &spec.name);
        async move { delta::write_to(delta, relayout, name, &rows, config.file_rows).await }
    };
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let mut last_key: Option<String> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        for key in key_strings(&batch, &spec.keys)? {
            let Some(key) = key else {
                return Err(spec.sql_error(format!(
                    "a row has a null key ({}); the grain must not be null",
                    spec.keys.join(", ")
                )));
            };
            if last_key.as_ref() == Some(&key) {
                return Err(spec.sql_error(format!(
                    "two rows have the key ({}) = ({}); `keys` must be the grain of the SQL",
                    spec.keys.join(", "),
                    key.replace('\u{1f}', ", ")
                )));
            }
            last_key = Some(key);
        }
        run.rows += batch.num_rows() as u64;
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= config.file_rows {
            let all = concat_batches(&schema, &pending)?;
            pending.clear();
            pending_rows = 0;
            adds.extend(write(&all).await?);
        }
    }
    if pending_rows > 0 {
        adds.extend(write(&concat_batches(&schema, &pending)?).await?);
    }
    let txns: Vec<Transaction> = inputs
        .iter()
        .filter_map(|i| {
            version(&i.table).map(|v| Transaction::new(gold_app_id(&spec.name, &i.qualified()), v))
        })
        .collect();
    run.files_removed = removes.len();
    run.files_added = adds.len();
    let metadata = metadata(&run, &inputs);
    let committed = delta::TableCommit::new(delta::CommitMode::from_overwrite(full))
        .with_relayout(relayout)
        .with_removes(removes)
        .with_adds(adds)
        .with_transactions(txns)
        .with_metadata(metadata)
        .commit(&mut delta, &spec.name)
        .await?;
    run.version = Some(committed);
    run.current_version = Some(committed);
    run.elapsed = started.elapsed();
    Ok(run)
}

/// The mart's state as far as the refresh decision goes.
struct Layout {
    full_refresh: bool,
    reads_system: bool,
    same_layout: bool,
    exists: bool,
    /// Rows in the mart (from the files' statistics).
    mart_rows: u64,
}

async fn decide(
    ctx: &SessionContext,
    spec: &MartSpec,
    schema: &SchemaRef,
    inputs: &[&super::catalog::Entry],
    watermarks: &BTreeMap<String, Option<i64>>,
    layout: Layout,
) -> Result<Refresh> {
    if layout.full_refresh {
        return Ok(Refresh::Full("--full-refresh".into()));
    }
    if !layout.exists {
        return Ok(Refresh::Full("new mart".into()));
    }
    if !layout.same_layout {
        return Ok(Refresh::Full("columns or partitioning changed".into()));
    }
    if layout.reads_system {
        return Ok(Refresh::Full("reads the system tables".into()));
    }
    let key_type = match &spec.incremental_by {
        Some(column) => Some(
            schema
                .field_with_name(column)
                .map_err(|_| {
                    spec.sql_error(format!("does not select `{column}` (incremental_by)"))
                })?
                .data_type()
                .clone(),
        ),
        None => None,
    };
    let mut keys: HashSet<ScalarValue> = HashSet::new();
    let mut dates = BTreeSet::new();
    let mut changed_any = false;
    for input in inputs {
        let current = version(&input.table);
        let seen = watermarks.get(&input.name).copied().flatten();
        if current == seen {
            continue;
        }
        changed_any = true;
        let (Some(rule), Some(seen), Some(current)) =
            (spec.incremental.get(&input.name), seen, current)
        else {
            return Ok(Refresh::Full(format!("{} changed", input.name)));
        };
        if current < seen {
            return Ok(Refresh::Full(format!("{} was rebuilt", input.name)));
        }
        let Some(changes) = file_changes(&input.table, &input.name, seen, current).await? else {
            return Ok(Refresh::Full(format!(
                "{}: history unavailable",
                input.name
            )));
        };
        let found = match &key_type {
            Some(key_type) => changed_keys(
                ctx,
                &input.table,
                spec,
                &input.name,
                rule,
                key_type,
                &changes,
            )
            .await?
            .map(|k| keys.extend(k)),
            None => changed_dates(ctx, &input.table, spec, &input.name, rule, &changes)
                .await?
                .map(|d| dates.extend(d)),
        };
        if found.is_none() {
            return Ok(Refresh::Full(format!("{}: removed files gone", input.name)));
        }
    }
    if !changed_any {
        return Ok(Refresh::Unchanged);
    }
    if key_type.is_none() {
        return Ok(Refresh::Partitions(dates));
    }
    // Recomputing most keys costs a rebuild plus the filtering: rebuild.
    if keys.len() as u64 * 2 > layout.mart_rows {
        return Ok(Refresh::Full(format!(
            "{} changed keys of {} rows",
            keys.len(),
            layout.mart_rows
        )));
    }
    let mut keys: Vec<ScalarValue> = keys.into_iter().collect();
    keys.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(Refresh::Keys(keys))
}

/// For a mart incremental by key: the files holding any of `keys` (pruned
/// by the key column's statistics, then confirmed by reading them) and
/// their other rows, which are written again with the recomputed ones.
async fn key_files(
    ctx: &SessionContext,
    delta: &deltalake::DeltaTable,
    spec: &MartSpec,
    column: &str,
    keys: &[ScalarValue],
    schema: &SchemaRef,
) -> Result<(Vec<Remove>, RecordBatch)> {
    let files = delta::files(delta, &spec.name)?;
    if keys.is_empty() || files.is_empty() {
        return Ok((Vec::new(), RecordBatch::new_empty(schema.clone())));
    }
    let values = KeyValues::from_array(&ScalarValue::iter_to_array(keys.iter().cloned())?)?;
    let selected: Vec<&TableFile> = delta::candidates(&files, column, &values)
        .into_iter()
        .filter_map(|i| files.get(i))
        .collect();
    let delta::FileRows {
        rows, file_of_row, ..
    } = delta::read_files(ctx, delta, &spec.name, &selected, schema).await?;
    let key_column = rows
        .column_by_name(column)
        .ok_or_else(|| spec.sql_error(format!("the mart has no column `{column}`")))?;
    let wanted: HashSet<&ScalarValue> = keys.iter().collect();
    let mut changed = Vec::with_capacity(rows.num_rows());
    let mut hit = vec![false; selected.len()];
    for (row, file) in file_of_row.iter().enumerate() {
        let is_changed = wanted.contains(&ScalarValue::try_from_array(key_column, row)?);
        if is_changed && let Some(h) = hit.get_mut(*file) {
            *h = true;
        }
        changed.push(is_changed);
    }
    let keep: BooleanArray = file_of_row
        .iter()
        .zip(&changed)
        .map(|(file, is_changed)| Some(!is_changed && hit.get(*file).copied().unwrap_or(false)))
        .collect();
    let kept = filter_record_batch(&rows, &keep)?;
    let removes = selected
        .iter()
        .zip(&hit)
        .filter(|(_, hit)| **hit)
        .map(|(f, _)| f.remove.clone())
        .collect();
    Ok((removes, kept))
}

fn all_files(delta: &deltalake::DeltaTable, name: &str) -> Result<Vec<Remove>> {
    Ok(delta::files(delta, name)?
        .into_iter()
        .map(|f| f.remove)
        .collect())
}

fn partition_files(
    delta: &deltalake::DeltaTable,
    name: &str,
    column: &str,
    values: &BTreeSet<String>,
) -> Result<Vec<Remove>> {
    let snapshot = delta.snapshot().map_err(|e| Error::delta(name, e))?;
    Ok(snapshot
        .log_data()
        .into_iter()
        .filter(|view| {
            view.partition_values_map()
                .get(column)
                .and_then(|v| v.as_deref())
                .is_some_and(|v| values.contains(v))
        })
        .map(|view| view.remove_action(true))
        .collect())
}

fn metadata(
    run: &MartRun,
    inputs: &[&super::catalog::Entry],
) -> serde_json::Map<String, serde_json::Value> {
    let (refresh, partitions) = match &run.refresh {
        Refresh::Unchanged => ("unchanged".to_string(), 0),
        Refresh::Full(why) => (format!("full: {why}"), 0),
        Refresh::Partitions(p) => ("partitions".to_string(), p.len()),
        Refresh::Keys(k) => ("keys".to_string(), k.len()),
    };
    let versions: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|i| (i.qualified(), serde_json::json!(version(&i.table))))
        .collect();
    let mut map = serde_json::Map::new();
    map.insert(
        "lakehouse.gold".into(),
        serde_json::json!({
            "refresh": refresh,
            "partitions": partitions,
            "rows": run.rows,
            "files_removed": run.files_removed,
            "files_added": run.files_added,
            "inputs": versions,
        }),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_literals() {
        assert_eq!(date_literal(0), "1970-01-01");
        assert_eq!(date_literal(19_723), "2024-01-01");
    }
}
