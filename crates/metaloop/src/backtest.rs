//! Backtests: a recorded ledger's cycles replayed through a candidate policy set.
//!
//! The candidate supervisor closes each cycle on the recorded windows, health graph and
//! regime changes (`snapshot.built`), and gets the recorded answers of the spine and of the
//! approvers (`directive.applied`, `.refused`, `.approved`, `.rejected`) for every directive
//! it decided the same way (same cycle, type, domain and knob). A directive the recording
//! never saw has no recorded answer: the backtest assumes it approved and applied at once, so
//! that what it holds (its knob, the policy's cooldown) shapes the later decisions; its
//! verdict is computed on data it did not change, so the report calls it hypothetical.
//! With the recorded policies, the replay decides what the recording decided.

use metaloop_core::config::SupervisorConfig;
use metaloop_core::directive::{Directive, KnobAction};
use metaloop_core::policy::MetaPolicy;
use metaloop_core::protocol::{
    DirectiveApplied, DirectiveMessage, DirectiveRefused, EventData, SpineEvent,
};
use metaloop_core::record::RecordBody;
use metaloop_core::supervisor::{Effect, Supervisor};
use metaloop_core::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// A decision, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub cycle: u64,
    pub id: String,
    #[serde(rename = "type")]
    pub directive_type: String,
    pub domain: String,
    pub knob: String,
    /// The value it sets or the adjustment it adds.
    pub value: serde_json::Value,
    pub policy: Option<String>,
    pub shadow: bool,
}

impl Decision {
    fn of(d: &Directive) -> Self {
        Decision {
            cycle: d.issued_cycle,
            id: d.id.clone(),
            directive_type: d.directive_type.as_str().into(),
            domain: d.target_domain.clone(),
            knob: d.knob.clone(),
            value: match &d.action {
                KnobAction::Adjust { adjustment } => serde_json::json!(adjustment),
                KnobAction::Set { value } => value.clone(),
            },
            policy: d.policy_id.clone(),
            shadow: d.shadow,
        }
    }

    /// What makes two decisions the same decision.
    fn key(&self) -> (u64, String, String, String) {
        (
            self.cycle,
            self.directive_type.clone(),
            self.domain.clone(),
            self.knob.clone(),
        )
    }

    fn same_as(&self, other: &Decision) -> bool {
        self.key() == other.key()
            && self.shadow == other.shadow
            && match (self.value.as_f64(), other.value.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                _ => self.value == other.value,
            }
    }

    /// One line for humans.
    pub fn line(&self) -> String {
        format!(
            "{} {} in {} ({}{}){}",
            self.directive_type,
            self.knob,
            self.domain,
            self.value,
            self.policy
                .as_ref()
                .map(|p| format!(", policy {p}"))
                .unwrap_or_default(),
            if self.shadow { " [shadow]" } else { "" }
        )
    }
}

/// One cycle where something was decided, by either side.
#[derive(Debug, Clone, Serialize)]
pub struct CycleDiff {
    pub cycle: u64,
    /// Decided by both.
    pub same: Vec<Decision>,
    /// Decided in the recording only.
    pub recorded_only: Vec<Decision>,
    /// Decided by the candidate only.
    pub candidate_only: Vec<Decision>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cycles: u64,
    pub recorded: usize,
    pub candidate: usize,
    pub same: usize,
    /// The first cycle where the two differ.
    pub first_difference: Option<u64>,
    /// Candidate directives the recording had no answer for (assumed approved and applied).
    pub hypothetical: Vec<String>,
    /// Verdicts the candidate reached, by directive id (hypothetical ones included).
    pub candidate_verdicts: BTreeMap<String, String>,
    pub diff: Vec<CycleDiff>,
}

impl Report {
    /// True when the candidate decided exactly what was recorded.
    pub fn identical(&self) -> bool {
        self.first_difference.is_none()
    }
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("the ledger has no supervisor.started record: nothing to replay")]
    NotStarted,
    #[error("record {seq} ({action}) cannot be read: {reason}")]
    Record {
        seq: u64,
        action: String,
        reason: String,
    },
    #[error("the candidate configuration is invalid: {0}")]
    Config(String),
}

/// A ledger record, decoded.
pub struct Recorded {
    pub seq: u64,
    pub time: Timestamp,
    pub actor: String,
    pub body: RecordBody,
}

/// Decodes ledger records: the supervisor's own. Records of other writers (a demo's
/// `demo.started`, kinds a newer metaloop added) carry no decision input and are skipped; a
/// supervisor record that does not decode is an error.
pub fn decode(records: &[metaloop_ledger::Record]) -> Result<Vec<Recorded>, BacktestError> {
    let mut out = Vec::new();
    for r in records {
        match RecordBody::from_entry(&r.action, &r.payload) {
            Ok(body) => out.push(Recorded {
                seq: r.seq,
                time: Timestamp(r.time_ms),
                actor: r.actor.clone(),
                body,
            }),
            Err(e) if e.source.to_string().starts_with("unknown variant") => continue,
            Err(e) => {
                return Err(BacktestError::Record {
                    seq: r.seq,
                    action: r.action.clone(),
                    reason: e.source.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// The configuration the recording ran under, from its first `supervisor.started` record,
/// over `base` (which supplies what the record does not carry: alert settings, the snapshot
/// builder, and the verification settings of ledgers written before they were recorded).
pub fn recorded_config(
    records: &[Recorded],
    base: &SupervisorConfig,
) -> Result<SupervisorConfig, BacktestError> {
    let Some((
        RecordBody::Started {
            environment,
            cycle_seconds,
            goals,
            policies,
            approval,
            verification,
            shadow,
            id_seed,
            ..
        },
        _,
    )) = records.iter().find_map(|r| match &r.body {
        b @ RecordBody::Started { .. } => Some((b, r.time)),
        _ => None,
    })
    else {
        return Err(BacktestError::NotStarted);
    };
    Ok(SupervisorConfig {
        environment: environment.clone(),
        cycle_seconds: *cycle_seconds,
        goals: goals.clone(),
        policies: policies.clone(),
        approval: approval.clone(),
        verification: verification
            .clone()
            .unwrap_or_else(|| base.verification.clone()),
        shadow: *shadow,
        id_seed: id_seed.unwrap_or(base.id_seed),
        ..base.clone()
    })
}

/// Replays `records` through `config` with `candidate` policies (`None`: the recorded ones,
/// with the policy changes recorded at run time).
pub fn run(
    records: &[Recorded],
    config: &SupervisorConfig,
    candidate: Option<&[MetaPolicy]>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, BacktestError> {
    let mut cfg = config.clone();
    if let Some(p) = candidate {
        cfg.policies = p.to_vec();
    }
    let start = records
        .iter()
        .find_map(|r| match &r.body {
            RecordBody::Started { start, .. } => Some(*start),
            _ => None,
        })
        .ok_or(BacktestError::NotStarted)?;
    let total_cycles = records
        .iter()
        .filter(|r| matches!(r.body, RecordBody::Snapshot { .. }))
        .count() as u64;
    let mut sup = Supervisor::new(cfg, start).map_err(BacktestError::Config)?;
    // recorded decisions, by key; recorded id → candidate id
    let mut recorded: Vec<Decision> = Vec::new();
    let mut recorded_by_key: BTreeMap<(u64, String, String, String), String> = BTreeMap::new();
    for r in records {
        if let RecordBody::Proposed { directive, .. } = &r.body {
            let d = Decision::of(directive);
            recorded_by_key.insert(d.key(), d.id.clone());
            recorded.push(d);
        }
    }
    let knob_of: BTreeMap<String, String> = recorded
        .iter()
        .map(|d| (d.id.clone(), format!("{}/{}", d.domain, d.knob)))
        .collect();
    // each knob's value as the recording's acks last reported it
    let mut knob_values: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut to_candidate: BTreeMap<String, String> = BTreeMap::new();
    let mut decided: Vec<Decision> = Vec::new();
    let mut hypothetical: Vec<String> = Vec::new();
    let mut cycles = 0u64;
    for r in records {
        match &r.body {
            RecordBody::Snapshot {
                windows,
                health,
                regime_changes,
                ..
            } => {
                sup.close_recorded_cycle(windows, health, regime_changes);
                cycles += 1;
                progress(cycles, total_cycles);
            }
            RecordBody::Applied {
                directive_id,
                previous,
                current,
                at,
            } => {
                if let Some(key) = knob_of.get(directive_id) {
                    knob_values.insert(key.clone(), current.clone());
                }
                if let Some(c) = to_candidate.get(directive_id)
                    && let Some(ds) = sup.state().directives.get(c)
                {
                    let ack = SpineEvent {
                        id: format!("backtest-ack-{c}"),
                        source: r.actor.clone(),
                        time: *at,
                        data: EventData::DirectiveApplied(DirectiveApplied {
                            directive_id: c.clone(),
                            domain: ds.directive.target_domain.clone(),
                            knob: ds.directive.knob.clone(),
                            previous: previous.clone(),
                            current: current.clone(),
                        }),
                    };
                    // an ack the candidate's state does not expect is simply not applicable
                    let _ = sup.ingest(&ack);
                }
            }
            RecordBody::Refused {
                directive_id,
                reason,
            } => {
                if let Some(c) = to_candidate.get(directive_id)
                    && let Some(ds) = sup.state().directives.get(c)
                {
                    let ack = SpineEvent {
                        id: format!("backtest-refusal-{c}"),
                        source: r.actor.clone(),
                        time: r.time,
                        data: EventData::DirectiveRefused(DirectiveRefused {
                            directive_id: c.clone(),
                            domain: ds.directive.target_domain.clone(),
                            reason: reason.clone(),
                        }),
                    };
                    let _ = sup.ingest(&ack);
                }
            }
            RecordBody::Approved {
                directive_id,
                approver,
                note,
            } => {
                if let Some(c) = to_candidate.get(directive_id) {
                    let _ = sup.approve(c, approver, note, r.time);
                }
            }
            RecordBody::Rejected {
                directive_id,
                approver,
                note,
            } => {
                if let Some(c) = to_candidate.get(directive_id) {
                    let _ = sup.reject(c, approver, note, r.time);
                }
            }
            RecordBody::PolicyRegistered { policy, .. } if candidate_is_recorded(candidate) => {
                let _ = sup.register_policy(policy.clone(), &r.actor, r.time);
            }
            RecordBody::PolicyEnabled {
                policy_id, enabled, ..
            } if sup.state().policies.contains_key(policy_id) => {
                let _ = sup.set_policy_enabled(policy_id, *enabled, &r.actor, r.time);
            }
            _ => {}
        }
        drain(
            &mut sup,
            &recorded_by_key,
            &mut to_candidate,
            &mut decided,
            &mut hypothetical,
            &mut knob_values,
        );
    }
    let state = sup.state();
    let candidate_verdicts = state
        .order
        .iter()
        .filter_map(|id| {
            state.directives[id]
                .verdict
                .as_ref()
                .map(|v| (id.clone(), v.outcome.as_str().to_string()))
        })
        .collect();
    Ok(compare(
        cycles,
        recorded,
        decided,
        hypothetical,
        candidate_verdicts,
    ))
}

fn candidate_is_recorded(candidate: Option<&[MetaPolicy]>) -> bool {
    candidate.is_none()
}

/// Carries out the candidate's effects: new decisions are matched to recorded ones; what the
/// recording has no answer for is approved and applied at once.
fn drain(
    sup: &mut Supervisor,
    recorded_by_key: &BTreeMap<(u64, String, String, String), String>,
    to_candidate: &mut BTreeMap<String, String>,
    candidate: &mut Vec<Decision>,
    hypothetical: &mut Vec<String>,
    knob_values: &mut BTreeMap<String, serde_json::Value>,
) {
    loop {
        let mut publish: Vec<(DirectiveMessage, Timestamp)> = Vec::new();
        let mut approve: Vec<(String, u32, Timestamp)> = Vec::new();
        while let Some(effect) = sup.poll_effect() {
            match effect {
                Effect::Record(entry) => {
                    let Ok(body) = RecordBody::from_entry(&entry.action, &entry.payload) else {
                        continue;
                    };
                    match body {
                        RecordBody::Proposed {
                            directive,
                            requirement,
                            ..
                        } => {
                            let d = Decision::of(&directive);
                            // a rollback's key names the knob it restores, like its original's
                            match recorded_by_key.get(&d.key()) {
                                Some(rec) => {
                                    to_candidate.insert(rec.clone(), d.id.clone());
                                }
                                None => {
                                    hypothetical.push(d.id.clone());
                                    if requirement.approvals > 0 && !directive.shadow {
                                        approve.push((
                                            d.id.clone(),
                                            requirement.approvals,
                                            entry.time,
                                        ));
                                    }
                                }
                            }
                            candidate.push(d);
                        }
                        _ => continue,
                    }
                }
                Effect::Publish(m) => {
                    if hypothetical.contains(&m.directive_id) {
                        publish.push((m, sup.state().last_cycle_end.unwrap_or_default()));
                    }
                }
                Effect::Notify(_) => {}
            }
        }
        if publish.is_empty() && approve.is_empty() {
            return;
        }
        for (id, needed, at) in approve {
            for i in 1..=needed {
                let _ = sup.approve(&id, &format!("backtest-approver-{i}"), "assumed", at);
            }
        }
        for (m, at) in publish {
            let at = at.plus_millis(1);
            let key = format!("{}/{}", m.target_domain, m.knob);
            let previous = match (knob_values.get(&key), m.action.as_str()) {
                (Some(v), _) => v.clone(),
                (None, "adjust") => serde_json::Value::Null,
                (None, _) => match m.parameters.get("value") {
                    Some(serde_json::Value::Bool(b)) => serde_json::json!(!b),
                    _ => serde_json::Value::Null,
                },
            };
            let current = match m.action.as_str() {
                "adjust" => match previous.as_f64() {
                    Some(p) => {
                        serde_json::json!(p + m.parameters["adjustment"].as_f64().unwrap_or(0.0))
                    }
                    None => serde_json::Value::Null,
                },
                _ => m
                    .parameters
                    .get("value")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
            };
            knob_values.insert(key, current.clone());
            let ack = SpineEvent {
                id: format!("backtest-assumed-{}", m.directive_id),
                source: "urn:metaloop:backtest".into(),
                time: at,
                data: EventData::DirectiveApplied(DirectiveApplied {
                    directive_id: m.directive_id.clone(),
                    domain: m.target_domain.clone(),
                    knob: m.knob.clone(),
                    previous,
                    current,
                }),
            };
            let _ = sup.ingest(&ack);
        }
    }
}

fn compare(
    cycles: u64,
    recorded: Vec<Decision>,
    candidate: Vec<Decision>,
    hypothetical: Vec<String>,
    candidate_verdicts: BTreeMap<String, String>,
) -> Report {
    let mut by_cycle: BTreeMap<u64, (Vec<Decision>, Vec<Decision>)> = BTreeMap::new();
    for d in &recorded {
        by_cycle.entry(d.cycle).or_default().0.push(d.clone());
    }
    for d in &candidate {
        by_cycle.entry(d.cycle).or_default().1.push(d.clone());
    }
    let mut diff = Vec::new();
    let mut same_total = 0;
    let mut first_difference = None;
    for (cycle, (rec, mut cand)) in by_cycle {
        let mut same = Vec::new();
        let mut recorded_only = Vec::new();
        for r in rec {
            match cand.iter().position(|c| c.same_as(&r)) {
                Some(i) => {
                    cand.remove(i);
                    same.push(r);
                }
                None => recorded_only.push(r),
            }
        }
        same_total += same.len();
        if first_difference.is_none() && (!recorded_only.is_empty() || !cand.is_empty()) {
            first_difference = Some(cycle);
        }
        diff.push(CycleDiff {
            cycle,
            same,
            recorded_only,
            candidate_only: cand,
        });
    }
    Report {
        cycles,
        recorded: recorded.len(),
        candidate: candidate.len(),
        same: same_total,
        first_difference,
        hypothetical,
        candidate_verdicts,
        diff,
    }
}
