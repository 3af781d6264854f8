//! SIGKILL in the middle of `lakehouse run silver`, then a rerun: every
//! table ends up exactly as in a lake that never crashed.
//!
//! Each kill is aimed by watching the run's real progress on disk: the run
//! is frozen (SIGSTOP) as soon as a data file shows up in a silver table,
//! and killed only when that file is not in the table's Delta log yet —
//! files written, commit pending, the moment a crash must leave no trace.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lakehouse_mock::SimConfig;

use crate::silver_support::*;

const TABLES: &[&str] = &[
    "dim_customer",
    "dim_product",
    "dim_seller",
    "dim_carrier",
    "orders",
    "fact_sales",
    "fact_payments",
    "fact_shipments",
    "dim_date",
];

fn mock_lines(transactions: usize) -> (Vec<String>, Vec<String>) {
    let cfg = SimConfig {
        seed: 5,
        customers: 300,
        products: 150,
        ..SimConfig::default()
    };
    let mut rounds = crate::support::mock_rounds(cfg, 1, transactions);
    let transactions = rounds.pop().unwrap_or_default();
    let snapshot = rounds.pop().unwrap_or_default();
    (snapshot, transactions)
}

fn shipped(lake: &mut Lake) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lake.config.silver.layers_dir = repo.join("layers/silver");
    lake.config.silver.sql_dir = repo.join("sql/silver");
    // Small chunks and files: a run makes many writes, so kills land mid-run.
    lake.config.silver.chunk_rows = 200;
    lake.config.silver.file_rows = 100;
}

/// Data files under the silver layer (everything outside the Delta logs).
fn data_files(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "_delta_log") {
                data_files(&path, out);
            }
        } else if path.to_string_lossy().contains(".parquet") {
            // The local object store writes `name#N`, then renames it: one file.
            let name = path.to_string_lossy().split('#').next().map(PathBuf::from);
            out.extend(name);
        }
    }
}

/// Whether a commit of the Delta table holding `file` names it.
fn committed(file: &Path) -> bool {
    let Some(name) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    // The table is the nearest folder above the file with a Delta log.
    let Some(log) = file
        .ancestors()
        .skip(1)
        .map(|d| d.join("_delta_log"))
        .find(|l| l.is_dir())
    else {
        return false;
    };
    let commit = regex::Regex::new(r"^\d{20}\.json$").expect("regex");
    std::fs::read_dir(&log)
        .expect("delta log")
        .flatten()
        .filter(|e| commit.is_match(&e.file_name().to_string_lossy()))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains(&name)
        })
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name}");
}

/// SIGSTOP, then waits until every thread has stopped: the signal is
/// delivered asynchronously, and a thread still running could commit.
fn freeze(child: &Child) {
    signal(child, "STOP");
    let tasks = PathBuf::from(format!("/proc/{}/task", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = std::fs::read_dir(&tasks)
            .expect("/proc tasks")
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            // The state follows the parenthesised command name.
            .filter_map(|stat| stat.rsplit_once(") ").map(|(_, r)| r.chars().next()))
            .any(|state| !matches!(state, Some('T' | 't' | 'Z' | 'X')));
        if !running {
            return;
        }
        assert!(Instant::now() < deadline, "the run did not stop");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A kill that landed: after how many new data files, before which commit.
struct Kill {
    written: usize,
    file: PathBuf,
}

/// Lets `child` write at least `after_files` data files, then SIGKILLs it
/// at the next write whose commit is pending. Counting files, not polls,
/// keeps the kill point independent of how fast this loop gets to look.
/// `Err` (what the run wrote) when the run finished before that point.
fn kill_mid_write(mut child: Child, silver: &Path, after_files: usize) -> Result<Kill, usize> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut before = BTreeSet::new();
    data_files(silver, &mut before);
    let mut seen = before.clone();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Err(seen.len() - before.len());
        }
        assert!(Instant::now() < deadline, "the run never wrote enough");
        let mut now = BTreeSet::new();
        data_files(silver, &mut now);
        let fresh: Vec<PathBuf> = now.difference(&seen).cloned().collect();
        if fresh.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        seen.extend(now);
        let written = seen.len() - before.len();
        if written < after_files {
            continue;
        }
        // Frozen, the run cannot commit while we look at its log.
        freeze(&child);
        if let Some(file) = fresh.into_iter().find(|f| !committed(f)) {
            child.kill().expect("SIGKILL");
            let status = child.wait().expect("wait");
            assert_eq!(
                status.signal(),
                Some(9),
                "the run was still running when killed: {status}"
            );
            let mut stdout = String::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_string(&mut stdout).expect("stdout");
            }
            assert_eq!(stdout, "", "a killed run printed its summary");
            assert!(!committed(&file), "{} was committed", file.display());
            return Ok(Kill { written, file });
        }
        signal(&child, "CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_rerun_equals_a_clean_run() {
    let (snapshot, stream) = mock_lines(1500);
    let mut crashed = Lake::new();
    shipped(&mut crashed);
    let mut clean = Lake::new();
    shipped(&mut clean);

    let config_file = crashed.path().join("lakehouse.toml");
    std::fs::write(
        &config_file,
        format!(
            "[storage]\nroot = {:?}\n[silver]\nlayers_dir = {:?}\nsql_dir = {:?}\nchunk_rows = 200\nfile_rows = 100\n",
            crashed.config.storage.root,
            crashed.config.silver.layers_dir.display().to_string(),
            crashed.config.silver.sql_dir.display().to_string(),
        ),
    )
    .expect("config");
    let silver = Path::new(&crashed.config.storage.root).join("silver");
    let binary = env!("CARGO_BIN_EXE_lakehouse");
    let spawn = || {
        Command::new(binary)
            .args([
                "--config",
                config_file.to_str().expect("path"),
                "run",
                "silver",
            ])
            .env("LAKEHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn lakehouse")
    };
    // A run records itself in `_lakehouse_runs` only when it completes.
    let history = || crashed.version("_lakehouse", "runs");

    let clean_silver = Path::new(&clean.config.storage.root).join("silver");
    let files = |dir: &Path| {
        let mut out = BTreeSet::new();
        data_files(dir, &mut out);
        out.len()
    };
    for (step, lines) in [snapshot, stream].into_iter().enumerate() {
        crashed.feed(&lines).await;
        clean.feed(&lines).await;
        let before = files(&clean_silver);
        clean.silver().await;
        // What an uninterrupted run writes (Delta never deletes on commit).
        let run_files = files(&clean_silver) - before;
        // Kills spread over the first part of the run, so they land in
        // different tables; each rerun resumes from the commits made, so the
        // later kills still find writes left to interrupt.
        // A run that ends before its kill point is no crash: noted, and
        // failed after the tables are compared (a lost-work bug shows as
        // differing rows first).
        let mut missed = Vec::new();
        for eighth in 0..4 {
            let runs_before = history().await;
            let after_files = run_files * eighth / 8;
            match kill_mid_write(spawn(), &silver, after_files) {
                Ok(kill) => {
                    eprintln!(
                        "step {step}: killed after {} of the {run_files} files a whole run \
                         writes, before committing {}",
                        kill.written,
                        kill.file
                            .strip_prefix(&silver)
                            .unwrap_or(&kill.file)
                            .display()
                    );
                    assert_eq!(
                        history().await,
                        runs_before,
                        "a killed run recorded a completion"
                    );
                }
                Err(written) => missed.push(format!(
                    "a run finished after writing {written} files; its kill was due after \
                     {after_files}"
                )),
            }
        }
        let runs_before = history().await;
        let status = spawn().wait().expect("wait");
        assert!(status.success(), "the rerun after the crashes failed");
        assert_ne!(history().await, runs_before, "the rerun was not recorded");
        for table in TABLES {
            if clean.version("silver", table).await.is_none() {
                assert_eq!(crashed.version("silver", table).await, None, "{table}");
                continue;
            }
            let sql = format!("SELECT * FROM {table}");
            assert_eq!(
                crashed.rows(&[table], &sql).await,
                clean.rows(&[table], &sql).await,
                "{table} after step {step}"
            );
        }
        assert!(missed.is_empty(), "step {step}: {missed:?}");
    }
}
