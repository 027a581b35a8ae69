//! Prints the analytic expected KPIs of every scenario and the ground truth of its key
//! directives: `cargo run -p metaloop-sim --example calibration`.

use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::time::Timestamp;
use metaloop_sim::{ExpectedKpis, Scenario, Spine};
use serde_json::json;

fn directive(
    id: &str,
    domain: &str,
    knob: &str,
    action: &str,
    parameters: serde_json::Value,
    kpi: &str,
) -> DirectiveMessage {
    DirectiveMessage {
        directive_id: id.to_string(),
        directive_type: "ADJUST_THRESHOLD".to_string(),
        target_domain: domain.to_string(),
        target_subsystem: "planner".to_string(),
        knob: knob.to_string(),
        action: action.to_string(),
        parameters,
        target_kpi: kpi.to_string(),
        rollback_of: None,
        justification: "calibration".to_string(),
    }
}

fn row(label: &str, k: &ExpectedKpis) {
    println!(
        "  {label:<44} success {:.4}  recovery {:6.2} s  autonomy {:.4}  intervention {:.4}  compliance {:.2}",
        k.overall_success_rate,
        k.mean_recovery_time_seconds,
        k.autonomy_rate,
        k.human_intervention_rate,
        k.compliance_score
    );
}

fn apply(spine: &mut Spine, d: DirectiveMessage) {
    let now = spine.now();
    let ack = spine.deliver(&d, now);
    match spine.truth(&d.directive_id) {
        Some(t) => {
            println!(
                "  {} {} {} -> {}: effect on {} {:+.4} harmful {}",
                t.target_domain, t.knob, t.previous, t.current, t.target_kpi, t.effect, t.harmful
            );
            row("    before (steady)", &t.kpis_before);
            row("    after (steady)", &t.kpis_after);
        }
        None => println!("  refused: {:?}", ack.data),
    }
}

fn main() {
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("valid time");
    let min = |m: i64| start.plus_millis(m * 60_000);
    let mut sink = Vec::new();
    for scenario in Scenario::ALL {
        println!("{scenario}: {}", scenario.description());
        let mut spine = Spine::new(scenario, 1, start);
        for d in spine.domains() {
            row(&d, &spine.expected_kpis(&d).expect("known domain"));
        }
        let threshold = "planner.confidence_threshold";
        let kpi = "overall_success_rate";
        match scenario {
            Scenario::Seed | Scenario::BadDirective | Scenario::Noise => {
                let up = |id: &str| {
                    directive(
                        id,
                        "application",
                        threshold,
                        "adjust",
                        json!({"adjustment": 0.05}),
                        kpi,
                    )
                };
                apply(&mut spine, up("raise-1"));
                apply(&mut spine, up("raise-2"));
                spine.run_until(min(10), &mut sink);
                row(
                    "application 10 min after the raises",
                    &spine.expected_kpis("application").expect("known"),
                );
                let set = |id: &str, v: f64| {
                    directive(
                        id,
                        "application",
                        threshold,
                        "set",
                        json!({"value": v}),
                        kpi,
                    )
                };
                apply(&mut spine, set("restore", 0.70));
                let probe = directive(
                    "probe",
                    "infrastructure",
                    "probe.synthetic.enabled",
                    "set",
                    json!({"value": true}),
                    "mean_recovery_time_seconds",
                );
                apply(&mut spine, probe);
            }
            Scenario::Drift => {
                for m in [0, 20, 30, 40, 50, 60] {
                    spine.run_until(min(m), &mut sink);
                    row(
                        &format!("application at {m} min"),
                        &spine.expected_kpis("application").expect("known"),
                    );
                }
                let off = directive(
                    "disable",
                    "application",
                    "playbook.restart-service.enabled",
                    "set",
                    json!({"value": false}),
                    kpi,
                );
                apply(&mut spine, off);
            }
            Scenario::Correlated => {
                spine.run_until(min(25), &mut sink);
                for d in spine.domains() {
                    row(
                        &format!("{d} at 25 min"),
                        &spine.expected_kpis(&d).expect("known"),
                    );
                }
                let failover = directive(
                    "failover",
                    "infrastructure",
                    "playbook.failover-db-primary.enabled",
                    "set",
                    json!({"value": true}),
                    kpi,
                );
                apply(&mut spine, failover);
                spine.run_until(min(30), &mut sink);
                for d in spine.domains() {
                    row(
                        &format!("{d} at 30 min"),
                        &spine.expected_kpis(&d).expect("known"),
                    );
                }
            }
            Scenario::ApproverAway => println!("  approver present: {}", spine.approver_present()),
        }
        println!();
    }
}
