//! Holdout experiments on the simulated spine: a policy that asks to try its change on a
//! slice first. On the diurnal spine, a change with a true benefit is promoted to the whole
//! domain and one with no useful effect is abandoned, as the simulator's ground truth says.

use metaloop::demo::report::{DirectiveReport, Report};
use metaloop::demo::{self, DemoOptions, Sink};
use metaloop_core::config::SupervisorConfig;
use metaloop_sim::{Scenario, SpineOptions, Volume};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn run(opts: &DemoOptions) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(demo::run(
        opts,
        Sink::Memory(Default::default()),
        Arc::new(AtomicBool::new(false)),
        None,
    ))
    .unwrap()
}

/// The default policies, every one of them trying its change on half the incidents first.
fn experiment_first() -> SupervisorConfig {
    let mut cfg = SupervisorConfig::default();
    for p in cfg.policies.iter_mut() {
        p.directive_template.experiment_first = true;
    }
    cfg.verification.seasonality = metaloop_core::verify::Seasonality::ControlDomains;
    cfg
}

fn opts(scenario: Scenario, seed: u64, cycles: u64) -> DemoOptions {
    DemoOptions {
        cycles,
        auto_approve_as: Some("ops".into()),
        base: Some(experiment_first()),
        spine: SpineOptions::for_volume(Volume::Medium),
        ..DemoOptions::new(scenario, seed)
    }
}

fn describe(d: &DirectiveReport) -> String {
    format!(
        "{} {} {} in {} at cycle {}: {} {:?} (truth {:?}, verdict {:?})",
        &d.id[..8],
        d.directive_type,
        d.knob,
        d.target_domain,
        d.issued_cycle,
        d.status,
        d.refused_reason,
        d.truth.as_ref().map(|t| (t.effect, t.harmful)),
        d.verdict
            .as_ref()
            .map(|v| (&v.outcome, v.effect, v.p_value))
    )
}

#[test]
fn a_true_benefit_is_promoted_after_its_experiment() {
    let r = run(&opts(Scenario::Seed, 1, 576));
    for d in &r.directives {
        eprintln!("{}", describe(d));
    }
    let exps: Vec<&DirectiveReport> = r
        .directives
        .iter()
        .filter(|d| d.directive_type == "SCHEDULE_EXPERIMENT")
        .collect();
    assert!(!exps.is_empty(), "no experiment scheduled");
    let verified: Vec<&&DirectiveReport> = exps.iter().filter(|d| d.status == "verified").collect();
    assert!(!verified.is_empty(), "no experiment verified");
    assert!(
        verified
            .iter()
            .any(|e| e.knob == "planner.confidence_threshold"),
        "no threshold experiment verified"
    );
    for e in verified {
        let truth = e.truth.as_ref().expect("the spine ran the experiment");
        assert!(truth.effect >= 0.01 && !truth.harmful, "{}", describe(e));
        let v = e.verdict.as_ref().unwrap();
        assert_eq!(
            v.details["target"]["test"],
            "mixture_sequential_paired_arms"
        );
        let promoted = r
            .directives
            .iter()
            .find(|d| d.promoted_from.as_deref() == Some(e.id.as_str()))
            .expect("a verified experiment is promoted");
        assert_eq!(
            Some(&serde_json::json!(promoted.directive_type)),
            e.experiment.as_ref().map(|x| &x["promote_as"])
        );
        assert_eq!(promoted.knob, e.knob);
        assert!(promoted.lifecycle.iter().any(|(s, _)| s == "published"));
    }
}

#[test]
fn a_change_with_no_useful_effect_is_abandoned_after_its_experiment() {
    let mut abandoned = 0;
    for seed in 1..=3 {
        let r = run(&opts(Scenario::Noise, seed, 576));
        for d in &r.directives {
            eprintln!("{}", describe(d));
        }
        abandoned += check_useless(&r);
    }
    assert!(abandoned > 0, "no useless experiment reached its end");
}

/// Every experiment of a change below its minimum effect that was decided was abandoned;
/// returns how many.
fn check_useless(r: &Report) -> usize {
    let mut abandoned = 0;
    for e in r
        .directives
        .iter()
        .filter(|d| d.directive_type == "SCHEDULE_EXPERIMENT" && d.verdict.is_some())
    {
        let truth = e.truth.as_ref().unwrap();
        if truth.effect < 0.01 {
            assert_ne!(e.status, "verified", "{}", describe(e));
            assert!(
                r.directives
                    .iter()
                    .all(|d| d.promoted_from.as_deref() != Some(e.id.as_str()))
            );
            assert_eq!(e.status, "rolled_back", "{}", describe(e));
            abandoned += 1;
        }
    }
    abandoned
}
