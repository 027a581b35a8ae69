//! The overview: every goal against its KPI over time, globally and per domain, with the goal
//! band and markers for directives, verdicts, rollbacks and alerts; the current cycle, the
//! ledger head and the last signed checkpoint; alerts firing. Long histories are downsampled
//! on the server (min, max and mean per pixel column), so 30 days of cycles stay fast.

use super::layout::{self, Frame, Nav};
use super::svg::{Chart, Marker, Shape, percent, plain};
use super::{DashState, api_error_page, html_page, signed_in};
use crate::history::{Bucket, GLOBAL, History};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use metaloop_core::directive::Status;
use metaloop_core::kpi::Direction;
use metaloop_core::time::Timestamp;
use std::collections::HashMap;

/// How much history the overview shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverviewRange {
    Day,
    Week,
    Month,
    All,
}

impl OverviewRange {
    /// From the `range` query value (`1d`, `7d`, `30d`, `all`; default all).
    pub fn parse(v: Option<&str>) -> Result<OverviewRange, String> {
        match v {
            None | Some("all") => Ok(OverviewRange::All),
            Some("1d") => Ok(OverviewRange::Day),
            Some("7d") => Ok(OverviewRange::Week),
            Some("30d") => Ok(OverviewRange::Month),
            Some(other) => Err(format!(
                "range must be one of 1d, 7d, 30d, all; got {other:?}"
            )),
        }
    }

    fn millis(self) -> Option<i64> {
        match self {
            OverviewRange::Day => Some(86_400_000),
            OverviewRange::Week => Some(7 * 86_400_000),
            OverviewRange::Month => Some(30 * 86_400_000),
            OverviewRange::All => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            OverviewRange::Day => "1d",
            OverviewRange::Week => "7d",
            OverviewRange::Month => "30d",
            OverviewRange::All => "all",
        }
    }
}

/// Pixel columns of a wide chart and of a per-domain chart: one bucket each.
const WIDE: (u32, u32) = (1240, 230);
const SMALL: (u32, u32) = (420, 150);

/// A goal as the overview shows it.
struct GoalRow {
    kpi: String,
    target: f64,
    direction: Direction,
    value: Option<f64>,
    gap: Option<f64>,
}

/// A directive as a chart marks it.
struct Mark {
    id: String,
    kpi: String,
    domain: String,
    label: String,
    issued: Timestamp,
    verdict: Option<(Timestamp, String)>,
    rolled_back: Option<Timestamp>,
    rollback_of: bool,
}

/// What the overview reads from the supervisor.
struct Model {
    goals: Vec<GoalRow>,
    marks: Vec<Mark>,
    alerts: Vec<metaloop_core::alert::Alert>,
    counts: Counts,
    cycle: u64,
    last_cycle_end: Option<Timestamp>,
    next_cycle_at: Timestamp,
}

#[derive(Default)]
struct Counts {
    total: usize,
    pending: usize,
    in_flight: usize,
    verified: usize,
    rolled_back: usize,
}

async fn model(st: &DashState) -> Result<Model, crate::api::ApiError> {
    Ok(st
        .api
        .runtime
        .call(|sup| {
            let s = sup.state();
            let goals = s
                .goals
                .iter()
                .map(|g| GoalRow {
                    kpi: g.kpi.clone(),
                    target: g.target,
                    direction: g.direction,
                    value: s.last_kpis.get(&g.kpi).copied(),
                    gap: s.last_gaps.get(&g.kpi).copied(),
                })
                .collect();
            let mut counts = Counts::default();
            let mut marks = Vec::new();
            for id in &s.order {
                let ds = &s.directives[id];
                counts.total += 1;
                match ds.status {
                    Status::PendingApproval => counts.pending += 1,
                    Status::Verified => counts.verified += 1,
                    Status::RolledBack => counts.rolled_back += 1,
                    _ => {}
                }
                if ds.holds_knob() && !ds.directive.shadow {
                    counts.in_flight += 1;
                }
                if ds.directive.shadow {
                    continue;
                }
                let d = &ds.directive;
                let at = |want: &[Status]| {
                    ds.lifecycle
                        .iter()
                        .find(|(st, _)| want.contains(st))
                        .map(|(st, t)| (*t, st.as_str().to_string()))
                };
                marks.push(Mark {
                    id: id.clone(),
                    kpi: d.target_kpi.clone(),
                    domain: d.target_domain.clone(),
                    label: format!(
                        "{} {} {} in {} ({})",
                        d.directive_type,
                        layout::short(id),
                        d.knob,
                        d.target_domain,
                        ds.status
                    ),
                    issued: d.issued_at,
                    verdict: at(&[
                        Status::Verified,
                        Status::NoEffect,
                        Status::Degraded,
                        Status::Inconclusive,
                    ]),
                    rolled_back: at(&[Status::RolledBack]).map(|(t, _)| t),
                    rollback_of: d.rollback_of.is_some(),
                });
            }
            Model {
                goals,
                marks,
                alerts: s.alerts.values().cloned().collect(),
                counts,
                cycle: s.cycle,
                last_cycle_end: s.last_cycle_end,
                next_cycle_at: sup.next_cycle_at(),
            }
        })
        .await?)
}

/// `GET /`.
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
    let range = match OverviewRange::parse(q.get("range").map(String::as_str)) {
        Ok(r) => r,
        Err(e) => return super::error_page(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    match render(&st, session, range).await {
        Ok(m) => html_page(m),
        Err(e) => api_error_page(e),
    }
}

/// The whole overview page (the benchmark times this through the router).
pub async fn render(
    st: &DashState,
    session: super::session::Session,
    range: OverviewRange,
) -> Result<Markup, crate::api::ApiError> {
    let frame = Frame::load(st, session).await?;
    let m = model(st).await?;
    let status = status_panel(st, &m).await;
    let history = &st.api.history;
    let (from, to) = match history.span() {
        Some((first, last)) => {
            let from = range.millis().map_or(first, |ms| {
                Timestamp((last.millis() - ms).max(first.millis()))
            });
            (from, last)
        }
        None => (Timestamp(0), Timestamp(0)),
    };
    let alert_events = history.alert_events_between(from, to);
    let domains: Vec<String> = history
        .scopes()
        .into_iter()
        .filter(|s| s != GLOBAL)
        .collect();
    let body = html! {
        h1 { "Overview" }
        (status)
        section class="goals" {
            div class="section-head" {
                h2 { "Goals" }
                div class="ranges" {
                    @for r in [OverviewRange::Day, OverviewRange::Week, OverviewRange::Month, OverviewRange::All] {
                        a href=(format!("/?range={}", r.as_str())) class=@if r == range { "active" } @else { "" } { (r.as_str()) }
                    }
                }
            }
            @if history.is_empty() {
                p class="empty" { "No cycle has closed yet: the charts appear after the first one." }
            }
            p class="legend" {
                span class="key band-goal" {} " goal met  "
                span class="key line-mean" {} " KPI (mean per column; the lighter band spans min–max)  "
                span class="key m-issued" {} " directive  "
                span class="key m-good" {} " verified  "
                span class="key m-bad" {} " failed verdict  "
                span class="key m-rollback" {} " rollback  "
                span class="key m-alert" {} " alert"
            }
            @for g in &m.goals {
                article class="goal" id=(format!("goal-{}", g.kpi)) {
                    div class="goal-head" {
                        h3 { (layout::kpi_label(&g.kpi)) }
                        span class="target" {
                            "target " (if g.direction == Direction::HigherIsBetter { "≥ " } else { "≤ " })
                            (layout::kpi(&g.kpi, g.target))
                        }
                        span class="now" {
                            "now " strong { (g.value.map(|v| layout::kpi(&g.kpi, v)).unwrap_or_else(|| "no data".into())) }
                        }
                        @match g.gap {
                            Some(gap) if gap <= 0.0 => span class="pill good" { "met" },
                            Some(gap) => span class="pill bad" { "missed by " (layout::gap(&g.kpi, gap)) },
                            None => span class="pill neutral" { "missing" },
                        }
                    }
                    (goal_chart(history, GLOBAL, g, &m.marks, &alert_events, from, to, WIDE))
                    @if !domains.is_empty() {
                        div class="domains" {
                            @for d in &domains {
                                div class="domain" {
                                    h4 { (d) }
                                    (goal_chart(history, d, g, &m.marks, &alert_events, from, to, SMALL))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(frame.page("Overview", Nav::Overview, body))
}

/// `GET /fragments/status`: the live status panel (htmx polls it).
pub async fn status_fragment(State(st): State<DashState>, headers: HeaderMap) -> Response {
    if st.sessions.find(&headers).is_none() {
        return (StatusCode::NO_CONTENT, "").into_response();
    }
    match model(&st).await {
        Ok(m) => html_page(status_panel(&st, &m).await),
        Err(e) => api_error_page(e),
    }
}

async fn status_panel(st: &DashState, m: &Model) -> Markup {
    let head = st.api.ledger.head().await;
    let checkpoint = st.api.ledger.latest_checkpoint().await;
    html! {
        section class="status" id="status" hx-get="/fragments/status" hx-trigger="every 5s" hx-swap="outerHTML" {
            div class="tile" {
                div class="label" { "Cycle" }
                div class="big" id="cycle" { (m.cycle) }
                div class="small" {
                    @if let Some(t) = m.last_cycle_end { "closed " (layout::time(t)) } @else { "none closed yet" }
                    br; "next " (layout::time(m.next_cycle_at))
                }
            }
            div class="tile" {
                div class="label" { "Leader" }
                @if st.api.role.replicated() {
                    @let leader = st.api.role.leader();
                    @if st.api.role.is_standby() {
                        div class="big" id="role" { "standby" }
                        div class="small" { "leader " (leader.holder.as_deref().unwrap_or("none yet")) ", epoch " (leader.epoch) }
                    } @else {
                        div class="big" id="role" { "this replica" }
                        div class="small" { (st.api.role.me()) ", lease epoch " (leader.epoch) }
                    }
                } @else {
                    div class="big" id="role" { "this instance" }
                    div class="small" { "running alone: no lease to hold" }
                }
            }
            div class="tile" {
                div class="label" { "Ledger head" }
                @match &head {
                    Ok(Some((seq, hash))) => {
                        div class="big" id="ledger-head" { "#" (seq) }
                        div class="small mono" { (metaloop_ledger::hex::encode(hash).get(..16).unwrap_or("")) "…" }
                    }
                    Ok(None) => div class="big" { "empty" },
                    Err(e) => div class="small bad" { "unreadable: " (e) },
                }
            }
            div class="tile" {
                div class="label" { "Last signed checkpoint" }
                @match &checkpoint {
                    Ok(Some(cp)) => {
                        div class="big" { "#" (cp.seq) }
                        div class="small" { "signed " (layout::time_s(Timestamp(cp.time_ms))) " (wall clock)" br; "key " span class="mono" { (cp.key_id) } }
                    }
                    Ok(None) => div class="big" { "none yet" },
                    Err(e) => div class="small bad" { "unreadable: " (e) },
                }
            }
            div class="tile" {
                div class="label" { "Directives" }
                div class="big" { (m.counts.total) }
                div class="small" {
                    a href="/approvals" { (m.counts.pending) " pending" } " · " (m.counts.in_flight) " in flight"
                    br; (m.counts.verified) " verified · " (m.counts.rolled_back) " rolled back"
                }
            }
            div class=@if m.alerts.is_empty() { "tile" } @else { "tile alerting" } {
                div class="label" { "Alerts firing" }
                div class="big" { (m.alerts.len()) }
                div class="small" {
                    @for a in m.alerts.iter().take(3) {
                        a href="/alerts" title=(a.message) { (a.key) } br;
                    }
                    @if m.alerts.len() > 3 { "…" }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn goal_chart(
    history: &History,
    scope: &str,
    g: &GoalRow,
    marks: &[Mark],
    alerts: &[crate::history::AlertEvent],
    from: Timestamp,
    to: Timestamp,
    size: (u32, u32),
) -> Markup {
    let buckets = history.downsample(scope, &g.kpi, from, to, (size.0 - 66) as usize);
    if buckets.is_empty() {
        return html! { div class="nodata" { "no data for " (scope) } };
    }
    let mid = |b: &Bucket| (b.start + b.end) as f64 / 2.0;
    let (lo, hi) = buckets.iter().fold((g.target, g.target), |(lo, hi), b| {
        (lo.min(b.min), hi.max(b.max))
    });
    let pad = ((hi - lo) * 0.08).max(if layout::is_rate(&g.kpi) { 0.005 } else { 0.01 });
    let (y0, y1) = (lo - pad, hi + pad);
    let mut markers = Vec::new();
    for mk in marks
        .iter()
        .filter(|mk| mk.kpi == g.kpi && (scope == GLOBAL || mk.domain == scope))
    {
        let href = Some(format!("/directives/{}", mk.id));
        markers.push(Marker {
            x: mk.issued.millis() as f64,
            shape: Shape::Triangle,
            class: if mk.rollback_of {
                "m-rollback"
            } else {
                "m-issued"
            },
            title: format!("{} · issued {}", mk.label, layout::time(mk.issued)),
            href: href.clone(),
        });
        if let Some((t, outcome)) = &mk.verdict {
            markers.push(Marker {
                x: t.millis() as f64,
                shape: Shape::Circle,
                class: if outcome == "verified" {
                    "m-good"
                } else {
                    "m-bad"
                },
                title: format!("{} · {} {}", mk.label, outcome, layout::time(*t)),
                href: href.clone(),
            });
        }
        if let Some(t) = mk.rolled_back {
            markers.push(Marker {
                x: t.millis() as f64,
                shape: Shape::Diamond,
                class: "m-rollback",
                title: format!("{} · rolled back {}", mk.label, layout::time(t)),
                href,
            });
        }
    }
    for a in alerts
        .iter()
        .filter(|a| a.action == "fired" && a.key.contains(&g.kpi))
        .filter(|a| scope == GLOBAL || a.key.contains(scope))
    {
        markers.push(Marker {
            x: a.time.millis() as f64,
            shape: Shape::Bar,
            class: "m-alert",
            title: format!(
                "alert {} · {}",
                a.key,
                a.details["message"].as_str().unwrap_or("")
            ),
            href: Some("/alerts".into()),
        });
    }
    let (met0, met1) = match g.direction {
        Direction::HigherIsBetter => (g.target, y1),
        Direction::LowerIsBetter => (y0, g.target),
    };
    let fmt: fn(f64) -> String = if layout::is_rate(&g.kpi) {
        percent
    } else {
        plain
    };
    Chart::new(
        format!("{} ({scope})", layout::kpi_label(&g.kpi)),
        size.0,
        size.1,
        (from.millis() as f64, to.millis() as f64),
    )
    .y_range(y0, y1)
    .y_format(fmt)
    .region(met0, met1, "band-goal")
    .hline(
        g.target,
        "goal",
        format!("goal {}", layout::kpi(&g.kpi, g.target)),
    )
    .band(
        buckets.iter().map(|b| (mid(b), b.min, b.max)).collect(),
        "band-range",
    )
    .line(
        buckets.iter().map(|b| (mid(b), b.mean)).collect(),
        "line-mean",
        format!("{} in {scope}", layout::kpi_label(&g.kpi)),
    )
    .markers(markers)
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_reject_unknown_values() {
        assert_eq!(OverviewRange::parse(None), Ok(OverviewRange::All));
        assert_eq!(OverviewRange::parse(Some("7d")), Ok(OverviewRange::Week));
        assert!(
            OverviewRange::parse(Some("2d"))
                .unwrap_err()
                .contains("1d, 7d")
        );
    }
}
