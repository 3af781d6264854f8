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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTableError;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{Remove, StructType, Transaction};
use futures::StreamExt;

use super::catalog::{Catalog, LAYER, SYSTEM_TABLES, gold_app_id};
use super::changes::{changed_dates, file_changes};
use super::config::GoldConfig;
use super::spec::MartSpec;
use crate::error::{Error, Result};
use crate::silver::keys::key_strings;
use crate::silver::table::{self, txn_version, version};
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

fn date_literal(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|d| d.date_naive().format("%Y-%m-%d").to_string())
        .unwrap_or_default()
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
    let frame = ctx
        .sql(&spec.sql)
        .await
        .map_err(|e| spec.sql_error(format!("{e}")))?;
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
    let refresh = decide(
        ctx,
        spec,
        &inputs,
        &watermarks,
        full_refresh,
        reads_system,
        same_layout,
        existing.version().is_some(),
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
    let (mut delta, _) = table::ensure(
        root,
        LAYER,
        &spec.name,
        &schema,
        &partition_by,
        full,
        &spec.file,
    )
    .await?;

    let order: Vec<String> = spec.keys.iter().map(|k| format!("\"{k}\"")).collect();
    let (filter, removes) = match &refresh {
        // The inputs moved but no row changed (an `optimize` of an input
        // rewrote files with the same rows): only the watermarks advance.
        Refresh::Partitions(dates) if dates.is_empty() => (" WHERE false".to_string(), Vec::new()),
        Refresh::Partitions(dates) => {
            let Some(p) = &spec.partition_by else {
                return Err(spec.error("partition_by: missing"));
            };
            let values: BTreeSet<String> = dates.iter().map(|d| date_literal(*d)).collect();
            let list: Vec<String> = values.iter().map(|d| format!("DATE '{d}'")).collect();
            let removes = partition_files(&delta, &spec.name, p, &values)?;
            (format!(" WHERE \"{p}\" IN ({})", list.join(", ")), removes)
        }
        _ => (String::new(), all_files(&delta, &spec.name)?),
    };
    let sql = format!(
        "SELECT * FROM ({}) AS __mart{filter} ORDER BY {}",
        spec.sql.trim().trim_end_matches(';'),
        order.join(", ")
    );
    let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
    let mut adds = Vec::new();
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
            adds.extend(table::write(&delta, &spec.name, &all, config.file_rows).await?);
            pending.clear();
            pending_rows = 0;
        }
    }
    if pending_rows > 0 {
        let all = concat_batches(&schema, &pending)?;
        adds.extend(table::write(&delta, &spec.name, &all, config.file_rows).await?);
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
    let committed =
        table::commit(&mut delta, &spec.name, removes, adds, txns, metadata, full).await?;
    run.version = Some(committed);
    run.current_version = Some(committed);
    run.elapsed = started.elapsed();
    Ok(run)
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    ctx: &SessionContext,
    spec: &MartSpec,
    inputs: &[&super::catalog::Entry],
    watermarks: &BTreeMap<String, Option<i64>>,
    full_refresh: bool,
    reads_system: bool,
    same_layout: bool,
    exists: bool,
) -> Result<Refresh> {
    if full_refresh {
        return Ok(Refresh::Full("--full-refresh".into()));
    }
    if !exists {
        return Ok(Refresh::Full("new mart".into()));
    }
    if !same_layout {
        return Ok(Refresh::Full("columns or partitioning changed".into()));
    }
    if reads_system {
        return Ok(Refresh::Full("reads the system tables".into()));
    }
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
        match changed_dates(ctx, spec, &input.name, rule, &changes).await? {
            Some(d) => dates.extend(d),
            None => return Ok(Refresh::Full(format!("{}: removed files gone", input.name))),
        }
    }
    Ok(if !changed_any {
        Refresh::Unchanged
    } else {
        Refresh::Partitions(dates)
    })
}

fn all_files(delta: &deltalake::DeltaTable, name: &str) -> Result<Vec<Remove>> {
    Ok(table::files(delta, name)?
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
