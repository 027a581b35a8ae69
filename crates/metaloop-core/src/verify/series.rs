//! Per-cycle KPI summaries: what sequential verification and the cycle-by-cycle rules look
//! at. A summary is a few numbers per KPI and domain, so a verification can keep every cycle
//! of a long horizon.

use super::stats::sequential::CycleObservation;
use crate::kpi::{self, CycleWindows, DomainWindow, KpiKind, RateCounts, ScoreStats, sketch::MIN};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One domain's KPIs in one closed cycle.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DomainCycle {
    pub success: RateCounts,
    pub autonomy: RateCounts,
    pub intervention: RateCounts,
    /// Recovery durations, seconds.
    pub recovery: ScoreStats,
    /// Natural logs of recovery durations (from the sketch's bins, within 2 %).
    pub log_recovery: ScoreStats,
    pub compliance: ScoreStats,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, ScoreStats>,
}

/// Every domain's summary for one closed cycle.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CycleSummary {
    pub cycle: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub domains: BTreeMap<String, DomainCycle>,
}

impl CycleSummary {
    /// Summarises a closed cycle's windows.
    pub fn of(windows: &CycleWindows) -> CycleSummary {
        CycleSummary {
            cycle: windows.cycle,
            start: windows.start,
            end: windows.end,
            domains: windows
                .domains
                .iter()
                .map(|(d, w)| (d.clone(), DomainCycle::of(w)))
                .collect(),
        }
    }
}

impl CycleSummary {
    /// The same cycle with only `domains` (those it has).
    pub fn narrow<'a>(&self, domains: impl IntoIterator<Item = &'a str>) -> CycleSummary {
        CycleSummary {
            cycle: self.cycle,
            start: self.start,
            end: self.end,
            domains: domains
                .into_iter()
                .filter_map(|d| Some((d.to_string(), self.domains.get(d)?.clone())))
                .collect(),
        }
    }
}

impl DomainCycle {
    /// Summarises one domain's window.
    pub fn of(w: &DomainWindow) -> DomainCycle {
        let mut log_recovery = ScoreStats::default();
        for (v, n) in w.recovery.weighted_values() {
            let l = v.max(MIN).ln();
            log_recovery.count += n;
            log_recovery.sum += l * n as f64;
            log_recovery.sum_sq += l * l * n as f64;
            log_recovery.last = l;
        }
        DomainCycle {
            success: w.success,
            autonomy: w.autonomy,
            intervention: w.intervention,
            recovery: ScoreStats {
                count: w.recovery.count,
                sum: w.recovery.sum,
                sum_sq: w.recovery.sum_sq,
                last: 0.0,
            },
            log_recovery,
            compliance: w.compliance,
            custom: w.custom.clone(),
        }
    }

    /// The cycle's value of a KPI as a dashboard plots it (a rate, mean seconds, a mean
    /// score); `None` without data.
    pub fn value(&self, kpi_name: &str) -> Option<f64> {
        match kpi_name {
            kpi::OVERALL_SUCCESS_RATE => self.success.rate(),
            kpi::AUTONOMY_RATE => self.autonomy.rate(),
            kpi::HUMAN_INTERVENTION_RATE => self.intervention.rate(),
            kpi::MEAN_RECOVERY_TIME | kpi::P50_RECOVERY_TIME | kpi::P95_RECOVERY_TIME => {
                self.recovery.mean()
            }
            other => self.stats(other).and_then(|s| s.mean()),
        }
    }

    fn stats(&self, kpi_name: &str) -> Option<&ScoreStats> {
        match kpi_name {
            kpi::COMPLIANCE_SCORE => Some(&self.compliance),
            kpi::MEAN_RECOVERY_TIME | kpi::P50_RECOVERY_TIME | kpi::P95_RECOVERY_TIME => {
                Some(&self.log_recovery)
            }
            other => self.custom.get(other),
        }
    }

    fn rate(&self, kpi_name: &str) -> Option<RateCounts> {
        match kpi_name {
            kpi::OVERALL_SUCCESS_RATE => Some(self.success),
            kpi::AUTONOMY_RATE => Some(self.autonomy),
            kpi::HUMAN_INTERVENTION_RATE => Some(self.intervention),
            _ => None,
        }
    }
}

/// The scale a KPI is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A proportion; shifts are absolute.
    Rate,
    /// The log of durations; a shift of x is a factor e^x.
    LogDuration,
    /// Reported values; shifts are absolute.
    Score,
}

/// The scale of a KPI.
pub fn scale_of(kpi_name: &str) -> Scale {
    match kpi::builtin(kpi_name).map(|(_, k)| k) {
        Some(KpiKind::Rate) => Scale::Rate,
        Some(KpiKind::Duration) => Scale::LogDuration,
        _ => Scale::Score,
    }
}

/// Sufficient statistics of one KPI in one cycle, pooled over one or more domains.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pooled {
    pub(crate) n: f64,
    pub(crate) sum: f64,
    pub(crate) sum_sq: f64,
}

impl Pooled {
    pub(crate) fn add(&mut self, kpi_name: &str, d: &DomainCycle) {
        if let Some(r) = d.rate(kpi_name) {
            self.n += r.trials as f64;
            self.sum += r.successes as f64;
            self.sum_sq += r.successes as f64;
        } else if let Some(s) = d.stats(kpi_name) {
            self.n += s.count as f64;
            self.sum += s.sum;
            self.sum_sq += s.sum_sq;
        }
    }

    pub(crate) fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.sum / self.n)
    }
}

/// Per-cycle observations of one KPI, ready for [`super::stats::sequential::shift`].
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    pub pre: Vec<CycleObservation>,
    pub post: Vec<CycleObservation>,
    /// Within-cycle variance per unit weight: the least the cycles can vary.
    pub floor_variance: f64,
    /// Mean of the target on its own (no control) over the pre cycles, on the test scale.
    pub pre_level: f64,
}

/// A control domain of a verification and the moment it stopped being one (its own change,
/// `None` while it has not changed): its cycles ending after that are not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    pub domain: String,
    pub until: Option<Timestamp>,
}

impl Control {
    /// A control that has not changed.
    pub fn new(domain: &str) -> Control {
        Control {
            domain: domain.to_string(),
            until: None,
        }
    }

    fn covers(&self, c: &CycleSummary) -> bool {
        self.until.is_none_or(|u| c.end <= u)
    }
}

/// Builds the observations of `kpi_name` in `target`. With `controls`, each cycle's
/// observation is the target's value minus the controls' deviation from their own pre-window
/// levels (pooled by their counts) (a difference in differences: what the domains share, such as the time
/// of day, cancels); a control that changed is used only up to its change, and a post cycle
/// without any usable control is left out. Cycles where the target has no data are left
/// out. `None` when either side has no data.
pub fn observations(
    kpi_name: &str,
    target: &str,
    controls: &[Control],
    pre: &[CycleSummary],
    post: &[CycleSummary],
) -> Option<Observations> {
    Aligned::new(target, controls, pre, post).observations(kpi_name, true, post.len())
}

/// One cycle's data as a verification reads it: the target's and each control's, and
/// whether the control still counted as one in that cycle (it had not changed).
struct AlignedCycle<'a> {
    target: Option<&'a DomainCycle>,
    controls: Vec<(Option<&'a DomainCycle>, bool)>,
}

/// The pre and post cycles of a verification with the target's and the controls' data
/// looked up once, shared by every KPI it tests (the target, each guardrail, with and
/// without the controls) and every look of its trace.
pub struct Aligned<'a> {
    pre: Vec<AlignedCycle<'a>>,
    post: Vec<AlignedCycle<'a>>,
    with_controls: bool,
}

impl<'a> Aligned<'a> {
    /// Looks up the target and the controls in every cycle.
    pub fn new(
        target: &str,
        controls: &[Control],
        pre: &'a [CycleSummary],
        post: &'a [CycleSummary],
    ) -> Aligned<'a> {
        let align = |cycles: &'a [CycleSummary]| -> Vec<AlignedCycle<'a>> {
            cycles
                .iter()
                .map(|c| AlignedCycle {
                    target: c.domains.get(target),
                    controls: controls
                        .iter()
                        .map(|k| (c.domains.get(&k.domain), k.covers(c)))
                        .collect(),
                })
                .collect()
        };
        Aligned {
            pre: align(pre),
            post: align(post),
            with_controls: !controls.is_empty(),
        }
    }

    /// The observations of `kpi_name`, against the controls when `controlled` (and there
    /// are any), over the first `post_len` post cycles. `None` when either side has no data.
    pub fn observations(
        &self,
        kpi_name: &str,
        controlled: bool,
        post_len: usize,
    ) -> Option<Observations> {
        let rate = scale_of(kpi_name) == Scale::Rate;
        let controlled = controlled && self.with_controls;
        let width = if controlled {
            self.pre.first().map_or(0, |c| c.controls.len())
        } else {
            0
        };
        // each control's level over the pre window
        let control_level: Vec<Option<f64>> = (0..width)
            .map(|i| {
                let mut p = Pooled::default();
                for c in &self.pre {
                    if let (Some(d), _) = c.controls[i] {
                        p.add(kpi_name, d);
                    }
                }
                p.mean()
            })
            .collect();
        // pooled within-cycle statistics, for the variance floor
        let mut within_ss = 0.0;
        let mut within_n = 0.0;
        let mut within_groups = 0.0;
        let mut all = Pooled::default();
        let mut level = Pooled::default();
        let mut within = |p: &Pooled| {
            if p.n >= 2.0 && !rate {
                let m = p.sum / p.n;
                within_ss += (p.sum_sq - p.n * m * m).max(0.0);
                within_n += p.n;
                within_groups += 1.0;
            }
            all.n += p.n;
            all.sum += p.sum;
        };
        let mut series = |cycles: &[AlignedCycle<'_>], is_pre: bool| -> Vec<CycleObservation> {
            let mut out = Vec::new();
            for c in cycles {
                let Some(t) = c.target else { continue };
                let mut tp = Pooled::default();
                tp.add(kpi_name, t);
                let Some(tm) = tp.mean() else { continue };
                // the controls' deviations from their own levels, pooled by their counts
                let (mut deviation, mut n) = (0.0, 0.0);
                let mut pools = Vec::new();
                for ((d, covered), base) in c.controls[..width].iter().zip(&control_level) {
                    let (Some(base), Some(d), true) = (base, d, covered) else {
                        continue;
                    };
                    let mut cp = Pooled::default();
                    cp.add(kpi_name, d);
                    let Some(cm) = cp.mean() else { continue };
                    deviation += cp.n * (cm - base);
                    n += cp.n;
                    pools.push(cp);
                }
                let (value, weight) = if width == 0 {
                    (tm, tp.n)
                } else if n > 0.0 {
                    (tm - deviation / n, 1.0 / (1.0 / tp.n + 1.0 / n))
                } else {
                    continue;
                };
                if is_pre {
                    level.n += tp.n;
                    level.sum += tp.sum;
                }
                within(&tp);
                pools.iter().for_each(&mut within);
                out.push(CycleObservation { value, weight });
            }
            out
        };
        let pre_obs = series(&self.pre, true);
        let post_obs = series(&self.post[..post_len.min(self.post.len())], false);
        if pre_obs.is_empty() || post_obs.is_empty() {
            return None;
        }
        let floor_variance = if rate {
            let p = all.mean().unwrap_or(0.5).clamp(0.0, 1.0);
            // at least one failure and one success in a thousand, so a perfect record is not
            // taken for certainty
            (p * (1.0 - p)).max(0.001 * 0.999)
        } else if within_n - within_groups > 0.0 {
            within_ss / (within_n - within_groups)
        } else {
            0.0
        };
        Some(Observations {
            pre: pre_obs,
            post: post_obs,
            floor_variance,
            pre_level: level.mean().unwrap_or(f64::NAN),
        })
    }
}

/// Per-cycle values of a KPI in one domain (cycles without data left out), for the rules
/// that judge one measurement per cycle.
pub fn values(kpi_name: &str, domain: &str, cycles: &[CycleSummary]) -> Vec<f64> {
    cycles
        .iter()
        .filter_map(|c| c.domains.get(domain)?.value(kpi_name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(n: u64, doms: &[(&str, u64, u64)]) -> CycleSummary {
        CycleSummary {
            cycle: n,
            start: Timestamp(0),
            end: Timestamp(0),
            domains: doms
                .iter()
                .map(|(d, s, t)| {
                    (
                        d.to_string(),
                        DomainCycle {
                            success: RateCounts {
                                successes: *s,
                                trials: *t,
                            },
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn differences_against_controls_cancel_what_domains_share() {
        // the night lowers every domain by 10 points; the target's own change is +5 points
        let pre = vec![cycle(1, &[("a", 80, 100), ("b", 90, 100)])];
        let post = vec![cycle(2, &[("a", 75, 100), ("b", 80, 100)])];
        let raw = observations(kpi::OVERALL_SUCCESS_RATE, "a", &[], &pre, &post).unwrap();
        assert!((raw.post[0].value - raw.pre[0].value + 0.05).abs() < 1e-12);
        let did = observations(
            kpi::OVERALL_SUCCESS_RATE,
            "a",
            &[Control::new("b")],
            &pre,
            &post,
        )
        .unwrap();
        assert!((did.post[0].value - did.pre[0].value - 0.05).abs() < 1e-12);
        // weight of a difference of two 100-incident means: 1 / (1/100 + 1/100)
        assert!((did.pre[0].weight - 50.0).abs() < 1e-12);
        // floor: pooled p(1-p) = 0.8125 * 0.1875
        assert!((did.floor_variance - 0.8125 * 0.1875).abs() < 1e-12);
        assert!((did.pre_level - 0.8).abs() < 1e-12);
    }

    #[test]
    fn a_control_counts_only_until_its_own_change() {
        let at = |n: u64, doms: &[(&str, u64, u64)]| {
            let mut c = cycle(n, doms);
            c.end = Timestamp(n as i64 * 300_000);
            c
        };
        // controls b at 90 % and c at 70 %: each is compared with its own level, so losing one
        // does not shift the others' contribution
        let pre = vec![at(1, &[("a", 80, 100), ("b", 90, 100), ("c", 70, 100)])];
        let post = vec![
            at(2, &[("a", 70, 100), ("b", 80, 100), ("c", 60, 100)]),
            // b changed at the end of cycle 2: from here only c says what the hour does
            at(3, &[("a", 70, 100), ("b", 99, 100), ("c", 60, 100)]),
        ];
        let controls = [
            Control {
                domain: "b".into(),
                until: Some(Timestamp(2 * 300_000)),
            },
            Control::new("c"),
        ];
        let o = observations(kpi::OVERALL_SUCCESS_RATE, "a", &controls, &pre, &post).unwrap();
        assert!((o.pre[0].value - 0.8).abs() < 1e-12);
        assert!((o.post[0].value - 0.8).abs() < 1e-12, "{:?}", o.post);
        assert!((o.post[1].value - 0.8).abs() < 1e-12, "{:?}", o.post);
        // one control of 100 in cycle 3: 1 / (1/100 + 1/100); 200 in cycle 2: 1 / (1/100 + 1/200)
        assert!((o.post[1].weight - 50.0).abs() < 1e-9);
        assert!((o.post[0].weight - 1.0 / (0.01 + 0.005)).abs() < 1e-9);
    }

    #[test]
    fn cycles_without_data_are_left_out() {
        let pre = vec![
            cycle(1, &[("a", 0, 0), ("b", 9, 10)]),
            cycle(2, &[("a", 3, 4)]),
        ];
        let post = vec![cycle(3, &[("a", 1, 1), ("b", 1, 2)])];
        // no pre cycle has both the target's and the control's data
        assert!(
            observations(
                kpi::OVERALL_SUCCESS_RATE,
                "a",
                &[Control::new("b")],
                &pre,
                &post
            )
            .is_none()
        );
        let o = observations(kpi::OVERALL_SUCCESS_RATE, "a", &[], &pre, &post).unwrap();
        assert_eq!((o.pre.len(), o.post.len()), (1, 1));
        assert_eq!(values(kpi::OVERALL_SUCCESS_RATE, "a", &pre), vec![0.75]);
    }
}
