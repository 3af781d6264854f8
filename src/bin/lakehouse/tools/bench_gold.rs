//! `lakehouse bench gold`: gold build and publish time of the shipped marts
//! over generated silver tables (see BENCHMARKS.md, "Gold").
//!
//! The silver tables the marts read are generated directly as Delta tables
//! (DataFusion over `range()`, deterministic, not timed): `fact_sales` with
//! `rows` rows over two years of order dates, and orders, payments and
//! shipments at a third of that; 5,000 products; 3 warehouses of stock. Then:
//! 1. `build`: every mart from scratch (`run gold`, no publish);
//! 2. `publish`: every mart to `[postgres] url` (when set);
//! 3. `incremental`: 0.1% more sales on the last days, then `run gold`.
//!
//! Run it with (`LAKEHOUSE_POSTGRES__URL` set to also time the publish):
//!
//! ```text
//! cargo run --release -- bench gold --rows 10000000
//! ```

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use futures::StreamExt;

use anyhow::Result;
use lakehouse::config::Config;
use lakehouse::delta;
use lakehouse::delta::session;
use lakehouse::gold::Refresh;
use lakehouse::pipeline::jobs::{self, GoldOptions, GoldSummary};
use lakehouse::storage::StorageRoot;
use lakehouse::tables::silver::LAYER;

/// Days the generated order dates span.
const DAYS: u64 = 730;
/// First generated order date (2023-01-01) as days since the epoch.
const FIRST_DAY: u64 = 19_358;

fn sales_sql(first: u64, rows: u64, days_from: u64, days: u64) -> String {
    format!(
        "SELECT CAST(value / 3 AS BIGINT) AS order_id, CAST(value % 3 AS SMALLINT) AS line_no,
                CAST((value * 7919) % 5000 AS BIGINT) AS product_key, CAST((value * 7919) % 5000 AS BIGINT) AS product_id,
                CAST(((value / 3) * 104729) % 200000 AS BIGINT) AS customer_id,
                CAST(1 + value % 4 AS INT) AS quantity,
                CAST(CAST(100 + (value * 31) % 9900 AS DECIMAL(10,0)) / 100 AS DECIMAL(10,2)) AS unit_price,
                CAST(CAST((value * 17) % 300 AS DECIMAL(10,0)) / 100 AS DECIMAL(10,2)) AS discount,
                CAST(CAST((1 + value % 4) * (100 + (value * 31) % 9900) AS DECIMAL(14,0)) / 100 AS DECIMAL(14,2)) AS gross_amount,
                CAST(CAST((1 + value % 4) * (100 + (value * 31) % 9900) - (value * 17) % 300 AS DECIMAL(14,0)) / 100 AS DECIMAL(14,2)) AS net_amount,
                arrow_cast(CAST({FIRST_DAY} + {days_from} + ((value - {first}) * {days}) / {rows} AS INT), 'Date32') AS order_date
         FROM range({first}, {first} + {rows})"
    )
}

async fn generate(
    ctx: &datafusion::prelude::SessionContext,
    root: &StorageRoot,
    name: &str,
    sql: &str,
    file_rows: usize,
    append: bool,
) -> Result<u64> {
    let frame = ctx.sql(sql).await?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let (mut delta, _) = delta::ensure(root, LAYER, name, &schema, &[], !append).await?;
    let mut stream = frame.execute_stream().await?;
    let (mut adds, mut pending, mut pending_rows, mut total) =
        (Vec::new(), Vec::<RecordBatch>::new(), 0, 0u64);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        pending_rows += batch.num_rows();
        total += batch.num_rows() as u64;
        pending.push(batch);
        if pending_rows >= file_rows {
            adds.extend(
                delta::write(&delta, name, &concat_batches(&schema, &pending)?, file_rows).await?,
            );
            pending.clear();
            pending_rows = 0;
        }
    }
    if pending_rows > 0 {
        adds.extend(
            delta::write(&delta, name, &concat_batches(&schema, &pending)?, file_rows).await?,
        );
    }
    delta::TableCommit::new(delta::CommitMode::Update)
        .with_adds(adds)
        .commit(&mut delta, name)
        .await?;
    Ok(total)
}

/// Runs the benchmark with `rows` fact_sales rows in `dir`; returns the report.
pub async fn bench_gold(config: &Config, rows: u64, dir: &Path) -> Result<String> {
    if rows < 3 {
        anyhow::bail!("bench gold: --rows must be at least 3");
    }
    let mut config = config.clone();
    config.storage.root = dir.join("lake").display().to_string();
    let root = StorageRoot::from_config(&config.storage)?;
    let ctx = session::new_session(&config.gold.session_limits())?;
    let file_rows = config.silver.file_rows;
    let started = Instant::now();
    let third = rows / 3;
    let tables = [
        ("fact_sales", sales_sql(0, rows, 0, DAYS)),
        ("orders", format!(
            "SELECT value AS order_id, value AS order_key, CAST((value * 104729) % 200000 AS BIGINT) AS customer_id,
                    arrow_cast(CAST({FIRST_DAY} + (value * {DAYS}) / {third} AS INT), 'Date32') AS order_date,
                    CAST(CAST(1000 + (value * 37) % 40000 AS DECIMAL(12,0)) / 100 AS DECIMAL(12,2)) AS total
             FROM range(0, {third})")),
        ("fact_payments", format!(
            "SELECT value AS payment_id, arrow_cast(CAST({FIRST_DAY} + (value * {DAYS}) / {third} AS INT), 'Date32') AS payment_date,
                    CASE value % 4 WHEN 0 THEN 'card' WHEN 1 THEN 'paypal' WHEN 2 THEN 'bank_transfer' ELSE 'voucher' END AS method,
                    CASE WHEN value % 50 = 0 THEN 'failed' ELSE 'captured' END AS status,
                    CAST(CAST(1000 + (value * 37) % 40000 AS DECIMAL(12,0)) / 100 AS DECIMAL(12,2)) AS amount
             FROM range(0, {third})")),
        ("fact_shipments", format!(
            "SELECT value AS shipment_id, arrow_cast(CAST({FIRST_DAY} + (value * {DAYS}) / {third} AS INT), 'Date32') AS ship_date,
                    CASE value % 3 WHEN 0 THEN 'dhl' WHEN 1 THEN 'ups' ELSE 'gls' END AS carrier_code,
                    CASE value % 2 WHEN 0 THEN 'standard' ELSE 'express' END AS service,
                    arrow_cast(to_timestamp_seconds(({FIRST_DAY} + (value * {DAYS}) / {third}) * 86400 + 86400 * (1 + value % 6)), 'Timestamp(Microsecond, Some(\"UTC\"))') AS delivered_at,
                    CAST(1 + value % 6 AS DOUBLE) + CAST(value % 7 AS DOUBLE) / 10 AS delivery_days,
                    value % 6 < 4 AS delivered_on_time
             FROM range(0, {third})")),
        ("dim_product", "SELECT value AS product_key, value AS product_id, 'SKU-' || value AS sku, 'product ' || value AS product_name,
                    CAST(value % 40 AS BIGINT) AS category_id, CAST(value % 50 AS BIGINT) AS seller_id,
                    CAST(CAST(100 + (value * 31) % 9900 AS DECIMAL(10,0)) / 100 AS DECIMAL(10,2)) AS list_price,
                    true AS active, true AS is_current
             FROM range(0, 5000)".to_string()),
        ("inventory", "SELECT value AS inventory_key, value / 3 AS product_id, 'wh' || (value % 3) AS warehouse,
                    CAST((value * 13) % 200 AS INT) AS quantity, CAST(value % 5 AS INT) AS reserved, 10 AS reorder_level,
                    arrow_cast(to_timestamp_seconds(1700000000), 'Timestamp(Microsecond, Some(\"UTC\"))') AS last_restock_at,
                    arrow_cast(to_timestamp_seconds(1700000000), 'Timestamp(Microsecond, Some(\"UTC\"))') AS updated_at
             FROM range(0, 15000)".to_string()),
    ];
    for (name, sql) in &tables {
        generate(&ctx, &root, name, sql, file_rows, false).await?;
    }
    let generated = started.elapsed();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "gold bench: {rows} fact_sales rows, {third} orders/payments/shipments (generated in {:.1}s, not timed)",
        generated.as_secs_f64()
    );

    let quiet = GoldOptions {
        no_publish: true,
        ..Default::default()
    };
    let build = jobs::gold(&config, &quiet).await?;
    line(
        &mut report,
        "build (all marts, from scratch)",
        build.build_elapsed,
        &build,
    );
    if config.postgres.url.is_some() {
        let published = jobs::gold(&config, &GoldOptions::default()).await?;
        let rows: u64 = published.published.iter().map(|p| p.rows).sum();
        let _ = writeln!(
            report,
            "publish (all marts, {rows} rows): {:.2}s{}",
            published.publish_elapsed.as_secs_f64(),
            if published.failed_publishes().is_empty() {
                String::new()
            } else {
                format!(" ({} FAILED)", published.failed_publishes().len())
            }
        );
    } else {
        let _ = writeln!(
            report,
            "publish: skipped ([postgres] url / LAKEHOUSE_POSTGRES__URL not set)"
        );
    }
    let extra = (rows / 1000).max(3);
    generate(
        &ctx,
        &root,
        "fact_sales",
        &sales_sql(rows, extra, DAYS - 3, 3),
        file_rows,
        true,
    )
    .await?;
    let incremental = jobs::gold(&config, &quiet).await?;
    line(
        &mut report,
        &format!("incremental ({extra} new sales on the last 3 days)"),
        incremental.build_elapsed,
        &incremental,
    );
    Ok(report)
}

fn line(report: &mut String, what: &str, elapsed: Duration, summary: &GoldSummary) {
    let _ = writeln!(report, "{what}: {:.2}s", elapsed.as_secs_f64());
    for m in &summary.marts {
        let _ = writeln!(
            report,
            "  {:<22} {:>7.2}s  {:>9} rows  {}",
            m.mart,
            m.elapsed.as_secs_f64(),
            m.rows,
            describe(&m.refresh)
        );
    }
}

fn describe(refresh: &Refresh) -> String {
    match refresh {
        Refresh::Unchanged => "unchanged".into(),
        Refresh::Full(why) => format!("rebuilt ({why})"),
        Refresh::Partitions(p) => format!("{} partition(s)", p.len()),
        Refresh::Keys(k) => format!("{} key(s)", k.len()),
    }
}
