//! The demo's JSON report (DESIGN.md §7). Field names are a contract: add, never rename.

use serde::Serialize;
use std::collections::BTreeMap;

/// One cycle.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle: u64,
    pub time: String,
    pub snapshot_id: String,
    pub global_kpis: BTreeMap<String, f64>,
    pub goal_gaps: BTreeMap<String, f64>,
    /// Ids of the directives issued this cycle.
    pub directives: Vec<String>,
    pub summary: String,
}

/// An approval as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalReport {
    pub approver: String,
    pub note: String,
    pub time: String,
}

/// The verdict as reported.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictReport {
    pub method: String,
    pub outcome: String,
    pub p_value: Option<f64>,
    pub effect: f64,
    /// Everything the verifier computed (test, sample sizes, statistics, guardrails).
    pub details: serde_json::Value,
}

/// The simulator's ground truth for a directive.
#[derive(Debug, Clone, Serialize)]
pub struct TruthReport {
    pub effect: f64,
    pub harmful: bool,
    pub details: serde_json::Value,
}

/// One directive with its whole lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct DirectiveReport {
    pub id: String,
    #[serde(rename = "type")]
    pub directive_type: String,
    pub policy_id: Option<String>,
    pub target_domain: String,
    pub knob: String,
    pub action: serde_json::Value,
    pub target_kpi: String,
    pub impact: String,
    pub confidence: f64,
    pub confidence_factors: serde_json::Value,
    pub justification: String,
    pub issued_cycle: u64,
    pub requires_approval: bool,
    pub approvals_needed: u32,
    pub approvals: Vec<ApprovalReport>,
    pub status: String,
    pub lifecycle: Vec<(String, String)>,
    pub previous: Option<serde_json::Value>,
    pub current: Option<serde_json::Value>,
    pub verdict: Option<VerdictReport>,
    pub rollback_of: Option<String>,
    pub rolled_back_by: Option<String>,
    pub truth: Option<TruthReport>,
    /// A would-have decision (shadow mode): recorded, never published; its verdict is an
    /// estimate from the data that followed.
    pub shadow: bool,
    /// For `SCHEDULE_EXPERIMENT`: the slice treated and what a success is rolled out as.
    pub experiment: Option<serde_json::Value>,
    /// The experiment this directive rolls out.
    pub promoted_from: Option<String>,
    /// Why the spine refused it.
    pub refused_reason: Option<String>,
}

/// Counts over the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub directives: usize,
    pub published: usize,
    pub verified: usize,
    pub no_effect: usize,
    pub degraded: usize,
    pub inconclusive: usize,
    pub rolled_back: usize,
    pub rollbacks: usize,
    pub expired: usize,
    pub rejected: usize,
    pub refused: usize,
    pub pending_approval: usize,
    /// Would-have (shadow) directives, never published.
    pub shadow: usize,
    pub events_ingested: u64,
    pub events_rejected: u64,
    pub alerts_fired: usize,
}

/// The ledger's head at the end.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerReport {
    pub records: u64,
    pub head: String,
    pub path: Option<String>,
    /// Signed checkpoints in the ledger.
    pub checkpoints: u64,
}

/// A policy's record.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyLearning {
    pub verified: u64,
    pub failed: u64,
    pub inconclusive: u64,
    /// The track-record factor of its confidence.
    pub score: f64,
}

/// A playbook's record over the run.
#[derive(Debug, Clone, Serialize)]
pub struct PlaybookLearning {
    pub runs: u64,
    pub success_rate: Option<f64>,
    pub autonomous_runs: u64,
    pub autonomous_success_rate: Option<f64>,
}

/// What the supervisor learned from outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Learning {
    pub policies: BTreeMap<String, PolicyLearning>,
    pub playbooks: BTreeMap<String, PlaybookLearning>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub method: String,
    pub environment: String,
    pub auto_approve_as: Option<String>,
    pub cycles: Vec<CycleReport>,
    pub directives: Vec<DirectiveReport>,
    pub alerts: Vec<serde_json::Value>,
    /// What the supervisor learned: policy track records and playbook success rates.
    pub learning: Learning,
    pub totals: Totals,
    pub ledger: LedgerReport,
}
