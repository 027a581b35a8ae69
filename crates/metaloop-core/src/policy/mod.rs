//! Meta-policies: when to intervene, with what directive, and how sure we must be.

pub mod condition;
pub mod confidence;
mod defaults;
pub mod expression;
pub mod template;

pub use condition::{Condition, ConditionEval, FailingPlaybook, LeafCache};
pub use confidence::TrackRecord;
pub use defaults::default_policies;
pub use template::{DirectiveTemplate, TargetSelector};

use crate::directive::ImpactLevel;
use serde::{Deserialize, Serialize};

fn default_confidence_threshold() -> f64 {
    0.70
}
fn default_min_evidence() -> f64 {
    0.95
}
fn default_for_cycles() -> u32 {
    1
}
fn default_enabled() -> bool {
    true
}

/// Whether a policy's decisions act (`live`) or are only recorded (`shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    #[default]
    Live,
    /// Decisions are made, recorded as would-have directives and estimated, never published.
    Shadow,
}

impl PolicyMode {
    fn is_live(&self) -> bool {
        *self == PolicyMode::Live
    }
}

/// A rule for when to intervene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaPolicy {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub condition: Condition,
    pub directive_template: DirectiveTemplate,
    /// Minimum decision confidence to issue a directive (default 0.70).
    #[serde(default = "default_confidence_threshold")]
    pub confidence_threshold: f64,
    /// Minimum evidence that the condition truly holds (the confidence's evidence factor) to
    /// issue a directive (default 0.95): a low-volume domain acts later, when its data say
    /// enough, instead of never or on noise.
    #[serde(default = "default_min_evidence")]
    pub min_evidence: f64,
    /// Treat the directive as at least this impact level for approvals (never lowers it).
    #[serde(default)]
    pub approval_override: Option<ImpactLevel>,
    /// Consecutive cycles the condition must hold before the policy fires.
    #[serde(default = "default_for_cycles")]
    pub for_cycles: u32,
    /// Cycles after issuing a directive on a knob before this policy may target it again.
    #[serde(default)]
    pub cooldown_cycles: u32,
    /// Lower runs first; a domain gets at most one new directive per cycle.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// `live` (the default) or `shadow`.
    #[serde(default, skip_serializing_if = "PolicyMode::is_live")]
    pub mode: PolicyMode,
}

impl MetaPolicy {
    /// Checks a policy for mistakes a config file or API call could make.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("policy id must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.confidence_threshold) {
            return Err(format!(
                "policy {}: confidence_threshold must be within 0..=1, got {}",
                self.id, self.confidence_threshold
            ));
        }
        if !(0.0..=1.0).contains(&self.min_evidence) {
            return Err(format!(
                "policy {}: min_evidence must be within 0..=1, got {}",
                self.id, self.min_evidence
            ));
        }
        if self.for_cycles == 0 {
            return Err(format!("policy {}: for_cycles must be at least 1", self.id));
        }
        self.condition
            .validate()
            .map_err(|e| format!("policy {}: condition: {e}", self.id))?;
        self.directive_template
            .validate()
            .map_err(|e| format!("policy {}: directive_template: {e}", self.id))
    }

    /// True when its condition or its target is a CEL expression.
    pub fn uses_expressions(&self) -> bool {
        self.condition.has_expression()
            || matches!(self.directive_template.target, TargetSelector::Matching(_))
    }

    /// Checks what needs the goals: a custom KPI the policy targets or guards takes its
    /// direction (and so what "better" means to verification) from its goal.
    pub fn validate_against(&self, goals: &[crate::goal::Goal]) -> Result<(), String> {
        let t = &self.directive_template;
        for k in std::iter::once(&t.target_kpi).chain(t.side_effects.keys()) {
            if crate::kpi::builtin(k).is_none() && !goals.iter().any(|g| &g.kpi == k) {
                return Err(format!(
                    "policy {}: {k} is a custom KPI with no goal: add a [[goals]] entry for it (kpi = {k:?}, its target and direction) so that verification knows which way is better",
                    self.id
                ));
            }
        }
        Ok(())
    }
}
