//! Configuration: one `lakehouse.toml`, overridable from the environment.
//!
//! Every section has defaults, so an empty (or missing default) file runs the
//! embedded local setup. Unknown keys and wrong types are errors that name the
//! key and the file. Environment overrides use `LAKEHOUSE_<SECTION>__<KEY>`
//! (double underscore between path segments, case-insensitive), e.g.
//! `LAKEHOUSE_KAFKA__BROKERS=127.0.0.1:9092` or
//! `LAKEHOUSE_BRONZE__FLUSH_ROWS=50000`; the value is read as a TOML value when
//! it parses as one (numbers, booleans, arrays) and as a string otherwise.
//! Storage credentials also come from the usual `AWS_*` / `AZURE_*` variables
//! (see [`crate::storage`]).
//!
//! Relative paths (a local `storage.root`, the `layers_dir`, `sql_dir` and
//! `spill_dir` of silver and gold) resolve against the folder of the
//! configuration file, whether written in it or left at their defaults, as
//! dbt resolves against its project root: the same file runs from any
//! working directory. Paths given in environment overrides are taken as
//! they are (relative to the working directory).

pub mod clock;
pub mod schedule;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::bronze::{BronzeConfig, KafkaConfig};
use crate::error::{Error, Result};
pub use crate::spec::SpecFolder;
pub use crate::storage::StorageConfig;

/// Name of the file read when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "lakehouse.toml";

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "LAKEHOUSE_";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the Delta tables live.
    pub storage: StorageConfig,
    /// The Kafka cluster bronze consumes from.
    pub kafka: KafkaConfig,
    /// Bronze ingestion.
    pub bronze: BronzeConfig,
    /// Silver: table specs, SQL and run limits.
    pub silver: crate::silver::SilverConfig,
    /// Gold: mart specs, SQL and run limits.
    pub gold: crate::gold::GoldConfig,
    /// Postgres the gold marts are published to.
    pub postgres: crate::publish::PostgresConfig,
    /// `lakehouse schedule`: jobs, retries, leases.
    pub schedule: schedule::ScheduleConfig,
    /// Table maintenance: compaction, vacuum, checkpoints.
    pub maintenance: crate::maintenance::MaintenanceConfig,
    /// The Prometheus endpoint of the long-running commands.
    pub metrics: MetricsConfig,
    /// Where the configuration was read from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Dotted keys set in the file (`silver.layers_dir`), not left at defaults.
    #[serde(skip)]
    pub file_keys: BTreeSet<String>,
    /// Dotted keys set by environment overrides.
    #[serde(skip)]
    pub env_keys: BTreeSet<String>,
}

/// `[metrics]`: the Prometheus endpoint of the long-running commands
/// (`run bronze`, `run all --watch`, `schedule`). Off unless `addr` is set
/// (here, with `LAKEHOUSE_METRICS__ADDR`, or with `--metrics-addr`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served, e.g. `0.0.0.0:9464`.
    pub addr: Option<std::net::SocketAddr>,
}

/// The configuration keys that hold paths, resolved against the file's folder.
const PATH_KEYS: [&str; 7] = [
    "storage.root",
    "silver.layers_dir",
    "silver.sql_dir",
    "silver.spill_dir",
    "gold.layers_dir",
    "gold.sql_dir",
    "gold.spill_dir",
];

/// The dotted paths of every leaf key of `table`, prefixed with `prefix`.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => leaf_keys(inner, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

impl Config {
    /// Loads the configuration.
    ///
    /// `explicit` is the `--config` argument: when given, the file must exist.
    /// Without it, `./lakehouse.toml` is read when present and the defaults are
    /// used otherwise. Environment overrides from `env` are applied last.
    pub fn load(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let (path, text) = match explicit {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
                    file: path.to_path_buf(),
                    message: format!("cannot read the configuration file: {e}"),
                })?;
                (Some(path.to_path_buf()), text)
            }
            None => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (Some(path), text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                    Err(e) => {
                        return Err(Error::Config {
                            file: path,
                            message: format!("cannot read the configuration file: {e}"),
                        });
                    }
                }
            }
        };
        let display_path = path.clone().unwrap_or_else(|| PathBuf::from("<defaults>"));
        let mut config = Self::parse(&text, &display_path, env)?;
        if let Some(folder) = path.as_deref().and_then(Path::parent) {
            config.resolve_paths(folder);
        }
        config.source = path;
        Ok(config)
    }

    /// The silver table specs folder.
    pub fn silver_specs(&self) -> SpecFolder<'_> {
        SpecFolder {
            path: &self.silver.layers_dir,
            required: self.is_set("silver.layers_dir"),
        }
    }

    /// The gold mart specs folder.
    pub fn gold_specs(&self) -> SpecFolder<'_> {
        SpecFolder {
            path: &self.gold.layers_dir,
            required: self.is_set("gold.layers_dir"),
        }
    }

    /// Whether `key` (dotted, e.g. `silver.layers_dir`) was set in the file
    /// or the environment rather than left at its default.
    pub fn is_set(&self, key: &str) -> bool {
        self.file_keys.contains(key) || self.env_keys.contains(key)
    }

    /// Resolves the relative paths of [`PATH_KEYS`] that did not come from
    /// the environment against `folder` (the configuration file's).
    pub fn resolve_paths(&mut self, folder: &Path) {
        if folder.as_os_str().is_empty() {
            return;
        }
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = folder.join(&*path);
            }
        };
        for key in PATH_KEYS {
            if self.env_keys.contains(key) {
                continue;
            }
            match key {
                // Only a local root: a URL (`s3://`, `file:///`) is left as it is.
                "storage.root" if !self.storage.root.contains("://") => {
                    let mut root = PathBuf::from(&self.storage.root);
                    resolve(&mut root);
                    self.storage.root = root.display().to_string();
                }
                "silver.layers_dir" => resolve(&mut self.silver.layers_dir),
                "silver.sql_dir" => resolve(&mut self.silver.sql_dir),
                "silver.spill_dir" => self.silver.spill_dir.iter_mut().for_each(resolve),
                "gold.layers_dir" => resolve(&mut self.gold.layers_dir),
                "gold.sql_dir" => resolve(&mut self.gold.sql_dir),
                "gold.spill_dir" => self.gold.spill_dir.iter_mut().for_each(resolve),
                _ => {}
            }
        }
    }

    /// Parses configuration text, then applies environment overrides.
    /// `file` is only used in error messages.
    pub fn parse(
        text: &str,
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut document: toml::Table = toml::from_str(text).map_err(|e| Error::Config {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut file_keys = BTreeSet::new();
        leaf_keys(&document, "", &mut file_keys);
        let mut env_keys = BTreeSet::new();
        let mut overridden = Vec::new();
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !path.contains("__") {
                // LAKEHOUSE_LOG and similar are not configuration keys.
                continue;
            }
            let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
            set_path(&mut document, &keys, parse_env_value(&value)).map_err(|message| {
                Error::Config {
                    file: PathBuf::from(format!("environment variable {name}")),
                    message,
                }
            })?;
            env_keys.insert(keys.join("."));
            overridden.push(name);
        }
        let mut config: Config =
            Config::deserialize(toml::Value::Table(document)).map_err(|e| {
                let origin = if overridden.is_empty() {
                    file.display().to_string()
                } else {
                    format!(
                        "{} (with overrides from {})",
                        file.display(),
                        overridden.join(", ")
                    )
                };
                Error::Config {
                    file: PathBuf::from(origin),
                    message: e.to_string(),
                }
            })?;
        config.validate(file)?;
        config.schedule.validate(text, file)?;
        config.file_keys = file_keys;
        config.env_keys = env_keys;
        Ok(config)
    }

    fn validate(&self, file: &Path) -> Result<()> {
        let err = |message: String| Error::Config {
            file: file.to_path_buf(),
            message,
        };
        if self.storage.root.trim().is_empty() {
            return Err(err("storage.root must not be empty".into()));
        }
        if self.bronze.flush_rows == 0 {
            return Err(err("bronze.flush_rows must be at least 1".into()));
        }
        if self.bronze.flush_bytes == 0 {
            return Err(err("bronze.flush_bytes must be at least 1".into()));
        }
        if let Some(pattern) = &self.kafka.topic_pattern {
            regex::Regex::new(pattern)
                .map_err(|e| err(format!("kafka.topic_pattern is not a valid regex: {e}")))?;
        }
        self.bronze.type_hints(file)?;
        self.postgres.validate().map_err(err)?;
        self.maintenance.validate().map_err(err)?;
        Ok(())
    }

    /// The file the configuration came from, for error messages.
    pub fn origin(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from("<defaults>"))
    }

    /// Kafka brokers, or an error naming the key when they are required but unset.
    pub fn require_brokers(&self) -> Result<&str> {
        self.kafka.require_brokers(&self.origin())
    }
}

/// Reads an override as TOML when it is a TOML value, else as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&probe) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(
    table: &mut toml::Table,
    keys: &[String],
    value: toml::Value,
) -> std::result::Result<(), String> {
    let Some((last, parents)) = keys.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table, cannot set `{}`", keys.join(".")))?;
    }
    // A comma-separated override of a list key (e.g. topics) becomes a list.
    let value = match (current.get(last), value) {
        (Some(toml::Value::Array(_)), toml::Value::String(s)) | (None, toml::Value::String(s))
            if last == "topics" =>
        {
            toml::Value::Array(
                s.split(',')
                    .map(|t| toml::Value::String(t.trim().to_string()))
                    .filter(|v| v.as_str().is_some_and(|t| !t.is_empty()))
                    .collect(),
            )
        }
        (_, value) => value,
    };
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        Config::parse(
            text,
            Path::new("test.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_without_file() {
        let config = parse("", &[]).unwrap();
        assert_eq!(config.storage.root, "./lakehouse-data");
        assert_eq!(config.kafka.group_id, "lakehouse-bronze");
        assert_eq!(config.bronze.flush_rows, 100_000);
    }

    #[test]
    fn metrics_are_off_by_default_and_take_an_address() {
        assert_eq!(parse("", &[]).unwrap().metrics.addr, None);
        let config = parse("[metrics]\naddr = \"0.0.0.0:9464\"\n", &[]).unwrap();
        assert_eq!(config.metrics.addr, Some("0.0.0.0:9464".parse().unwrap()));
        let config = parse("", &[("LAKEHOUSE_METRICS__ADDR", "127.0.0.1:9000")]).unwrap();
        assert_eq!(config.metrics.addr, Some("127.0.0.1:9000".parse().unwrap()));
        let err = parse("[metrics]\naddr = \"nowhere\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("addr"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = parse("[kafka]\nbrokerz = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("brokerz"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse("[bronze]\nflush_rows = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("flush_rows"), "{err}");
    }

    #[test]
    fn env_overrides_win() {
        let config = parse(
            "[kafka]\nbrokers = \"a:1\"\n",
            &[
                ("LAKEHOUSE_KAFKA__BROKERS", "b:2"),
                ("LAKEHOUSE_KAFKA__TOPICS", "x, y"),
                ("LAKEHOUSE_BRONZE__FLUSH_ROWS", "7"),
                ("LAKEHOUSE_LOG", "debug"),
                ("OTHER", "1"),
            ],
        )
        .unwrap();
        assert_eq!(config.kafka.brokers.as_deref(), Some("b:2"));
        assert_eq!(config.kafka.topics, vec!["x", "y"]);
        assert_eq!(config.bronze.flush_rows, 7);
    }

    #[test]
    fn env_override_with_wrong_type_names_variable() {
        let err = parse("", &[("LAKEHOUSE_BRONZE__FLUSH_ROWS", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LAKEHOUSE_BRONZE__FLUSH_ROWS"), "{err}");
        assert!(err.contains("flush_rows"), "{err}");
    }

    #[test]
    fn missing_brokers_is_reported_when_required() {
        let config = parse("", &[]).unwrap();
        let err = config.require_brokers().unwrap_err().to_string();
        assert!(err.contains("kafka.brokers"), "{err}");
    }

    #[test]
    fn bad_type_hint_names_topic_and_column() {
        let err = parse(
            "[bronze.schemaless_types.\"t.public.orders\"]\ntotal = \"decimal(x)\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t.public.orders"), "{err}");
        assert!(err.contains("total"), "{err}");
    }

    #[test]
    fn pattern_subscription_is_anchored() {
        let config = parse("[kafka]\ntopic_pattern = \"shop\\\\..*\"\n", &[]).unwrap();
        assert_eq!(config.kafka.subscription(), vec!["^shop\\..*".to_string()]);
        let err = parse("[kafka]\ntopic_pattern = \"(\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("topic_pattern"));
    }

    #[test]
    fn kafka_secrets_come_from_the_environment_and_are_masked() {
        let config = parse(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.username\" = \"u\"\n",
            &[("LAKEHOUSE_KAFKA__PROPERTIES__SASL.PASSWORD", "hunter2")],
        )
        .unwrap();
        assert_eq!(config.kafka.properties["sasl.password"], "hunter2");
        assert_eq!(config.kafka.properties["security.protocol"], "SASL_SSL");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("sasl.username"),
            "{shown}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lakehouse.toml");
        std::fs::write(
            &file,
            "[storage]\nroot = \"data\"\n[silver]\nsql_dir = \"/abs/sql\"\nspill_dir = \"spill\"\n",
        )
        .unwrap();
        let env = [(
            "LAKEHOUSE_GOLD__SQL_DIR".to_string(),
            "from-env".to_string(),
        )];
        let config = Config::load(Some(&file), env).unwrap();
        assert_eq!(
            config.storage.root,
            dir.path().join("data").display().to_string()
        );
        // Defaults resolve too; absolute paths and environment values stay.
        assert_eq!(config.silver.layers_dir, dir.path().join("layers/silver"));
        assert_eq!(config.silver.sql_dir, Path::new("/abs/sql"));
        assert_eq!(config.silver.spill_dir, Some(dir.path().join("spill")));
        assert_eq!(config.gold.sql_dir, Path::new("from-env"));
        assert!(config.silver_specs().required.eq(&false));
        assert!(config.is_set("silver.sql_dir") && config.is_set("gold.sql_dir"));
        // A URL root is left as it is.
        std::fs::write(&file, "[storage]\nroot = \"s3://bucket/lake\"\n").unwrap();
        let config = Config::load(Some(&file), Vec::<(String, String)>::new()).unwrap();
        assert_eq!(config.storage.root, "s3://bucket/lake");
    }
}

/// `[silver]` parsing, through the whole configuration.
#[cfg(test)]
mod silver_tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> crate::Result<Config> {
        Config::parse(text, Path::new("test.toml"), Vec::<(String, String)>::new())
    }

    #[test]
    fn silver_defaults_and_overrides() {
        let config = parse("").unwrap();
        assert_eq!(config.silver.layers_dir, Path::new("layers/silver"));
        assert_eq!(config.silver.memory_limit, 1024 * 1024 * 1024);
        let config = parse("[silver]\nmemory_limit = 1000\nsql_dir = \"x\"\n").unwrap();
        assert_eq!(config.silver.memory_limit, 1000);
        assert_eq!(config.silver.sql_dir, Path::new("x"));
    }

    #[test]
    fn silver_unknown_key_is_an_error() {
        let err = parse("[silver]\nmemory = 1\n").unwrap_err().to_string();
        assert!(err.contains("test.toml") && err.contains("memory"), "{err}");
    }
}

/// `[gold]` parsing, through the whole configuration.
#[cfg(test)]
mod gold_tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str, env: &[(&str, &str)]) -> crate::Result<Config> {
        Config::parse(
            text,
            Path::new("test.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn gold_and_postgres_defaults_and_overrides() {
        let config = parse("", &[]).unwrap();
        assert_eq!(config.gold.layers_dir, Path::new("layers/gold"));
        assert!(config.gold.publish);
        assert_eq!(config.postgres.url, None);
        assert_eq!(config.postgres.schema, "gold");
        assert_eq!(config.postgres.retries, 3);
        let config = parse(
            "[gold]\nsql_dir = \"x\"\n[postgres]\nschema = \"marts\"\n",
            &[("LAKEHOUSE_POSTGRES__URL", "postgres://u@h:5/db")],
        )
        .unwrap();
        assert_eq!(config.gold.sql_dir, Path::new("x"));
        assert_eq!(config.postgres.schema, "marts");
        assert_eq!(config.postgres.url.as_deref(), Some("postgres://u@h:5/db"));
    }

    #[test]
    fn gold_and_postgres_unknown_keys_are_errors() {
        let err = parse("[gold]\nlayer_dir = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml") && err.contains("layer_dir"),
            "{err}"
        );
        let err = parse("[postgres]\ndsn = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dsn"), "{err}");
        let err = parse("[postgres]\nschema = \"Bad-Name\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres.schema"), "{err}");
    }
}

/// `[maintenance]` parsing, through the whole configuration.
#[cfg(test)]
mod maintenance_tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> crate::Result<Config> {
        Config::parse(text, Path::new("test.toml"), Vec::<(String, String)>::new())
    }

    #[test]
    fn defaults_and_overrides() {
        let config = parse("").unwrap();
        assert_eq!(config.maintenance.retention_hours, 168);
        assert_eq!(config.maintenance.checkpoint_interval, 10);
        let config =
            parse("[maintenance]\ncheckpoint_interval = 3\nauto_compact_files = 0\n").unwrap();
        assert_eq!(config.maintenance.checkpoint_interval, 3);
        assert_eq!(config.maintenance.auto_compact_files, 0);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = parse("[maintenance]\nauto_compact_files = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("maintenance.auto_compact_files"), "{err}");
        let err = parse("[maintenance]\nretention = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../lakehouse.example.toml");
        let config = parse(text).unwrap();
        assert_eq!(config.maintenance.auto_compact_files, 50);
    }
}
