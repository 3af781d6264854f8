//! The `lakehouse` command line, declared with clap: commands, flags, their
//! defaults and help. Nothing here runs anything ([`crate::dispatch`] does).
//!
//! ```text
//! cargo run -- --help
//! cargo run -- bench --help
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

// The command line (no doc comment: clap would turn it into the long help).
#[derive(Debug, Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "Medallion lakehouse ETL: Debezium CDC from Kafka into bronze/silver/gold Delta tables"
)]
pub struct Cli {
    /// Configuration file (default: ./lakehouse.toml when present, else built-in defaults).
    #[arg(long, global = true, env = "LAKEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464) while a
    /// long-running command runs (run bronze, run all --watch, schedule);
    /// overrides `[metrics] addr`.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    pub command: Command,
}

// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole pipeline with no external service: an in-process Kafka broker,
    /// the mock e-commerce database, then bronze → silver → gold on local storage.
    #[command(
        after_help = "Examples:\n  lakehouse demo\n  lakehouse demo --changes 50000 --dir /tmp/lake-demo"
    )]
    Demo {
        /// Data changes the mock database makes.
        #[arg(long, default_value_t = 20_000)]
        changes: u64,
        /// Simulation seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The demo's folder: its tables and the shipped pipeline. Cleared first
        /// when an earlier demo made it; any other non-empty folder is refused.
        #[arg(long, default_value = "./lakehouse-data")]
        dir: PathBuf,
        /// Partitions per topic (the embedded broker keeps ~5 MiB per partition).
        #[arg(long, default_value_t = 8)]
        partitions: u32,
        /// Also publish the gold marts to this Postgres URL.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Emit the mock e-commerce database's Debezium records to a Kafka broker,
    /// or (--postgres-url) apply its transactions to a real Postgres for Debezium.
    #[command(
        after_help = "Examples:\n  lakehouse mock --brokers 127.0.0.1:9092 --changes 10000\n  lakehouse mock --postgres-url postgres://shop@127.0.0.1/shop --rate 50"
    )]
    Mock {
        /// Bootstrap servers.
        #[arg(long, required_unless_present = "postgres_url")]
        brokers: Option<String>,
        /// Apply the changes to this Postgres instead (schema created when
        /// missing; a restart resumes after the transactions already applied).
        #[arg(long, conflicts_with_all = ["brokers", "replay_last", "prefix"])]
        postgres_url: Option<String>,
        /// With --postgres-url: drop the shop tables and the progress first.
        #[arg(long)]
        reset: bool,
        /// Data changes to make.
        #[arg(long, default_value_t = 100_000)]
        changes: u64,
        /// Simulation seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Topic prefix (Debezium's topic.prefix).
        #[arg(long, default_value = "shop")]
        prefix: String,
        /// Partitions per topic, for choosing each record's partition by key.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Data changes per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// At the end, re-emit the last N transactions with their original
        /// LSNs, as a Debezium connector restarting from an older offset does.
        #[arg(long, default_value_t = 0)]
        replay_last: usize,
    },
    /// Run one layer's job.
    #[command(
        after_help = "Examples:\n  lakehouse run all --no-publish\n  lakehouse run bronze --from-file data/sample.jsonl\n  lakehouse run silver --full-refresh dim_customer\n  lakehouse run gold --mart daily_sales --no-publish"
    )]
    Run {
        #[command(subcommand)]
        layer: RunCommand,
    },
    /// Ad hoc DataFusion SQL over every bronze, silver and gold table by name
    /// (plus lakehouse_tables, lakehouse_commits, lakehouse_watermarks).
    #[command(
        after_help = "Examples:\n  lakehouse query \"SELECT * FROM daily_sales ORDER BY order_date DESC LIMIT 5\"\n  lakehouse query --format csv \"SELECT * FROM lakehouse_tables\""
    )]
    Query {
        /// The SQL.
        sql: String,
        /// Output format (json: JSON lines).
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
    /// Run the jobs of `[schedule]` (cron, `after`, continuous) until SIGTERM.
    #[command(after_help = "Examples:\n  lakehouse --config prod.toml schedule")]
    Schedule,
    /// Per table: Delta version, watermark, rows, last commit; bronze's Kafka
    /// lag; the last runs and failures.
    #[command(
        after_help = "Examples:\n  lakehouse status\n  lakehouse status --format json --runs 50"
    )]
    Status {
        /// Output format (json: one document).
        #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
        format: StatusFormat,
        /// Runs and failures to show.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Compact small files of the Delta tables (Z-order by the columns a spec's `zorder` lists).
    #[command(
        after_help = "Examples:\n  lakehouse optimize\n  lakehouse optimize --layer silver --table fact_sales"
    )]
    Optimize {
        /// Only this layer (_lakehouse: the run history).
        #[arg(long, value_enum)]
        layer: Option<TableLayer>,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
    },
    /// Delete data files removed from the tables longer ago than the retention.
    #[command(
        after_help = "Examples:\n  lakehouse vacuum --dry-run\n  lakehouse vacuum --layer gold --retention-hours 336"
    )]
    Vacuum {
        /// Only this layer (_lakehouse: the run history).
        #[arg(long, value_enum)]
        layer: Option<TableLayer>,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Retention in hours (default: [maintenance] retention_hours).
        #[arg(long)]
        retention_hours: Option<u64>,
        /// Allow a retention below the safe minimum ([maintenance] min_retention_hours).
        #[arg(long)]
        force: bool,
        /// Only list the files that would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// The records bronze could not decode (`bronze_dead_letters`).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLettersCommand,
    },
    /// A new project folder: lakehouse.toml, one silver table and its SQL,
    /// one gold mart, sample Debezium records and a README with the commands.
    #[command(
        after_help = "Examples:\n  lakehouse init shop\n  cd shop && lakehouse validate && lakehouse run bronze --from-file data/sample.jsonl"
    )]
    Init {
        /// The project folder to create (refused when it exists and is not empty).
        name: PathBuf,
    },
    /// Check the configuration and every silver and gold spec and SQL without
    /// data, and print the tables in run order with their inputs. Exits
    /// non-zero naming the file (and line) of each error.
    #[command(
        after_help = "Examples:\n  lakehouse validate\n  lakehouse --config prod.toml validate --format json"
    )]
    Validate {
        /// Output format of the dependency graph (json: one document with the errors).
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Measure a layer's throughput and peak memory (see BENCHMARKS.md).
    #[command(
        after_help = "Examples:\n  lakehouse bench bronze --records 100000\n  lakehouse bench gold --rows 1000000"
    )]
    Bench {
        #[command(subcommand)]
        layer: BenchCommand,
    },
}

/// `lakehouse dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// After a fix (a corrected `[bronze] schemaless_types` hint, a newer
    /// lakehouse), decode the dead letters again and append those that decode
    /// to bronze_events; silver then applies them like late events. Idempotent:
    /// a dead letter whose Kafka coordinates bronze_events holds is skipped.
    #[command(
        after_help = "Examples:\n  lakehouse dead-letters replay --dry-run\n  \
        lakehouse dead-letters replay --topic shop.public.orders --kind schema_mismatch\n  \
        lakehouse run silver"
    )]
    Replay {
        /// Only dead letters of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only dead letters of this error kind (the `error_kind` column).
        #[arg(long)]
        kind: Option<String>,
        /// Decode and report, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

// `lakehouse bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Bronze: decoder alone, decode→Arrow→Parquet→Delta, and (with --brokers) Kafka end to end.
    #[command(
        after_help = "Examples:\n  lakehouse bench bronze --records 1000000 --brokers 127.0.0.1:9092"
    )]
    Bronze {
        /// Kafka records to generate (mock Debezium Postgres records with schemas).
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Partitions per topic.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Simulation seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Broker for the end-to-end phase (e.g. Kafka on 127.0.0.1:9092).
        #[arg(long)]
        brokers: Option<String>,
        /// Scratch folder (removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Freshness of `run all --watch`: time from a record's produce to its gold row.
    #[command(after_help = "Examples:\n  lakehouse bench freshness --rate 500 --seconds 30")]
    Freshness {
        /// Records produced per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// How long to produce, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// A probe order every this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        probe_every_ms: u64,
        /// Partitions per topic.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Bronze flush interval for the run, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        flush_interval_ms: u64,
        /// Poll interval of --watch, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Scratch folder (removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Gold: build and publish time of the shipped marts over generated silver facts.
    #[command(after_help = "Examples:\n  lakehouse bench gold --rows 1000000")]
    Gold {
        /// Silver fact_sales rows to generate.
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Scratch folder (removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

// `lakehouse run ...`.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Bronze (until idle), silver and gold once; with --watch, continuously.
    #[command(
        after_help = "Examples:\n  lakehouse run all --no-publish\n  lakehouse run all --watch --poll-ms 500"
    )]
    All {
        /// Run bronze continuously and silver, then gold, whenever bronze commits.
        #[arg(long)]
        watch: bool,
        /// --watch: how often to look for new bronze versions, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Do not publish the gold marts to Postgres.
        #[arg(long)]
        no_publish: bool,
    },
    /// Build the gold marts (layers/gold/*.toml, sql/gold/*.sql) and publish them to Postgres.
    #[command(
        after_help = "Examples:\n  lakehouse run gold --no-publish\n  lakehouse run gold --full-refresh daily_sales --no-publish"
    )]
    Gold {
        /// Rebuild from all of silver: every mart, or only MART.
        #[arg(long, value_name = "MART", num_args = 0..=1)]
        full_refresh: Option<Option<String>>,
        /// Run only this mart (repeatable).
        #[arg(long = "mart", value_name = "MART")]
        marts: Vec<String>,
        /// Do not publish to Postgres.
        #[arg(long)]
        no_publish: bool,
    },
    /// Ingest Debezium change events into the bronze Delta tables.
    #[command(
        after_help = "Examples:\n  lakehouse run bronze --until-idle\n  lakehouse run bronze --from-file data/sample.jsonl"
    )]
    Bronze {
        /// Stop once caught up with the high watermarks seen at start (for scheduled runs).
        #[arg(long)]
        until_idle: bool,
        /// Stop after this many records.
        #[arg(long)]
        max_records: Option<u64>,
        /// Ingest Debezium records exported as JSON lines instead of consuming Kafka.
        #[arg(long = "from-file", value_name = "F.jsonl")]
        from_file: Vec<PathBuf>,
    },
    /// Apply new bronze changes to the silver tables (layers/silver/*.toml, sql/silver/*.sql).
    #[command(
        after_help = "Examples:\n  lakehouse run silver\n  lakehouse run silver --table fact_sales --full-refresh fact_sales"
    )]
    Silver {
        /// Rebuild from all of bronze: every table, or only TABLE.
        #[arg(long, value_name = "TABLE", num_args = 0..=1)]
        full_refresh: Option<Option<String>>,
        /// Run only this table (repeatable).
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
    },
}

// The choice flags. Their variants have no doc comments: clap would show
// them as per-value help, in the long `--help` layout.

/// `--format` of `lakehouse query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    Json,
}

impl From<QueryFormat> for lakehouse::gold::adhoc::Format {
    fn from(format: QueryFormat) -> Self {
        match format {
            QueryFormat::Table => Self::Table,
            QueryFormat::Csv => Self::Csv,
            QueryFormat::Json => Self::Json,
        }
    }
}

/// `--format` of `lakehouse validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

impl From<ValidateFormat> for lakehouse::pipeline::validate::Format {
    fn from(format: ValidateFormat) -> Self {
        match format {
            ValidateFormat::Text => Self::Text,
            ValidateFormat::Json => Self::Json,
        }
    }
}

/// `--format` of `lakehouse status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

impl From<StatusFormat> for lakehouse::pipeline::status::Format {
    fn from(format: StatusFormat) -> Self {
        match format {
            StatusFormat::Table => Self::Table,
            StatusFormat::Json => Self::Json,
        }
    }
}

/// `--layer` of `optimize` and `vacuum`: the layers of
/// [`lakehouse::maintenance::LAYERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableLayer {
    Bronze,
    Silver,
    Gold,
    // The system tables: the run history.
    #[value(name = "_lakehouse")]
    System,
}

impl TableLayer {
    /// The layer's folder name, as [`lakehouse::maintenance::Selection`] takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bronze => "bronze",
            Self::Silver => "silver",
            Self::Gold => "gold",
            Self::System => lakehouse::tables::runs::SYSTEM_LAYER,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, ValueEnum};

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// `--layer` accepts exactly the layers maintenance knows, spelled as they are.
    #[test]
    fn table_layers_are_the_maintenance_layers() {
        let names: Vec<&str> = TableLayer::value_variants()
            .iter()
            .map(|layer| {
                let name = layer.to_possible_value().map(|v| v.get_name().to_string());
                assert_eq!(name.as_deref(), Some(layer.as_str()));
                layer.as_str()
            })
            .collect();
        assert_eq!(names, lakehouse::maintenance::LAYERS);
    }

    /// `--format` accepts the spellings the engine's formats parse.
    #[test]
    fn formats_match_the_engine_spellings() {
        for format in QueryFormat::value_variants() {
            let name = format.to_possible_value().map(|v| v.get_name().to_string());
            let parsed: Option<lakehouse::gold::adhoc::Format> =
                name.as_deref().and_then(|n| n.parse().ok());
            assert_eq!(parsed, Some((*format).into()));
        }
        for format in StatusFormat::value_variants() {
            let name = format.to_possible_value().map(|v| v.get_name().to_string());
            let parsed: Option<lakehouse::pipeline::status::Format> =
                name.as_deref().and_then(|n| n.parse().ok());
            assert_eq!(parsed, Some((*format).into()));
        }
    }
}
