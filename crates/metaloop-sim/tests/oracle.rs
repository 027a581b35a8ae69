//! The oracle's settings are the best the analytic model knows for each scenario, and
//! `Spine::set_knob` applies a setting as a `set` directive would, without recording a truth.

mod setup;

use metaloop_core::protocol::{EventData, HealthState};
use metaloop_sim::{ExpectedKpis, Refusal, Scenario, Spine, SpineOptions, Volume};
use serde_json::json;
use setup::{directive, minutes};

const THRESHOLD: &str = "planner.confidence_threshold";

/// A spine with no incidents at all: its expectations are those of any volume, and running
/// it is nearly free.
fn quiet(scenario: Scenario) -> Spine {
    let options = SpineOptions {
        volume: Volume::PerHour(0.0),
        diurnal: false,
        bursts: false,
    };
    Spine::with_options(scenario, 1, minutes(0), &options)
}

fn with_oracle(scenario: Scenario) -> Spine {
    let mut spine = Spine::new(scenario, 1, minutes(0));
    for (domain, knob, value) in scenario.oracle() {
        spine.set_knob(domain, &knob, value).unwrap();
    }
    spine
}

/// Every allowed threshold on a 0.01 grid, set in every domain, with the global expectation
/// once delayed consequences (a small team's overload) have played out.
fn threshold_grid(scenario: Scenario) -> Vec<(f64, ExpectedKpis)> {
    (50..=95)
        .map(|i| {
            let t = i as f64 / 100.0;
            let mut spine = quiet(scenario);
            for d in spine.domains() {
                spine.set_knob(&d, THRESHOLD, json!(t)).unwrap();
            }
            spine.run_until(minutes(5), &mut Vec::new());
            (t, spine.expected_global_kpis())
        })
        .collect()
}

/// The exchange rates `w` (success points per autonomy point) for which `at` maximises
/// `success + w·autonomy` over `grid`: `(lowest, highest)`, empty when lowest > highest.
fn best_for_rates(at: &ExpectedKpis, grid: &[(f64, ExpectedKpis)]) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    for (_, k) in grid {
        let gain = k.overall_success_rate - at.overall_success_rate;
        let autonomy = k.autonomy_rate - at.autonomy_rate;
        if autonomy < -1e-12 {
            // less autonomous: better for rates below gain / autonomy lost
            lo = lo.max(gain / -autonomy);
        } else if autonomy > 1e-12 {
            // more autonomous: better for rates above its success loss / autonomy gained
            hi = hi.min(-gain / autonomy);
        }
    }
    (lo, hi)
}

#[test]
fn seed_oracle_is_the_knee_of_the_success_autonomy_frontier() {
    for scenario in [Scenario::Seed, Scenario::ApproverAway] {
        let oracle = with_oracle(scenario).expected_global_kpis();
        let grid = threshold_grid(scenario);
        // nothing at least as autonomous is more successful
        for (t, k) in &grid {
            if k.autonomy_rate >= oracle.autonomy_rate - 1e-12 {
                assert!(
                    k.overall_success_rate <= oracle.overall_success_rate + 1e-12,
                    "{scenario} threshold {t}: {k:?}"
                );
            }
        }
        // best for a wide band of exchange rates between success and autonomy
        let (lo, hi) = best_for_rates(&oracle, &grid);
        println!(
            "{scenario}: 0.75 gives success {:.4}, autonomy {:.4}; best for rates {lo:.3}..{hi:.3}",
            oracle.overall_success_rate, oracle.autonomy_rate
        );
        assert!(lo < 0.17 && hi > 0.41, "{scenario}: rates {lo}..{hi}");
        // the default 0.70 is best for no rate at all: raising it is the right move
        let default = Spine::new(scenario, 1, minutes(0)).expected_global_kpis();
        let (lo70, hi70) = best_for_rates(&default, &grid);
        assert!(lo70 > hi70, "{scenario}: 0.70 best for {lo70}..{hi70}");
        // but 0.75 is not the most successful threshold: escalating everything to the human
        // team (0.94 and above) is, at no autonomy
        let (t, most) = grid
            .iter()
            .max_by(|a, b| {
                a.1.overall_success_rate
                    .total_cmp(&b.1.overall_success_rate)
            })
            .unwrap();
        assert!(
            *t >= 0.94 && most.overall_success_rate > oracle.overall_success_rate + 0.05,
            "{scenario}: most successful {t}: {most:?}"
        );
        assert_eq!(most.autonomy_rate, 0.0);
    }
}

#[test]
fn bad_directive_oracle_keeps_the_most_successful_threshold() {
    assert!(Scenario::BadDirective.oracle().is_empty());
    let mut oracle = with_oracle(Scenario::BadDirective);
    oracle.run_until(minutes(5), &mut Vec::new());
    let best = oracle.expected_global_kpis();
    for (t, k) in threshold_grid(Scenario::BadDirective) {
        assert!(
            k.overall_success_rate <= best.overall_success_rate + 1e-12,
            "threshold {t}: {k:?} against {best:?}"
        );
    }
}

#[test]
fn drift_oracle_beats_every_other_playbook_switch_once_decayed() {
    let knob = |p: &str| format!("playbook.{p}.enabled");
    let decayed = |switch: Option<&str>| {
        let mut spine = quiet(Scenario::Drift);
        if let Some(p) = switch {
            spine
                .set_knob("application", &knob(p), json!(false))
                .unwrap();
        }
        spine.run_until(minutes(60), &mut Vec::new());
        spine.expected_kpis("application").unwrap()
    };
    let oracle = Scenario::Drift.oracle();
    assert_eq!(oracle.len(), 1);
    assert_eq!(
        (oracle[0].0, oracle[0].1.as_str()),
        ("application", "playbook.restart-service.enabled")
    );
    let mut spine = with_oracle(Scenario::Drift);
    spine.run_until(minutes(60), &mut Vec::new());
    let best = spine.expected_kpis("application").unwrap();
    assert_eq!(best, decayed(Some("restart-service")));
    for other in [None, Some("scale-out"), Some("redeploy-service")] {
        let k = decayed(other);
        assert!(
            best.overall_success_rate > k.overall_success_rate + 0.05,
            "{other:?}: {k:?} against {best:?}"
        );
    }
    // whatever the threshold, the switch helps once decayed (both escalate everything at 0.95)
    for i in 50..=95 {
        let t = i as f64 / 100.0;
        let success = |switch: bool| {
            let mut spine = quiet(Scenario::Drift);
            spine.set_knob("application", THRESHOLD, json!(t)).unwrap();
            if switch {
                spine
                    .set_knob("application", &knob("restart-service"), json!(false))
                    .unwrap();
            }
            spine.run_until(minutes(60), &mut Vec::new());
            spine
                .expected_kpis("application")
                .unwrap()
                .overall_success_rate
        };
        let (with, without) = (success(true), success(false));
        assert!(
            with > without || (t >= 0.94 && with == without),
            "threshold {t}: {with} against {without}"
        );
    }
}

#[test]
fn correlated_oracle_repairs_the_fault_within_two_minutes() {
    let healthy = Spine::new(Scenario::Correlated, 1, minutes(0)).expected_global_kpis();
    let mut oracle = with_oracle(Scenario::Correlated);
    let mut plain = Spine::new(Scenario::Correlated, 1, minutes(0));
    for spine in [&mut oracle, &mut plain] {
        spine.run_until(minutes(23), &mut Vec::new());
    }
    assert_eq!(oracle.expected_global_kpis(), healthy);
    assert_eq!(
        oracle.node_state("infrastructure/db-primary"),
        Some(HealthState::Healthy)
    );
    let degraded = plain.expected_global_kpis();
    assert!(
        degraded.overall_success_rate < healthy.overall_success_rate - 0.2,
        "{degraded:?}"
    );
    assert_eq!(oracle.truths().count(), 0, "set_knob records no truth");
}

#[test]
fn noise_oracle_is_empty_because_no_knob_changes_anything() {
    assert!(Scenario::Noise.oracle().is_empty());
    let base = Spine::new(Scenario::Noise, 1, minutes(0)).expected_global_kpis();
    for (t, k) in threshold_grid(Scenario::Noise) {
        assert_eq!(k, base, "threshold {t}");
    }
    let mut spine = Spine::new(Scenario::Noise, 1, minutes(0));
    for d in spine.domains() {
        spine
            .set_knob(&d, "probe.synthetic.enabled", json!(true))
            .unwrap();
    }
    assert_eq!(spine.expected_global_kpis(), base);
}

#[test]
fn set_knob_validates_like_a_directive_and_records_no_truth() {
    let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
    assert!(matches!(
        spine.set_knob("payments", THRESHOLD, json!(0.8)),
        Err(Refusal::UnknownDomain { .. })
    ));
    assert!(matches!(
        spine.set_knob("application", "planner.speed", json!(0.8)),
        Err(Refusal::UnknownKnob { .. })
    ));
    assert!(matches!(
        spine.set_knob("application", THRESHOLD, json!(0.99)),
        Err(Refusal::ThresholdOutOfRange { .. })
    ));
    assert!(matches!(
        spine.set_knob("application", THRESHOLD, json!("high")),
        Err(Refusal::BadParameter { field: "value", .. })
    ));
    assert!(matches!(
        spine.set_knob("application", "playbook.scale-out.enabled", json!(1)),
        Err(Refusal::BadParameter { field: "value", .. })
    ));
    // the refusal is the one a directive gets
    for (knob, value) in [
        (THRESHOLD, json!(0.99)),
        ("probe.synthetic.enabled", json!("yes")),
        ("playbook.reboot.enabled", json!(false)),
    ] {
        let refused = spine
            .set_knob("infrastructure", knob, value.clone())
            .unwrap_err();
        let d = directive(
            "d",
            "infrastructure",
            knob,
            "set",
            json!({ "value": value }),
            "overall_success_rate",
        );
        let ack = Spine::new(Scenario::Seed, 1, minutes(0)).deliver(&d, minutes(0));
        let EventData::DirectiveRefused(r) = ack.data else {
            panic!("{ack:?}")
        };
        assert_eq!(r.reason, refused.to_string());
    }
    spine
        .set_knob(
            "application",
            "playbook.restart-service.enabled",
            json!(false),
        )
        .unwrap();
    let stranded = spine.set_knob(
        "application",
        "playbook.redeploy-service.enabled",
        json!(false),
    );
    assert!(
        matches!(stranded, Err(Refusal::NoPlaybookLeft { .. })),
        "{stranded:?}"
    );
    assert_eq!(spine.knob("application", THRESHOLD), Some(json!(0.7)));
    spine
        .set_knob("application", THRESHOLD, json!(0.8))
        .unwrap();
    assert_eq!(spine.knob("application", THRESHOLD), Some(json!(0.8)));
    assert_eq!(spine.truths().count(), 0);
    // the consequences are a directive's: a small team overloads two minutes after a raise
    let mut small = Spine::new(Scenario::BadDirective, 1, minutes(0));
    small.set_knob("security", THRESHOLD, json!(0.75)).unwrap();
    let coping = small.expected_kpis("security").unwrap();
    small.run_until(minutes(2), &mut Vec::new());
    let overloaded = small.expected_kpis("security").unwrap();
    assert!(
        overloaded.overall_success_rate < coping.overall_success_rate - 0.05,
        "{coping:?} then {overloaded:?}"
    );
}
