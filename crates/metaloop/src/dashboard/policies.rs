//! The policies page: each meta-policy with its mode, whether it is enabled, its track record
//! and its latest evaluations and directives; operators and admins enable or disable it
//! (through the API's code path, recorded with who did it).

use super::layout::{self, Frame, Nav};
use super::{DashState, api_error_page, checked_post, html_page, signed_in};
use crate::api::auth::OPERATORS;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use metaloop_core::policy::{MetaPolicy, PolicyMode, TrackRecord};
use serde::Deserialize;

struct Row {
    policy: MetaPolicy,
    track: TrackRecord,
    streak: u32,
    changed_at_run_time: bool,
    /// Its latest directives: id, status.
    directives: Vec<(String, String)>,
}

/// `GET /policies`.
pub async fn page(State(st): State<DashState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match signed_in(&st, &headers, &uri) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let frame = match Frame::load(&st, session).await {
        Ok(f) => f,
        Err(e) => return api_error_page(e),
    };
    let rows = st
        .api
        .runtime
        .call(|sup| {
            let s = sup.state();
            s.policies
                .values()
                .map(|p| Row {
                    policy: p.policy.clone(),
                    track: p.track,
                    streak: p.streak,
                    changed_at_run_time: p.changed_at_run_time,
                    directives: s
                        .order
                        .iter()
                        .rev()
                        .map(|id| &s.directives[id])
                        .filter(|d| d.directive.policy_id.as_deref() == Some(p.policy.id.as_str()))
                        .take(5)
                        .map(|d| (d.directive.id.clone(), d.status.as_str().to_string()))
                        .collect(),
                })
                .collect::<Vec<_>>()
        })
        .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return api_error_page(e.into()),
    };
    let may = frame.may(OPERATORS);
    let body = html! {
        h1 { "Policies" }
        @if !may {
            p class="notice" { "Enabling and disabling policies needs the operator or admin role." }
        }
        @for r in &rows {
            @let p = &r.policy;
            article class="card policy" id=(format!("policy-{}", p.id)) {
                header {
                    h2 { (p.name) }
                    span class="mono" { (p.id) }
                    @if p.mode == PolicyMode::Live { span class="pill good" { "live" } } @else { span class="pill shadow" { "shadow" } }
                    @if p.enabled { span class="pill good" id=(format!("enabled-{}", p.id)) { "enabled" } }
                    @else { span class="pill bad" id=(format!("enabled-{}", p.id)) { "disabled" } }
                    @if r.changed_at_run_time { span class="pill neutral" { "changed at run time" } }
                    form method="post" class="inline" action=(format!("/policies/{}/{}", p.id, if p.enabled { "disable" } else { "enable" })) {
                        input type="hidden" name="csrf" value=(frame.session.csrf);
                        button type="submit" id=(format!("toggle-{}", p.id)) disabled[!may] {
                            @if p.enabled { "Disable" } @else { "Enable" }
                        }
                    }
                }
                @if !p.description.is_empty() { p { (p.description) } }
                div class="grid2" {
                    div {
                        dl {
                            dt { "Acts on" }
                            dd { (p.directive_template.directive_type) " " span class="mono" { (p.directive_template.knob) } " → " (layout::kpi_label(&p.directive_template.target_kpi)) ", impact " (p.directive_template.impact_level) }
                            dt { "Fires when" }
                            dd { "confidence ≥ " (p.confidence_threshold) ", evidence ≥ " (p.min_evidence) ", condition held " (p.for_cycles) " cycle(s); cooldown " (p.cooldown_cycles) " cycle(s)" }
                            dt { "Track record" }
                            dd { (r.track.verified) " verified, " (r.track.failed) " failed, " (r.track.inconclusive) " inconclusive — score " strong { (format!("{:.2}", r.track.score())) } }
                            dt { "Condition streak" }
                            dd { (r.streak) " cycle(s)" }
                        }
                    }
                    div {
                        h3 { "Last decisions" }
                        @let evals = st.api.history.evaluations(&p.id);
                        @if evals.is_empty() { p class="hint" { "not evaluated since start-up" } }
                        ul class="recent" {
                            @for e in evals.iter().take(5) {
                                li {
                                    "cycle " (e.cycle) ": "
                                    @if e.record["directives"].as_array().is_some_and(|a| !a.is_empty()) {
                                        strong { "fired" }
                                    } @else if e.record["condition"]["holds"].as_bool() == Some(true) {
                                        "held, did not fire"
                                    } @else { "did not hold" }
                                    @if let Some(c) = e.record["factors"]["confidence"].as_f64() { " · confidence " (format!("{c:.2}")) }
                                    @if let Some(reason) = e.record["reason"].as_str().filter(|r| !r.is_empty()) { " · " span class="hint" { (reason) } }
                                }
                            }
                        }
                        @if !r.directives.is_empty() {
                            h3 { "Its latest directives" }
                            ul class="recent" {
                                @for (id, status) in &r.directives {
                                    li { a class="mono" href=(format!("/directives/{id}")) { (layout::short(id)) } " " (layout::status_pill(status)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html_page(frame.page("Policies", Nav::Policies, body))
}

/// An enable or disable form.
#[derive(Deserialize)]
pub struct ToggleForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /policies/{id}/enable`.
pub async fn enable(
    state: State<DashState>,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<ToggleForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    toggle(state, headers, id, form, true).await
}

/// `POST /policies/{id}/disable`.
pub async fn disable(
    state: State<DashState>,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<ToggleForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    toggle(state, headers, id, form, false).await
}

async fn toggle(
    State(st): State<DashState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ToggleForm>, axum::extract::rejection::FormRejection>,
    enabled: bool,
) -> Response {
    let Ok(Form(form)) = form else {
        return super::error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "the form could not be read",
        );
    };
    let session = match checked_post(&st, &headers, &form.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match crate::api::set_enabled(st.api.clone(), session.principal, id.clone(), enabled).await {
        Ok(_) => Redirect::to(&format!("/policies#policy-{id}")).into_response(),
        Err(e) => api_error_page(e),
    }
}
