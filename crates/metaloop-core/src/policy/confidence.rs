//! Decision confidence: evidence × track record × coverage (see `docs/CONFIDENCE.md`).

use crate::directive::ConfidenceFactors;
use crate::goal::Goal;
use crate::kpi::{Direction, DomainWindow, KpiKind, builtin};
use crate::verify::stats;
use serde::{Deserialize, Serialize};

/// Prior successes of every policy's track record (Beta prior α).
pub const PRIOR_VERIFIED: f64 = 8.0;
/// Prior failures of every policy's track record (Beta prior β).
pub const PRIOR_FAILED: f64 = 2.0;

/// Outcomes of a policy's directives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrackRecord {
    pub verified: u64,
    /// `no_effect` and `degraded` verdicts.
    pub failed: u64,
    pub inconclusive: u64,
}

impl TrackRecord {
    /// Posterior mean of the verified rate under a Beta(8, 2) prior: a new policy starts at
    /// 0.80; each failure lowers it, each success raises it.
    pub fn score(&self) -> f64 {
        (PRIOR_VERIFIED + self.verified as f64)
            / (PRIOR_VERIFIED + PRIOR_FAILED + self.verified as f64 + self.failed as f64)
    }
}

/// Combines the three factors.
pub fn combine(evidence: f64, track_record: f64, coverage: f64) -> ConfidenceFactors {
    let clamp = |x: f64| {
        if x.is_finite() {
            x.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let (e, t, c) = (clamp(evidence), clamp(track_record), clamp(coverage));
    ConfidenceFactors {
        evidence: e,
        track_record: t,
        coverage: c,
        confidence: e * t * c,
    }
}

/// Posterior probability that the true value of `goal.kpi` in `window` misses `goal`:
/// Beta(successes + 1, failures + 1) for rates; a normal approximation of the mean for
/// durations and scores. `None` when the window has no data for the KPI.
pub fn evidence_goal_missed(window: &DomainWindow, goal: &Goal) -> Option<f64> {
    let kind = builtin(&goal.kpi).map_or(KpiKind::Score, |(_, k)| k);
    match kind {
        KpiKind::Rate => {
            let c = window.rate_counts(&goal.kpi)?;
            if c.trials == 0 {
                return None;
            }
            let below = stats::beta_cdf(
                goal.target,
                c.successes as f64 + 1.0,
                c.failures() as f64 + 1.0,
            );
            Some(match goal.direction {
                Direction::HigherIsBetter => below,
                Direction::LowerIsBetter => 1.0 - below,
            })
        }
        KpiKind::Duration => {
            let (mean, var, n) = (
                window.recovery.mean()?,
                window.recovery.variance()?,
                window.recovery.count,
            );
            Some(mean_beyond(mean, var, n, goal))
        }
        KpiKind::Score => {
            let s = window.score_stats(&goal.kpi)?;
            let mean = s.mean()?;
            // one value says little: assume a spread of 2 % of the target
            let var = s
                .variance()
                .unwrap_or((0.02 * goal.target).powi(2))
                .max(1e-12);
            Some(mean_beyond(mean, var, s.count, goal))
        }
    }
}

/// P(true mean on the wrong side of the target) under a normal approximation.
fn mean_beyond(mean: f64, var: f64, n: u64, goal: &Goal) -> f64 {
    let se = (var / n.max(1) as f64).sqrt();
    if se <= 0.0 {
        return if goal.met_by(mean) { 0.0 } else { 1.0 };
    }
    stats::normal_cdf(goal.gap(mean) / se)
}

/// Posterior probability that a playbook's true success rate is below `floor`, from
/// `successes` out of `runs` with a uniform prior.
pub fn evidence_below_floor(successes: u64, runs: u64, floor: f64) -> f64 {
    stats::beta_cdf(
        floor,
        successes as f64 + 1.0,
        (runs - successes) as f64 + 1.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::RateCounts;

    #[test]
    fn track_record_starts_at_prior_and_moves_with_outcomes() {
        let mut t = TrackRecord::default();
        assert!((t.score() - 0.8).abs() < 1e-12);
        t.failed = 2;
        assert!(
            (t.score() - 8.0 / 12.0).abs() < 1e-12,
            "two failures drop it below 0.70"
        );
        t.verified = 3;
        assert!(t.score() > 0.70);
    }

    #[test]
    fn small_samples_are_weak_evidence() {
        // 2 successes in 5 runs vs a 0.5 floor: P(p < 0.5 | Beta(3, 4)) = 0.65625 exactly
        // (sum over k = 3..6 of C(6, k) / 64 = 42 / 64)
        assert!((evidence_below_floor(2, 5, 0.5) - 0.65625).abs() < 1e-9);
        // 40 successes of 100 is strong evidence
        assert!(evidence_below_floor(40, 100, 0.5) > 0.97);
    }

    #[test]
    fn evidence_for_a_rate_goal() {
        let goal = Goal::new("overall_success_rate", 0.95, Direction::HigherIsBetter, "");
        let mut w = DomainWindow::default();
        assert_eq!(evidence_goal_missed(&w, &goal), None);
        w.success = RateCounts {
            successes: 870,
            trials: 1000,
        };
        assert!(evidence_goal_missed(&w, &goal).unwrap() > 0.999);
        w.success = RateCounts {
            successes: 990,
            trials: 1000,
        };
        assert!(evidence_goal_missed(&w, &goal).unwrap() < 0.001);
    }

    #[test]
    fn combine_multiplies_and_clamps() {
        let f = combine(0.9, 0.8, 1.0);
        assert!((f.confidence - 0.72).abs() < 1e-12);
        assert_eq!(combine(f64::NAN, 0.8, 1.0).confidence, 0.0);
    }
}
