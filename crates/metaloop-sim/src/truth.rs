//! Ground truth: what a directive really does to its domain, from the analytic model.

use crate::kpis::{ExpectedKpis, higher_is_better, names};
use metaloop_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A rate or score KPI moving the wrong way by more than this is harm.
pub const HARM_RATE: f64 = 0.005;
/// A duration KPI getting worse by more than this many seconds is harm.
pub const HARM_SECONDS: f64 = 1.0;
/// The domain's success rate dropping by more than this is harm, whatever the target.
pub const HARM_SUCCESS_DROP: f64 = 0.01;
/// The domain's mean recovery time rising by more than this fraction is harm.
pub const HARM_RECOVERY_RISE: f64 = 0.20;

/// The true effect of one applied directive.
///
/// `kpis_before` and `kpis_after` are the domain's steady-state expected KPIs at the moment
/// of application with the knob before and after the change; delayed consequences (an
/// overloaded human team, a failover completing) are taken as they will be once their delay
/// has passed, while the environment (playbook drift, a fault not yet repaired) is taken as it
/// is at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// The directive this is the truth of.
    pub directive_id: String,
    /// The domain whose knob it changed.
    pub target_domain: String,
    /// The KPI the directive meant to improve, as the directive named it.
    pub target_kpi: String,
    /// The knob the directive changed.
    pub knob: String,
    /// The knob's value before the change.
    pub previous: serde_json::Value,
    /// The knob's value after the change.
    pub current: serde_json::Value,
    /// When the spine applied it.
    pub applied_at: Timestamp,
    /// Expected target KPI before the change (0 for a KPI the model does not know).
    pub before: f64,
    /// Expected target KPI after the change (0 for a KPI the model does not know).
    pub after: f64,
    /// `after - before`, signed so that > 0 is better for the target KPI.
    pub effect: f64,
    /// The change truly makes things worse (see the `HARM_*` constants).
    pub harmful: bool,
    /// The domain's steady-state expected KPIs with the knob as it was.
    pub kpis_before: ExpectedKpis,
    /// The domain's steady-state expected KPIs with the knob as it is now.
    pub kpis_after: ExpectedKpis,
}

/// The signed effect on `kpi` and whether the change is harmful.
pub(crate) fn assess(
    kpi: &str,
    before: &ExpectedKpis,
    after: &ExpectedKpis,
) -> (f64, f64, f64, bool) {
    let (b, a, effect, target_harm) = match (before.get(kpi), after.get(kpi), higher_is_better(kpi))
    {
        (Some(b), Some(a), Some(up)) => {
            let effect = if up { a - b } else { b - a };
            let limit = if kpi == names::MEAN_RECOVERY_TIME_SECONDS {
                HARM_SECONDS
            } else {
                HARM_RATE
            };
            (b, a, effect, effect < -limit)
        }
        _ => (0.0, 0.0, 0.0, false),
    };
    let success_harm = after.overall_success_rate < before.overall_success_rate - HARM_SUCCESS_DROP;
    let recovery_harm = after.mean_recovery_time_seconds
        > before.mean_recovery_time_seconds * (1.0 + HARM_RECOVERY_RISE);
    (b, a, effect, target_harm || success_harm || recovery_harm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kpis(success: f64, recovery: f64, autonomy: f64) -> ExpectedKpis {
        ExpectedKpis {
            overall_success_rate: success,
            mean_recovery_time_seconds: recovery,
            autonomy_rate: autonomy,
            human_intervention_rate: autonomy * 0.1,
            compliance_score: 97.0,
        }
    }

    #[test]
    fn effect_is_signed_by_direction() {
        let before = kpis(0.87, 42.0, 0.73);
        let after = kpis(0.91, 44.0, 0.66);
        let (_, _, e, harmful) = assess(names::OVERALL_SUCCESS_RATE, &before, &after);
        assert!((e - 0.04).abs() < 1e-12 && !harmful);
        let (_, _, e, harmful) = assess(names::MEAN_RECOVERY_TIME_SECONDS, &before, &after);
        assert!(
            (e + 2.0).abs() < 1e-12 && harmful,
            "2 s slower is harm for a recovery-time target"
        );
        let (_, _, e, harmful) = assess(names::AUTONOMY_RATE, &before, &after);
        assert!(e < 0.0 && harmful);
        let (_, _, e, _) = assess(names::HUMAN_INTERVENTION_RATE, &before, &after);
        assert!(e > 0.0, "less intervention is better");
    }

    #[test]
    fn guardrails_make_any_target_harmful() {
        let before = kpis(0.87, 42.0, 0.73);
        assert!(
            assess(names::AUTONOMY_RATE, &before, &kpis(0.85, 42.0, 0.80)).3,
            "success drop"
        );
        assert!(
            assess(names::AUTONOMY_RATE, &before, &kpis(0.87, 51.0, 0.80)).3,
            "recovery rise"
        );
        assert!(!assess(names::AUTONOMY_RATE, &before, &kpis(0.865, 50.0, 0.80)).3);
        let (b, a, e, harmful) = assess("human_queue_depth", &before, &before);
        assert_eq!((b, a, e, harmful), (0.0, 0.0, 0.0, false));
    }
}
