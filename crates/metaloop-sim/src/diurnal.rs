//! The daily cycle of operations: incidents come in waves that follow the working day, and
//! the small hours are the hardest to recover in.
//!
//! At hour `h` of the day (UTC of the virtual clock, fractional):
//!
//! - rate multiplier `r(h) = 1 + A·cos(2π(h − 14)/24)`, `A` = [`DIURNAL_RATE_AMPLITUDE`],
//!   peak at [`DIURNAL_PEAK_HOUR`]; its mean over a day is exactly 1, so a volume's rate is
//!   its daily mean;
//! - hardness `k(h) = (1 + cos(2π(h − 3)/24)) / 2`, 1 at [`DIURNAL_HARDEST_HOUR`] and 0
//!   twelve hours later; every success probability is multiplied by
//!   `1 − DIURNAL_SUCCESS_DROP·k(h)` and every execution time by `1 + DIURNAL_EXEC_RISE·k(h)`.

use metaloop_core::time::Timestamp;
use std::f64::consts::PI;

/// Relative swing of the incident rate over the day: the rate is `1 ± 0.6` times its daily
/// mean at the peak and the trough.
pub const DIURNAL_RATE_AMPLITUDE: f64 = 0.6;

/// Hour of day (UTC) at which incidents are most frequent; the trough is twelve hours later.
pub const DIURNAL_PEAK_HOUR: f64 = 14.0;

/// Hour of day (UTC) at which incidents are hardest to recover from.
pub const DIURNAL_HARDEST_HOUR: f64 = 3.0;

/// Relative drop of every success probability at the hardest hour (none twelve hours later).
pub const DIURNAL_SUCCESS_DROP: f64 = 0.04;

/// Relative rise of every execution time at the hardest hour (none twelve hours later).
pub const DIURNAL_EXEC_RISE: f64 = 0.2;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: f64 = 3_600_000.0;

/// The fractional hour of day (UTC) of `at`, in [0, 24).
pub(crate) fn hour_of_day(at: Timestamp) -> f64 {
    at.millis().rem_euclid(DAY_MS) as f64 / HOUR_MS
}

/// The incident rate at `at` as a multiple of its daily mean.
pub(crate) fn rate_multiplier(at: Timestamp) -> f64 {
    1.0 + DIURNAL_RATE_AMPLITUDE * (2.0 * PI * (hour_of_day(at) - DIURNAL_PEAK_HOUR) / 24.0).cos()
}

/// The largest value `rate_multiplier` takes.
pub(crate) const PEAK_RATE_MULTIPLIER: f64 = 1.0 + DIURNAL_RATE_AMPLITUDE;

/// How hard the hour is, from 0 (easiest) to 1 (hardest).
fn hardness(at: Timestamp) -> f64 {
    (1.0 + (2.0 * PI * (hour_of_day(at) - DIURNAL_HARDEST_HOUR) / 24.0).cos()) / 2.0
}

/// What the hour of `at` multiplies success probabilities by.
pub(crate) fn success_factor(at: Timestamp) -> f64 {
    1.0 - DIURNAL_SUCCESS_DROP * hardness(at)
}

/// What the hour of `at` multiplies execution times by.
pub(crate) fn exec_factor(at: Timestamp) -> f64 {
    1.0 + DIURNAL_EXEC_RISE * hardness(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_hour(h: f64) -> Timestamp {
        // 2026-01-01T00:00:00Z plus h hours
        Timestamp(1_767_225_600_000 + (h * HOUR_MS) as i64)
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn known_hours() {
        close(hour_of_day(at_hour(0.0)), 0.0);
        close(hour_of_day(at_hour(13.5)), 13.5);
        close(hour_of_day(Timestamp(-HOUR_MS as i64)), 23.0);
        close(rate_multiplier(at_hour(14.0)), 1.6);
        close(rate_multiplier(at_hour(2.0)), 0.4);
        close(rate_multiplier(at_hour(8.0)), 1.0);
        close(success_factor(at_hour(3.0)), 0.96);
        close(success_factor(at_hour(15.0)), 1.0);
        close(success_factor(at_hour(9.0)), 0.98);
        close(exec_factor(at_hour(3.0)), 1.2);
        close(exec_factor(at_hour(15.0)), 1.0);
        assert!(rate_multiplier(at_hour(14.0)) <= PEAK_RATE_MULTIPLIER);
    }

    #[test]
    fn the_rate_averages_to_one_over_a_day() {
        // the midpoint rule is exact for a cosine sampled at equally spaced points
        let n = 1440;
        let mean = (0..n)
            .map(|i| rate_multiplier(at_hour(24.0 * (i as f64 + 0.5) / n as f64)))
            .sum::<f64>()
            / n as f64;
        assert!((mean - 1.0).abs() < 1e-9, "{mean}");
    }
}
