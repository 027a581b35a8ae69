//! Scenario behaviour through the public interface: the bad directive's delayed harm, the
//! correlated fault and its failover, the drifting playbook, the absent approver.

mod setup;

use metaloop_core::protocol::{EventData, HealthState, SpineEvent};
use metaloop_core::time::Timestamp;
use metaloop_sim::{HUMAN_QUEUE_DEPTH, Scenario, Spine, failover_playbook};
use serde_json::json;
use setup::{directive, minutes};

const THRESHOLD: &str = "planner.confidence_threshold";
const SUCCESS: &str = "overall_success_rate";

fn run(spine: &mut Spine, until: Timestamp) -> Vec<SpineEvent> {
    let mut out = Vec::new();
    spine.run_until(until, &mut out);
    out
}

fn health_changes(events: &[SpineEvent]) -> Vec<(Timestamp, String, HealthState)> {
    events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::HealthChanged(h) => {
                Some((e.time, format!("{}/{}", h.domain, h.node), h.state))
            }
            _ => None,
        })
        .collect()
}

fn mean_queue_depth(events: &[SpineEvent], domain: &str) -> f64 {
    let depths: Vec<f64> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::KpiReported(k) if k.domain == domain && k.name == HUMAN_QUEUE_DEPTH => {
                Some(k.value)
            }
            _ => None,
        })
        .collect();
    assert!(!depths.is_empty());
    depths.iter().sum::<f64>() / depths.len() as f64
}

#[test]
fn bad_directive_raise_is_harmful_after_its_delay_and_its_rollback_helps() {
    let mut spine = Spine::new(Scenario::BadDirective, 5, minutes(0));
    let calm = run(&mut spine, minutes(60));
    let baseline = spine.expected_kpis("application").unwrap();
    let security = spine.expected_kpis("security").unwrap();

    let up = directive(
        "up",
        "application",
        THRESHOLD,
        "adjust",
        json!({"adjustment": 0.05}),
        SUCCESS,
    );
    spine.deliver(&up, minutes(60));
    let t = spine.truth("up").unwrap().clone();
    assert!(t.harmful && t.effect < -0.05, "{t:?}");
    assert!(
        t.kpis_after.mean_recovery_time_seconds > 1.2 * t.kpis_before.mean_recovery_time_seconds
    );
    assert_eq!(t.kpis_before, baseline);

    // the team copes for two minutes, then falls behind
    run(&mut spine, minutes(62).plus_millis(-1));
    let coping = spine.expected_kpis("application").unwrap();
    assert!(
        coping.overall_success_rate > baseline.overall_success_rate,
        "the raise helps at first"
    );
    run(&mut spine, minutes(62));
    assert_eq!(
        spine.expected_kpis("application").unwrap(),
        t.kpis_after,
        "overloaded once the delay has passed"
    );
    assert_eq!(
        spine.expected_kpis("security").unwrap(),
        security,
        "other domains keep their team"
    );

    let overloaded = run(&mut spine, minutes(125));
    let (before_depth, after_depth) = (
        mean_queue_depth(&calm, "application"),
        mean_queue_depth(&overloaded, "application"),
    );
    assert!(
        after_depth > 1.5 * before_depth,
        "human queue {before_depth} -> {after_depth}"
    );

    let back = directive(
        "back",
        "application",
        THRESHOLD,
        "set",
        json!({"value": 0.7}),
        SUCCESS,
    );
    spine.deliver(&back, minutes(125));
    let rb = spine.truth("back").unwrap();
    assert!(!rb.harmful && rb.effect > 0.05, "{rb:?}");
    assert_eq!(
        spine.expected_kpis("application").unwrap(),
        baseline,
        "restoring 0.70 clears the overload at once"
    );
}

#[test]
fn bad_directive_raise_undone_within_the_delay_never_overloads() {
    let mut spine = Spine::new(Scenario::BadDirective, 5, minutes(0));
    let baseline = spine.expected_kpis("security").unwrap();
    spine.deliver(
        &directive(
            "up",
            "security",
            THRESHOLD,
            "set",
            json!({"value": 0.8}),
            SUCCESS,
        ),
        minutes(0),
    );
    run(&mut spine, minutes(1));
    spine.deliver(
        &directive(
            "down",
            "security",
            THRESHOLD,
            "set",
            json!({"value": 0.7}),
            SUCCESS,
        ),
        minutes(1),
    );
    spine.deliver(
        &directive(
            "up2",
            "security",
            THRESHOLD,
            "set",
            json!({"value": 0.75}),
            SUCCESS,
        ),
        minutes(1),
    );
    run(&mut spine, minutes(3).plus_millis(-1));
    let k = spine.expected_kpis("security").unwrap();
    assert!(
        k.overall_success_rate > baseline.overall_success_rate,
        "the delay restarts from the second raise"
    );
    run(&mut spine, minutes(3));
    assert!(
        spine
            .expected_kpis("security")
            .unwrap()
            .overall_success_rate
            < baseline.overall_success_rate
    );
}

#[test]
fn correlated_fault_cascades_and_the_failover_repairs_it() {
    let mut spine = Spine::new(Scenario::Correlated, 9, minutes(0));
    let healthy: Vec<_> = spine
        .domains()
        .iter()
        .map(|d| spine.expected_kpis(d).unwrap())
        .collect();
    let before = run(&mut spine, minutes(20).plus_millis(-1));
    assert_eq!(health_changes(&before).len(), 4, "only the initial states");
    assert!(
        health_changes(&before)
            .iter()
            .all(|(_, _, s)| *s == HealthState::Healthy)
    );

    let fault = run(&mut spine, minutes(25));
    assert_eq!(
        health_changes(&fault),
        vec![
            (
                minutes(20),
                "infrastructure/db-primary".to_string(),
                HealthState::Degraded
            ),
            (
                minutes(21),
                "application/api-gateway".to_string(),
                HealthState::Degraded
            ),
            (
                minutes(21),
                "security/authz".to_string(),
                HealthState::Degraded
            ),
        ]
    );
    assert_eq!(
        spine.node_state("infrastructure/network"),
        Some(HealthState::Healthy)
    );
    for (d, h) in spine.domains().iter().zip(&healthy) {
        let k = spine.expected_kpis(d).unwrap();
        let ratio = k.overall_success_rate / h.overall_success_rate;
        assert!((ratio - 0.75).abs() < 1e-9, "{d}: success x{ratio}");
        assert!(
            k.overall_success_rate < 0.95,
            "{d} misses the goal while degraded"
        );
    }

    // incidents arrive 1.5x faster while degraded
    let count = |events: &[SpineEvent], from: Timestamp, to: Timestamp| {
        events
            .iter()
            .filter(|e| {
                e.time >= from
                    && e.time < to
                    && matches!(e.data, EventData::DecisionMade(_))
                    && e.data.domain() == "application"
            })
            .count() as f64
    };
    let degraded = run(&mut spine, minutes(85));
    let rate_before = count(&before, minutes(1), minutes(19)) / 18.0;
    let rate_after = count(&degraded, minutes(25), minutes(85)) / 60.0;
    assert!(
        (1.35..1.65).contains(&(rate_after / rate_before)),
        "rate x{}",
        rate_after / rate_before
    );

    // a directive elsewhere during the fault is judged in the degraded state
    let degraded_app = spine.expected_kpis("application").unwrap();
    spine.deliver(
        &directive(
            "app",
            "application",
            THRESHOLD,
            "set",
            json!({"value": 0.75}),
            SUCCESS,
        ),
        minutes(85),
    );
    let app = spine.truth("app").unwrap();
    assert_eq!(app.kpis_before, degraded_app);
    assert!(app.kpis_after.overall_success_rate < 0.75 && app.effect > 0.0);
    spine.deliver(
        &directive(
            "app-back",
            "application",
            THRESHOLD,
            "set",
            json!({"value": 0.7}),
            SUCCESS,
        ),
        minutes(85),
    );

    let knob = format!("playbook.{}.enabled", failover_playbook("db-primary"));
    assert_eq!(knob, "playbook.failover-db-primary.enabled");
    assert_eq!(spine.knob("infrastructure", &knob), Some(json!(false)));
    spine.deliver(
        &directive(
            "failover",
            "infrastructure",
            &knob,
            "set",
            json!({"value": true}),
            SUCCESS,
        ),
        minutes(85),
    );
    let t = spine.truth("failover").unwrap();
    assert!(
        !t.harmful && (t.effect - 0.25 * healthy[0].overall_success_rate).abs() < 1e-9,
        "{t:?}"
    );
    assert_eq!(t.kpis_after, healthy[0]);

    let repair = run(&mut spine, minutes(90));
    assert_eq!(
        health_changes(&repair),
        vec![
            (
                minutes(86),
                "infrastructure/db-primary".to_string(),
                HealthState::Healthy
            ),
            (
                minutes(87),
                "application/api-gateway".to_string(),
                HealthState::Healthy
            ),
            (
                minutes(87),
                "security/authz".to_string(),
                HealthState::Healthy
            ),
        ]
    );
    for (d, h) in spine.domains().iter().zip(&healthy) {
        assert_eq!(&spine.expected_kpis(d).unwrap(), h, "{d} healthy again");
    }
    assert!(
        health_changes(&run(&mut spine, minutes(300))).is_empty(),
        "the fault does not come back"
    );
}

#[test]
fn correlated_failover_enabled_in_advance_repairs_the_fault_automatically() {
    let mut spine = Spine::new(Scenario::Correlated, 9, minutes(0));
    let knob = "playbook.failover-db-primary.enabled";
    spine.deliver(
        &directive(
            "early",
            "infrastructure",
            knob,
            "set",
            json!({"value": true}),
            SUCCESS,
        ),
        minutes(0),
    );
    assert_eq!(
        spine.truth("early").unwrap().effect,
        0.0,
        "nothing to repair yet"
    );
    let events = run(&mut spine, minutes(30));
    let changes = health_changes(&events);
    assert_eq!(
        changes[4],
        (
            minutes(20),
            "infrastructure/db-primary".to_string(),
            HealthState::Degraded
        )
    );
    assert!(changes.contains(&(
        minutes(21),
        "infrastructure/db-primary".to_string(),
        HealthState::Healthy
    )));
    for node in [
        "infrastructure/db-primary",
        "application/api-gateway",
        "security/authz",
    ] {
        assert_eq!(spine.node_state(node), Some(HealthState::Healthy), "{node}");
    }
}

#[test]
fn seed_failover_changes_nothing() {
    let mut spine = Spine::new(Scenario::Seed, 9, minutes(0));
    spine.deliver(
        &directive(
            "f",
            "infrastructure",
            "playbook.failover-db-primary.enabled",
            "set",
            json!({"value": true}),
            SUCCESS,
        ),
        minutes(0),
    );
    assert_eq!(spine.truth("f").unwrap().effect, 0.0);
    assert_eq!(health_changes(&run(&mut spine, minutes(60))).len(), 4);
}

#[test]
fn drift_disabling_the_decayed_playbook_is_the_right_move() {
    let mut spine = Spine::new(Scenario::Drift, 21, minutes(0));
    let off = |id: &str| {
        directive(
            id,
            "application",
            "playbook.restart-service.enabled",
            "set",
            json!({"value": false}),
            SUCCESS,
        )
    };
    let on = |id: &str| {
        directive(
            id,
            "application",
            "playbook.restart-service.enabled",
            "set",
            json!({"value": true}),
            SUCCESS,
        )
    };

    let early = run(&mut spine, minutes(10));
    spine.deliver(&off("early"), minutes(10));
    let t = spine.truth("early").unwrap();
    assert_eq!(t.effect, 0.0, "no decay yet: redeploy-service is no better");
    assert!(!t.harmful, "{t:?}");
    assert!(
        t.kpis_after.mean_recovery_time_seconds > t.kpis_before.mean_recovery_time_seconds,
        "the fallback is slower"
    );
    spine.deliver(&on("early-undo"), minutes(10));

    let decaying = run(&mut spine, minutes(60));
    spine.deliver(&off("late"), minutes(60));
    let t = spine.truth("late").unwrap();
    assert!(!t.harmful && t.effect > 0.12, "{t:?}");

    // what the supervisor sees: restart-service's autonomous success collapses
    let autonomous_success = |events: &[SpineEvent], from: Timestamp| {
        let (mut ok, mut n) = (0.0, 0.0);
        for e in events.iter().filter(|e| e.time >= from) {
            if let EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) = &e.data
                && r.playbook == "restart-service"
                && r.autonomous
            {
                n += 1.0;
                ok += matches!(e.data, EventData::RecoverySucceeded(_)) as u8 as f64;
            }
        }
        ok / n
    };
    let (healthy, decayed) = (
        autonomous_success(&early, minutes(0)),
        autonomous_success(&decaying, minutes(50)),
    );
    assert!(
        healthy > 0.85 && decayed < 0.5,
        "restart-service autonomous success {healthy} -> {decayed}"
    );

    let after = run(&mut spine, minutes(120));
    let uses = after.iter().filter(|e| e.time >= minutes(70)).filter(|e| matches!(&e.data, EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) if r.playbook == "restart-service")).count();
    assert_eq!(uses, 0, "a disabled playbook does not run");
}

#[test]
fn only_approver_away_lacks_an_approver() {
    for s in Scenario::ALL {
        assert_eq!(
            Spine::new(s, 1, minutes(0)).approver_present(),
            s != Scenario::ApproverAway,
            "{s}"
        );
    }
}
