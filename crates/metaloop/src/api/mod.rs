//! The HTTP API (`/v1/...`, JSON, bearer tokens with roles), `/healthz`, `/readyz`.

pub mod auth;
pub mod openapi;
mod routes;

use crate::runtime::Runtime;
use auth::Tokens;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metaloop_core::time::Timestamp;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub use routes::router;

/// Takes spine events posted to `/v1/events` (the mesh's ingest pipeline).
pub trait EventIngest: Send + Sync + 'static {
    /// Ingests a body of the given content type; returns one result per event.
    fn ingest(
        &self,
        body: bytes::Bytes,
        content_type: Option<String>,
    ) -> crate::runtime::BoxFuture<Result<serde_json::Value, ApiError>>;
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

impl From<crate::runtime::RuntimeError> for ApiError {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}
