//! Alerts: conditions humans must hear about, each firing and then resolved.

use serde::{Deserialize, Serialize};

/// Alert thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Failed verdicts (no_effect, degraded) within `failure_window_cycles` that fire an alert.
    pub verification_failures: usize,
    pub failure_window_cycles: u64,
    /// Consecutive cycles a goal may be missed before alerting.
    pub goal_gap_cycles: u32,
    /// Consecutive cycles a systemic pattern may persist, after a directive addressed it.
    pub pattern_cycles: u32,
    /// Compliance score below which a domain alerts.
    pub compliance_threshold: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            verification_failures: 2,
            failure_window_cycles: 12,
            goal_gap_cycles: 5,
            pattern_cycles: 5,
            compliance_threshold: 90.0,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    VerificationFailures,
    GoalGapNotClosed,
    SystemicPatternPersisting,
    ComplianceBelowThreshold,
    DirectiveNoAck,
    /// A rollback the spine refused every time it was tried, or never acknowledged.
    RollbackFailed,
}

impl AlertKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::VerificationFailures => "verification_failures",
            AlertKind::GoalGapNotClosed => "goal_gap_not_closed",
            AlertKind::SystemicPatternPersisting => "systemic_pattern_persisting",
            AlertKind::ComplianceBelowThreshold => "compliance_below_threshold",
            AlertKind::DirectiveNoAck => "directive_no_ack",
            AlertKind::RollbackFailed => "rollback_failed",
        }
    }
}

/// Severity for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// A firing alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique while firing, e.g. `goal_gap_not_closed:autonomy_rate`.
    pub key: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub message: String,
    /// Cycle it started firing.
    pub since_cycle: u64,
}
