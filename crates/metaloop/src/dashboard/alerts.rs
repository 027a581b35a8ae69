//! The alerts page: alerts firing now, and those fired and resolved recently.

use super::layout::{self, Frame, Nav};
use super::{DashState, api_error_page, html_page, signed_in};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use maud::html;

/// `GET /alerts`.
pub async fn page(State(st): State<DashState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match signed_in(&st, &headers, &uri) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let frame = match Frame::load(&st, session).await {
        Ok(f) => f,
        Err(e) => return api_error_page(e),
    };
    let firing = match st
        .api
        .runtime
        .call(|sup| sup.state().alerts.values().cloned().collect::<Vec<_>>())
        .await
    {
        Ok(a) => a,
        Err(e) => return api_error_page(e.into()),
    };
    let events = st.api.history.alert_events(200);
    let body = html! {
        h1 { "Alerts" }
        h2 { "Firing" }
        @if firing.is_empty() { p class="empty" id="no-alerts" { "No alert is firing." } }
        @else {
            table class="list" id="firing" {
                thead { tr { th { "alert" } th { "severity" } th { "since cycle" } th { "message" } } }
                tbody {
                    @for a in &firing {
                        tr {
                            td class="mono" { (a.key) }
                            td { span class=(format!("pill sev-{}", serde_json::to_value(a.severity).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())) {
                                (serde_json::to_value(a.severity).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
                            } }
                            td { (a.since_cycle) }
                            td { (a.message) }
                        }
                    }
                }
            }
        }
        h2 { "Fired and resolved" }
        @if events.is_empty() { p class="empty" { "No alert has fired since start-up." } }
        @else {
            table class="list" id="alert-history" {
                thead { tr { th { "time" } th { "" } th { "alert" } th { "details" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (layout::time_s(e.time)) }
                            td { @if e.action == "fired" { span class="pill bad" { "fired" } } @else { span class="pill good" { "resolved" } } }
                            td class="mono" { (e.key) }
                            td {
                                @if let Some(m) = e.details["message"].as_str() { (m) }
                                @else if let Some(c) = e.details["cycle"].as_u64() { "at cycle " (c) }
                            }
                        }
                    }
                }
            }
        }
    };
    html_page(frame.page("Alerts", Nav::Alerts, body))
}
