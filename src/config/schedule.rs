//! `[schedule]`: the jobs `lakehouse schedule` runs, parsed and validated.
//!
//! The section deserializes with the rest of the configuration (from a TOML
//! value, after environment overrides, so without positions). Validation
//! ([`ScheduleConfig::validate`]) then re-reads the file text with
//! `toml::Spanned` to name the line of a bad cron expression, an unknown job
//! in `after`, an unknown `run`, or a dependency cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::clock::{CronTrigger, parse_time_zone};
use crate::error::{Error, Result};
use crate::retry::Policy;

/// `[schedule]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// IANA time zone (e.g. `Europe/Berlin`) the cron expressions are
    /// evaluated in; `UTC` by default. Daylight-saving gaps and repeats follow
    /// chrono-tz: a time that does not exist is skipped, a repeated one runs once.
    pub time_zone: String,
    /// The jobs.
    pub jobs: Vec<JobConfig>,
    /// Retries of failed runs.
    pub retry: RetryConfig,
    /// What happens to cron runs missed while no scheduler ran.
    pub missed_runs: MissedRuns,
    /// On SIGTERM, how long a running job may take to finish before it is
    /// abandoned (milliseconds).
    pub grace_period_ms: u64,
    /// How long a job's lease is valid without renewal (milliseconds); it is
    /// renewed every third of this while the job runs.
    pub lease_ttl_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            time_zone: "UTC".to_string(),
            jobs: Vec::new(),
            retry: RetryConfig::default(),
            missed_runs: MissedRuns::RunOnce,
            grace_period_ms: 30_000,
            lease_ttl_ms: 60_000,
        }
    }
}

/// One `[[schedule.jobs]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Unique job name.
    pub name: String,
    /// What it runs: `bronze`, `silver`, `gold`, `optimize` or `vacuum`.
    pub run: String,
    /// `cron` crate expression: `sec min hour day-of-month month day-of-week [year]`.
    #[serde(default)]
    pub cron: Option<String>,
    /// A long-running job restarted with backoff when it fails (bronze only).
    #[serde(default)]
    pub continuous: bool,
    /// Also run right after each successful run of these jobs.
    #[serde(default)]
    pub after: Vec<String>,
    /// Attempts per trigger for this job (overrides `schedule.retry.attempts`).
    #[serde(default)]
    pub attempts: Option<u32>,
}

/// `[schedule.retry]`: exponential backoff between attempts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per trigger (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt (milliseconds).
    pub initial_backoff_ms: u64,
    /// Upper bound of the wait (milliseconds).
    pub max_backoff_ms: u64,
    /// Factor the wait grows by per attempt.
    #[serde(deserialize_with = "exact_f64")]
    pub multiplier: f64,
}

/// A float from a number, or from a numeric string read at `f64` precision.
///
/// figment's lossy extraction reads a short decimal string (the override
/// `LAKEHOUSE_SCHEDULE__RETRY__MULTIPLIER=1.1`) as an `f32` when asked for a
/// float, giving 1.100000023841858; asked for any value, it hands over the
/// string, which parses exactly.
fn exact_f64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct Float;
    impl serde::de::Visitor<'_> for Float {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    deserializer.deserialize_any(Float)
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            multiplier: 2.0,
        }
    }
}

impl RetryConfig {
    /// The retry policy of `[schedule.retry]` (a job's own `attempts`
    /// replaces the policy's).
    pub fn policy(&self) -> Policy {
        Policy {
            attempts: Some(self.attempts),
            initial: Duration::from_millis(self.initial_backoff_ms),
            max: Duration::from_millis(self.max_backoff_ms),
            factor: self.multiplier as f32,
            jitter: false,
        }
    }
}

/// Policy for cron runs missed while no scheduler was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedRuns {
    /// Run once at start when the last successful run is older than the
    /// previous scheduled time (or the job never succeeded); never a burst.
    RunOnce,
    /// Wait for the next scheduled time.
    Skip,
}

/// What a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobKind {
    /// Bronze ingestion (continuous, or until idle when on a cron).
    Bronze,
    /// Silver CDC apply.
    Silver,
    /// Gold marts and publishing.
    Gold,
    /// Table compaction (maintenance).
    Optimize,
    /// Removal of unreferenced files (maintenance).
    Vacuum,
}

impl JobKind {
    /// The name used in `run = "..."` and in the run history.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Bronze => "bronze",
            JobKind::Silver => "silver",
            JobKind::Gold => "gold",
            JobKind::Optimize => "optimize",
            JobKind::Vacuum => "vacuum",
        }
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "bronze" => Ok(JobKind::Bronze),
            "silver" => Ok(JobKind::Silver),
            "gold" => Ok(JobKind::Gold),
            "optimize" => Ok(JobKind::Optimize),
            "vacuum" => Ok(JobKind::Vacuum),
            other => Err(format!(
                "unknown run `{other}` (bronze, silver, gold, optimize, vacuum)"
            )),
        }
    }
}

/// When a job runs.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Always running; restarted with backoff.
    Continuous,
    /// On a cron expression (and after its dependencies, if any).
    Cron(Box<CronTrigger>),
    /// Only after its dependencies.
    AfterOnly,
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique name.
    pub name: String,
    /// What it runs.
    pub kind: JobKind,
    /// When it runs.
    pub timing: Timing,
    /// Jobs whose successful runs trigger this one.
    pub after: Vec<String>,
    /// Attempts per trigger.
    pub attempts: u32,
}

/// The validated schedule.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The jobs, in configuration order.
    pub jobs: Vec<Job>,
    /// The time zone name.
    pub time_zone: String,
}

impl Plan {
    /// The jobs that run right after `name` succeeds.
    pub fn dependents(&self, name: &str) -> Vec<&Job> {
        self.jobs
            .iter()
            .filter(|j| j.after.iter().any(|a| a == name))
            .collect()
    }
}

/// Where the keys of `[schedule]` are in the file text.
#[derive(Debug, Default)]
struct Lines {
    time_zone: Option<usize>,
    jobs: Vec<JobLines>,
}

#[derive(Debug, Default, Clone)]
struct JobLines {
    table: Option<usize>,
    name: Option<usize>,
    run: Option<usize>,
    cron: Option<usize>,
    after: Vec<usize>,
}

#[derive(Deserialize)]
struct SpannedDoc {
    #[serde(default)]
    schedule: Option<SpannedSchedule>,
}

#[derive(Deserialize)]
struct SpannedSchedule {
    #[serde(default)]
    time_zone: Option<toml::Spanned<String>>,
    #[serde(default)]
    jobs: Vec<toml::Spanned<SpannedJob>>,
}

#[derive(Deserialize)]
struct SpannedJob {
    #[serde(default)]
    name: Option<toml::Spanned<String>>,
    #[serde(default)]
    run: Option<toml::Spanned<String>>,
    #[serde(default)]
    cron: Option<toml::Spanned<String>>,
    #[serde(default)]
    after: Vec<toml::Spanned<String>>,
}

impl Lines {
    /// Positions from the file text; empty when it does not parse this way
    /// (the main deserialization reports that).
    fn read(text: &str) -> Self {
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let Ok(doc) = toml::from_str::<SpannedDoc>(text) else {
            return Lines::default();
        };
        let Some(schedule) = doc.schedule else {
            return Lines::default();
        };
        Lines {
            time_zone: schedule.time_zone.map(|t| line(t.span().start)),
            jobs: schedule
                .jobs
                .iter()
                .map(|j| {
                    let job = j.get_ref();
                    JobLines {
                        table: Some(line(j.span().start)),
                        name: job.name.as_ref().map(|n| line(n.span().start)),
                        run: job.run.as_ref().map(|n| line(n.span().start)),
                        cron: job.cron.as_ref().map(|n| line(n.span().start)),
                        after: job.after.iter().map(|a| line(a.span().start)).collect(),
                    }
                })
                .collect(),
        }
    }

    fn job(&self, index: usize) -> JobLines {
        self.jobs.get(index).cloned().unwrap_or_default()
    }
}

impl ScheduleConfig {
    /// Validates the section; `text` is the configuration file's text (for
    /// line numbers) and `file` its path. Errors name the file, the line and
    /// the job.
    pub fn validate(&self, text: &str, file: &Path) -> Result<()> {
        self.plan_with(&Lines::read(text), file).map(|_| ())
    }

    /// The validated jobs (errors name the file but no line; the
    /// configuration was validated with lines when it was loaded).
    pub fn plan(&self, file: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        self.plan_with(&Lines::read(&text), file)
    }

    fn plan_with(&self, lines: &Lines, file: &Path) -> Result<Plan> {
        let err = |line: Option<usize>, message: String| Error::Config {
            file: match line {
                Some(line) => PathBuf::from(format!("{}:{line}", file.display())),
                None => file.to_path_buf(),
            },
            message,
        };
        let tz = parse_time_zone(&self.time_zone)
            .map_err(|e| err(lines.time_zone, format!("schedule.time_zone: {e}")))?;
        if self.retry.attempts == 0 {
            return Err(err(
                None,
                "schedule.retry.attempts must be at least 1".into(),
            ));
        }
        if self.lease_ttl_ms < 3 {
            return Err(err(None, "schedule.lease_ttl_ms is too small".into()));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, job) in self.jobs.iter().enumerate() {
            let at = lines.job(i);
            let what = format!("schedule.jobs[{i}]");
            if job.name.trim().is_empty() {
                return Err(err(at.table, format!("{what}: name must not be empty")));
            }
            if names.insert(job.name.as_str(), i).is_some() {
                return Err(err(
                    at.name.or(at.table),
                    format!("{what}: a job named `{}` is already declared", job.name),
                ));
            }
        }
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.iter().enumerate() {
            let at = lines.job(i);
            let what = format!("schedule.jobs[{i}] (`{}`)", job.name);
            let kind = JobKind::from_str(&job.run)
                .map_err(|e| err(at.run.or(at.table), format!("{what}: {e}")))?;
            let timing = match (&job.cron, job.continuous) {
                (Some(_), true) => {
                    return Err(err(
                        at.cron.or(at.table),
                        format!("{what}: a job is either continuous or on a cron, not both"),
                    ));
                }
                (Some(expr), false) => Timing::Cron(Box::new(
                    CronTrigger::parse(expr, tz)
                        .map_err(|e| err(at.cron.or(at.table), format!("{what}: {e}")))?,
                )),
                (None, true) if kind != JobKind::Bronze => {
                    return Err(err(
                        at.run.or(at.table),
                        format!("{what}: only bronze runs continuously; give it a cron"),
                    ));
                }
                (None, true) if !job.after.is_empty() => {
                    return Err(err(
                        at.after.first().copied().or(at.table),
                        format!("{what}: a continuous job cannot run `after` other jobs"),
                    ));
                }
                (None, true) => Timing::Continuous,
                (None, false) if job.after.is_empty() => {
                    return Err(err(
                        at.table,
                        format!("{what}: give it a `cron`, `after` or `continuous = true`"),
                    ));
                }
                (None, false) => Timing::AfterOnly,
            };
            for (j, upstream) in job.after.iter().enumerate() {
                let line = at.after.get(j).copied().or(at.table);
                let Some(&index) = names.get(upstream.as_str()) else {
                    return Err(err(
                        line,
                        format!("{what}: after: unknown job `{upstream}`"),
                    ));
                };
                if self.jobs[index].continuous {
                    return Err(err(
                        line,
                        format!(
                            "{what}: after: `{upstream}` runs continuously and never finishes; \
                             give this job a cron instead"
                        ),
                    ));
                }
            }
            if job.attempts == Some(0) {
                return Err(err(
                    at.table,
                    format!("{what}: attempts must be at least 1"),
                ));
            }
            jobs.push(Job {
                name: job.name.clone(),
                kind,
                timing,
                after: job.after.clone(),
                attempts: job.attempts.unwrap_or(self.retry.attempts),
            });
        }
        if let Some(cycle) = find_cycle(&self.jobs) {
            let first = names.get(cycle[0].as_str()).copied().unwrap_or(0);
            return Err(err(
                lines.job(first).table,
                format!(
                    "schedule: the `after` dependencies form a cycle: {}",
                    cycle.join(" -> ")
                ),
            ));
        }
        Ok(Plan {
            jobs,
            time_zone: self.time_zone.clone(),
        })
    }
}

/// A dependency cycle, as job names from its first job back to it.
fn find_cycle(jobs: &[JobConfig]) -> Option<Vec<String>> {
    let after: BTreeMap<&str, &[String]> = jobs
        .iter()
        .map(|j| (j.name.as_str(), j.after.as_slice()))
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for job in jobs {
        let mut path: Vec<&str> = Vec::new();
        if let Some(cycle) = visit(job.name.as_str(), &after, &mut path, &mut done) {
            return Some(cycle);
        }
    }
    None
}

fn visit<'a>(
    name: &'a str,
    after: &BTreeMap<&'a str, &'a [String]>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|p| *p == name) {
        let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
        cycle.push(name.to_string());
        return Some(cycle);
    }
    if done.contains(name) {
        return None;
    }
    path.push(name);
    for upstream in after.get(name).copied().unwrap_or_default() {
        if let Some(cycle) = visit(upstream.as_str(), after, path, done) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(name);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Plan> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let section = table.get("schedule").cloned().unwrap();
        let config = ScheduleConfig::deserialize(section).unwrap();
        config.plan_with(&Lines::read(text), Path::new("l.toml"))
    }

    #[test]
    fn valid_schedule_plans_every_job() {
        let plan = check(
            "[schedule]\ntime_zone = \"Europe/Berlin\"\n\
             [[schedule.jobs]]\nname = \"bronze\"\nrun = \"bronze\"\ncontinuous = true\n\
             [[schedule.jobs]]\nname = \"silver\"\nrun = \"silver\"\ncron = \"*/2 * * * * *\"\n\
             [[schedule.jobs]]\nname = \"gold\"\nrun = \"gold\"\nafter = [\"silver\"]\n",
        )
        .unwrap();
        assert_eq!(plan.jobs.len(), 3);
        assert!(matches!(plan.jobs[0].timing, Timing::Continuous));
        assert!(matches!(plan.jobs[2].timing, Timing::AfterOnly));
        assert_eq!(plan.dependents("silver")[0].name, "gold");
    }

    #[test]
    fn bad_cron_names_line() {
        let err = check(
            "[schedule]\n\n[[schedule.jobs]]\nname = \"silver\"\nrun = \"silver\"\ncron = \"every minute\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("l.toml:6"), "{err}");
        assert!(err.contains("silver"), "{err}");
    }

    #[test]
    fn unknown_after_and_run_name_lines() {
        let err = check(
            "[schedule]\n[[schedule.jobs]]\nname = \"gold\"\nrun = \"gold\"\ncron = \"0 * * * * *\"\nafter = [\n  \"silverr\",\n]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("l.toml:7"), "{err}");
        assert!(err.contains("silverr"), "{err}");
        let err = check("[schedule]\n[[schedule.jobs]]\nname = \"x\"\nrun = \"platinum\"\ncron = \"0 * * * * *\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("l.toml:4") && err.contains("platinum"),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_rejected() {
        let err = check(
            "[schedule]\n[[schedule.jobs]]\nname = \"a\"\nrun = \"silver\"\nafter = [\"b\"]\n\
             [[schedule.jobs]]\nname = \"b\"\nrun = \"gold\"\nafter = [\"a\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cycle") && err.contains("a -> b -> a"),
            "{err}"
        );
        assert!(err.contains("l.toml:2"), "{err}");
    }

    #[test]
    fn retry_policy_grows_by_the_multiplier_up_to_the_cap() {
        let retry = RetryConfig {
            attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 350,
            multiplier: 2.0,
        };
        let delays: Vec<_> = retry.policy().delays().collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(100), ms(200), ms(350), ms(350)]);
        // The defaults: 1 s, then 2 s, three attempts in all.
        let delays: Vec<_> = RetryConfig::default().policy().delays().collect();
        assert_eq!(delays, [ms(1_000), ms(2_000)]);
    }
}
