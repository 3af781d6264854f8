//! Table specs: `layers/silver/<table>.toml`, and the pipeline they form.
//!
//! A spec says where a silver table's rows come from (one bronze topic, its
//! columns and their SQL types), how they are keyed and sequenced, what kind of
//! table it is (SCD1, SCD2, fact, generated date dimension), its expectations
//! and, for facts, its dimension lookups. The SQL that shapes the rows lives in
//! `sql/silver/<table>.sql`. Errors name the file and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::spec::is_identifier;

/// What kind of silver table a spec describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One row per business key, overwritten by the latest change.
    Scd1,
    /// One row per version of a business key (`valid_from`, `valid_to`, `is_current`).
    Scd2,
    /// One row per grain (the keys), with dimension keys looked up.
    Fact,
    /// A generated calendar covering the facts' dates.
    Date,
}

/// What a delete in the source does to the silver table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Deletes delete (SCD1, facts) or close the current version (SCD2).
    #[default]
    Apply,
    /// Deletes and truncates are ignored (e.g. a dimension derived from a
    /// column of another table, whose rows outlive the source rows).
    Ignore,
}

/// What happens to a row that fails an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Count it and keep the row.
    Warn,
    /// Keep the row out of the table; it goes to `<table>_quarantine`.
    Drop,
    /// Abort the run; nothing is committed.
    Fail,
}

impl Action {
    /// The lower-case name, as in specs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Drop => "drop",
            Action::Fail => "fail",
        }
    }
}

/// `[source]`: the bronze topic a table reads and the columns it extracts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The relation name the SQL selects from (e.g. `customers`).
    pub name: String,
    /// The bronze topic (e.g. `shop.public.customers`).
    pub topic: String,
    /// Source column → SQL type (`BIGINT`, `VARCHAR`, `DECIMAL(10,2)`,
    /// `DATE`, `TIMESTAMP`, `BOOLEAN`, ...). Each is read from the change's
    /// `after` image, else `before`, else the Kafka key, and cast.
    pub columns: BTreeMap<String, String>,
    /// Optional SQL expression over the source columns that orders changes,
    /// replacing the source position (e.g. `CAST(updated_at AS BIGINT)`).
    /// The source `ts_ms` still breaks ties.
    pub sequence_by: Option<String>,
}

/// `[[expectations]]`: a named row predicate and what a failing row does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationSpec {
    /// Rule name, reported in counts and in the quarantine.
    pub name: String,
    /// SQL predicate over the shaped row; a row passes when it is TRUE.
    pub expr: String,
    /// `warn`, `drop` or `fail`.
    pub action: Action,
}

/// `[[lookups]]` of a fact: a join to another silver table giving a key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// The silver table looked up (must have a surrogate key, or be a date dimension).
    pub table: String,
    /// Fact column → looked-up table's business key column.
    pub on: BTreeMap<String, String>,
    /// Name of the key column added to the fact (`-1` when there is no match yet).
    pub key: String,
    /// Extra columns fetched: fact column name → looked-up table column.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// For SCD2 tables: the fact column (a timestamp) whose time picks the
    /// version; without it the current version is used.
    pub as_of: Option<String>,
}

/// `[date]` of a generated date dimension.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateSpec {
    /// `table.column` date columns the calendar must cover.
    pub covers: Vec<String>,
    /// Fixed first date (`YYYY-MM-DD`), optional.
    pub from: Option<String>,
    /// Fixed last date (`YYYY-MM-DD`), optional.
    pub to: Option<String>,
}

/// A spec as written in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    kind: Kind,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sql: Option<PathBuf>,
    #[serde(default)]
    source: Option<SourceSpec>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    surrogate_key: Option<String>,
    #[serde(default)]
    track: Option<Vec<String>>,
    #[serde(default)]
    partition_by: Vec<String>,
    #[serde(default)]
    deletes: DeleteMode,
    #[serde(default)]
    unknown_member: Option<bool>,
    #[serde(default)]
    expectations: Vec<ExpectationSpec>,
    #[serde(default)]
    lookups: Vec<LookupSpec>,
    #[serde(default)]
    date: Option<DateSpec>,
    #[serde(default)]
    zorder: Vec<String>,
}

/// A validated table spec with its SQL text.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Table name (the spec file's stem).
    pub name: String,
    /// The spec file, for error messages.
    pub file: PathBuf,
    /// The SQL file, for error messages.
    pub sql_file: PathBuf,
    /// Kind of table.
    pub kind: Kind,
    /// Free text.
    pub description: Option<String>,
    /// The shaping SQL (`None` for date dimensions).
    pub sql: Option<String>,
    /// The bronze source (`None` for date dimensions).
    pub source: Option<SourceSpec>,
    /// Business keys (SCD1/SCD2) or grain (facts): output columns of the SQL.
    pub keys: Vec<String>,
    /// Surrogate key column, when the table has one.
    pub surrogate_key: Option<String>,
    /// SCD2 tracked columns (`None`: every non-key column).
    pub track: Option<Vec<String>>,
    /// Partition columns.
    pub partition_by: Vec<String>,
    /// Whether deletes apply.
    pub deletes: DeleteMode,
    /// Whether the table holds an unknown member row (surrogate key -1).
    pub unknown_member: bool,
    /// Expectations, in order.
    pub expectations: Vec<ExpectationSpec>,
    /// Fact lookups, in order (later lookups may use columns of earlier ones).
    pub lookups: Vec<LookupSpec>,
    /// Date dimension settings.
    pub date: Option<DateSpec>,
    /// Columns `lakehouse optimize` Z-orders the table's files by (empty: plain compaction).
    pub zorder: Vec<String>,
}

impl TableSpec {
    /// A configuration error about this spec file.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::config(&self.file, message)
    }

    /// A configuration error about this table's SQL file.
    pub fn sql_error(&self, message: impl Into<String>) -> Error {
        Error::config(&self.sql_file, message)
    }

    /// Tables this one reads (lookups and date coverage), which run first.
    pub fn dependencies(&self) -> BTreeSet<String> {
        let mut deps: BTreeSet<String> = self.lookups.iter().map(|l| l.table.clone()).collect();
        if let Some(date) = &self.date {
            for cover in &date.covers {
                if let Some((table, _)) = cover.split_once('.') {
                    deps.insert(table.to_string());
                }
            }
        }
        deps
    }
}

/// Column names the engine adds; SQL output may not use them.
pub const RESERVED: &[&str] = &["valid_from", "valid_to", "is_current", "_seq", "_seq_ts"];

/// Parses and validates one spec; `sql_dir` is where its SQL lives.
pub fn parse_spec(file: &Path, text: &str, sql_dir: &Path) -> Result<TableSpec> {
    let (name, raw): (String, RawSpec) = crate::spec::parse_spec_file(file, text, "table")?;
    let sql_file = sql_dir.join(
        raw.sql
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{name}.sql"))),
    );
    let spec = TableSpec {
        name: name.clone(),
        file: file.to_path_buf(),
        sql_file: sql_file.clone(),
        kind: raw.kind,
        description: raw.description,
        sql: None,
        source: raw.source,
        keys: raw.keys,
        surrogate_key: raw.surrogate_key,
        track: raw.track,
        partition_by: raw.partition_by,
        deletes: raw.deletes,
        unknown_member: raw
            .unknown_member
            .unwrap_or(matches!(raw.kind, Kind::Scd1 | Kind::Scd2 | Kind::Date)),
        expectations: raw.expectations,
        lookups: raw.lookups,
        date: raw.date,
        zorder: raw.zorder,
    };
    validate(spec, &name)
}

fn validate(mut spec: TableSpec, name: &str) -> Result<TableSpec> {
    let check_ident = |key: &str, value: &str| -> Result<()> {
        if is_identifier(value) {
            Ok(())
        } else {
            Err(spec.error(format!(
                "{key}: `{value}` must be a lower-case identifier (letters, digits, _)"
            )))
        }
    };
    match spec.kind {
        Kind::Date => {
            if spec.source.is_some() {
                return Err(spec.error("source: a date dimension is generated and has no source"));
            }
            let Some(date) = &spec.date else {
                return Err(spec.error(
                    "date: a `kind = \"date\"` table needs a [date] section with `covers`",
                ));
            };
            for cover in &date.covers {
                match cover.split_once('.') {
                    Some((t, c)) if is_identifier(t) && is_identifier(c) => {}
                    _ => {
                        return Err(
                            spec.error(format!("date.covers: `{cover}` must be `table.column`"))
                        );
                    }
                }
            }
            for (key, value) in [("date.from", &date.from), ("date.to", &date.to)] {
                if let Some(v) = value {
                    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|e| {
                        spec.error(format!("{key}: `{v}` is not a YYYY-MM-DD date: {e}"))
                    })?;
                }
            }
            if !spec.keys.is_empty() || !spec.lookups.is_empty() || !spec.expectations.is_empty() {
                return Err(spec.error(
                    "keys/lookups/expectations: a date dimension takes only [date] (its key is date_key)",
                ));
            }
            return Ok(spec);
        }
        Kind::Scd1 | Kind::Scd2 | Kind::Fact => {}
    }
    if spec.date.is_some() {
        return Err(spec.error("date: only `kind = \"date\"` tables have a [date] section"));
    }
    let Some(source) = &spec.source else {
        return Err(spec.error("source: missing [source] (name, topic, columns)"));
    };
    check_ident("source.name", &source.name)?;
    if source.topic.trim().is_empty() {
        return Err(spec.error("source.topic: must not be empty"));
    }
    if source.columns.is_empty() {
        return Err(spec.error("source.columns: declare at least one column and its SQL type"));
    }
    for (column, ty) in &source.columns {
        if column.is_empty() || column.contains('\'') || column.contains('"') {
            return Err(spec.error(format!(
                "source.columns: `{column}` is not a usable column name"
            )));
        }
        if ty.trim().is_empty() || ty.contains(';') {
            return Err(spec.error(format!("source.columns.{column}: `{ty}` is not a SQL type")));
        }
    }
    if spec.keys.is_empty() {
        return Err(
            spec.error("keys: at least one business key (grain for facts) column is required")
        );
    }
    for key in &spec.keys {
        check_ident("keys", key)?;
    }
    if let Some(sk) = &spec.surrogate_key {
        check_ident("surrogate_key", sk)?;
        if spec.keys.contains(sk) {
            return Err(spec.error(format!("surrogate_key: `{sk}` is also a business key")));
        }
    }
    if spec.kind == Kind::Scd2 && spec.surrogate_key.is_none() {
        return Err(
            spec.error("surrogate_key: an SCD2 dimension needs a surrogate key column name")
        );
    }
    if spec.kind != Kind::Scd2 && spec.track.is_some() {
        return Err(spec.error("track: tracked columns only apply to `kind = \"scd2\"`"));
    }
    if spec.kind != Kind::Fact && !spec.lookups.is_empty() {
        return Err(spec.error("lookups: only facts have dimension lookups"));
    }
    let mut seen = BTreeSet::new();
    for (index, expectation) in spec.expectations.iter().enumerate() {
        check_ident(&format!("expectations[{index}].name"), &expectation.name)?;
        if !seen.insert(expectation.name.clone()) {
            return Err(spec.error(format!(
                "expectations[{index}].name: `{}` is used twice",
                expectation.name
            )));
        }
        if expectation.expr.trim().is_empty() {
            return Err(spec.error(format!("expectations[{index}].expr: must not be empty")));
        }
    }
    for (index, lookup) in spec.lookups.iter().enumerate() {
        check_ident(&format!("lookups[{index}].table"), &lookup.table)?;
        check_ident(&format!("lookups[{index}].key"), &lookup.key)?;
        if lookup.table == name {
            return Err(spec.error(format!(
                "lookups[{index}].table: a table cannot look itself up"
            )));
        }
        if lookup.on.is_empty() {
            return Err(spec.error(format!(
                "lookups[{index}].on: at least one `fact_column = \"table_column\"`"
            )));
        }
        for (from, to) in lookup.on.iter().chain(lookup.columns.iter()) {
            check_ident(&format!("lookups[{index}]"), from)?;
            check_ident(&format!("lookups[{index}]"), to)?;
        }
        if let Some(as_of) = &lookup.as_of {
            check_ident(&format!("lookups[{index}].as_of"), as_of)?;
        }
    }
    for column in &spec.partition_by {
        check_ident("partition_by", column)?;
    }
    if spec.unknown_member && spec.surrogate_key.is_none() {
        spec.unknown_member = false;
    }
    Ok(spec)
}

/// All table specs of the layer, in dependency order.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// Specs in an order where every table comes after the tables it reads.
    pub tables: Vec<TableSpec>,
}

impl Pipeline {
    /// Reads the `*.toml` specs of `layers` and their SQL from `sql_dir`.
    pub fn load(layers: crate::spec::SpecFolder<'_>, sql_dir: &Path) -> Result<Pipeline> {
        let mut specs = Vec::new();
        for (file, text) in crate::spec::read_spec_files(layers, "silver table specs")? {
            let mut spec = parse_spec(&file, &text, sql_dir)?;
            if spec.kind != Kind::Date {
                let sql = std::fs::read_to_string(&spec.sql_file).map_err(|e| {
                    spec.error(format!("sql: cannot read {}: {e}", spec.sql_file.display()))
                })?;
                spec.sql = Some(sql);
            }
            specs.push(spec);
        }
        Self::from_specs(specs)
    }

    /// Orders specs by their dependencies, checking that referenced tables exist.
    pub fn from_specs(specs: Vec<TableSpec>) -> Result<Pipeline> {
        let names: BTreeSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        // Date dimension keys are computed (yyyymmdd), not joined: a fact's
        // lookup into one is no dependency (the calendar covers the facts).
        let dates: BTreeSet<String> = specs
            .iter()
            .filter(|s| s.kind == Kind::Date)
            .map(|s| s.name.clone())
            .collect();
        let deps = |spec: &TableSpec| -> BTreeSet<String> {
            let covered: BTreeSet<String> = spec
                .date
                .iter()
                .flat_map(|d| d.covers.iter())
                .filter_map(|c| c.split_once('.').map(|(t, _)| t.to_string()))
                .collect();
            spec.dependencies()
                .into_iter()
                .filter(|d| !dates.contains(d) || covered.contains(d))
                .collect()
        };
        for spec in &specs {
            for dep in spec.dependencies() {
                if !names.contains(&dep) {
                    return Err(spec.error(format!(
                        "`{dep}` is referenced but there is no layers spec `{dep}.toml`"
                    )));
                }
            }
        }
        let mut ordered: Vec<TableSpec> = Vec::new();
        let mut remaining = specs;
        while !remaining.is_empty() {
            let done: BTreeSet<String> = ordered.iter().map(|s| s.name.clone()).collect();
            let (ready, blocked): (Vec<_>, Vec<_>) = remaining
                .into_iter()
                .partition(|s| deps(s).iter().all(|d| done.contains(d)));
            if ready.is_empty() {
                let cycle: Vec<String> = blocked.iter().map(|s| s.name.clone()).collect();
                return Err(blocked[0].error(format!(
                    "lookups/covers form a cycle between {}",
                    cycle.join(", ")
                )));
            }
            ordered.extend(ready);
            remaining = blocked;
        }
        Ok(Pipeline { tables: ordered })
    }

    /// The spec of `name`.
    pub fn get(&self, name: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TableSpec> {
        parse_spec(
            Path::new("layers/silver/dim_x.toml"),
            text,
            Path::new("sql/silver"),
        )
    }

    const GOOD: &str = r#"
kind = "scd2"
keys = ["customer_id"]
surrogate_key = "customer_key"
track = ["email"]
[source]
name = "customers"
topic = "shop.public.customers"
columns = { id = "BIGINT", email = "VARCHAR" }
[[expectations]]
name = "has_email"
expr = "email IS NOT NULL"
action = "drop"
"#;

    #[test]
    fn good_spec_parses() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.name, "dim_x");
        assert_eq!(spec.kind, Kind::Scd2);
        assert!(spec.unknown_member);
        assert_eq!(spec.sql_file, Path::new("sql/silver/dim_x.sql"));
        assert_eq!(spec.expectations[0].action, Action::Drop);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse(&GOOD.replace("track =", "trakc ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("layers/silver/dim_x.toml"), "{err}");
        assert!(err.contains("trakc"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = parse(&GOOD.replace("surrogate_key = \"customer_key\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("surrogate_key"), "{err}");
        let err = parse(&GOOD.replace("keys = [\"customer_id\"]", "keys = []"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("keys"), "{err}");
        let err = parse(&GOOD.replace("\"drop\"", "\"explode\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("explode"), "{err}");
        let err = parse(&GOOD.replace("kind = \"scd2\"", "kind = \"scd1\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("track"), "{err}");
    }

    #[test]
    fn missing_lookup_table_and_cycles_are_errors() {
        let fact = parse_spec(
            Path::new("f.toml"),
            r#"
kind = "fact"
keys = ["id"]
[source]
name = "s"
topic = "t"
columns = { id = "BIGINT" }
[[lookups]]
table = "dim_nope"
on = { id = "id" }
key = "nope_key"
"#,
            Path::new("sql"),
        )
        .unwrap();
        let err = Pipeline::from_specs(vec![fact]).unwrap_err().to_string();
        assert!(err.contains("dim_nope") && err.contains("f.toml"), "{err}");
    }
}
