//! The supervisor's history as the dashboard draws it: every closed cycle's KPIs (global and
//! per domain) in compact columns, the alerts fired and resolved, and each policy's recent
//! evaluations. Fed from the records as they become durable, and from the ledger at start-up,
//! so a restart shows the same history.
//!
//! Bounded: at most [`MAX_CYCLES`] cycles (the oldest are dropped), [`MAX_ALERT_EVENTS`]
//! alert events and [`MAX_EVALUATIONS`] evaluations per policy.

use metaloop_core::time::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

/// Cycles kept: 120 days at 5 minutes.
pub const MAX_CYCLES: usize = 34_560;
/// Alert events (fired, resolved) kept.
pub const MAX_ALERT_EVENTS: usize = 2_000;
/// Evaluations kept per policy.
pub const MAX_EVALUATIONS: usize = 12;
/// Policy evaluations kept for the directives they issued.
pub const MAX_ISSUING_EVALUATIONS: usize = 5_000;

/// The scope of a KPI series: every domain pooled, or one domain.
pub const GLOBAL: &str = "global";

/// One alert firing or resolving.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub time: Timestamp,
    /// `fired` or `resolved`.
    pub action: &'static str,
    pub key: String,
    /// The alert as fired (kind, severity, message); for a resolution, the cycle.
    pub details: Value,
}

/// One policy's evaluation in one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub cycle: u64,
    pub time: Timestamp,
    /// As recorded: condition (holds, evidence, coverage, values), streak, factors,
    /// directives, reason.
    pub record: Value,
}

#[derive(Debug, Default)]
struct Inner {
    /// Cycle numbers and end times, oldest first.
    cycles: VecDeque<u64>,
    times: VecDeque<i64>,
    /// `(scope, kpi)` → one value per kept cycle, `NaN` where missing.
    columns: BTreeMap<(String, String), VecDeque<f32>>,
    alerts: VecDeque<AlertEvent>,
    evaluations: BTreeMap<String, VecDeque<Evaluation>>,
    /// Directive id → the evaluation of the policy that issued it.
    issuing: HashMap<String, Evaluation>,
    issuing_order: VecDeque<String>,
}

/// A shared, bounded history; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct History(Arc<RwLock<Inner>>);

/// A window of one KPI series, downsampled into buckets of equal time.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Bucket start and end, ms since the Unix epoch.
    pub start: i64,
    pub end: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets everything (before the ledger is read again from its start).
    pub fn clear(&self) {
        *self.write() = Inner::default();
    }

    /// True for the actions the history keeps something of.
    pub fn wants(action: &str) -> bool {
        matches!(
            action,
            "snapshot.built" | "alert.fired" | "alert.resolved" | "strategy.evaluated"
        )
    }

    /// Folds one durable record in.
    pub fn observe(&self, time: Timestamp, action: &str, resource: &str, payload: &Value) {
        match action {
            "snapshot.built" => self.write().snapshot(&payload["snapshot"]),
            "alert.fired" | "alert.resolved" => {
                let mut h = self.write();
                let fired = action == "alert.fired";
                h.alerts.push_back(AlertEvent {
                    time,
                    action: if fired { "fired" } else { "resolved" },
                    key: if fired {
                        payload["alert"]["key"]
                            .as_str()
                            .unwrap_or(resource)
                            .to_string()
                    } else {
                        payload["key"].as_str().unwrap_or(resource).to_string()
                    },
                    details: if fired {
                        payload["alert"].clone()
                    } else {
                        payload.clone()
                    },
                });
                while h.alerts.len() > MAX_ALERT_EVENTS {
                    h.alerts.pop_front();
                }
            }
            "strategy.evaluated" => self.write().evaluated(time, payload),
            _ => {}
        }
    }

    /// Folds records in, in ledger order.
    pub fn observe_all<'a>(
        &self,
        records: impl IntoIterator<Item = (Timestamp, &'a str, &'a str, &'a Value)>,
    ) {
        for (t, action, resource, payload) in records {
            self.observe(t, action, resource, payload);
        }
    }

    /// Cycles kept.
    pub fn len(&self) -> usize {
        self.read().cycles.len()
    }

    /// True before the first cycle closes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first and last kept cycle end times.
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        let h = self.read();
        Some((Timestamp(*h.times.front()?), Timestamp(*h.times.back()?)))
    }

    /// The scopes with data (`global` first, then the domains).
    pub fn scopes(&self) -> Vec<String> {
        let h = self.read();
        let mut out: Vec<String> = Vec::new();
        for (scope, _) in h.columns.keys() {
            if out.last() != Some(scope) && !out.contains(scope) {
                out.push(scope.clone());
            }
        }
        out.sort_by_key(|s| (s != GLOBAL, s.clone()));
        out
    }

    /// The series of `kpi` in `scope` over `[from, to]`, in at most `buckets` buckets of
    /// equal time; empty buckets are left out.
    pub fn downsample(
        &self,
        scope: &str,
        kpi: &str,
        from: Timestamp,
        to: Timestamp,
        buckets: usize,
    ) -> Vec<Bucket> {
        let h = self.read();
        let Some(col) = h.columns.get(&(scope.to_string(), kpi.to_string())) else {
            return Vec::new();
        };
        downsample(&h.times, col, from.millis(), to.millis(), buckets)
    }

    /// The alert events, newest first, at most `limit`.
    pub fn alert_events(&self, limit: usize) -> Vec<AlertEvent> {
        self.read()
            .alerts
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Alert events within `[from, to]`.
    pub fn alert_events_between(&self, from: Timestamp, to: Timestamp) -> Vec<AlertEvent> {
        self.read()
            .alerts
            .iter()
            .filter(|a| a.time >= from && a.time <= to)
            .cloned()
            .collect()
    }

    /// A policy's latest evaluations, newest first.
    pub fn evaluations(&self, policy: &str) -> Vec<Evaluation> {
        self.read()
            .evaluations
            .get(policy)
            .map(|v| v.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The evaluation that issued a directive, when kept.
    pub fn issuing_evaluation(&self, directive: &str) -> Option<Evaluation> {
        self.read().issuing.get(directive).cloned()
    }
}

impl Inner {
    fn snapshot(&mut self, snap: &Value) {
        let (Some(cycle), Some(time)) = (snap["cycle"].as_u64(), snap["time"].as_i64()) else {
            return;
        };
        if self.cycles.back().is_some_and(|&c| c >= cycle) {
            return; // replayed twice (start-up and the sink): keep the first
        }
        let n = self.cycles.len();
        self.cycles.push_back(cycle);
        self.times.push_back(time);
        let mut values: Vec<((String, String), f32)> = Vec::new();
        let mut add = |scope: &str, kpis: &Value| {
            for (k, v) in kpis.as_object().into_iter().flatten() {
                if let Some(x) = v.as_f64() {
                    values.push(((scope.to_string(), k.clone()), x as f32));
                }
            }
        };
        add(GLOBAL, &snap["global_kpis"]);
        for (d, ds) in snap["domains"].as_object().into_iter().flatten() {
            add(d, &ds["kpis"]);
        }
        for (key, v) in values {
            let col = self.columns.entry(key).or_insert_with(|| {
                let mut c = VecDeque::with_capacity(n + 1);
                c.resize(n, f32::NAN);
                c
            });
            col.push_back(v);
        }
        for col in self.columns.values_mut() {
            if col.len() < n + 1 {
                col.push_back(f32::NAN);
            }
        }
        while self.cycles.len() > MAX_CYCLES {
            self.cycles.pop_front();
            self.times.pop_front();
            for col in self.columns.values_mut() {
                col.pop_front();
            }
        }
    }

    fn evaluated(&mut self, time: Timestamp, payload: &Value) {
        let cycle = payload["cycle"].as_u64().unwrap_or(0);
        for e in metaloop_core::record::strategy_evaluations(payload) {
            let Some(policy) = e.entry["policy_id"].as_str() else {
                continue;
            };
            let ev = Evaluation {
                cycle,
                time,
                record: e.inline(),
            };
            let e = e.entry;
            for d in e["directives"].as_array().into_iter().flatten() {
                if let Some(id) = d.as_str() {
                    self.issuing.insert(id.to_string(), ev.clone());
                    self.issuing_order.push_back(id.to_string());
                }
            }
            let q = self.evaluations.entry(policy.to_string()).or_default();
            q.push_back(ev);
            while q.len() > MAX_EVALUATIONS {
                q.pop_front();
            }
        }
        while self.issuing_order.len() > MAX_ISSUING_EVALUATIONS {
            if let Some(id) = self.issuing_order.pop_front() {
                self.issuing.remove(&id);
            }
        }
    }
}

/// Min, max and mean of the values whose times fall in each of `buckets` equal slices of
/// `[from, to]`; slices without a value are left out.
fn downsample(
    times: &VecDeque<i64>,
    values: &VecDeque<f32>,
    from: i64,
    to: i64,
    buckets: usize,
) -> Vec<Bucket> {
    if buckets == 0 || to < from {
        return Vec::new();
    }
    let span = (to - from).max(1) as f64;
    let width = span / buckets as f64;
    let first = times.partition_point(|&t| t < from);
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets);
    let mut current: Option<(usize, f64, f64, f64, u32)> = None;
    let flush = |out: &mut Vec<Bucket>, c: (usize, f64, f64, f64, u32)| {
        let (i, min, max, sum, n) = c;
        out.push(Bucket {
            start: from + (i as f64 * width) as i64,
            end: from + ((i + 1) as f64 * width) as i64,
            min,
            max,
            mean: sum / n as f64,
        });
    };
    for (&t, &v) in times.iter().zip(values.iter()).skip(first) {
        if t > to {
            break;
        }
        if v.is_nan() {
            continue;
        }
        let v = v as f64;
        let i = (((t - from) as f64 / width) as usize).min(buckets - 1);
        match &mut current {
            Some(c) if c.0 == i => {
                c.1 = c.1.min(v);
                c.2 = c.2.max(v);
                c.3 += v;
                c.4 += 1;
            }
            _ => {
                if let Some(c) = current.take() {
                    flush(&mut out, c);
                }
                current = Some((i, v, v, v, 1));
            }
        }
    }
    if let Some(c) = current {
        flush(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(cycle: u64, success: Option<f64>) -> Value {
        let mut kpis = json!({ "autonomy_rate": 0.8 });
        if let Some(s) = success {
            kpis["overall_success_rate"] = json!(s);
        }
        json!({ "snapshot": {
            "cycle": cycle, "time": cycle as i64 * 300_000,
            "global_kpis": kpis,
            "domains": { "application": { "kpis": { "overall_success_rate": 0.5 } } },
        }})
    }

    #[test]
    fn columns_stay_aligned_when_a_kpi_appears_late_or_goes_missing() {
        let h = History::new();
        h.observe(Timestamp(0), "snapshot.built", "s1", &snap(1, None));
        h.observe(Timestamp(0), "snapshot.built", "s2", &snap(2, Some(0.9)));
        h.observe(Timestamp(0), "snapshot.built", "s3", &snap(3, None));
        h.observe(Timestamp(0), "snapshot.built", "s3", &snap(3, Some(0.1)));
        assert_eq!(h.len(), 3, "a cycle seen twice is kept once");
        let b = h.downsample(
            GLOBAL,
            "overall_success_rate",
            Timestamp(0),
            Timestamp(1_000_000),
            100,
        );
        assert_eq!(b.len(), 1, "only cycle 2 has a value: {b:?}");
        assert_eq!(b[0].mean, 0.9f32 as f64);
        assert_eq!(h.scopes(), vec!["global".to_string(), "application".into()]);
    }

    #[test]
    fn downsampling_keeps_min_max_and_mean_per_bucket() {
        let times: VecDeque<i64> = (0..100).map(|i| i * 10).collect();
        let values: VecDeque<f32> = (0..100).map(|i| i as f32).collect();
        let b = downsample(&times, &values, 0, 999, 10);
        assert_eq!(b.len(), 10);
        assert_eq!((b[0].min, b[0].max, b[0].mean), (0.0, 9.0, 4.5));
        assert_eq!((b[9].min, b[9].max), (90.0, 99.0));
        // a window inside the series
        let b = downsample(&times, &values, 500, 599, 2);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].min, 50.0);
        assert_eq!(b[1].max, 59.0);
        assert!(downsample(&times, &values, 5000, 6000, 10).is_empty());
    }

    #[test]
    fn the_oldest_cycles_are_dropped_past_the_bound() {
        let h = History::new();
        for c in 1..=(MAX_CYCLES as u64 + 5) {
            h.observe(Timestamp(0), "snapshot.built", "s", &snap(c, Some(0.5)));
        }
        assert_eq!(h.len(), MAX_CYCLES);
        assert_eq!(h.span().unwrap().0, Timestamp(6 * 300_000));
    }

    #[test]
    fn alerts_and_evaluations_are_kept() {
        let h = History::new();
        h.observe(
            Timestamp(5),
            "alert.fired",
            "alert/goal_gap:x",
            &json!({"alert": {"key": "goal_gap:x", "severity": "warning", "message": "m"}}),
        );
        h.observe(
            Timestamp(9),
            "alert.resolved",
            "alert/goal_gap:x",
            &json!({"key": "goal_gap:x", "cycle": 3}),
        );
        let ev = h.alert_events(10);
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].action, ev[1].action), ("resolved", "fired"));
        h.observe(
            Timestamp(7),
            "strategy.evaluated",
            "cycle/3",
            &json!({"cycle": 3, "evaluations": [
                {"policy_id": "p", "directives": ["d1"], "reason": ""},
                {"policy_id": "q", "directives": [], "reason": "condition does not hold"}
            ]}),
        );
        assert_eq!(h.issuing_evaluation("d1").unwrap().cycle, 3);
        assert_eq!(h.evaluations("q").len(), 1);
        assert!(h.issuing_evaluation("d2").is_none());
    }
}
