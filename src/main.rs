//! The `lakehouse` command line. Parsing and wiring only; the work is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::config::Config;
use lakehouse::pipeline::{self, JobKind, Trigger};

/// jemalloc rather than glibc malloc: DataFusion's many short-lived Arrow
/// buffers on several threads fragment glibc's per-thread arenas, and a
/// silver run's RSS grew to 2.3x its live heap (heaptrack). With jemalloc's
/// background threads returning freed pages after a second, the 10M-change
/// `fact_shipments` load peaked at 638 MB instead of 944 MB, as fast.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them).
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

#[derive(Debug, Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "Medallion lakehouse ETL: Debezium CDC from Kafka into bronze/silver/gold Delta tables"
)]
struct Cli {
    /// Configuration file (default: ./lakehouse.toml when present, else built-in defaults).
    #[arg(long, global = true, env = "LAKEHOUSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole pipeline with no external service: an in-process Kafka broker,
    /// the mock e-commerce database, then bronze → silver → gold on local storage.
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
    Run {
        #[command(subcommand)]
        layer: Layer,
    },
    /// Ad hoc DataFusion SQL over every bronze, silver and gold table by name
    /// (plus lakehouse_tables, lakehouse_commits, lakehouse_watermarks).
    Query {
        /// The SQL.
        sql: String,
        /// Output: table, csv or json (JSON lines).
        #[arg(long, default_value = "table")]
        format: lakehouse::gold::adhoc::Format,
    },
    /// Run the jobs of `[schedule]` (cron, `after`, continuous) until SIGTERM.
    Schedule,
    /// Per table: Delta version, watermark, rows, last commit; bronze's Kafka
    /// lag; the last runs and failures.
    Status {
        /// Output: table or json.
        #[arg(long, default_value = "table")]
        format: lakehouse::pipeline::status::Format,
        /// Runs and failures to show.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Compact small files of the Delta tables (Z-order by the columns a spec's `zorder` lists).
    Optimize {
        /// Only this layer: bronze, silver or gold.
        #[arg(long)]
        layer: Option<String>,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
    },
    /// Delete data files removed from the tables longer ago than the retention.
    Vacuum {
        /// Only this layer: bronze, silver or gold.
        #[arg(long)]
        layer: Option<String>,
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
    /// Measure a layer's throughput and peak memory (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        layer: BenchLayer,
    },
}

#[derive(Debug, Subcommand)]
enum BenchLayer {
    /// Bronze: decoder alone, decode→Arrow→Parquet→Delta, and (with --brokers) Kafka end to end.
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
    Gold {
        /// Silver fact_sales rows to generate.
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Scratch folder (removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Layer {
    /// Bronze (until idle), silver and gold once; with --watch, continuously.
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
    Silver {
        /// Rebuild from all of bronze: every table, or only TABLE.
        #[arg(long, value_name = "TABLE", num_args = 0..=1)]
        full_refresh: Option<Option<String>>,
        /// Run only this table (repeatable).
        #[arg(long = "table", value_name = "TABLE")]
        tables: Vec<String>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEHOUSE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lakehouse=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(lakehouse::redact::RedactingStderr)
        .init();
}

/// A channel that turns SIGINT/SIGTERM into a shutdown request.
fn shutdown_signal() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Fails fast, before any job starts, when the storage root is unreachable,
/// refuses the credentials, or its bucket / container is missing.
async fn check_storage(config: &Config, access: Access) -> anyhow::Result<()> {
    let root = lakehouse::storage::StorageRoot::from_config(&config.storage)?;
    match access {
        Access::ReadWrite => root.check().await?,
        Access::ReadOnly => root.check_readable().await?,
    }
    Ok(())
}

/// What a command does with the storage root.
#[derive(Debug, Clone, Copy)]
enum Access {
    ReadOnly,
    ReadWrite,
}

#[tokio::main]
async fn main() {
    init_tracing();
    if let Err(error) = run().await {
        // Redacted: an error chain can quote a request URL or server answer.
        eprintln!(
            "Error: {}",
            lakehouse::redact::redact(&format!("{error:?}"))
        );
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    lakehouse::redact::register_env_secrets();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    // Writers prove the root writable; readers only that it is readable, so
    // `query` and `status` work with read-only credentials.
    if matches!(cli.command, Command::Run { .. } | Command::Schedule) {
        check_storage(&config, Access::ReadWrite).await?;
    } else if matches!(cli.command, Command::Query { .. } | Command::Status { .. }) {
        check_storage(&config, Access::ReadOnly).await?;
    }
    match cli.command {
        Command::Run {
            layer:
                Layer::Bronze {
                    until_idle,
                    max_records,
                    from_file,
                },
        } => {
            let source = if from_file.is_empty() {
                BronzeSource::Kafka
            } else {
                BronzeSource::Files(from_file)
            };
            let stop = StopCondition {
                until_idle,
                max_records,
            };
            let run = pipeline::jobs::run_bronze(&config, source, stop, shutdown_signal()?);
            let summary =
                pipeline::jobs::recorded(&config, JobKind::Bronze, Trigger::Manual, run).await?;
            print!("{summary}");
        }
        Command::Run {
            layer:
                Layer::Silver {
                    full_refresh,
                    tables,
                },
        } => {
            let options = lakehouse::silver::RunOptions {
                full_refresh: lakehouse::silver::FullRefresh::from_flag(full_refresh),
                tables,
            };
            let run = async {
                Ok(pipeline::jobs::LayerSummary::Silver(
                    lakehouse::pipeline::jobs::silver(&config, &options).await?,
                ))
            };
            print!(
                "{}",
                pipeline::jobs::recorded(&config, JobKind::Silver, Trigger::Manual, run).await?
            );
        }
        Command::Run {
            layer:
                Layer::Gold {
                    full_refresh,
                    marts,
                    no_publish,
                },
        } => {
            let options = lakehouse::pipeline::jobs::GoldOptions {
                full_refresh: full_refresh.map(|m| m.into_iter().collect()),
                marts,
                no_publish,
            };
            let run = async {
                Ok(pipeline::jobs::LayerSummary::Gold(
                    lakehouse::pipeline::jobs::gold(&config, &options).await?,
                ))
            };
            let summary =
                pipeline::jobs::recorded(&config, JobKind::Gold, Trigger::Manual, run).await?;
            print!("{summary}");
            if let Some(failure) = summary.failure() {
                anyhow::bail!("{failure}; the next run retries");
            }
        }
        Command::Run {
            layer:
                Layer::All {
                    watch,
                    poll_ms,
                    no_publish,
                },
        } => {
            let options = lakehouse::pipeline::watch::AllOptions {
                no_publish,
                poll: std::time::Duration::from_millis(poll_ms.max(10)),
            };
            let summary = if watch {
                lakehouse::pipeline::watch::watch(&config, &options, shutdown_signal()?).await?
            } else {
                lakehouse::pipeline::watch::run_once(&config, &options, shutdown_signal()?).await?
            };
            print!("{summary}");
        }
        Command::Optimize { layer, table } => {
            let selection = lakehouse::maintenance::Selection { layer, table };
            for report in lakehouse::pipeline::jobs::optimize(&config, &selection).await? {
                println!("{report}");
            }
        }
        Command::Vacuum {
            layer,
            table,
            retention_hours,
            force,
            dry_run,
        } => {
            let options = lakehouse::maintenance::VacuumOptions {
                selection: lakehouse::maintenance::Selection { layer, table },
                retention_hours,
                force,
                dry_run,
            };
            for report in lakehouse::pipeline::jobs::vacuum(&config, &options).await? {
                print!("{report}");
            }
        }
        Command::Demo {
            changes,
            seed,
            dir,
            partitions,
            postgres,
        } => {
            let options = lakehouse::demo::DemoOptions {
                changes,
                seed,
                dir,
                partitions,
                postgres,
            };
            let report = lakehouse::demo::run(&options, &config).await?;
            lakehouse::demo::print_report(&report).await?;
        }
        Command::Mock {
            brokers,
            changes,
            seed,
            prefix,
            partitions,
            rate,
            replay_last,
            postgres_url,
            reset,
        } => {
            if let Some(url) = postgres_url {
                let options = lakehouse_mock::postgres::PgOptions {
                    url,
                    sim: lakehouse_mock::SimConfig {
                        seed,
                        ..Default::default()
                    },
                    changes,
                    rate,
                    reset,
                };
                let s = lakehouse_mock::postgres::run(&options).await?;
                println!(
                    "applied {} transactions ({} changes) in {:.2}s; {} resumed, {} changes in total",
                    s.transactions,
                    s.changes,
                    s.elapsed.as_secs_f64(),
                    s.resumed_transactions,
                    s.total_changes
                );
                return Ok(());
            }
            anyhow::ensure!(!reset, "--reset applies to --postgres-url only");
            let brokers = brokers.context("--brokers is required")?;
            let options = lakehouse::demo::MockOptions {
                changes,
                sim: lakehouse_mock::SimConfig {
                    seed,
                    topic_prefix: prefix,
                    ..Default::default()
                },
                partitions,
                rate,
                replay_last,
            };
            let produced = lakehouse::demo::produce_mock_with(&brokers, &options).await?;
            for (topic, records) in &produced.per_topic {
                println!("{topic:<40} {records:>10}");
            }
            println!(
                "{} records ({} changes, {} replayed, {:.1} MB) in {:.2}s",
                produced.records(),
                produced.changes,
                produced.replayed_changes,
                produced.bytes as f64 / 1e6,
                produced.elapsed.as_secs_f64()
            );
        }
        Command::Schedule => {
            pipeline::run(&config, shutdown_signal()?).await?;
        }
        Command::Status { format, runs } => {
            let report = lakehouse::pipeline::status::collect(&config, runs).await?;
            print!("{}", lakehouse::pipeline::status::render(&report, format)?);
        }
        Command::Query { sql, format } => {
            let ctx = lakehouse::pipeline::jobs::query_session(&config).await?;
            let batches = lakehouse::gold::adhoc::run(&ctx, &sql).await?;
            print!("{}", lakehouse::gold::adhoc::render(&batches, format)?);
        }
        Command::Bench {
            layer:
                BenchLayer::Freshness {
                    rate,
                    seconds,
                    probe_every_ms,
                    partitions,
                    flush_interval_ms,
                    poll_ms,
                    dir,
                },
        } => {
            let dir = dir.unwrap_or_else(lakehouse::bench::default_dir);
            let options = lakehouse::freshness::FreshnessOptions {
                rate,
                duration: std::time::Duration::from_secs(seconds),
                probe_every: std::time::Duration::from_millis(probe_every_ms),
                partitions,
                flush_interval: std::time::Duration::from_millis(flush_interval_ms),
                poll: std::time::Duration::from_millis(poll_ms.max(10)),
                dir: dir.clone(),
            };
            let result = lakehouse::freshness::bench_freshness(&config, &options).await;
            lakehouse::bench::cleanup(&dir);
            print!("{}", result?);
        }
        Command::Bench {
            layer: BenchLayer::Gold { rows, dir },
        } => {
            let dir = dir.unwrap_or_else(lakehouse::bench::default_dir);
            let result = lakehouse::gold::bench::bench_gold(&config, rows, &dir).await;
            lakehouse::bench::cleanup(&dir);
            print!("{}", result?);
        }
        Command::Bench {
            layer:
                BenchLayer::Bronze {
                    records,
                    partitions,
                    seed,
                    brokers,
                    dir,
                },
        } => {
            let dir = dir.unwrap_or_else(lakehouse::bench::default_dir);
            let options = lakehouse::bench::BronzeBenchOptions {
                records,
                partitions,
                seed,
                brokers,
                dir: dir.clone(),
            };
            let results = lakehouse::bench::bench_bronze(&options, &config).await;
            lakehouse::bench::cleanup(&dir);
            for phase in results? {
                println!("{phase}");
            }
        }
    }
    Ok(())
}
