//! Directive templates: what a policy asks for once it fires.

use crate::directive::{DirectiveType, ImpactLevel, KnobAction};
use crate::kpi;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which domain (and playbook or node) a directive targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSelector {
    /// The domain contributing most to the gap of the template's `target_kpi`.
    WorstDomain,
    /// The root domain of a dependency cascade; `{node}` in the knob is the root node.
    PatternRoot,
    /// The domain of a playbook found below its floor; `{playbook}` in the knob is its name.
    FailingPlaybook,
    /// A fixed domain.
    Domain(String),
    /// The domains a CEL expression lists (`domains.filter(d, domains[d].trust_exceptions
    /// >= 5)`), in order; it sees what conditions see.
    Matching(String),
}

/// The directive a policy issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveTemplate {
    #[serde(rename = "type")]
    pub directive_type: DirectiveType,
    /// The action's name for humans.
    pub action: String,
    pub target: TargetSelector,
    #[serde(default = "default_subsystem")]
    pub subsystem: String,
    /// The knob, with `{playbook}` / `{node}` placeholders filled from the target.
    pub knob: String,
    /// `{"adjustment": x}` adds x to a numeric knob; `{"value": v}` sets it.
    pub parameters: serde_json::Value,
    /// The KPI the directive should improve (its verification target).
    pub target_kpi: String,
    pub impact_level: ImpactLevel,
    /// Expected side effects: KPI → tolerated degradation (absolute for rates and scores,
    /// relative for durations, e.g. 0.25 = 25 % slower).
    #[serde(default)]
    pub side_effects: BTreeMap<String, f64>,
    /// The least improvement of the target worth keeping (absolute for rates and scores,
    /// relative for durations): verification credits no less, and rules out a change that
    /// cannot reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<f64>,
    #[serde(default)]
    pub expected_impact: String,
    /// Try the change on a slice of incidents first (a `SCHEDULE_EXPERIMENT` holdout
    /// experiment), and roll it out to the whole domain only when the experiment verifies it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub experiment_first: bool,
    /// The slice an experiment applies the change to (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_fraction: Option<f64>,
}

/// The slice of incidents an experiment treats when the template does not say.
pub const DEFAULT_EXPERIMENT_FRACTION: f64 = 0.5;

fn default_subsystem() -> String {
    "planner".into()
}

impl DirectiveTemplate {
    /// The knob action described by `parameters`.
    pub fn knob_action(&self) -> Result<KnobAction, String> {
        let obj = self
            .parameters
            .as_object()
            .ok_or("parameters must be an object")?;
        match (obj.get("adjustment"), obj.get("value")) {
            (Some(a), None) => a
                .as_f64()
                .filter(|a| a.is_finite())
                .map(|adjustment| KnobAction::Adjust { adjustment })
                .ok_or_else(|| format!("parameters.adjustment must be a number, got {a}")),
            (None, Some(v)) => Ok(KnobAction::Set { value: v.clone() }),
            (Some(_), Some(_)) => {
                Err("parameters: give either adjustment or value, not both".into())
            }
            (None, None) => {
                Err("parameters: expected {\"adjustment\": number} or {\"value\": …}".into())
            }
        }
    }

    /// Checks the template's shape.
    pub fn validate(&self) -> Result<(), String> {
        self.knob_action()?;
        if self.directive_type == DirectiveType::RollbackChange {
            return Err(
                "ROLLBACK_CHANGE directives are issued by verification, not by policies".into(),
            );
        }
        if self.knob.trim().is_empty() {
            return Err("knob must not be empty".into());
        }
        if self.knob.contains("{playbook}") && self.target != TargetSelector::FailingPlaybook {
            return Err("{playbook} in knob needs target failing_playbook".into());
        }
        if self.knob.contains("{node}") && self.target != TargetSelector::PatternRoot {
            return Err("{node} in knob needs target pattern_root".into());
        }
        if let TargetSelector::Matching(e) = &self.target {
            super::expression::compile_domains(e).map_err(|e| format!("target expression {e}"))?;
        }
        if !kpi::valid_name(&self.target_kpi) {
            return Err(format!(
                "target_kpi {:?} is not a KPI name: a built-in KPI (overall_success_rate, mean_recovery_time_seconds, autonomy_rate, human_intervention_rate, compliance_score) or a custom one (letters, digits, '_', '.', '-')",
                self.target_kpi
            ));
        }
        if let Some(f) = self.experiment_fraction
            && !(f > 0.0 && f < 1.0)
        {
            return Err(format!(
                "experiment_fraction must be strictly between 0 and 1, got {f}"
            ));
        }
        if self.experiment_fraction.is_some() && !self.experiment_first {
            return Err("experiment_fraction needs experiment_first = true".into());
        }
        if self.experiment_first
            && matches!(
                self.directive_type,
                DirectiveType::ScheduleExperiment | DirectiveType::RequestReview
            )
        {
            return Err(format!(
                "experiment_first does not apply to {} directives",
                self.directive_type
            ));
        }
        if let Some(m) = self.min_effect
            && !(m.is_finite() && m >= 0.0)
        {
            return Err(format!("min_effect must be a non-negative number, got {m}"));
        }
        for (k, tol) in &self.side_effects {
            if !kpi::valid_name(k) {
                return Err(format!("side_effects: {k:?} is not a KPI name"));
            }
            if !tol.is_finite() || *tol < 0.0 {
                return Err(format!(
                    "side_effects.{k} must be a non-negative number, got {tol}"
                ));
            }
        }
        Ok(())
    }
}
