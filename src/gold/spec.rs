//! Mart specs: `layers/gold/<mart>.toml`, with the SQL in `sql/gold/<mart>.sql`.
//!
//! A mart is one DataFusion `SELECT` over the bronze, silver and catalog
//! tables (see [`super::catalog`]), written as a Delta table and published to
//! Postgres. The spec gives its grain (the Postgres primary key), optional
//! date partitioning with the rules that make runs incremental, and indexes.
//! Errors name the file, the key and the line, as silver's do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// A spec as written in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMart {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sql: Option<PathBuf>,
    keys: Vec<String>,
    #[serde(default)]
    partition_by: Option<String>,
    #[serde(default)]
    incremental_by: Option<String>,
    #[serde(default)]
    indexes: Vec<Vec<String>>,
    #[serde(default)]
    incremental: BTreeMap<String, String>,
    #[serde(default = "yes")]
    publish: bool,
    #[serde(default)]
    zorder: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A validated mart spec with its SQL text.
#[derive(Debug, Clone)]
pub struct MartSpec {
    /// Mart name (the spec file's stem); also the Delta and Postgres table name.
    pub name: String,
    /// The spec file, for error messages.
    pub file: PathBuf,
    /// The SQL file, for error messages.
    pub sql_file: PathBuf,
    /// Free text (becomes the Postgres table comment).
    pub description: Option<String>,
    /// The mart's SQL.
    pub sql: String,
    /// The grain: unique, non-null; the Postgres primary key.
    pub keys: Vec<String>,
    /// A `DATE` output column the Delta table is partitioned by. Required for
    /// incremental runs, which replace whole partitions.
    pub partition_by: Option<String>,
    /// A key column by whose values the mart is incremental (instead of by
    /// date partition): the `incremental` rules then map changed input rows
    /// to values of this column, and a run recomputes only the rows with
    /// those values, rewriting only the files that hold them.
    pub incremental_by: Option<String>,
    /// Extra Postgres indexes (each a list of columns).
    pub indexes: Vec<Vec<String>>,
    /// Per table the SQL reads: how a change to it maps to the partitions to
    /// recompute. The value is a column of that table holding the partition
    /// date (`order_date`), or a `SELECT` over `changed` (the table's changed
    /// rows) and any other table returning the dates (with `incremental_by`:
    /// the key values instead of dates). A read table not listed
    /// here makes any change to it rebuild the whole mart.
    pub incremental: BTreeMap<String, String>,
    /// Whether the mart is published to Postgres.
    pub publish: bool,
    /// Columns `lakehouse optimize` Z-orders the mart's files by (empty: plain compaction).
    pub zorder: Vec<String>,
}

impl MartSpec {
    /// A configuration error about this spec file.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::config(&self.file, message)
    }

    /// A configuration error about this mart's SQL file.
    pub fn sql_error(&self, message: impl Into<String>) -> Error {
        Error::config(&self.sql_file, message)
    }

    /// Whether the `incremental` rule of `table` is a query (else a column).
    pub fn rule_is_query(rule: &str) -> bool {
        rule.trim_start()
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("select"))
    }
}

pub use crate::spec::is_spec_name as is_identifier;

/// Parses and validates one spec; `sql` is the text of its SQL file.
pub fn parse_spec(file: &Path, text: &str, sql_dir: &Path) -> Result<MartSpec> {
    let (name, raw): (String, RawMart) = crate::spec::parse_spec_file(file, text, "mart")?;
    let sql_file = sql_dir.join(
        raw.sql
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{name}.sql"))),
    );
    let spec = MartSpec {
        name,
        file: file.to_path_buf(),
        sql_file,
        description: raw.description,
        sql: String::new(),
        keys: raw.keys,
        partition_by: raw.partition_by,
        incremental_by: raw.incremental_by,
        indexes: raw.indexes,
        incremental: raw.incremental,
        publish: raw.publish,
        zorder: raw.zorder,
    };
    validate(&spec)?;
    Ok(spec)
}

fn validate(spec: &MartSpec) -> Result<()> {
    let check = |key: &str, value: &str| -> Result<()> {
        if is_identifier(value) {
            Ok(())
        } else {
            Err(spec.error(format!(
                "{key}: `{value}` must be a lower-case identifier (letters, digits, _)"
            )))
        }
    };
    if spec.keys.is_empty() {
        return Err(
            spec.error("keys: the mart's grain (its primary key) needs at least one column")
        );
    }
    let mut seen = BTreeSet::new();
    for key in &spec.keys {
        check("keys", key)?;
        if !seen.insert(key) {
            return Err(spec.error(format!("keys: `{key}` is listed twice")));
        }
    }
    if let Some(column) = &spec.partition_by {
        check("partition_by", column)?;
        // Partitions are replaced whole: a key spanning partitions could be
        // written twice.
        if !spec.keys.contains(column) {
            return Err(spec.error(format!(
                "partition_by: `{column}` must also be one of the keys (the grain)"
            )));
        }
    }
    for (index, columns) in spec.indexes.iter().enumerate() {
        if columns.is_empty() {
            return Err(spec.error(format!("indexes[{index}]: list at least one column")));
        }
        for column in columns {
            check(&format!("indexes[{index}]"), column)?;
        }
    }
    for column in &spec.zorder {
        check("zorder", column)?;
        if spec.partition_by.as_ref() == Some(column) {
            return Err(spec.error(format!(
                "zorder: `{column}` is the partition column; Z-order by columns inside a partition"
            )));
        }
    }
    if let Some(column) = &spec.incremental_by {
        check("incremental_by", column)?;
        if !spec.keys.contains(column) {
            return Err(spec.error(format!(
                "incremental_by: `{column}` must be one of the keys (the grain)"
            )));
        }
        if spec.partition_by.is_some() {
            return Err(spec.error(
                "incremental_by: a mart is incremental by `partition_by` or by `incremental_by`, not both",
            ));
        }
        if spec.incremental.is_empty() {
            return Err(spec.error(format!(
                "incremental_by: add an [incremental] rule per input mapping its changed rows to `{column}` values"
            )));
        }
    }
    if !spec.incremental.is_empty() && spec.partition_by.is_none() && spec.incremental_by.is_none()
    {
        return Err(spec.error(
            "incremental: needs `partition_by` (a DATE column: runs replace partitions) \
             or `incremental_by` (a key column: runs replace the rows of the changed keys)",
        ));
    }
    for (table, rule) in &spec.incremental {
        check("incremental", table)?;
        if !MartSpec::rule_is_query(rule) {
            check(&format!("incremental.{table}"), rule)?;
        }
    }
    Ok(())
}

/// All marts of the layer, in name order.
#[derive(Debug, Clone, Default)]
pub struct Marts {
    /// The specs.
    pub marts: Vec<MartSpec>,
}

impl Marts {
    /// Reads the `*.toml` specs of `layers` and their SQL from `sql_dir`.
    pub fn load(layers: crate::spec::SpecFolder<'_>, sql_dir: &Path) -> Result<Marts> {
        let mut marts = Vec::new();
        for (file, text) in crate::spec::read_spec_files(layers, "gold mart specs")? {
            let mut spec = parse_spec(&file, &text, sql_dir)?;
            spec.sql = std::fs::read_to_string(&spec.sql_file).map_err(|e| {
                spec.error(format!("sql: cannot read {}: {e}", spec.sql_file.display()))
            })?;
            marts.push(spec);
        }
        Ok(Marts { marts })
    }

    /// The spec of `name`.
    pub fn get(&self, name: &str) -> Option<&MartSpec> {
        self.marts.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MartSpec> {
        parse_spec(Path::new("layers/gold/m.toml"), text, Path::new("sql/gold"))
    }

    const GOOD: &str = r#"
keys = ["order_date", "category_id"]
partition_by = "order_date"
indexes = [["category_id"]]
[incremental]
fact_sales = "order_date"
dim_product = "SELECT f.order_date FROM fact_sales f JOIN changed c ON f.product_key = c.product_key"
"#;

    #[test]
    fn good_spec_parses() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.name, "m");
        assert_eq!(spec.sql_file, Path::new("sql/gold/m.sql"));
        assert!(spec.publish);
        assert!(MartSpec::rule_is_query(&spec.incremental["dim_product"]));
        assert!(!MartSpec::rule_is_query(&spec.incremental["fact_sales"]));
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let err = parse(&GOOD.replace("indexes", "indexs"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layers/gold/m.toml") && err.contains("indexs"),
            "{err}"
        );
        assert!(err.contains("line"), "{err}");
        let err = parse(&GOOD.replace("partition_by = \"order_date\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("incremental") && err.contains("partition_by"),
            "{err}"
        );
        let err = parse(&GOOD.replace("keys = [\"order_date\", ", "keys = ["))
            .unwrap_err()
            .to_string();
        assert!(err.contains("partition_by"), "{err}");
        let err = parse(&GOOD.replace("\"order_date\"\ndim", "\"Order Date\"\ndim"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("incremental.fact_sales"), "{err}");
    }

    #[test]
    fn incremental_by_key() {
        let by_key = r#"
keys = ["product_id"]
incremental_by = "product_id"
[incremental]
fact_sales = "product_id"
"#;
        let spec = parse(by_key).unwrap();
        assert_eq!(spec.incremental_by.as_deref(), Some("product_id"));
        let err = parse(&by_key.replace(
            "incremental_by = \"product_id\"",
            "incremental_by = \"sku\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("incremental_by") && err.contains("keys"),
            "{err}"
        );
        let err = parse(&by_key.replace("[incremental]\nfact_sales = \"product_id\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[incremental]"), "{err}");
        let err = parse(&GOOD.replace(
            "partition_by",
            "incremental_by = \"category_id\"\npartition_by",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");
    }
}
