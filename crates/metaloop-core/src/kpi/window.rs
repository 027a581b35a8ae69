//! One domain's KPI statistics over one window (a cycle, or several merged).

use super::{
    AUTONOMY_RATE, COMPLIANCE_SCORE, DurationSketch, HUMAN_INTERVENTION_RATE, MEAN_RECOVERY_TIME,
    OVERALL_SUCCESS_RATE, P50_RECOVERY_TIME, P95_RECOVERY_TIME, RateCounts, add_exactly,
};
use crate::protocol::EventData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Mean/variance statistics of reported values.
///
/// While its cycle is open a window keeps, beside each sum, what rounding has lost from it
/// (`sum_lo`, `sum_sq_lo`: the sum to about twice a double's precision). When the cycle
/// closes, [`ScoreStats::settle`] rounds the pair once, so the closed cycle's sum does not
/// depend on the order its values came in, nor on how they were split among ingest workers'
/// partials or folded again after a failover — but for a sum lying within about
/// `n · 2⁻¹⁰⁶` (relative) of a rounding boundary. Closed windows have no low parts, and they
/// are not written.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ScoreStats {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    pub count: u64,
    pub last: f64,
    pub sum: f64,
    /// What rounding lost from `sum` in an open cycle; 0 once settled.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub sum_lo: f64,
    pub sum_sq: f64,
    /// What rounding lost from `sum_sq` in an open cycle; 0 once settled.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub sum_sq_lo: f64,
}

impl ScoreStats {
    /// Adds one reported value (non-finite values are ignored by the caller's validation).
    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        add_exactly(&mut self.sum, &mut self.sum_lo, value);
        add_exactly(&mut self.sum_sq, &mut self.sum_sq_lo, value * value);
        self.last = value;
    }

    /// Adds a later window's values: closed windows, merged across cycles, whose low parts
    /// are 0 (plain sums).
    pub fn merge(&mut self, later: &ScoreStats) {
        if later.count == 0 {
            return;
        }
        self.count += later.count;
        self.sum += later.sum;
        self.sum_sq += later.sum_sq;
        self.last = later.last;
    }

    /// Adds a partial window of the open cycle (an ingest worker's), keeping what rounding
    /// loses, as [`ScoreStats::observe`] does.
    pub fn merge_open(&mut self, later: &ScoreStats) {
        if later.count == 0 {
            return;
        }
        self.count += later.count;
        add_exactly(&mut self.sum, &mut self.sum_lo, later.sum);
        self.sum_lo += later.sum_lo;
        add_exactly(&mut self.sum_sq, &mut self.sum_sq_lo, later.sum_sq);
        self.sum_sq_lo += later.sum_sq_lo;
        self.last = later.last;
    }

    /// The cycle closes: each sum and its low part become one double, rounded once.
    pub fn settle(&mut self) {
        self.sum += std::mem::take(&mut self.sum_lo);
        self.sum_sq += std::mem::take(&mut self.sum_sq_lo);
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
            self.merge_except_durations(w, ScoreStats::merge);
        }
        self.recovery.merge_all(later.iter().map(|w| &w.recovery));
    }

    pub fn merge(&mut self, later: &DomainWindow) {
        self.recovery.merge(&later.recovery);
        self.merge_except_durations(later, ScoreStats::merge);
    }

    /// Adds a partial window of the open cycle (an ingest worker's), keeping what rounding
    /// loses from the sums ([`ScoreStats`]).
    pub fn merge_open(&mut self, later: &DomainWindow) {
        self.recovery.merge_open(&later.recovery);
        self.merge_except_durations(later, ScoreStats::merge_open);
    }

    /// The cycle closes: every sum rounded once ([`ScoreStats::settle`]).
    pub fn settle(&mut self) {
        self.recovery.settle();
        self.compliance.settle();
        for s in self.custom.values_mut() {
            s.settle();
        }
    }

    fn merge_except_durations(
        &mut self,
        later: &DomainWindow,
        merge: fn(&mut ScoreStats, &ScoreStats),
    ) {
        self.success.merge(&later.success);
        self.autonomy.merge(&later.autonomy);
        self.intervention.merge(&later.intervention);
        merge(&mut self.compliance, &later.compliance);
        // a key is copied only the first time it is seen
        for (k, v) in &later.custom {
            match self.custom.get_mut(k) {
                Some(s) => merge(s, v),
                None => {
                    merge(self.custom.entry(k.clone()).or_default(), v);
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
    use rand::{Rng, SeedableRng, seq::SliceRandom};

    /// The exact sum of `values`, rounded once to the nearest double (ties to even): summed
    /// as integers in units of 2⁻⁸⁰, where every value drawn below is exact.
    fn exactly_rounded_sum(values: &[f64]) -> f64 {
        let scale = 2f64.powi(80);
        let mut total: i128 = 0;
        for v in values {
            let scaled = v * scale;
            assert!(
                scaled.fract() == 0.0 && scaled.abs() < 2f64.powi(112),
                "{v} is not a multiple of 2^-80 below 2^32"
            );
            total = total.checked_add(scaled as i128).expect("within i128");
        }
        // i128 → f64 rounds to nearest, ties to even; the power of two scales exactly
        total as f64 / scale
    }

    /// Values of many magnitudes whose squares too are multiples of 2⁻⁸⁰: durations from
    /// 0.01 s to 6 hours, scores with two decimals, powers from 2⁻¹⁰ to 2¹⁵.
    fn mixed_values(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| match i % 4 {
                0 => rng.random_range(0.01..100.0),
                1 => rng.random_range(0.0..10_000.0f64).round() / 100.0,
                2 => 2f64.powf(rng.random_range(-10.0..15.0)),
                _ => rng.random_range(1e3..2e4),
            })
            .collect()
    }

    /// An open cycle's sums, once settled, are the exact sums rounded once: the same double
    /// whatever the order of the values and however they were split into partials (checked
    /// against integer arithmetic on seeded draws; a naive running sum fails this).
    #[test]
    fn settled_sums_are_the_exact_sums_rounded_once_in_any_order_and_split() {
        let mut naive_differs = 0;
        for seed in 0..200u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let n = rng.random_range(2..3000);
            let mut values = mixed_values(&mut rng, n);
            let squares: Vec<f64> = values.iter().map(|v| v * v).collect();
            let want = (exactly_rounded_sum(&values), exactly_rounded_sum(&squares));
            // one by one
            let mut one = ScoreStats::default();
            let mut sketch = DurationSketch::default();
            let mut naive = 0.0;
            for v in &values {
                one.observe(*v);
                sketch.observe(*v);
                naive += v;
            }
            naive_differs += usize::from(naive != want.0);
            one.settle();
            sketch.settle();
            assert_eq!((one.sum, one.sum_sq), want, "seed {seed}: one by one");
            assert_eq!((sketch.sum, sketch.sum_sq), want, "seed {seed}: sketch");
            assert_eq!((one.sum_lo, one.sum_sq_lo), (0.0, 0.0));
            // shuffled, split into partials of random sizes, merged in random order
            values.shuffle(&mut rng);
            let mut parts = Vec::new();
            let mut rest = &values[..];
            while !rest.is_empty() {
                let k = rng.random_range(1..=rest.len().min(400));
                let (mine, later) = rest.split_at(k);
                let mut p = ScoreStats::default();
                let mut ps = DurationSketch::default();
                for v in mine {
                    p.observe(*v);
                    ps.observe(*v);
                }
                parts.push((p, ps));
                rest = later;
            }
            parts.shuffle(&mut rng);
            let mut merged = ScoreStats::default();
            let mut merged_sketch = DurationSketch::default();
            for (p, ps) in &parts {
                merged.merge_open(p);
                merged_sketch.merge_open(ps);
            }
            merged.settle();
            merged_sketch.settle();
            assert_eq!((merged.sum, merged.sum_sq), want, "seed {seed}: partials");
            assert_eq!(
                (merged_sketch.sum, merged_sketch.sum_sq),
                want,
                "seed {seed}: sketch partials"
            );
            assert_eq!(merged.count, n as u64);
        }
        // the test can tell: a plain running sum is not the exact sum rounded once
        assert!(naive_differs > 100, "{naive_differs}");
    }

    #[test]
    fn low_parts_are_not_written_and_read_back_when_present() {
        let mut s = ScoreStats::default();
        s.observe(0.1);
        s.observe(0.2);
        assert_ne!(s.sum_lo, 0.0, "0.1 + 0.2 loses something to rounding");
        let open = serde_json::to_value(s).unwrap();
        assert!(open.get("sum_lo").is_some(), "{open}");
        let back: ScoreStats = serde_json::from_value(open).unwrap();
        assert_eq!(back, s);
        s.settle();
        let closed = serde_json::to_string(&s).unwrap();
        assert!(!closed.contains("_lo"), "{closed}");
        assert!(
            closed.starts_with(r#"{"count":2,"last":0.2,"sum":"#),
            "{closed}"
        );
    }

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

impl ArmWindows {
    /// The cycle closes: every sum of both arms rounded once ([`ScoreStats::settle`]).
    pub fn settle(&mut self) {
        self.control.settle();
        self.treatment.settle();
    }
}
