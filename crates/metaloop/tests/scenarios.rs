//! The supervisor against the simulated spine: each scenario's promise, scored against the
//! simulator's ground truth.

use metaloop::demo::report::{DirectiveReport, Report};
use metaloop::demo::{self, DemoOptions, Sink};
use metaloop_core::verify::Method;
use metaloop_sim::Scenario;
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

fn opts(scenario: Scenario, seed: u64, cycles: u64, approver: Option<&str>) -> DemoOptions {
    DemoOptions {
        cycles,
        auto_approve_as: approver.map(str::to_string),
        ..DemoOptions::new(scenario, seed)
    }
}

fn success(r: &Report, i: usize) -> f64 {
    r.cycles[i].global_kpis["overall_success_rate"]
}

fn by_id<'a>(r: &'a Report, id: &str) -> &'a DirectiveReport {
    r.directives.iter().find(|d| d.id == id).unwrap()
}

#[test]
fn seed_closes_the_success_gap_by_raising_the_threshold() {
    let r = run(&opts(Scenario::Seed, 1, 24, Some("ops")));
    assert_eq!(r.cycles.len(), 24);
    let first = success(&r, 0);
    let last = success(&r, 23);
    assert!(
        last - first >= 0.03,
        "success rate went from {first:.3} to {last:.3}"
    );
    let raised: Vec<&DirectiveReport> = r
        .directives
        .iter()
        .filter(|d| d.directive_type == "ADJUST_THRESHOLD" && d.status == "verified")
        .collect();
    assert!(!raised.is_empty(), "no verified threshold change");
    for d in raised {
        assert_eq!(d.previous.as_ref().and_then(|v| v.as_f64()), Some(0.70));
        assert!((d.current.as_ref().and_then(|v| v.as_f64()).unwrap() - 0.75).abs() < 1e-9);
        let v = d.verdict.as_ref().unwrap();
        assert_eq!(v.outcome, "verified");
        let p = v.p_value.unwrap();
        assert!(p < 0.01, "p = {p}");
        assert!(v.effect > 0.0);
        let t = &v.details["target"];
        // the baseline gate: at least 300 observations before the change
        assert!(t["n_pre"].as_u64().unwrap() >= 300 && t["n_post"].as_u64().unwrap() >= 1);
        assert_eq!(t["test"], "mixture_sequential");
        let truth = d.truth.as_ref().unwrap();
        assert!(
            truth.effect > 0.0 && !truth.harmful,
            "the simulator agrees the change helps"
        );
    }
    // the summaries tell humans what happened, in the seed's words
    assert!(
        r.cycles.iter().any(|c| c
            .summary
            .contains("planner confidence threshold from 70% to 75%")),
        "no summary reports the threshold change"
    );
}

#[test]
fn bad_directive_is_rolled_back_and_the_rollback_verified() {
    for seed in 1..=3 {
        let r = run(&opts(Scenario::BadDirective, seed, 36, Some("ops")));
        let harmful: Vec<&DirectiveReport> = r
            .directives
            .iter()
            .filter(|d| {
                d.rollback_of.is_none()
                    && d.truth.as_ref().is_some_and(|t| t.harmful)
                    && d.previous.is_some()
            })
            .collect();
        assert!(
            !harmful.is_empty(),
            "seed {seed}: the scenario produced no harmful directive"
        );
        for d in harmful {
            // a harmful directive still being verified at the end is not yet judged
            if d.status == "verifying" {
                continue;
            }
            assert_eq!(
                d.status, "rolled_back",
                "seed {seed}: harmful directive {} ended {}",
                d.id, d.status
            );
            let rb = by_id(&r, d.rolled_back_by.as_ref().unwrap());
            assert_eq!(rb.directive_type, "ROLLBACK_CHANGE");
            assert_eq!(
                rb.current, d.previous,
                "the rollback restores the acknowledged previous value"
            );
            if rb.status != "verifying" {
                assert_eq!(
                    rb.status, "verified",
                    "seed {seed}: rollback {} ended {}",
                    rb.id, rb.status
                );
            }
        }
    }
}

/// Directives (rollbacks included) verified although they had no true effect, and all
/// directives that reached a verdict, over `noise` seeds 1–20.
fn noise_false_positives(method: Method) -> (usize, usize) {
    let mut fooled = 0;
    let mut judged = 0;
    for seed in 1..=20 {
        let o = DemoOptions {
            method,
            ..opts(Scenario::Noise, seed, 96, Some("ops"))
        };
        let r = run(&o);
        for d in &r.directives {
            let Some(v) = &d.verdict else { continue };
            judged += 1;
            let truth = d
                .truth
                .as_ref()
                .expect("every applied directive has a truth");
            assert_eq!(truth.effect, 0.0, "noise directives have no effect");
            if v.outcome == "verified" {
                fooled += 1;
            }
        }
    }
    (fooled, judged)
}

#[test]
fn noise_rarely_fools_metaloop_and_often_fools_the_naive_rule() {
    let (fp, n) = noise_false_positives(Method::Metaloop);
    let (naive_fp, naive_n) = noise_false_positives(Method::Naive);
    eprintln!(
        "noise, seeds 1-20: metaloop verified {fp} of {n} no-effect directives ({:.1}%); naive verified {naive_fp} of {naive_n} ({:.1}%)",
        100.0 * fp as f64 / n.max(1) as f64,
        100.0 * naive_fp as f64 / naive_n.max(1) as f64
    );
    assert!(n >= 20, "too few directives judged to say anything: {n}");
    assert!(
        fp * 20 <= n,
        "metaloop verified {fp} of {n} directives that had no true effect"
    );
    assert!(
        naive_fp * 5 >= naive_n,
        "the naive rule should be fooled often: {naive_fp} of {naive_n}"
    );
}

#[test]
fn correlated_fault_gets_one_root_directive() {
    for seed in 1..=3 {
        let r = run(&opts(Scenario::Correlated, seed, 36, Some("ops")));
        let issued: Vec<&DirectiveReport> = r
            .directives
            .iter()
            .filter(|d| d.rollback_of.is_none())
            .collect();
        assert_eq!(
            issued.len(),
            1,
            "seed {seed}: expected one root directive, got {:?}",
            issued
                .iter()
                .map(|d| (&d.directive_type, &d.target_domain, &d.knob))
                .collect::<Vec<_>>()
        );
        let root = issued[0];
        assert_eq!(root.target_domain, "infrastructure");
        assert_eq!(
            root.policy_id.as_deref(),
            Some("contain_dependency_cascade")
        );
        assert_eq!(root.knob, "playbook.failover-db-primary.enabled");
        assert!(root.truth.as_ref().unwrap().effect > 0.0);
        assert_eq!(root.status, "verified");
    }
}

#[test]
fn approver_away_never_applies_what_needs_approval() {
    let mut needing = 0;
    for seed in 1..=3 {
        // the flag is given, but the simulated approver is away
        let r = run(&opts(Scenario::ApproverAway, seed, 36, Some("ops")));
        for d in r.directives.iter().filter(|d| d.requires_approval) {
            needing += 1;
            assert!(d.approvals.is_empty());
            assert!(
                matches!(d.status.as_str(), "expired" | "pending_approval"),
                "{} ended {}",
                d.id,
                d.status
            );
            assert!(
                d.lifecycle.iter().all(|(s, _)| s != "published"),
                "{} was published",
                d.id
            );
            assert!(d.previous.is_none(), "{} was applied", d.id);
        }
    }
    assert!(
        needing > 0,
        "no directive needed approval: the test proves nothing"
    );
}

#[test]
fn without_an_approver_directives_needing_approval_expire() {
    let r = run(&opts(Scenario::Seed, 1, 24, None));
    let moderate: Vec<&DirectiveReport> = r
        .directives
        .iter()
        .filter(|d| d.requires_approval)
        .collect();
    assert!(!moderate.is_empty());
    for d in moderate {
        assert!(matches!(d.status.as_str(), "expired" | "pending_approval"));
    }
}

#[test]
fn runs_are_deterministic_from_the_seed() {
    let a = serde_json::to_value(run(&opts(Scenario::Drift, 4, 16, Some("ops")))).unwrap();
    let b = serde_json::to_value(run(&opts(Scenario::Drift, 4, 16, Some("ops")))).unwrap();
    assert_eq!(a, b);
    let c = serde_json::to_value(run(&opts(Scenario::Drift, 5, 16, Some("ops")))).unwrap();
    assert_ne!(a["cycles"], c["cycles"]);
}

#[test]
fn drift_retires_the_decaying_playbook() {
    let r = run(&opts(Scenario::Drift, 1, 36, Some("ops")));
    let retired = r
        .directives
        .iter()
        .find(|d| {
            d.directive_type == "DISABLE_PLAYBOOK" && d.knob == "playbook.restart-service.enabled"
        })
        .expect("the decaying playbook was not retired");
    assert_eq!(retired.status, "verified");
    assert!(retired.truth.as_ref().unwrap().effect > 0.0);
}
