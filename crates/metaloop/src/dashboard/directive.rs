//! A directive's page: its lifecycle as a timeline, what it changed, the verdict with the
//! target KPI's pre and post distributions drawn, the effect with its interval, the evidence
//! at every look, the guardrails with raw and adjusted p-values, the simulator's ground truth
//! (in the demo), and its ledger records told as `metaloop ledger explain` tells them.

use super::approvals;
use super::layout::{self, Frame, Nav};
use super::svg::{Chart, XAxis, ecdf, percent, plain, weighted_quantile};
use super::{DashState, api_error_page, html_page, signed_in};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use maud::{Markup, html};
use metaloop_core::directive::Status;
use metaloop_core::goal::Goal;
use metaloop_core::kpi::{self, Direction};
use metaloop_core::supervisor::DirectiveState;
use metaloop_core::time::Timestamp;
use metaloop_core::verify::sequential::{self, Look};
use metaloop_core::verify::{KpiTest, Method, VerifyConfig, VerifyInput};

/// What the page reads from the supervisor.
struct Model {
    ds: DirectiveState,
    /// The directive that rolled this one back, and the one this one rolls back.
    rollback: Option<DirectiveState>,
    goals: Vec<Goal>,
    verification: VerifyConfig,
    cycle_ms: i64,
}

/// `GET /directives/{id}`.
pub async fn page(
    State(st): State<DashState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let session = match signed_in(&st, &headers, &uri) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let frame = match Frame::load(&st, session).await {
        Ok(f) => f,
        Err(e) => return api_error_page(e),
    };
    let idc = id.clone();
    let model = st
        .api
        .runtime
        .call(move |sup| {
            let s = sup.state();
            let matches: Vec<&DirectiveState> = s
                .directives
                .values()
                .filter(|d| d.directive.id.starts_with(&idc))
                .collect();
            let [one] = matches.as_slice() else {
                return None;
            };
            let ds = (*one).clone();
            let rollback = ds
                .rolled_back_by
                .as_ref()
                .and_then(|r| s.directives.get(r))
                .cloned();
            Some(Model {
                ds,
                rollback,
                goals: s.goals.clone(),
                verification: sup.config().verification.clone(),
                cycle_ms: sup.config().cycle_seconds * 1000,
            })
        })
        .await;
    let m = match model {
        Ok(Some(m)) => m,
        Ok(None) => {
            return super::error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!("no directive {id} (or the prefix is ambiguous)"),
            );
        }
        Err(e) => return api_error_page(e.into()),
    };
    let pending = if m.ds.status == Status::PendingApproval {
        approvals::pending(&st, Some(m.ds.directive.id.clone()))
            .await
            .ok()
            .and_then(|mut v| v.pop())
    } else {
        None
    };
    let story = explain(&st, &m).await;
    let truth = st.api.truth.as_ref().and_then(|t| {
        t.read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&m.ds.directive.id)
            .cloned()
    });
    let now = (st.api.clock)();
    let ds = &m.ds;
    let d = &ds.directive;
    let body = html! {
        div class="crumbs" { a href="/directives" { "Directives" } " / " span class="mono" { (d.id) } }
        h1 {
            (d.directive_type) " " (d.knob) " in " (d.target_domain) " "
            span id="directive-status" { (layout::status_pill(ds.status.as_str())) }
        }
        p class="sub" {
            "impact " strong { (ds.effective_impact) }
            " · policy " (d.policy_id.as_deref().unwrap_or("none (verification layer)"))
            " · issued at cycle " (d.issued_cycle) " (" (layout::time(d.issued_at)) ")"
            " · confidence " (format!("{:.3}", d.factors.confidence))
            @if d.shadow { " · " span class="pill shadow" { "shadow: never published" } }
        }
        @if let Some(of) = &d.rollback_of {
            p class="notice" { "This directive rolls back " a href=(format!("/directives/{of}")) class="mono" { (layout::short(of)) } "." }
        }
        @if let Some(rb) = &m.rollback {
            p class="notice bad" {
                "Rolled back by " a href=(format!("/directives/{}", rb.directive.id)) class="mono" { (layout::short(&rb.directive.id)) }
                " (" (layout::status_pill(rb.status.as_str())) ")."
            }
        }
        @if let Some(p) = &pending {
            (approvals::card(&st, &frame, p, now))
        }
        div class="grid2" {
            section class="card" {
                h2 { "Lifecycle" }
                (timeline(ds))
            }
            section class="card" {
                h2 { "What it changes" }
                table class="change" {
                    tr { th { "knob" } td class="mono" { (d.target_domain) "/" (d.knob) } }
                    tr { th { "action" } td class="mono" { (d.action_name) " " (serde_json::to_string(&d.action).unwrap_or_default()) } }
                    @if let Some(a) = &ds.applied {
                        tr { th { "applied" } td class="mono" { (layout::value(&a.previous)) " → " (layout::value(&a.current)) " at " (layout::time_s(a.at)) } }
                    }
                    @if let Some(r) = &ds.refused_reason { tr { th { "refused" } td { (r) } } }
                    @if ds.ack_timed_out { tr { th { "ack" } td class="bad" { "timed out: never assumed applied" } } }
                    tr { th { "target KPI" } td { (layout::kpi_label(&d.target_kpi)) } }
                    tr { th { "justification" } td { (d.justification) } }
                    @if !d.expected_impact.is_empty() { tr { th { "expected" } td { (d.expected_impact) } } }
                    tr { th { "confidence" } td {
                        (format!("{:.3} = evidence {:.3} × track record {:.3} × coverage {:.3}",
                            d.factors.confidence, d.factors.evidence, d.factors.track_record, d.factors.coverage))
                    } }
                }
            }
        }
        (verdict_section(&m))
        @if let Some(t) = &truth {
            section class="card" id="truth" {
                h2 { "Ground truth (simulated spine)" }
                p class="hint" { "The simulator knows each change's true effect; the supervisor never sees this." }
                table class="change" {
                    tr { th { "true effect on the target" } td {
                        (t["effect"].as_f64().map(|e| layout::kpi_delta(&d.target_kpi, e)).unwrap_or_default())
                        @if t["harmful"].as_bool() == Some(true) { " " span class="pill bad" { "harmful" } }
                        @else { " " span class="pill good" { "not harmful" } }
                    } }
                    tr { th { "expected before → after" } td {
                        (t["before"].as_f64().map(|v| layout::kpi(&d.target_kpi, v)).unwrap_or_default())
                        " → " (t["after"].as_f64().map(|v| layout::kpi(&d.target_kpi, v)).unwrap_or_default())
                    } }
                    tr { th { "knob" } td class="mono" { (layout::value(&t["previous"])) " → " (layout::value(&t["current"])) } }
                }
                @if let (Some(before), Some(after)) = (t["kpis_before"].as_object(), t["kpis_after"].as_object()) {
                    table class="list" {
                        thead { tr { th { "KPI (steady state)" } th { "before" } th { "after" } } }
                        tbody {
                            @for (k, v) in before {
                                tr { td { (layout::kpi_label(k)) } td { (v.as_f64().map(|x| layout::kpi(k, x)).unwrap_or_else(|| v.to_string())) }
                                     td { (after.get(k).and_then(|x| x.as_f64()).map(|x| layout::kpi(k, x)).unwrap_or_default()) } }
                            }
                        }
                    }
                }
            }
        }
        section class="card" id="ledger-story" {
            h2 { "Ledger" }
            p {
                a href=(format!("/ledger?resource={}", d.id)) { "Its ledger records" }
                " · the same story on the command line: "
                code { "metaloop ledger explain " (layout::short(&d.id)) " --data DIR" }
            }
            @match &story {
                Ok(lines) => pre class="explain" { @for l in lines { (l) "\n" } },
                Err(e) => p class="hint" { (e) },
            }
        }
    };
    html_page(frame.page(
        &format!("Directive {}", layout::short(&d.id)),
        Nav::Directives,
        body,
    ))
}

/// One line of the timeline.
enum Event<'a> {
    Status(Status),
    Approval(&'a metaloop_core::supervisor::Approval),
}

fn timeline(ds: &DirectiveState) -> Markup {
    let first = ds.lifecycle.first().map(|(_, t)| *t);
    // the statuses in order, each approval just before the status it caused (or the first
    // later one)
    let mut events: Vec<(Timestamp, Event<'_>)> = ds
        .lifecycle
        .iter()
        .map(|(s, t)| (*t, Event::Status(*s)))
        .collect();
    for a in &ds.approvals {
        let at = events
            .iter()
            .position(|(t, e)| {
                *t > a.at
                    || (*t == a.at
                        && matches!(e, Event::Status(Status::Approved | Status::Published)))
            })
            .unwrap_or(events.len());
        events.insert(at, (a.at, Event::Approval(a)));
    }
    html! {
        ol class="timeline" {
            @for (t, event) in &events {
                @match event {
                    Event::Approval(a) => {
                        li class="good approval" {
                            span class="when" { (layout::time_s(a.at)) }
                            span class="pill good" { "approval" }
                            span class="what" { "by " strong { (a.approver) } @if !a.note.is_empty() { ": “" (a.note) "”" } }
                        }
                    }
                    Event::Status(status) => {
                        li class=(layout::status_class(status.as_str())) {
                            span class="when" { (layout::time_s(*t)) }
                            (layout::status_pill(status.as_str()))
                            @if let Some(f) = first { @if *t > f { span class="after" { "+" (layout::duration(t.millis() - f.millis())) } } }
                            @match status {
                                Status::PendingApproval => {
                                    span class="what" {
                                        (ds.requirement.approvals) " approval(s) needed"
                                        @if ds.requirement.review_note { ", with a review note" }
                                        @if let Some(e) = ds.expires_at { "; expires " (layout::time(e)) }
                                    }
                                }
                                Status::Rejected => @if let Some(r) = &ds.rejection {
                                    span class="what" { "by " strong { (r.approver) } @if !r.note.is_empty() { ": “" (r.note) "”" } }
                                },
                                Status::Applied => @if let Some(a) = &ds.applied {
                                    span class="what mono" { (layout::value(&a.previous)) " → " (layout::value(&a.current)) }
                                },
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Weighted values: `(value, weight)`.
type Samples = Vec<(f64, f64)>;

/// Weighted samples of the target KPI before and after, and what they are.
fn distributions(ds: &DirectiveState) -> (Samples, Samples, &'static str) {
    let k = ds.directive.target_kpi.as_str();
    let duration = matches!(
        k,
        kpi::MEAN_RECOVERY_TIME | kpi::P50_RECOVERY_TIME | kpi::P95_RECOVERY_TIME
    );
    if duration && (ds.pre.recovery.count > 0 || ds.post.recovery.count > 0) {
        let w = |v: Vec<(f64, u64)>| v.into_iter().map(|(x, n)| (x, n as f64)).collect();
        return (
            w(ds.pre.recovery.weighted_values()),
            w(ds.post.recovery.weighted_values()),
            "recovery durations, seconds (sketch bins)",
        );
    }
    let per_cycle = |cycles: &[std::sync::Arc<metaloop_core::verify::series::CycleSummary>]| {
        cycles
            .iter()
            .filter_map(|c| c.domains.get(&ds.directive.target_domain)?.value(k))
            .map(|v| (v, 1.0))
            .collect::<Vec<_>>()
    };
    (
        per_cycle(&ds.pre_series),
        per_cycle(&ds.post_series),
        "the target domain's value in each cycle",
    )
}

fn verdict_section(m: &Model) -> Markup {
    let ds = &m.ds;
    let d = &ds.directive;
    let k = d.target_kpi.as_str();
    let (pre, post, what) = distributions(ds);
    let sequential = m.verification.method == Method::Metaloop && d.experiment.is_none();
    let looks: Vec<Look> = if sequential && !ds.post_series.is_empty() {
        let input = VerifyInput {
            target_domain: &d.target_domain,
            target_kpi: &d.target_kpi,
            side_effects: &d.side_effects,
            min_effect: d.min_effect,
            goals: &m.goals,
            pre: &ds.pre,
            post: &ds.post,
            pre_series: &ds.pre_series,
            post_series: &ds.post_series,
            controls: &ds.controls,
            post_cycles: ds.post_cycles,
        };
        sequential::trace(&m.verification, &input, m.verification.alpha)
    } else {
        Vec::new()
    };
    let direction = metaloop_core::kpi::builtin(k)
        .map(|(dir, _)| dir)
        .or_else(|| m.goals.iter().find(|g| g.kpi == k).map(|g| g.direction))
        .unwrap_or(Direction::HigherIsBetter);
    html! {
        section class="card" id="verdict" {
            h2 { "Verification" }
            @match &ds.verdict {
                None => p class="hint" {
                    @if ds.status == Status::Verifying { "Verifying: " (ds.post_cycles) " post cycle(s) so far; the evidence is examined every cycle." }
                    @else { "No verdict: the directive was not verified (" (ds.status) ")." }
                },
                Some(v) => {
                    p class="verdict-line" {
                        (layout::status_pill(v.outcome.as_str()))
                        " by " strong { (v.method.as_str()) } " after " (v.post_cycles) " post cycle(s): " (v.reason)
                    }
                    @if !v.adjustment.is_empty() { p class="hint" { "Kept apart from the time of day by: " (v.adjustment) } }
                    (target_table(&v.target, looks.last(), v.alpha))
                    @if !v.guardrails.is_empty() {
                        h3 { "Guardrails (Holm-adjusted at " (v.guardrail_alpha) ")" }
                        table class="list" id="guardrails" {
                            thead { tr { th { "KPI" } th { "pre" } th { "post" } th { "effect (+ better)" } th { "tolerance" } th { "raw p" } th { "adjusted p" } th { "" } } }
                            tbody {
                                @for g in &v.guardrails {
                                    tr class=@if g.failed { "failed" } @else { "" } {
                                        td { (layout::kpi_label(&g.kpi)) }
                                        td { (layout::kpi(&g.kpi, g.pre)) }
                                        td { (layout::kpi(&g.kpi, g.post)) }
                                        td { (layout::kpi_delta(&g.kpi, g.effect)) }
                                        td { (layout::tolerance(&g.kpi, g.tolerance)) }
                                        td { (layout::p(g.p_value)) }
                                        td { (layout::p(g.p_adjusted)) }
                                        td { @if g.failed { span class="pill bad" { "failed" } } @else { span class="pill good" { "ok" } } " " (g.note) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div class="grid2" {
                div {
                    h3 { "Before and after" }
                    p class="hint" { "Empirical distribution of " (what) "." }
                    (ecdf_chart(k, &pre, &post, direction))
                }
                div {
                    h3 { "Over cycles" }
                    p class="hint" { "The target domain's " (layout::kpi_label(k)) " each cycle, before (grey) and since the change (blue)." }
                    (cycles_chart(ds, m.cycle_ms))
                }
            }
            @if !looks.is_empty() {
                div class="grid2" id="trace" {
                    div {
                        h3 { "Evidence at each look" }
                        p class="hint" { "Anytime-valid p-values: improvement (green) against α = " (m.verification.alpha) ", degradation (red) against " (m.verification.degrade_alpha) "; looking every cycle does not inflate them." }
                        (p_chart(&looks, &m.verification))
                    }
                    div {
                        h3 { "Effect at each look" }
                        p class="hint" { "Estimate with its " (format!("{:.0}", 100.0 * (1.0 - m.verification.alpha))) " % confidence sequence (valid at every look)." }
                        (effect_chart(k, &looks, d.min_effect))
                    }
                }
            }
        }
    }
}

fn target_table(t: &KpiTest, last: Option<&Look>, alpha: f64) -> Markup {
    let k = t.kpi.as_str();
    html! {
        table class="list" id="target-test" {
            thead { tr { th { "target" } th { "pre (n)" } th { "post (n)" } th { "effect (+ better)" } th { "interval" } th { "test" } th { "p (better)" } th { "p (worse)" } } }
            tbody {
                tr {
                    td { (layout::kpi_label(k)) }
                    td { (layout::kpi(k, t.pre)) " (" (t.n_pre) ")" }
                    td { (layout::kpi(k, t.post)) " (" (t.n_post) ")" }
                    td id="effect" { strong { (layout::kpi_delta(k, t.effect)) } }
                    td id="interval" {
                        @match (last, t.statistic) {
                            (Some(l), _) => { "[" (layout::kpi_delta(k, l.lower)) ", " (layout::kpi_delta(k, l.upper)) "] "
                                span class="hint" { (format!("{:.0}", 100.0 * (1.0 - alpha))) " % confidence sequence" } },
                            (None, Some(z)) if z.abs() > 1e-12 && t.effect != 0.0 => {
                                @let se = (t.effect / z).abs();
                                "[" (layout::kpi_delta(k, t.effect - 1.96 * se)) ", " (layout::kpi_delta(k, t.effect + 1.96 * se)) "] "
                                span class="hint" { "95 % normal approximation" }
                            },
                            _ => "–",
                        }
                    }
                    td { (t.test) }
                    td { (layout::p(t.p_value)) }
                    td { (layout::p(t.p_worse)) }
                }
            }
        }
        @if !t.note.is_empty() { p class="hint" { (t.note) } }
    }
}

fn ecdf_chart(k: &str, pre: &[(f64, f64)], post: &[(f64, f64)], dir: Direction) -> Markup {
    if pre.is_empty() && post.is_empty() {
        return html! { div class="nodata" { "no observations yet" } };
    }
    let all: Vec<(f64, f64)> = pre.iter().chain(post.iter()).copied().collect();
    let lo = weighted_quantile(&all, 0.0).unwrap_or(0.0);
    let hi = weighted_quantile(&all, 0.99).unwrap_or(1.0).max(lo + 1e-9);
    let pad = (hi - lo) * 0.04;
    let clip = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
        ecdf(v)
            .into_iter()
            .filter(|(x, _)| *x <= hi + pad)
            .collect()
    };
    let better = if dir == Direction::HigherIsBetter {
        "right is better"
    } else {
        "left is better"
    };
    Chart::new(
        format!("{} before and after ({better})", layout::kpi_label(k)),
        440,
        220,
        (lo - pad, hi + pad),
    )
    .x_axis(XAxis::Number(""))
    .y_range(0.0, 1.0)
    .y_format(percent)
    .steps(
        clip(pre),
        "ecdf-pre",
        format!("before ({} values)", pre.len()),
    )
    .steps(
        clip(post),
        "ecdf-post",
        format!("after ({} values)", post.len()),
    )
    .render()
}

fn cycles_chart(ds: &DirectiveState, cycle_ms: i64) -> Markup {
    let k = ds.directive.target_kpi.as_str();
    let points = |cycles: &[std::sync::Arc<metaloop_core::verify::series::CycleSummary>]| {
        cycles
            .iter()
            .filter_map(|c| {
                let v = c.domains.get(&ds.directive.target_domain)?.value(k)?;
                Some((c.end.millis() as f64, v))
            })
            .collect::<Vec<_>>()
    };
    let (pre, post) = (points(&ds.pre_series), points(&ds.post_series));
    if pre.is_empty() && post.is_empty() {
        return html! { div class="nodata" { "no per-cycle data kept" } };
    }
    let x0 = pre
        .first()
        .or(post.first())
        .map(|p| p.0)
        .unwrap_or_default();
    let x1 = post
        .last()
        .or(pre.last())
        .map(|p| p.0)
        .unwrap_or_default()
        .max(x0 + cycle_ms as f64);
    let fmt: fn(f64) -> String = if layout::is_rate(k) { percent } else { plain };
    let mut chart = Chart::new(
        format!("{} per cycle", layout::kpi_label(k)),
        440,
        220,
        (x0, x1),
    )
    .y_format(fmt)
    .line(pre, "cycles-pre", "before")
    .line(post, "cycles-post", "since the change");
    if let Some(a) = &ds.applied {
        chart = chart.vline(
            a.at.millis() as f64,
            "applied",
            format!("applied {}", layout::time_s(a.at)),
        );
    }
    chart.render()
}

fn p_chart(looks: &[Look], cfg: &VerifyConfig) -> Markup {
    let n = looks.last().map_or(1, |l| l.post_cycles) as f64;
    let floor = 1e-8;
    Chart::new("anytime p-values per look", 440, 220, (1.0, n.max(2.0)))
        .x_axis(XAxis::Number(""))
        .y_log()
        .y_range(floor, 1.5)
        .y_format(plain)
        .hline(cfg.alpha, "alpha", format!("α = {}", cfg.alpha))
        .hline(
            cfg.degrade_alpha,
            "alpha-worse",
            format!("degradation α = {}", cfg.degrade_alpha),
        )
        .line(
            looks
                .iter()
                .map(|l| (l.post_cycles as f64, l.p_better.max(floor)))
                .collect(),
            "p-better",
            "p (improvement)",
        )
        .line(
            looks
                .iter()
                .map(|l| (l.post_cycles as f64, l.p_worse.max(floor)))
                .collect(),
            "p-worse",
            "p (degradation)",
        )
        .render()
}

fn effect_chart(k: &str, looks: &[Look], min_effect: Option<f64>) -> Markup {
    let n = looks.last().map_or(1, |l| l.post_cycles) as f64;
    let finite: Vec<&Look> = looks
        .iter()
        .filter(|l| l.lower.is_finite() && l.upper.is_finite())
        .collect();
    let fmt: fn(f64) -> String = if layout::is_rate(k) { percent } else { plain };
    let mut chart = Chart::new("effect per look", 440, 220, (1.0, n.max(2.0)))
        .x_axis(XAxis::Number(""))
        .y_format(fmt)
        .band(
            finite
                .iter()
                .map(|l| (l.post_cycles as f64, l.lower, l.upper))
                .collect(),
            "band-cs",
        )
        .hline(0.0, "zero", "no change")
        .line(
            looks
                .iter()
                .map(|l| (l.post_cycles as f64, l.effect))
                .collect(),
            "line-effect",
            "estimate",
        );
    if let Some(mde) = min_effect.filter(|m| *m > 0.0) {
        chart = chart.hline(mde, "alpha", format!("least effect worth keeping {mde}"));
    }
    chart.render()
}

/// The directive's story from its ledger records (those from its cycle to its last event).
async fn explain(st: &DashState, m: &Model) -> Result<Vec<String>, String> {
    let d = &m.ds.directive;
    let last = |ds: &DirectiveState| ds.lifecycle.last().map(|(_, t)| *t);
    let in_flight =
        m.ds.status.in_flight() || m.rollback.as_ref().is_some_and(|r| r.status.in_flight());
    let to = if in_flight {
        None
    } else {
        let end = [last(&m.ds), m.rollback.as_ref().and_then(last)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(d.issued_at);
        Some(Timestamp(end.millis() + m.cycle_ms))
    };
    let from = Timestamp(d.issued_at.millis() - 1000);
    let records = super::ledger::records_between(st.api.ledger.as_ref(), from, to, 200_000)
        .await
        .map_err(|e| format!("the ledger could not be read: {e}"))?;
    crate::ledger_cmd::explain_lines(&records, &d.id).map_err(|e| e.to_string())
}
