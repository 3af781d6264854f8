//! Order arrival intensity over simulated time: a daily curve (quiet nights, evening
//! peak) times a weekly curve (busier weekends), both normalised to mean 1.

use chrono::{Datelike, NaiveDateTime, Timelike};

/// Relative order intensity per hour of day (00:00 … 23:00).
const HOURLY: [f64; 24] = [
    0.35, 0.2, 0.12, 0.1, 0.1, 0.15, 0.3, 0.55, 0.75, 0.9, 0.95, 1.0, 1.1, 1.05, 0.95, 0.95, 1.0,
    1.15, 1.4, 1.7, 1.85, 1.75, 1.3, 0.7,
];

/// Relative order intensity per weekday (Monday … Sunday).
const WEEKLY: [f64; 7] = [0.92, 0.85, 0.85, 0.9, 1.0, 1.3, 1.35];

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::MIN, f64::max)
}

/// Multiplier (mean 1 over a week) applied to the base order rate at time `t`.
pub fn factor(t: NaiveDateTime) -> f64 {
    let h = HOURLY[t.hour() as usize] / mean(&HOURLY);
    let d = WEEKLY[t.weekday().num_days_from_monday() as usize] / mean(&WEEKLY);
    h * d
}

/// Upper bound of [`factor`], the envelope used for thinning.
pub fn max_factor() -> f64 {
    max(&HOURLY) / mean(&HOURLY) * max(&WEEKLY) / mean(&WEEKLY)
}
