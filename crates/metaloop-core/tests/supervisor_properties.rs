//! Invariants of the supervisor state machine under random inputs: no directive is published
//! twice, none without the approvals its impact needs, one in-flight directive per knob, and
//! the state rebuilt from the (serialised) records equals the live state.

use metaloop_core::directive::{DirectiveType, ImpactLevel, Status};
use metaloop_core::policy::{
    Condition, DirectiveTemplate, MetaPolicy, TargetSelector, default_policies,
};
use metaloop_core::protocol::{
    Decision, DirectiveApplied, DirectiveRefused, EventData, HealthChange, HealthState, Recovery,
    SpineEvent,
};
use metaloop_core::record::RecordBody;
use metaloop_core::supervisor::State;
use metaloop_core::time::Timestamp;
use metaloop_core::{Effect, Supervisor, SupervisorConfig};
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// The first path at which two JSON values differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(u, v, &p) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{p}: {u:?} vs {v:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: length {} vs {}", x.len(), y.len()));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]")))
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

/// Asserts two states are equal, naming the first difference.
fn assert_same_state(rebuilt: &State, live: &State) {
    if rebuilt != live {
        let a = serde_json::to_value(rebuilt).unwrap();
        let b = serde_json::to_value(live).unwrap();
        panic!(
            "state rebuilt from the records differs from the live state at {}",
            first_difference(&a, &b, "state").unwrap_or_else(|| "(only in non-JSON detail)".into())
        );
    }
}

const DOMAINS: [&str; 3] = ["infrastructure", "application", "security"];
const APPROVERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Op {
    /// Recoveries and decisions in a domain: (domain, count, success per mille, seconds).
    Events(usize, u16, u16, u16),
    /// A node changes state.
    Health(usize, bool),
    /// Close the cycle.
    Tick,
    /// Approve the n-th pending directive as approver a, with or without a note.
    Approve(usize, usize, bool),
    Reject(usize, usize),
    /// Ack the n-th published directive: applied or refused.
    Ack(usize, bool),
    /// An ack for a directive nobody issued.
    BogusAck,
    /// An admin edits the n-th policy (its gap threshold, or its mode).
    EditPolicy(usize, bool),
    /// An admin resets the n-th policy's track record (with or without the required note).
    ResetTrack(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 50..400u16, 700..990u16, 5..90u16).prop_map(|(d, n, s, t)| Op::Events(d, n, s, t)),
        1 => (0..3usize, any::<bool>()).prop_map(|(d, h)| Op::Health(d, h)),
        3 => Just(Op::Tick),
        2 => (0..4usize, 0..3usize, any::<bool>()).prop_map(|(i, a, n)| Op::Approve(i, a, n)),
        1 => (0..4usize, 0..3usize).prop_map(|(i, a)| Op::Reject(i, a)),
        2 => (0..4usize, any::<bool>()).prop_map(|(i, ok)| Op::Ack(i, ok)),
        1 => Just(Op::BogusAck),
        1 => (0..6usize, any::<bool>()).prop_map(|(i, m)| Op::EditPolicy(i, m)),
        1 => (0..6usize, any::<bool>()).prop_map(|(i, n)| Op::ResetTrack(i, n)),
    ]
}

/// Default policies plus one HIGH and one CRITICAL policy so every approval rule is exercised.
fn config(environment: &str) -> SupervisorConfig {
    let mut policies = default_policies();
    for p in &mut policies {
        p.for_cycles = 1;
        p.cooldown_cycles = 1;
    }
    let extra = |id: &str, impact, knob: &str, kpi: &str| MetaPolicy {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        condition: Condition {
            goal_gap_metric: Some(kpi.into()),
            goal_gap_threshold: Some(0.0),
            ..Default::default()
        },
        directive_template: DirectiveTemplate {
            directive_type: DirectiveType::AdjustConfidence,
            action: "test".into(),
            target: TargetSelector::WorstDomain,
            subsystem: "planner".into(),
            knob: knob.into(),
            parameters: json!({ "adjustment": 0.01 }),
            target_kpi: kpi.into(),
            impact_level: impact,
            side_effects: BTreeMap::new(),
            min_effect: None,
            expected_impact: String::new(),
            experiment_first: false,
            experiment_fraction: None,
        },
        confidence_threshold: 0.0,
        min_evidence: 0.0,
        approval_override: None,
        for_cycles: 1,
        cooldown_cycles: 0,
        priority: 5,
        enabled: true,
        mode: Default::default(),
    };
    policies.push(extra(
        "high_policy",
        ImpactLevel::High,
        "planner.exploration",
        "autonomy_rate",
    ));
    policies.push(extra(
        "critical_policy",
        ImpactLevel::Critical,
        "planner.safety_checks",
        "overall_success_rate",
    ));
    let mut cfg = SupervisorConfig {
        environment: environment.into(),
        policies,
        id_seed: 7,
        ..Default::default()
    };
    cfg.verification.min_samples = 50;
    cfg.verification.min_cycles = 1;
    cfg.verification.max_cycles = 3;
    cfg.verification.max_horizon_cycles = 3;
    cfg.verification.min_pre_cycles = 1;
    cfg.verification.min_baseline_samples = 50;
    cfg.approval.ttl_seconds = 900;
    cfg
}

/// The approvals the seed's matrix demands, written out independently of the code under test.
fn approvals_needed(impact: ImpactLevel, environment: &str) -> usize {
    match impact {
        ImpactLevel::Minimal | ImpactLevel::Low => 0,
        ImpactLevel::Moderate => usize::from(environment == "production"),
        ImpactLevel::High => 1,
        ImpactLevel::Critical => 2,
    }
}

struct Harness {
    sup: Supervisor,
    now: Timestamp,
    counter: u64,
    records: Vec<(Timestamp, RecordBody)>,
    published: BTreeSet<String>,
    environment: String,
}

impl Harness {
    fn event(&mut self, domain: &str, data: EventData) -> SpineEvent {
        self.counter += 1;
        SpineEvent {
            id: format!("e{}", self.counter),
            source: format!("urn:spine:{domain}"),
            time: self.now,
            data,
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.sup.poll_effect() {
            match e {
                Effect::Record(entry) => {
                    // through JSON, as the ledger stores it
                    let text = serde_json::to_string(&entry.payload).unwrap();
                    let payload: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let body =
                        RecordBody::from_entry(&entry.action, &payload).unwrap_or_else(|err| {
                            panic!("record {} does not decode: {err}", entry.action)
                        });
                    self.records.push((entry.time, body));
                }
                Effect::Publish(msg) => {
                    assert!(
                        self.published.insert(msg.directive_id.clone()),
                        "directive {} published twice",
                        msg.directive_id
                    );
                    let ds = &self.sup.state().directives[&msg.directive_id];
                    let needed = approvals_needed(ds.effective_impact, &self.environment);
                    let approvers: BTreeSet<&str> =
                        ds.approvals.iter().map(|a| a.approver.as_str()).collect();
                    assert!(
                        approvers.len() >= needed,
                        "{} directive {} published with {} distinct approvals, needs {needed}",
                        ds.effective_impact,
                        msg.directive_id,
                        approvers.len()
                    );
                    assert!(
                        ds.effective_impact >= ds.directive.impact,
                        "approval override may only raise the impact"
                    );
                    if ds.effective_impact == ImpactLevel::Critical {
                        assert!(
                            ds.approvals.iter().all(|a| !a.note.trim().is_empty()),
                            "critical approvals carry review notes"
                        );
                    }
                    assert!(!matches!(ds.status, Status::Rejected | Status::Expired));
                }
                Effect::Notify(_) => {}
            }
        }
        // one in-flight directive per knob, and one in-flight shadow one (a shadow decision
        // never blocks a live one: a policy switched between modes can hold both)
        let mut held = BTreeSet::new();
        for d in self
            .sup
            .state()
            .directives
            .values()
            .filter(|d| d.holds_knob())
        {
            assert!(
                held.insert((d.directive.knob_key(), d.directive.shadow)),
                "two in-flight directives on {}",
                d.directive.knob_key()
            );
        }
    }

    fn nth_with(&self, status: Status, n: usize) -> Option<String> {
        let ids: Vec<&String> = self
            .sup
            .state()
            .order
            .iter()
            .filter(|id| {
                let d = &self.sup.state().directives[*id];
                d.status == status && d.directive.directive_type != DirectiveType::RequestReview
            })
            .collect();
        (!ids.is_empty()).then(|| ids[n % ids.len()].clone())
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Events(d, n, per_mille, secs) => {
                let domain = DOMAINS[d];
                for i in 0..n {
                    let ok = (u32::from(i) * 7919 % 1000) < u32::from(per_mille);
                    let r = Recovery {
                        domain: domain.into(),
                        incident_id: format!("i{i}"),
                        playbook: if i % 3 == 0 {
                            "restart".into()
                        } else {
                            "scale".into()
                        },
                        duration_s: f64::from(secs) + f64::from(i % 17),
                        autonomous: i % 4 != 0,
                        human_override: i % 13 == 0,
                        experiment: None,
                    };
                    let data = if ok {
                        EventData::RecoverySucceeded(r)
                    } else {
                        EventData::RecoveryFailed(r)
                    };
                    let e = self.event(domain, data);
                    self.sup.ingest(&e).unwrap();
                    let dec = Decision {
                        domain: domain.into(),
                        decision_id: format!("d{i}"),
                        confidence: 0.8,
                        autonomous: i % 4 != 0,
                        approved_by_human: i % 4 == 0,
                        overridden: i % 13 == 0,
                        experiment: None,
                    };
                    let e = self.event(domain, EventData::DecisionMade(dec));
                    self.sup.ingest(&e).unwrap();
                }
            }
            Op::Health(d, healthy) => {
                let h = HealthChange {
                    domain: DOMAINS[d].into(),
                    node: "node-1".into(),
                    state: if healthy {
                        HealthState::Healthy
                    } else {
                        HealthState::Degraded
                    },
                    depends_on: if d == 0 {
                        vec![]
                    } else {
                        vec!["infrastructure/node-1".into()]
                    },
                };
                let e = self.event(DOMAINS[d], EventData::HealthChanged(h));
                self.sup.ingest(&e).unwrap();
            }
            Op::Tick => {
                self.now = self.sup.next_cycle_at();
                self.sup.tick(self.now);
            }
            Op::Approve(i, a, note) => {
                if let Some(id) = self.nth_with(Status::PendingApproval, i) {
                    let before = self.sup.state().clone();
                    let r = self.sup.approve(
                        &id,
                        APPROVERS[a],
                        if note { "reviewed" } else { "" },
                        self.now,
                    );
                    if r.is_err()
                        && !matches!(r, Err(metaloop_core::supervisor::InputError::Expired(_)))
                    {
                        assert_eq!(
                            &before,
                            self.sup.state(),
                            "a refused approval changes nothing"
                        );
                    }
                }
            }
            Op::Reject(i, a) => {
                if let Some(id) = self.nth_with(Status::PendingApproval, i) {
                    // A directive past its deadline expires instead of being rejected.
                    match self.sup.reject(&id, APPROVERS[a], "no", self.now) {
                        Ok(()) | Err(metaloop_core::supervisor::InputError::Expired(_)) => {}
                        Err(e) => panic!("rejecting {id}: {e}"),
                    }
                }
            }
            Op::Ack(i, ok) => {
                if let Some(id) = self.nth_with(Status::Published, i) {
                    let d = self.sup.state().directives[&id].directive.clone();
                    let data = if ok {
                        EventData::DirectiveApplied(DirectiveApplied {
                            directive_id: id.clone(),
                            domain: d.target_domain.clone(),
                            knob: d.knob.clone(),
                            previous: json!(0.7),
                            current: json!(0.75),
                        })
                    } else {
                        EventData::DirectiveRefused(DirectiveRefused {
                            directive_id: id.clone(),
                            domain: d.target_domain.clone(),
                            reason: "no".into(),
                        })
                    };
                    let e = self.event(&d.target_domain, data.clone());
                    self.sup.ingest(&e).unwrap();
                    // the same ack again is refused and changes nothing
                    let before = self.sup.state().clone();
                    let again = self.event(&d.target_domain, data);
                    assert!(self.sup.ingest(&again).is_err());
                    assert_eq!(&before, self.sup.state());
                }
            }
            Op::BogusAck => {
                let before = self.sup.state().clone();
                let data = EventData::DirectiveApplied(DirectiveApplied {
                    directive_id: "not-a-directive".into(),
                    domain: "application".into(),
                    knob: "x".into(),
                    previous: json!(1),
                    current: json!(2),
                });
                let e = self.event("application", data);
                assert!(self.sup.ingest(&e).is_err());
                assert_eq!(&before, self.sup.state(), "an unknown ack changes nothing");
            }
            Op::EditPolicy(i, mode) => {
                let ids: Vec<String> = self.sup.state().policies.keys().cloned().collect();
                let mut p = self.sup.state().policies[&ids[i % ids.len()]]
                    .policy
                    .clone();
                if mode {
                    p.mode = match p.mode {
                        metaloop_core::policy::PolicyMode::Live => {
                            metaloop_core::policy::PolicyMode::Shadow
                        }
                        metaloop_core::policy::PolicyMode::Shadow => {
                            metaloop_core::policy::PolicyMode::Live
                        }
                    };
                } else {
                    p.cooldown_cycles += 1;
                }
                self.sup.register_policy(p, "admin", self.now).unwrap();
            }
            Op::ResetTrack(i, note) => {
                let ids: Vec<String> = self.sup.state().policies.keys().cloned().collect();
                let id = &ids[i % ids.len()];
                let before = self.sup.state().clone();
                let r = self.sup.reset_track_record(
                    id,
                    "admin",
                    if note { "cause fixed" } else { " " },
                    self.now,
                );
                if note {
                    r.unwrap();
                    assert_eq!(self.sup.state().policies[id].track, Default::default());
                } else {
                    assert!(r.is_err());
                    assert_eq!(&before, self.sup.state(), "a refused reset changes nothing");
                }
            }
        }
        self.drain();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn supervisor_invariants_hold(production in any::<bool>(), ops in prop::collection::vec(op(), 1..120)) {
        let environment = if production { "production" } else { "staging" };
        let cfg = config(environment);
        let start = Timestamp::from_secs(1_767_225_600);
        let mut h = Harness {
            sup: Supervisor::new(cfg.clone(), start).unwrap(),
            now: start,
            counter: 0,
            records: vec![],
            published: BTreeSet::new(),
            environment: environment.into(),
        };
        h.drain();
        for op in &ops {
            h.apply(op);
        }
        let rebuilt = State::replay(&cfg, h.records.iter().map(|(t, r)| (*t, r)));
        assert_same_state(&rebuilt, h.sup.state());
        // every published directive was recorded as published before anything else happened to it
        for id in &h.published {
            let d = &h.sup.state().directives[id];
            prop_assert!(d.published_at.is_some());
        }
    }
}

#[test]
fn a_long_random_run_exercises_every_gate() {
    // a deterministic long run: make sure the property test's space reaches approvals,
    // publications, verdicts and rollbacks at all (a test that cannot fail proves nothing)
    let cfg = config("production");
    let start = Timestamp::from_secs(1_767_225_600);
    let mut h = Harness {
        sup: Supervisor::new(cfg.clone(), start).unwrap(),
        now: start,
        counter: 0,
        records: vec![],
        published: BTreeSet::new(),
        environment: "production".into(),
    };
    for (i, round) in (0..60usize).enumerate() {
        for d in 0..3 {
            h.apply(&Op::Events(
                d,
                300,
                if round % 7 < 3 { 850 } else { 930 },
                40,
            ));
        }
        h.apply(&Op::Tick);
        h.apply(&Op::Approve(i, i % 3, i.is_multiple_of(2)));
        h.apply(&Op::Approve(i, (i + 1) % 3, true));
        h.apply(&Op::Ack(i, !i.is_multiple_of(5)));
    }
    let s = h.sup.state();
    let seen: BTreeSet<Status> = s
        .directives
        .values()
        .flat_map(|d| d.lifecycle.iter().map(|(st, _)| *st))
        .collect();
    for needed in [
        Status::PendingApproval,
        Status::Approved,
        Status::Published,
        Status::Verifying,
        Status::Refused,
    ] {
        assert!(seen.contains(&needed), "never reached {needed}: {seen:?}");
    }
    assert!(
        s.directives.values().any(|d| d.verdict.is_some()),
        "no verdict reached"
    );
    assert!(!h.published.is_empty());
    let rebuilt = State::replay(&cfg, h.records.iter().map(|(t, r)| (*t, r)));
    assert_same_state(&rebuilt, s);
}

#[test]
fn policy_changes_at_run_time_are_recorded_and_outlive_a_restart() {
    let cfg = SupervisorConfig::default();
    let start = Timestamp::from_secs(1_767_225_600);
    let mut sup = Supervisor::new(cfg.clone(), start).unwrap();
    sup.set_policy_enabled("improve_success_rate", false, "alice", start)
        .unwrap();
    assert_eq!(
        sup.set_policy_enabled("nope", true, "alice", start),
        Err(metaloop_core::supervisor::InputError::UnknownPolicy(
            "nope".into()
        ))
    );
    let mut custom = default_policies().remove(2);
    custom.id = "custom".into();
    custom.confidence_threshold = 0.9;
    sup.register_policy(custom.clone(), "bob", start).unwrap();
    let mut bad = custom.clone();
    bad.for_cycles = 0;
    assert!(sup.register_policy(bad, "bob", start).is_err());
    let mut records = Vec::new();
    let mut actors = Vec::new();
    while let Some(e) = sup.poll_effect() {
        if let Effect::Record(entry) = e {
            actors.push((entry.action.clone(), entry.actor.clone()));
            records.push((
                entry.time,
                RecordBody::from_entry(&entry.action, &entry.payload).unwrap(),
            ));
        }
    }
    assert!(actors.contains(&("policy.enabled".into(), "alice".into())));
    assert!(actors.contains(&("policy.registered".into(), "bob".into())));
    let restarted = Supervisor::restore(cfg, &records, start).unwrap();
    let s = restarted.state();
    assert!(
        !s.policies["improve_success_rate"].policy.enabled,
        "a disabled policy stays disabled"
    );
    assert_eq!(
        s.policies["custom"].policy, custom,
        "a registered policy survives"
    );
}

#[test]
fn a_decision_after_the_deadline_is_refused_and_the_directive_expires() {
    let cfg = config("production");
    let start = Timestamp::from_secs(1_767_225_600);
    let mut h = Harness {
        sup: Supervisor::new(cfg, start).unwrap(),
        now: start,
        counter: 0,
        records: vec![],
        published: BTreeSet::new(),
        environment: "production".into(),
    };
    let mut pending = None;
    for _ in 0..30 {
        for d in 0..3 {
            h.apply(&Op::Events(d, 300, 850, 40));
        }
        h.apply(&Op::Tick);
        pending = h.nth_with(Status::PendingApproval, 0);
        if pending.is_some() {
            break;
        }
    }
    let id = pending.expect("a directive awaiting approval");
    let deadline = h.sup.state().directives[&id]
        .expires_at
        .expect("approvals have a deadline");
    assert!(deadline > h.now);
    let err = h
        .sup
        .reject(&id, "alice", "too late", deadline)
        .unwrap_err();
    assert!(
        matches!(&err, metaloop_core::supervisor::InputError::Expired(e) if *e == id),
        "{err}"
    );
    assert_eq!(h.sup.state().directives[&id].status, Status::Expired);
    h.drain();
    assert!(
        h.records
            .iter()
            .all(|(_, r)| !matches!(r, RecordBody::Rejected { .. })),
        "a late rejection is not recorded"
    );
    let err = h
        .sup
        .approve(&id, "bob", "later still", deadline)
        .unwrap_err();
    assert!(
        matches!(
            err,
            metaloop_core::supervisor::InputError::WrongStatus {
                status: Status::Expired,
                ..
            }
        ),
        "{err}"
    );
}

/// One domain only: with the daily-cycle guard on (control domains) and no other domain to
/// compare with, no improvement can be credited, so a verification runs to its horizon (4
/// cycles). The domain reports 85 % success until the policy fires, then `post_per_mille`.
fn run_to_the_horizon(
    post_per_mille: u16,
    rollback_leaning_worse: bool,
) -> (Harness, String, SupervisorConfig) {
    let mut cfg = SupervisorConfig {
        environment: "staging".into(),
        policies: default_policies()
            .into_iter()
            .filter(|p| p.id == "improve_success_rate")
            .collect(),
        id_seed: 11,
        ..Default::default()
    };
    cfg.verification.max_horizon_cycles = 4;
    cfg.verification.min_baseline_samples = 100;
    cfg.rollback_inconclusive_leaning_worse = rollback_leaning_worse;
    let start = Timestamp::from_secs(1_767_225_600);
    let mut h = Harness {
        sup: Supervisor::new(cfg.clone(), start).unwrap(),
        now: start,
        counter: 0,
        records: vec![],
        published: BTreeSet::new(),
        environment: "staging".into(),
    };
    h.drain();
    let app = 1; // DOMAINS[1]
    let mut directive = None;
    for _ in 0..40 {
        let per_mille = if directive.is_some() {
            post_per_mille
        } else {
            850
        };
        h.apply(&Op::Events(app, 300, per_mille, 30));
        h.apply(&Op::Tick);
        if directive.is_none()
            && let Some(id) = h.nth_with(Status::Published, 0)
        {
            h.apply(&Op::Ack(0, true));
            directive = Some(id);
        }
    }
    let id = directive.expect("the policy fired on an 85 % success rate");
    (h, id, cfg)
}

/// The `REQUEST_REVIEW` issued for directive `id`.
fn review_for<'a>(s: &'a State, id: &str) -> &'a metaloop_core::supervisor::DirectiveState {
    s.directives
        .values()
        .find(|r| {
            r.directive.directive_type == DirectiveType::RequestReview
                && r.directive.knob == format!("review.{id}")
        })
        .expect("a REQUEST_REVIEW for the inconclusive directive")
}

/// The rollbacks issued for directive `id`.
fn rollbacks_of(s: &State, id: &str) -> usize {
    s.directives
        .values()
        .filter(|r| r.directive.rollback_of.as_deref() == Some(id))
        .count()
}

#[test]
fn an_undecided_verification_ends_inconclusive_asks_for_review_and_counts_in_the_track_record() {
    // success stays at 85 %: the estimate leans neither way, the change stays
    let (h, id, cfg) = run_to_the_horizon(850, true);
    let s = h.sup.state();
    let d = &s.directives[&id];
    let v = d.verdict.as_ref().expect("a verdict at the horizon");
    assert_eq!(
        v.outcome,
        metaloop_core::verify::Outcome::Inconclusive,
        "{}",
        v.reason
    );
    assert!(v.reason.contains("no control domain"), "{}", v.reason);
    assert_eq!(v.post_cycles, 4);
    assert_eq!(v.leans_worse(), None, "{:?}", v.target);
    let review = review_for(s, &id);
    assert_eq!(review.status, Status::Published);
    assert!(
        review
            .directive
            .justification
            .ends_with("keep or roll it back"),
        "{}",
        review.directive.justification
    );
    assert!(
        !h.published.contains(&review.directive.id),
        "reviews go to humans, not the spine"
    );
    assert_eq!(
        rollbacks_of(s, &id),
        0,
        "nothing leans worse: the change stays"
    );
    let track = s.policies["improve_success_rate"].track;
    assert_eq!(
        (track.verified, track.failed, track.inconclusive),
        (0, 0, 1),
        "inconclusive is counted in the policy's track record"
    );
    let rebuilt = State::replay(&cfg, h.records.iter().map(|(t, r)| (*t, r)));
    assert_same_state(&rebuilt, h.sup.state());
}

#[test]
fn an_inconclusive_change_whose_estimate_leans_worse_is_rolled_back_and_reviewed() {
    // 85 % → 84 % on 300 incidents a cycle: too little to call harm in 4 cycles (z ≈ 0.5),
    // but the estimate is worse, so the change goes and humans are told why
    let (h, id, cfg) = run_to_the_horizon(840, true);
    let s = h.sup.state();
    let v = s.directives[&id].verdict.as_ref().expect("a verdict");
    assert_eq!(
        v.outcome,
        metaloop_core::verify::Outcome::Inconclusive,
        "{}",
        v.reason
    );
    assert!(v.target.effect < -0.005, "{:?}", v.target);
    assert_eq!(
        rollbacks_of(s, &id),
        1,
        "one rollback of the leaning change"
    );
    let rollback = s
        .directives
        .values()
        .find(|r| r.directive.rollback_of.as_deref() == Some(id.as_str()))
        .unwrap();
    assert!(
        h.published.contains(&rollback.directive.id),
        "the rollback goes to the spine"
    );
    let review = review_for(s, &id);
    assert!(
        review
            .directive
            .justification
            .contains("its estimates leaned worse (overall_success_rate estimated"),
        "{}",
        review.directive.justification
    );
    let track = s.policies["improve_success_rate"].track;
    assert_eq!(
        (track.verified, track.failed, track.inconclusive),
        (0, 0, 1)
    );
    let rebuilt = State::replay(&cfg, h.records.iter().map(|(t, r)| (*t, r)));
    assert_same_state(&rebuilt, h.sup.state());

    // the same run with the rule off: review only, the change stays
    let (h, id, _) = run_to_the_horizon(840, false);
    let s = h.sup.state();
    assert_eq!(rollbacks_of(s, &id), 0);
    assert!(
        review_for(s, &id)
            .directive
            .justification
            .ends_with("keep or roll it back")
    );
}
