//! Builds a [`CrossDomainSnapshot`] from per-cycle windows, the health graph and the goals.

use super::pattern::{Correlation, SystemicPattern, pearson};
use super::{Analysis, CrossDomainSnapshot, DomainSnapshot, PlaybookSummary};
use crate::goal::Goal;
use crate::health::HealthGraph;
use crate::kpi::{self, CycleWindows, DomainWindow, KpiKind};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How snapshots are built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotBuilder {
    /// Closed cycles merged into each domain's window (fewer right after a change).
    pub window_cycles: usize,
    /// A window is extended beyond `window_cycles`, one older cycle at a time, until it holds
    /// this many recoveries (so a low-volume domain is judged on enough data, later).
    pub min_window_samples: u64,
    /// The longest a window is extended to, cycles.
    pub max_window_cycles: usize,
    /// A rate KPI worse than its baseline by this much (absolute) is drifting.
    pub drift_rate: f64,
    /// A duration or score KPI worse than its baseline by this fraction is drifting.
    pub drift_relative: f64,
    /// Cycles of per-domain values kept for correlations.
    pub correlation_cycles: usize,
    /// |r| at or above which a correlation is reported.
    pub correlation_min_r: f64,
    /// A domain missing a rate goal by this much (absolute) is underperforming.
    pub underperform_rate: f64,
    /// A domain missing a duration or score goal by this fraction of its target is underperforming.
    pub underperform_relative: f64,
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        SnapshotBuilder {
            window_cycles: 3,
            min_window_samples: 400,
            max_window_cycles: 288,
            drift_rate: 0.03,
            drift_relative: 0.15,
            correlation_cycles: 12,
            correlation_min_r: 0.7,
            underperform_rate: 0.05,
            underperform_relative: 0.2,
        }
    }
}

/// What one snapshot is built from.
pub struct SnapshotInputs<'a> {
    pub id: String,
    pub cycle: u64,
    pub time: Timestamp,
    /// Closed cycles, oldest first; the last one is the cycle just closed.
    pub history: &'a VecDeque<CycleWindows>,
    /// Per domain, the time of the last change that invalidates older data (an applied
    /// directive or a health change); windows ending before it are not merged.
    pub regime_start: &'a BTreeMap<String, Timestamp>,
    pub health: &'a HealthGraph,
    pub goals: &'a [Goal],
    /// Per domain, per KPI: the slow-moving baseline.
    pub baselines: &'a BTreeMap<String, BTreeMap<String, f64>>,
    /// Every domain seen so far.
    pub known_domains: &'a BTreeSet<String>,
}

/// KPIs reported per domain and globally.
const REPORTED: [&str; 7] = [
    kpi::OVERALL_SUCCESS_RATE,
    kpi::MEAN_RECOVERY_TIME,
    kpi::P50_RECOVERY_TIME,
    kpi::P95_RECOVERY_TIME,
    kpi::AUTONOMY_RATE,
    kpi::HUMAN_INTERVENTION_RATE,
    kpi::COMPLIANCE_SCORE,
];

impl SnapshotBuilder {
    /// Merges the recent windows of one domain, stopping at its last change.
    pub fn domain_window(
        &self,
        domain: &str,
        history: &VecDeque<CycleWindows>,
        regime_start: Option<Timestamp>,
    ) -> (DomainWindow, u32) {
        let mut merged = DomainWindow::default();
        let mut cycles = 0;
        for (i, c) in history.iter().rev().enumerate() {
            if i >= self.window_cycles
                && (merged.success.trials >= self.min_window_samples || i >= self.max_window_cycles)
            {
                break;
            }
            if i > 0 && regime_start.is_some_and(|t| c.end <= t) {
                break;
            }
            if let Some(w) = c.domains.get(domain) {
                merged.merge(w);
            }
            cycles += 1;
        }
        (merged, cycles)
    }

    /// Whether `value` is far enough from its goal to call the domain underperforming.
    fn underperforms(&self, goal: &Goal, gap: f64) -> bool {
        match kpi::builtin(&goal.kpi).map(|(_, k)| k) {
            Some(KpiKind::Rate) => gap >= self.underperform_rate,
            _ => gap >= self.underperform_relative * goal.target.abs().max(f64::EPSILON),
        }
    }

    /// Whether a KPI is drifting worse than its baseline.
    fn drifting(&self, kpi_name: &str, value: f64, baseline: f64) -> bool {
        let Some((dir, kind)) = kpi::builtin(kpi_name) else {
            return false;
        };
        let worse_by = -dir.better(value - baseline);
        match kind {
            KpiKind::Rate => worse_by >= self.drift_rate,
            _ => worse_by >= self.drift_relative * baseline.abs().max(f64::EPSILON),
        }
    }

    /// Builds the snapshot.
    pub fn build(&self, input: &SnapshotInputs<'_>) -> CrossDomainSnapshot {
        let mut domains = BTreeMap::new();
        let mut global = DomainWindow::default();
        let mut analysis = Analysis::default();
        let unhealthy = input.health.unhealthy_by_domain();
        let mut reporting = 0usize;
        for domain in input.known_domains {
            let (window, cycles) = self.domain_window(
                domain,
                input.history,
                input.regime_start.get(domain).copied(),
            );
            global.merge(&window);
            let mut kpis = BTreeMap::new();
            let mut samples = BTreeMap::new();
            for k in REPORTED {
                if let Some(v) = window.value(k) {
                    kpis.insert(k.to_string(), v);
                    samples.insert(k.to_string(), window.samples(k));
                }
            }
            for k in window.custom.keys() {
                if let Some(v) = window.value(k) {
                    kpis.insert(k.clone(), v);
                    samples.insert(k.clone(), window.samples(k));
                }
            }
            if window.success.trials > 0 || window.autonomy.trials > 0 {
                reporting += 1;
            }
            let mut goal_gaps = BTreeMap::new();
            let mut missing = Vec::new();
            let mut meets_all = !kpis.is_empty();
            for g in input.goals {
                if let Some(v) = kpis.get(&g.kpi) {
                    let gap = g.gap(*v);
                    goal_gaps.insert(g.kpi.clone(), gap);
                    if gap > 0.0 {
                        meets_all = false;
                    }
                    if self.underperforms(g, gap) {
                        missing.push(g.kpi.clone());
                    }
                }
            }
            if !missing.is_empty() {
                analysis.underperforming.insert(domain.clone(), missing);
            } else if meets_all {
                analysis.overperforming.push(domain.clone());
            }
            let mut drift = BTreeMap::new();
            if let Some(base) = input.baselines.get(domain) {
                for (k, b) in base {
                    if let Some(v) = kpis.get(k) {
                        drift.insert(k.clone(), v - b);
                    }
                }
            }
            let playbooks = window
                .playbooks
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        PlaybookSummary {
                            runs: c.all.trials,
                            success_rate: c.all.rate(),
                            autonomous_runs: c.autonomous.trials,
                            autonomous_success_rate: c.autonomous.rate(),
                        },
                    )
                })
                .collect();
            domains.insert(
                domain.clone(),
                DomainSnapshot {
                    health: input.health.domain_state(domain),
                    unhealthy_nodes: unhealthy.get(domain).cloned().unwrap_or_default(),
                    kpis,
                    samples,
                    goal_gaps,
                    drift,
                    playbooks,
                    trust_exceptions: window.trust_exceptions,
                    window_cycles: cycles,
                    window,
                },
            );
        }

        let mut global_kpis = BTreeMap::new();
        let mut global_samples = BTreeMap::new();
        for k in REPORTED {
            if let Some(v) = global.value(k) {
                global_kpis.insert(k.to_string(), v);
                global_samples.insert(k.to_string(), global.samples(k));
            }
        }
        for k in global.custom.keys() {
            if let Some(v) = global.value(k) {
                global_kpis.insert(k.clone(), v);
                global_samples.insert(k.clone(), global.samples(k));
            }
        }
        let goal_gaps = input
            .goals
            .iter()
            .filter_map(|g| global_kpis.get(&g.kpi).map(|v| (g.kpi.clone(), g.gap(*v))))
            .collect();

        let mut patterns: Vec<SystemicPattern> = input
            .health
            .cascades()
            .into_iter()
            .map(SystemicPattern::DependencyCascade)
            .collect();
        for k in [
            kpi::OVERALL_SUCCESS_RATE,
            kpi::MEAN_RECOVERY_TIME,
            kpi::AUTONOMY_RATE,
        ] {
            let drifting: Vec<String> = domains
                .iter()
                .filter(|(d, s)| {
                    let base = input.baselines.get(*d).and_then(|b| b.get(k));
                    matches!((s.kpis.get(k), base), (Some(v), Some(b)) if self.drifting(k, *v, *b))
                })
                .map(|(d, _)| d.clone())
                .collect();
            if drifting.len() >= 2 {
                patterns.push(SystemicPattern::MultiDomainDrift {
                    kpi: k.to_string(),
                    domains: drifting,
                });
            }
        }

        let correlations = self.correlations(input.history);
        let coverage = if input.known_domains.is_empty() {
            0.0
        } else {
            reporting as f64 / input.known_domains.len() as f64
        };
        CrossDomainSnapshot {
            id: input.id.clone(),
            cycle: input.cycle,
            time: input.time,
            domains,
            global_kpis,
            global_samples,
            goal_gaps,
            correlations,
            patterns,
            analysis,
            coverage,
            global_window: global,
        }
    }

    /// Pairwise correlations of per-cycle success rate and mean recovery time.
    fn correlations(&self, history: &VecDeque<CycleWindows>) -> Vec<Correlation> {
        let recent: Vec<&CycleWindows> =
            history.iter().rev().take(self.correlation_cycles).collect();
        let names: BTreeSet<&String> = recent.iter().flat_map(|c| c.domains.keys()).collect();
        let names: Vec<&String> = names.into_iter().collect();
        let mut out = Vec::new();
        for k in [kpi::OVERALL_SUCCESS_RATE, kpi::MEAN_RECOVERY_TIME] {
            for (i, a) in names.iter().enumerate() {
                for b in &names[i + 1..] {
                    let (mut xs, mut ys) = (Vec::new(), Vec::new());
                    for c in &recent {
                        let x = c.domains.get(*a).and_then(|w| w.value(k));
                        let y = c.domains.get(*b).and_then(|w| w.value(k));
                        if let (Some(x), Some(y)) = (x, y) {
                            xs.push(x);
                            ys.push(y);
                        }
                    }
                    if xs.len() >= 6
                        && let Some(r) = pearson(&xs, &ys)
                        && r.abs() >= self.correlation_min_r
                    {
                        out.push(Correlation {
                            kpi: k.to_string(),
                            a: (*a).clone(),
                            b: (*b).clone(),
                            r,
                            cycles: xs.len(),
                        });
                    }
                }
            }
        }
        out
    }
}
