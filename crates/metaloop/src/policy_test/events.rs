//! Turning a test's KPI values into the spine events that produce them, deterministically.
//!
//! Per domain and cycle, with `n` = the test's `incidents`:
//! - `overall_success_rate` and `mean_recovery_time_seconds` share `n` recoveries of the playbook
//!   `default` (success 1.0 or durations of 10 s when one of them is not given), the
//!   successes spread evenly, the durations spread from half to one and a half times the mean;
//! - `playbook.<name>`: `n` more autonomous recoveries of that playbook, at that success rate;
//! - `autonomy_rate` and `human_intervention_rate` share `n` decisions (autonomy 1.0 or no
//!   overrides when one is not given); recoveries are autonomous at the autonomy rate;
//! - `compliance_score` and custom KPIs: `max(5, n / 10)` reports spread by ±1 point (custom:
//!   ±2 % of the value) around it;
//! - `trust_exceptions`: that many `trust.exception` events.

use super::series::Point;
use metaloop_core::kpi;
use metaloop_core::protocol::{
    ComplianceScore, Decision, EventData, KpiReport, Recovery, SpineEvent, TrustException,
};
use metaloop_core::time::Timestamp;
use std::collections::BTreeMap;

/// The playbook recoveries run when a test names none.
pub const DEFAULT_PLAYBOOK: &str = "default";

/// A series' values must mean something for their KPI.
pub fn check_series(kpi_name: &str, points: &[Point]) -> Result<(), String> {
    let range: (f64, f64) = match kpi_name {
        kpi::OVERALL_SUCCESS_RATE | kpi::AUTONOMY_RATE | kpi::HUMAN_INTERVENTION_RATE => (0.0, 1.0),
        k if k.starts_with("playbook.") => (0.0, 1.0),
        kpi::MEAN_RECOVERY_TIME => (0.0, metaloop_core::protocol::MAX_DURATION_S),
        kpi::COMPLIANCE_SCORE => (0.0, 100.0),
        "trust_exceptions" => (0.0, 10_000.0),
        kpi::P50_RECOVERY_TIME | kpi::P95_RECOVERY_TIME => {
            return Err(format!(
                "{kpi_name} follows from the durations: give mean_recovery_time_seconds instead"
            ));
        }
        custom => {
            let builtins = [
                kpi::OVERALL_SUCCESS_RATE,
                kpi::MEAN_RECOVERY_TIME,
                kpi::P50_RECOVERY_TIME,
                kpi::P95_RECOVERY_TIME,
                kpi::AUTONOMY_RATE,
                kpi::HUMAN_INTERVENTION_RATE,
                kpi::COMPLIANCE_SCORE,
            ];
            // a typo of a built-in name would silently become a custom KPI
            if let Some(b) = builtins.iter().find(|b| {
                b.starts_with(custom) || custom.starts_with(b.trim_end_matches("_seconds"))
            }) {
                return Err(format!(
                    "unknown KPI {custom:?}: did you mean {b}? (a custom KPI's name must not look like a built-in one)"
                ));
            }
            (
                -metaloop_core::protocol::MAX_KPI_VALUE,
                metaloop_core::protocol::MAX_KPI_VALUE,
            )
        }
    };
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p
            && !(range.0..=range.1).contains(v)
        {
            return Err(format!(
                "cycle {}: {v} is outside {}..={}",
                i + 1,
                range.0,
                range.1
            ));
        }
    }
    Ok(())
}

/// True for the `i`-th of `n` items when a fraction `p` of them are chosen, spread evenly.
fn chosen(i: u32, p: f64) -> bool {
    let i = f64::from(i);
    ((i + 1.0) * p + 1e-9).floor() > (i * p + 1e-9).floor()
}

/// Builds one domain's events of one cycle from its KPI values.
pub struct CycleEvents<'a> {
    pub test: &'a str,
    pub domain: &'a str,
    pub cycle: u64,
    pub start: Timestamp,
    pub cycle_ms: i64,
    pub incidents: u32,
}

impl CycleEvents<'_> {
    /// The events for `values` (KPI name → this cycle's value).
    pub fn build(&self, values: &BTreeMap<&str, f64>) -> Vec<SpineEvent> {
        let mut data: Vec<EventData> = Vec::new();
        let n = self.incidents;
        let autonomy = values.get(kpi::AUTONOMY_RATE).copied();
        let autonomous = |i: u32| autonomy.is_none_or(|a| chosen(i, a));
        let success = values.get(kpi::OVERALL_SUCCESS_RATE).copied();
        let mean = values.get(kpi::MEAN_RECOVERY_TIME).copied();
        let duration = |i: u32| {
            let m = mean.unwrap_or(10.0);
            m * (0.5 + (f64::from(i) + 0.5) / f64::from(n))
        };
        let recovery = |playbook: &str, i: u32, ok: bool, autonomous: bool| {
            let r = Recovery {
                domain: self.domain.to_string(),
                incident_id: format!("{}-{}-{playbook}-{i}", self.domain, self.cycle),
                playbook: playbook.to_string(),
                duration_s: duration(i),
                autonomous,
                human_override: false,
                experiment: None,
            };
            if ok {
                EventData::RecoverySucceeded(r)
            } else {
                EventData::RecoveryFailed(r)
            }
        };
        if success.is_some() || mean.is_some() {
            let s = success.unwrap_or(1.0);
            for i in 0..n {
                data.push(recovery(DEFAULT_PLAYBOOK, i, chosen(i, s), autonomous(i)));
            }
        }
        for (name, v) in values {
            if let Some(playbook) = name.strip_prefix("playbook.") {
                for i in 0..n {
                    data.push(recovery(playbook, i, chosen(i, *v), true));
                }
            }
        }
        let intervention = values.get(kpi::HUMAN_INTERVENTION_RATE).copied();
        if autonomy.is_some() || intervention.is_some() {
            for i in 0..n {
                let auto = autonomous(i);
                data.push(EventData::DecisionMade(Decision {
                    domain: self.domain.to_string(),
                    decision_id: format!("{}-{}-decision-{i}", self.domain, self.cycle),
                    confidence: 0.8,
                    autonomous: auto,
                    approved_by_human: !auto,
                    overridden: intervention.is_some_and(|h| chosen(i, h)),
                    experiment: None,
                }));
            }
        }
        let reports = (n / 10).max(5);
        for (name, v) in values {
            let spread = match *name {
                kpi::COMPLIANCE_SCORE => 1.0,
                kpi::OVERALL_SUCCESS_RATE
                | kpi::MEAN_RECOVERY_TIME
                | kpi::AUTONOMY_RATE
                | kpi::HUMAN_INTERVENTION_RATE
                | "trust_exceptions" => continue,
                n if n.starts_with("playbook.") => continue,
                _ => (v.abs() * 0.02).max(1e-6),
            };
            for k in 0..reports {
                let offset = 2.0 * f64::from(k) / f64::from(reports - 1) - 1.0;
                let value = v + spread * offset;
                data.push(if *name == kpi::COMPLIANCE_SCORE {
                    EventData::ComplianceScored(ComplianceScore {
                        domain: self.domain.to_string(),
                        score: value.clamp(0.0, 100.0),
                    })
                } else {
                    EventData::KpiReported(KpiReport {
                        domain: self.domain.to_string(),
                        name: name.to_string(),
                        value,
                    })
                });
            }
        }
        if let Some(t) = values.get("trust_exceptions") {
            for _ in 0..(*t as u64) {
                data.push(EventData::TrustException(TrustException {
                    domain: self.domain.to_string(),
                    policy: "policy-test".into(),
                    severity: "high".into(),
                }));
            }
        }
        // spread over the cycle, strictly inside it
        let count = data.len() as i64;
        data.into_iter()
            .enumerate()
            .map(|(i, data)| SpineEvent {
                id: format!("{}-{}-{}-{i}", self.test, self.domain, self.cycle),
                source: format!("urn:policy-test:{}", self.domain),
                time: self
                    .start
                    .plus_millis(1 + (i as i64) * (self.cycle_ms - 2) / count.max(1)),
                data,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metaloop_core::kpi::DomainWindow;

    #[test]
    fn the_events_reproduce_the_values() {
        let values = BTreeMap::from([
            (kpi::OVERALL_SUCCESS_RATE, 0.87),
            (kpi::MEAN_RECOVERY_TIME, 42.0),
            (kpi::AUTONOMY_RATE, 0.73),
            (kpi::HUMAN_INTERVENTION_RATE, 0.1),
            (kpi::COMPLIANCE_SCORE, 97.0),
            ("queue_depth", 12.5),
            ("playbook.restart", 0.4),
        ]);
        let events = CycleEvents {
            test: "t",
            domain: "application",
            cycle: 3,
            start: Timestamp::from_secs(1_000),
            cycle_ms: 300_000,
            incidents: 200,
        }
        .build(&values);
        let mut w = DomainWindow::default();
        for e in &events {
            assert!(e.time > Timestamp::from_secs(1_000));
            assert!(e.time < Timestamp::from_secs(1_300));
            w.observe(&e.data);
        }
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(w.playbooks["default"].all.rate().unwrap(), 0.87));
        assert!(close(w.playbooks["restart"].all.rate().unwrap(), 0.4));
        // 174 + 80 successes of 400 recoveries
        assert!(close(w.success.rate().unwrap(), 254.0 / 400.0));
        assert!(close(w.autonomy.rate().unwrap(), 0.73));
        assert!(close(w.intervention.rate().unwrap(), 0.1));
        assert!(close(w.compliance.mean().unwrap(), 97.0));
        assert!(close(w.custom["queue_depth"].mean().unwrap(), 12.5));
        // durations: the sketch's bins are within 1 % of a value
        let m = w.recovery.mean().unwrap();
        assert!((m - 42.0).abs() / 42.0 < 0.02, "{m}");
        let ids: std::collections::BTreeSet<_> = events.iter().map(|e| &e.id).collect();
        assert_eq!(ids.len(), events.len());
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_series("overall_success_rate", &[Some(1.2)]).is_err());
        assert!(check_series(kpi::P95_RECOVERY_TIME, &[Some(1.0)]).is_err());
        let e = check_series("mean_recovery_time", &[Some(1.0)]).unwrap_err();
        assert!(e.contains("did you mean mean_recovery_time_seconds"), "{e}");
        assert!(check_series("queue_depth", &[Some(-3.0), None]).is_ok());
    }
}
