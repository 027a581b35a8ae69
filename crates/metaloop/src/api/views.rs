//! What the API's handlers take and return, as types: each derives its OpenAPI schema
//! (`utoipa::ToSchema`), so `/openapi.json` is generated from the handlers' own types.
//!
//! Deep structures the core owns (a directive's verdict, a snapshot's analysis, a policy) are
//! typed as JSON objects here; every member the API returns at the top level is declared.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `conflict`, `payload_too_large`, `unavailable`, …
    pub error: String,
    /// What was wrong, for humans.
    pub message: String,
    /// The request field at fault (400 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Cycles closed so far (as this replica knows them).
    pub cycle: u64,
    /// `leader` or `standby`.
    pub role: String,
    /// The leader as this replica last saw it.
    pub leader: LeaderInfo,
}

/// The leader: the lease's holder and epoch (epoch 0: a supervisor running alone).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaderInfo {
    pub holder: Option<String>,
    pub epoch: u64,
}

/// What `POST /v1/admin/reload` changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReloadView {
    /// `source/key-id` pairs added and removed, and ingest worker keys as `worker/<hex>`.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Sources whose domain binding changed, as `source: [domains]`.
    pub rebound: Vec<String>,
    /// Sources registered now.
    pub sources: Vec<String>,
}

/// `POST /v1/admin/clock`: move a driven clock (`[clock] mode = "driven"`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockAdvance {
    /// The time to move to (RFC 3339), no earlier than the supervisor's time now. Every
    /// cycle ending by then closes before the answer.
    pub to: String,
    /// Wait first until this many mesh deliveries are folded into the open cycle (the
    /// events the caller published for it), at most 60 s.
    #[serde(default)]
    pub deliveries: Option<u64>,
}

/// A driven clock after an advance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClockView {
    /// The supervisor's time now (RFC 3339).
    pub now: String,
    /// Cycles closed so far.
    pub cycle: u64,
    /// When the open cycle ends (RFC 3339).
    pub next_cycle_at: String,
}

/// One goal against its latest value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GoalStatus {
    pub kpi: String,
    pub target: f64,
    /// `higher_is_better` or `lower_is_better`.
    pub direction: String,
    /// Latest value (absent before the first cycle with data).
    pub value: Option<f64>,
    /// Signed gap, positive = worse than target.
    pub gap: Option<f64>,
    pub met: Option<bool>,
}

/// Directive counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DirectiveCounts {
    pub total: u64,
    pub pending_approval: u64,
    pub in_flight: u64,
    pub verified: u64,
    pub rolled_back: u64,
    /// Would-have (shadow) directives: recorded, never published.
    pub shadow: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub environment: String,
    /// Cycles closed so far.
    pub cycle: u64,
    /// End of the last closed cycle, ms since the Unix epoch.
    pub last_cycle_end: Option<i64>,
    /// When the next cycle closes, ms since the Unix epoch.
    pub next_cycle_at: i64,
    pub goals: Vec<GoalStatus>,
    pub directives: DirectiveCounts,
    /// The whole supervisor is in shadow mode: nothing is published.
    pub shadow_mode: bool,
    /// Alerts firing now.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<Value>,
    /// `leader` or `standby` (a standby's figures are the ledger as it last read it).
    pub role: String,
    /// The leader: the lease's holder and epoch (epoch 0: a supervisor running alone).
    pub leader: LeaderInfo,
}

/// A strategic goal.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GoalView {
    pub kpi: String,
    pub target: f64,
    /// `higher_is_better` or `lower_is_better`.
    pub direction: String,
    #[serde(default)]
    pub description: String,
}

/// A snapshot built at a cycle's close; KPIs are pooled over each domain's window of cycles.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SnapshotView {
    pub id: String,
    pub cycle: u64,
    /// ms since the Unix epoch.
    pub time: i64,
    /// Per domain: `kpis`, `samples`, `goal_gaps`, `drift`, `playbooks`, `health`,
    /// `window_cycles` (cycles pooled), …
    #[schema(value_type = Object)]
    pub domains: BTreeMap<String, Value>,
    pub global_kpis: BTreeMap<String, f64>,
    pub global_samples: BTreeMap<String, u64>,
    pub goal_gaps: BTreeMap<String, f64>,
    #[schema(value_type = Vec<Object>)]
    pub correlations: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub patterns: Vec<Value>,
    #[schema(value_type = Object)]
    pub analysis: Value,
    /// Fraction of known domains that reported data.
    pub coverage: f64,
}

/// A directive with its lifecycle (the verifier's windows left out).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DirectiveView {
    pub id: String,
    /// The directive as decided: type, target, knob, action, justification, confidence
    /// factors, …
    #[schema(value_type = Object)]
    pub directive: Value,
    /// Lifecycle status, e.g. `pending_approval`, `verifying`, `verified`, `rolled_back`.
    pub status: String,
    /// `[status, ms since the Unix epoch]` pairs, oldest first.
    #[schema(schema_with = lifecycle_schema)]
    pub lifecycle: Value,
    #[schema(value_type = Object)]
    pub requirement: Value,
    pub effective_impact: String,
    #[schema(value_type = Vec<Object>)]
    pub approvals: Value,
    #[schema(value_type = Option<Object>)]
    pub rejection: Value,
    pub expires_at: Option<i64>,
    pub published_at: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub applied: Value,
    pub refused_reason: Option<String>,
    pub ack_timed_out: bool,
    pub pre_cycles: u32,
    pub post_cycles: u32,
    #[schema(value_type = Option<Object>)]
    pub verdict: Value,
    pub rolled_back_by: Option<String>,
}

/// A meta-policy with its state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// The policy: id, name, condition, directive template, thresholds.
    #[schema(value_type = Object)]
    pub policy: Value,
    /// Consecutive cycles its condition has held.
    pub streak: u32,
    #[schema(value_type = Object)]
    pub track_record: Value,
    /// Posterior mean of its verified success rate.
    pub track_record_score: f64,
    pub changed_at_run_time: bool,
}

/// `POST /v1/policies`: the registered policy's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub registered: String,
}

/// A suggested change to a policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecommendationView {
    pub policy_id: String,
    /// `small_steps`, `keeps_failing` or `silent`.
    pub kind: String,
    pub text: String,
}

/// `POST /v1/policies/{id}/reset`: the track record the policy had.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrackRecordReset {
    pub policy: String,
    pub previous: TrackRecordView,
}

/// A policy's track record: its verdicts so far.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrackRecordView {
    pub verified: u64,
    /// `no_effect` and `degraded` verdicts.
    pub failed: u64,
    pub inconclusive: u64,
}

/// `POST /v1/policies/{id}/enable|disable`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyEnabled {
    pub policy: String,
    pub enabled: bool,
}

/// A ledger record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    pub seq: u64,
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub resource: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Lower-case hex.
    pub prev_hash: String,
    /// Lower-case hex.
    pub hash: String,
}

/// The body of an approval or a rejection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The approver's note (required for a CRITICAL directive's approval).
    #[serde(default)]
    pub note: Option<String>,
}

/// One result of `POST /v1/events` (docs/PROTOCOL.md §6.2).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventResult {
    /// `null` when it could not be read.
    pub id: Option<String>,
    pub source: Option<String>,
    /// `accepted`, `duplicate` or `rejected`.
    pub result: String,
    /// Absent when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `POST /v1/events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventResults {
    pub results: Vec<EventResult>,
}

/// `[["proposed", 1767225900000], …]`.
fn lifecycle_schema() -> utoipa::openapi::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "array",
        "items": { "type": "array", "items": { "type": ["string", "integer"] } }
    }))
    .expect("a valid schema")
}

/// Converts a JSON value the core produced into its view; the views declare every member.
pub fn view<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, super::ApiError> {
    serde_json::from_value(v)
        .map_err(|e| super::ApiError::Unavailable(format!("internal: response shape: {e}")))
}

/// A signed ledger checkpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// Records covered: 1..=seq.
    pub seq: u64,
    /// Hash of record `seq`, 64 hex digits.
    pub head: String,
    /// RFC 6962 Merkle root over the record hashes 1..=seq, 64 hex digits.
    pub merkle_root: String,
    /// When it was made, ms since the Unix epoch.
    pub time_ms: i64,
    /// First 16 hex characters of SHA-256 of the signing key's public key.
    pub key_id: String,
    /// Ed25519 signature, 128 hex digits.
    pub signature: String,
}
