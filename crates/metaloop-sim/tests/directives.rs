//! `Spine::deliver`: acknowledgements with previous/current values, refusals with specific
//! reasons, idempotent redelivery, and truth only for applied directives.

mod setup;

use metaloop_core::protocol::{DirectiveMessage, EventData, SpineEvent};
use metaloop_sim::{Scenario, Spine};
use serde_json::{Value, json};
use setup::{directive, minutes};

const THRESHOLD: &str = "planner.confidence_threshold";

fn refusal(ack: &SpineEvent) -> String {
    match &ack.data {
        EventData::DirectiveRefused(r) => r.reason.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn applied(ack: &SpineEvent) -> (Value, Value) {
    match &ack.data {
        EventData::DirectiveApplied(a) => (a.previous.clone(), a.current.clone()),
        other => panic!("expected an application, got {other:?}"),
    }
}

fn refuse(spine: &mut Spine, d: DirectiveMessage, expect: &[&str]) {
    let ack = spine.deliver(&d, spine.now());
    let reason = refusal(&ack);
    for part in expect {
        assert!(reason.contains(part), "reason {reason:?} lacks {part:?}");
    }
    assert!(
        spine.truth(&d.directive_id).is_none(),
        "a refused directive has no truth"
    );
}

#[test]
fn refusals_name_what_is_wrong() {
    let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
    let kpi = "overall_success_rate";
    refuse(
        &mut spine,
        directive(
            "a",
            "databases",
            THRESHOLD,
            "set",
            json!({"value": 0.8}),
            kpi,
        ),
        &["unknown domain 'databases'", "application, security"],
    );
    refuse(
        &mut spine,
        directive(
            "b",
            "application",
            "planner.speed",
            "set",
            json!({"value": 1}),
            kpi,
        ),
        &[
            "unknown knob 'planner.speed'",
            "planner.confidence_threshold",
        ],
    );
    refuse(
        &mut spine,
        directive(
            "c",
            "application",
            "playbook.reboot-node.enabled",
            "set",
            json!({"value": false}),
            kpi,
        ),
        &[
            "unknown playbook 'reboot-node' in domain application",
            "restart-service",
        ],
    );
    refuse(
        &mut spine,
        directive(
            "d",
            "application",
            "probe.canary.enabled",
            "set",
            json!({"value": true}),
            kpi,
        ),
        &["unknown probe 'canary'", "synthetic"],
    );
    refuse(
        &mut spine,
        directive(
            "e",
            "application",
            THRESHOLD,
            "increase",
            json!({"adjustment": 0.05}),
            kpi,
        ),
        &["unknown action 'increase'"],
    );
    refuse(
        &mut spine,
        directive(
            "f",
            "application",
            "probe.synthetic.enabled",
            "adjust",
            json!({"adjustment": 1}),
            kpi,
        ),
        &["'adjust' does not apply to boolean knob probe.synthetic.enabled"],
    );
    refuse(
        &mut spine,
        directive(
            "g",
            "application",
            THRESHOLD,
            "adjust",
            json!({"value": 0.75}),
            kpi,
        ),
        &["parameters.adjustment must be a number, got nothing"],
    );
    refuse(
        &mut spine,
        directive(
            "h",
            "application",
            THRESHOLD,
            "set",
            json!({"value": "0.75"}),
            kpi,
        ),
        &["parameters.value must be a number, got \"0.75\""],
    );
    refuse(
        &mut spine,
        directive(
            "i",
            "application",
            "playbook.scale-out.enabled",
            "set",
            json!({"value": "off"}),
            kpi,
        ),
        &["parameters.value must be true or false"],
    );
    refuse(
        &mut spine,
        directive(
            "j",
            "application",
            THRESHOLD,
            "adjust",
            json!({"adjustment": 0.3}),
            kpi,
        ),
        &["value 1 out of range [0.5, 0.95]"],
    );
    refuse(
        &mut spine,
        directive(
            "k",
            "application",
            THRESHOLD,
            "set",
            json!({"value": 0.4}),
            kpi,
        ),
        &["value 0.4 out of range"],
    );
    assert_eq!(
        spine.knob("application", THRESHOLD),
        Some(json!(0.7)),
        "nothing changed"
    );

    let off = |id: &str, p: &str| {
        directive(
            id,
            "infrastructure",
            &format!("playbook.{p}.enabled"),
            "set",
            json!({"value": false}),
            kpi,
        )
    };
    let (prev, cur) = applied(&spine.deliver(&off("l", "reboot-node"), minutes(0)));
    assert_eq!((prev, cur), (json!(true), json!(false)));
    refuse(
        &mut spine,
        off("m", "drain-node"),
        &[
            "disabling playbook drain-node would leave incidents planned for reboot-node, drain-node with no enabled playbook",
        ],
    );
    assert_eq!(spine.truths().count(), 1);
}

#[test]
fn unknown_domain_refusals_come_from_the_spine_itself() {
    let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
    let ack = spine.deliver(
        &directive(
            "x",
            "billing",
            THRESHOLD,
            "set",
            json!({"value": 0.8}),
            "overall_success_rate",
        ),
        minutes(0),
    );
    assert_eq!(ack.source, "urn:spine");
    let known = spine.deliver(
        &directive(
            "y",
            "security",
            THRESHOLD,
            "set",
            json!({"value": 2}),
            "overall_success_rate",
        ),
        minutes(0),
    );
    assert_eq!(known.source, "urn:spine:security");
}

#[test]
fn acks_carry_previous_and_current_values_and_redelivery_is_idempotent() {
    let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
    spine.run_until(minutes(5), &mut Vec::new());
    let up = directive(
        "up",
        "application",
        THRESHOLD,
        "adjust",
        json!({"adjustment": 0.05}),
        "overall_success_rate",
    );
    let ack = spine.deliver(&up, minutes(5));
    assert_eq!(ack.time, minutes(5));
    assert_eq!(ack.source, "urn:spine:application");
    assert_eq!(ack.data.type_name(), "meta.directive.applied");
    assert_eq!(applied(&ack), (json!(0.7), json!(0.75)));
    assert_eq!(spine.knob("application", THRESHOLD), Some(json!(0.75)));
    assert_eq!(
        spine.knob("security", THRESHOLD),
        Some(json!(0.7)),
        "other domains untouched"
    );

    assert_eq!(
        spine.deliver(&up, minutes(5)),
        ack,
        "redelivery returns the first ack"
    );
    assert_eq!(
        spine.knob("application", THRESHOLD),
        Some(json!(0.75)),
        "and applies nothing twice"
    );
    assert_eq!(spine.truths().count(), 1);

    let down = directive(
        "down",
        "application",
        THRESHOLD,
        "adjust",
        json!({"adjustment": -0.05}),
        "overall_success_rate",
    );
    assert_eq!(
        applied(&spine.deliver(&down, minutes(5))),
        (json!(0.75), json!(0.7)),
        "back exactly on 0.70"
    );
    let rollback = DirectiveMessage {
        rollback_of: Some("up".into()),
        ..directive(
            "rb",
            "application",
            THRESHOLD,
            "set",
            json!({"value": 0.7}),
            "overall_success_rate",
        )
    };
    assert_eq!(
        applied(&spine.deliver(&rollback, minutes(5))),
        (json!(0.7), json!(0.7))
    );
    assert_eq!(
        spine.truth("rb").unwrap().effect,
        0.0,
        "a no-op has no effect"
    );

    let probe = directive(
        "probe",
        "security",
        "probe.synthetic.enabled",
        "set",
        json!({"value": true}),
        "mean_recovery_time_seconds",
    );
    assert_eq!(
        applied(&spine.deliver(&probe, minutes(5))),
        (json!(false), json!(true))
    );
    assert_eq!(
        spine.knob("security", "probe.synthetic.enabled"),
        Some(json!(true))
    );
    assert_eq!(spine.knob("security", "probe.other.enabled"), None);
    assert_eq!(spine.knob("nowhere", THRESHOLD), None);

    let ids: Vec<&str> = spine.truths().map(|t| t.directive_id.as_str()).collect();
    assert_eq!(ids, ["up", "down", "rb", "probe"]);
    let t = spine.truth("up").unwrap();
    assert_eq!(
        (t.previous.clone(), t.current.clone(), t.applied_at),
        (json!(0.7), json!(0.75), minutes(5))
    );
}

#[test]
fn noise_truth_is_exactly_zero_for_every_kind_of_directive() {
    let kpis = [
        "overall_success_rate",
        "mean_recovery_time_seconds",
        "autonomy_rate",
        "human_intervention_rate",
        "compliance_score",
    ];
    let mut spine = Spine::new(Scenario::Noise, 1, minutes(0));
    spine.run_until(minutes(30), &mut Vec::new());
    let mut n = 0;
    let mut deliver = |spine: &mut Spine, domain: &str, knob: &str, action: &str, p: Value| {
        n += 1;
        let kpi = kpis[n % kpis.len()];
        let d = directive(&format!("n{n}"), domain, knob, action, p.clone(), kpi);
        applied(&spine.deliver(&d, minutes(30)));
        let t = spine.truth(&d.directive_id).unwrap();
        assert_eq!(t.effect, 0.0, "{domain} {knob} {p} on {kpi}");
        assert!(!t.harmful, "{domain} {knob} {p} on {kpi}");
        assert_eq!(t.kpis_before, t.kpis_after, "{domain} {knob} {p}");
    };
    for domain in ["infrastructure", "application", "security"] {
        for p in [
            json!({"adjustment": 0.05}),
            json!({"adjustment": 0.1}),
            json!({"adjustment": -0.35}),
            json!({"adjustment": 0.25}),
        ] {
            deliver(&mut spine, domain, THRESHOLD, "adjust", p);
        }
        for v in [0.95, 0.5, 0.7, 0.85] {
            deliver(&mut spine, domain, THRESHOLD, "set", json!({"value": v}));
        }
        deliver(
            &mut spine,
            domain,
            "probe.synthetic.enabled",
            "set",
            json!({"value": true}),
        );
        for playbook in spine.playbooks(domain).unwrap() {
            let knob = format!("playbook.{playbook}.enabled");
            let flipped = !spine.knob(domain, &knob).unwrap().as_bool().unwrap();
            deliver(&mut spine, domain, &knob, "set", json!({"value": flipped}));
            deliver(&mut spine, domain, &knob, "set", json!({"value": !flipped}));
        }
    }
    assert!(spine.truths().count() > 40);
}

#[test]
fn adjust_confidence_widens_the_review_band_trading_success_for_speed_not_autonomy() {
    let mut spine = Spine::new(Scenario::Seed, 1, minutes(0));
    let before = spine.expected_kpis("application").unwrap();
    let mut d = directive(
        "band",
        "application",
        "planner.review_band",
        "adjust",
        json!({"adjustment": 0.2}),
        "mean_recovery_time_seconds",
    );
    d.directive_type = "ADJUST_CONFIDENCE".into();
    let ack = spine.deliver(&d, spine.now());
    assert_eq!(applied(&ack), (json!(0.0), json!(0.2)));
    let after = spine.expected_kpis("application").unwrap();
    // incidents just below the threshold now run the planner's playbook after a human's
    // approval instead of by hand: faster, not autonomous, less sure
    assert!(
        after.mean_recovery_time_seconds < before.mean_recovery_time_seconds - 1.0,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.autonomy_rate, before.autonomy_rate);
    assert_eq!(
        after.human_intervention_rate,
        before.human_intervention_rate
    );
    assert!(
        after.overall_success_rate < before.overall_success_rate,
        "{before:?} -> {after:?}"
    );
    let truth = spine
        .truth("band")
        .expect("an applied directive has its truth");
    assert!(truth.effect > 0.0, "recovery time is the target: {truth:?}");
    let mut too_wide = directive(
        "wide",
        "application",
        "planner.review_band",
        "set",
        json!({"value": 0.7}),
        "mean_recovery_time_seconds",
    );
    too_wide.directive_type = "ADJUST_CONFIDENCE".into();
    refuse(
        &mut spine,
        too_wide,
        &["out of range [0, 0.5] for planner.review_band"],
    );
}
