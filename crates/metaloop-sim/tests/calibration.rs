//! The scenarios hit the calibration targets the supervisor's tests and demo rely on.

mod setup;

use metaloop_sim::{ExpectedKpis, Scenario, Spine, Truth};
use serde_json::json;
use setup::{directive, minutes};

const THRESHOLD: &str = "planner.confidence_threshold";

fn within(x: f64, lo: f64, hi: f64, what: &str) {
    assert!((lo..=hi).contains(&x), "{what}: {x} not in [{lo}, {hi}]");
}

fn kpis(spine: &Spine, domain: &str) -> ExpectedKpis {
    spine.expected_kpis(domain).unwrap()
}

fn raise(spine: &mut Spine, id: &str, domain: &str) -> Truth {
    let d = directive(
        id,
        domain,
        THRESHOLD,
        "adjust",
        json!({"adjustment": 0.05}),
        "overall_success_rate",
    );
    spine.deliver(&d, spine.now());
    spine.truth(id).cloned().expect("applied")
}

#[test]
fn seed_starts_below_the_goals_in_every_domain() {
    for scenario in [
        Scenario::Seed,
        Scenario::ApproverAway,
        Scenario::BadDirective,
    ] {
        let spine = Spine::new(scenario, 1, minutes(0));
        for d in spine.domains() {
            let k = kpis(&spine, &d);
            within(
                k.overall_success_rate,
                0.86,
                0.88,
                &format!("{scenario} {d} success"),
            );
            within(
                k.autonomy_rate,
                0.72,
                0.74,
                &format!("{scenario} {d} autonomy"),
            );
            within(
                k.mean_recovery_time_seconds,
                41.0,
                44.0,
                &format!("{scenario} {d} recovery"),
            );
            within(
                k.human_intervention_rate,
                0.06,
                0.08,
                &format!("{scenario} {d} intervention"),
            );
            within(
                k.compliance_score,
                96.5,
                97.5,
                &format!("{scenario} {d} compliance"),
            );
        }
    }
}

#[test]
fn seed_first_raise_is_the_right_move_and_the_second_a_poor_trade() {
    for domain in ["infrastructure", "application", "security"] {
        let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
        let first = raise(&mut spine, "r1", domain);
        assert!(!first.harmful);
        within(
            first.effect,
            0.04,
            0.05,
            &format!("{domain} success gain 0.70 -> 0.75"),
        );
        within(
            first.kpis_after.overall_success_rate,
            0.905,
            0.92,
            &format!("{domain} success at 0.75"),
        );
        let autonomy = first.kpis_before.autonomy_rate - first.kpis_after.autonomy_rate;
        within(
            autonomy,
            0.065,
            0.075,
            &format!("{domain} autonomy cost 0.70 -> 0.75"),
        );
        let slower = first.kpis_after.mean_recovery_time_seconds
            - first.kpis_before.mean_recovery_time_seconds;
        within(
            slower,
            2.0,
            3.0,
            &format!("{domain} recovery cost 0.70 -> 0.75"),
        );

        let second = raise(&mut spine, "r2", domain);
        within(
            second.effect,
            0.0,
            0.012,
            &format!("{domain} success gain 0.75 -> 0.80"),
        );
        let autonomy = second.kpis_before.autonomy_rate - second.kpis_after.autonomy_rate;
        within(
            autonomy,
            0.065,
            0.075,
            &format!("{domain} autonomy cost 0.75 -> 0.80"),
        );
        assert!(
            autonomy > 5.0 * second.effect,
            "the second raise costs far more autonomy than it gains"
        );
    }
}

#[test]
fn seed_probe_cuts_recovery_by_ten_seconds() {
    let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
    let d = directive(
        "p",
        "security",
        "probe.synthetic.enabled",
        "set",
        json!({"value": true}),
        "mean_recovery_time_seconds",
    );
    spine.deliver(&d, minutes(0));
    let t = spine.truth("p").unwrap();
    within(t.effect, 9.5, 10.5, "probe effect (seconds saved)");
    assert!(!t.harmful);
    assert_eq!(
        t.kpis_after.overall_success_rate,
        t.kpis_before.overall_success_rate
    );
}

#[test]
fn drift_is_healthy_then_restart_service_decays() {
    let mut spine = Spine::new(Scenario::Drift, 1, minutes(0));
    for d in spine.domains() {
        within(
            kpis(&spine, &d).overall_success_rate,
            0.925,
            0.945,
            &format!("drift {d} success"),
        );
    }
    let healthy = kpis(&spine, "application").overall_success_rate;
    spine.run_until(minutes(35), &mut Vec::new());
    let midway = kpis(&spine, "application").overall_success_rate;
    spine.run_until(minutes(50), &mut Vec::new());
    let decayed = kpis(&spine, "application").overall_success_rate;
    assert!(
        healthy > midway && midway > decayed,
        "{healthy} {midway} {decayed}"
    );
    within(healthy - decayed, 0.12, 0.15, "drift success loss");
    assert_eq!(
        kpis(&spine, "infrastructure").overall_success_rate,
        kpis(
            &Spine::new(Scenario::Drift, 1, minutes(0)),
            "infrastructure"
        )
        .overall_success_rate
    );
}

#[test]
fn noise_sits_between_seed_and_goals() {
    let spine = Spine::new(Scenario::Noise, 1, minutes(0));
    for d in spine.domains() {
        let k = kpis(&spine, &d);
        within(
            k.overall_success_rate,
            0.89,
            0.90,
            &format!("noise {d} success"),
        );
        within(
            k.mean_recovery_time_seconds,
            40.0,
            42.0,
            &format!("noise {d} recovery"),
        );
    }
}

#[test]
fn correlated_meets_the_goals_while_healthy() {
    let spine = Spine::new(Scenario::Correlated, 1, minutes(0));
    for d in spine.domains() {
        let k = kpis(&spine, &d);
        within(
            k.overall_success_rate,
            0.955,
            0.965,
            &format!("correlated {d} success"),
        );
        within(
            k.mean_recovery_time_seconds,
            26.0,
            29.5,
            &format!("correlated {d} recovery"),
        );
        within(
            k.autonomy_rate,
            0.81,
            0.83,
            &format!("correlated {d} autonomy"),
        );
        assert!(k.human_intervention_rate < 0.15);
    }
}
