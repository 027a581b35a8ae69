//! One domain's KPI statistics over one window (a cycle, or several merged).

use super::{
    AUTONOMY_RATE, COMPLIANCE_SCORE, DurationSketch, HUMAN_INTERVENTION_RATE, MEAN_RECOVERY_TIME,
    OVERALL_SUCCESS_RATE, P50_RECOVERY_TIME, P95_RECOVERY_TIME, RateCounts,
};
use crate::protocol::EventData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Mean/variance statistics of reported values.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ScoreStats {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    pub count: u64,
    pub last: f64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl ScoreStats {
    /// Adds one reported value (non-finite values are ignored by the caller's validation).
    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.sum_sq += value * value;
        self.last = value;
    }

    /// Adds a later window's values.
    pub fn merge(&mut self, later: &ScoreStats) {
        if later.count == 0 {
            return;
        }
        self.count += later.count;
        self.sum += later.sum;
        self.sum_sq += later.sum_sq;
        self.last = later.last;
    }

    /// Mean, or `None` when nothing was reported.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Sample variance (n - 1), or `None` with fewer than two values.
    pub fn variance(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        Some(((self.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0))
    }
}

/// Runs of one playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlaybookCounts {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// All runs.
    pub all: RateCounts,
    /// Runs the planner made without a human, and how many succeeded.
    pub autonomous: RateCounts,
}

/// Sufficient statistics of one domain's KPIs over a window; O(1) to update per event,
/// bounded in size whatever the event volume.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DomainWindow {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// Decisions made autonomously out of all decisions.
    pub autonomy: RateCounts,
    /// Compliance scores.
    pub compliance: ScoreStats,
    /// Custom KPIs from `kpi.reported`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, ScoreStats>,
    /// Events folded into this window.
    pub events: u64,
    /// Decisions overridden by a human out of all decisions.
    pub intervention: RateCounts,
    /// Per-playbook runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub playbooks: BTreeMap<String, PlaybookCounts>,
    /// Recovery durations.
    pub recovery: DurationSketch,
    /// Recoveries that succeeded out of all recoveries.
    pub success: RateCounts,
    pub trust_exceptions: u64,
}

impl DomainWindow {
    /// Folds one KPI-bearing event into the window. Directive acks and health changes carry
    /// no KPI and only count as events.
    pub fn observe(&mut self, data: &EventData) {
        self.events += 1;
        match data {
            EventData::RecoverySucceeded(r) | EventData::RecoveryFailed(r) => {
                let ok = matches!(data, EventData::RecoverySucceeded(_));
                self.success.observe(ok);
                self.recovery.observe(r.duration_s);
                let pb = self.playbooks.entry(r.playbook.clone()).or_default();
                pb.all.observe(ok);
                if r.autonomous {
                    pb.autonomous.observe(ok);
                }
            }
            EventData::DecisionMade(d) => {
                self.autonomy.observe(d.autonomous);
                self.intervention.observe(d.overridden);
            }
            EventData::ComplianceScored(c) => self.compliance.observe(c.score),
            EventData::KpiReported(k) => self
                .custom
                .entry(k.name.clone())
                .or_default()
                .observe(k.value),
            EventData::TrustException(_) => self.trust_exceptions += 1,
            EventData::HealthChanged(_)
            | EventData::DirectiveApplied(_)
            | EventData::DirectiveRefused(_) => {}
        }
    }

    /// Adds a later window.
    /// Merges many windows into this one, in order: the same result as merging them one by
    /// one, with the duration sketches merged in one pass.
    pub fn merge_all(&mut self, later: &[&DomainWindow]) {
        for w in later {
            self.merge_except_durations(w);
        }
        self.recovery.merge_all(later.iter().map(|w| &w.recovery));
    }

    pub fn merge(&mut self, later: &DomainWindow) {
        self.recovery.merge(&later.recovery);
        self.merge_except_durations(later);
    }

    fn merge_except_durations(&mut self, later: &DomainWindow) {
        self.success.merge(&later.success);
        self.autonomy.merge(&later.autonomy);
        self.intervention.merge(&later.intervention);
        self.compliance.merge(&later.compliance);
        // a key is copied only the first time it is seen
        for (k, v) in &later.custom {
            match self.custom.get_mut(k) {
                Some(s) => s.merge(v),
                None => {
                    self.custom.entry(k.clone()).or_default().merge(v);
                }
            }
        }
        for (k, v) in &later.playbooks {
            let pb = match self.playbooks.get_mut(k) {
                Some(pb) => pb,
                None => self.playbooks.entry(k.clone()).or_default(),
            };
            pb.autonomous.merge(&v.autonomous);
            pb.all.merge(&v.all);
        }
        self.trust_exceptions += later.trust_exceptions;
        self.events += later.events;
    }

    /// The value of a KPI over this window, `None` when it has no data.
    pub fn value(&self, kpi: &str) -> Option<f64> {
        match kpi {
            OVERALL_SUCCESS_RATE => self.success.rate(),
            AUTONOMY_RATE => self.autonomy.rate(),
            HUMAN_INTERVENTION_RATE => self.intervention.rate(),
            MEAN_RECOVERY_TIME => self.recovery.mean(),
            P50_RECOVERY_TIME => self.recovery.quantile(0.5),
            P95_RECOVERY_TIME => self.recovery.quantile(0.95),
            COMPLIANCE_SCORE => self.compliance.mean(),
            other => self.custom.get(other).and_then(ScoreStats::mean),
        }
    }

    /// Number of observations behind a KPI's value.
    pub fn samples(&self, kpi: &str) -> u64 {
        match kpi {
            OVERALL_SUCCESS_RATE => self.success.trials,
            AUTONOMY_RATE | HUMAN_INTERVENTION_RATE => self.autonomy.trials,
            MEAN_RECOVERY_TIME | P50_RECOVERY_TIME | P95_RECOVERY_TIME => self.recovery.count,
            COMPLIANCE_SCORE => self.compliance.count,
            other => self.custom.get(other).map_or(0, |s| s.count),
        }
    }

    /// The counts behind a rate KPI, `None` for other kinds.
    pub fn rate_counts(&self, kpi: &str) -> Option<RateCounts> {
        match kpi {
            OVERALL_SUCCESS_RATE => Some(self.success),
            AUTONOMY_RATE => Some(self.autonomy),
            HUMAN_INTERVENTION_RATE => Some(self.intervention),
            _ => None,
        }
    }

    /// Mean, variance and count behind a score or custom KPI.
    pub fn score_stats(&self, kpi: &str) -> Option<ScoreStats> {
        match kpi {
            COMPLIANCE_SCORE => Some(self.compliance),
            other => self.custom.get(other).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Decision, Recovery};

    fn recovery(ok: bool, secs: f64, autonomous: bool) -> EventData {
        let r = Recovery {
            domain: "application".into(),
            incident_id: "i".into(),
            playbook: "restart-service".into(),
            duration_s: secs,
            autonomous,
            human_override: false,
            experiment: None,
        };
        if ok {
            EventData::RecoverySucceeded(r)
        } else {
            EventData::RecoveryFailed(r)
        }
    }

    #[test]
    fn folds_events_into_kpis() {
        let mut w = DomainWindow::default();
        assert_eq!(
            w.value(OVERALL_SUCCESS_RATE),
            None,
            "no data is missing, not 0"
        );
        w.observe(&recovery(true, 10.0, true));
        w.observe(&recovery(true, 20.0, false));
        w.observe(&recovery(false, 60.0, true));
        w.observe(&EventData::DecisionMade(Decision {
            domain: "application".into(),
            decision_id: "d".into(),
            confidence: 0.8,
            autonomous: true,
            approved_by_human: false,
            overridden: true,
            experiment: None,
        }));
        assert!((w.value(OVERALL_SUCCESS_RATE).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((w.value(MEAN_RECOVERY_TIME).unwrap() - 30.0).abs() < 1e-12);
        assert_eq!(w.value(AUTONOMY_RATE), Some(1.0));
        assert_eq!(w.value(HUMAN_INTERVENTION_RATE), Some(1.0));
        let pb = w.playbooks["restart-service"];
        assert_eq!(
            pb.autonomous,
            RateCounts {
                successes: 1,
                trials: 2
            }
        );
        assert_eq!(
            pb.all,
            RateCounts {
                successes: 2,
                trials: 3
            }
        );
        let mut merged = DomainWindow::default();
        merged.merge(&w);
        merged.merge(&w);
        assert_eq!(merged.samples(OVERALL_SUCCESS_RATE), 6);
    }
}

/// Every domain's window for one closed cycle.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CycleWindows {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// Running experiments (by `SCHEDULE_EXPERIMENT` directive id): each arm's window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub arms: BTreeMap<String, ArmWindows>,
    pub cycle: u64,
    pub domains: BTreeMap<String, DomainWindow>,
    pub end: crate::time::Timestamp,
    pub start: crate::time::Timestamp,
}

/// One experiment's two arms over one cycle.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArmWindows {
    pub control: DomainWindow,
    pub treatment: DomainWindow,
}
