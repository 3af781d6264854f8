//! Cron evaluation in the schedule's time zone (`cron` crate, chrono-tz).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Parses an IANA zone name (`UTC`, `Europe/Berlin`, ...).
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("unknown time zone `{name}` (an IANA name such as UTC or Europe/Berlin)")
    })
}

/// A cron expression evaluated in a time zone.
#[derive(Debug, Clone)]
pub struct CronTrigger {
    schedule: cron::Schedule,
    tz: Tz,
}

impl CronTrigger {
    /// Parses `expr` (`sec min hour day-of-month month day-of-week [year]`).
    pub fn parse(expr: &str, tz: Tz) -> Result<Self, String> {
        let schedule = cron::Schedule::from_str(expr).map_err(|e| {
            format!(
                "invalid cron expression `{expr}`: {e} (expected `sec min hour day-of-month month day-of-week [year]`)"
            )
        })?;
        Ok(Self { schedule, tz })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last scheduled time strictly before `t`.
    pub fn previous_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.tz))
            .next_back()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Whether a run was missed: a scheduled time passed since the last
    /// successful run started (or there never was one). Whatever the number
    /// of times missed, the answer is one run.
    pub fn missed(&self, last_success: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        match (self.previous_before(now), last_success) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(previous), Some(last)) => last < previous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_and_previous_in_a_zone() {
        let tz = parse_time_zone("Europe/Berlin").unwrap();
        // Every day at 02:00 Berlin time.
        let trigger = CronTrigger::parse("0 0 2 * * *", tz).unwrap();
        let t = Utc.with_ymd_and_hms(2024, 1, 10, 12, 0, 0).unwrap();
        assert_eq!(
            trigger.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2024, 1, 11, 1, 0, 0).unwrap()
        );
        assert_eq!(
            trigger.previous_before(t).unwrap(),
            Utc.with_ymd_and_hms(2024, 1, 10, 1, 0, 0).unwrap()
        );
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn missed_runs_collapse_to_one_decision() {
        let trigger = CronTrigger::parse("0 */5 * * * *", Tz::UTC).unwrap();
        let now = Utc.with_ymd_and_hms(2024, 1, 10, 12, 7, 0).unwrap();
        assert!(trigger.missed(None, now));
        let recent = Utc.with_ymd_and_hms(2024, 1, 10, 12, 5, 1).unwrap();
        assert!(!trigger.missed(Some(recent), now));
        let days_ago = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        assert!(trigger.missed(Some(days_ago), now));
    }
}
