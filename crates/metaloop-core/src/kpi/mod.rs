//! KPIs: names, directions, kinds, and the per-cycle windows that hold their sufficient statistics.

pub mod rate;
pub mod sketch;
pub mod window;

use serde::{Deserialize, Serialize};

pub use rate::RateCounts;
pub use sketch::DurationSketch;
pub use window::{ArmWindows, CycleWindows, DomainWindow, PlaybookCounts, ScoreStats};

/// `a + b` rounded to the nearest double, and what the rounding lost: `s + e` equals `a + b`
/// exactly (Knuth's TwoSum, six operations, for any finite `a` and `b`).
#[inline]
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_part = s - a;
    let a_part = s - b_part;
    (s, (a - a_part) + (b - b_part))
}

/// Adds `x` to the pair (`hi`, `lo`), keeping what rounding loses in `lo`.
#[inline]
pub(crate) fn add_exactly(hi: &mut f64, lo: &mut f64, x: f64) {
    let (s, e) = two_sum(*hi, x);
    *hi = s;
    *lo += e;
}

/// A low-order part that is zero is not written: a closed cycle's windows never have one.
pub(crate) fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Fraction of recovery actions that resolved their incident.
pub const OVERALL_SUCCESS_RATE: &str = "overall_success_rate";
/// Mean time from detection to resolution, seconds.
pub const MEAN_RECOVERY_TIME: &str = "mean_recovery_time_seconds";
/// Median recovery time, seconds.
pub const P50_RECOVERY_TIME: &str = "p50_recovery_time_seconds";
/// 95th percentile recovery time, seconds.
pub const P95_RECOVERY_TIME: &str = "p95_recovery_time_seconds";
/// Fraction of decisions the planner made without a human.
pub const AUTONOMY_RATE: &str = "autonomy_rate";
/// Fraction of decisions a human overrode.
pub const HUMAN_INTERVENTION_RATE: &str = "human_intervention_rate";
/// Mean compliance score, 0..100.
pub const COMPLIANCE_SCORE: &str = "compliance_score";

/// Which way is better for a KPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

impl Direction {
    /// Signs a raw change `after - before` so that a positive result means "better".
    pub fn better(self, change: f64) -> f64 {
        match self {
            Direction::HigherIsBetter => change,
            Direction::LowerIsBetter => -change,
        }
    }
}

/// How a KPI's sufficient statistics are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiKind {
    /// successes / trials.
    Rate,
    /// A distribution of durations (sketch plus count/sum/sum²).
    Duration,
    /// Reported values (mean of the window).
    Score,
}

/// True for a name a KPI can have: a built-in one, or a custom one of letters, digits, `_`,
/// `.` and `-` (at most 128 bytes).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The direction and kind of a built-in KPI, `None` for a custom one.
pub fn builtin(name: &str) -> Option<(Direction, KpiKind)> {
    Some(match name {
        OVERALL_SUCCESS_RATE | AUTONOMY_RATE => (Direction::HigherIsBetter, KpiKind::Rate),
        HUMAN_INTERVENTION_RATE => (Direction::LowerIsBetter, KpiKind::Rate),
        MEAN_RECOVERY_TIME | P50_RECOVERY_TIME | P95_RECOVERY_TIME => {
            (Direction::LowerIsBetter, KpiKind::Duration)
        }
        COMPLIANCE_SCORE => (Direction::HigherIsBetter, KpiKind::Score),
        _ => return None,
    })
}
