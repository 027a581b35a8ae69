//! The ledger page: recent records with filters (actor, action, resource), the signed
//! checkpoints, and the verification status (every record's hash and link, every
//! checkpoint's root and signature).

use super::layout::{self, Frame, Nav};
use super::{DashState, api_error_page, html_page, signed_in};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use metaloop_core::time::Timestamp;
use metaloop_ledger::{LedgerError, LedgerStore, Record};
use std::collections::HashMap;

/// Records shown per page.
const SHOWN: usize = 100;
/// Records examined per page at most when filtering.
const SCANNED: u64 = 50_000;

/// The records whose time is within `[from, to]` (to the head without `to`), at most `max`.
/// Records are in time order, so the first is found by bisection on seq.
pub async fn records_between(
    store: &dyn LedgerStore,
    from: Timestamp,
    to: Option<Timestamp>,
    max: usize,
) -> Result<Vec<Record>, LedgerError> {
    let Some((head, _)) = store.head().await? else {
        return Ok(Vec::new());
    };
    // the first seq whose time is at or after `from`
    let (mut lo, mut hi) = (1u64, head + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let t = store
            .read(mid, 1)
            .await?
            .first()
            .map_or(i64::MAX, |r| r.time_ms);
        if t < from.millis() {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut out = Vec::new();
    let mut next = lo;
    while next <= head && out.len() < max {
        let page = store.read(next, 2_000).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for r in page {
            if to.is_some_and(|t| r.time_ms > t.millis()) {
                return Ok(out);
            }
            out.push(r);
            if out.len() >= max {
                break;
            }
        }
    }
    Ok(out)
}

struct Filter {
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    before: Option<u64>,
}

impl Filter {
    fn parse(q: &HashMap<String, String>) -> Result<Filter, String> {
        let text = |k: &str| {
            q.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let before = match text("before") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| format!("before must be a record number, got {v:?}"))?,
            ),
        };
        if let Some(k) = q
            .keys()
            .find(|k| !["actor", "action", "resource", "before"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown filter {k:?}; use actor, action, resource or before"
            ));
        }
        Ok(Filter {
            actor: text("actor"),
            action: text("action"),
            resource: text("resource"),
            before,
        })
    }

    fn matches(&self, r: &Record) -> bool {
        self.actor.as_deref().is_none_or(|a| r.actor == a)
            && self
                .action
                .as_deref()
                .is_none_or(|a| r.action == a || r.action.starts_with(&format!("{a}.")))
            && self
                .resource
                .as_deref()
                .is_none_or(|x| r.resource.starts_with(x))
    }

    fn query(&self, before: u64) -> String {
        let mut q = format!("before={before}");
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
        ] {
            if let Some(v) = v {
                q.push_str(&format!("&{k}={}", super::urlencode(v)));
            }
        }
        q
    }
}

/// `GET /ledger`.
pub async fn page(
    State(st): State<DashState>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let session = match signed_in(&st, &headers, &uri) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let filter = match Filter::parse(&q) {
        Ok(f) => f,
        Err(e) => return super::error_page(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    let frame = match Frame::load(&st, session).await {
        Ok(f) => f,
        Err(e) => return api_error_page(e),
    };
    let store = st.api.ledger.as_ref();
    let head = match store.head().await {
        Ok(h) => h.map_or(0, |(s, _)| s),
        Err(e) => return api_error_page(crate::api::ApiError::Unavailable(e.to_string())),
    };
    // newest first: read backwards in pages until enough match or the scan budget is spent
    let top = filter
        .before
        .map_or(head, |b| b.saturating_sub(1).min(head));
    let mut shown: Vec<Record> = Vec::new();
    let mut scanned_to = top + 1;
    while scanned_to > 1 && shown.len() < SHOWN && top + 1 - scanned_to < SCANNED {
        let from = scanned_to.saturating_sub(1_000).max(1);
        let page = match store.read(from, (scanned_to - from) as u32).await {
            Ok(p) => p,
            Err(e) => return api_error_page(crate::api::ApiError::Unavailable(e.to_string())),
        };
        for r in page.into_iter().rev() {
            if shown.len() < SHOWN && filter.matches(&r) {
                shown.push(r);
            }
            if shown.len() == SHOWN {
                scanned_to = shown.last().map_or(from, |r| r.seq);
                break;
            }
        }
        if shown.len() < SHOWN {
            scanned_to = from;
        }
    }
    let checkpoints = store.checkpoints(head.saturating_sub(20_000), 10_000).await;
    let body = html! {
        h1 { "Ledger" }
        (audit_panel(&st.audit.status().await))
        form method="get" action="/ledger" class="filters" {
            label for="actor" { "actor" } input id="actor" name="actor" value=(filter.actor.as_deref().unwrap_or(""));
            label for="action" { "action" } input id="action" name="action" placeholder="directive, alert.fired…" value=(filter.action.as_deref().unwrap_or(""));
            label for="resource" { "resource" } input id="resource" name="resource" placeholder="id or prefix" value=(filter.resource.as_deref().unwrap_or(""));
            button type="submit" { "Filter" }
            a href="/ledger" { "clear" }
        }
        p class="hint" {
            "Records " (scanned_to.max(1)) "–" (top) " of " (head) " examined, newest first"
            @if shown.is_empty() { ": none matches." } @else { "." }
        }
        @if !shown.is_empty() {
            table class="list records" id="records" {
                thead { tr { th { "seq" } th { "time" } th { "actor" } th { "action" } th { "resource" } th { "hash" } } }
                tbody {
                    @for r in &shown {
                        tr {
                            td { (r.seq) }
                            td { (layout::time_s(Timestamp(r.time_ms))) }
                            td { (r.actor) }
                            td { (r.action) }
                            td class="mono" {
                                @if r.action.starts_with("directive.") || r.action.starts_with("verification.") {
                                    a href=(format!("/directives/{}", r.resource)) { (r.resource) }
                                } @else { (r.resource) }
                            }
                            td class="mono" title=(r.hash_hex()) { (r.hash_hex().get(..12).unwrap_or("")) "…" }
                        }
                    }
                }
            }
        }
        @if scanned_to > 1 {
            p { a href=(format!("/ledger?{}", filter.query(scanned_to))) id="older" { "Older records →" } }
        }
        h2 { "Signed checkpoints" }
        @match checkpoints {
            Ok(cps) if cps.is_empty() => p class="empty" { "No checkpoint yet." },
            Ok(cps) => {
                table class="list" id="checkpoints" {
                    thead { tr { th { "seq" } th { "made" } th { "head" } th { "Merkle root" } th { "key" } } }
                    tbody {
                        @for c in cps.iter().rev().take(20) {
                            tr {
                                td { (c.seq) }
                                td { (layout::time_s(Timestamp(c.time_ms))) }
                                td class="mono" { (metaloop_ledger::hex::encode(&c.head).get(..16).unwrap_or("")) "…" }
                                td class="mono" { (metaloop_ledger::hex::encode(&c.merkle_root).get(..16).unwrap_or("")) "…" }
                                td class="mono" { (c.key_id) }
                            }
                        }
                    }
                }
            },
            Err(e) => p class="bad" { "checkpoints unreadable: " (e) },
        }
    };
    html_page(frame.page("Ledger", Nav::Ledger, body))
}

/// `GET /fragments/audit`: the verification status (htmx polls it while it runs).
pub async fn audit_fragment(State(st): State<DashState>, headers: HeaderMap) -> Response {
    if st.sessions.find(&headers).is_none() {
        return (StatusCode::NO_CONTENT, "").into_response();
    }
    html_page(audit_panel(&st.audit.status().await))
}

fn audit_panel(s: &super::audit::AuditStatus) -> Markup {
    let poll = s.running || (s.checked < s.head && s.failure.is_none());
    html! {
        section class=(format!("audit {}", if s.failure.is_some() { "bad" } else if poll { "running" } else { "good" }))
            id="audit" hx-get="/fragments/audit" hx-trigger=(if poll { "every 2s" } else { "every 30s" }) hx-swap="outerHTML" {
            @match &s.failure {
                Some(f) => {
                    strong { "Verification FAILED: " } (f)
                    p { "Run " code { "metaloop ledger verify --data DIR --pubkey supervisor.pub" } " to confirm." }
                }
                None => {
                    strong id="audit-status" {
                        @if poll { "Verifying… " (s.checked) " of " (s.head) " records checked" }
                        @else { "Verified: records 1–" (s.checked) }
                    }
                    " — every record's hash and link; " (s.checkpoints) " checkpoint(s) with their Merkle roots"
                    @match &s.key_id {
                        Some(k) => { " and signatures (key " span class="mono" { (k) } ")" },
                        None => { " (signatures not checked: no public key)" },
                    }
                    "."
                }
            }
        }
    }
}
