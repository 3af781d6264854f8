//! Runs a parsed [`Cli`]: loads the configuration, checks the storage root
//! for the commands that use it, and calls the engine, the mock database
//! (`lakehouse mock`) or one of the [`tools`] for the command. The output of
//! each command is printed here.
//!
//! ```text
//! cargo run -- run all --no-publish
//! ```

use anyhow::Context;
use lakehouse::bronze::{BronzeSource, StopCondition};
use lakehouse::config::Config;
use lakehouse::pipeline::{self, JobKind, Trigger};

use crate::cli::{BenchCommand, Cli, Command, DeadLettersCommand, RunCommand, TableLayer};
use crate::tools;

/// Runs `cli`'s command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    // Writers prove the root writable; readers only that it is readable, so
    // `query` and `status` work with read-only credentials.
    if matches!(
        cli.command,
        Command::Run { .. } | Command::Schedule | Command::DeadLetters { .. }
    ) {
        check_storage(&config, Access::ReadWrite).await?;
    } else if matches!(cli.command, Command::Query { .. } | Command::Status { .. }) {
        check_storage(&config, Access::ReadOnly).await?;
    }
    serve_metrics(&cli, &config).await?;
    match cli.command {
        Command::Init { name } => {
            tools::init::init(&name)?;
            println!(
                "created {dir}; next:\n  cd {dir}\n  lakehouse validate\n  lakehouse run bronze --from-file data/sample.jsonl\n(see {dir}/README.md)",
                dir = name.display()
            );
        }
        Command::Validate { format } => {
            let report = lakehouse::pipeline::validate::validate(&config).await;
            print!(
                "{}",
                lakehouse::pipeline::validate::render(&report, format.into())?
            );
            for error in &report.errors {
                eprintln!("error: {error}");
            }
            anyhow::ensure!(
                report.errors.is_empty(),
                "validate found {} error(s)",
                report.errors.len()
            );
        }
        Command::Run { layer } => run_layer(&config, layer).await?,
        Command::DeadLetters {
            action:
                DeadLettersCommand::Replay {
                    topic,
                    kind,
                    dry_run,
                },
        } => {
            let options = lakehouse::bronze::replay::ReplayOptions {
                topic,
                error_kind: kind,
                dry_run,
            };
            print!(
                "{}",
                lakehouse::pipeline::jobs::replay_dead_letters(&config, &options).await?
            );
        }
        Command::Optimize { layer, table } => {
            let selection = selection(layer, table);
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
                selection: selection(layer, table),
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
            let options = tools::demo::DemoOptions {
                changes,
                seed,
                dir,
                partitions,
                postgres,
            };
            let report = tools::demo::run(&options, &config).await?;
            tools::demo::print_report(&report).await?;
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
                mock_postgres(&options).await?;
            } else {
                anyhow::ensure!(!reset, "--reset applies to --postgres-url only");
                let brokers = brokers.context("--brokers is required")?;
                let options = lakehouse_mock::kafka::MockOptions {
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
                mock_kafka(&brokers, &options).await?;
            }
        }
        Command::Schedule => {
            pipeline::run(&config, shutdown_signal()?).await?;
        }
        Command::Status { format, runs } => {
            let report = lakehouse::pipeline::status::collect(&config, runs).await?;
            print!(
                "{}",
                lakehouse::pipeline::status::render(&report, format.into())?
            );
        }
        Command::Query { sql, format } => {
            let ctx = lakehouse::pipeline::jobs::query_session(&config).await?;
            let batches = lakehouse::gold::adhoc::run(&ctx, &sql).await?;
            print!(
                "{}",
                lakehouse::gold::adhoc::render(&batches, format.into())?
            );
        }
        Command::Bench { layer } => bench(&config, layer).await?,
    }
    Ok(())
}

/// Installs the Prometheus endpoint (`--metrics-addr`, else `[metrics]
/// addr`) for the long-running commands. The other commands end before a
/// scrape would see them, so they ignore the setting (and say so when it
/// came from the flag).
async fn serve_metrics(cli: &Cli, config: &Config) -> anyhow::Result<()> {
    let long_running = match &cli.command {
        Command::Run {
            layer: RunCommand::Bronze { from_file, .. },
        } => from_file.is_empty(),
        Command::Run {
            layer: RunCommand::All { watch, .. },
        } => *watch,
        Command::Schedule => true,
        _ => false,
    };
    match (cli.metrics_addr.or(config.metrics.addr), long_running) {
        (Some(addr), true) => {
            pipeline::telemetry::install(addr)?;
            let root = lakehouse::storage::StorageRoot::from_config(&config.storage)?;
            if let Err(error) = pipeline::telemetry::seed_last_successes(&root).await {
                tracing::warn!(%error, "cannot read the run history: the last-success gauges start empty");
            }
        }
        (Some(addr), false) if cli.metrics_addr.is_some() => tracing::warn!(
            %addr,
            "--metrics-addr is ignored: only run bronze (from Kafka), run all --watch and schedule serve metrics"
        ),
        _ => {}
    }
    Ok(())
}

/// `lakehouse run ...`: one layer's job (or all of them), recorded in the run history.
async fn run_layer(config: &Config, layer: RunCommand) -> anyhow::Result<()> {
    match layer {
        RunCommand::Bronze {
            until_idle,
            max_records,
            from_file,
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
            crate::keep_freed_pages_for_bronze();
            let run = pipeline::jobs::run_bronze(config, source, stop, shutdown_signal()?);
            let summary =
                pipeline::jobs::recorded(config, JobKind::Bronze, Trigger::Manual, run).await?;
            print!("{summary}");
        }
        RunCommand::Silver {
            full_refresh,
            tables,
        } => {
            let options = lakehouse::silver::RunOptions {
                full_refresh: lakehouse::silver::FullRefresh::from_flag(full_refresh),
                tables,
            };
            let run = async {
                Ok(pipeline::jobs::LayerSummary::Silver(
                    lakehouse::pipeline::jobs::silver(config, &options).await?,
                ))
            };
            print!(
                "{}",
                pipeline::jobs::recorded(config, JobKind::Silver, Trigger::Manual, run).await?
            );
        }
        RunCommand::Gold {
            full_refresh,
            marts,
            no_publish,
        } => {
            let options = lakehouse::pipeline::jobs::GoldOptions {
                full_refresh: full_refresh.map(|m| m.into_iter().collect()),
                marts,
                no_publish,
            };
            let run = async {
                Ok(pipeline::jobs::LayerSummary::Gold(
                    lakehouse::pipeline::jobs::gold(config, &options).await?,
                ))
            };
            let summary =
                pipeline::jobs::recorded(config, JobKind::Gold, Trigger::Manual, run).await?;
            print!("{summary}");
            if let Some(failure) = summary.failure() {
                anyhow::bail!("{failure}; the next run retries");
            }
        }
        RunCommand::All {
            watch,
            poll_ms,
            no_publish,
        } => {
            let options = lakehouse::pipeline::watch::AllOptions {
                no_publish,
                poll: std::time::Duration::from_millis(poll_ms.max(10)),
            };
            let summary = if watch {
                lakehouse::pipeline::watch::watch(config, &options, shutdown_signal()?).await?
            } else {
                lakehouse::pipeline::watch::run_once(config, &options, shutdown_signal()?).await?
            };
            print!("{summary}");
        }
    }
    Ok(())
}

/// `lakehouse bench ...`, each in a scratch folder removed afterwards.
async fn bench(config: &Config, layer: BenchCommand) -> anyhow::Result<()> {
    match layer {
        BenchCommand::Freshness {
            rate,
            seconds,
            probe_every_ms,
            partitions,
            flush_interval_ms,
            poll_ms,
            dir,
        } => {
            let dir = dir.unwrap_or_else(tools::default_bench_dir);
            let options = tools::freshness::FreshnessOptions {
                rate,
                duration: std::time::Duration::from_secs(seconds),
                probe_every: std::time::Duration::from_millis(probe_every_ms),
                partitions,
                flush_interval: std::time::Duration::from_millis(flush_interval_ms),
                poll: std::time::Duration::from_millis(poll_ms.max(10)),
                dir: dir.clone(),
            };
            let result = tools::freshness::bench_freshness(config, &options).await;
            tools::cleanup(&dir);
            print!("{}", result?);
        }
        BenchCommand::Gold { rows, dir } => {
            let dir = dir.unwrap_or_else(tools::default_bench_dir);
            let result = tools::bench_gold::bench_gold(config, rows, &dir).await;
            tools::cleanup(&dir);
            print!("{}", result?);
        }
        BenchCommand::Bronze {
            records,
            partitions,
            seed,
            brokers,
            dir,
        } => {
            let dir = dir.unwrap_or_else(tools::default_bench_dir);
            let options = tools::bench_bronze::BronzeBenchOptions {
                records,
                partitions,
                seed,
                brokers,
                dir: dir.clone(),
            };
            let results = tools::bench_bronze::bench_bronze(&options, config).await;
            tools::cleanup(&dir);
            for phase in results? {
                println!("{phase}");
            }
        }
    }
    Ok(())
}

/// `lakehouse mock --postgres-url`: the mock's transactions applied to a Postgres.
async fn mock_postgres(options: &lakehouse_mock::postgres::PgOptions) -> anyhow::Result<()> {
    let s = lakehouse_mock::postgres::run(options).await?;
    println!(
        "applied {} transactions ({} changes) in {:.2}s; {} resumed, {} changes in total",
        s.transactions,
        s.changes,
        s.elapsed.as_secs_f64(),
        s.resumed_transactions,
        s.total_changes
    );
    Ok(())
}

/// `lakehouse mock --brokers`: the mock's records produced to a broker.
async fn mock_kafka(
    brokers: &str,
    options: &lakehouse_mock::kafka::MockOptions,
) -> anyhow::Result<()> {
    let produced = lakehouse_mock::kafka::produce_mock_with(brokers, options).await?;
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
    Ok(())
}

/// The maintenance selection of `--layer` and `--table`.
fn selection(
    layer: Option<TableLayer>,
    table: Option<String>,
) -> lakehouse::maintenance::Selection {
    lakehouse::maintenance::Selection {
        layer: layer.map(|l| l.as_str().to_string()),
        table,
    }
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
