//! The spine protocol: the messages metaloop and a spine exchange (DESIGN.md §4).
//!
//! These are the payloads of the CloudEvents on the mesh. The simulator, adapters and the
//! core speak only these types.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One event from the spine, already authenticated by the mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpineEvent {
    /// Unique per `source`.
    pub id: String,
    /// The adapter that emitted it, e.g. `urn:spine:application`.
    pub source: String,
    /// When it happened.
    pub time: Timestamp,
    /// The typed payload; serialised as `{"type": "...", "data": {...}}`.
    #[serde(flatten)]
    pub data: EventData,
}

/// The payload of a spine event, tagged with its CloudEvents `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    /// A recovery action finished and resolved its incident.
    #[serde(rename = "recovery.succeeded")]
    RecoverySucceeded(Recovery),
    /// A recovery action finished without resolving its incident.
    #[serde(rename = "recovery.failed")]
    RecoveryFailed(Recovery),
    /// The planner decided how to handle an incident.
    #[serde(rename = "decision.made")]
    DecisionMade(Decision),
    /// A node of the health graph changed state.
    #[serde(rename = "health.changed")]
    HealthChanged(HealthChange),
    /// The trust core raised an exception.
    #[serde(rename = "trust.exception")]
    TrustException(TrustException),
    /// A compliance score was computed for a domain.
    #[serde(rename = "compliance.scored")]
    ComplianceScored(ComplianceScore),
    /// A custom KPI value.
    #[serde(rename = "kpi.reported")]
    KpiReported(KpiReport),
    /// The spine applied a directive.
    #[serde(rename = "meta.directive.applied")]
    DirectiveApplied(DirectiveApplied),
    /// The spine refused a directive.
    #[serde(rename = "meta.directive.refused")]
    DirectiveRefused(DirectiveRefused),
}

impl EventData {
    /// The CloudEvents `type` of this payload.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::RecoverySucceeded(_) => "recovery.succeeded",
            EventData::RecoveryFailed(_) => "recovery.failed",
            EventData::DecisionMade(_) => "decision.made",
            EventData::HealthChanged(_) => "health.changed",
            EventData::TrustException(_) => "trust.exception",
            EventData::ComplianceScored(_) => "compliance.scored",
            EventData::KpiReported(_) => "kpi.reported",
            EventData::DirectiveApplied(_) => "meta.directive.applied",
            EventData::DirectiveRefused(_) => "meta.directive.refused",
        }
    }

    /// The domain the event belongs to.
    pub fn domain(&self) -> &str {
        match self {
            EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => &r.domain,
            EventData::DecisionMade(d) => &d.domain,
            EventData::HealthChanged(h) => &h.domain,
            EventData::TrustException(t) => &t.domain,
            EventData::ComplianceScored(c) => &c.domain,
            EventData::KpiReported(k) => &k.domain,
            EventData::DirectiveApplied(a) => &a.domain,
            EventData::DirectiveRefused(r) => &r.domain,
        }
    }
}

/// `recovery.succeeded` / `recovery.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    pub domain: String,
    pub incident_id: String,
    /// The playbook that ran (autonomously or under a human).
    pub playbook: String,
    /// Incident onset to resolution (or to giving up), seconds: detection delay included.
    pub duration_s: f64,
    /// True when the planner ran it without a human.
    pub autonomous: bool,
    /// True when a human overrode the planner's choice.
    pub human_override: bool,
    /// The experiment arm the incident was in, when a `SCHEDULE_EXPERIMENT` is running in the
    /// domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArm>,
}

/// Which arm of a running experiment an incident was in: the directive id of the
/// `SCHEDULE_EXPERIMENT` and `control` (the knob's current value) or `treatment` (the
/// candidate value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentArm {
    pub id: String,
    pub arm: Arm,
}

/// An experiment arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    Control,
    Treatment,
}

/// `decision.made`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub domain: String,
    pub decision_id: String,
    /// The planner's estimated confidence, 0..1.
    pub confidence: f64,
    /// True when the planner acted without asking a human.
    pub autonomous: bool,
    pub approved_by_human: bool,
    /// True when a human overrode the decision.
    pub overridden: bool,
    /// The experiment arm of the incident (see [`Recovery::experiment`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentArm>,
}

/// Health state of a node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    #[default]
    Healthy,
    Degraded,
    Down,
}

/// `health.changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthChange {
    pub domain: String,
    pub node: String,
    pub state: HealthState,
    /// Nodes (as `domain/node`, or `node` within the same domain) this node depends on.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `trust.exception`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustException {
    pub domain: String,
    pub policy: String,
    pub severity: String,
}

/// `compliance.scored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceScore {
    pub domain: String,
    /// 0..100.
    pub score: f64,
}

/// `kpi.reported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiReport {
    pub domain: String,
    pub name: String,
    pub value: f64,
}

/// `meta.directive.applied`: the spine changed `knob` from `previous` to `current`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveApplied {
    pub directive_id: String,
    pub domain: String,
    pub knob: String,
    pub previous: serde_json::Value,
    pub current: serde_json::Value,
}

/// `meta.directive.refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveRefused {
    pub directive_id: String,
    pub domain: String,
    pub reason: String,
}

/// What metaloop asks the spine to do to one knob; the data of `meta.directive.<type>`.
///
/// Knobs are named per domain: `planner.confidence_threshold` (a number),
/// `playbook.<name>.enabled`, `probe.<name>.enabled` (booleans). Actions are generic:
/// `adjust` adds `parameters.adjustment` to a number, `set` sets `parameters.value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveMessage {
    /// uuid v7.
    pub directive_id: String,
    /// `ADJUST_THRESHOLD`, `ENABLE_PLAYBOOK`, … (see `DirectiveType`).
    pub directive_type: String,
    pub target_domain: String,
    pub target_subsystem: String,
    pub knob: String,
    /// `adjust` or `set`.
    pub action: String,
    pub parameters: serde_json::Value,
    /// The KPI this directive is meant to improve.
    pub target_kpi: String,
    /// For `ROLLBACK_CHANGE`: the directive being undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    pub justification: String,
}

impl DirectiveMessage {
    /// The CloudEvents type it is published as, e.g. `meta.directive.adjust_threshold`.
    pub fn event_type(&self) -> String {
        format!(
            "meta.directive.{}",
            self.directive_type.to_ascii_lowercase()
        )
    }
}

/// Knob name of the planner's autonomy threshold in a domain.
pub const KNOB_PLANNER_THRESHOLD: &str = "planner.confidence_threshold";

/// Knob name of the planner's review band (what `ADJUST_CONFIDENCE` moves): incidents whose
/// confidence is at most this far below the threshold run the planner's playbook once a human
/// approves it, rather than being handled by hand.
pub const KNOB_PLANNER_REVIEW_BAND: &str = "planner.review_band";

/// Knob name that enables or disables a playbook.
pub fn playbook_knob(playbook: &str) -> String {
    format!("playbook.{playbook}.enabled")
}

/// Knob name that enables or disables a synthetic probe.
pub fn probe_knob(probe: &str) -> String {
    format!("probe.{probe}.enabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serialises_with_type_and_data() {
        let e = SpineEvent {
            id: "e1".into(),
            source: "urn:spine:application".into(),
            time: Timestamp(0),
            data: EventData::ComplianceScored(ComplianceScore {
                domain: "application".into(),
                score: 97.0,
            }),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "compliance.scored");
        assert_eq!(v["data"]["score"], 97.0);
        let back: SpineEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}

/// Longest recovery accepted: a year, in seconds.
pub const MAX_DURATION_S: f64 = 31_536_000.0;
/// Largest magnitude of a reported KPI value.
pub const MAX_KPI_VALUE: f64 = 1e15;

/// A member of an event's `data` outside what a spine could mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    /// The member, e.g. `duration_s`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data.{}: {}", self.field, self.reason)
    }
}

/// The value ranges of spine event data (docs/PROTOCOL.md §2): non-empty `domain`,
/// `playbook`, `node` and KPI `name`; `duration_s` within 0..=[`MAX_DURATION_S`];
/// `confidence` within 0..=1; `score` within 0..=100; a KPI `value` finite and within
/// ±[`MAX_KPI_VALUE`].
pub fn validate_data(data: &EventData) -> Result<(), DataError> {
    let bad = |field: &'static str, reason: String| Err(DataError { field, reason });
    if data.domain().trim().is_empty() {
        return bad("domain", "must not be empty".into());
    }
    match data {
        EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => {
            if !r.duration_s.is_finite() || !(0.0..=MAX_DURATION_S).contains(&r.duration_s) {
                return bad(
                    "duration_s",
                    format!(
                        "must be a number of seconds within 0..={MAX_DURATION_S}, got {}",
                        r.duration_s
                    ),
                );
            }
            if r.playbook.trim().is_empty() {
                return bad("playbook", "must not be empty".into());
            }
        }
        EventData::DecisionMade(d) if !(0.0..=1.0).contains(&d.confidence) => {
            return bad(
                "confidence",
                format!("must be within 0..=1, got {}", d.confidence),
            );
        }
        EventData::ComplianceScored(c) if !(0.0..=100.0).contains(&c.score) => {
            return bad("score", format!("must be within 0..=100, got {}", c.score));
        }
        EventData::KpiReported(k) => {
            if !k.value.is_finite() || k.value.abs() > MAX_KPI_VALUE {
                return bad(
                    "value",
                    format!(
                        "must be a finite number within ±{MAX_KPI_VALUE:e}, got {}",
                        k.value
                    ),
                );
            }
            if k.name.trim().is_empty() {
                return bad("name", "must not be empty".into());
            }
        }
        EventData::HealthChanged(h) if h.node.trim().is_empty() => {
            return bad("node", "must not be empty".into());
        }
        _ => {}
    }
    Ok(())
}
