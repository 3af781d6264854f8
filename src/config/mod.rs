//! Configuration: one `lakehouse.toml`, overridable from the environment.
//!
//! Every section has defaults, so an empty (or missing default) file runs the
//! embedded local setup. Unknown keys and wrong types are errors that name the
//! key and the file. Environment overrides use `LAKEHOUSE_<SECTION>__<KEY>`
//! (double underscore between path segments, case-insensitive), e.g.
//! `LAKEHOUSE_KAFKA__BROKERS=127.0.0.1:9092` or
//! `LAKEHOUSE_BRONZE__FLUSH_ROWS=50000`; the value is typed by the key it sets
//! (`LAKEHOUSE_KAFKA__GROUP_ID=12345` is the string `"12345"`), an array is
//! written `[a, b]` and `topics` also takes `a,b`. Errors name where the bad
//! value came from: the file and line, or the environment variable. The
//! layering is figment's (see `layers`). Storage credentials also come from
//! the usual `AWS_*` / `AZURE_*` variables (see [`crate::storage`]).
//!
//! Relative paths (a local `storage.root`, the `layers_dir`, `sql_dir` and
//! `spill_dir` of silver and gold) resolve against the folder of the
//! configuration file, whether written in it or left at their defaults, as
//! dbt resolves against its project root: the same file runs from any
//! working directory. Paths given in environment overrides are taken as
//! they are (relative to the working directory).

pub mod clock;
mod layers;
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
    /// Where silver and gold run their SQL: here or on a Ballista cluster.
    pub engine: crate::delta::cluster::EngineConfig,
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

    /// Resolves the relative paths of `PATH_KEYS` that did not come from
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
    /// `file` names the text in error messages (with the line of a bad
    /// value); an error from an override names its variable instead.
    pub fn parse(
        text: &str,
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let file_layer = layers::FileLayer::parse(text, file)?;
        let overrides: Vec<layers::EnvVar> = env
            .into_iter()
            .filter_map(|(name, value)| layers::EnvVar::from_pair(name, value))
            .collect();
        let figment = layers::merge(&file_layer, &overrides);
        // Lossy: an override is a string, read as the number or boolean its
        // field asks for (and left a string for a string field).
        let mut config: Config = figment
            .extract_lossy()
            .map_err(|e| layers::error(e, text, file))?;
        config
            .validate(file)
            .and_then(|()| config.schedule.validate(text, file))
            .map_err(|e| layers::blame(e, &overrides))?;
        config.file_keys = file_layer.keys();
        config.env_keys = overrides.iter().map(layers::EnvVar::key).collect();
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

    /// The `file` (provenance) and message of a configuration error.
    fn config_error(result: Result<Config>) -> (String, String) {
        match result {
            Err(Error::Config { file, message }) => (file.display().to_string(), message),
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("the configuration was accepted"),
        }
    }

    #[test]
    fn env_values_are_typed_by_their_key() {
        let config = parse(
            "[storage.options]\naws_endpoint_url = \"http://minio:9000\"\n",
            &[
                // Numeric- and boolean-looking strings stay strings...
                ("LAKEHOUSE_KAFKA__GROUP_ID", "12345"),
                ("LAKEHOUSE_KAFKA__BROKERS", "[::1]:9092"),
                ("LAKEHOUSE_STORAGE__OPTIONS__AWS_REGION", "1"),
                ("LAKEHOUSE_KAFKA__PROPERTIES__ENABLE.IDEMPOTENCE", "true"),
                ("LAKEHOUSE_KAFKA__TOPIC_PATTERN", "\"0.5\""),
                // ...and become numbers, booleans and lists where asked for.
                ("LAKEHOUSE_BRONZE__FLUSH_ROWS", "7"),
                ("LAKEHOUSE_SILVER__SPILL_DIR", "42"),
                ("LAKEHOUSE_GOLD__PUBLISH", "false"),
                ("LAKEHOUSE_BRONZE__ZORDER", "[customer_id, 2024]"),
                ("LAKEHOUSE_KAFKA__TOPICS", "[\"a,b\", c]"),
                ("LAKEHOUSE_SCHEDULE__RETRY__MULTIPLIER", "1.1"),
                ("LAKEHOUSE_SCHEDULE__RETRY__ATTEMPTS", "5"),
            ],
        )
        .unwrap();
        assert_eq!(config.kafka.group_id, "12345");
        assert_eq!(config.kafka.brokers.as_deref(), Some("[::1]:9092"));
        assert_eq!(config.storage.options["aws_region"], "1");
        assert_eq!(config.kafka.properties["enable.idempotence"], "true");
        assert_eq!(config.kafka.topic_pattern.as_deref(), Some("0.5"));
        assert_eq!(config.bronze.flush_rows, 7);
        assert_eq!(config.silver.spill_dir, Some(PathBuf::from("42")));
        assert!(!config.gold.publish);
        assert_eq!(config.bronze.zorder, vec!["customer_id", "2024"]);
        assert_eq!(config.kafka.topics, vec!["a,b", "c"]);
        assert_eq!(config.schedule.retry.multiplier, 1.1);
        assert_eq!(config.schedule.retry.attempts, 5);
    }

    #[test]
    fn option_maps_merge_file_and_env_keys() {
        let config = parse(
            "[storage]\nroot = \"s3://b/lake\"\n[storage.options]\naws_endpoint_url = \"http://minio:9000\"\naws_region = \"us-east-1\"\n",
            &[
                ("LAKEHOUSE_STORAGE__OPTIONS__AWS_REGION", "eu-west-1"),
                ("LAKEHOUSE_STORAGE__OPTIONS__AWS_ALLOW_HTTP", "true"),
            ],
        )
        .unwrap();
        let options = &config.storage.options;
        assert_eq!(options["aws_endpoint_url"], "http://minio:9000");
        assert_eq!(options["aws_region"], "eu-west-1");
        assert_eq!(options["aws_allow_http"], "true");
        assert_eq!(options.len(), 3);
        assert!(
            config
                .file_keys
                .contains("storage.options.aws_endpoint_url")
        );
        assert!(config.env_keys.contains("storage.options.aws_allow_http"));
        assert!(config.is_set("storage.root") && !config.is_set("silver.layers_dir"));
    }

    #[test]
    fn a_bad_env_value_names_its_variable() {
        // The file also sets `[bronze]` and `[kafka]`: the bad value's own
        // provenance is reported, not the section's.
        let text = "[bronze]\nflush_bytes = 10\n[kafka]\nbrokers = \"a:1\"\n";
        let (file, message) = config_error(parse(
            text,
            &[
                ("LAKEHOUSE_KAFKA__GROUP_ID", "g"),
                ("LAKEHOUSE_BRONZE__FLUSH_ROWS", "abc"),
            ],
        ));
        assert_eq!(file, "environment variable LAKEHOUSE_BRONZE__FLUSH_ROWS");
        assert!(
            message.contains("bronze.flush_rows") && message.contains("abc"),
            "{message}"
        );
        let (file, message) = config_error(parse(text, &[("LAKEHOUSE_KAFKA__BROKERZ", "b:2")]));
        assert_eq!(file, "environment variable LAKEHOUSE_KAFKA__BROKERZ");
        assert!(message.contains("brokerz"), "{message}");
        // Values that parse but fail validation are blamed the same way.
        let (file, message) = config_error(parse(
            "[postgres]\nschema = \"marts\"\n[schedule]\ntime_zone = \"UTC\"\n",
            &[("LAKEHOUSE_SCHEDULE__TIME_ZONE", "Mars/Base")],
        ));
        assert_eq!(file, "environment variable LAKEHOUSE_SCHEDULE__TIME_ZONE");
        assert!(message.contains("schedule.time_zone"), "{message}");
        let (file, message) = config_error(parse(
            "[bronze.schemaless_types.\"shop.orders\"]\ntotal = \"decimal(10,2)\"\n",
            &[(
                "LAKEHOUSE_BRONZE__SCHEMALESS_TYPES__SHOP.ORDERS__TOTAL",
                "decimal(x)",
            )],
        ));
        assert_eq!(
            file,
            "environment variable LAKEHOUSE_BRONZE__SCHEMALESS_TYPES__SHOP.ORDERS__TOTAL"
        );
        assert!(message.contains("shop.orders"), "{message}");
        let (file, _) = config_error(parse("[postgres]\nschema = \"Bad\"\n", &[]));
        assert_eq!(file, "test.toml");
        let (file, message) = config_error(parse("", &[("LAKEHOUSE_KAFKA____BROKERS", "b")]));
        assert_eq!(file, "environment variable LAKEHOUSE_KAFKA____BROKERS");
        assert!(message.contains("empty key"), "{message}");
    }

    #[test]
    fn a_bad_file_value_names_the_file_and_line() {
        let text =
            "[kafka]\nbrokers = \"a:1\"\n\n[bronze]\nflush_bytes = 10\nflush_rows = \"many\"\n";
        // An override in the same section does not take the blame.
        let (file, message) = config_error(parse(text, &[("LAKEHOUSE_BRONZE__FLUSH_BYTES", "5")]));
        assert_eq!(file, "test.toml:6");
        assert!(
            message.contains("bronze.flush_rows") && message.contains("many"),
            "{message}"
        );
        let (file, message) = config_error(parse(
            "[bronze.schemaless_types.\"shop.public.orders\"]\ntotal = 1\n",
            &[],
        ));
        assert_eq!(file, "test.toml:2");
        assert!(
            message.contains("bronze.schemaless_types.\"shop.public.orders\".total"),
            "{message}"
        );
        let text = "[schedule]\n[[schedule.jobs]]\nname = \"a\"\nrun = \"bronze\"\n[[schedule.jobs]]\nname = \"b\"\nrun = \"silver\"\ncontinuous = \"often\"\n";
        let (file, message) = config_error(parse(text, &[]));
        assert_eq!(file, "test.toml:8");
        assert!(message.contains("schedule.jobs.1.continuous"), "{message}");
        // A syntax error names the file; the message has line and column.
        let (file, message) = config_error(parse("[kafka]\nbrokers = \n", &[]));
        assert_eq!(file, "test.toml");
        assert!(message.contains("line 2"), "{message}");
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
        assert_eq!(
            config.engine,
            crate::delta::cluster::EngineConfig::default()
        );
    }

    #[test]
    fn the_engine_is_local_unless_ballista_is_asked_for() {
        use crate::delta::cluster::EngineMode;
        assert_eq!(parse("").unwrap().engine.mode, EngineMode::Local);
        let config =
            parse("[engine]\nmode = \"ballista\"\nballista.scheduler = \"df://s:1\"\n").unwrap();
        assert_eq!(config.engine.mode, EngineMode::Ballista);
        assert_eq!(config.engine.ballista.scheduler, "df://s:1");
        let err = parse("[engine]\nmode = \"spark\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("engine.mode"), "{err}");
    }
}
