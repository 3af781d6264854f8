//! The scheduler: one worker per job, one timer per cron job.
//!
//! A trigger (cron time, an upstream job's success, a missed run at start)
//! goes into the job's one-slot queue: while the job runs, one further
//! trigger waits there and any more are coalesced into it (and logged), so a
//! job slower than its period runs back to back, never twice at once. Before
//! each attempt the worker takes the job kind's [lease](crate::storage::lease), so a
//! second scheduler on the same storage root skips the trigger instead of
//! running alongside. Each attempt is recorded in the run history; failures
//! are retried with exponential backoff (the engine's one retry policy,
//! [`crate::retry`]). On shutdown the running attempt gets the grace period
//! to finish, then is abandoned: dropping it is safe because every layer
//! commits each table atomically with its watermark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::Retryable;
use chrono::Utc;
use tokio::sync::{mpsc, watch};

use super::history::{self, Status, Trigger};
use super::jobs::{self, BronzeMode, LayerSummary};
use crate::config::Config;
use crate::config::clock::CronTrigger;
use crate::config::schedule::{Job, JobKind, MissedRuns, Plan, Timing};
use crate::error::{Error, Result};
use crate::retry::{Policy, Streak};
use crate::storage::StorageRoot;
use crate::storage::lease::{Acquire, Lease, LeaseStore, owner_id};

/// State shared by the scheduler's tasks.
struct Shared {
    config: Config,
    plan: Plan,
    root: StorageRoot,
    leases: Arc<LeaseStore>,
    shutdown: watch::Receiver<bool>,
    queues: BTreeMap<String, mpsc::Sender<Trigger>>,
    running: BTreeMap<String, watch::Sender<bool>>,
    coalesced: BTreeMap<String, AtomicU64>,
}

/// What a scheduler did, for its final log line and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    /// Per job: triggers merged into an already pending run.
    pub coalesced: BTreeMap<String, u64>,
}

/// Resolves when shutdown is requested (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn is_stopped(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow()
}

/// Runs the configured schedule until `shutdown` turns true.
pub async fn run(config: &Config, shutdown: watch::Receiver<bool>) -> Result<ScheduleReport> {
    let plan = config.schedule.plan(&config.origin())?;
    if plan.jobs.is_empty() {
        return Err(Error::Config {
            file: config.origin(),
            message: "[schedule] declares no jobs ([[schedule.jobs]])".into(),
        });
    }
    let root = StorageRoot::from_config(&config.storage)?;
    let owner = owner_id();
    let leases = LeaseStore::open(
        &root,
        &owner,
        Duration::from_millis(config.schedule.lease_ttl_ms),
    )?;
    let mut queues = BTreeMap::new();
    let mut receivers = BTreeMap::new();
    let mut running = BTreeMap::new();
    for job in &plan.jobs {
        let (tx, rx) = mpsc::channel(1);
        queues.insert(job.name.clone(), tx);
        receivers.insert(job.name.clone(), rx);
        running.insert(job.name.clone(), watch::channel(false).0);
    }
    let missed = missed_jobs(config, &plan, &root).await;
    let shared = Arc::new(Shared {
        config: config.clone(),
        plan,
        root,
        leases,
        shutdown,
        coalesced: queues
            .keys()
            .map(|k| (k.clone(), AtomicU64::new(0)))
            .collect(),
        queues,
        running,
    });
    tracing::info!(
        owner = %owner,
        jobs = shared.plan.jobs.len(),
        time_zone = %shared.plan.time_zone,
        storage = %shared.root.url(),
        "scheduler started"
    );
    for name in missed {
        tracing::info!(job = %name, "a scheduled run was missed while no scheduler ran: running it once now");
        enqueue(&shared, &name, Trigger::Cron);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for job in shared.plan.jobs.clone() {
        match &job.timing {
            Timing::Continuous => {
                tasks.spawn(continuous(shared.clone(), job));
            }
            timing => {
                if let Timing::Cron(trigger) = timing {
                    tasks.spawn(timer(shared.clone(), job.name.clone(), (**trigger).clone()));
                }
                let Some(rx) = receivers.remove(&job.name) else {
                    continue;
                };
                tasks.spawn(worker(shared.clone(), job, rx));
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a scheduler task panicked");
        }
    }
    let report = ScheduleReport {
        coalesced: shared
            .coalesced
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect(),
    };
    tracing::info!(coalesced = ?report.coalesced, "scheduler stopped");
    Ok(report)
}

/// Cron jobs whose last successful run is older than their previous
/// scheduled time (policy `run-once`).
async fn missed_jobs(config: &Config, plan: &Plan, root: &StorageRoot) -> Vec<String> {
    if config.schedule.missed_runs == MissedRuns::Skip {
        return Vec::new();
    }
    let last = match history::last_successes(root).await {
        Ok(last) => last,
        Err(error) => {
            tracing::warn!(%error, "cannot read the run history; missed runs are not caught up");
            return Vec::new();
        }
    };
    let now = Utc::now();
    plan.jobs
        .iter()
        .filter(|j| match &j.timing {
            Timing::Cron(trigger) => trigger.missed(last.get(&j.name).copied(), now),
            _ => false,
        })
        .map(|j| j.name.clone())
        .collect()
}

/// Queues a trigger for `job`; when one is queued already, this one is
/// coalesced into it.
fn enqueue(shared: &Shared, job: &str, trigger: Trigger) {
    let Some(queue) = shared.queues.get(job) else {
        return;
    };
    match queue.try_send(trigger) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            if let Some(n) = shared.coalesced.get(job) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(
                job,
                trigger = trigger.name(),
                "trigger coalesced: a run of this job is already pending"
            );
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// Fires `job`'s cron trigger at each scheduled time.
async fn timer(shared: Arc<Shared>, job: String, trigger: CronTrigger) {
    let mut shutdown = shared.shutdown.clone();
    let mut last = Utc::now();
    loop {
        let from = Utc::now().max(last);
        let Some(next) = trigger.next_after(from) else {
            tracing::info!(job = %job, "the cron expression has no more scheduled times");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut shutdown) => return,
        }
        last = next;
        tracing::debug!(job = %job, at = %next, "cron trigger");
        enqueue(&shared, &job, Trigger::Cron);
    }
}

/// Runs a triggered job's queue until shutdown.
async fn worker(shared: Arc<Shared>, job: Job, mut queue: mpsc::Receiver<Trigger>) {
    let mut shutdown = shared.shutdown.clone();
    'jobs: loop {
        let trigger = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            t = queue.recv() => match t {
                Some(t) => t,
                None => break,
            },
        };
        // Jobs run in dependency order: wait for running upstream jobs.
        for upstream in &job.after {
            if let Some(flag) = shared.running.get(upstream) {
                let mut flag = flag.subscribe();
                tokio::select! {
                    _ = async { let _ = flag.wait_for(|r| !*r).await; } => {}
                    _ = stopped(&mut shutdown) => break 'jobs,
                }
            }
        }
        if run_triggered(&shared, &job, trigger).await {
            for dependent in shared.plan.dependents(&job.name) {
                enqueue(&shared, &dependent.name, Trigger::After);
            }
        }
    }
}

/// Why one attempt of a triggered job did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsuccessful {
    /// Shutdown was requested before the attempt.
    Stopped,
    /// Another scheduler holds the job's lease: the trigger is skipped.
    Busy,
    /// The lease could not be taken (storage trouble).
    NoLease,
    /// The run failed.
    Failed,
    /// The run was abandoned (shutdown, lost lease).
    Abandoned,
}

impl Unsuccessful {
    /// Whether another attempt may fix it.
    fn retried(self) -> bool {
        matches!(self, Self::NoLease | Self::Failed)
    }
}

/// Runs one trigger of `job` with retries per `[schedule.retry]` (and the
/// job's own `attempts`); whether it succeeded. Shutdown cuts a backoff
/// short, and no further attempt starts.
async fn run_triggered(shared: &Shared, job: &Job, trigger: Trigger) -> bool {
    let policy = Policy {
        attempts: Some(job.attempts),
        ..shared.config.schedule.retry.policy()
    };
    // The attempt number, recorded in the history; an atomic, not a `Cell`,
    // since the worker's future must stay `Send`.
    let attempt = &AtomicU32::new(0);
    let shutdown = shared.shutdown.clone();
    let result = (|| async move {
        let number = attempt.fetch_add(1, Ordering::Relaxed) + 1;
        try_triggered(shared, job, trigger, number).await
    })
    .retry(policy.delays())
    // Shutdown cuts the wait short; the next attempt then sees it and does
    // not start.
    .sleep(move |wait| {
        let mut shutdown = shutdown.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut shutdown) => {}
            }
        }
    })
    .when(|why| why.retried())
    .notify(|_, wait| retrying(job, attempt.load(Ordering::Relaxed), wait))
    .await;
    match result {
        Ok(()) => true,
        Err(why) if why.retried() => {
            tracing::error!(job = %job.name, attempts = job.attempts, "job failed after its last attempt; waiting for the next trigger");
            false
        }
        Err(_) => false,
    }
}

/// Attempt `attempt` of a trigger of `job`, under the job's lease.
async fn try_triggered(
    shared: &Shared,
    job: &Job,
    trigger: Trigger,
    attempt: u32,
) -> std::result::Result<(), Unsuccessful> {
    if is_stopped(&shared.shutdown) {
        return Err(Unsuccessful::Stopped);
    }
    let lease = match shared.leases.acquire(job.kind.name()).await {
        Ok(Acquire::Held(lease)) => lease,
        Ok(Acquire::Busy { owner, expires_at }) => {
            tracing::info!(
                job = %job.name,
                holder = %owner,
                lease_expires = %expires_at,
                "trigger skipped: a run of `{}` is in progress elsewhere",
                job.kind.name()
            );
            return Err(Unsuccessful::Busy);
        }
        Err(error) => {
            tracing::warn!(job = %job.name, %error, "cannot take the lease");
            return Err(Unsuccessful::NoLease);
        }
    };
    match run_attempt(shared, job, trigger, attempt, &lease, BronzeMode::UntilIdle).await {
        Status::Succeeded => Ok(()),
        Status::Failed => Err(Unsuccessful::Failed),
        Status::Abandoned => Err(Unsuccessful::Abandoned),
    }
}

/// Logs the wait after failed attempt `attempt`, before the next one.
fn retrying(job: &Job, attempt: u32, wait: Duration) {
    tracing::info!(
        job = %job.name,
        wait_ms = wait.as_millis() as u64,
        attempt,
        "retrying after backoff"
    );
}

/// Waits `wait` after failed attempt `attempt`, unless shutdown comes first.
async fn backoff(job: &Job, shutdown: &mut watch::Receiver<bool>, attempt: u32, wait: Duration) {
    retrying(job, attempt, wait);
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stopped(shutdown) => {}
    }
}

/// One attempt under a held lease: runs, records, releases.
async fn run_attempt(
    shared: &Shared,
    job: &Job,
    trigger: Trigger,
    attempt: u32,
    lease: &Arc<Lease>,
    mode: BronzeMode,
) -> Status {
    let flag = shared.running.get(&job.name);
    if let Some(flag) = flag {
        flag.send_replace(true);
    }
    let started_at = Utc::now();
    let started = Instant::now();
    tracing::info!(job = %job.name, run = job.kind.name(), trigger = trigger.name(), attempt, "run started");
    let result = supervise(shared, job.kind, lease, mode).await;
    // The end time is taken before the lease is released, so runs of one
    // job never overlap in the history.
    let record = jobs::record_of(
        &job.name,
        job.kind,
        trigger,
        attempt,
        started_at,
        shared.leases.owner(),
        &result,
    );
    if let Some(flag) = flag {
        flag.send_replace(false);
    }
    if let Err(error) = lease.release().await {
        tracing::warn!(job = %job.name, %error, "cannot release the lease; it lapses on its own");
    }
    history::record(&shared.root, &record).await;
    let rows_written: u64 = record.outcome.tables.iter().map(|t| t.rows_written).sum();
    match record.status {
        Status::Succeeded => tracing::info!(
            job = %job.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            rows_written,
            "run succeeded"
        ),
        status => tracing::warn!(
            job = %job.name,
            status = status.name(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            error = record.error.as_deref().unwrap_or(""),
            "run did not succeed"
        ),
    }
    record.status
}

/// Runs the job while renewing its lease; on shutdown gives it the grace
/// period, then abandons it.
async fn supervise(
    shared: &Shared,
    kind: JobKind,
    lease: &Arc<Lease>,
    mode: BronzeMode,
) -> std::result::Result<LayerSummary, (Status, String)> {
    let mut keep_alive = lease.keep_alive();
    let mut shutdown = shared.shutdown.clone();
    let grace = Duration::from_millis(shared.config.schedule.grace_period_ms);
    let run = jobs::execute(&shared.config, kind, mode, shared.shutdown.clone());
    tokio::pin!(run);
    let lost = |r: std::result::Result<String, tokio::task::JoinError>| {
        (
            Status::Abandoned,
            r.unwrap_or_else(|e| format!("lease renewal stopped: {e}")),
        )
    };
    let failed = |e: Error| (Status::Failed, e.to_string());
    let outcome = tokio::select! {
        r = &mut run => r.map_err(failed),
        r = &mut keep_alive => Err(lost(r)),
        _ = stopped(&mut shutdown) => {
            tracing::info!(run = kind.name(), grace_ms = grace.as_millis() as u64, "shutdown requested: letting the running job finish");
            tokio::select! {
                r = &mut run => r.map_err(failed),
                r = &mut keep_alive => Err(lost(r)),
                _ = tokio::time::sleep(grace) => Err((
                    Status::Abandoned,
                    format!("shutdown: not finished within the grace period of {}s; \
                             tables keep their last atomic commit", grace.as_secs_f64()),
                )),
            }
        }
    };
    keep_alive.abort();
    outcome
}

/// A continuous job: runs until shutdown, restarted with backoff when it
/// fails; stands by while another scheduler holds its lease. The backoff
/// grows over failures in a row and starts over after a run that lasted
/// longer than the longest wait ([`Streak::failed_after`]).
async fn continuous(shared: Arc<Shared>, job: Job) {
    let mut shutdown = shared.shutdown.clone();
    let mut streak = Streak::new(shared.config.schedule.retry.policy());
    let standby = Duration::from_millis(shared.config.schedule.lease_ttl_ms / 3);
    while !is_stopped(&shutdown) {
        let lease = match shared.leases.acquire(job.kind.name()).await {
            Ok(Acquire::Held(lease)) => lease,
            Ok(Acquire::Busy { owner, .. }) => {
                tracing::info!(job = %job.name, holder = %owner, "standing by: the continuous job runs elsewhere");
                tokio::select! {
                    _ = tokio::time::sleep(standby) => {}
                    _ = stopped(&mut shutdown) => {}
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(job = %job.name, %error, "cannot take the lease");
                let wait = streak.failed();
                backoff(&job, &mut shutdown, streak.failures(), wait).await;
                continue;
            }
        };
        let started = Instant::now();
        let status = run_attempt(
            &shared,
            &job,
            Trigger::Continuous,
            streak.failures() + 1,
            &lease,
            BronzeMode::Continuous,
        )
        .await;
        if status == Status::Failed {
            let wait = streak.failed_after(started.elapsed());
            backoff(&job, &mut shutdown, streak.failures(), wait).await;
        } else {
            streak.succeeded();
        }
    }
}
