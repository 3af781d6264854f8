//! Pacing to a target rate of data changes per second (`--rate`).

use std::time::{Duration, Instant};

/// Tells how long to wait so that the changes emitted so far never run ahead
/// of `rate` per second since the start. Bursts after a slow phase are not
/// made up beyond the schedule: the budget is cumulative, so the long-run rate
/// is exactly `rate`.
#[derive(Debug)]
pub struct Pacer {
    rate: Option<f64>,
    started: Instant,
    done: u64,
}

impl Pacer {
    /// A pacer for `rate` changes per second; `None` (or a non-positive rate)
    /// never waits.
    pub fn new(rate: Option<f64>) -> Self {
        Pacer {
            rate: rate.filter(|r| *r > 0.0 && r.is_finite()),
            started: Instant::now(),
            done: 0,
        }
    }

    /// Records `n` more changes and returns how long to wait before the next ones.
    pub fn record(&mut self, n: u64) -> Duration {
        self.done += n;
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let due = Duration::from_secs_f64(self.done as f64 / rate);
        due.saturating_sub(self.started.elapsed())
    }

    /// Changes recorded so far.
    pub fn done(&self) -> u64 {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_in_proportion_to_the_rate() {
        let mut unpaced = Pacer::new(None);
        assert_eq!(unpaced.record(1_000_000), Duration::ZERO);
        let mut pacer = Pacer::new(Some(100.0));
        let wait = pacer.record(50);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert_eq!(pacer.done(), 50);
    }
}
