//! The human summary of a cycle: what changed, why, the effect so far, and what is next.

use crate::directive::{Directive, DirectiveType, KnobAction, Status};
use crate::goal::Goal;
use crate::kpi::{self, KpiKind};
use crate::record::RecordBody;
use crate::snapshot::CrossDomainSnapshot;
use crate::supervisor::{State, short};
use crate::verify::{Outcome, Verdict};

/// A KPI value for humans: rates as percentages, durations in seconds.
fn fmt(kpi_name: &str, v: f64) -> String {
    if !v.is_finite() {
        return "missing".into();
    }
    match kpi::builtin(kpi_name).map(|(_, k)| k) {
        Some(KpiKind::Rate) => format!("{:.0}%", v * 100.0),
        Some(KpiKind::Duration) => format!("{v:.1}s"),
        _ => format!("{v:.1}"),
    }
}

/// A knob value for humans: thresholds as percentages.
fn fmt_value(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(x) if (0.0..=1.0).contains(&x) => format!("{:.0}%", x * 100.0),
        _ => v.to_string(),
    }
}

fn kpi_words(kpi_name: &str) -> &str {
    match kpi_name {
        kpi::OVERALL_SUCCESS_RATE => "Success rate",
        kpi::MEAN_RECOVERY_TIME => "Mean recovery time",
        kpi::AUTONOMY_RATE => "Autonomy rate",
        kpi::HUMAN_INTERVENTION_RATE => "Human intervention rate",
        kpi::COMPLIANCE_SCORE => "Compliance score",
        other => other,
    }
}

/// What a directive did, in words ("Increased application planner confidence threshold
/// from 70% to 75%").
fn change_words(
    d: &Directive,
    previous: &serde_json::Value,
    current: &serde_json::Value,
) -> String {
    let what = match d.knob.as_str() {
        crate::protocol::KNOB_PLANNER_THRESHOLD => "planner confidence threshold".to_string(),
        k => k.to_string(),
    };
    let verb = match (&d.action, d.directive_type) {
        (_, DirectiveType::RollbackChange) => "Rolled back",
        (_, DirectiveType::EnableProbe) | (_, DirectiveType::EnablePlaybook) => "Enabled",
        (_, DirectiveType::DisablePlaybook) => "Disabled",
        (KnobAction::Adjust { adjustment }, _) if *adjustment > 0.0 => "Increased",
        (KnobAction::Adjust { .. }, _) => "Decreased",
        _ => "Set",
    };
    format!(
        "{verb} {} {what} from {} to {}",
        d.target_domain,
        fmt_value(previous),
        fmt_value(current)
    )
}

/// One line about a verdict.
pub fn verdict_line(d: &Directive, v: &Verdict) -> String {
    let t = &v.target;
    let p = t.p_value.map_or(String::new(), |p| format!(", p = {p:.4}"));
    let what = if d.directive_type == DirectiveType::RollbackChange {
        "Rollback"
    } else {
        "Directive"
    };
    format!(
        "{what} {} ({} {} in {}) {}: {} {} → {} (n = {} → {}{p}). {}.",
        short(&d.id),
        d.directive_type,
        d.knob,
        d.target_domain,
        v.outcome.as_str().replace('_', " "),
        d.target_kpi,
        fmt(&t.kpi, t.pre),
        fmt(&t.kpi, t.post),
        t.n_pre,
        t.n_post,
        v.reason
    )
}

/// Renders the summary of the cycle that built `snap`, from the records since the last one.
pub fn render(
    state: &State,
    snap: &CrossDomainSnapshot,
    journal: &[std::sync::Arc<RecordBody>],
) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut touched: Vec<String> = Vec::new();
    for r in journal {
        match r.as_ref() {
            RecordBody::Applied {
                directive_id,
                previous,
                current,
                ..
            } => {
                if let Some(ds) = state.directives.get(directive_id) {
                    if ds.directive.directive_type == DirectiveType::RollbackChange {
                        continue;
                    }
                    lines.push(format!(
                        "{}.",
                        change_words(&ds.directive, previous, current)
                    ));
                    touched.push(ds.directive.target_kpi.clone());
                }
            }
            RecordBody::RolledBack {
                directive_id,
                restored,
                ..
            } => {
                if let Some(ds) = state.directives.get(directive_id) {
                    lines.push(format!(
                        "Rolled back {} {} to {} after its verification failed.",
                        ds.directive.target_domain,
                        ds.directive.knob,
                        fmt_value(restored)
                    ));
                }
            }
            RecordBody::VerdictReached {
                directive_id,
                verdict,
            } => {
                if let Some(ds) = state.directives.get(directive_id) {
                    lines.push(verdict_line(&ds.directive, verdict));
                    touched.push(ds.directive.target_kpi.clone());
                }
            }
            RecordBody::Proposed { directive, .. } if directive.rollback_of.is_none() => {
                if directive.directive_type == DirectiveType::RequestReview {
                    lines.push(format!(
                        "Requested human review: {}.",
                        directive.justification
                    ));
                    continue;
                }
                let status = state.directives.get(&directive.id).map(|d| d.status);
                let gate = match status {
                    _ if directive.shadow => "shadow: recorded, not published",
                    Some(Status::PendingApproval) | Some(Status::Expired) => "waiting for approval",
                    _ => "published",
                };
                lines.push(format!(
                    "Decided {} {} in {} ({} impact, {gate}) because {} (confidence {:.2}).",
                    directive.directive_type,
                    directive.knob,
                    directive.target_domain,
                    directive.impact,
                    directive.justification,
                    directive.factors.confidence
                ));
                touched.push(directive.target_kpi.clone());
            }
            RecordBody::ShadowVerdict {
                directive_id,
                reading,
                ..
            } => {
                if let Some(ds) = state.directives.get(directive_id) {
                    lines.push(format!(
                        "Shadow {} ({} {} in {}), estimated: {reading}.",
                        short(directive_id),
                        ds.directive.directive_type,
                        ds.directive.knob,
                        ds.directive.target_domain
                    ));
                }
            }
            RecordBody::Refused {
                directive_id,
                reason,
            } => {
                lines.push(format!(
                    "The spine refused directive {}: {reason}.",
                    short(directive_id)
                ));
            }
            RecordBody::Expired { directive_id } => {
                lines.push(format!(
                    "Directive {} expired without approval; not applied.",
                    short(directive_id)
                ));
            }
            RecordBody::Rejected {
                directive_id,
                approver,
                ..
            } => {
                lines.push(format!(
                    "{approver} rejected directive {}; not applied.",
                    short(directive_id)
                ));
            }
            RecordBody::AckTimedOut { directive_id } => {
                lines.push(format!(
                    "No ack for directive {} yet; not assumed applied.",
                    short(directive_id)
                ));
            }
            RecordBody::AlertFired { alert } => lines.push(format!("Alert: {}.", alert.message)),
            RecordBody::AlertResolved { key, .. } => lines.push(format!("Resolved: {key}.")),
            _ => {}
        }
    }
    // a recommendation is news when a verdict of its policy just came in, or when the policy
    // just went silent
    let judged: Vec<&str> = journal
        .iter()
        .filter_map(|r| match r.as_ref() {
            RecordBody::TrackRecordUpdated { policy_id, .. } => Some(policy_id.as_str()),
            _ => None,
        })
        .collect();
    for r in state.recommendations() {
        let news = match r.kind {
            crate::supervisor::RecommendationKind::Silent => {
                let last = state
                    .directives
                    .values()
                    .filter(|d| d.directive.policy_id.as_deref() == Some(r.policy_id.as_str()))
                    .map(|d| d.directive.issued_cycle)
                    .max()
                    .unwrap_or(0);
                state.cycle == last + crate::supervisor::SILENT_CYCLES
            }
            _ => judged.contains(&r.policy_id.as_str()),
        };
        if news {
            lines.push(format!("Recommendation (not applied): {}.", r.text));
        }
    }
    // effect so far on the KPIs we acted on, first cycle vs now
    touched.sort();
    touched.dedup();
    if touched.is_empty() {
        touched.push(kpi::OVERALL_SUCCESS_RATE.to_string());
    }
    for k in &touched {
        let (Some(now), Some(goal)) = (
            snap.global_kpis.get(k),
            state.goals.iter().find(|g| &g.kpi == k),
        ) else {
            continue;
        };
        lines.push(progress(state, k, *now, goal));
    }
    for p in &snap.patterns {
        lines.push(format!("Pattern: {}.", p.describe()));
    }
    let verifying = state
        .directives
        .values()
        .filter(|d| d.status == Status::Verifying)
        .count();
    let pending = state
        .directives
        .values()
        .filter(|d| d.status == Status::PendingApproval)
        .count();
    let mut next = Vec::new();
    if verifying > 0 {
        next.push(format!("verifying {verifying} directive(s)"));
    }
    if pending > 0 {
        next.push(format!("{pending} awaiting approval"));
    }
    let next = if next.is_empty() {
        "Will continue monitoring.".to_string()
    } else {
        format!("Next: {}. Will continue monitoring.", next.join(", "))
    };
    lines.push(next);
    format!("Cycle {} ({}): {}", snap.cycle, snap.time, lines.join(" "))
}

fn progress(state: &State, k: &str, now: f64, goal: &Goal) -> String {
    let target = fmt(k, goal.target);
    // "improved" only when a verified directive on this KPI explains the move; otherwise
    // the number is reported next to where it started, without a claim
    let verified = state
        .directives
        .values()
        .any(|d| d.status == Status::Verified && d.directive.target_kpi == k);
    match state.first_kpis.get(k) {
        Some(first) if verified && goal.direction.better(now - first) > 0.0 => format!(
            "{} improved from {} to {} (target: {target}).",
            kpi_words(k),
            fmt(k, *first),
            fmt(k, now)
        ),
        Some(first) if (first - now).abs() > f64::EPSILON => format!(
            "{} {} (target: {target}; {} at the first cycle).",
            kpi_words(k),
            fmt(k, now),
            fmt(k, *first)
        ),
        _ => format!("{} {} (target: {target}).", kpi_words(k), fmt(k, now)),
    }
}

/// Whether an outcome counts as a failure for alerts and learning.
pub fn is_failure(o: Outcome) -> bool {
    matches!(o, Outcome::NoEffect | Outcome::Degraded)
}
