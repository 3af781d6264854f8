//! `lakehouse-mock`: generates the Kafka records a Debezium PostgreSQL connector would
//! write for a simulated e-commerce database, as JSON lines for
//! `lakehouse run bronze --from-file`.
//!
//! Writes the initial snapshot, then whole transactions (BEGIN, data events,
//! tombstones, END) until at least `--changes` data change records were emitted, and
//! prints the number of records per topic to stderr.
//!
//! ```text
//! cargo run -p lakehouse-mock --release -- jsonl --changes 100000 --seed 7 \
//!     --prefix shop --partitions 3 --out /tmp/shop.jsonl
//! ```
//!
//! `--rate N` paces the output to N data changes per second; `--replay-last N`
//! re-emits the last N transactions at the end with their original LSNs, as a
//! Debezium connector that restarts from an older offset does.
//!
//! `lakehouse-mock postgres --url postgres://... --changes N [--rate R]` applies
//! the same simulation to a real Postgres (see `lakehouse_mock::postgres`);
//! `lakehouse-mock ddl` prints its schema.

use clap::{Parser, Subcommand};
use lakehouse_mock::pace::Pacer;
use lakehouse_mock::postgres::{self, PgOptions};
use lakehouse_mock::{DebeziumEncoder, JsonlWriter, SimConfig, Simulator};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "lakehouse-mock",
    version,
    about = "Simulated Debezium CDC feed of an e-commerce database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write snapshot + transactions as JSON lines.
    Jsonl(JsonlArgs),
    /// Apply the simulation to a real Postgres (schema created when missing;
    /// a restart resumes after the transactions already applied).
    Postgres(PostgresArgs),
    /// Print the Postgres schema of the simulated tables.
    Ddl,
    /// Print what `postgres` has applied so far; fails when the database is
    /// unreachable or nothing was applied yet (the compose healthcheck).
    Progress {
        /// Connection URL of the source database.
        #[arg(long, env = "LAKEHOUSE_MOCK_POSTGRES_URL")]
        url: String,
    },
}

#[derive(clap::Args)]
struct PostgresArgs {
    /// Connection URL of the source database.
    #[arg(long, env = "LAKEHOUSE_MOCK_POSTGRES_URL")]
    url: String,
    /// Stop once N data changes (initial rows included) were applied in total,
    /// across restarts; 0 = run until stopped.
    #[arg(long, default_value_t = 10_000, env = "LAKEHOUSE_MOCK_CHANGES")]
    changes: u64,
    /// Data changes per second (default: as fast as possible).
    #[arg(long, env = "LAKEHOUSE_MOCK_RATE")]
    rate: Option<f64>,
    /// RNG seed.
    #[arg(long, default_value_t = 42, env = "LAKEHOUSE_MOCK_SEED")]
    seed: u64,
    /// Drop the shop tables, their publication and the progress first.
    #[arg(long)]
    reset: bool,
}

#[derive(clap::Args)]
struct JsonlArgs {
    /// Stop after the transaction that brings data change records to at least N.
    #[arg(long, default_value_t = 10_000)]
    changes: u64,
    /// RNG seed (same seed → identical bytes).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Debezium topic.prefix.
    #[arg(long, default_value = "shop")]
    prefix: String,
    /// Partitions per topic (records are placed by Kafka's murmur2 key hash).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Output file, or `-` for stdout.
    #[arg(long, default_value = "-")]
    out: String,
    /// Data changes per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// At the end, re-emit the last N transactions (a connector restart).
    #[arg(long, default_value_t = 0)]
    replay_last: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Jsonl(args) => args,
        Command::Ddl => {
            print!("{}", lakehouse_mock::ddl::schema_sql());
            return ExitCode::SUCCESS;
        }
        Command::Postgres(args) => return run_postgres(&args),
        Command::Progress { url } => return run_progress(&url),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (e.g. `| head`) is a normal way to stop reading.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lakehouse-mock: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &JsonlArgs) -> io::Result<()> {
    let out: Box<dyn Write> = if args.out == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(&args.out)?)
    };
    let started = Instant::now();
    let cfg = SimConfig {
        seed: args.seed,
        topic_prefix: args.prefix.clone(),
        history: args.replay_last,
        ..SimConfig::default()
    };
    let encoder = DebeziumEncoder::new(&cfg.topic_prefix);
    let mut sim = Simulator::new(cfg);
    let mut writer = JsonlWriter::new(BufWriter::with_capacity(1 << 20, out), args.partitions);
    let mut records = Vec::with_capacity(64);

    let snapshot = sim.snapshot();
    encoder.encode_snapshot(&snapshot, &mut records);
    writer.write_all(&records)?;
    let mut changes = snapshot.changes.len() as u64;
    let mut transactions = 0u64;
    let mut pacer = Pacer::new(args.rate);
    while changes < args.changes {
        let tx = sim.next_transaction();
        records.clear();
        encoder.encode_transaction(&tx, &mut records);
        writer.write_all(&records)?;
        changes += tx.changes.len() as u64;
        transactions += 1;
        let wait = pacer.record(tx.changes.len() as u64);
        if !wait.is_zero() {
            writer.flush()?;
            std::thread::sleep(wait);
        }
    }
    let replayed = sim.replay_last(args.replay_last);
    for tx in &replayed {
        records.clear();
        encoder.encode_transaction(tx, &mut records);
        writer.write_all(&records)?;
    }
    if !replayed.is_empty() {
        eprintln!("replayed the last {} transactions", replayed.len());
    }
    writer.flush()?;

    let counts = writer.counts();
    let total: u64 = counts.values().sum();
    let secs = started.elapsed().as_secs_f64();
    eprintln!("records per topic:");
    for (topic, n) in &counts {
        eprintln!("  {topic:<32} {n:>10}");
    }
    eprintln!(
        "{total} records ({changes} data changes, {} snapshot reads, {transactions} transactions) in {secs:.2}s ({:.0} records/s)",
        snapshot.changes.len(),
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("lakehouse-mock: cannot start the runtime: {e}");
            None
        }
    }
}

fn run_progress(url: &str) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(postgres::progress(url)) {
        Ok(Some((simulation, transactions, changes))) => {
            println!("{transactions} transactions, {changes} changes applied ({simulation})");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("lakehouse-mock: nothing applied yet");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lakehouse-mock: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_postgres(args: &PostgresArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
    let options = PgOptions {
        url: args.url.clone(),
        sim: SimConfig {
            seed: args.seed,
            ..SimConfig::default()
        },
        changes: args.changes,
        rate: args.rate,
        reset: args.reset,
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    // Each simulated transaction commits with its progress, so stopping
    // between two of them (SIGINT/SIGTERM, or a kill) loses nothing.
    let result = runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            r = postgres::run(&options) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => None,
        }
    });
    match result {
        Some(Ok(summary)) => {
            eprintln!(
                "applied {} transactions ({} changes) in {:.2}s ({:.0} changes/s); {} resumed, {} changes in total",
                summary.transactions,
                summary.changes,
                summary.elapsed.as_secs_f64(),
                summary.changes as f64 / summary.elapsed.as_secs_f64().max(1e-9),
                summary.resumed_transactions,
                summary.total_changes
            );
            ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            eprintln!("lakehouse-mock: {e}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("lakehouse-mock: stopped");
            ExitCode::SUCCESS
        }
    }
}
