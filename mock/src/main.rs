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

use clap::{Parser, Subcommand};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Jsonl(args) = cli.command;
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
        // The CLI never replays, so keep no history.
        history: 0,
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
    while changes < args.changes {
        let tx = sim.next_transaction();
        records.clear();
        encoder.encode_transaction(&tx, &mut records);
        writer.write_all(&records)?;
        changes += tx.changes.len() as u64;
        transactions += 1;
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
