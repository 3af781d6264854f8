//! Scheduler test plumbing: a shipped lake fed with simulated shop data, the
//! run history as rows, overlap checks, and `lakehouse schedule` processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;
use lakehouse::config::Config;
use lakehouse::storage::StorageRoot;
use lakehouse::tables::runs as history;

use crate::gold_support::{shipped_lake, shop_records};
use crate::silver_support::Lake;

/// One row of `_lakehouse_runs`.
#[derive(Debug, Clone)]
pub struct Run {
    pub job: String,
    pub trigger: String,
    pub status: String,
    pub owner: String,
    pub attempt: i32,
    pub started: i64,
    pub ended: i64,
    pub error: Option<String>,
}

/// The run history of `config`'s lake, by start time.
pub async fn runs(config: &Config) -> Vec<Run> {
    let root = StorageRoot::from_config(&config.storage).expect("root");
    let ctx = SessionContext::new();
    history::register(&ctx, &root, "runs")
        .await
        .expect("register");
    let batches = ctx
        .sql("SELECT job, trigger, status, owner, attempt, started_at, ended_at, error FROM runs ORDER BY started_at")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("collect");
    let mut out = Vec::new();
    for b in &batches {
        let utf8: Vec<_> = (0..b.num_columns())
            .map(|i| cast(b.column(i), &DataType::Utf8).expect("cast"))
            .collect();
        let s = |i: usize| utf8[i].as_string::<i32>();
        let t = |i: usize| b.column(i).as_primitive::<TimestampMicrosecondType>();
        for r in 0..b.num_rows() {
            out.push(Run {
                job: s(0).value(r).to_string(),
                trigger: s(1).value(r).to_string(),
                status: s(2).value(r).to_string(),
                owner: s(3).value(r).to_string(),
                attempt: b.column(4).as_primitive::<Int32Type>().value(r),
                started: t(5).value(r),
                ended: t(6).value(r),
                error: (!s(7).is_null(r)).then(|| s(7).value(r).to_string()),
            });
        }
    }
    out
}

/// Asserts that no two runs of `job` overlap in time.
pub fn assert_no_overlap(runs: &[Run], job: &str) {
    let mut of_job: Vec<&Run> = runs.iter().filter(|r| r.job == job).collect();
    of_job.sort_by_key(|r| r.started);
    for pair in of_job.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "runs of `{job}` overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Polls the history until `done` holds or `timeout` passes.
pub async fn wait_for_runs(
    config: &Config,
    timeout: Duration,
    done: impl Fn(&[Run]) -> bool,
) -> Vec<Run> {
    let started = Instant::now();
    loop {
        let got = runs(config).await;
        if done(&got) {
            return got;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out waiting for runs; history: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn count(runs: &[Run], job: &str, status: &str) -> usize {
    runs.iter()
        .filter(|r| r.job == job && r.status == status)
        .count()
}

/// A lake with the shipped specs and the first `rounds + 1` batches of a
/// simulated shop in bronze.
pub async fn fed_lake(seed: u64, rounds: usize) -> Lake {
    let lake = shipped_lake();
    for batch in shop_records(seed, rounds, 15) {
        lake.feed(&batch).await;
    }
    lake
}

/// Row counts of the silver tables that hold the shop's data.
pub async fn silver_counts(lake: &Lake) -> Vec<Vec<String>> {
    let tables = ["dim_customer", "dim_product", "fact_sales", "orders"];
    let mut out = Vec::new();
    for t in tables {
        let mut rows = lake
            .rows(&[t], &format!("SELECT '{t}', count(*) FROM {t}"))
            .await;
        out.append(&mut rows);
    }
    out
}

/// The lake's configuration as a file for `lakehouse --config`, with a
/// `[schedule]` section appended.
pub fn write_config(lake: &Lake, schedule: &str) -> std::path::PathBuf {
    let c = &lake.config;
    let text = format!(
        "[storage]\nroot = {:?}\n\n[silver]\nlayers_dir = {:?}\nsql_dir = {:?}\nmemory_limit = {}\n\n\
         [gold]\nlayers_dir = {:?}\nsql_dir = {:?}\nmemory_limit = {}\n\n{schedule}",
        c.storage.root,
        c.silver.layers_dir.display().to_string(),
        c.silver.sql_dir.display().to_string(),
        c.silver.memory_limit,
        c.gold.layers_dir.display().to_string(),
        c.gold.sql_dir.display().to_string(),
        c.gold.memory_limit,
    );
    let path = lake.path().join("lakehouse.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A `lakehouse schedule` process; its stderr lines arrive on `lines`.
pub struct Scheduler {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Scheduler {
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lakehouse"))
            .arg("--config")
            .arg(config)
            .arg("schedule")
            .env("LAKEHOUSE_LOG", "warn,lakehouse=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lakehouse schedule");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[scheduler] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with `{needle}`: {e}"),
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the exit and returns whether it was clean.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the scheduler did not stop within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
