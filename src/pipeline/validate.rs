//! `lakehouse validate`: the whole pipeline checked without data, for CI.
//!
//! Parses every silver and gold spec, plans every silver SQL against its
//! spec's declared source columns (an empty source view), resolves lookups
//! and date `covers` against the planned columns of the tables they name,
//! then plans every mart over empty tables with the silver tables',
//! bronze's and the system tables' columns, and checks its `incremental`
//! rules, and that `[engine]` names a usable scheduler URL. Nothing is read
//! from or written to storage (nor is the cluster contacted). Every error found is
//! reported (a table whose inputs are broken is skipped, not reported
//! again), each naming its file and, when known, the line. The result also
//! holds the dependency graph: the tables in run order with their inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;

use crate::config::Config;
use crate::delta::session;
use crate::error::{Error, Result};
use crate::gold::{self, MartSpec};
use crate::silver::{self, Kind, Pipeline, TableSpec};
use crate::tables::silver::quarantine_name;

/// A silver table of the graph and what it reads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableNode {
    /// The table.
    pub name: String,
    /// `scd1`, `scd2`, `fact` or `date`.
    pub kind: String,
    /// Its spec file.
    pub file: PathBuf,
    /// The bronze topic it reads (none for a date dimension).
    pub topic: Option<String>,
    /// The tables its lookups read.
    pub lookups: Vec<String>,
    /// The `table.column`s a date dimension covers.
    pub covers: Vec<String>,
}

/// A gold mart of the graph and what its SQL reads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MartNode {
    /// The mart.
    pub name: String,
    /// Its spec file.
    pub file: PathBuf,
    /// The tables its SQL reads.
    pub reads: Vec<String>,
}

/// What `validate` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Silver tables in run order.
    pub silver: Vec<TableNode>,
    /// Gold marts in run order.
    pub gold: Vec<MartNode>,
    /// Every error, in the order found.
    pub errors: Vec<Error>,
}

/// Checks `config`'s pipeline; see the module documentation.
pub async fn validate(config: &Config) -> Report {
    let mut report = Report::default();
    let ctx = match session::new_session(&config.gold.session_limits()) {
        Ok(ctx) => ctx,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    // `[engine]`: a scheduler URL that would fail every ballista run.
    if let Err(e) = crate::delta::cluster::Engine::from_config(&config.engine) {
        report.errors.push(e);
    }
    let silver = check_silver(config, &ctx, &mut report).await;
    check_gold(config, &ctx, &silver, &mut report).await;
    for error in &mut report.errors {
        add_line(error);
    }
    report
}

/// What checking silver leaves for gold.
#[derive(Default)]
struct SilverChecked {
    /// The specs that could be ordered, in run order.
    pipeline: Pipeline,
    /// The columns of every table that planned.
    schemas: BTreeMap<String, SchemaRef>,
    /// Every silver spec file's table, whether it parsed or not.
    named: BTreeSet<String>,
}

/// Silver: parses, orders and plans every table spec.
async fn check_silver(config: &Config, ctx: &SessionContext, report: &mut Report) -> SilverChecked {
    let mut schemas = BTreeMap::new();
    let files = match crate::spec::read_spec_files(config.silver_specs(), "silver table specs") {
        Ok(files) => files,
        Err(e) => {
            report.errors.push(e);
            return SilverChecked::default();
        }
    };
    // Every spec file's table, parsed or not: a lookup to a table whose spec
    // is broken is not also reported as a lookup to a missing table.
    let mut named = BTreeSet::new();
    let mut broken = BTreeSet::new();
    let mut specs = Vec::new();
    for (file, text) in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        named.insert(stem.clone());
        match silver::spec::parse_spec(&file, &text, &config.silver.sql_dir)
            .and_then(with_silver_sql)
        {
            Ok(spec) => specs.push(spec),
            Err(e) => {
                report.errors.push(e);
                broken.insert(stem);
            }
        }
    }
    for spec in &specs {
        if missing_inputs(spec, &named, &mut report.errors) {
            broken.insert(spec.name.clone());
        }
    }
    // Tables reading a broken table cannot be checked; their own errors
    // would only repeat the broken table's.
    loop {
        let before = broken.len();
        for spec in &specs {
            if spec.dependencies().iter().any(|d| broken.contains(d)) {
                broken.insert(spec.name.clone());
            }
        }
        if broken.len() == before {
            break;
        }
    }
    specs.retain(|s| !broken.contains(&s.name));
    let pipeline = match Pipeline::from_specs(specs) {
        Ok(pipeline) => pipeline,
        Err(e) => {
            report.errors.push(e);
            return SilverChecked {
                named,
                ..Default::default()
            };
        }
    };
    let mut failed = BTreeSet::new();
    for spec in &pipeline.tables {
        report.silver.push(table_node(spec));
        if spec.dependencies().iter().any(|d| failed.contains(d)) {
            failed.insert(spec.name.clone());
            continue;
        }
        match silver::check::table_schema(ctx, &pipeline, spec, &schemas).await {
            Ok(schema) => {
                schemas.insert(spec.name.clone(), schema);
            }
            Err(e) => {
                report.errors.push(e);
                failed.insert(spec.name.clone());
            }
        }
    }
    SilverChecked {
        pipeline,
        schemas,
        named,
    }
}

/// A parsed silver spec with its SQL read (date dimensions have none).
fn with_silver_sql(mut spec: TableSpec) -> Result<TableSpec> {
    if spec.kind != Kind::Date {
        let sql = std::fs::read_to_string(&spec.sql_file).map_err(|e| {
            spec.error(format!("sql: cannot read {}: {e}", spec.sql_file.display()))
        })?;
        spec.sql = Some(sql);
    }
    Ok(spec)
}

/// Reports `spec`'s lookups and covers of tables no spec file declares;
/// whether there was one.
fn missing_inputs(spec: &TableSpec, named: &BTreeSet<String>, errors: &mut Vec<Error>) -> bool {
    let mut missing = false;
    for (index, lookup) in spec.lookups.iter().enumerate() {
        if !named.contains(&lookup.table) {
            errors.push(spec.error(format!(
                "lookups[{index}].table: there is no silver table `{t}` (no {t}.toml)",
                t = lookup.table
            )));
            missing = true;
        }
    }
    for cover in spec.date.iter().flat_map(|d| d.covers.iter()) {
        if let Some((table, _)) = cover.split_once('.')
            && !named.contains(table)
        {
            errors.push(spec.error(format!(
                "date.covers: `{cover}`: there is no silver table `{table}` (no {table}.toml)"
            )));
            missing = true;
        }
    }
    missing
}

fn table_node(spec: &TableSpec) -> TableNode {
    let kind = match spec.kind {
        Kind::Scd1 => "scd1",
        Kind::Scd2 => "scd2",
        Kind::Fact => "fact",
        Kind::Date => "date",
    };
    TableNode {
        name: spec.name.clone(),
        kind: kind.to_string(),
        file: spec.file.clone(),
        topic: spec.source.as_ref().map(|s| s.topic.clone()),
        lookups: spec.lookups.iter().map(|l| l.table.clone()).collect(),
        covers: spec.date.iter().flat_map(|d| d.covers.clone()).collect(),
    }
}

/// Gold: plans every mart over empty tables, in run order.
async fn check_gold(
    config: &Config,
    ctx: &SessionContext,
    silver: &SilverChecked,
    report: &mut Report,
) {
    let SilverChecked {
        pipeline,
        schemas,
        named,
    } = silver;
    let broken_silver: BTreeSet<&String> =
        named.iter().filter(|n| !schemas.contains_key(*n)).collect();
    // As `run gold`: a missing default folder means no marts.
    if !config.gold.layers_dir.exists() && !config.is_set("gold.layers_dir") {
        return;
    }
    let files = match crate::spec::read_spec_files(config.gold_specs(), "gold mart specs") {
        Ok(files) => files,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    let mut marts = Vec::new();
    for (file, text) in files {
        let parsed =
            gold::spec::parse_spec(&file, &text, &config.gold.sql_dir).and_then(|mut m| {
                m.sql = std::fs::read_to_string(&m.sql_file).map_err(|e| {
                    m.error(format!("sql: cannot read {}: {e}", m.sql_file.display()))
                })?;
                Ok(m)
            });
        match parsed {
            Ok(mart) => marts.push(mart),
            Err(e) => report.errors.push(e),
        }
    }
    let mut tables: Vec<(String, SchemaRef)> = Vec::new();
    for spec in &pipeline.tables {
        if let Some(schema) = schemas.get(&spec.name) {
            tables.push((spec.name.clone(), schema.clone()));
            tables.push((
                quarantine_name(&spec.name),
                silver::check::quarantine_schema(),
            ));
        }
    }
    if let Err(e) = gold::Catalog::register_empty(ctx, &tables).await {
        report.errors.push(e);
        return;
    }
    // The run order of `run gold`: each mart after the marts it reads, the
    // marts over the system tables last. A mart whose SQL does not parse
    // is reported and left out.
    let parsed: Vec<&MartSpec> = marts
        .iter()
        .filter(|mart| match gold::build::referenced_tables(ctx, mart) {
            Ok(_) => true,
            Err(e) => {
                report.errors.push(e);
                false
            }
        })
        .collect();
    let order = match gold::order::run_order(ctx, &parsed) {
        Ok(order) => order,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    let mut failed: BTreeSet<&String> = BTreeSet::new();
    for mart in order.marts {
        // A mart over a silver table or a mart that did not plan would only
        // repeat its error.
        let over_broken = order.references.get(&mart.name).is_some_and(|refs| {
            refs.iter()
                .any(|r| broken_silver.contains(r) || failed.contains(r))
        });
        if over_broken {
            failed.insert(&mart.name);
            continue;
        }
        match gold::build::plan_mart(ctx, mart).await {
            Ok(planned) => {
                report.gold.push(MartNode {
                    name: mart.name.clone(),
                    file: mart.file.clone(),
                    reads: planned.reads.iter().cloned().collect(),
                });
                if let Err(e) = gold::build::check_incremental_rules(ctx, mart).await {
                    report.errors.push(e);
                }
                // Later marts may read this one.
                let mart_table = [(mart.name.clone(), planned.schema)];
                if let Err(e) = gold::Catalog::register_empty(ctx, &mart_table).await {
                    report.errors.push(e);
                }
            }
            Err(e) => {
                report.errors.push(e);
                failed.insert(&mart.name);
            }
        }
    }
}

/// Adds the line of the key a spec error names (`lookups[0].table: ...`)
/// when the error has no position yet: checks after parsing know the key,
/// not the line.
fn add_line(error: &mut Error) {
    let Error::Config { file, message } = error else {
        return;
    };
    if file.extension().is_none_or(|e| e != "toml") || message.starts_with("line ") {
        return;
    }
    let Some((key, _)) = message.split_once(':') else {
        return;
    };
    let is_key = key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c));
    if key.is_empty() || !is_key {
        return;
    }
    let Ok(text) = std::fs::read_to_string(&*file) else {
        return;
    };
    if let Some(line) = crate::spec::key_line(&text, key) {
        *message = format!("line {line}: {message}");
    }
}

/// How [`render`] writes a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The graph as an indented tree, then a summary line.
    Text,
    /// One JSON document: `silver`, `gold` and `errors`.
    Json,
}

/// The report's dependency graph (and, in JSON, its errors).
pub fn render(report: &Report, format: Format) -> Result<String> {
    use std::fmt::Write;
    if format == Format::Json {
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        let doc = serde_json::json!({
            "silver": report.silver,
            "gold": report.gold,
            "errors": errors,
        });
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::Internal(format!("validate report as JSON: {e}")))?;
        return Ok(text + "\n");
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "silver tables, in run order:");
    for (i, t) in report.silver.iter().enumerate() {
        let _ = writeln!(out, "  {}. {} ({})", i + 1, t.name, t.kind);
        if let Some(topic) = &t.topic {
            let _ = writeln!(out, "       <- topic {topic}");
        }
        for lookup in &t.lookups {
            let _ = writeln!(out, "       <- lookup {lookup}");
        }
        for cover in &t.covers {
            let _ = writeln!(out, "       <- covers {cover}");
        }
    }
    let _ = writeln!(out, "gold marts, in run order:");
    for (i, m) in report.gold.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, m.name);
        for read in &m.reads {
            let _ = writeln!(out, "       <- {read}");
        }
    }
    if report.errors.is_empty() {
        let _ = writeln!(
            out,
            "ok: {} silver tables and {} gold marts plan",
            report.silver.len(),
            report.gold.len()
        );
    }
    Ok(out)
}
