//! The approvals inbox (pending directives with why they were proposed, what they change, the
//! approval rule that routed them and the policy's track record; approve or reject with a
//! note) and the list of all directives. Decisions go through the API's own code path.

use super::layout::{self, Frame, Nav};
use super::{DashState, api_error_page, checked_post, html_page, signed_in};
use crate::api::auth::APPROVERS;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use metaloop_core::directive::{ImpactLevel, KnobAction, Status};
use metaloop_core::pipeline::ApprovalMatrix;
use metaloop_core::policy::TrackRecord;
use metaloop_core::supervisor::DirectiveState;
use metaloop_core::time::Timestamp;
use serde::Deserialize;
use std::collections::HashMap;

/// A pending directive with everything an approver needs.
pub(crate) struct Pending {
    pub ds: DirectiveState,
    pub policy_name: Option<String>,
    pub track: Option<TrackRecord>,
    /// The policy's earlier directives: id, status, verdict outcome.
    pub history: Vec<(String, String, Option<String>)>,
    /// The knob's last acknowledged value.
    pub current: Option<serde_json::Value>,
    pub rule: String,
}

/// The approval rule that applies to `impact` in `environment`, in words.
pub(crate) fn rule_text(m: &ApprovalMatrix, impact: ImpactLevel, environment: &str) -> String {
    let req = m.requirement(impact, environment);
    let rule = m
        .rules
        .iter()
        .filter(|r| r.impact <= impact)
        .max_by_key(|r| r.impact);
    let needs = match req.approvals {
        0 => "published without approval".to_string(),
        1 => "1 approval".to_string(),
        n => format!("{n} distinct approvers"),
    };
    let note = if req.review_note {
        ", each with a review note"
    } else {
        ""
    };
    match rule {
        Some(r) => {
            let scope = if r.environments.is_empty() {
                "in every environment".to_string()
            } else if r.environments.iter().any(|e| e == environment) {
                format!("in {}", r.environments.join(", "))
            } else {
                format!("outside {}", r.environments.join(", "))
            };
            format!(
                "{impact} {scope} (rule for {}): {needs}{note}; approvals expire after {}",
                r.impact,
                layout::duration(m.ttl_seconds * 1000)
            )
        }
        None => format!("{impact}: no rule at or below it, so {needs}{note}"),
    }
}

/// The value a knob will have after the directive, from its last acknowledged value.
pub(crate) fn new_value(
    action: &KnobAction,
    current: Option<&serde_json::Value>,
) -> serde_json::Value {
    match action {
        KnobAction::Set { value } => value.clone(),
        KnobAction::Adjust { adjustment } => match current.and_then(|c| c.as_f64()) {
            Some(c) => serde_json::json!(((c + adjustment) * 1e9).round() / 1e9),
            None => serde_json::json!(format!("{adjustment:+}")),
        },
    }
}

pub(crate) async fn pending(
    st: &DashState,
    only: Option<String>,
) -> Result<Vec<Pending>, crate::api::ApiError> {
    Ok(st
        .api
        .runtime
        .call(move |sup| {
            let s = sup.state();
            s.order
                .iter()
                .map(|id| &s.directives[id])
                .filter(|d| match &only {
                    Some(id) => &d.directive.id == id,
                    None => d.status == Status::PendingApproval,
                })
                .map(|ds| {
                    let d = &ds.directive;
                    let policy = d.policy_id.as_ref().and_then(|p| s.policies.get(p));
                    let history = s
                        .order
                        .iter()
                        .rev()
                        .map(|id| &s.directives[id])
                        .filter(|o| {
                            o.directive.id != d.id
                                && o.directive.policy_id == d.policy_id
                                && d.policy_id.is_some()
                        })
                        .take(5)
                        .map(|o| {
                            (
                                o.directive.id.clone(),
                                o.status.as_str().to_string(),
                                o.verdict.as_ref().map(|v| v.outcome.as_str().to_string()),
                            )
                        })
                        .collect();
                    Pending {
                        policy_name: policy.map(|p| p.policy.name.clone()),
                        track: policy.map(|p| p.track),
                        history,
                        current: s.knob_values.get(&d.knob_key()).cloned(),
                        rule: rule_text(&s.approval, ds.effective_impact, &s.environment),
                        ds: ds.clone(),
                    }
                })
                .collect()
        })
        .await?)
}

/// `GET /approvals`.
pub async fn page(State(st): State<DashState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match signed_in(&st, &headers, &uri) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let frame = match Frame::load(&st, session).await {
        Ok(f) => f,
        Err(e) => return api_error_page(e),
    };
    let items = match pending(&st, None).await {
        Ok(p) => p,
        Err(e) => return api_error_page(e),
    };
    let now = (st.api.clock)();
    let body = html! {
        h1 { "Approvals" }
        @if items.is_empty() {
            p class="empty" id="inbox-empty" { "Nothing waits for approval." }
        }
        @for p in &items {
            (card(&st, &frame, p, now))
        }
    };
    html_page(frame.page("Approvals", Nav::Approvals, body))
}

/// One pending directive: why, what, the rule, the track record and the decision form.
pub(crate) fn card(st: &DashState, frame: &Frame, p: &Pending, now: Timestamp) -> Markup {
    let ds = &p.ds;
    let d = &ds.directive;
    let evaluation = st.api.history.issuing_evaluation(&d.id);
    let may = frame.may(APPROVERS);
    let f = &d.factors;
    let bar = |label: &str, v: f64| {
        html! {
            div class="factor" {
                span class="factor-label" { (label) }
                meter min="0" max="1" value=(format!("{v:.3}")) {}
                span class="factor-value" { (format!("{v:.3}")) }
            }
        }
    };
    html! {
        article class="card pending-card" id=(format!("pending-{}", d.id)) data-impact=(ds.effective_impact.as_str()) {
            header {
                h2 {
                    a href=(format!("/directives/{}", d.id)) { (d.directive_type) " " (d.knob) }
                    " in " (d.target_domain)
                }
                span class=(format!("pill impact-{}", ds.effective_impact.as_str().to_lowercase())) { (ds.effective_impact) }
                span class="mono" { (layout::short(&d.id)) }
                @if let Some(t) = ds.expires_at {
                    span class=@if t.millis() - now.millis() < 600_000 { "expiry soon" } @else { "expiry" } {
                        "expires " (layout::time(t)) " (in " (layout::duration(t.millis() - now.millis())) ")"
                    }
                }
            }
            div class="grid2" {
                section {
                    h3 { "Why" }
                    p { (d.justification) }
                    dl {
                        dt { "Policy" }
                        dd {
                            @match (&d.policy_id, &p.policy_name) {
                                (Some(id), Some(name)) => { a href="/policies" { (id) } " — " (name) },
                                (Some(id), None) => { (id) },
                                (None, _) => { "the verification layer (no policy)" },
                            }
                        }
                        @if let Some(ev) = &evaluation {
                            dt { "Condition" }
                            dd {
                                @if ev.record["condition"]["holds"].as_bool() == Some(true) { "held " } @else { "did not hold " }
                                (ev.record["streak"].as_u64().unwrap_or(0)) " consecutive cycle(s) at cycle " (ev.cycle)
                                ul class="values" {
                                    @for (k, v) in ev.record["condition"]["values"].as_object().into_iter().flatten() {
                                        li { span class="mono" { (k) } " = " (v.as_f64().map(|x| format!("{x:.4}")).unwrap_or_else(|| v.to_string())) }
                                    }
                                }
                            }
                        }
                        dt { "Confidence" }
                        dd {
                            strong class="confidence" { (format!("{:.3}", f.confidence)) }
                            " = evidence × track record × coverage"
                            (bar("evidence", f.evidence))
                            (bar("track record", f.track_record))
                            (bar("coverage", f.coverage))
                        }
                        dt { "Routed by" }
                        dd class="rule" { (p.rule) }
                    }
                }
                section {
                    h3 { "What it changes" }
                    table class="change" {
                        tr { th { "knob" } td class="mono" { (d.target_domain) "/" (d.knob) } }
                        tr { th { "previous → new" } td class="mono" {
                            (p.current.as_ref().map(layout::value).unwrap_or_else(|| "not acknowledged yet".into()))
                            " → " (layout::value(&new_value(&d.action, p.current.as_ref())))
                        } }
                        tr { th { "target KPI" } td { (layout::kpi_label(&d.target_kpi)) } }
                        @if !d.expected_impact.is_empty() { tr { th { "expected" } td { (d.expected_impact) } } }
                        @if !d.side_effects.is_empty() {
                            tr { th { "tolerated side effects" } td {
                                @for (k, v) in &d.side_effects { (layout::kpi_label(k)) " worse by up to " (layout::tolerance(k, *v)) br; }
                            } }
                        }
                    }
                    h3 { "Track record" }
                    @if let Some(t) = &p.track {
                        p { (t.verified) " verified, " (t.failed) " failed, " (t.inconclusive) " inconclusive — score " (format!("{:.2}", t.score())) }
                    } @else { p { "no policy" } }
                    @if !p.history.is_empty() {
                        ul class="recent" {
                            @for (id, status, _) in &p.history {
                                li { a href=(format!("/directives/{id}")) class="mono" { (layout::short(id)) } " " (layout::status_pill(status)) }
                            }
                        }
                    }
                }
            }
            section class="decision" {
                h3 { "Decision" }
                @if ds.requirement.approvals > 1 || !ds.approvals.is_empty() {
                    p class="approvals-so-far" {
                        (ds.approvals.len()) " of " (ds.requirement.approvals) " approvals"
                        @for a in &ds.approvals {
                            " · " strong { (a.approver) } " at " (layout::time(a.at))
                            @if !a.note.is_empty() { " (“" (a.note) "”)" }
                        }
                    }
                }
                @if !may {
                    p class="notice" id=(format!("cannot-approve-{}", d.id)) {
                        "You are signed in as " strong { (frame.session.principal.name) } " (" (super::roles_text(&frame.session.principal)) "): you can see this directive but not approve or reject it."
                    }
                }
                form method="post" action=(format!("/directives/{}/approve", d.id)) class="decide" {
                    input type="hidden" name="csrf" value=(frame.session.csrf);
                    label for=(format!("note-{}", d.id)) {
                        "Note" @if ds.requirement.review_note { " (a review note is required)" }
                    }
                    textarea id=(format!("note-{}", d.id)) name="note" rows="2" required[ds.requirement.review_note] {}
                    div class="buttons" {
                        button type="submit" class="approve" id=(format!("approve-{}", d.id)) disabled[!may] { "Approve" }
                        button type="submit" class="reject" id=(format!("reject-{}", d.id))
                            formaction=(format!("/directives/{}/reject", d.id)) formnovalidate disabled[!may] { "Reject" }
                    }
                }
            }
        }
    }
}

/// `GET /directives`: every directive, newest first.
pub async fn list(
    State(st): State<DashState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let session = match signed_in(&st, &headers, &uri) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let frame = match Frame::load(&st, session).await {
        Ok(f) => f,
        Err(e) => return api_error_page(e),
    };
    let status = q.get("status").filter(|s| !s.is_empty()).cloned();
    if let Some(s) = &status
        && serde_json::from_value::<Status>(serde_json::json!(s)).is_err()
    {
        return super::error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!("unknown status {s:?}"),
        );
    }
    let filter = status.clone();
    let rows = st
        .api
        .runtime
        .call(move |sup| {
            let s = sup.state();
            s.order
                .iter()
                .rev()
                .map(|id| &s.directives[id])
                .filter(|d| filter.as_deref().is_none_or(|f| d.status.as_str() == f))
                .take(500)
                .map(|d| {
                    (
                        d.directive.id.clone(),
                        d.directive.directive_type.as_str(),
                        d.directive.target_domain.clone(),
                        d.directive.knob.clone(),
                        d.effective_impact.as_str(),
                        d.status.as_str(),
                        d.directive.issued_at,
                        d.verdict
                            .as_ref()
                            .map(|v| (v.target.effect, v.target.p_value)),
                        d.directive.shadow,
                        d.directive.target_kpi.clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return api_error_page(e.into()),
    };
    let statuses = [
        "pending_approval",
        "published",
        "verifying",
        "verified",
        "no_effect",
        "degraded",
        "inconclusive",
        "rolled_back",
        "rejected",
        "expired",
    ];
    let body = html! {
        h1 { "Directives" }
        form method="get" action="/directives" class="filters" {
            label for="status" { "Status" }
            select id="status" name="status" {
                option value="" { "any" }
                @for s in statuses {
                    option value=(s) selected[status.as_deref() == Some(s)] { (s.replace('_', " ")) }
                }
            }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() { p class="empty" { "No directive." } }
        @else {
            table class="list" {
                thead { tr { th { "id" } th { "issued" } th { "type" } th { "target" } th { "impact" } th { "status" } th { "effect" } th { "p" } } }
                tbody {
                    @for (id, ty, dom, knob, impact, status, at, verdict, shadow, kpi) in &rows {
                        tr {
                            td { a class="mono" href=(format!("/directives/{id}")) { (layout::short(id)) } }
                            td { (layout::time(*at)) }
                            td { (ty) @if *shadow { " " span class="pill shadow" { "shadow" } } }
                            td { (dom) "/" (knob) }
                            td { (impact) }
                            td { (layout::status_pill(status)) }
                            td { (verdict.map(|(e, _)| layout::kpi_delta(kpi, e)).unwrap_or_default()) }
                            td { (verdict.map(|(_, p)| layout::p(p)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    html_page(frame.page("Directives", Nav::Directives, body))
}

/// An approve or reject form.
#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

/// `POST /directives/{id}/approve`.
pub async fn approve(
    state: State<DashState>,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    decide(state, headers, id, form, true).await
}

/// `POST /directives/{id}/reject`.
pub async fn reject(
    state: State<DashState>,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<DecisionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    decide(state, headers, id, form, false).await
}

async fn decide(
    State(st): State<DashState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DecisionForm>, axum::extract::rejection::FormRejection>,
    approve: bool,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => {
            return super::error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &format!("the decision form could not be read: {e}"),
            );
        }
    };
    let session = match checked_post(&st, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match crate::api::decide_with_note(&st.api, &session.principal, id, form.note, approve).await {
        Ok(view) => Redirect::to(&format!("/directives/{}?decided=1", view.id)).into_response(),
        Err(e) => api_error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_named_with_its_scope() {
        let m = ApprovalMatrix::default();
        let t = rule_text(&m, ImpactLevel::Moderate, "production");
        assert!(t.contains("in production"), "{t}");
        assert!(t.contains("1 approval"), "{t}");
        let t = rule_text(&m, ImpactLevel::Moderate, "staging");
        assert!(t.contains("outside production"), "{t}");
        assert!(t.contains("published without approval"), "{t}");
        let t = rule_text(&m, ImpactLevel::Critical, "production");
        assert!(
            t.contains("2 distinct approvers, each with a review note"),
            "{t}"
        );
    }

    #[test]
    fn the_new_value_follows_from_the_acknowledged_one() {
        let adj = KnobAction::Adjust { adjustment: 0.05 };
        assert_eq!(
            new_value(&adj, Some(&serde_json::json!(0.7))),
            serde_json::json!(0.75)
        );
        assert_eq!(new_value(&adj, None), serde_json::json!("+0.05"));
        let set = KnobAction::Set {
            value: serde_json::json!(true),
        };
        assert_eq!(new_value(&set, None), serde_json::json!(true));
    }
}
