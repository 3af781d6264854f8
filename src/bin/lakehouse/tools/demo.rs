//! `lakehouse demo`: the whole pipeline on one machine, no external service.
//!
//! Starts an in-process Kafka-protocol broker ([`EmbeddedKafka`]), has the
//! mock e-commerce database emit what a Debezium Postgres connector would
//! ([`lakehouse_mock`]), then runs bronze (`--until-idle`), silver and gold on
//! local storage, and reports what each layer did. Run it with:
//!
//! ```text
//! cargo run --release -- demo [--changes 20000] [--dir ./lakehouse-data]
//! cargo run --release -- --config ./lakehouse-data/lakehouse.toml query "SELECT * FROM daily_sales"
//! ```
//!
//! The shipped pipeline (the repository's `layers/` and `sql/`) is embedded
//! in the binary and written into the demo's folder, so an installed binary
//! runs the demo from any working directory. The folder carries a marker
//! file: the demo clears a folder it made before, and refuses to touch one
//! it did not.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};
use lakehouse::Error;
use lakehouse::bronze::{self, BronzeSource, StopCondition};
use lakehouse::config::Config;
use lakehouse::pipeline::jobs::{self, LayerSummary};
use lakehouse::pipeline::{JobKind, Trigger};
use lakehouse_mock::SimConfig;
use lakehouse_mock::kafka::{EmbeddedKafka, Produced, produce_mock};
use lakehouse_mock::stream::mock_topics;

/// The shipped table and mart specs (`layers/silver`, `layers/gold`).
static SHIPPED_LAYERS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/layers");
/// The shipped SQL (`sql/silver`, `sql/gold`).
static SHIPPED_SQL: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/sql");

/// The file that marks a folder as made by the demo.
pub const DEMO_MARKER: &str = ".lakehouse-demo";

/// The folder, inside the demo's folder, the shipped pipeline is written to.
pub const PIPELINE_FOLDER: &str = "pipeline";

/// Makes `dir` ready for a demo run: created when missing; cleared when the
/// demo made it (it holds [`DEMO_MARKER`]) or it is empty; refused
/// otherwise, so that a mistyped `--dir` never deletes someone's data.
pub fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty && !dir.join(DEMO_MARKER).is_file() {
                return Err(Error::config(
                    dir,
                    format!(
                        "the demo folder exists and was not made by the demo (no {DEMO_MARKER} \
                         in it): refusing to clear it; choose another --dir or remove it yourself"
                    ),
                )
                .into());
            }
            if !empty {
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e).into()),
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let marker = dir.join(DEMO_MARKER);
    std::fs::write(
        &marker,
        "made by `lakehouse demo`; the next demo run clears this folder\n",
    )
    .map_err(|e| Error::io(&marker, e))?;
    Ok(())
}

/// The configuration file the demo leaves in its folder, for `lakehouse
/// --config <dir>/lakehouse.toml query ...` from anywhere (its relative
/// paths resolve against the folder).
pub const DEMO_CONFIG: &str = "lakehouse.toml";

/// Writes the shipped pipeline under `dir/pipeline` and a `lakehouse.toml`
/// for it, and points `config`'s silver and gold spec and SQL folders at it.
pub fn install_pipeline(dir: &Path, config: &mut Config) -> anyhow::Result<()> {
    let root = dir.join(PIPELINE_FOLDER);
    for (embedded, folder) in [(&SHIPPED_LAYERS, "layers"), (&SHIPPED_SQL, "sql")] {
        let target = root.join(folder);
        std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        embedded
            .extract(&target)
            .map_err(|e| Error::io(&target, e))?;
    }
    let file = dir.join(DEMO_CONFIG);
    let text = format!(
        "# Written by `lakehouse demo`: its lake (this folder) and the shipped pipeline.\n\
         [storage]\nroot = \".\"\n\
         [silver]\nlayers_dir = \"{PIPELINE_FOLDER}/layers/silver\"\nsql_dir = \"{PIPELINE_FOLDER}/sql/silver\"\n\
         [gold]\nlayers_dir = \"{PIPELINE_FOLDER}/layers/gold\"\nsql_dir = \"{PIPELINE_FOLDER}/sql/gold\"\n"
    );
    std::fs::write(&file, text).map_err(|e| Error::io(&file, e))?;
    config.silver.layers_dir = root.join("layers/silver");
    config.silver.sql_dir = root.join("sql/silver");
    config.gold.layers_dir = root.join("layers/gold");
    config.gold.sql_dir = root.join("sql/gold");
    Ok(())
}

/// Options of `lakehouse demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Data changes the mock database makes (snapshot rows included).
    pub changes: u64,
    /// Simulation seed.
    pub seed: u64,
    /// The demo's folder: storage root of its tables, and where the shipped
    /// pipeline is written (see [`prepare_dir`]).
    pub dir: PathBuf,
    /// Partitions per topic. The embedded broker keeps about 5 MiB per
    /// partition, so larger demos need more partitions.
    pub partitions: u32,
    /// Also publish the gold marts to this Postgres.
    pub postgres: Option<String>,
}

/// What the demo did, layer by layer.
#[derive(Debug)]
pub struct DemoReport {
    /// The mock's output.
    pub produced: Produced,
    /// Bronze.
    pub bronze: bronze::RunSummary,
    /// Silver.
    pub silver: lakehouse::silver::RunSummary,
    /// Gold.
    pub gold: lakehouse::pipeline::jobs::GoldSummary,
    /// The configuration the layers ran with (for `lakehouse query` afterwards).
    pub config: Config,
}

/// Runs the demo in `options.dir` (prepared with [`prepare_dir`] first).
pub async fn run(options: &DemoOptions, base: &Config) -> anyhow::Result<DemoReport> {
    prepare_dir(&options.dir)?;
    let kafka = EmbeddedKafka::start(1)?;
    let prefix = "shop";
    for topic in mock_topics(prefix) {
        kafka.create_topic(&topic, options.partitions as i32)?;
    }
    tracing::info!(
        brokers = kafka.bootstrap_servers(),
        "embedded Kafka broker started"
    );

    // A slower order rate than the simulator's default spreads the demo's
    // changes over a few weeks, so the daily marts have something to show.
    let sim = SimConfig {
        seed: options.seed,
        topic_prefix: prefix.to_string(),
        orders_per_hour: 5.0,
        ..SimConfig::default()
    };
    let produced = produce_mock(
        kafka.bootstrap_servers(),
        options.changes,
        sim,
        options.partitions,
    )
    .await?;
    tracing::info!(
        records = produced.records(),
        changes = produced.changes,
        seconds = format!("{:.2}", produced.elapsed.as_secs_f64()),
        "mock database changes produced"
    );

    let mut config = base.clone();
    config.storage.root = options.dir.display().to_string();
    install_pipeline(&options.dir, &mut config)?;
    config.kafka.brokers = Some(kafka.bootstrap_servers().to_string());
    config.kafka.topics = Vec::new();
    config.kafka.topic_pattern = Some(format!("{prefix}\\..*"));
    config.kafka.group_id = "lakehouse-demo".to_string();
    config.bronze.idle_timeout_ms = 1_000;
    if let Some(url) = &options.postgres {
        config.postgres.url = Some(url.clone());
    }

    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let stop = StopCondition {
        until_idle: true,
        max_records: None,
    };
    // Each layer's run goes into the run history, so `lakehouse status`
    // shows the demo's runs afterwards. The demo's lake starts empty: no
    // bronze version before the run.
    let trigger = Trigger::Manual;
    let run = jobs::bronze(&config, BronzeSource::Kafka, stop, shutdown);
    let bronze = jobs::recorded_as(&config, JobKind::Bronze, trigger, run, |s| {
        LayerSummary::Bronze(s.clone(), None)
    })
    .await?;
    let silver_options = lakehouse::silver::RunOptions::default();
    let run = lakehouse::pipeline::jobs::silver(&config, &silver_options);
    let silver = jobs::recorded_as(&config, JobKind::Silver, trigger, run, |s| {
        LayerSummary::Silver(s.clone())
    })
    .await?;
    let gold_options = lakehouse::pipeline::jobs::GoldOptions {
        no_publish: options.postgres.is_none(),
        ..Default::default()
    };
    let run = lakehouse::pipeline::jobs::gold(&config, &gold_options);
    let gold = jobs::recorded_as(&config, JobKind::Gold, trigger, run, |s| {
        LayerSummary::Gold(s.clone())
    })
    .await?;
    Ok(DemoReport {
        produced,
        bronze,
        silver,
        gold,
        config,
    })
}

/// Prints what each layer did and a few gold results.
pub async fn print_report(report: &DemoReport) -> anyhow::Result<()> {
    let p = &report.produced;
    println!(
        "mock      {:>9} records  {:>9} changes  {:>8.1} MB  {:>6.2}s",
        p.records(),
        p.changes,
        p.bytes as f64 / 1e6,
        p.elapsed.as_secs_f64()
    );
    let b = &report.bronze;
    println!(
        "bronze    {:>9} records  {:>9} rows     {:>8} dead letters  {:>6.2}s  {:>8.0} records/s",
        b.counts.records,
        b.counts.rows,
        b.counts.dead_letters,
        b.elapsed.as_secs_f64(),
        b.counts.records as f64 / b.elapsed.as_secs_f64().max(1e-9)
    );
    let s = &report.silver;
    let silver_rows: u64 = s.tables.iter().map(|t| t.rows_in).sum();
    println!(
        "silver    {:>9} tables   {:>9} changes read              {:>6.2}s",
        s.tables.len(),
        silver_rows,
        s.elapsed.as_secs_f64()
    );
    for t in &s.tables {
        println!(
            "            {:<22} +{} ~{} -{} stale {} quarantined {}",
            t.table,
            t.counts.inserted,
            t.counts.updated,
            t.counts.deleted,
            t.counts.stale,
            t.quarantined
        );
    }
    let g = &report.gold;
    println!(
        "gold      {:>9} marts    {:>9} rows                      {:>6.2}s build  {:>6.2}s publish",
        g.marts.len(),
        g.marts.iter().map(|m| m.rows).sum::<u64>(),
        g.build_elapsed.as_secs_f64(),
        g.publish_elapsed.as_secs_f64()
    );
    let ctx = lakehouse::pipeline::jobs::query_session(&report.config).await?;
    for (title, sql) in DEMO_QUERIES {
        println!("\n{title}");
        let batches = lakehouse::gold::adhoc::run(&ctx, sql).await?;
        println!(
            "{}",
            lakehouse::gold::adhoc::render(&batches, lakehouse::gold::adhoc::Format::Table)?
        );
    }
    println!(
        "\nTables are under {root}, with the pipeline that made them. Query them from any folder with:\n  lakehouse --config {config} query \"SELECT * FROM daily_sales ORDER BY order_date DESC LIMIT 5\"",
        root = report.config.storage.root,
        config = Path::new(&report.config.storage.root)
            .join(DEMO_CONFIG)
            .display()
    );
    Ok(())
}

/// Gold results the demo prints.
const DEMO_QUERIES: [(&str, &str); 3] = [
    (
        "Daily sales (last 7 days):",
        "SELECT order_date, orders, items, net_revenue, avg_order_value \
         FROM daily_sales ORDER BY order_date DESC LIMIT 7",
    ),
    ("Payment mix:", "SELECT * FROM payment_mix LIMIT 8"),
    (
        "Shipping performance:",
        "SELECT * FROM shipping_performance LIMIT 8",
    ),
];
