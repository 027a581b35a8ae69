//! Shadow mode: decisions are made and recorded as would-have directives, never published,
//! and match a live run's decisions until the live run's first change takes effect.

use metaloop::demo::report::Report;
use metaloop::demo::{self, DemoOptions, Sink};
use metaloop_core::policy::PolicyMode;
use metaloop_core::record::Entry;
use metaloop_sim::Scenario;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

fn run(opts: &DemoOptions) -> (Report, Vec<Entry>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records: Arc<Mutex<Vec<Entry>>> = Default::default();
    let report = rt
        .block_on(demo::run(
            opts,
            Sink::Memory(records.clone()),
            Arc::new(AtomicBool::new(false)),
            None,
        ))
        .unwrap();
    let records = records.lock().unwrap().clone();
    (report, records)
}

fn opts(shadow: bool) -> DemoOptions {
    DemoOptions {
        cycles: 48,
        auto_approve_as: Some("ops".into()),
        shadow,
        ..DemoOptions::new(Scenario::Seed, 1)
    }
}

/// (cycle, domain, knob, action) of each decision a policy made up to `until` (inclusive).
fn decisions(r: &Report, until: u64) -> Vec<(u64, String, String, String)> {
    let mut v: Vec<_> = r
        .directives
        .iter()
        .filter(|d| d.policy_id.is_some() && d.issued_cycle <= until)
        .map(|d| {
            (
                d.issued_cycle,
                d.target_domain.clone(),
                d.knob.clone(),
                d.action.to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_shadow_run_publishes_nothing_and_decides_as_the_live_run_until_its_first_change() {
    let (shadow, records) = run(&opts(true));
    assert!(
        !shadow.directives.is_empty(),
        "the shadow run decided nothing"
    );
    assert!(shadow.directives.iter().all(|d| d.shadow));
    assert_eq!(shadow.totals.published, 0);
    assert_eq!(shadow.totals.shadow, shadow.directives.len());
    assert!(records.iter().all(|e| e.action != "directive.published"));
    assert!(
        records
            .iter()
            .filter(|e| e.action == "directive.shadow")
            .count()
            == shadow.directives.len(),
        "every would-have decision is recorded"
    );
    // the would-have decisions were not applied: the threshold never moved
    let first = shadow.cycles[0].global_kpis["overall_success_rate"];
    let last = shadow.cycles[47].global_kpis["overall_success_rate"];
    assert!(
        (last - first).abs() < 0.02,
        "success moved from {first:.3} to {last:.3} with nothing applied"
    );
    // estimated verdicts from the data that followed
    let estimated: Vec<_> = shadow
        .directives
        .iter()
        .filter(|d| d.status == "shadow_estimated")
        .collect();
    assert!(!estimated.is_empty(), "no shadow directive was estimated");
    for d in &estimated {
        let v = d.verdict.as_ref().unwrap();
        // nothing changed, so the target did not improve on its own
        assert_ne!(v.outcome, "verified", "{} estimated as verified", d.id);
    }
    assert!(records.iter().any(|e| {
        e.action == "verification.shadow_verdict"
            && e.payload["reading"]
                .as_str()
                .is_some_and(|r| r.contains("without the change"))
    }));

    let (live, _) = run(&opts(false));
    let first_change = live
        .directives
        .iter()
        .filter(|d| d.current.is_some())
        .map(|d| d.issued_cycle)
        .min()
        .expect("the live run applies a change");
    let l = decisions(&live, first_change);
    let s = decisions(&shadow, first_change);
    assert!(!l.is_empty());
    assert_eq!(
        l, s,
        "shadow and live decisions differ before the first change"
    );
    // and the ids are the same decisions
    let ids = |r: &Report| -> Vec<String> {
        let mut v: Vec<String> = r
            .directives
            .iter()
            .filter(|d| d.issued_cycle <= first_change && d.policy_id.is_some())
            .map(|d| d.id.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&live), ids(&shadow));
}

#[test]
fn a_shadow_policy_never_stands_in_a_live_policys_way() {
    // the threshold policy in shadow, the others live
    let mut cfg = metaloop_core::config::SupervisorConfig::default();
    for p in cfg.policies.iter_mut() {
        if p.directive_template.knob.contains("confidence_threshold") {
            p.mode = PolicyMode::Shadow;
        }
    }
    let shadow_ids: Vec<String> = cfg
        .policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Shadow)
        .map(|p| p.id.clone())
        .collect();
    assert!(!shadow_ids.is_empty());
    let o = DemoOptions {
        base: Some(cfg),
        ..opts(false)
    };
    let (r, _) = run(&o);
    let (sh, live): (Vec<_>, Vec<_>) = r
        .directives
        .iter()
        .filter(|d| d.policy_id.is_some())
        .partition(|d| d.shadow);
    assert!(!sh.is_empty(), "the shadow policy decided nothing");
    for d in &sh {
        assert!(shadow_ids.contains(d.policy_id.as_ref().unwrap()));
        assert!(d.lifecycle.iter().all(|(s, _)| s != "published"));
    }
    for d in &live {
        assert!(!shadow_ids.contains(d.policy_id.as_ref().unwrap()));
    }
    // nothing the shadow policy decided reached the spine: the threshold never moved
    assert!(
        r.directives
            .iter()
            .all(|d| !(d.shadow && d.current.is_some()))
    );
}
