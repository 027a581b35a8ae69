//! Strategic goals and their signed gaps.

use crate::kpi::{self, Direction};
use serde::{Deserialize, Serialize};

/// A target for one KPI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub kpi: String,
    pub target: f64,
    pub direction: Direction,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
}

impl Goal {
    /// Builds a goal.
    pub fn new(kpi: &str, target: f64, direction: Direction, description: &str) -> Self {
        Goal {
            kpi: kpi.into(),
            target,
            direction,
            description: description.into(),
        }
    }

    /// The signed gap of `value`: positive means worse than target, in either direction
    /// (success 0.87 vs 0.95 → +0.08; recovery 42.3 s vs 30 s → +12.3).
    pub fn gap(&self, value: f64) -> f64 {
        match self.direction {
            Direction::HigherIsBetter => self.target - value,
            Direction::LowerIsBetter => value - self.target,
        }
    }

    /// True when `value` meets the goal.
    pub fn met_by(&self, value: f64) -> bool {
        self.gap(value) <= 0.0
    }
}

/// The seed's strategic goals: success 95 %, recovery 30 s, autonomy 80 %, compliance 95/100,
/// human intervention at most 15 %.
pub fn default_goals() -> Vec<Goal> {
    vec![
        Goal::new(
            kpi::OVERALL_SUCCESS_RATE,
            0.95,
            Direction::HigherIsBetter,
            "recovery actions that succeed",
        ),
        Goal::new(
            kpi::MEAN_RECOVERY_TIME,
            30.0,
            Direction::LowerIsBetter,
            "average time to resolve incidents",
        ),
        Goal::new(
            kpi::AUTONOMY_RATE,
            0.80,
            Direction::HigherIsBetter,
            "decisions made without human approval",
        ),
        Goal::new(
            kpi::COMPLIANCE_SCORE,
            95.0,
            Direction::HigherIsBetter,
            "ethics and policy compliance rating",
        ),
        Goal::new(
            kpi::HUMAN_INTERVENTION_RATE,
            0.15,
            Direction::LowerIsBetter,
            "decisions humans override",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_is_positive_when_worse_in_both_directions() {
        let goals = default_goals();
        let success = &goals[0];
        let recovery = &goals[1];
        assert!((success.gap(0.87) - 0.08).abs() < 1e-12);
        assert!((recovery.gap(42.3) - 12.3).abs() < 1e-9);
        assert!(success.gap(0.97) < 0.0 && success.met_by(0.97));
        assert!(recovery.gap(20.0) < 0.0 && !recovery.met_by(42.3));
    }
}
