//! Recommendations: policy changes the track records and verdicts suggest, for humans to
//! weigh. Never applied by the supervisor.

use super::state::State;
use crate::directive::Status;
use serde::{Deserialize, Serialize};

/// Cycles a policy may go without a directive before it is called silent (a week of
/// 5-minute cycles).
pub const SILENT_CYCLES: u64 = 2016;
/// Recent directives of a policy looked at.
const RECENT: usize = 5;

/// What a recommendation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationKind {
    /// Its changes keep verifying with an effect near the least worth keeping: a bigger step
    /// may close the gap sooner.
    SmallSteps,
    /// Its directives keep failing verification and being rolled back.
    KeepsFailing,
    /// It has not issued a directive in a long time.
    Silent,
}

/// A suggested change to a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub policy_id: String,
    pub kind: RecommendationKind,
    pub text: String,
}

impl State {
    /// What the track records and verdicts suggest changing, policy by policy.
    pub fn recommendations(&self) -> Vec<Recommendation> {
        let mut out = Vec::new();
        // each policy's live directives in the order they were proposed, in one pass
        let mut by_policy: std::collections::HashMap<&str, Vec<&super::state::DirectiveState>> =
            std::collections::HashMap::new();
        for d in self.order.iter().filter_map(|d| self.directives.get(d)) {
            if let Some(p) = d.directive.policy_id.as_deref()
                && !d.directive.shadow
            {
                by_policy.entry(p).or_default().push(d);
            }
        }
        for (id, ps) in &self.policies {
            if !ps.policy.enabled {
                continue;
            }
            let mine: &[&super::state::DirectiveState] =
                by_policy.get(id.as_str()).map_or(&[], Vec::as_slice);
            let recent: Vec<_> = mine.iter().rev().take(RECENT).collect();
            let failed = recent
                .iter()
                .filter(|d| {
                    matches!(
                        d.status,
                        Status::NoEffect | Status::Degraded | Status::RolledBack
                    )
                })
                .count();
            if failed >= 2 && failed * 2 >= recent.len() {
                out.push(Recommendation {
                    policy_id: id.clone(),
                    kind: RecommendationKind::KeepsFailing,
                    text: format!(
                        "{failed} of the last {} directives of {id} failed verification and were rolled back: review its condition and its step, or disable it",
                        recent.len()
                    ),
                });
            }
            let min_effect = ps.policy.directive_template.min_effect.unwrap_or(0.0);
            let small: Vec<f64> = recent
                .iter()
                .filter(|d| d.status == Status::Verified)
                .filter_map(|d| d.verdict.as_ref())
                .map(|v| v.target.effect)
                .collect();
            let target = &ps.policy.directive_template.target_kpi;
            let gap_open = self.last_gaps.get(target).is_some_and(|g| *g > 0.0);
            if min_effect > 0.0
                && small.len() >= 2
                && gap_open
                && small.iter().all(|e| e.abs() < 2.0 * min_effect)
            {
                out.push(Recommendation {
                    policy_id: id.clone(),
                    kind: RecommendationKind::SmallSteps,
                    text: format!(
                        "the last {} verified changes of {id} moved {target} by {} each (the least worth keeping is {min_effect}) while its goal is still missed: a bigger step may close the gap sooner",
                        small.len(),
                        small
                            .iter()
                            .map(|e| format!("{e:+.3}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            let last = mine.last().map_or(0, |d| d.directive.issued_cycle);
            if self.cycle >= last + SILENT_CYCLES {
                out.push(Recommendation {
                    policy_id: id.clone(),
                    kind: RecommendationKind::Silent,
                    text: if mine.is_empty() {
                        format!(
                            "{id} has issued no directive in {} cycles: its condition may never hold (see its evaluations: how often it held, and why it did not fire)",
                            self.cycle
                        )
                    } else {
                        format!(
                            "{id} has issued no directive since cycle {last} ({} cycles): check that its condition still matches the spine",
                            self.cycle - last
                        )
                    },
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SupervisorConfig;
    use crate::record::RecordBody;
    use crate::time::Timestamp;

    #[test]
    fn a_policy_that_never_fires_is_called_silent_after_a_week_only() {
        let cfg = SupervisorConfig::default();
        let mut state = State::default();
        state.apply(
            &cfg,
            &RecordBody::Started {
                environment: "production".into(),
                cycle_seconds: 300,
                goals: cfg.goals.clone(),
                policies: cfg.policies.clone(),
                approval: cfg.approval.clone(),
                method: "metaloop".into(),
                start: Timestamp::from_secs(0),
                verification: None,
                shadow: false,
                id_seed: None,
            },
            Timestamp::from_secs(0),
        );
        state.cycle = SILENT_CYCLES - 1;
        assert!(state.recommendations().is_empty());
        state.cycle = SILENT_CYCLES;
        let r = state.recommendations();
        assert_eq!(r.len(), cfg.policies.len(), "{r:?}");
        assert!(r.iter().all(|x| x.kind == RecommendationKind::Silent));
        assert!(
            r[0].text.contains("has issued no directive in 2016 cycles"),
            "{r:?}"
        );
    }
}
