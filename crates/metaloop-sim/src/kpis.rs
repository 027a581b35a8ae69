//! The KPIs metaloop computes from spine events, and their exact expectations under the model.

use crate::domain::Situation;
use serde::{Deserialize, Serialize};

/// KPI names as metaloop uses them.
pub mod names {
    /// Succeeded recoveries / recoveries (higher is better).
    pub const OVERALL_SUCCESS_RATE: &str = "overall_success_rate";
    /// Mean `duration_s` of recoveries (lower is better).
    pub const MEAN_RECOVERY_TIME_SECONDS: &str = "mean_recovery_time_seconds";
    /// Decisions with `autonomous` / decisions (higher is better).
    pub const AUTONOMY_RATE: &str = "autonomy_rate";
    /// Decisions with `overridden` / decisions (lower is better).
    pub const HUMAN_INTERVENTION_RATE: &str = "human_intervention_rate";
    /// Mean compliance score, 0–100 (higher is better).
    pub const COMPLIANCE_SCORE: &str = "compliance_score";
}

/// The analytic expectation of a domain's built-in KPIs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedKpis {
    /// Probability that a recovery succeeds.
    pub overall_success_rate: f64,
    /// Mean recovery duration (detection delay + execution), seconds.
    pub mean_recovery_time_seconds: f64,
    /// Probability that the planner decides alone.
    pub autonomy_rate: f64,
    /// Probability that a decision is overridden by a human.
    pub human_intervention_rate: f64,
    /// Mean compliance score (of the unclamped normal; clamping scores to 0–100 moves the
    /// mean by less than 1e-4 with the scenarios' parameters).
    pub compliance_score: f64,
}

impl ExpectedKpis {
    /// The value of a built-in KPI by name.
    pub fn get(&self, kpi: &str) -> Option<f64> {
        match kpi {
            names::OVERALL_SUCCESS_RATE => Some(self.overall_success_rate),
            names::MEAN_RECOVERY_TIME_SECONDS => Some(self.mean_recovery_time_seconds),
            names::AUTONOMY_RATE => Some(self.autonomy_rate),
            names::HUMAN_INTERVENTION_RATE => Some(self.human_intervention_rate),
            names::COMPLIANCE_SCORE => Some(self.compliance_score),
            _ => None,
        }
    }
}

/// Whether a larger value of the built-in KPI `kpi` is better; `None` for unknown KPIs.
pub fn higher_is_better(kpi: &str) -> Option<bool> {
    match kpi {
        names::OVERALL_SUCCESS_RATE | names::AUTONOMY_RATE | names::COMPLIANCE_SCORE => Some(true),
        names::MEAN_RECOVERY_TIME_SECONDS | names::HUMAN_INTERVENTION_RATE => Some(false),
        _ => None,
    }
}

/// Expected KPIs in a situation, in closed form over planned playbooks × confidence bands.
///
/// Every sum runs in the same order for the same structure, so two situations that differ
/// only in ways the model ignores give bit-identical results (the noise scenario relies on it).
pub(crate) fn expected(s: &Situation<'_>) -> ExpectedKpis {
    let human_success = s.human_success();
    let human_exec = s.human_exec_mean_s();
    let o = s.override_prob();
    let mut success = 0.0;
    let mut exec = 0.0;
    let mut autonomy = 0.0;
    for (planned, playbook) in s.spec.incident_playbooks() {
        let effective = s.knobs.effective_playbook(s.spec, planned);
        let mut pb_success = 0.0;
        let mut pb_exec = 0.0;
        let mut pb_autonomy = 0.0;
        for band in &s.spec.planner.bands {
            let (band_success, band_exec) = match effective {
                Some(run) if s.acts_autonomously(band) => {
                    pb_autonomy += band.weight;
                    let auto_success = s.autonomous_success(band, run);
                    let auto_exec = s.autonomous_exec_mean_s(run);
                    (
                        (1.0 - o) * auto_success + o * human_success,
                        (1.0 - o) * auto_exec + o * human_exec,
                    )
                }
                Some(run) if s.reviewed(band) => (
                    s.autonomous_success(band, run),
                    s.autonomous_exec_mean_s(run) + s.review_delay_s(),
                ),
                _ => (human_success, human_exec),
            };
            pb_success += band.weight * band_success;
            pb_exec += band.weight * band_exec;
        }
        success += playbook.share * pb_success;
        exec += playbook.share * pb_exec;
        autonomy += playbook.share * pb_autonomy;
    }
    ExpectedKpis {
        overall_success_rate: success,
        mean_recovery_time_seconds: s.detection_mean_s() + exec,
        autonomy_rate: autonomy,
        human_intervention_rate: autonomy * o,
        compliance_score: s.spec.compliance.0,
    }
}

/// The distribution of an incident's success probability in a situation: `(weight, success)`
/// over planned playbooks × confidence bands × (acted alone, overridden or escalated), the
/// weights summing to 1 and `Σ weight × success` being `expected(s).overall_success_rate`.
pub(crate) fn success_profile(s: &Situation<'_>) -> Vec<(f64, f64)> {
    let human_success = s.human_success();
    let o = s.override_prob();
    let mut profile = Vec::new();
    for (planned, playbook) in s.spec.incident_playbooks() {
        let effective = s.knobs.effective_playbook(s.spec, planned);
        for band in &s.spec.planner.bands {
            let weight = playbook.share * band.weight;
            match effective {
                Some(run) if s.acts_autonomously(band) => {
                    profile.push((weight * (1.0 - o), s.autonomous_success(band, run)));
                    profile.push((weight * o, human_success));
                }
                Some(run) if s.reviewed(band) => {
                    profile.push((weight, s.autonomous_success(band, run)));
                }
                _ => profile.push((weight, human_success)),
            }
        }
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Conditions, DomainSpec, toy::spec};
    use metaloop_core::time::Timestamp;

    fn at(
        spec: &DomainSpec,
        f: impl FnOnce(&mut crate::domain::Knobs),
        penalty: f64,
    ) -> ExpectedKpis {
        let mut knobs = spec.default_knobs();
        f(&mut knobs);
        let conditions = Conditions {
            fault_penalty: penalty,
            ..Conditions::calm(Timestamp(0))
        };
        expected(&Situation {
            spec,
            knobs: &knobs,
            conditions,
        })
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn matches_hand_computed_values() {
        let s = spec();
        // band 0.6 escalates: 0.4 × 0.95; band 0.9 acts: 0.6 × mean over a, b of
        // 0.9 × autonomous + 0.1 × human = 0.6 × (0.905 + 0.743) / 2
        let k = at(&s, |_| {}, 0.0);
        close(k.overall_success_rate, 0.38 + 0.6 * 0.824);
        close(
            k.mean_recovery_time_seconds,
            5.0 + 0.4 * 50.0 + 0.6 * (14.0 + 23.0) / 2.0,
        );
        close(k.autonomy_rate, 0.6);
        close(k.human_intervention_rate, 0.06);
        close(k.compliance_score, 97.0);

        let k = at(&s, |k| k.threshold = 0.55, 0.0);
        close(k.autonomy_rate, 1.0);
        close(
            k.overall_success_rate,
            0.4 * (0.9 * 0.5 * 0.9 + 0.095) + 0.6 * 0.824,
        );

        let k = at(&s, |k| k.probe_enabled = true, 0.0);
        close(k.mean_recovery_time_seconds, 1.0 + 20.0 + 0.6 * 18.5);

        // a review band of 0.1 below the 0.7 threshold takes in band 0.6: its incidents run
        // the planner's playbook once approved (success 0.5 × quality: a 0.5, b 0.4; time
        // the playbook's plus a quarter of the human's 50 s) instead of a human's 0.95 in
        // 50 s; autonomy and overrides do not move
        let k = at(&s, |k| k.review_band = 0.1, 0.0);
        close(k.overall_success_rate, 0.4 * 0.45 + 0.6 * 0.824);
        close(
            k.mean_recovery_time_seconds,
            5.0 + 0.4 * (22.5 + 32.5) / 2.0 + 0.6 * (14.0 + 23.0) / 2.0,
        );
        close(k.autonomy_rate, 0.6);
        close(k.human_intervention_rate, 0.06);
        // a band that reaches no confidence level changes nothing
        let k = at(&s, |k| k.review_band = 0.05, 0.0);
        close(k.overall_success_rate, 0.38 + 0.6 * 0.824);
    }

    #[test]
    fn success_profile_is_a_distribution_with_the_expected_mean() {
        let s = spec();
        for enabled in [vec![true, true], vec![false, true], vec![false, false]] {
            for (threshold, review_band) in [(0.55, 0.0), (0.7, 0.0), (0.95, 0.0), (0.7, 0.2)] {
                let knobs = crate::domain::Knobs {
                    threshold,
                    review_band,
                    playbook_enabled: enabled.clone(),
                    ..s.default_knobs()
                };
                let situation = Situation {
                    spec: &s,
                    knobs: &knobs,
                    conditions: Conditions::calm(Timestamp(0)),
                };
                let profile = success_profile(&situation);
                let weight: f64 = profile.iter().map(|(w, _)| w).sum();
                let mean: f64 = profile.iter().map(|(w, p)| w * p).sum();
                close(weight, 1.0);
                close(mean, expected(&situation).overall_success_rate);
            }
        }
        // by hand at the default knobs: band 0.6 (weight 0.4) escalates to 0.95; band 0.9
        // acts on a (0.9) or b (0.72), overridden one time in ten
        let knobs = s.default_knobs();
        let profile = success_profile(&Situation {
            spec: &s,
            knobs: &knobs,
            conditions: Conditions::calm(Timestamp(0)),
        });
        let want = [
            (0.2, 0.95),
            (0.27, 0.9),
            (0.03, 0.95),
            (0.2, 0.95),
            (0.27, 0.72),
            (0.03, 0.95),
        ];
        assert_eq!(profile.len(), want.len());
        for ((w, p), (ww, wp)) in profile.into_iter().zip(want) {
            close(w, ww);
            close(p, wp);
        }
    }

    #[test]
    fn fallbacks_humans_and_faults() {
        let s = spec();
        let k = at(&s, |k| k.playbook_enabled[1] = false, 0.0);
        close(k.overall_success_rate, 0.38 + 0.6 * 0.905);
        close(k.mean_recovery_time_seconds, 5.0 + 20.0 + 0.6 * 14.0);

        // no playbook left: humans handle everything by hand
        let k = at(&s, |k| k.playbook_enabled = vec![false, false], 0.0);
        close(k.overall_success_rate, 0.95);
        close(k.mean_recovery_time_seconds, 55.0);
        close(k.autonomy_rate, 0.0);

        let k = at(&s, |_| {}, 0.2);
        close(k.overall_success_rate, 0.8 * (0.38 + 0.6 * 0.824));
    }
}
