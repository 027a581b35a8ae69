//! Builds a [`CrossDomainSnapshot`] from per-cycle windows, the health graph and the goals.

use super::pattern::{Correlation, SystemicPattern, pearson};
use super::recent::RecentWindows;
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
    /// The most correlations a snapshot reports: the strongest. With many domains, chance
    /// alone puts some pairs' |r| over the threshold over 12 cycles; the list stays bounded.
    pub max_correlations: usize,
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
            max_correlations: 100,
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
        let mut windows: Vec<&DomainWindow> = Vec::new();
        let mut trials = 0;
        let mut cycles = 0;
        for (i, c) in history.iter().rev().enumerate() {
            if i >= self.window_cycles
                && (trials >= self.min_window_samples || i >= self.max_window_cycles)
            {
                break;
            }
            if i > 0 && regime_start.is_some_and(|t| c.end <= t) {
                break;
            }
            if let Some(w) = c.domains.get(domain) {
                trials += w.success.trials;
                windows.push(w);
            }
            cycles += 1;
        }
        let mut merged = DomainWindow::default();
        merged.merge_all(&windows);
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
        self.build_with(input, &mut RecentWindows::default())
    }

    /// Builds the snapshot, each domain's window from the one of the cycle before when it
    /// follows on from it (the same windows as merged afresh).
    pub fn build_with(
        &self,
        input: &SnapshotInputs<'_>,
        recent: &mut RecentWindows,
    ) -> CrossDomainSnapshot {
        recent.retain(|d| input.known_domains.contains(d));
        let mut domains = BTreeMap::new();
        let mut global = DomainWindow::default();
        let mut analysis = Analysis::default();
        let unhealthy = input.health.unhealthy_by_domain();
        let mut reporting = 0usize;
        for domain in input.known_domains {
            let (window, cycles) = recent.window(
                self,
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

    /// Pairwise correlations of per-cycle success rate and mean recovery time, the
    /// `max_correlations` strongest of those at or above `correlation_min_r`.
    ///
    /// Each domain's series is read once (linear in domains); the pairs are then compared on
    /// those arrays: a domain with a value in every recent cycle is centred and scaled once,
    /// so that a pair of them costs one dot product. The number of pairs still grows with
    /// the square of the domain count, at a few nanoseconds each.
    fn correlations(&self, history: &VecDeque<CycleWindows>) -> Vec<Correlation> {
        let recent: Vec<&CycleWindows> =
            history.iter().rev().take(self.correlation_cycles).collect();
        // the domains of the recent cycles: usually the same in each, so a cycle with the
        // same keys as the last one adds nothing
        let mut names: Vec<&String> = recent
            .first()
            .map(|c| c.domains.keys().collect())
            .unwrap_or_default();
        if recent
            .iter()
            .any(|c| !c.domains.keys().eq(names.iter().copied()))
        {
            let all: BTreeSet<&String> = recent.iter().flat_map(|c| c.domains.keys()).collect();
            names = all.into_iter().collect();
        }
        if self.max_correlations == 0 {
            return Vec::new();
        }
        // (r, KPI, a, b, cycles)
        let mut out: Vec<(f64, &str, usize, usize, usize)> = Vec::new();
        for k in [kpi::OVERALL_SUCCESS_RATE, kpi::MEAN_RECOVERY_TIME] {
            // `names` and each cycle's domains are both in name order: one walk through each
            // cycle fills every domain's value for it (no lookup per domain and cycle)
            let mut values: Vec<Vec<Option<f64>>> =
                vec![Vec::with_capacity(recent.len()); names.len()];
            for c in &recent {
                let mut cycle = c.domains.iter().peekable();
                for (name, v) in names.iter().zip(values.iter_mut()) {
                    while cycle.next_if(|(d, _)| *d < *name).is_some() {}
                    let w = cycle.next_if(|(d, _)| d == name).map(|(_, w)| w);
                    v.push(w.and_then(|w| w.value(k)));
                }
            }
            let series: Vec<Series> = values.into_iter().map(Series::new).collect();
            let units = UnitColumns::new(&series, recent.len());
            // per domain: not compared (too few cycles), a unit series (compared in step),
            // or compared pair by pair
            let kind: Vec<Kind> = series
                .iter()
                .map(|s| match (s.present < 6, &s.unit) {
                    (true, _) => Kind::Skipped,
                    (false, Some(_)) => Kind::Unit,
                    (false, None) => Kind::Gaps,
                })
                .collect();
            // clamping to ±1 moves no |r| across a threshold of at most 1
            let threshold = self.correlation_min_r.min(1.0);
            let mut dots = vec![0.0; series.len()];
            for (i, a) in series.iter().enumerate() {
                if kind[i] == Kind::Skipped {
                    continue;
                }
                if let Some(unit) = &a.unit {
                    units.dots(unit, i + 1, &mut dots);
                }
                for j in i + 1..series.len() {
                    // most pairs of unit series are far from the threshold: told apart by
                    // their dot product alone
                    let in_step = match (kind[i], kind[j]) {
                        (_, Kind::Skipped) => continue,
                        (Kind::Unit, Kind::Unit) if dots[j].abs() < threshold => continue,
                        (Kind::Unit, Kind::Unit) => true,
                        _ => false,
                    };
                    let (r, cycles) = match in_step {
                        true => (dots[j].clamp(-1.0, 1.0), recent.len()),
                        false => match a.correlation(&series[j]) {
                            Some(rc) => rc,
                            None => continue,
                        },
                    };
                    if cycles >= 6 && r.abs() >= self.correlation_min_r {
                        out.push((r, k, i, j, cycles));
                    }
                }
            }
        }
        // the strongest, then back in (KPI, a, b) order
        if out.len() > self.max_correlations {
            // no two are equal under this order: the strongest found by selection are the
            // ones a full sort puts first
            let strongest = |x: &(f64, &str, usize, usize, usize),
                             y: &(f64, &str, usize, usize, usize)| {
                y.0.abs()
                    .total_cmp(&x.0.abs())
                    .then((x.1, x.2, x.3).cmp(&(y.1, y.2, y.3)))
            };
            out.select_nth_unstable_by(self.max_correlations, strongest);
            out.truncate(self.max_correlations);
            let order = |k: &str| usize::from(k != kpi::OVERALL_SUCCESS_RATE);
            out.sort_by_key(|x| (order(x.1), x.2, x.3));
        }
        out.into_iter()
            .map(|(r, k, i, j, cycles)| Correlation {
                kpi: k.to_string(),
                a: names[i].clone(),
                b: names[j].clone(),
                r,
                cycles,
            })
            .collect()
    }
}

/// One domain's per-cycle values of a KPI (`None`: no data that cycle), ready for pairwise
/// correlation.
struct Series {
    values: Vec<Option<f64>>,
    present: usize,
    /// With a value in every cycle and not constant: the values centred and scaled to unit
    /// length, so that Pearson's r of two such series is their dot product.
    unit: Option<Vec<f64>>,
}

/// How a domain's series is compared with the others'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Values in fewer than 6 cycles: not compared.
    Skipped,
    /// A unit series: compared in step ([`UnitColumns`]).
    Unit,
    /// Gaps or constant: compared pair by pair over the cycles both have.
    Gaps,
}

/// The unit series of a KPI laid out by cycle: `cycles` rows of one value per domain (0 for
/// a domain without a unit series), so that one domain's dot products with all the domains
/// after it are computed a row at a time, many pairs in step (vectorised), each pair's
/// products added in cycle order as [`Series::correlation`] adds them: the same bits.
struct UnitColumns {
    domains: usize,
    rows: Vec<f64>,
}

impl UnitColumns {
    fn new(series: &[Series], cycles: usize) -> UnitColumns {
        let domains = series.len();
        let mut rows = vec![0.0; cycles * domains];
        for (j, s) in series.iter().enumerate() {
            for (t, v) in s.unit.iter().flatten().enumerate() {
                rows[t * domains + j] = *v;
            }
        }
        UnitColumns { domains, rows }
    }

    /// `dots[j]` = Σₜ a[t]·unit_j[t] for every `j ≥ from` (meaningful where `j` has a unit
    /// series), added in cycle order from the first product (an empty sum's −0.0 plus it is
    /// it).
    fn dots(&self, a: &[f64], from: usize, dots: &mut [f64]) {
        let n = self.domains;
        if from >= n || a.is_empty() {
            return;
        }
        let out = &mut dots[from..n];
        let row = |t: usize| &self.rows[t * n + from..(t + 1) * n];
        for (d, x) in out.iter_mut().zip(row(0)) {
            *d = a[0] * x;
        }
        for (t, at) in a.iter().enumerate().skip(1) {
            for (d, x) in out.iter_mut().zip(row(t)) {
                *d += at * x;
            }
        }
    }
}

impl Series {
    fn new(values: Vec<Option<f64>>) -> Series {
        let present = values.iter().filter(|v| v.is_some()).count();
        let unit = (present == values.len() && present >= 3)
            .then(|| {
                let n = present as f64;
                let mean = values.iter().flatten().sum::<f64>() / n;
                let centred: Vec<f64> = values.iter().flatten().map(|v| v - mean).collect();
                let norm = centred.iter().map(|d| d * d).sum::<f64>().sqrt();
                (norm > 0.0).then(|| centred.iter().map(|d| d / norm).collect())
            })
            .flatten();
        Series {
            values,
            present,
            unit,
        }
    }

    /// Pearson's r over the cycles where both have a value, and how many those are.
    fn correlation(&self, other: &Series) -> Option<(f64, usize)> {
        if let (Some(a), Some(b)) = (&self.unit, &other.unit) {
            let r: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            return Some((r.clamp(-1.0, 1.0), a.len()));
        }
        let (xs, ys): (Vec<f64>, Vec<f64>) = self
            .values
            .iter()
            .zip(&other.values)
            .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
            .unzip();
        pearson(&xs, &ys).map(|r| (r, xs.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::RateCounts;
    use rand::{Rng, SeedableRng};

    /// Cycles where each domain's success rate is given per cycle (`None`: no recoveries).
    fn history(rates: &[(&str, Vec<Option<f64>>)]) -> VecDeque<CycleWindows> {
        let cycles = rates[0].1.len();
        (0..cycles)
            .map(|c| CycleWindows {
                cycle: c as u64 + 1,
                start: Timestamp::from_secs(c as i64 * 300),
                end: Timestamp::from_secs(c as i64 * 300 + 300),
                domains: rates
                    .iter()
                    .filter_map(|(d, r)| {
                        let rate = r[c]?;
                        let w = DomainWindow {
                            success: RateCounts {
                                successes: (rate * 1000.0).round() as u64,
                                trials: 1000,
                            },
                            ..DomainWindow::default()
                        };
                        Some((d.to_string(), w))
                    })
                    .collect(),
                arms: BTreeMap::new(),
            })
            .collect()
    }

    #[test]
    fn a_pair_of_series_gives_pearsons_r_over_the_cycles_both_have() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for case in 0..500 {
            let n = 6 + case % 10;
            let draw = |rng: &mut rand_chacha::ChaCha8Rng, gaps: bool| -> Vec<Option<f64>> {
                (0..n)
                    .map(|_| (!gaps || rng.random_bool(0.8)).then(|| rng.random_range(0.0..1.0)))
                    .collect()
            };
            let gaps = case % 2 == 0;
            let (x, y) = (draw(&mut rng, gaps), draw(&mut rng, case % 3 == 0));
            // brute force: the pairs where both are present, then the textbook formula
            let (xs, ys): (Vec<f64>, Vec<f64>) = x
                .iter()
                .zip(&y)
                .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
                .unzip();
            let want = pearson(&xs, &ys);
            let got = Series::new(x).correlation(&Series::new(y));
            match (want, got) {
                (None, None) => {}
                (Some(w), Some((g, cycles))) => {
                    assert!((w - g).abs() < 1e-12, "case {case}: {w} vs {g}");
                    assert_eq!(cycles, xs.len());
                }
                other => panic!("case {case}: {other:?}"),
            }
        }
    }

    #[test]
    fn correlations_computed_in_step_are_the_pairwise_ones_to_the_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for case in 0..20 {
            // domains following one of a few shared signals with noise (so that many pairs
            // pass the threshold), some with gaps, some constant, some with too few cycles
            let signals: Vec<Vec<f64>> = (0..3)
                .map(|_| (0..12).map(|_| rng.random_range(0.6..0.95)).collect())
                .collect();
            let names: Vec<String> = (0..40 + case).map(|d| format!("d{d:03}")).collect();
            let rates: Vec<(&str, Vec<Option<f64>>)> = names
                .iter()
                .enumerate()
                .map(|(d, name)| {
                    let s = &signals[d % 3];
                    let noise = [0.0, 0.01, 0.05][d % 3];
                    let series = (0..12)
                        .map(|c| match d % 7 {
                            0 if c % 4 == 1 => None,
                            1 => Some(0.9),
                            2 if c < 7 => None,
                            _ => Some(s[c] + rng.random_range(-noise..=noise)),
                        })
                        .collect();
                    (name.as_str(), series)
                })
                .collect();
            let h = history(&rates);
            let builder = SnapshotBuilder {
                max_correlations: usize::MAX,
                ..SnapshotBuilder::default()
            };
            let got = builder.correlations(&h);
            // brute force: every pair of series (as the windows give them, newest first), one
            // pair at a time
            let series: Vec<Series> = rates
                .iter()
                .map(|(d, _)| {
                    let values = h.iter().rev().map(|c| {
                        c.domains
                            .get(*d)
                            .and_then(|w| w.value(kpi::OVERALL_SUCCESS_RATE))
                    });
                    Series::new(values.collect())
                })
                .collect();
            let mut want = Vec::new();
            for (i, a) in series.iter().enumerate() {
                for (j, b) in series.iter().enumerate().skip(i + 1) {
                    if a.present < 6 || b.present < 6 {
                        continue;
                    }
                    if let Some((r, cycles)) = a.correlation(b)
                        && cycles >= 6
                        && r.abs() >= builder.correlation_min_r
                    {
                        want.push((rates[i].0, rates[j].0, r.to_bits(), cycles));
                    }
                }
            }
            let got: Vec<(&str, &str, u64, usize)> = got
                .iter()
                .filter(|c| c.kpi == kpi::OVERALL_SUCCESS_RATE)
                .map(|c| (c.a.as_str(), c.b.as_str(), c.r.to_bits(), c.cycles))
                .collect();
            assert!(want.len() > 100, "case {case}: {} pairs", want.len());
            assert_eq!(got, want, "case {case}");
            // a limit keeps the strongest: brute force, a full sort by |r| (ties by pair)
            let limited = SnapshotBuilder {
                max_correlations: 25,
                ..builder.clone()
            }
            .correlations(&h);
            let mut strongest = want.clone();
            strongest.sort_by(|x, y| {
                let r = |b: u64| f64::from_bits(b).abs();
                r(y.2).total_cmp(&r(x.2)).then((x.0, x.1).cmp(&(y.0, y.1)))
            });
            strongest.truncate(25);
            strongest.sort_by_key(|x| (x.0, x.1));
            let limited: Vec<(&str, &str, u64, usize)> = limited
                .iter()
                .map(|c| (c.a.as_str(), c.b.as_str(), c.r.to_bits(), c.cycles))
                .collect();
            assert_eq!(limited, strongest, "case {case}");
        }
    }

    #[test]
    fn a_snapshot_reports_the_strongest_correlations_up_to_its_limit() {
        let base: Vec<f64> = (0..12).map(|c| 0.8 + 0.01 * ((c * 7) % 5) as f64).collect();
        let rates = vec![
            ("a", base.iter().map(|v| Some(*v)).collect()),
            // b follows a exactly; c mirrors it; d follows it with noise and a gap
            ("b", base.iter().map(|v| Some(*v - 0.1)).collect()),
            ("c", base.iter().map(|v| Some(1.6 - *v)).collect()),
            (
                "d",
                base.iter()
                    .enumerate()
                    .map(|(i, v)| (i != 3).then_some(*v + if i % 2 == 0 { 0.004 } else { -0.004 }))
                    .collect(),
            ),
            // too few cycles to be compared
            (
                "e",
                (0..12)
                    .map(|i| (i < 5).then_some(0.5 + i as f64 / 100.0))
                    .collect(),
            ),
        ];
        let h = history(&rates);
        let all = SnapshotBuilder::default().correlations(&h);
        let pairs: Vec<(&str, &str)> = all
            .iter()
            .filter(|c| c.kpi == kpi::OVERALL_SUCCESS_RATE)
            .map(|c| (c.a.as_str(), c.b.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "b"),
                ("a", "c"),
                ("a", "d"),
                ("b", "c"),
                ("b", "d"),
                ("c", "d")
            ]
        );
        let ab = &all[0];
        assert!((ab.r - 1.0).abs() < 1e-9 && ab.cycles == 12);
        let ad = all
            .iter()
            .find(|c| (c.a.as_str(), c.b.as_str()) == ("a", "d"))
            .unwrap();
        assert_eq!(ad.cycles, 11);
        assert!(ad.r > 0.7 && ad.r < 1.0);
        // a limit of 3 keeps the exact ones (|r| = 1): a–b, a–c, b–c, in (a, b) order
        let limited = SnapshotBuilder {
            max_correlations: 3,
            ..SnapshotBuilder::default()
        }
        .correlations(&h);
        let kept: Vec<(&str, &str)> = limited
            .iter()
            .map(|c| (c.a.as_str(), c.b.as_str()))
            .collect();
        assert_eq!(kept, [("a", "b"), ("a", "c"), ("b", "c")]);
    }
}
