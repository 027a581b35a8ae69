//! `metaloop policy test`: policies tested like code, after promtool's `test rules`. A test
//! file gives KPI series per domain and cycle, health changes and the policies under test;
//! the supervisor runs over the events those series stand for, and the test checks the
//! directives each named cycle issued and the verdicts they reached.

pub mod events;
pub mod junit;
pub mod series;
pub mod spec;

use metaloop_core::directive::{Directive, KnobAction, Status};
use metaloop_core::protocol::{
    DirectiveApplied, DirectiveMessage, DirectiveRefused, EventData, HealthChange, SpineEvent,
};
use metaloop_core::record::RecordBody;
use metaloop_core::supervisor::{DirectiveState, Effect, Supervisor};
use metaloop_core::time::Timestamp;
use spec::{ApprovalPath, ExpectDirective, LoadedFile, SpineMode, TestCase};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Where test time starts: 2026-01-01T00:00:00Z.
pub const TEST_START: Timestamp = Timestamp::from_secs(1_767_225_600);

/// A directive as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub cycle: u64,
    pub directive_type: String,
    pub domain: String,
    pub knob: String,
    pub impact: String,
    pub approval: ApprovalPath,
    pub policy: Option<String>,
    pub value: serde_json::Value,
    pub status: String,
    /// The verdict's outcome and the cycle it was reached in.
    pub verdict: Option<(String, u64)>,
}

impl Issued {
    fn line(&self) -> String {
        let mut s = format!(
            "{} {} in {} (impact {}, approval {}, value {}",
            self.directive_type,
            self.knob,
            self.domain,
            self.impact,
            self.approval.as_str(),
            self.value
        );
        if let Some(p) = &self.policy {
            s.push_str(&format!(", policy {p}"));
        }
        s.push(')');
        s
    }
}

fn expected_line(e: &ExpectDirective) -> String {
    let mut parts = Vec::new();
    let field = |name: &str, v: &Option<String>, parts: &mut Vec<String>| {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    };
    field("type", &e.directive_type, &mut parts);
    field("knob", &e.knob, &mut parts);
    field("domain", &e.domain, &mut parts);
    field("impact", &e.impact, &mut parts);
    if let Some(a) = e.approval {
        parts.push(format!("approval {}", a.as_str()));
    }
    if let Some(v) = &e.value {
        parts.push(format!("value {v}"));
    }
    field("policy", &e.policy, &mut parts);
    if parts.is_empty() {
        "any directive".into()
    } else {
        parts.join(", ")
    }
}

fn matches(e: &ExpectDirective, d: &Issued) -> bool {
    let eq = |want: &Option<String>, got: &str| want.as_ref().is_none_or(|w| w == got);
    eq(&e.directive_type, &d.directive_type)
        && eq(&e.domain, &d.domain)
        && eq(&e.knob, &d.knob)
        && eq(&e.impact, &d.impact)
        && e.approval.is_none_or(|a| a == d.approval)
        && e.policy
            .as_ref()
            .is_none_or(|p| d.policy.as_deref() == Some(p.as_str()))
        && e.value.as_ref().is_none_or(|v| values_equal(v, &d.value))
}

fn values_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}

/// True when every expected directive matches a distinct issued one and none is left over.
fn all_match(expected: &[ExpectDirective], got: &[&Issued]) -> bool {
    fn assign(expected: &[ExpectDirective], got: &[&Issued], used: &mut Vec<bool>) -> bool {
        let Some((first, rest)) = expected.split_first() else {
            return true;
        };
        for i in 0..got.len() {
            if !used[i] && matches(first, got[i]) {
                used[i] = true;
                if assign(rest, got, used) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    expected.len() == got.len() && assign(expected, got, &mut vec![false; got.len()])
}

/// How often each policy's condition held and fired, across tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyCoverage {
    pub evaluated: u64,
    pub held: u64,
    pub directives: u64,
    /// Tests in which it issued a directive.
    pub tests_fired: BTreeSet<String>,
}

/// One test's outcome.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    /// Readable differences between what was expected and what happened; empty on a pass.
    pub failures: Vec<String>,
    pub issued: Vec<Issued>,
    /// Why a policy whose condition held did not fire: (cycle, policy, reason), a line each
    /// time the reason changes.
    pub held_back: Vec<(u64, String, String)>,
    pub seconds: f64,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The spine of a test: applies, refuses or ignores directives, and remembers knob values.
struct TestSpine {
    mode: SpineMode,
    knobs: BTreeMap<String, serde_json::Value>,
}

impl TestSpine {
    fn answer(&mut self, m: &DirectiveMessage, at: Timestamp) -> Option<SpineEvent> {
        let data = match self.mode {
            SpineMode::Silent => return None,
            SpineMode::Refuse => EventData::DirectiveRefused(DirectiveRefused {
                directive_id: m.directive_id.clone(),
                domain: m.target_domain.clone(),
                reason: "refused by the policy test's spine".into(),
            }),
            SpineMode::Apply => {
                let key = format!("{}/{}", m.target_domain, m.knob);
                let previous = match self.knobs.get(&key) {
                    Some(v) => v.clone(),
                    None if m.action == "adjust" => {
                        if m.knob == metaloop_core::protocol::KNOB_PLANNER_THRESHOLD {
                            serde_json::json!(0.7)
                        } else {
                            serde_json::json!(0.0)
                        }
                    }
                    None => match m.parameters.get("value") {
                        Some(serde_json::Value::Bool(b)) => serde_json::json!(!b),
                        _ => serde_json::Value::Null,
                    },
                };
                let current = if m.action == "adjust" {
                    let add = m.parameters["adjustment"].as_f64().unwrap_or(0.0);
                    serde_json::json!(previous.as_f64().unwrap_or(0.0) + add)
                } else {
                    m.parameters
                        .get("value")
                        .cloned()
                        .unwrap_or(serde_json::Value::Null)
                };
                self.knobs.insert(key, current.clone());
                EventData::DirectiveApplied(DirectiveApplied {
                    directive_id: m.directive_id.clone(),
                    domain: m.target_domain.clone(),
                    knob: m.knob.clone(),
                    previous,
                    current,
                })
            }
        };
        Some(SpineEvent {
            id: format!("ack-{}", m.directive_id),
            source: format!("urn:policy-test:{}", m.target_domain),
            time: at,
            data,
        })
    }
}

fn issued(ds: &DirectiveState, cycle_ms: i64) -> Issued {
    let d: &Directive = &ds.directive;
    let approval = if d.shadow {
        ApprovalPath::Shadow
    } else if ds.requirement.approvals > 0 {
        ApprovalPath::Required
    } else {
        ApprovalPath::Auto
    };
    let verdict = ds.verdict.as_ref().map(|v| {
        let at = ds
            .lifecycle
            .iter()
            .find(|(s, _)| {
                matches!(
                    s,
                    Status::Verified
                        | Status::NoEffect
                        | Status::Degraded
                        | Status::Inconclusive
                        | Status::ShadowEstimated
                )
            })
            .map_or(0, |(_, t)| cycle_of(*t, cycle_ms));
        (v.outcome.as_str().to_string(), at)
    });
    Issued {
        cycle: d.issued_cycle,
        directive_type: d.directive_type.as_str().into(),
        domain: d.target_domain.clone(),
        knob: d.knob.clone(),
        impact: ds.effective_impact.as_str().into(),
        approval,
        policy: d.policy_id.clone(),
        value: match &d.action {
            KnobAction::Adjust { adjustment } => serde_json::json!(adjustment),
            KnobAction::Set { value } => value.clone(),
        },
        status: ds.status.as_str().into(),
        verdict,
    }
}

/// The cycle a time falls in (cycle `c` ends at `TEST_START + c` cycles).
fn cycle_of(t: Timestamp, cycle_ms: i64) -> u64 {
    let since = t.millis() - TEST_START.millis();
    (since.max(0) + cycle_ms - 1).div_euclid(cycle_ms) as u64
}

/// Runs one test.
pub fn run_test(
    file: &LoadedFile,
    test: &TestCase,
    coverage: &mut BTreeMap<String, PolicyCoverage>,
) -> Result<TestResult, String> {
    let started = Instant::now();
    let mut cfg = file.config.clone();
    cfg.id_seed = 1;
    let cycle_ms = cfg.cycle_seconds * 1000;
    let mut sup = Supervisor::new(cfg, TEST_START)?;
    let mut parsed: BTreeMap<&str, BTreeMap<&str, Vec<series::Point>>> = BTreeMap::new();
    for (domain, kpis) in &test.series {
        for (kpi, text) in kpis {
            let points = series::parse(text).map_err(|e| format!("{domain}.{kpi}: {e}"))?;
            parsed
                .entry(domain.as_str())
                .or_default()
                .insert(kpi.as_str(), points);
        }
    }
    let longest = parsed
        .values()
        .flat_map(|k| k.values())
        .map(|p| p.len() as u64)
        .max()
        .unwrap_or(0);
    let named = test
        .expect
        .iter()
        .map(|e| e.cycle)
        .chain(test.expect_verdicts.iter().filter_map(|v| v.cycle))
        .chain(test.health.iter().map(|h| h.cycle))
        .max()
        .unwrap_or(0);
    let cycles = test.cycles.unwrap_or(longest.max(named));
    let mut spine = TestSpine {
        mode: test.spine,
        knobs: test.knobs.clone(),
    };
    let mut held_back: Vec<(u64, String, String)> = Vec::new();
    for c in 1..=cycles {
        let start = TEST_START.plus_millis((c as i64 - 1) * cycle_ms);
        let end = start.plus_millis(cycle_ms);
        for (i, h) in test.health.iter().filter(|h| h.cycle == c).enumerate() {
            let e = SpineEvent {
                id: format!("{}-health-{c}-{i}", test.name),
                source: format!("urn:policy-test:{}", h.domain),
                time: start.plus_millis(1),
                data: EventData::HealthChanged(HealthChange {
                    domain: h.domain.clone(),
                    node: h.node.clone(),
                    state: h.state,
                    depends_on: h.depends_on.clone(),
                }),
            };
            sup.ingest(&e)
                .map_err(|e| format!("cycle {c}: health change: {e}"))?;
        }
        for (domain, kpis) in &parsed {
            let values: BTreeMap<&str, f64> = kpis
                .iter()
                .filter_map(|(k, p)| p.get(c as usize - 1).copied().flatten().map(|v| (*k, v)))
                .collect();
            if values.is_empty() {
                continue;
            }
            let builder = events::CycleEvents {
                test: &test.name,
                domain,
                cycle: c,
                start,
                cycle_ms,
                incidents: test.incidents,
            };
            for e in builder.build(&values) {
                sup.ingest(&e)
                    .map_err(|err| format!("cycle {c}: event {}: {err}", e.id))?;
            }
        }
        sup.tick(end);
        // publish → ack; approval requests → the simulated approver
        let mut at = end;
        loop {
            let mut acted = false;
            while let Some(effect) = sup.poll_effect() {
                match effect {
                    Effect::Publish(m) => {
                        at = at.plus_millis(1);
                        if let Some(ack) = spine.answer(&m, at) {
                            sup.ingest(&ack)
                                .map_err(|e| format!("cycle {c}: ack: {e}"))?;
                        }
                        acted = true;
                    }
                    Effect::Record(entry) => {
                        if let Ok(RecordBody::StrategyEvaluated(s)) =
                            RecordBody::from_entry(&entry.action, &entry.payload)
                        {
                            for ev in s.evaluations {
                                if ev.condition.holds
                                    && ev.directives.is_empty()
                                    && held_back
                                        .iter()
                                        .rev()
                                        .find(|(_, p, _)| *p == ev.policy_id)
                                        .is_none_or(|(_, _, r)| *r != ev.reason)
                                {
                                    held_back.push((c, ev.policy_id.clone(), ev.reason.clone()));
                                }
                                let cov = coverage.entry(ev.policy_id.clone()).or_default();
                                cov.evaluated += 1;
                                cov.held += u64::from(ev.condition.holds);
                                if !ev.directives.is_empty() {
                                    cov.directives += ev.directives.len() as u64;
                                    cov.tests_fired.insert(test.name.clone());
                                }
                            }
                        }
                    }
                    Effect::Notify(_) => {}
                }
            }
            if test.approve {
                let pending: Vec<(String, u32)> = sup
                    .pending_approvals()
                    .iter()
                    .map(|d| (d.directive.id.clone(), d.requirement.approvals.max(1)))
                    .collect();
                for (id, needed) in pending {
                    at = at.plus_millis(1);
                    for i in 1..=needed {
                        sup.approve(&id, &format!("approver-{i}"), "policy test", at)
                            .map_err(|e| format!("cycle {c}: approval: {e}"))?;
                    }
                    acted = true;
                }
            }
            if !acted {
                break;
            }
        }
    }
    let state = sup.state();
    let all: Vec<Issued> = state
        .order
        .iter()
        .map(|id| issued(&state.directives[id], cycle_ms))
        .collect();
    let mut failures = Vec::new();
    for e in &test.expect {
        let got: Vec<&Issued> = all.iter().filter(|d| d.cycle == e.cycle).collect();
        if !all_match(&e.directives, &got) {
            let mut diff = format!("cycle {}: directives differ", e.cycle);
            if e.directives.is_empty() {
                diff.push_str("\n    - (none)");
            }
            for x in &e.directives {
                diff.push_str(&format!("\n    - {}", expected_line(x)));
            }
            if got.is_empty() {
                diff.push_str("\n    + (none)");
            }
            for g in &got {
                diff.push_str(&format!("\n    + {}", g.line()));
            }
            failures.push(diff);
        }
        if e.cycle > cycles {
            failures.push(format!(
                "cycle {}: the test runs only {cycles} cycles",
                e.cycle
            ));
        }
    }
    for v in &test.expect_verdicts {
        let found = all
            .iter()
            .find(|d| matches(&v.directive, d) && v.issued.is_none_or(|c| c == d.cycle));
        let what = match v.issued {
            Some(c) => format!("{} issued in cycle {c}", expected_line(&v.directive)),
            None => expected_line(&v.directive),
        };
        let Some(d) = found else {
            failures.push(format!(
                "verdict of {what}: no such directive was issued\n    - {}\n    + (none)",
                v.outcome
            ));
            continue;
        };
        let want = match v.cycle {
            Some(c) => format!("{} in cycle {c}", v.outcome),
            None => v.outcome.clone(),
        };
        let ok = d
            .verdict
            .as_ref()
            .is_some_and(|(o, at)| *o == v.outcome && v.cycle.is_none_or(|c| c == *at));
        if !ok {
            let got = match &d.verdict {
                Some((o, at)) => format!("{o} in cycle {at}"),
                None => format!("no verdict (status {})", d.status),
            };
            failures.push(format!("verdict of {what}:\n    - {want}\n    + {got}"));
        }
        if let Some(s) = &v.status
            && *s != d.status
        {
            failures.push(format!(
                "status of {what} at the end:\n    - {s}\n    + {}",
                d.status
            ));
        }
    }
    Ok(TestResult {
        name: test.name.clone(),
        failures,
        issued: all,
        held_back,
        seconds: started.elapsed().as_secs_f64(),
    })
}
