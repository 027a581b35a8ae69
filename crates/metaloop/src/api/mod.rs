//! The HTTP API (`/v1/...`, JSON, bearer tokens with roles), `/healthz`, `/readyz`.

pub mod auth;
pub mod openapi;
mod routes;
pub mod views;

use crate::runtime::Runtime;
use auth::Tokens;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metaloop_core::time::Timestamp;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub use routes::{api_routes, router};
pub(crate) use routes::{decide_with_note, set_enabled};

/// Takes spine events posted to `/v1/events` (the mesh's ingest pipeline).
pub trait EventIngest: Send + Sync + 'static {
    /// Ingests a body of the given content type; returns one result per event.
    fn ingest(
        &self,
        body: bytes::Bytes,
        content_type: Option<String>,
    ) -> crate::runtime::BoxFuture<Result<views::EventResults, ApiError>>;
}

/// Reloads the adapters' keys and domain bindings, and the ingest workers' keys, from the
/// configuration file (the admin API's `POST /v1/admin/reload`; SIGHUP does the same).
pub trait Reload: Send + Sync + 'static {
    /// Reloads on behalf of `by`; returns what changed.
    fn reload(&self, by: String) -> crate::runtime::BoxFuture<Result<views::ReloadView, ApiError>>;
}

/// Moves a driven clock (`POST /v1/admin/clock`, `[clock] mode = "driven"`).
pub trait DriveClock: Send + Sync + 'static {
    /// Moves the clock to `to` once `deliveries` mesh deliveries are folded into the open
    /// cycle; answers once the cycles ending by `to` are closed.
    fn advance(
        &self,
        to: Timestamp,
        deliveries: Option<u64>,
    ) -> crate::runtime::BoxFuture<Result<views::ClockView, ApiError>>;
}

/// Recent snapshots, newest last, as recorded.
pub type SnapshotCache = Arc<Mutex<VecDeque<serde_json::Value>>>;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub runtime: Runtime,
    pub tokens: Arc<Tokens>,
    pub ledger: Arc<dyn metaloop_ledger::LedgerStore>,
    pub snapshots: SnapshotCache,
    pub ingest: Option<Arc<dyn EventIngest>>,
    /// The supervisor's clock (wall clock for the daemon, virtual time for the demo).
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Prometheus metrics, when kept.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Every cycle's KPIs, alerts and policy evaluations, as the dashboard draws them.
    pub history: crate::history::History,
    /// The simulated spine's ground truth per directive (the demo only).
    pub truth: Option<crate::demo::TruthBook>,
    /// The key checkpoints are signed with, for the dashboard's verification status.
    pub checkpoint_key: Option<ed25519_dalek::VerifyingKey>,
    /// Leader or standby (a supervisor running alone always leads).
    pub role: crate::ha::RoleCell,
    /// What reloads the adapters at run time, when this server can.
    pub reload: Option<Arc<dyn Reload>>,
    /// What moves the supervisor's clock, when it is driven.
    pub drive_clock: Option<Arc<dyn DriveClock>>,
}

/// An API failure, as JSON `{"error": kind, "message": …, "field": …}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// A 400 naming the bad field.
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, field) = match &self {
            ApiError::BadRequest { field, .. } => {
                (StatusCode::BAD_REQUEST, "bad_request", Some(field.clone()))
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
        };
        let mut body = serde_json::json!({ "error": kind, "message": self.to_string() });
        if let Some(f) = field {
            body["field"] = serde_json::Value::String(f);
        }
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// The `error` word of a JSON error body for an HTTP status.
pub fn error_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "error",
    }
}

/// Every 4xx and 5xx answer carries the JSON error body, including those made by the HTTP
/// layer itself (a path that is not UTF-8, a wrong method, a body over the limit), whose plain
/// text becomes the message.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // JSON already, or a dashboard page (HTML) that explains itself
    let keep = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if keep {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = serde_json::json!({ "error": error_kind(status), "message": message });
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

impl From<crate::runtime::RuntimeError> for ApiError {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}
