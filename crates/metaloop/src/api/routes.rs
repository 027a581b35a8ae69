//! The routes.

use super::auth::{ADAPTERS, ADMINS, APPROVERS, OPERATORS, Principal, READERS};
use super::{ApiError, ApiState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use metaloop_core::directive::Status;
use metaloop_core::policy::MetaPolicy;
use metaloop_core::supervisor::{DirectiveState, InputError};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .route("/v1/status", get(status))
        .route("/v1/goals", get(goals))
        .route("/v1/snapshots", get(snapshots))
        .route("/v1/snapshots/latest", get(latest_snapshot))
        .route("/v1/directives", get(list_directives))
        .route("/v1/directives/{id}", get(show_directive))
        .route("/v1/directives/{id}/approve", post(approve))
        .route("/v1/directives/{id}/reject", post(reject))
        .route("/v1/policies", get(list_policies).post(register_policy))
        .route("/v1/policies/{id}/enable", post(enable_policy))
        .route("/v1/policies/{id}/disable", post(disable_policy))
        .route("/v1/ledger/records", get(ledger_records))
        .route("/v1/ledger/checkpoints", get(checkpoints))
        .route("/v1/events", post(events))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::map_response(super::json_errors))
        .with_state(state)
}

type Q = Query<HashMap<String, String>>;

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

async fn readyz(State(s): State<ApiState>) -> impl IntoResponse {
    match s.runtime.call(|sup| sup.state().cycle).await {
        Ok(cycle) => (
            StatusCode::OK,
            Json(json!({ "ready": true, "cycle": cycle })),
        )
            .into_response(),
        Err(e) => ApiError::Unavailable(e.to_string()).into_response(),
    }
}

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

async fn status(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
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
                    "in_flight": st.directives.values().filter(|d| d.holds_knob()).count(),
                    "verified": count(&|s| s == Status::Verified),
                    "rolled_back": count(&|s| s == Status::RolledBack),
                },
                "alerts": st.alerts.values().collect::<Vec<_>>(),
            })
        })
        .await?;
    Ok(Json(v))
}

async fn goals(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let v = s.runtime.call(|sup| json!(sup.state().goals)).await?;
    Ok(Json(v))
}

async fn snapshots(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["limit"])?;
    let limit = number(&q, "limit", 10, 1000)? as usize;
    let cache = s
        .snapshots
        .lock()
        .map_err(|_| ApiError::Unavailable("snapshot cache poisoned".into()))?;
    let out: Vec<&Value> = cache.iter().rev().take(limit).collect();
    Ok(Json(json!(out)))
}

async fn latest_snapshot(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &[])?;
    let cache = s
        .snapshots
        .lock()
        .map_err(|_| ApiError::Unavailable("snapshot cache poisoned".into()))?;
    cache
        .back()
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no snapshot yet: the first cycle has not closed".into()))
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

async fn list_directives(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(v))
}

async fn show_directive(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
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
                [one] => Some(serde_json::to_value(one).unwrap_or_default()),
                _ => None,
            }
        })
        .await?;
    v.map(Json).ok_or_else(|| {
        ApiError::NotFound(format!("no directive {id} (or the prefix is ambiguous)"))
    })
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
) -> Result<Json<Value>, ApiError> {
    p.require(APPROVERS)?;
    let note = note_of(&body)?;
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
    Ok(Json(view.unwrap_or_default()))
}

async fn approve(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(s, p, id, body, true).await
}

async fn reject(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(s, p, id, body, false).await
}

async fn list_policies(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(v))
}

async fn register_policy(
    State(s): State<ApiState>,
    p: Principal,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(json!({ "registered": id }))))
}

async fn set_enabled(
    s: ApiState,
    p: Principal,
    id: String,
    enabled: bool,
) -> Result<Json<Value>, ApiError> {
    p.require(OPERATORS)?;
    let now = (s.clock)();
    let who = p.name.clone();
    let idc = id.clone();
    s.runtime
        .call(move |sup| sup.set_policy_enabled(&idc, enabled, &who, now))
        .await?
        .map_err(input_error)?;
    Ok(Json(json!({ "policy": id, "enabled": enabled })))
}

async fn enable_policy(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(s, p, id, true).await
}

async fn disable_policy(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_enabled(s, p, id, false).await
}

async fn ledger_records(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["from", "limit"])?;
    let from = number(&q, "from", 1, u64::MAX >> 1)?;
    let limit = number(&q, "limit", 100, 1000)? as u32;
    let records = s
        .ledger
        .read(from.max(1), limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(serde_json::to_value(records).unwrap_or_default()))
}

async fn checkpoints(
    State(s): State<ApiState>,
    p: Principal,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    p.require(READERS)?;
    only_known(&q, &["after", "limit"])?;
    let after = number(&q, "after", 0, u64::MAX >> 1)?;
    let limit = number(&q, "limit", 100, 1000)? as u32;
    let cps = s
        .ledger
        .checkpoints(after, limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!(
        cps.iter().map(|c| c.to_text()).collect::<Vec<_>>()
    )))
}

async fn events(
    State(s): State<ApiState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
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
