//! The analytic expected KPIs agree with long simulated runs (within 4 standard errors) in
//! every scenario and in the knob states the key directives create.

mod setup;

use metaloop_core::protocol::{EventData, SpineEvent};
use metaloop_core::time::Timestamp;
use metaloop_sim::ExpectedKpis;
use metaloop_sim::{Scenario, Spine};
use serde_json::json;
use setup::{directive, minutes};
use std::collections::BTreeMap;

const DAY_MIN: i64 = 24 * 60;

/// Checks every domain over [from, until], the spine's state being constant there.
fn check(spine: &mut Spine, from_min: i64, until_min: i64, label: &str) {
    let expected: Vec<_> = spine
        .domains()
        .into_iter()
        .map(|d| (spine.expected_kpis(&d).unwrap(), d))
        .collect();
    let tally = Tally::run(spine, minutes(from_min), minutes(until_min));
    for (kpis, d) in &expected {
        assert_eq!(
            spine.expected_kpis(d).as_ref(),
            Some(kpis),
            "{label}: state changed during the window"
        );
        tally.assert_matches(d, kpis, label);
    }
}

#[test]
fn every_scenario_at_its_start_matches_its_expectation() {
    for scenario in [
        Scenario::Seed,
        Scenario::Noise,
        Scenario::BadDirective,
        Scenario::ApproverAway,
    ] {
        let mut spine = Spine::new(scenario, 11, minutes(0));
        check(&mut spine, 0, DAY_MIN, scenario.name());
    }
}

#[test]
fn seed_with_turned_knobs_matches_its_expectation() {
    let mut spine = Spine::new(Scenario::Seed, 12, minutes(0));
    let threshold = "planner.confidence_threshold";
    for (id, d) in [
        (
            "t",
            directive(
                "t",
                "application",
                threshold,
                "set",
                json!({"value": 0.8}),
                "overall_success_rate",
            ),
        ),
        (
            "p",
            directive(
                "p",
                "security",
                "probe.synthetic.enabled",
                "set",
                json!({"value": true}),
                "mean_recovery_time_seconds",
            ),
        ),
        (
            "b",
            directive(
                "b",
                "infrastructure",
                "playbook.reboot-node.enabled",
                "set",
                json!({"value": false}),
                "overall_success_rate",
            ),
        ),
    ] {
        let ack = spine.deliver(&d, minutes(0));
        assert!(spine.truth(id).is_some(), "{ack:?}");
    }
    check(&mut spine, 0, DAY_MIN, "seed with turned knobs");
}

#[test]
fn drift_after_the_decay_with_and_without_the_playbook() {
    let mut spine = Spine::new(Scenario::Drift, 13, minutes(0));
    spine.run_until(minutes(50), &mut Vec::new());
    check(&mut spine, 60, 12 * 60, "drift decayed");
    let d = directive(
        "off",
        "application",
        "playbook.restart-service.enabled",
        "set",
        json!({"value": false}),
        "overall_success_rate",
    );
    spine.deliver(&d, minutes(12 * 60));
    check(
        &mut spine,
        12 * 60 + 10,
        DAY_MIN,
        "drift with restart-service disabled",
    );
}

#[test]
fn bad_directive_overload_matches_its_expectation() {
    let mut spine = Spine::new(Scenario::BadDirective, 14, minutes(0));
    for d in ["infrastructure", "application", "security"] {
        let raise = directive(
            &format!("raise-{d}"),
            d,
            "planner.confidence_threshold",
            "adjust",
            json!({"adjustment": 0.05}),
            "overall_success_rate",
        );
        spine.deliver(&raise, minutes(0));
    }
    spine.run_until(minutes(5), &mut Vec::new());
    check(&mut spine, 15, DAY_MIN, "bad-directive overloaded");
}

#[test]
fn correlated_degraded_and_repaired_match_their_expectations() {
    let mut spine = Spine::new(Scenario::Correlated, 15, minutes(0));
    spine.run_until(minutes(21), &mut Vec::new());
    check(&mut spine, 25, 12 * 60, "correlated degraded");
    let d = directive(
        "failover",
        "infrastructure",
        "playbook.failover-db-primary.enabled",
        "set",
        json!({"value": true}),
        "overall_success_rate",
    );
    spine.deliver(&d, minutes(12 * 60));
    spine.run_until(minutes(12 * 60 + 2), &mut Vec::new());
    check(&mut spine, 12 * 60 + 10, 2 * DAY_MIN, "correlated repaired");
}

/// Sums of one domain's events.
#[derive(Debug, Default, Clone)]
pub struct DomainTally {
    pub recoveries: u64,
    pub succeeded: u64,
    pub duration_sum: f64,
    pub duration_sq: f64,
    pub decisions: u64,
    pub autonomous: u64,
    pub overridden: u64,
    pub compliance_n: u64,
    pub compliance_sum: f64,
    pub compliance_sq: f64,
}

/// Per-domain sums over a window of events.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub domains: BTreeMap<String, DomainTally>,
}

impl Tally {
    /// Adds one event.
    pub fn add(&mut self, e: &SpineEvent) {
        let t = self.domains.entry(e.data.domain().to_string()).or_default();
        match &e.data {
            EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => {
                t.recoveries += 1;
                t.succeeded += matches!(e.data, EventData::RecoverySucceeded(_)) as u64;
                t.duration_sum += r.duration_s;
                t.duration_sq += r.duration_s * r.duration_s;
            }
            EventData::DecisionMade(d) => {
                t.decisions += 1;
                t.autonomous += d.autonomous as u64;
                t.overridden += d.overridden as u64;
            }
            EventData::ComplianceScored(c) => {
                t.compliance_n += 1;
                t.compliance_sum += c.score;
                t.compliance_sq += c.score * c.score;
            }
            _ => {}
        }
    }

    /// Runs `spine` to `until` and tallies the events from `from` on.
    pub fn run(spine: &mut Spine, from: Timestamp, until: Timestamp) -> Tally {
        let mut tally = Tally::default();
        let mut events = Vec::new();
        let mut t = spine.now();
        while t < until {
            t = (t.plus_millis(300_000)).min(until);
            spine.run_until(t, &mut events);
            for e in events.iter().filter(|e| e.time >= from) {
                tally.add(e);
            }
            events.clear();
        }
        tally
    }

    /// Asserts that every KPI of `domain` is within 4 standard errors of `expected`.
    pub fn assert_matches(&self, domain: &str, expected: &ExpectedKpis, label: &str) {
        let t = &self.domains[domain];
        assert!(
            t.recoveries > 10_000,
            "{label} {domain}: only {} recoveries",
            t.recoveries
        );
        let rate = |k: u64, n: u64, p: f64, name: &str| {
            let observed = k as f64 / n as f64;
            let se = (p * (1.0 - p) / n as f64).sqrt().max(1e-9);
            assert!(
                (observed - p).abs() < 4.0 * se,
                "{label} {domain} {name}: observed {observed:.5} expected {p:.5} (se {se:.5}, n {n})"
            );
        };
        let mean = |sum: f64, sq: f64, n: u64, m: f64, name: &str| {
            let nf = n as f64;
            let observed = sum / nf;
            let sd = ((sq - sum * sum / nf) / (nf - 1.0)).max(0.0).sqrt();
            let se = sd / nf.sqrt();
            assert!(
                (observed - m).abs() < 4.0 * se,
                "{label} {domain} {name}: observed {observed:.4} expected {m:.4} (se {se:.4}, n {n})"
            );
        };
        rate(
            t.succeeded,
            t.recoveries,
            expected.overall_success_rate,
            "success",
        );
        rate(
            t.autonomous,
            t.decisions,
            expected.autonomy_rate,
            "autonomy",
        );
        rate(
            t.overridden,
            t.decisions,
            expected.human_intervention_rate,
            "intervention",
        );
        mean(
            t.duration_sum,
            t.duration_sq,
            t.recoveries,
            expected.mean_recovery_time_seconds,
            "recovery time",
        );
        mean(
            t.compliance_sum,
            t.compliance_sq,
            t.compliance_n,
            expected.compliance_score,
            "compliance",
        );
    }
}
