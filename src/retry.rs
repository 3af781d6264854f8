//! The one retry policy: exponential backoff, built on backon.
//!
//! Everything in the engine that retries waits the same way: publishing a
//! mart (`[postgres] retries`, `retry_backoff_ms`), the scheduler's attempts
//! and its restarts of continuous jobs (`[schedule.retry]`), and `run all
//! --watch`'s failed micro-batches. Each describes its waits as a [`Policy`];
//! the delays come from backon's [`ExponentialBuilder`], either through
//! [`backon::Retryable`] where an operation is simply retried, or through
//! [`Policy::delays`] and [`Streak`] where the loop stays explicit (sleeps
//! that shutdown cuts short, a backoff that starts over after a success).
//!
//! This module sits at the bottom of the module graph (with `error`), so every
//! layer and the pipeline may use it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// How an operation is retried: attempts, and the exponentially growing wait
/// between them.
///
/// The wait before the second attempt is `initial`; each further one is the
/// previous one times `factor`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Attempts in all, the first one included; `None`: no limit (the caller
    /// retries until it succeeds or is stopped).
    pub attempts: Option<u32>,
    /// The wait before the second attempt.
    pub initial: Duration,
    /// The longest wait; `Duration::MAX`: no cap.
    pub max: Duration,
    /// The factor each wait grows by (below 1 counts as 1: waits never shrink).
    pub factor: f32,
    /// Adds a random part of up to the wait itself to each wait, so that many
    /// clients failing together do not retry in step.
    pub jitter: bool,
}

impl Policy {
    /// The backon builder of this policy (its waits are backon's own, not
    /// rounded to the millisecond as [`Policy::delays`]' are).
    pub fn builder(&self) -> ExponentialBuilder {
        // backon does not cap the first wait; the configuration always did.
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.initial.min(self.max))
            .with_max_delay(self.max)
            // `max` also turns a NaN into 1.
            .with_factor(self.factor.max(1.0));
        let builder = match self.attempts {
            Some(attempts) => builder.with_max_times(attempts.saturating_sub(1) as usize),
            None => builder.without_max_times(),
        };
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }

    /// The waits between attempts, in order: one fewer than the attempts (or
    /// without end). For [`backon::Retryable::retry`], or explicit loops.
    pub fn delays(&self) -> Delays {
        Delays(self.builder().build())
    }

    /// The same policy with no limit on attempts.
    pub fn unlimited(self) -> Self {
        Self {
            attempts: None,
            ..self
        }
    }
}

/// The waits of a [`Policy`], in whole milliseconds.
///
/// backon computes in `f32` seconds, so 100 ms doubled comes out a few
/// nanoseconds off 200 ms; the policies are configured in milliseconds, and
/// their waits are rounded down to whole ones, as the engine's own arithmetic
/// did before backon (`initial × factor^n`, capped, in milliseconds). The
/// waits are the same as that arithmetic's up to half a minute, and whenever
/// the factor is 2; longer ones with another factor may be 1 ms off.
#[derive(Debug)]
pub struct Delays(ExponentialBackoff);

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next().map(whole_millis)
    }
}

/// `wait` rounded down to the millisecond, after forgiving `f32`'s error
/// (about seven digits: a ten-millionth of the wait, plus a microsecond for
/// the shortest), so 199.99999 ms counts as the 200 ms it stands for.
fn whole_millis(wait: Duration) -> Duration {
    let nanos = wait.as_nanos();
    let millis = (nanos + nanos / 10_000_000 + 1_000) / 1_000_000;
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Failures in a row and the wait after each, for the loops that retry
/// without end and start the backoff over once things work again (a watch
/// loop's micro-batches, a continuous job's restarts).
#[derive(Debug)]
pub struct Streak {
    policy: Policy,
    delays: Delays,
    failures: u32,
}

impl Streak {
    /// An empty streak; `policy`'s attempts are ignored (a streak has no end).
    pub fn new(policy: Policy) -> Self {
        let policy = policy.unlimited();
        Self {
            delays: policy.delays(),
            policy,
            failures: 0,
        }
    }

    /// Failures since the last success (or healthy run).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts a failure; the wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // Unlimited delays never end; the cap stands in were they to.
        self.delays.next().unwrap_or(self.policy.max)
    }

    /// Counts the failure of a run that lasted `ran`; the wait before the
    /// next attempt. A run that lasted longer than the longest wait was
    /// healthy before it failed, so the streak starts over: it is not made
    /// to wait as long as after a run that failed at once, again and again.
    pub fn failed_after(&mut self, ran: Duration) -> Duration {
        if ran > self.policy.max {
            self.succeeded();
        }
        self.failed()
    }

    /// Ends the streak: the next failure waits the initial wait again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.delays = self.policy.delays();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn policy(attempts: Option<u32>, initial: u64, max: u64, factor: f32) -> Policy {
        Policy {
            attempts,
            initial: ms(initial),
            max: ms(max),
            factor,
            jitter: false,
        }
    }

    #[test]
    fn delays_grow_by_the_factor_up_to_the_cap_one_fewer_than_the_attempts() {
        let delays: Vec<_> = policy(Some(5), 100, 350, 2.0).delays().collect();
        assert_eq!(delays, [ms(100), ms(200), ms(350), ms(350)]);
        // Whole milliseconds despite backon's f32 arithmetic.
        let delays: Vec<_> = policy(Some(10), 100, 60_000, 2.0).delays().collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600].map(ms)
        );
        let delays: Vec<_> = policy(Some(4), 1_000, 60_000, 1.5).delays().collect();
        assert_eq!(delays, [ms(1_000), ms(1_500), ms(2_250)]);
    }

    /// The arithmetic the configured waits followed before backon.
    fn former_wait(initial_ms: u64, max_ms: u64, factor: f64, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30) as i32;
        let ms = initial_ms as f64 * factor.max(1.0).powi(exponent);
        Duration::from_millis(ms.min(max_ms as f64) as u64)
    }

    #[test]
    fn delays_are_the_ones_configured_before_backon() {
        for initial in [1, 7, 50, 100, 250, 333, 700, 1_000, 1_234, 5_000] {
            for factor in [1.0, 1.1, 1.3, 1.5, 2.0, 2.5, 3.0] {
                for max in [350, 1_000, 1_500, 60_000, 600_000] {
                    let delays = policy(Some(25), initial, max, factor as f32).delays();
                    for (retry, delay) in (1..).zip(delays) {
                        let former = former_wait(initial, max, factor, retry);
                        let at = format!(
                            "initial {initial} ms, factor {factor}, max {max} ms, retry {retry}: \
                             {delay:?}, formerly {former:?}"
                        );
                        // f32 holds seven digits: the same to the
                        // millisecond up to half a minute and always when
                        // doubling (the default), at most 1 ms off beyond.
                        if factor == 2.0 || former < Duration::from_secs(30) {
                            assert_eq!(delay, former, "{at}");
                        } else {
                            assert!(delay.abs_diff(former) <= ms(1), "{at}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_attempt_has_no_delay_and_unlimited_ones_never_end() {
        assert_eq!(policy(Some(1), 100, 350, 2.0).delays().count(), 0);
        assert_eq!(policy(Some(0), 100, 350, 2.0).delays().count(), 0);
        let mut endless = policy(None, 1_000, 60_000, 2.0).delays();
        let first: Vec<_> = endless.by_ref().take(8).collect();
        assert_eq!(
            first,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000].map(ms)
        );
        assert!(endless.take(1_000).all(|d| d == ms(60_000)));
    }

    #[test]
    fn the_first_delay_is_capped_too_and_waits_never_shrink() {
        let delays: Vec<_> = policy(Some(3), 5_000, 1_000, 2.0).delays().collect();
        assert_eq!(delays, [ms(1_000), ms(1_000)]);
        let delays: Vec<_> = policy(Some(3), 100, 1_000, 0.5).delays().collect();
        assert_eq!(delays, [ms(100), ms(100)]);
        let delays: Vec<_> = policy(Some(3), 100, 1_000, f32::NAN).delays().collect();
        assert_eq!(delays, [ms(100), ms(100)]);
    }

    #[test]
    fn without_a_cap_delays_keep_doubling_and_saturate() {
        let uncapped = Policy {
            max: Duration::MAX,
            ..policy(Some(4), 1_000, 0, 2.0)
        };
        let delays: Vec<_> = uncapped.delays().collect();
        assert_eq!(delays, [ms(1_000), ms(2_000), ms(4_000)]);
        // Far more retries than anyone configures: no overflow, no panic.
        let last = Policy {
            attempts: Some(500),
            ..uncapped
        }
        .delays()
        .last();
        assert!(last.is_some_and(|d| d > Duration::from_secs(1 << 40)));
    }

    #[test]
    fn jitter_adds_up_to_the_wait_itself() {
        let jittered = Policy {
            jitter: true,
            ..policy(Some(4), 100, 1_000, 2.0)
        };
        let delays: Vec<_> = jittered.delays().collect();
        assert_eq!(delays.len(), 3);
        for (delay, base) in delays.into_iter().zip([100, 200, 400]) {
            assert!(delay >= ms(base) && delay <= ms(2 * base), "{delay:?}");
        }
    }

    #[test]
    fn a_streak_grows_and_starts_over_after_a_success() {
        let mut streak = Streak::new(policy(Some(2), 100, 1_000, 2.0));
        // The policy's attempts do not end a streak.
        let waits: Vec<_> = (0..6).map(|_| streak.failed()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000].map(ms));
        assert_eq!(streak.failures(), 6);
        streak.succeeded();
        assert_eq!(streak.failures(), 0);
        assert_eq!(streak.failed(), ms(100));
    }

    #[test]
    fn a_streak_starts_over_after_a_run_longer_than_the_longest_wait() {
        let mut streak = Streak::new(policy(None, 100, 1_000, 2.0));
        // Runs that fail at once: the waits grow.
        assert_eq!(streak.failed_after(ms(5)), ms(100));
        assert_eq!(streak.failed_after(ms(5)), ms(200));
        assert_eq!(streak.failed(), ms(400));
        // As long as the cap: not yet healthy.
        assert_eq!(streak.failed_after(ms(1_000)), ms(800));
        assert_eq!(streak.failures(), 4);
        // Longer: the run was healthy, this failure is the first of a new streak.
        assert_eq!(streak.failed_after(ms(1_001)), ms(100));
        assert_eq!(streak.failures(), 1);
        assert_eq!(streak.failed_after(ms(5)), ms(200));
        assert_eq!(streak.failures(), 2);
    }
}
