//! The web dashboard at `/`: goals against KPIs over time, the approvals inbox, each
//! directive's story and verdict, policies, the ledger and alerts. Server-rendered HTML
//! (maud) with charts drawn as SVG on the server; htmx (vendored, embedded) refreshes the
//! live panels. Signed in with the API's own tokens and roles; every action goes through the
//! API's code path, so it is recorded in the ledger with its principal.

mod alerts;
mod approvals;
mod audit;
mod directive;
mod layout;
mod ledger;
mod overview;
mod policies;
pub mod session;
pub mod svg;

use crate::api::auth::Principal;
use crate::api::{ApiError, ApiState};
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use session::Sessions;
use std::collections::HashMap;
use std::sync::Arc;

pub use overview::OverviewRange;

/// What the dashboard's handlers reach: the API's state, the sessions, the ledger audit.
#[derive(Clone)]
pub struct DashState {
    pub api: ApiState,
    pub sessions: Arc<Sessions>,
    audit: Arc<audit::LedgerAudit>,
}

impl DashState {
    /// The dashboard's state over the API's.
    pub fn new(api: ApiState) -> DashState {
        let audit = Arc::new(audit::LedgerAudit::new(
            api.ledger.clone(),
            api.checkpoint_key,
        ));
        DashState {
            api,
            sessions: Arc::default(),
            audit,
        }
    }
}

/// The dashboard's routes, HTML only (not part of the OpenAPI document).
pub fn router<S>(api: ApiState) -> Router<S> {
    router_with(DashState::new(api))
}

/// [`router`] over a given state (benchmarks and tests open sessions on it directly).
pub fn router_with<S>(state: DashState) -> Router<S> {
    Router::new()
        .route("/", get(overview::page))
        .route("/fragments/status", get(overview::status_fragment))
        .route("/approvals", get(approvals::page))
        .route("/directives", get(approvals::list))
        .route("/directives/{id}", get(directive::page))
        .route("/directives/{id}/approve", post(approvals::approve))
        .route("/directives/{id}/reject", post(approvals::reject))
        .route("/policies", get(policies::page))
        .route("/policies/{id}/enable", post(policies::enable))
        .route("/policies/{id}/disable", post(policies::disable))
        .route("/ledger", get(ledger::page))
        .route("/fragments/audit", get(ledger::audit_fragment))
        .route("/alerts", get(alerts::page))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/assets/htmx.min.js", get(htmx_js))
        .route("/assets/dashboard.css", get(css))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::middleware::from_fn(headers_and_timing))
        .with_state(state)
}

const HTMX: &str = include_str!("assets/htmx.min.js");
const CSS: &str = include_str!("assets/dashboard.css");

async fn htmx_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HTMX,
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// The content security policy: nothing but this server's own scripts, styles and images.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every dashboard answer, and the server's time to make it
/// (`Server-Timing: app;dur=ms`).
async fn headers_and_timing(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        h.insert("server-timing", v);
    }
    resp
}

/// An HTML error page with `status`.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · metaloop" }
                link rel="stylesheet" href="/assets/dashboard.css";
            }
            body {
                main class="narrow" {
                    h1 { (status.as_u16()) " " (title) }
                    p class="error-message" { (message) }
                    p { a href="/" { "Back to the overview" } }
                }
            }
        }
    };
    (status, Html(body.into_string())).into_response()
}

/// The HTML page for an API failure.
pub(crate) fn api_error_page(e: ApiError) -> Response {
    let (status, title) = match &e {
        ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "Bad request"),
        ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Not signed in"),
        ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
    };
    error_page(status, title, &e.to_string())
}

/// The signed-in session, or a redirect to the sign-in page that comes back to `uri`.
pub(crate) fn signed_in(
    st: &DashState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<session::Session, Box<Response>> {
    st.sessions.find(headers).ok_or_else(|| {
        let next = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        Box::new(Redirect::to(&format!("/signin?next={}", urlencode(&next))).into_response())
    })
}

/// The session of a form post, checked: signed in, same origin, the session's CSRF token.
pub(crate) fn checked_post(
    st: &DashState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<session::Session, Box<Response>> {
    if !session::same_origin(headers) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "this form was sent from another site",
        )));
    }
    let s = st.sessions.find(headers).ok_or_else(|| {
        Box::new(error_page(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "sign in again: the session has ended",
        ))
    })?;
    if !s.csrf_ok(csrf) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the form's CSRF token does not match this session; reload the page and try again",
        )));
    }
    Ok(s)
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Only local paths are followed after signing in (never another site).
fn local_path(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/".into(),
    }
}

async fn signin_form(
    State(st): State<DashState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let next = local_path(q.get("next"));
    let who = st.sessions.find(&headers).map(|s| s.principal.name);
    signin_page(StatusCode::OK, &next, None, who.as_deref())
}

fn signin_page(status: StatusCode, next: &str, error: Option<&str>, who: Option<&str>) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · metaloop" }
                link rel="stylesheet" href="/assets/dashboard.css";
            }
            body {
                main class="narrow signin" {
                    h1 { "metaloop" }
                    p { "Sign in with an API token. The token is checked once; the browser keeps only a session cookie." }
                    @if let Some(w) = who {
                        p class="notice" { "Signed in as " strong { (w) } ". Signing in again replaces that session." }
                    }
                    @if let Some(e) = error {
                        p class="error-message" id="signin-error" { (e) }
                    }
                    form method="post" action="/signin" {
                        input type="hidden" name="next" value=(next);
                        label for="token" { "API token" }
                        input type="password" id="token" name="token" autocomplete="off" required autofocus;
                        button type="submit" id="signin" { "Sign in" }
                    }
                    p class="hint" { "The demo writes its tokens to its data directory: api-token-ops (admin, approver), api-token-ops2 (approver), api-token-viewer (viewer)." }
                }
            }
        }
    };
    (status, Html(body.into_string())).into_response()
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn signin(
    State(st): State<DashState>,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !session::same_origin(&headers) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "this form was sent from another site",
        );
    }
    let Ok(Form(form)) = form else {
        return signin_page(
            StatusCode::BAD_REQUEST,
            "/",
            Some("the sign-in form needs a token"),
            None,
        );
    };
    let next = local_path(form.next.as_ref());
    let Some(principal) = st.api.tokens.authenticate(form.token.trim()) else {
        return signin_page(StatusCode::UNAUTHORIZED, &next, Some("unknown token"), None);
    };
    if principal
        .roles
        .iter()
        .all(|r| !crate::api::auth::READERS.contains(r))
    {
        return signin_page(
            StatusCode::FORBIDDEN,
            &next,
            Some(&format!(
                "{} has roles {:?}; the dashboard needs one of viewer, operator, approver, admin",
                principal.name, principal.roles
            )),
            None,
        );
    }
    // a new session id at each sign-in (no fixation); the old one is closed
    st.sessions.close(&headers);
    let id = match st.sessions.open(principal) {
        Ok(id) => id,
        Err(e) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                &format!("no randomness for a session id: {e}"),
            );
        }
    };
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&id));
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn signout(
    State(st): State<DashState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|f| f.0.csrf).unwrap_or_default();
    if let Err(resp) = checked_post(&st, &headers, &csrf) {
        return *resp;
    }
    st.sessions.close(&headers);
    let mut resp = Redirect::to("/signin").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    resp
}

/// A principal's roles, for humans.
pub(crate) fn roles_text(p: &Principal) -> String {
    let v: Vec<String> = p
        .roles
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    v.join(", ")
}

/// Renders markup as an HTML answer.
pub(crate) fn html_page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}
