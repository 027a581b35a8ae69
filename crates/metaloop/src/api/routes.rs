//! The routes.

use super::auth::{ADAPTERS, ADMINS, APPROVERS, OPERATORS, Principal, READERS};
use super::views::{self, *};
use super::{ApiError, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use metaloop_core::directive::Status;
use metaloop_core::policy::MetaPolicy;
use metaloop_core::supervisor::{DirectiveState, InputError};
use serde_json::{Value, json};
use std::collections::HashMap;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The API's routes with their OpenAPI operations: one table for both, so the document
/// cannot drift from what is served.
pub fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(super::openapi::ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(status))
        .routes(routes!(goals))
        .routes(routes!(snapshots))
        .routes(routes!(latest_snapshot))
        .routes(routes!(list_directives))
        .routes(routes!(show_directive))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(list_policies, register_policy))
        .routes(routes!(enable_policy))
        .routes(routes!(disable_policy))
        .routes(routes!(policy_history))
        .routes(routes!(recommendations))
        .routes(routes!(reset_track_record))
        .routes(routes!(ledger_records))
        .routes(routes!(checkpoints))
        .routes(routes!(events))
        .routes(routes!(admin_reload))
        .routes(routes!(admin_clock))
}

/// The API router, with the dashboard at `/` (HTML pages, not in the OpenAPI document).
pub fn router(state: ApiState) -> Router {
    let (router, _) = api_routes().split_for_parts();
    router
        .merge(crate::dashboard::router(state.clone()))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            standby_guard,
        ))
        .layer(axum::middleware::map_response(super::json_errors))
        .with_state(state)
}

type Q = Query<HashMap<String, String>>;

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive: the text ok", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
async fn openapi_json() -> Json<Value> {
    Json(super::openapi::document())
}

fn number(
    q: &HashMap<String, String>,
    field: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match q.get(field) {
        None => Ok(default),
        Some(v) => {
            let n: u64 = v.parse().map_err(|_| {
                ApiError::bad(
                    field,
                    format!("{field} must be a non-negative integer, got {v:?}"),
                )
            })?;
            if n > max {
                return Err(ApiError::bad(
                    field,
                    format!("{field} must be at most {max}, got {n}"),
                ));
            }
            Ok(n)
        }
    }
}

fn only_known(q: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad(
            k,
            format!("unknown query parameter {k:?}; expected one of {known:?}"),
        )),
        None => Ok(()),
    }
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "The supervisor answers and leads (or runs alone)", body = Readiness),
              (status = 503, description = "A standby replica (the body says so and names the leader), or the supervisor has stopped (an error body)", body = Readiness)))]
async fn readyz(State(s): State<ApiState>) -> Result<(StatusCode, Json<Readiness>), ApiError> {
    let cycle = s.runtime.call(|sup| sup.state().cycle).await?;
    let leader = s.role.leader();
    let standby = s.role.is_standby();
    let code = if standby {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(Readiness {
            ready: !standby,
            cycle,
            role: if standby { "standby" } else { "leader" }.into(),
            leader: views::LeaderInfo {
                holder: leader.holder,
                epoch: leader.epoch,
            },
        }),
    ))
}

#[utoipa::path(post, path = "/v1/admin/reload", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, description = "The adapters' keys and domain bindings, and the ingest workers' keys, were read again from the configuration file; what changed", body = ReloadView),
              (status = 400, description = "The file no longer parses or is invalid; nothing changed", body = ErrorBody),
              (status = 404, description = "This server does not reload", body = ErrorBody)))]
async fn admin_reload(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<views::ReloadView>, ApiError> {
    p.require(ADMINS)?;
    let reload = s
        .reload
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this server does not reload its adapters".into()))?;
    Ok(Json(reload.reload(p.name.clone()).await?))
}

#[utoipa::path(post, path = "/v1/admin/clock", tag = "supervisor", security(("bearer" = [])),
    request_body = ClockAdvance,
    responses((status = 200, description = "The driven clock reads `to`, and every cycle ending by then is closed", body = ClockView),
              (status = 400, description = "The body is not a clock advance, or `to` is earlier than the supervisor's time; the clock was not moved", body = ErrorBody),
              (status = 404, description = "This server has no clock to drive", body = ErrorBody),
              (status = 409, description = "The supervisor runs on the wall clock ([clock] mode = \"wall\")", body = ErrorBody),
              (status = 503, description = "Not leading, or the deliveries named were not folded (or the cycle did not close) within 60 s", body = ErrorBody)))]
async fn admin_clock(
    State(s): State<ApiState>,
    p: Principal,
    body: Bytes,
) -> Result<Json<views::ClockView>, ApiError> {
    p.require(ADMINS)?;
    let drive = s
        .drive_clock
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this server has no clock to drive".into()))?;
    let req: ClockAdvance = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "body",
            format!(
                "body must be a JSON object like {{\"to\": \"2026-01-01T00:05:00Z\", \"deliveries\": 12}}: {e}"
            ),
        )
    })?;
    let to = metaloop_core::time::Timestamp::parse_rfc3339(&req.to).ok_or_else(|| {
        ApiError::bad(
            "to",
            format!(
                "to: {:?} is not an RFC 3339 time like \"2026-01-01T00:05:00Z\"",
                req.to
            ),
        )
    })?;
    Ok(Json(drive.advance(to, req.deliveries).await?))
}

/// A standby refuses every change (they belong to the leader), naming the leader.
async fn standby_guard(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads && s.role.is_standby() {
        let leader = s.role.leader();
        return ApiError::Unavailable(format!(
            "this replica is a standby; send changes to the leader ({}, epoch {})",
            leader.holder.as_deref().unwrap_or("none yet"),
            leader.epoch
        ))
        .into_response();
    }
    next.run(req).await
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics when the Accept header asks for it",
        content((String = "text/plain"), (String = "application/openmetrics-text"))),
              (status = 404, description = "This server keeps no metrics", body = ErrorBody)))]
async fn metrics(
    State(s): State<ApiState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let m = s
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("metrics are not kept by this server".into()))?;
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (content_type, body) = m.render(accept);
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], body))
}

#[utoipa::path(get, path = "/v1/status", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, description = "Goals against KPIs, directive counts, firing alerts", body = StatusView)))]
async fn status(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<StatusView>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let v = s
        .runtime
        .call(|sup| {
            let st = sup.state();
            let goals: Vec<Value> = st
                .goals
                .iter()
                .map(|g| {
                    json!({
                        "kpi": g.kpi, "target": g.target, "direction": g.direction,
                        "value": st.last_kpis.get(&g.kpi), "gap": st.last_gaps.get(&g.kpi),
                        "met": st.last_gaps.get(&g.kpi).map(|gap| *gap <= 0.0),
                    })
                })
                .collect();
            let count =
                |f: &dyn Fn(Status) -> bool| st.directives.values().filter(|d| f(d.status)).count();
            json!({
                "environment": st.environment,
                "cycle": st.cycle,
                "last_cycle_end": st.last_cycle_end,
                "next_cycle_at": sup.next_cycle_at(),
                "goals": goals,
                "directives": {
                    "total": st.directives.len(),
                    "pending_approval": count(&|s| s == Status::PendingApproval),
                    "in_flight": st.directives.values().filter(|d| d.holds_knob() && !d.directive.shadow).count(),
                    "verified": count(&|s| s == Status::Verified),
                    "rolled_back": count(&|s| s == Status::RolledBack),
                    "shadow": st.directives.values().filter(|d| d.directive.shadow).count(),
                },
                "shadow_mode": sup.config().shadow,
                "alerts": st.alerts.values().collect::<Vec<_>>(),
            })
        })
        .await?;
    let mut v = v;
    let role = s.role.view();
    v["role"] = role["role"].clone();
    v["leader"] = role["leader"].clone();
    Ok(Json(views::view(v)?))
}

#[utoipa::path(get, path = "/v1/goals", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, description = "Strategic goals", body = Vec<GoalView>)))]
async fn goals(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<GoalView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let v = s.runtime.call(|sup| json!(sup.state().goals)).await?;
    Ok(Json(views::view(v)?))
}

#[utoipa::path(get, path = "/v1/snapshots", tag = "supervisor", security(("bearer" = [])),
    params(("limit" = Option<u64>, Query, description = "Most snapshots returned, newest first (default 10, at most 1000)")),
    responses((status = 200, description = "Recent snapshots, newest first; KPIs pooled over each domain's window of cycles", body = Vec<SnapshotView>)))]
async fn snapshots(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<SnapshotView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["limit"])?;
    let limit = number(&q, "limit", 10, 1000)? as usize;
    let cache = s
        .snapshots
        .lock()
        .map_err(|_| ApiError::Unavailable("snapshot cache poisoned".into()))?;
    let out: Vec<Value> = cache.iter().rev().take(limit).cloned().collect();
    drop(cache);
    Ok(Json(views::view(Value::Array(out))?))
}

#[utoipa::path(get, path = "/v1/snapshots/latest", tag = "supervisor", security(("bearer" = [])),
    responses((status = 200, description = "The latest snapshot", body = SnapshotView),
              (status = 404, description = "No cycle has closed yet", body = ErrorBody)))]
async fn latest_snapshot(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<SnapshotView>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let cache = s
        .snapshots
        .lock()
        .map_err(|_| ApiError::Unavailable("snapshot cache poisoned".into()))?;
    let latest = cache.back().cloned().ok_or_else(|| {
        ApiError::NotFound("no snapshot yet: the first cycle has not closed".into())
    })?;
    drop(cache);
    Ok(Json(views::view(latest)?))
}

fn directive_view(d: &DirectiveState) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        // the windows are statistics for the verifier, not for the list
        o.remove("pre");
        o.remove("post");
        o.insert("id".into(), json!(d.directive.id));
    }
    v
}

#[utoipa::path(get, path = "/v1/directives", tag = "directives", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "Lifecycle status, e.g. pending_approval"),
           ("policy" = Option<String>, Query, description = "Policy id"),
           ("domain" = Option<String>, Query, description = "Target domain"),
           ("type" = Option<String>, Query, description = "Directive type, e.g. ADJUST_THRESHOLD"),
           ("limit" = Option<u64>, Query, description = "Most directives returned, newest first (default 100, at most 10000)")),
    responses((status = 200, description = "Directives, newest first", body = Vec<DirectiveView>)))]
async fn list_directives(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<DirectiveView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["status", "policy", "domain", "type", "limit"])?;
    let limit = number(&q, "limit", 100, 10_000)? as usize;
    if let Some(st) = q.get("status")
        && serde_json::from_value::<Status>(json!(st)).is_err()
    {
        return Err(ApiError::bad(
            "status",
            format!(
                "unknown status {st:?} (e.g. pending_approval, verifying, verified, rolled_back)"
            ),
        ));
    }
    let v = s
        .runtime
        .call(move |sup| {
            let st = sup.state();
            let out: Vec<Value> = st
                .order
                .iter()
                .rev()
                .map(|id| &st.directives[id])
                .filter(|d| q.get("status").is_none_or(|x| d.status.as_str() == x))
                .filter(|d| {
                    q.get("policy")
                        .is_none_or(|x| d.directive.policy_id.as_deref() == Some(x.as_str()))
                })
                .filter(|d| {
                    q.get("domain")
                        .is_none_or(|x| &d.directive.target_domain == x)
                })
                .filter(|d| {
                    q.get("type")
                        .is_none_or(|x| d.directive.directive_type.as_str() == x)
                })
                .take(limit)
                .map(directive_view)
                .collect();
            json!(out)
        })
        .await?;
    Ok(Json(views::view(v)?))
}

#[utoipa::path(get, path = "/v1/directives/{id}", tag = "directives", security(("bearer" = [])),
    params(("id" = String, Path, description = "Directive id or a unique prefix of it")),
    responses((status = 200, description = "The directive with its lifecycle", body = DirectiveView),
              (status = 404, description = "No such directive, or the prefix is ambiguous", body = ErrorBody)))]
async fn show_directive(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Json<DirectiveView>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let idc = id.clone();
    let v = s
        .runtime
        .call(move |sup| {
            let st = sup.state();
            let matches: Vec<&DirectiveState> = st
                .directives
                .values()
                .filter(|d| d.directive.id.starts_with(&idc))
                .collect();
            match matches.as_slice() {
                [one] => Some(directive_view(one)),
                _ => None,
            }
        })
        .await?;
    let v = v.ok_or_else(|| {
        ApiError::NotFound(format!("no directive {id} (or the prefix is ambiguous)"))
    })?;
    Ok(Json(views::view(v)?))
}

fn note_of(body: &Bytes) -> Result<String, ApiError> {
    if body.is_empty() {
        return Ok(String::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("body", format!("body is not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| {
        ApiError::bad("body", "body must be a JSON object like {\"note\": \"…\"}")
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "note") {
        return Err(ApiError::bad(
            k,
            format!("unknown field {k:?}; expected \"note\""),
        ));
    }
    match obj.get("note") {
        None => Ok(String::new()),
        Some(Value::String(n)) => Ok(n.clone()),
        Some(_) => Err(ApiError::bad("note", "note must be a string")),
    }
}

fn input_error(e: InputError) -> ApiError {
    match e {
        InputError::UnknownDirective(id) => ApiError::NotFound(format!("unknown directive {id}")),
        InputError::UnknownPolicy(id) => ApiError::NotFound(format!("unknown policy {id}")),
        InputError::ReviewNoteRequired(_) => ApiError::bad("note", e.to_string()),
        InputError::InvalidPolicy(m) => ApiError::bad("policy", m),
        other => ApiError::Conflict(other.to_string()),
    }
}

async fn decide(
    s: ApiState,
    p: Principal,
    id: String,
    body: Bytes,
    approve: bool,
) -> Result<Json<DirectiveView>, ApiError> {
    p.require(APPROVERS)?;
    let note = note_of(&body)?;
    Ok(Json(decide_with_note(&s, &p, id, note, approve).await?))
}

/// Approves or rejects directive `id` (or a unique prefix of it) as `p`: the one path for the
/// API and the dashboard, so the decision is recorded with its principal either way.
pub(crate) async fn decide_with_note(
    s: &ApiState,
    p: &Principal,
    id: String,
    note: String,
    approve: bool,
) -> Result<DirectiveView, ApiError> {
    p.require(APPROVERS)?;
    let now = (s.clock)();
    let who = p.name.clone();
    let (result, view) = s
        .runtime
        .call(move |sup| {
            let full = sup
                .state()
                .directives
                .keys()
                .filter(|k| k.starts_with(&id))
                .cloned()
                .collect::<Vec<_>>();
            let id = if full.len() == 1 { full[0].clone() } else { id };
            let r = if approve {
                sup.approve(&id, &who, &note, now)
            } else {
                sup.reject(&id, &who, &note, now)
            };
            let view = sup.state().directives.get(&id).map(directive_view);
            (r, view)
        })
        .await?;
    result.map_err(input_error)?;
    let v = view.ok_or_else(|| ApiError::NotFound("no such directive".into()))?;
    views::view(v)
}

#[utoipa::path(post, path = "/v1/directives/{id}/approve", tag = "directives", security(("bearer" = [])),
    params(("id" = String, Path, description = "Directive id or a unique prefix of it")),
    request_body(content = Option<Note>, description = "A note (required with the approval of a CRITICAL directive)", content_type = "application/json"),
    responses((status = 200, description = "The directive after the approval", body = DirectiveView),
              (status = 404, description = "No such directive", body = ErrorBody),
              (status = 409, description = "Not waiting for approval, or already approved by this principal", body = ErrorBody)))]
async fn approve(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<DirectiveView>, ApiError> {
    decide(s, p, id, body, true).await
}

#[utoipa::path(post, path = "/v1/directives/{id}/reject", tag = "directives", security(("bearer" = [])),
    params(("id" = String, Path, description = "Directive id or a unique prefix of it")),
    request_body(content = Option<Note>, description = "A note", content_type = "application/json"),
    responses((status = 200, description = "The directive after the rejection", body = DirectiveView),
              (status = 404, description = "No such directive", body = ErrorBody),
              (status = 409, description = "Not waiting for approval", body = ErrorBody)))]
async fn reject(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<DirectiveView>, ApiError> {
    decide(s, p, id, body, false).await
}

#[utoipa::path(get, path = "/v1/policies", tag = "policies", security(("bearer" = [])),
    responses((status = 200, description = "Meta-policies with their state", body = Vec<PolicyView>)))]
async fn list_policies(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<PolicyView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let v = s
        .runtime
        .call(|sup| {
            let out: Vec<Value> = sup
                .state()
                .policies
                .values()
                .map(|ps| {
                    json!({
                        "policy": ps.policy, "streak": ps.streak, "track_record": ps.track,
                        "track_record_score": ps.track.score(), "changed_at_run_time": ps.changed_at_run_time,
                    })
                })
                .collect();
            json!(out)
        })
        .await?;
    Ok(Json(views::view(v)?))
}

#[utoipa::path(post, path = "/v1/policies", tag = "policies", security(("bearer" = [])),
    request_body(content = Object, description = "A meta-policy (id, name, condition, directive_template, …)", content_type = "application/json"),
    responses((status = 201, description = "Registered", body = Registered)))]
async fn register_policy(
    State(s): State<ApiState>,
    p: Principal,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    p.require(ADMINS)?;
    let policy: MetaPolicy = serde_json::from_slice(&body).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("body").to_string();
        ApiError::BadRequest {
            field,
            message: format!("policy: {msg}"),
        }
    })?;
    let now = (s.clock)();
    let who = p.name.clone();
    let id = policy.id.clone();
    s.runtime
        .call(move |sup| sup.register_policy(policy, &who, now))
        .await?
        .map_err(input_error)?;
    Ok((StatusCode::CREATED, Json(Registered { registered: id })))
}

/// Enables or disables policy `id` as `p`: the one path for the API and the dashboard.
pub(crate) async fn set_enabled(
    s: ApiState,
    p: Principal,
    id: String,
    enabled: bool,
) -> Result<Json<PolicyEnabled>, ApiError> {
    p.require(OPERATORS)?;
    let now = (s.clock)();
    let who = p.name.clone();
    let idc = id.clone();
    s.runtime
        .call(move |sup| sup.set_policy_enabled(&idc, enabled, &who, now))
        .await?
        .map_err(input_error)?;
    Ok(Json(PolicyEnabled {
        policy: id,
        enabled,
    }))
}

#[utoipa::path(post, path = "/v1/policies/{id}/enable", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Policy id")),
    responses((status = 200, description = "Enabled", body = PolicyEnabled),
              (status = 404, description = "No such policy", body = ErrorBody)))]
async fn enable_policy(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<PolicyEnabled>, ApiError> {
    set_enabled(s, p, id, true).await
}

#[utoipa::path(post, path = "/v1/policies/{id}/disable", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Policy id")),
    responses((status = 200, description = "Disabled", body = PolicyEnabled),
              (status = 404, description = "No such policy", body = ErrorBody)))]
async fn disable_policy(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<PolicyEnabled>, ApiError> {
    set_enabled(s, p, id, false).await
}

#[utoipa::path(get, path = "/v1/recommendations", tag = "policies", security(("bearer" = [])),
    responses((status = 200, description = "Policy changes the track records and verdicts suggest (never applied by metaloop)", body = Vec<RecommendationView>)))]
async fn recommendations(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<RecommendationView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let v = s
        .runtime
        .call(|sup| serde_json::to_value(sup.state().recommendations()).unwrap_or_default())
        .await?;
    Ok(Json(views::view(v)?))
}

#[utoipa::path(get, path = "/v1/policies/{id}/history", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Policy id")),
    responses((status = 200, description = "Every ledger record about the policy, oldest first: registrations and edits (with the fields they changed), enables and disables, track-record updates and resets, each with its principal", body = Vec<RecordView>),
              (status = 404, description = "No such policy", body = ErrorBody)))]
async fn policy_history(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let idc = id.clone();
    let known = s
        .runtime
        .call(move |sup| sup.state().policies.contains_key(&idc))
        .await?;
    if !known {
        return Err(ApiError::NotFound(format!("unknown policy {id}")));
    }
    let resource = format!("policy/{id}");
    let records = s
        .ledger
        .read_all()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mine: Vec<_> = records
        .into_iter()
        .filter(|r| r.resource == resource)
        .collect();
    Ok(Json(views::view(
        serde_json::to_value(mine).unwrap_or_default(),
    )?))
}

#[utoipa::path(post, path = "/v1/policies/{id}/reset", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Policy id")),
    request_body(content = Note, description = "Why the track record is cleared (required)", content_type = "application/json"),
    responses((status = 200, description = "The track record was cleared; the one it had", body = TrackRecordReset),
              (status = 400, description = "No note", body = ErrorBody),
              (status = 404, description = "No such policy", body = ErrorBody)))]
async fn reset_track_record(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<TrackRecordReset>, ApiError> {
    p.require(ADMINS)?;
    let note: Note = if body.is_empty() {
        Note { note: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("body").to_string();
            ApiError::BadRequest {
                field,
                message: format!("body: {msg}"),
            }
        })?
    };
    let now = (s.clock)();
    let who = p.name.clone();
    let idc = id.clone();
    let previous = s
        .runtime
        .call(move |sup| {
            let previous = sup.state().policies.get(&idc).map(|p| p.track);
            sup.reset_track_record(&idc, &who, note.note.as_deref().unwrap_or(""), now)
                .map(|()| previous.unwrap_or_default())
        })
        .await?
        .map_err(input_error)?;
    Ok(Json(TrackRecordReset {
        policy: id,
        previous: views::view(serde_json::to_value(previous).unwrap_or_default())?,
    }))
}

#[utoipa::path(get, path = "/v1/ledger/records", tag = "ledger", security(("bearer" = [])),
    params(("from" = Option<u64>, Query, description = "First seq (default 1)"),
           ("limit" = Option<u64>, Query, description = "Most records (default 100, at most 1000)")),
    responses((status = 200, description = "Records in seq order", body = Vec<RecordView>)))]
async fn ledger_records(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<RecordView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["from", "limit"])?;
    let from = number(&q, "from", 1, u64::MAX >> 1)?;
    let limit = number(&q, "limit", 100, 1000)? as u32;
    let records = s
        .ledger
        .read(from.max(1), limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(views::view(
        serde_json::to_value(records).unwrap_or_default(),
    )?))
}

#[utoipa::path(get, path = "/v1/ledger/checkpoints", tag = "ledger", security(("bearer" = [])),
    params(("after" = Option<u64>, Query, description = "Only checkpoints after this seq (default 0)"),
           ("limit" = Option<u64>, Query, description = "Most checkpoints (default 100, at most 1000)")),
    responses((status = 200, description = "Signed checkpoints, oldest first", body = Vec<CheckpointView>)))]
async fn checkpoints(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Vec<CheckpointView>>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["after", "limit"])?;
    let after = number(&q, "after", 0, u64::MAX >> 1)?;
    let limit = number(&q, "limit", 100, 1000)? as u32;
    let cps = s
        .ledger
        .checkpoints(after, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let texts: Vec<_> = cps.iter().map(|c| c.to_text()).collect();
    Ok(Json(views::view(
        serde_json::to_value(texts).unwrap_or_default(),
    )?))
}

#[utoipa::path(post, path = "/v1/events", tag = "events", security(("bearer" = [])),
    request_body(description = "One CloudEvent (structured mode) or a batch (docs/PROTOCOL.md)",
        content((Object = "application/cloudevents+json"), (Vec<Object> = "application/cloudevents-batch+json"), (Object = "application/json"))),
    responses((status = 200, description = "One result per event (docs/PROTOCOL.md §6.2)", body = EventResults),
              (status = 404, description = "This server takes no events", body = ErrorBody),
              (status = 503, description = "Stopping, or the accepted events could not be made durable", body = ErrorBody)))]
async fn events(
    State(s): State<ApiState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EventResults>, ApiError> {
    p.require(ADAPTERS)?;
    let ingest = s
        .ingest
        .clone()
        .ok_or_else(|| ApiError::NotFound("this server does not take events".into()))?;
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Json(ingest.ingest(body, ct).await?))
}
