//! Directives: what the supervisor asks the spine to change, and their lifecycle.

use crate::protocol::DirectiveMessage;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What kind of change a directive makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DirectiveType {
    AdjustThreshold,
    EnablePlaybook,
    DisablePlaybook,
    AdjustConfidence,
    ScheduleExperiment,
    RequestReview,
    EnableProbe,
    RollbackChange,
}

impl DirectiveType {
    /// The upper-case wire name, e.g. `ADJUST_THRESHOLD`.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectiveType::AdjustThreshold => "ADJUST_THRESHOLD",
            DirectiveType::EnablePlaybook => "ENABLE_PLAYBOOK",
            DirectiveType::DisablePlaybook => "DISABLE_PLAYBOOK",
            DirectiveType::AdjustConfidence => "ADJUST_CONFIDENCE",
            DirectiveType::ScheduleExperiment => "SCHEDULE_EXPERIMENT",
            DirectiveType::RequestReview => "REQUEST_REVIEW",
            DirectiveType::EnableProbe => "ENABLE_PROBE",
            DirectiveType::RollbackChange => "ROLLBACK_CHANGE",
        }
    }
}

impl fmt::Display for DirectiveType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a directive can hurt, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImpactLevel {
    Minimal,
    Low,
    Moderate,
    High,
    Critical,
}

impl ImpactLevel {
    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImpactLevel::Minimal => "MINIMAL",
            ImpactLevel::Low => "LOW",
            ImpactLevel::Moderate => "MODERATE",
            ImpactLevel::High => "HIGH",
            ImpactLevel::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for ImpactLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The knob action of a directive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum KnobAction {
    /// Add `adjustment` to a numeric knob.
    Adjust { adjustment: f64 },
    /// Set the knob to `value`.
    Set { value: serde_json::Value },
}

/// Lifecycle state (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Proposed,
    PendingApproval,
    Approved,
    Rejected,
    Expired,
    Published,
    Applied,
    Refused,
    Verifying,
    Verified,
    NoEffect,
    Degraded,
    Inconclusive,
    RolledBack,
    /// A shadow directive: decided and recorded, never published; its estimated verdict is
    /// being computed from the data that follows.
    Shadow,
    /// A shadow directive whose estimated verdict is in.
    ShadowEstimated,
}

impl Status {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::PendingApproval => "pending_approval",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Published => "published",
            Status::Applied => "applied",
            Status::Refused => "refused",
            Status::Verifying => "verifying",
            Status::Verified => "verified",
            Status::NoEffect => "no_effect",
            Status::Degraded => "degraded",
            Status::Inconclusive => "inconclusive",
            Status::RolledBack => "rolled_back",
            Status::Shadow => "shadow",
            Status::ShadowEstimated => "shadow_estimated",
        }
    }

    /// True while the directive holds its knob: from proposal until a verdict, refusal,
    /// rejection or expiry. A shadow directive holds its knob for other shadow decisions
    /// only (see `State::knob_holder`).
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            Status::Proposed
                | Status::PendingApproval
                | Status::Approved
                | Status::Published
                | Status::Applied
                | Status::Verifying
                | Status::Shadow
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The factors behind a decision's confidence (see `docs/CONFIDENCE.md`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfidenceFactors {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// evidence × track_record × coverage.
    pub confidence: f64,
    /// Fraction of domains with data for the condition.
    pub coverage: f64,
    /// Posterior probability that the condition truly holds.
    pub evidence: f64,
    /// Posterior mean of the policy's verified success rate.
    pub track_record: f64,
}

/// A directive as decided by the strategy engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Directive {
    pub id: String,
    #[serde(rename = "type")]
    pub directive_type: DirectiveType,
    pub target_domain: String,
    pub target_subsystem: String,
    pub knob: String,
    /// The action's name for humans, e.g. `increase_playbook_confidence_threshold`.
    pub action_name: String,
    pub action: KnobAction,
    /// The KPI it is meant to improve.
    pub target_kpi: String,
    pub justification: String,
    pub expected_impact: String,
    /// Declared side effects: KPI → tolerated degradation (absolute for rates and scores,
    /// relative for durations) before a guardrail fails.
    pub side_effects: BTreeMap<String, f64>,
    /// The least improvement of the target worth keeping (absolute for rates and scores,
    /// relative for durations); verification does not credit less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_effect: Option<f64>,
    pub impact: ImpactLevel,
    /// `None` for rollbacks and manual directives.
    pub policy_id: Option<String>,
    pub snapshot_id: String,
    pub factors: ConfidenceFactors,
    pub rollback_of: Option<String>,
    pub issued_cycle: u64,
    pub issued_at: Timestamp,
    /// A would-have decision of a policy (or supervisor) in shadow mode: recorded, never
    /// published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// For `SCHEDULE_EXPERIMENT`: the slice and what a success is rolled out as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentPlan>,
    /// The experiment whose success this directive rolls out to the whole domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
}

/// A holdout experiment: the spine applies the directive's change to a hash-chosen `fraction`
/// of the domain's incidents (the treatment arm) and keeps the rest as they are (the control
/// arm); verification compares the arms over the same cycles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentPlan {
    pub fraction: f64,
    /// The directive type that rolls the change out to the whole domain on success.
    pub promote_as: DirectiveType,
}

impl Directive {
    /// The knob's key across domains: `domain/knob`.
    pub fn knob_key(&self) -> String {
        format!("{}/{}", self.target_domain, self.knob)
    }

    /// The message published to the spine.
    pub fn message(&self) -> DirectiveMessage {
        let (action, parameters) = match &self.action {
            KnobAction::Adjust { adjustment } => {
                ("adjust", serde_json::json!({ "adjustment": adjustment }))
            }
            KnobAction::Set { value } => ("set", serde_json::json!({ "value": value })),
        };
        let mut parameters = parameters;
        if let Some(e) = &self.experiment {
            parameters["fraction"] = serde_json::json!(e.fraction);
        }
        DirectiveMessage {
            directive_id: self.id.clone(),
            directive_type: self.directive_type.as_str().to_string(),
            target_domain: self.target_domain.clone(),
            target_subsystem: self.target_subsystem.clone(),
            knob: self.knob.clone(),
            action: action.to_string(),
            parameters,
            target_kpi: self.target_kpi.clone(),
            rollback_of: self.rollback_of.clone(),
            justification: self.justification.clone(),
        }
    }
}
