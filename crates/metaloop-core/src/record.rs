//! Ledger records: every decision the supervisor makes, in the order it makes them.
//!
//! The supervisor's state is a fold over these records ([`crate::supervisor::State::apply`]),
//! so replaying a ledger rebuilds it exactly.

use crate::alert::Alert;
use crate::directive::ConfidenceFactors;
use crate::directive::{Directive, ImpactLevel};
use crate::goal::Goal;
use crate::health::HealthGraph;
use crate::kpi::{CycleWindows, DomainWindow};
use crate::pipeline::{ApprovalMatrix, Requirement};
use crate::policy::{ConditionEval, MetaPolicy, TrackRecord};
use crate::protocol::DirectiveMessage;
use crate::snapshot::CrossDomainSnapshot;
use crate::time::Timestamp;
use crate::verify::{Verdict, VerifyConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A record as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: Timestamp,
    /// Who did it: the supervisor, an approver, or the spine's adapter.
    pub actor: String,
    /// What was done, e.g. `directive.published`.
    pub action: String,
    /// What it was done to: a directive, snapshot, policy or alert id.
    pub resource: String,
    pub payload: Payload,
}

/// A record's payload: the typed body the supervisor made it from, or a JSON value read
/// back from a ledger. Reads as a `serde_json::Value` (built from the body the first time it
/// is read, and shared by the payload's clones); serialises from the body directly when
/// nobody has read it, so that a cycle's records reach the ledger's canonical text without a
/// JSON value in between.
#[derive(Clone, Default)]
pub struct Payload {
    body: Option<std::sync::Arc<RecordBody>>,
    value: std::sync::Arc<std::sync::OnceLock<serde_json::Value>>,
}

impl Payload {
    /// The payload of a typed body.
    pub fn of(body: std::sync::Arc<RecordBody>) -> Payload {
        Payload {
            body: Some(body),
            value: Default::default(),
        }
    }

    /// The payload as a JSON value (`null` for a body without one).
    pub fn value(&self) -> &serde_json::Value {
        self.value.get_or_init(|| match &self.body {
            Some(b) => serde_json::to_value(PayloadOf(b)).expect("record bodies serialise"),
            None => serde_json::Value::Null,
        })
    }

    /// The payload as an owned JSON value (a copy when a clone of the payload still shares
    /// it).
    pub fn into_value(self) -> serde_json::Value {
        self.value();
        match std::sync::Arc::try_unwrap(self.value) {
            Ok(cell) => cell.into_inner().unwrap_or_default(),
            Err(shared) => shared.get().cloned().unwrap_or_default(),
        }
    }

    /// The typed body, when the payload was made from one.
    pub fn body(&self) -> Option<&RecordBody> {
        self.body.as_deref()
    }
}

impl std::ops::Deref for Payload {
    type Target = serde_json::Value;
    fn deref(&self) -> &serde_json::Value {
        self.value()
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Payload {
        Payload {
            body: None,
            value: std::sync::Arc::new(value.into()),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.value() == other.value()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value().fmt(f)
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.value.get(), &self.body) {
            (None, Some(b)) => PayloadOf(b).serialize(serializer),
            _ => self.value().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Payload::from)
    }
}

/// Serialises a body's payload alone: the content of its `payload` member, `null` for a body
/// without one.
struct PayloadOf<'a>(&'a RecordBody);

impl Serialize for PayloadOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(payload_only::Content(serializer))
    }
}

/// One policy's evaluation in a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvaluation {
    pub policy_id: String,
    /// Shared by the policies of a cycle that tested the same things (the record stores it
    /// once either way).
    pub condition: Arc<ConditionEval>,
    /// Consecutive cycles the condition has held, this one included.
    pub streak: u32,
    pub factors: ConfidenceFactors,
    /// Directives issued from it this cycle.
    pub directives: Vec<String>,
    /// Why it did not fire, when it did not.
    pub reason: String,
}

/// A cycle's evaluation of every enabled policy (the `strategy.evaluated` record).
///
/// Stored with each distinct condition evaluation, set of confidence factors and reason once,
/// in the tables `conditions`, `factors` and `reasons`, and each policy's evaluation naming
/// its entries by index: policies that test the same thing against the same snapshot, or
/// are held back for the same reason, would otherwise repeat them (at 1,000 policies they
/// were four fifths of the record). Records written before the tables, with the condition,
/// factors and reason inline in each evaluation (or the factors alone, before their table),
/// read the same. In memory, policies that tested the same things share their condition
/// evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StrategyEvaluation {
    pub cycle: u64,
    pub evaluations: Vec<PolicyEvaluation>,
    pub recommendations: Vec<String>,
}

/// A policy's evaluation as stored: its condition, confidence factors and reason by their
/// index in the record's tables.
#[derive(Serialize)]
struct StoredEvaluation<'a> {
    // in key order, as the canonical text writes them (then nothing is moved)
    condition: usize,
    directives: &'a [String],
    factors: usize,
    policy_id: &'a str,
    reason: usize,
    streak: u32,
}

/// A policy's evaluation as read: the condition, factors and reason by index, or inline
/// (records written before the tables; the factors table came after the other two).
#[derive(Deserialize)]
struct ReadEvaluation {
    policy_id: String,
    condition: Entered<ConditionEval>,
    streak: u32,
    factors: Entered<ConfidenceFactors>,
    directives: Vec<String>,
    reason: Entered<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Entered<T> {
    At(usize),
    Inline(T),
}

impl<T: Clone> Entered<T> {
    /// The entry itself, or the one at its index in `table` (named `name`, its entries
    /// `what`).
    fn resolve<E: serde::de::Error>(
        self,
        table: &[T],
        what: &str,
        name: &str,
        policy: &str,
    ) -> Result<T, E> {
        match self {
            Entered::Inline(t) => Ok(t),
            Entered::At(i) => table.get(i).cloned().ok_or_else(|| {
                E::custom(format!(
                    "evaluation of {policy}: {what} {i} is not in the record's {} {name}",
                    table.len()
                ))
            }),
        }
    }
}

#[derive(Deserialize)]
struct ReadStrategy {
    cycle: u64,
    #[serde(default)]
    conditions: Vec<ConditionEval>,
    evaluations: Vec<ReadEvaluation>,
    #[serde(default)]
    factors: Vec<ConfidenceFactors>,
    #[serde(default)]
    reasons: Vec<String>,
    recommendations: Vec<String>,
}

/// A hash of everything in a condition evaluation (its numbers by their bits), to find equal
/// ones.
fn fingerprint(c: &ConditionEval) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    c.holds.hash(&mut h);
    c.evidence.to_bits().hash(&mut h);
    c.coverage.to_bits().hash(&mut h);
    for (k, v) in &c.values {
        k.hash(&mut h);
        v.to_bits().hash(&mut h);
    }
    for f in &c.failing_playbooks {
        (&f.domain, &f.playbook, f.runs).hash(&mut h);
        (f.success_rate.to_bits(), f.evidence.to_bits()).hash(&mut h);
    }
    c.notes.hash(&mut h);
    h.finish()
}

impl Serialize for StrategyEvaluation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use foldhash::{HashMap, HashMapExt};
        use serde::ser::SerializeStruct;
        let mut conditions: Vec<&ConditionEval> = Vec::new();
        let mut by_print: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut reasons: Vec<&str> = Vec::new();
        let mut reason_at: HashMap<&str, usize> = HashMap::new();
        // factors by their numbers' bits (policies with the same evidence, coverage and track
        // record have the same ones)
        let mut factors: Vec<&ConfidenceFactors> = Vec::new();
        let mut factors_at: HashMap<[u64; 4], usize> = HashMap::new();
        let mut stored = Vec::with_capacity(self.evaluations.len());
        // an evaluation shared by several policies is looked up by its address after the
        // first (equal ones that are not shared, by their content)
        let mut by_address: HashMap<*const ConditionEval, usize> = HashMap::new();
        for e in &self.evaluations {
            let address = Arc::as_ptr(&e.condition);
            let condition = match by_address.get(&address) {
                Some(&i) => i,
                None => {
                    let same = by_print.entry(fingerprint(&e.condition)).or_default();
                    let i = match same.iter().find(|&&i| *conditions[i] == *e.condition) {
                        Some(&i) => i,
                        None => {
                            conditions.push(&e.condition);
                            same.push(conditions.len() - 1);
                            conditions.len() - 1
                        }
                    };
                    by_address.insert(address, i);
                    i
                }
            };
            let reason = *reason_at.entry(e.reason.as_str()).or_insert_with(|| {
                reasons.push(e.reason.as_str());
                reasons.len() - 1
            });
            let f = &e.factors;
            let bits = [f.confidence, f.coverage, f.evidence, f.track_record].map(f64::to_bits);
            let factor = *factors_at.entry(bits).or_insert_with(|| {
                factors.push(f);
                factors.len() - 1
            });
            stored.push(StoredEvaluation {
                policy_id: &e.policy_id,
                condition,
                streak: e.streak,
                factors: factor,
                directives: &e.directives,
                reason,
            });
        }
        let mut s = serializer.serialize_struct("StrategyEvaluation", 6)?;
        s.serialize_field("cycle", &self.cycle)?;
        s.serialize_field("conditions", &conditions)?;
        s.serialize_field("evaluations", &stored)?;
        s.serialize_field("factors", &factors)?;
        s.serialize_field("reasons", &reasons)?;
        s.serialize_field("recommendations", &self.recommendations)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for StrategyEvaluation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = ReadStrategy::deserialize(deserializer)?;
        // the policies naming one entry of the table share it, as they did when written
        let conditions: Vec<Arc<ConditionEval>> = r.conditions.into_iter().map(Arc::new).collect();
        let evaluations = r
            .evaluations
            .into_iter()
            .map(|e| {
                let condition = match e.condition {
                    Entered::Inline(c) => Arc::new(c),
                    Entered::At(i) => Entered::At(i).resolve(
                        &conditions,
                        "condition",
                        "conditions",
                        &e.policy_id,
                    )?,
                };
                Ok(PolicyEvaluation {
                    condition,
                    factors: e.factors.resolve(
                        &r.factors,
                        "factors",
                        "entries of factors",
                        &e.policy_id,
                    )?,
                    reason: e
                        .reason
                        .resolve(&r.reasons, "reason", "reasons", &e.policy_id)?,
                    policy_id: e.policy_id,
                    streak: e.streak,
                    directives: e.directives,
                })
            })
            .collect::<Result<_, D::Error>>()?;
        Ok(StrategyEvaluation {
            cycle: r.cycle,
            evaluations,
            recommendations: r.recommendations,
        })
    }
}

/// One policy's evaluation in a `strategy.evaluated` payload read as JSON, with its
/// condition, factors and reason found in the record's tables (or inline, in records written
/// before them); `null` for parts that are missing.
#[derive(Debug, Clone, Copy)]
pub struct EvaluationJson<'a> {
    pub entry: &'a serde_json::Value,
    pub condition: &'a serde_json::Value,
    pub factors: &'a serde_json::Value,
    pub reason: &'a serde_json::Value,
}

impl EvaluationJson<'_> {
    /// The evaluation with its condition, factors and reason in place.
    pub fn inline(&self) -> serde_json::Value {
        let mut e = self.entry.clone();
        if let Some(o) = e.as_object_mut() {
            o.insert("condition".into(), self.condition.clone());
            o.insert("factors".into(), self.factors.clone());
            o.insert("reason".into(), self.reason.clone());
        }
        e
    }
}

/// The evaluations of a `strategy.evaluated` payload read as JSON.
pub fn strategy_evaluations(
    payload: &serde_json::Value,
) -> impl Iterator<Item = EvaluationJson<'_>> {
    payload["evaluations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(move |e| EvaluationJson {
            entry: e,
            condition: entered(payload, e, "condition", "conditions"),
            factors: entered(payload, e, "factors", "factors"),
            reason: entered(payload, e, "reason", "reasons"),
        })
}

/// An evaluation's `field`: its entry in the payload's `table` when it is an index, else as
/// it is.
fn entered<'a>(
    payload: &'a serde_json::Value,
    evaluation: &'a serde_json::Value,
    field: &str,
    table: &str,
) -> &'a serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    match &evaluation[field] {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|i| payload[table].get(usize::try_from(i).ok()?))
            .unwrap_or(&NULL),
        other => other,
    }
}

/// The typed body of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "payload")]
pub enum RecordBody {
    /// The supervisor started (or restarted) with this configuration.
    #[serde(rename = "supervisor.started")]
    Started {
        environment: String,
        cycle_seconds: i64,
        goals: Vec<Goal>,
        policies: Vec<MetaPolicy>,
        approval: ApprovalMatrix,
        method: String,
        start: Timestamp,
        /// The verification settings (absent in ledgers written before they were recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verification: Option<VerifyConfig>,
        /// Shadow mode for the whole supervisor.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shadow: bool,
        /// The seed of the supervisor's reproducible ids (absent in older ledgers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id_seed: Option<u64>,
    },
    /// A cycle closed: its windows, the health graph and the snapshot built from them.
    #[serde(rename = "snapshot.built")]
    Snapshot {
        windows: CycleWindows,
        health: HealthGraph,
        /// Domains whose older data no longer describes them (health change), with when.
        regime_changes: BTreeMap<String, Timestamp>,
        /// The cycle's snapshot, shared with the cycle that built it (its merged windows are
        /// not part of the record).
        snapshot: Arc<CrossDomainSnapshot>,
    },
    /// Every enabled policy was evaluated.
    #[serde(rename = "strategy.evaluated")]
    StrategyEvaluated(StrategyEvaluation),
    /// A directive was decided, with the pre window its verification will compare against.
    #[serde(rename = "directive.proposed")]
    Proposed {
        directive: Directive,
        requirement: Requirement,
        effective_impact: ImpactLevel,
        pre_window: DomainWindow,
        pre_cycles: u32,
    },
    #[serde(rename = "directive.approval_requested")]
    ApprovalRequested {
        directive_id: String,
        approvals_needed: u32,
        review_note_required: bool,
        expires_at: Timestamp,
    },
    #[serde(rename = "directive.approved")]
    Approved {
        directive_id: String,
        approver: String,
        note: String,
    },
    #[serde(rename = "directive.rejected")]
    Rejected {
        directive_id: String,
        approver: String,
        note: String,
    },
    #[serde(rename = "directive.expired")]
    Expired { directive_id: String },
    /// Sent to the spine (or, for REQUEST_REVIEW, to humans).
    #[serde(rename = "directive.published")]
    Published {
        directive_id: String,
        message: DirectiveMessage,
    },
    /// The spine acknowledged, with the previous value of what it changed.
    #[serde(rename = "directive.applied")]
    Applied {
        directive_id: String,
        previous: serde_json::Value,
        current: serde_json::Value,
        at: Timestamp,
    },
    #[serde(rename = "directive.refused")]
    Refused {
        directive_id: String,
        reason: String,
    },
    /// No ack within the timeout: never assumed applied.
    #[serde(rename = "directive.ack_timeout")]
    AckTimedOut { directive_id: String },
    /// Verification decided.
    #[serde(rename = "verification.verdict")]
    VerdictReached {
        directive_id: String,
        verdict: Verdict,
    },
    /// A shadow directive was decided: it would have been published (or, with
    /// `approvals_needed` > 0, sent for approval) and is not.
    #[serde(rename = "directive.shadow")]
    ShadowRecorded {
        directive_id: String,
        approvals_needed: u32,
        review_note_required: bool,
    },
    /// The estimated verdict of a shadow directive: the verification run over the data that
    /// followed it, with nothing changed.
    #[serde(rename = "verification.shadow_verdict")]
    ShadowVerdict {
        directive_id: String,
        verdict: Verdict,
        /// What the estimate says, in words.
        reading: String,
    },
    /// A rollback restored the value before this directive.
    #[serde(rename = "directive.rolled_back")]
    RolledBack {
        directive_id: String,
        rollback_id: String,
        restored: serde_json::Value,
    },
    /// A policy's track record changed after a verdict.
    #[serde(rename = "learning.track_record")]
    TrackRecordUpdated {
        policy_id: String,
        directive_id: String,
        track_record: TrackRecord,
        score: f64,
    },
    #[serde(rename = "alert.fired")]
    AlertFired { alert: Alert },
    #[serde(rename = "alert.resolved")]
    AlertResolved { key: String, cycle: u64 },
    /// The human summary of a cycle.
    #[serde(rename = "cycle.summary")]
    Summary { cycle: u64, text: String },
    /// A policy was registered (or replaced) at run time.
    #[serde(rename = "policy.registered")]
    PolicyRegistered {
        policy: MetaPolicy,
        /// What changed from the version it replaced, field by field (empty for a new
        /// policy, and in ledgers written before changes were recorded).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
    },
    /// A policy was enabled or disabled at run time.
    #[serde(rename = "policy.enabled")]
    PolicyEnabled { policy_id: String, enabled: bool },
    /// An admin cleared a policy's track record, with why.
    #[serde(rename = "policy.track_record_reset")]
    TrackRecordReset {
        policy_id: String,
        note: String,
        /// The record it had.
        previous: TrackRecord,
    },
    /// The adapters' keys and domain bindings were reloaded while running (SIGHUP or the
    /// admin API): what changed. Operational; the decision state ignores it.
    #[serde(rename = "adapters.reloaded")]
    AdaptersReloaded {
        /// Who asked (`signal` or the admin's principal).
        by: String,
        /// `source/key-id` pairs added and removed.
        added: Vec<String>,
        removed: Vec<String>,
        /// Sources whose domain binding changed, as `source: [domains]` (`any` for none).
        rebound: Vec<String>,
    },
    /// A replica took the lead: its lease's holder and epoch. Operational; the decision
    /// state ignores it.
    #[serde(rename = "leader.elected")]
    LeaderElected {
        holder: String,
        epoch: u64,
        /// The holder it took over from, when there was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
    },
    /// The mesh deliveries the closing cycle folded in, as inclusive ranges of stream
    /// sequences: after a restart or a failover, a delivery already folded is acknowledged
    /// and skipped, never counted twice.
    #[serde(rename = "ingest.folded")]
    EventsFolded {
        cycle: u64,
        stream: String,
        ranges: Vec<[u64; 2]>,
    },
}

/// One field of a policy that a change replaced, by its path (`condition.goal_gap_threshold`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    /// `null` when the field was not set.
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// The fields that differ between two versions of a policy, by path, in order.
pub fn policy_changes(before: &MetaPolicy, after: &MetaPolicy) -> Vec<FieldChange> {
    fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&p, x, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(
        "",
        &serde_json::to_value(before).unwrap_or_default(),
        &mut a,
    );
    flatten("", &serde_json::to_value(after).unwrap_or_default(), &mut b);
    let fields: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    fields
        .into_iter()
        .filter_map(|f| {
            let (x, y) = (a.get(f), b.get(f));
            (x != y).then(|| FieldChange {
                field: f.clone(),
                before: x.cloned().unwrap_or(serde_json::Value::Null),
                after: y.cloned().unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

/// A record body that cannot be turned back from an entry.
#[derive(Debug, thiserror::Error)]
#[error("record {action}: {source}")]
pub struct DecodeError {
    pub action: String,
    #[source]
    pub source: serde_json::Error,
}

impl RecordBody {
    /// The `action` name.
    pub fn action(&self) -> &'static str {
        match self {
            RecordBody::Started { .. } => "supervisor.started",
            RecordBody::Snapshot { .. } => "snapshot.built",
            RecordBody::StrategyEvaluated(_) => "strategy.evaluated",
            RecordBody::Proposed { .. } => "directive.proposed",
            RecordBody::ApprovalRequested { .. } => "directive.approval_requested",
            RecordBody::Approved { .. } => "directive.approved",
            RecordBody::Rejected { .. } => "directive.rejected",
            RecordBody::Expired { .. } => "directive.expired",
            RecordBody::Published { .. } => "directive.published",
            RecordBody::Applied { .. } => "directive.applied",
            RecordBody::Refused { .. } => "directive.refused",
            RecordBody::AckTimedOut { .. } => "directive.ack_timeout",
            RecordBody::VerdictReached { .. } => "verification.verdict",
            RecordBody::ShadowRecorded { .. } => "directive.shadow",
            RecordBody::ShadowVerdict { .. } => "verification.shadow_verdict",
            RecordBody::RolledBack { .. } => "directive.rolled_back",
            RecordBody::TrackRecordUpdated { .. } => "learning.track_record",
            RecordBody::AlertFired { .. } => "alert.fired",
            RecordBody::AlertResolved { .. } => "alert.resolved",
            RecordBody::Summary { .. } => "cycle.summary",
            RecordBody::PolicyRegistered { .. } => "policy.registered",
            RecordBody::TrackRecordReset { .. } => "policy.track_record_reset",
            RecordBody::PolicyEnabled { .. } => "policy.enabled",
            RecordBody::AdaptersReloaded { .. } => "adapters.reloaded",
            RecordBody::LeaderElected { .. } => "leader.elected",
            RecordBody::EventsFolded { .. } => "ingest.folded",
        }
    }

    /// The resource the record is about.
    pub fn resource(&self) -> String {
        match self {
            RecordBody::Started { .. } => "supervisor".into(),
            RecordBody::Snapshot { snapshot, .. } => snapshot.id.clone(),
            RecordBody::StrategyEvaluated(StrategyEvaluation { cycle, .. })
            | RecordBody::Summary { cycle, .. } => {
                format!("cycle/{cycle}")
            }
            RecordBody::Proposed { directive, .. } => directive.id.clone(),
            RecordBody::ApprovalRequested { directive_id, .. }
            | RecordBody::Approved { directive_id, .. }
            | RecordBody::Rejected { directive_id, .. }
            | RecordBody::Expired { directive_id }
            | RecordBody::Published { directive_id, .. }
            | RecordBody::Applied { directive_id, .. }
            | RecordBody::Refused { directive_id, .. }
            | RecordBody::AckTimedOut { directive_id }
            | RecordBody::VerdictReached { directive_id, .. }
            | RecordBody::ShadowRecorded { directive_id, .. }
            | RecordBody::ShadowVerdict { directive_id, .. }
            | RecordBody::RolledBack { directive_id, .. } => directive_id.clone(),
            RecordBody::TrackRecordUpdated { policy_id, .. }
            | RecordBody::PolicyEnabled { policy_id, .. }
            | RecordBody::TrackRecordReset { policy_id, .. } => {
                format!("policy/{policy_id}")
            }
            RecordBody::PolicyRegistered { policy, .. } => format!("policy/{}", policy.id),
            RecordBody::AlertFired { alert } => format!("alert/{}", alert.key),
            RecordBody::AlertResolved { key, .. } => format!("alert/{key}"),
            RecordBody::AdaptersReloaded { .. } => "adapters".into(),
            RecordBody::LeaderElected { .. } => "leadership".into(),
            RecordBody::EventsFolded { cycle, .. } => format!("cycle/{cycle}"),
        }
    }

    /// The ledger entry for this body.
    pub fn to_entry(&self, time: Timestamp, actor: &str) -> Entry {
        std::sync::Arc::new(self.clone()).into_entry(time, actor)
    }
}

/// Entries of shared bodies.
pub trait IntoEntry {
    /// The ledger entry for this body, sharing it.
    fn into_entry(self, time: Timestamp, actor: &str) -> Entry;
}

impl IntoEntry for std::sync::Arc<RecordBody> {
    fn into_entry(self, time: Timestamp, actor: &str) -> Entry {
        Entry {
            time,
            actor: actor.to_string(),
            action: self.action().to_string(),
            resource: self.resource(),
            payload: Payload::of(self),
        }
    }
}

impl RecordBody {
    /// Decodes an entry's action and payload.
    pub fn from_entry(
        action: &str,
        payload: &serde_json::Value,
    ) -> Result<RecordBody, DecodeError> {
        let v = serde_json::json!({ "action": action, "payload": payload });
        serde_json::from_value(v).map_err(|source| DecodeError {
            action: action.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ledgers written before `supervisor.started` carried the verification settings and
    /// before `policy.registered` carried its changes still decode, and replay.
    #[test]
    fn records_of_older_ledgers_decode_and_replay() {
        let cfg = crate::config::SupervisorConfig::default();
        let started = serde_json::json!({
            "environment": "production",
            "cycle_seconds": 300,
            "goals": cfg.goals,
            "policies": cfg.policies,
            "approval": cfg.approval,
            "method": "metaloop",
            "start": 1_767_225_600_000i64,
        });
        let body = RecordBody::from_entry("supervisor.started", &started).unwrap();
        let RecordBody::Started {
            verification,
            shadow,
            id_seed,
            ..
        } = &body
        else {
            panic!("{body:?}");
        };
        assert_eq!((verification, shadow, id_seed), (&None, &false, &None));
        let mut p = cfg.policies[0].clone();
        p.cooldown_cycles += 1;
        let registered = serde_json::json!({ "policy": p });
        let edit = RecordBody::from_entry("policy.registered", &registered).unwrap();
        let t = crate::time::Timestamp::from_secs(1_767_225_600);
        let state = crate::supervisor::State::replay(&cfg, [(t, &body), (t, &edit)]);
        assert_eq!(
            state.policies[&p.id].policy.cooldown_cycles,
            p.cooldown_cycles
        );
        // and a new record round-trips with what it carries
        let entry = RecordBody::PolicyRegistered {
            policy: p.clone(),
            changes: policy_changes(&cfg.policies[0], &p),
        }
        .to_entry(t, "admin");
        assert_eq!(
            entry.payload["changes"][0],
            serde_json::json!({"field": "cooldown_cycles", "before": cfg.policies[0].cooldown_cycles, "after": p.cooldown_cycles})
        );
    }

    fn evaluation(id: &str, gap: f64, reason: &str) -> PolicyEvaluation {
        PolicyEvaluation {
            policy_id: id.into(),
            condition: Arc::new(ConditionEval {
                holds: gap > 0.05,
                evidence: 0.9,
                coverage: 1.0,
                values: [("goal_gap.success_rate".to_string(), gap)].into(),
                failing_playbooks: vec![],
                notes: vec![],
            }),
            streak: 2,
            factors: ConfidenceFactors {
                evidence: 0.9,
                track_record: 0.5,
                coverage: 1.0,
                confidence: 0.45,
            },
            directives: vec![],
            reason: reason.into(),
        }
    }

    /// A `strategy.evaluated` record stores each distinct condition and reason once, and
    /// Evaluations shared between policies (one allocation) are stored as equal unshared ones
    /// are: the same tables, the same indices, the same text; read back, the policies naming
    /// one entry share it.
    #[test]
    fn shared_condition_evaluations_are_stored_as_equal_ones() {
        let held = "confidence 0.45 below threshold 0.70";
        let shared = evaluation("a", 0.1, held).condition;
        let other = evaluation("x", 0.0, "condition does not hold").condition;
        let with = |id: &str, c: &Arc<ConditionEval>, reason: &str| PolicyEvaluation {
            policy_id: id.into(),
            condition: c.clone(),
            ..evaluation(id, 0.0, reason)
        };
        let sharing = StrategyEvaluation {
            cycle: 3,
            evaluations: vec![
                with("a", &shared, held),
                with("b", &other, "condition does not hold"),
                with("c", &shared, held),
                // equal to `shared`, not the same allocation
                evaluation("d", 0.1, held),
                with("e", &other, "condition does not hold"),
                with("f", &shared, held),
            ],
            recommendations: vec![],
        };
        // every evaluation its own copy
        let mut copies = sharing.clone();
        for e in &mut copies.evaluations {
            e.condition = Arc::new((*e.condition).clone());
        }
        let text = |s: &StrategyEvaluation| {
            let entry = RecordBody::StrategyEvaluated(s.clone())
                .to_entry(crate::time::Timestamp::from_secs(1), "metaloop");
            serde_json::to_string(&entry.payload).unwrap()
        };
        assert_eq!(text(&sharing), text(&copies));
        let stored: serde_json::Value = serde_json::from_str(&text(&sharing)).unwrap();
        assert_eq!(stored["conditions"].as_array().unwrap().len(), 2);
        let at: Vec<_> = stored["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["condition"].as_u64().unwrap())
            .collect();
        assert_eq!(at, [0, 1, 0, 0, 1, 0]);
        let RecordBody::StrategyEvaluated(back) =
            RecordBody::from_entry("strategy.evaluated", &stored).unwrap()
        else {
            panic!("not a strategy record");
        };
        assert_eq!(back, sharing);
        let e = &back.evaluations;
        assert!(Arc::ptr_eq(&e[0].condition, &e[3].condition));
        assert!(Arc::ptr_eq(&e[1].condition, &e[4].condition));
        assert!(!Arc::ptr_eq(&e[0].condition, &e[1].condition));
    }

    /// reads back (and as JSON, resolved) as it was; records with them inline still read.
    #[test]
    fn strategy_records_store_shared_conditions_and_reasons_once() {
        let held = "confidence 0.45 below threshold 0.70";
        let s = StrategyEvaluation {
            cycle: 7,
            evaluations: vec![
                evaluation("a", 0.1, held),
                evaluation("b", 0.1, held),
                evaluation("c", 0.0, "condition does not hold"),
                // the same values but the other gap's bits: not the same condition
                evaluation("d", -0.0, "condition does not hold"),
                PolicyEvaluation {
                    // the same condition, another track record
                    factors: ConfidenceFactors {
                        track_record: 0.6,
                        confidence: 0.54,
                        ..evaluation("e", 0.1, held).factors
                    },
                    ..evaluation("e", 0.1, held)
                },
            ],
            recommendations: vec![],
        };
        let entry = RecordBody::StrategyEvaluated(s.clone())
            .to_entry(crate::time::Timestamp::from_secs(1), "metaloop");
        let stored = entry.payload.value();
        assert_eq!(stored["conditions"].as_array().unwrap().len(), 3);
        assert_eq!(
            stored["reasons"],
            serde_json::json!([held, "condition does not hold"])
        );
        let at: Vec<_> = stored["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["condition"].as_u64().unwrap(),
                    e["factors"].as_u64().unwrap(),
                    e["reason"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(at, [(0, 0, 0), (0, 0, 0), (1, 0, 1), (2, 0, 1), (0, 1, 0)]);
        assert_eq!(
            stored["factors"],
            serde_json::json!([
                {"confidence": 0.45, "coverage": 1.0, "evidence": 0.9, "track_record": 0.5},
                {"confidence": 0.54, "coverage": 1.0, "evidence": 0.9, "track_record": 0.6},
            ])
        );
        // written straight from the body (as the ledger writes it), it says the same
        let fresh = RecordBody::StrategyEvaluated(s.clone())
            .to_entry(crate::time::Timestamp::from_secs(1), "metaloop");
        let text = serde_json::to_string(&fresh.payload).unwrap();
        assert_eq!(
            &serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            stored
        );
        // typed, it reads back whole
        let back = RecordBody::from_entry("strategy.evaluated", stored).unwrap();
        assert_eq!(back, RecordBody::StrategyEvaluated(s.clone()));
        // as JSON, each evaluation finds its condition and reason
        let resolved: Vec<_> = strategy_evaluations(stored).map(|e| e.inline()).collect();
        let inline: Vec<_> = s
            .evaluations
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(resolved, inline);
        // a record written before the tables, with them inline, reads the same both ways
        let old = serde_json::json!({"cycle": 7, "evaluations": inline, "recommendations": []});
        assert_eq!(
            RecordBody::from_entry("strategy.evaluated", &old).unwrap(),
            RecordBody::StrategyEvaluated(s.clone())
        );
        let resolved_old: Vec<_> = strategy_evaluations(&old).map(|e| e.inline()).collect();
        assert_eq!(resolved_old, resolved);
        // one written with the condition and reason tables but its factors inline, too
        let mut between = stored.clone();
        between.as_object_mut().unwrap().remove("factors");
        for (e, i) in between["evaluations"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .zip(&inline)
        {
            e["factors"] = i["factors"].clone();
        }
        assert_eq!(
            RecordBody::from_entry("strategy.evaluated", &between).unwrap(),
            RecordBody::StrategyEvaluated(s.clone())
        );
        let resolved_between: Vec<_> = strategy_evaluations(&between).map(|e| e.inline()).collect();
        assert_eq!(resolved_between, resolved);
        // an index outside its table is an error naming it
        let mut bad = stored.clone();
        bad["evaluations"][2]["factors"] = serde_json::json!(2);
        let err = RecordBody::from_entry("strategy.evaluated", &bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("evaluation of c: factors 2 is not in the record's 2 entries of factors"),
            "{err}"
        );
        let mut bad = stored.clone();
        bad["evaluations"][1]["condition"] = serde_json::json!(9);
        let err = RecordBody::from_entry("strategy.evaluated", &bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("evaluation of b: condition 9 is not in the record's 3 conditions"),
            "{err}"
        );
        assert!(
            strategy_evaluations(&bad)
                .nth(1)
                .unwrap()
                .condition
                .is_null()
        );
    }
}

/// The serializer adapter behind [`PayloadOf`]: a record body serialises (adjacently tagged)
/// as a struct of its `action` and, when it has one, its `payload`; this passes the payload
/// alone to the serializer it wraps and `null` when there is none.
mod payload_only {
    use serde::Serialize;
    use serde::ser::{self, Impossible};

    pub(super) struct Content<S>(pub S);

    pub(super) struct Fields<S: ser::Serializer> {
        inner: Option<S>,
        done: Option<S::Ok>,
    }

    fn not_a_body<E: ser::Error>() -> E {
        E::custom("a record body serialises as a struct of action and payload")
    }

    impl<S: ser::Serializer> ser::SerializeStruct for Fields<S> {
        type Ok = S::Ok;
        type Error = S::Error;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            key: &'static str,
            value: &T,
        ) -> Result<(), S::Error> {
            if key == "payload" {
                let inner = self.inner.take().ok_or_else(not_a_body)?;
                self.done = Some(value.serialize(inner)?);
            }
            Ok(())
        }
        fn end(self) -> Result<S::Ok, S::Error> {
            match (self.done, self.inner) {
                (Some(ok), _) => Ok(ok),
                (None, Some(inner)) => inner.serialize_unit(),
                (None, None) => Err(not_a_body()),
            }
        }
    }

    macro_rules! refuse {
        ($($name:ident($($arg:ty),*) -> $ret:ty;)*) => {
            $(fn $name(self, $(_: $arg),*) -> Result<$ret, S::Error> { Err(not_a_body()) })*
        };
    }

    impl<S: ser::Serializer> ser::Serializer for Content<S> {
        type Ok = S::Ok;
        type Error = S::Error;
        type SerializeSeq = Impossible<S::Ok, S::Error>;
        type SerializeTuple = Impossible<S::Ok, S::Error>;
        type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
        type SerializeTupleVariant = Impossible<S::Ok, S::Error>;
        type SerializeMap = Impossible<S::Ok, S::Error>;
        type SerializeStruct = Fields<S>;
        type SerializeStructVariant = Impossible<S::Ok, S::Error>;

        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<S>, S::Error> {
            Ok(Fields {
                inner: Some(self.0),
                done: None,
            })
        }

        refuse! {
            serialize_bool(bool) -> S::Ok;
            serialize_i8(i8) -> S::Ok;
            serialize_i16(i16) -> S::Ok;
            serialize_i32(i32) -> S::Ok;
            serialize_i64(i64) -> S::Ok;
            serialize_u8(u8) -> S::Ok;
            serialize_u16(u16) -> S::Ok;
            serialize_u32(u32) -> S::Ok;
            serialize_u64(u64) -> S::Ok;
            serialize_f32(f32) -> S::Ok;
            serialize_f64(f64) -> S::Ok;
            serialize_char(char) -> S::Ok;
            serialize_str(&str) -> S::Ok;
            serialize_bytes(&[u8]) -> S::Ok;
            serialize_none() -> S::Ok;
            serialize_unit() -> S::Ok;
            serialize_unit_struct(&'static str) -> S::Ok;
            serialize_unit_variant(&'static str, u32, &'static str) -> S::Ok;
            serialize_seq(Option<usize>) -> Self::SerializeSeq;
            serialize_tuple(usize) -> Self::SerializeTuple;
            serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
            serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
            serialize_map(Option<usize>) -> Self::SerializeMap;
            serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
        }

        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<S::Ok, S::Error> {
            Err(not_a_body())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<S::Ok, S::Error> {
            Err(not_a_body())
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<S::Ok, S::Error> {
            Err(not_a_body())
        }
    }
}
