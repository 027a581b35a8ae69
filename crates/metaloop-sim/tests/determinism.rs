//! The same scenario and seed give byte-identical event streams, however the run is sliced;
//! streams are time-ordered and well-formed.

mod setup;

use metaloop_core::protocol::{EventData, SpineEvent};
use metaloop_sim::{Scenario, Spine};
use serde_json::json;
use setup::{directive, minutes};
use std::collections::{BTreeMap, BTreeSet};

/// Runs one simulated hour in steps of `step_min` minutes, delivering a directive at 30 min.
fn stream(scenario: Scenario, seed: u64, step_min: i64) -> Vec<SpineEvent> {
    let mut spine = Spine::new(scenario, seed, minutes(0));
    let mut out = Vec::new();
    let mut t = 0;
    while t < 60 {
        t = (t + step_min).min(60);
        spine.run_until(minutes(t), &mut out);
        if t == 30 {
            let d = directive(
                "d1",
                "application",
                "planner.confidence_threshold",
                "adjust",
                json!({"adjustment": 0.05}),
                "overall_success_rate",
            );
            out.push(spine.deliver(&d, minutes(30)));
        }
    }
    out
}

fn bytes(events: &[SpineEvent]) -> String {
    serde_json::to_string(events).unwrap()
}

#[test]
fn same_scenario_and_seed_give_identical_bytes() {
    for scenario in Scenario::ALL {
        let a = stream(scenario, 42, 5);
        let b = stream(scenario, 42, 5);
        assert!(a.len() > 5_000, "{scenario}: {} events", a.len());
        assert_eq!(bytes(&a), bytes(&b), "{scenario}");
    }
}

#[test]
fn slicing_the_run_does_not_change_the_stream() {
    for scenario in [Scenario::Seed, Scenario::Correlated] {
        assert_eq!(
            bytes(&stream(scenario, 7, 5)),
            bytes(&stream(scenario, 7, 30)),
            "{scenario}"
        );
        assert_eq!(
            bytes(&stream(scenario, 7, 1)),
            bytes(&stream(scenario, 7, 30)),
            "{scenario}"
        );
    }
}

#[test]
fn seeds_and_scenarios_change_the_stream() {
    assert_ne!(
        bytes(&stream(Scenario::Seed, 1, 30)),
        bytes(&stream(Scenario::Seed, 2, 30))
    );
    assert_ne!(
        bytes(&stream(Scenario::Seed, 1, 30)),
        bytes(&stream(Scenario::ApproverAway, 1, 30))
    );
}

#[test]
fn events_are_ordered_windowed_unique_and_consistent() {
    let mut spine = Spine::new(Scenario::Seed, 3, minutes(0));
    let playbooks: BTreeMap<String, BTreeSet<String>> = spine
        .domains()
        .into_iter()
        .map(|d| {
            (
                d.clone(),
                spine.playbooks(&d).unwrap().into_iter().collect(),
            )
        })
        .collect();
    let mut ids = BTreeSet::new();
    let mut last = minutes(0);
    let mut out = Vec::new();
    let mut recoveries = 0u64;
    for window in 1..=12 {
        out.clear();
        spine.run_until(minutes(5 * window), &mut out);
        for e in &out {
            let lower = if window == 1 {
                minutes(0)
            } else {
                minutes(5 * (window - 1)).plus_millis(1)
            };
            assert!(
                e.time >= lower && e.time <= minutes(5 * window),
                "{e:?} outside window {window}"
            );
            assert!(e.time >= last, "out of order: {e:?}");
            last = e.time;
            assert_eq!(e.source, format!("urn:spine:{}", e.data.domain()));
            assert!(
                ids.insert((e.source.clone(), e.id.clone())),
                "duplicate id {}",
                e.id
            );
            match &e.data {
                EventData::DecisionMade(d) => {
                    assert_eq!(d.approved_by_human, !d.autonomous);
                    assert!(
                        !d.overridden || d.autonomous,
                        "only autonomous decisions are overridden"
                    );
                    assert!((0.0..=1.0).contains(&d.confidence));
                }
                EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => {
                    recoveries += (r.domain == "application") as u64;
                    assert!(!(r.autonomous && r.human_override));
                    assert!(r.duration_s > 0.0);
                    assert!(playbooks[&r.domain].contains(&r.playbook), "{}", r.playbook);
                }
                EventData::ComplianceScored(c) => assert!((0.0..=100.0).contains(&c.score)),
                _ => {}
            }
        }
        assert_eq!(spine.now(), minutes(5 * window));
    }
    // one hour of application incidents at 400 per 300 s, a Poisson count
    let arrivals = 4800.0;
    assert!(
        (recoveries as f64 - arrivals).abs() < 4.0 * arrivals.sqrt() + 60.0,
        "{recoveries} recoveries"
    );
}

#[test]
fn first_window_starts_with_every_node_healthy() {
    let mut spine = Spine::new(Scenario::Correlated, 1, minutes(0));
    let mut out = Vec::new();
    spine.run_until(minutes(0), &mut out);
    let nodes: Vec<(String, String, Vec<String>)> = out
        .iter()
        .map(|e| match &e.data {
            EventData::HealthChanged(h) => {
                assert_eq!(h.state, metaloop_core::protocol::HealthState::Healthy);
                assert_eq!(e.time, minutes(0));
                (h.domain.clone(), h.node.clone(), h.depends_on.clone())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let dep = vec!["infrastructure/db-primary".to_string()];
    assert!(nodes.contains(&("infrastructure".into(), "db-primary".into(), vec![])));
    assert!(nodes.contains(&("application".into(), "api-gateway".into(), dep.clone())));
    assert!(nodes.contains(&("security".into(), "authz".into(), dep)));
    out.clear();
    spine.run_until(minutes(0), &mut out);
    assert!(out.is_empty(), "initial events are emitted once");
}
