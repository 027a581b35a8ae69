//! The page frame every dashboard page shares (navigation, who is signed in, sign-out) and the
//! way values are written (times, KPIs, statuses).

use super::session::Session;
use super::{DashState, roles_text};
use crate::api::ApiError;
use maud::{DOCTYPE, Markup, html};
use metaloop_core::time::Timestamp;

/// The navigation's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Approvals,
    Directives,
    Policies,
    Ledger,
    Alerts,
}

/// What the frame shows around every page.
pub struct Frame {
    pub session: Session,
    pub environment: String,
    pub cycle: u64,
    pub pending: usize,
    pub firing: usize,
    pub shadow: bool,
}

impl Frame {
    /// Reads what the frame needs from the supervisor.
    pub async fn load(st: &DashState, session: Session) -> Result<Frame, ApiError> {
        let (environment, cycle, pending, firing, shadow) = st
            .api
            .runtime
            .call(|sup| {
                let s = sup.state();
                (
                    s.environment.clone(),
                    s.cycle,
                    sup.pending_approvals().len(),
                    s.alerts.len(),
                    sup.config().shadow,
                )
            })
            .await?;
        Ok(Frame {
            session,
            environment,
            cycle,
            pending,
            firing,
            shadow,
        })
    }

    /// True when the signed-in principal has one of `roles`.
    pub fn may(&self, roles: &[crate::config::Role]) -> bool {
        self.session.principal.require(roles).is_ok()
    }

    /// The whole page around `body`.
    pub fn page(&self, title: &str, active: Nav, body: Markup) -> Markup {
        let item = |nav: Nav, href: &str, label: &str, badge: Option<usize>| {
            html! {
                a href=(href) class=@if nav == active { "active" } @else { "" } {
                    (label)
                    @if let Some(n) = badge.filter(|n| *n > 0) {
                        " " span class="badge" id=(format!("badge-{}", label.to_lowercase())) { (n) }
                    }
                }
            }
        };
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                    title { (title) " · metaloop" }
                    link rel="stylesheet" href="/assets/dashboard.css";
                    script src="/assets/htmx.min.js" defer {}
                }
                body {
                    header class="top" {
                        a class="brand" href="/" { "metaloop" }
                        nav {
                            (item(Nav::Overview, "/", "Overview", None))
                            (item(Nav::Approvals, "/approvals", "Approvals", Some(self.pending)))
                            (item(Nav::Directives, "/directives", "Directives", None))
                            (item(Nav::Policies, "/policies", "Policies", None))
                            (item(Nav::Ledger, "/ledger", "Ledger", None))
                            (item(Nav::Alerts, "/alerts", "Alerts", Some(self.firing)))
                        }
                        div class="who" {
                            span class="env" { (self.environment) }
                            @if self.shadow { span class="pill shadow" { "shadow mode" } }
                            span id="principal" title=(roles_text(&self.session.principal)) {
                                (self.session.principal.name) " (" (roles_text(&self.session.principal)) ")"
                            }
                            form method="post" action="/signout" class="inline" {
                                input type="hidden" name="csrf" value=(self.session.csrf);
                                button type="submit" class="link" id="signout" { "Sign out" }
                            }
                        }
                    }
                    main { (body) }
                    footer { "metaloop " (env!("CARGO_PKG_VERSION")) " · cycle " (self.cycle) " · times in UTC" }
                }
            }
        }
    }
}

/// A time as `2026-01-01 00:05`.
pub fn time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.millis())
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_rfc3339())
}

/// A time with seconds.
pub fn time_s(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.millis())
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_rfc3339())
}

/// A duration in minutes or hours.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    if s < 0 {
        format!("-{}", duration(-ms))
    } else if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 2 * 86_400 {
        format!("{:.1} h", s as f64 / 3600.0)
    } else {
        format!("{:.1} days", s as f64 / 86_400.0)
    }
}

/// True for KPIs measured as shares.
pub fn is_rate(kpi: &str) -> bool {
    kpi.ends_with("_rate")
}

/// A KPI value in its unit.
pub fn kpi(kpi_name: &str, v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if is_rate(kpi_name) {
        format!("{:.1} %", v * 100.0)
    } else if kpi_name.ends_with("_seconds") {
        format!("{v:.1} s")
    } else {
        format!("{v:.2}")
    }
}

/// A KPI change in its unit, with its sign.
pub fn kpi_delta(kpi_name: &str, v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if is_rate(kpi_name) {
        format!("{:+.2} pt", v * 100.0)
    } else if kpi_name.ends_with("_seconds") {
        format!("{v:+.2} s")
    } else {
        format!("{v:+.3}")
    }
}

/// A tolerated degradation in its unit: points for rates and scores, a share for durations.
pub fn tolerance(kpi_name: &str, v: f64) -> String {
    if is_rate(kpi_name) {
        format!("{:.1} pt", v * 100.0)
    } else if kpi_name.ends_with("_seconds") {
        format!("{:.0} %", v * 100.0)
    } else {
        format!("{v} points")
    }
}

/// How far a KPI misses its goal, in its unit.
pub fn gap(kpi_name: &str, gap: f64) -> String {
    if is_rate(kpi_name) {
        format!("{:.1} pt", gap.abs() * 100.0)
    } else {
        kpi(kpi_name, gap.abs())
    }
}

/// A p-value.
pub fn p(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x < 1e-4 => format!("{x:.1e}"),
        Some(x) => format!("{x:.4}"),
    }
}

/// A KPI's name for humans.
pub fn kpi_label(kpi_name: &str) -> String {
    match kpi_name {
        "overall_success_rate" => "Success rate".into(),
        "mean_recovery_time_seconds" => "Mean recovery time".into(),
        "p50_recovery_time_seconds" => "Median recovery time".into(),
        "p95_recovery_time_seconds" => "p95 recovery time".into(),
        "autonomy_rate" => "Autonomy".into(),
        "human_intervention_rate" => "Human intervention".into(),
        "compliance_score" => "Compliance score".into(),
        other => other.replace('_', " "),
    }
}

/// The CSS class of a lifecycle status.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "verified" | "applied" | "published" | "approved" => "good",
        "degraded" | "rolled_back" | "refused" | "rejected" | "expired" => "bad",
        "no_effect" | "inconclusive" => "warn",
        "pending_approval" => "pending",
        _ => "neutral",
    }
}

/// A status as a coloured pill.
pub fn status_pill(status: &str) -> Markup {
    html! { span class=(format!("pill {}", status_class(status))) { (status.replace('_', " ")) } }
}

/// The first 8 characters of an id.
pub fn short(id: &str) -> &str {
    metaloop_core::supervisor::short(id)
}

/// A JSON value in one line, without quotes around a plain string.
pub fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "–".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_in_their_units() {
        assert_eq!(kpi("overall_success_rate", 0.8712), "87.1 %");
        assert_eq!(kpi("mean_recovery_time_seconds", 42.34), "42.3 s");
        assert_eq!(kpi("compliance_score", 95.0), "95.00");
        assert_eq!(kpi_delta("autonomy_rate", -0.031), "-3.10 pt");
        assert_eq!(p(Some(0.00001)), "1.0e-5");
        assert_eq!(p(None), "–");
        assert_eq!(duration(90_000), "90 s");
        assert_eq!(duration(3_600_000), "60 min");
        assert_eq!(time(Timestamp(1_767_225_900_000)), "2026-01-01 00:05");
    }
}
