//! Per-cycle KPI summaries: what sequential verification and the cycle-by-cycle rules look
//! at. A summary is a few numbers per KPI and domain, so a verification can keep every cycle
//! of a long horizon.

use super::stats;
use super::stats::sequential::{CycleObservation, PreMoments};
use crate::kpi::{self, CycleWindows, DomainWindow, KpiKind, RateCounts, ScoreStats, sketch::MIN};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Custom KPIs; shared, so that the copies a verification keeps of its domains' cycles
    /// cost no allocation.
    #[serde(
        default,
        skip_serializing_if = "custom::is_empty",
        serialize_with = "custom::serialize",
        deserialize_with = "custom::deserialize"
    )]
    pub custom: std::sync::Arc<BTreeMap<String, ScoreStats>>,
}

/// The shared custom-KPI map of a [`DomainCycle`], (de)serialised as the map itself.
mod custom {
    use super::ScoreStats;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    pub(super) fn is_empty(c: &Arc<BTreeMap<String, ScoreStats>>) -> bool {
        c.is_empty()
    }

    pub(super) fn serialize<S: Serializer>(
        c: &Arc<BTreeMap<String, ScoreStats>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        c.as_ref().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<BTreeMap<String, ScoreStats>>, D::Error> {
        BTreeMap::deserialize(d).map(Arc::new)
    }
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
                sum_lo: w.recovery.sum_lo,
                sum_sq: w.recovery.sum_sq,
                sum_sq_lo: w.recovery.sum_sq_lo,
                last: 0.0,
            },
            log_recovery,
            compliance: w.compliance,
            custom: std::sync::Arc::new(w.custom.clone()),
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
            other => match KpiAt::of(other) {
                KpiAt::Rate(rate) => rate(self).rate(),
                KpiAt::Stats(stats) => stats(self).mean(),
                KpiAt::Custom(name) => self.custom.get(name).and_then(|s| s.mean()),
            },
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

/// Where a KPI's sufficient statistics are in a [`DomainCycle`], found from its name once
/// rather than for every domain and cycle pooled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KpiAt<'k> {
    Rate(fn(&DomainCycle) -> RateCounts),
    Stats(fn(&DomainCycle) -> &ScoreStats),
    Custom(&'k str),
}

impl<'k> KpiAt<'k> {
    /// The rates' counts; compliance; the logs of recovery times (for all three recovery
    /// KPIs); otherwise a custom KPI of that name.
    pub(crate) fn of(kpi_name: &'k str) -> KpiAt<'k> {
        match kpi_name {
            kpi::OVERALL_SUCCESS_RATE => KpiAt::Rate(|d| d.success),
            kpi::AUTONOMY_RATE => KpiAt::Rate(|d| d.autonomy),
            kpi::HUMAN_INTERVENTION_RATE => KpiAt::Rate(|d| d.intervention),
            kpi::COMPLIANCE_SCORE => KpiAt::Stats(|d| &d.compliance),
            kpi::MEAN_RECOVERY_TIME | kpi::P50_RECOVERY_TIME | kpi::P95_RECOVERY_TIME => {
                KpiAt::Stats(|d| &d.log_recovery)
            }
            other => KpiAt::Custom(other),
        }
    }

    /// The KPI's observations in one domain's cycle: what [`Pooled::add_at`] adds to `n`.
    pub(crate) fn count(self, d: &DomainCycle) -> u64 {
        match self {
            KpiAt::Rate(rate) => rate(d).trials,
            KpiAt::Stats(stats) => stats(d).count,
            KpiAt::Custom(name) => d.custom.get(name).map_or(0, |s| s.count),
        }
    }
}

impl Pooled {
    pub(crate) fn add(&mut self, kpi_name: &str, d: &DomainCycle) {
        self.add_at(KpiAt::of(kpi_name), d);
    }

    /// [`Self::add`] with the KPI found already.
    pub(crate) fn add_at(&mut self, at: KpiAt<'_>, d: &DomainCycle) {
        let s = match at {
            KpiAt::Rate(rate) => {
                let r = rate(d);
                self.n += r.trials as f64;
                self.sum += r.successes as f64;
                self.sum_sq += r.successes as f64;
                return;
            }
            KpiAt::Stats(stats) => stats(d),
            KpiAt::Custom(name) => match d.custom.get(name) {
                Some(s) => s,
                None => return,
            },
        };
        self.n += s.count as f64;
        self.sum += s.sum;
        self.sum_sq += s.sum_sq;
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

/// [`Observations`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ObservationsRef<'a> {
    pub pre: &'a [CycleObservation],
    /// `pre`'s moments (`None` when it has no weight), kept from the first look.
    pub pre_moments: Option<PreMoments>,
    pub post: &'a [CycleObservation],
    pub floor_variance: f64,
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
    pre: &[Arc<CycleSummary>],
    post: &[Arc<CycleSummary>],
) -> Option<Observations> {
    Aligned::new(target, controls, pre, post).observations(kpi_name, true, post.len())
}

/// One cycle's data as a verification reads it: the target's and each control's, and
/// whether the control still counted as one in that cycle (it had not changed).
struct AlignedCycle<'a> {
    target: Option<&'a DomainCycle>,
    controls: Vec<(Option<&'a DomainCycle>, bool)>,
}

/// The running sums of one KPI's observations that span both windows (the variance floor,
/// the pooled rate) and the target's own pooled pre level.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    within_ss: f64,
    within_n: f64,
    within_groups: f64,
    all: Pooled,
    level: Pooled,
}

impl Sums {
    /// Adds one pooled group to the within-cycle statistics.
    fn within(&mut self, p: &Pooled, rate: bool) {
        if p.n >= 2.0 && !rate {
            let m = p.sum / p.n;
            self.within_ss += (p.sum_sq - p.n * m * m).max(0.0);
            self.within_n += p.n;
            self.within_groups += 1.0;
        }
        self.all.n += p.n;
        self.all.sum += p.sum;
    }
}

/// What a verification's pre window contributes to one KPI's observations: each control's
/// level, the pre observations, and the sums after them; then the post cycles folded so far.
#[derive(Debug, Clone)]
struct PrePart {
    control_level: Vec<Option<f64>>,
    obs: Vec<CycleObservation>,
    /// The moments of `obs`, once a look has asked for them.
    moments: std::cell::OnceCell<Option<PreMoments>>,
    sums: Sums,
    post: PostPart,
}

/// The first post cycles folded after a pre window: their observations and the sums after
/// them (the post window only grows, so the next look folds only its new cycles).
#[derive(Debug, Clone, Default)]
struct PostPart {
    obs: Vec<CycleObservation>,
    sums: Sums,
    /// Post cycles folded, and the first and last one's cycle numbers.
    len: usize,
    first: Option<u64>,
    last: Option<u64>,
    /// When the last one folded ended.
    last_end: Option<Timestamp>,
}

/// The pre-window statistics of one verification, per KPI tested (with and without its
/// controls). The pre window is fixed when the directive is proposed, so they are computed
/// at its first look and reused at every later one, as long as the target, the controls
/// (and when each stopped being one) and the pre cycles are the same. Derived state: never
/// recorded, rebuilt on demand, and equal to what a look computes from scratch. The post
/// window only grows: the post cycles folded at one look are kept, and the next look folds
/// only the cycles closed since (in the same order, so the sums are the same to the bit).
#[derive(Debug, Clone, Default)]
pub struct PreStats {
    target: String,
    controls: Vec<Control>,
    /// Number of pre cycles and their first and last cycle numbers.
    pre: (usize, Option<u64>, Option<u64>),
    parts: Vec<(String, bool, PrePart)>,
}

impl PreStats {
    fn key(pre: &[Arc<CycleSummary>]) -> (usize, Option<u64>, Option<u64>) {
        (
            pre.len(),
            pre.first().map(|c| c.cycle),
            pre.last().map(|c| c.cycle),
        )
    }

    /// Whether these statistics were computed for this target, this pre window and these
    /// controls (or controls that have changed since: [`Self::adopt`]).
    fn describes(&mut self, target: &str, controls: &[Control], pre: &[Arc<CycleSummary>]) -> bool {
        self.target == target && self.pre == Self::key(pre) && self.adopt(controls, pre)
    }

    /// Takes `controls` where they differ from the ones these statistics were computed with
    /// only in controls that have changed since (an `until` set where there was none), and
    /// tells whether it could. Every cycle folded that ended by the earliest such change was
    /// folded with those controls counting, as it would be now: the pre parts stay, and the
    /// post cycles folded stay unless one ended after it (then the post window is folded
    /// again).
    fn adopt(&mut self, controls: &[Control], pre: &[Arc<CycleSummary>]) -> bool {
        if self.controls.len() != controls.len() {
            return false;
        }
        let mut earliest: Option<Timestamp> = None;
        for (old, new) in self.controls.iter().zip(controls) {
            if old.domain != new.domain {
                return false;
            }
            match (old.until, new.until) {
                (a, b) if a == b => {}
                (None, Some(u)) => earliest = Some(earliest.map_or(u, |e| e.min(u))),
                _ => return false,
            }
        }
        let Some(u) = earliest else {
            return true;
        };
        if pre.iter().any(|c| c.end > u) {
            return false;
        }
        for (_, _, part) in &mut self.parts {
            if part.post.last_end.is_some_and(|e| e > u) {
                part.post = PostPart {
                    sums: part.sums,
                    ..PostPart::default()
                };
            }
        }
        self.controls = controls.to_vec();
        true
    }

    /// KPIs (with or without controls) whose pre-window statistics are kept.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether no KPI's statistics are kept yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The pre and post cycles of a verification with the target's and the controls' data
/// looked up once, shared by every KPI it tests (the target, each guardrail, with and
/// without the controls) and every look of its trace. What the pre window contributes to a
/// KPI is computed once ([`PreStats`]).
pub struct Aligned<'a> {
    target: &'a str,
    controls: &'a [Control],
    pre_cycles: &'a [Arc<CycleSummary>],
    post_cycles: &'a [Arc<CycleSummary>],
    with_controls: bool,
    memo: std::cell::RefCell<PreStats>,
    /// The pre cycles with the target and the controls looked up: once per look, for
    /// every KPI whose pre part it computes.
    pre_aligned: std::cell::OnceCell<Vec<AlignedCycle<'a>>>,
    /// The post cycles looked up in this look (by their index; `None` where no KPI needed
    /// it): once, for every KPI and both with and without the controls.
    post_aligned: std::cell::RefCell<Vec<Option<AlignedCycle<'a>>>>,
}

fn align<'a>(target: &str, controls: &[Control], c: &'a CycleSummary) -> AlignedCycle<'a> {
    AlignedCycle {
        target: c.domains.get(target),
        controls: controls
            .iter()
            .map(|k| (c.domains.get(&k.domain), k.covers(c)))
            .collect(),
    }
}

/// Folds cycles into observations of `kpi_name`: each cycle's value (against the controls'
/// deviations from their levels when `control_level` is not empty) and weight, adding to
/// `sums` as it goes.
fn fold<'c, C: std::borrow::Borrow<AlignedCycle<'c>>>(
    kpi_name: &str,
    rate: bool,
    control_level: &[Option<f64>],
    cycles: impl IntoIterator<Item = C>,
    is_pre: bool,
    sums: &mut Sums,
    out: &mut Vec<CycleObservation>,
) {
    let width = control_level.len();
    let at = KpiAt::of(kpi_name);
    for c in cycles {
        let c = c.borrow();
        let Some(t) = c.target else { continue };
        let mut tp = Pooled::default();
        tp.add_at(at, t);
        let Some(tm) = tp.mean() else { continue };
        // the controls' deviations from their own levels, pooled by their counts
        let (mut deviation, mut n) = (0.0, 0.0);
        let mut pools = Vec::new();
        for ((d, covered), base) in c.controls[..width].iter().zip(control_level) {
            let (Some(base), Some(d), true) = (base, d, covered) else {
                continue;
            };
            let mut cp = Pooled::default();
            cp.add_at(at, d);
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
            sums.level.n += tp.n;
            sums.level.sum += tp.sum;
        }
        sums.within(&tp, rate);
        pools.iter().for_each(|p| sums.within(p, rate));
        out.push(CycleObservation { value, weight });
    }
}

impl<'a> Aligned<'a> {
    /// Looks up the target and the controls in every cycle.
    pub fn new(
        target: &'a str,
        controls: &'a [Control],
        pre: &'a [Arc<CycleSummary>],
        post: &'a [Arc<CycleSummary>],
    ) -> Aligned<'a> {
        Aligned::with_memo(target, controls, pre, post, PreStats::default())
    }

    /// The same, reusing the pre-window statistics of an earlier look of the same
    /// verification (discarded if they describe another target, other controls or another
    /// pre window).
    pub fn with_memo(
        target: &'a str,
        controls: &'a [Control],
        pre: &'a [Arc<CycleSummary>],
        post: &'a [Arc<CycleSummary>],
        memo: PreStats,
    ) -> Aligned<'a> {
        let mut memo = memo;
        let memo = if memo.describes(target, controls, pre) {
            memo
        } else {
            PreStats {
                target: target.to_string(),
                controls: controls.to_vec(),
                pre: PreStats::key(pre),
                parts: Vec::new(),
            }
        };
        Aligned {
            target,
            controls,
            pre_cycles: pre,
            post_cycles: post,
            with_controls: !controls.is_empty(),
            memo: std::cell::RefCell::new(memo),
            pre_aligned: std::cell::OnceCell::new(),
            post_aligned: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// The pre-window statistics computed so far, for the next look.
    pub fn into_memo(self) -> PreStats {
        self.memo.into_inner()
    }

    /// What the pre window contributes to `kpi_name` (with the controls when `controlled`).
    fn pre_part(&self, kpi_name: &str, controlled: bool) -> PrePart {
        let pre = self.pre_aligned.get_or_init(|| {
            self.pre_cycles
                .iter()
                .map(|c| align(self.target, self.controls, c))
                .collect()
        });
        let rate = scale_of(kpi_name) == Scale::Rate;
        let width = if controlled {
            pre.first().map_or(0, |c| c.controls.len())
        } else {
            0
        };
        // each control's level over the pre window
        let control_level: Vec<Option<f64>> = (0..width)
            .map(|i| {
                let mut p = Pooled::default();
                let at = KpiAt::of(kpi_name);
                for c in pre {
                    if let (Some(d), _) = c.controls[i] {
                        p.add_at(at, d);
                    }
                }
                p.mean()
            })
            .collect();
        let mut sums = Sums::default();
        let mut obs = Vec::new();
        fold(
            kpi_name,
            rate,
            &control_level,
            pre,
            true,
            &mut sums,
            &mut obs,
        );
        PrePart {
            control_level,
            obs,
            moments: std::cell::OnceCell::new(),
            sums,
            post: PostPart {
                sums,
                ..PostPart::default()
            },
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
        self.with_observations(kpi_name, controlled, post_len, |o| Observations {
            pre: o.pre.to_vec(),
            post: o.post.to_vec(),
            floor_variance: o.floor_variance,
            pre_level: o.pre_level,
        })
    }

    /// [`Self::observations`], lent to `f` instead of copied (a look reads them once).
    pub fn with_observations<R>(
        &self,
        kpi_name: &str,
        controlled: bool,
        post_len: usize,
        f: impl FnOnce(ObservationsRef<'_>) -> R,
    ) -> Option<R> {
        let rate = scale_of(kpi_name) == Scale::Rate;
        let controlled = controlled && self.with_controls;
        let post_len = post_len.min(self.post_cycles.len());
        let mut memo = self.memo.borrow_mut();
        let at = match memo
            .parts
            .iter()
            .position(|(k, c, _)| *c == controlled && k == kpi_name)
        {
            Some(at) => at,
            None => {
                let part = self.pre_part(kpi_name, controlled);
                memo.parts.push((kpi_name.to_string(), controlled, part));
                memo.parts.len() - 1
            }
        };
        let part = &mut memo.parts[at].2;
        // the post cycles folded so far are the first ones of this post window: fold the
        // new ones; otherwise fold them again from the end of the pre window
        let post = self.post_cycles;
        let p = &part.post;
        let follows = p.len <= post_len
            && (p.len == 0
                || (post.first().map(|c| c.cycle) == p.first
                    && Some(post[p.len - 1].cycle) == p.last));
        if !follows {
            part.post = PostPart {
                sums: part.sums,
                ..PostPart::default()
            };
        }
        let p = &mut part.post;
        // only the cycles not folded yet are looked up (the rest are in the kept sums)
        let mut aligned = self.post_aligned.borrow_mut();
        if aligned.len() < post_len {
            aligned.resize_with(post_len, || None);
        }
        for (c, a) in post[p.len..post_len]
            .iter()
            .zip(&mut aligned[p.len..post_len])
        {
            a.get_or_insert_with(|| align(self.target, self.controls, c));
        }
        fold(
            kpi_name,
            rate,
            &part.control_level,
            aligned[p.len..post_len].iter().flatten(),
            false,
            &mut p.sums,
            &mut p.obs,
        );
        drop(aligned);
        p.len = post_len;
        p.first = post.first().map(|c| c.cycle).filter(|_| post_len > 0);
        p.last = post_len.checked_sub(1).map(|i| post[i].cycle);
        p.last_end = post_len.checked_sub(1).map(|i| post[i].end);
        if part.obs.is_empty() || p.obs.is_empty() {
            return None;
        }
        let sums = p.sums;
        let floor_variance = if rate {
            let p = sums.all.mean().unwrap_or(0.5).clamp(0.0, 1.0);
            // at least one failure and one success in a thousand, so a perfect record is not
            // taken for certainty
            (p * (1.0 - p)).max(0.001 * 0.999)
        } else if sums.within_n - sums.within_groups > 0.0 {
            sums.within_ss / (sums.within_n - sums.within_groups)
        } else {
            0.0
        };
        let pre_moments = *part
            .moments
            .get_or_init(|| stats::sequential::pre_moments(&part.obs));
        Some(f(ObservationsRef {
            pre: &part.obs,
            pre_moments,
            post: &p.obs,
            floor_variance,
            pre_level: sums.level.mean().unwrap_or(f64::NAN),
        }))
    }
}

/// Per-cycle values of a KPI in one domain (cycles without data left out), for the rules
/// that judge one measurement per cycle.
pub fn values(kpi_name: &str, domain: &str, cycles: &[Arc<CycleSummary>]) -> Vec<f64> {
    cycles
        .iter()
        .filter_map(|c| c.domains.get(domain)?.value(kpi_name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(n: u64, doms: &[(&str, u64, u64)]) -> Arc<CycleSummary> {
        Arc::new(CycleSummary {
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
        })
    }

    /// Pooling through the KPI found once reads the same numbers as looking the name up in
    /// every cycle: the rates' counts, the stats of compliance, of log recovery times (all
    /// three recovery KPIs) and of custom KPIs, nothing for a KPI a domain lacks.
    #[test]
    fn pooling_a_kpi_found_once_reads_what_its_name_names() {
        use rand::SeedableRng;
        let by_name = |kpi_name: &str, d: &DomainCycle| -> (f64, f64, f64) {
            let rate = match kpi_name {
                kpi::OVERALL_SUCCESS_RATE => Some(d.success),
                kpi::AUTONOMY_RATE => Some(d.autonomy),
                kpi::HUMAN_INTERVENTION_RATE => Some(d.intervention),
                _ => None,
            };
            let stats = match kpi_name {
                kpi::COMPLIANCE_SCORE => Some(&d.compliance),
                kpi::MEAN_RECOVERY_TIME | kpi::P50_RECOVERY_TIME | kpi::P95_RECOVERY_TIME => {
                    Some(&d.log_recovery)
                }
                other => d.custom.get(other),
            };
            match (rate, stats) {
                (Some(r), _) => (r.trials as f64, r.successes as f64, r.successes as f64),
                (None, Some(s)) => (s.count as f64, s.sum, s.sum_sq),
                (None, None) => (0.0, 0.0, 0.0),
            }
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut cycles = random_cycles(&mut rng, 1, 40);
        for (i, c) in cycles.iter_mut().enumerate() {
            if let Some(d) = Arc::make_mut(c).domains.get_mut("a") {
                let mut custom = BTreeMap::new();
                if i % 3 != 0 {
                    custom.insert(
                        "queue_depth".to_string(),
                        ScoreStats {
                            count: i as u64,
                            sum: i as f64 * 1.5,
                            sum_sq: i as f64 * 4.25,
                            last: 0.0,
                            ..ScoreStats::default()
                        },
                    );
                }
                d.custom = Arc::new(custom);
            }
        }
        let names = [
            kpi::OVERALL_SUCCESS_RATE,
            kpi::AUTONOMY_RATE,
            kpi::HUMAN_INTERVENTION_RATE,
            kpi::COMPLIANCE_SCORE,
            kpi::MEAN_RECOVERY_TIME,
            kpi::P50_RECOVERY_TIME,
            kpi::P95_RECOVERY_TIME,
            "queue_depth",
            "not_reported",
        ];
        let mut seen = 0;
        for name in names {
            let at = KpiAt::of(name);
            let (mut n, mut sum, mut sum_sq) = (0.0, 0.0, 0.0);
            let mut pooled = Pooled::default();
            for d in cycles.iter().flat_map(|c| c.domains.values()) {
                let (dn, ds, dss) = by_name(name, d);
                n += dn;
                sum += ds;
                sum_sq += dss;
                pooled.add_at(at, d);
            }
            assert_eq!(
                (
                    pooled.n.to_bits(),
                    pooled.sum.to_bits(),
                    pooled.sum_sq.to_bits()
                ),
                (n.to_bits(), sum.to_bits(), sum_sq.to_bits()),
                "{name}"
            );
            seen += usize::from(n > 0.0);
        }
        // every KPI but the one never reported had data
        assert_eq!(seen, names.len() - 1);
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
            Arc::make_mut(&mut c).end = Timestamp(n as i64 * 300_000);
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

    /// Random cycles of domains a (the target), b, c and d, with every kind of KPI.
    fn random_cycles(
        rng: &mut rand_chacha::ChaCha8Rng,
        first: u64,
        n: u64,
    ) -> Vec<Arc<CycleSummary>> {
        use rand::Rng;
        (first..first + n)
            .map(|c| {
                let present: Vec<&str> = ["a", "b", "c", "d"]
                    .into_iter()
                    .filter(|_| rng.random_bool(0.9))
                    .collect();
                let domains = present
                    .into_iter()
                    .map(|d| {
                        let mut w = DomainWindow::default();
                        for _ in 0..rng.random_range(0..30) {
                            let ok = rng.random_bool(0.85);
                            w.success.observe(ok);
                            w.recovery.observe(rng.random_range(1.0..200.0));
                            w.autonomy.observe(rng.random_bool(0.7));
                            w.intervention.observe(rng.random_bool(0.1));
                            w.compliance.observe(rng.random_range(80.0..100.0));
                        }
                        (d.to_string(), DomainCycle::of(&w))
                    })
                    .collect();
                Arc::new(CycleSummary {
                    cycle: c,
                    start: Timestamp(c as i64 * 300_000),
                    end: Timestamp(c as i64 * 300_000 + 300_000),
                    domains,
                })
            })
            .collect()
    }

    fn same(a: &Option<Observations>, b: &Option<Observations>) -> bool {
        let bits = |o: &[CycleObservation]| -> Vec<(u64, u64)> {
            o.iter()
                .map(|x| (x.value.to_bits(), x.weight.to_bits()))
                .collect()
        };
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                bits(&a.pre) == bits(&b.pre)
                    && bits(&a.post) == bits(&b.post)
                    && a.floor_variance.to_bits() == b.floor_variance.to_bits()
                    && a.pre_level.to_bits() == b.pre_level.to_bits()
            }
            _ => false,
        }
    }

    #[test]
    fn kept_pre_window_statistics_give_what_a_look_computes_from_scratch() {
        use rand::{Rng, SeedableRng};
        let kpis = [
            kpi::OVERALL_SUCCESS_RATE,
            kpi::MEAN_RECOVERY_TIME,
            kpi::AUTONOMY_RATE,
            kpi::HUMAN_INTERVENTION_RATE,
            kpi::COMPLIANCE_SCORE,
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        for case in 0..40 {
            let pre_len = rng.random_range(0..20);
            let pre = random_cycles(&mut rng, 1, pre_len);
            let post = random_cycles(&mut rng, 100, 15);
            let mut controls = vec![Control::new("b"), Control::new("c"), Control::new("d")];
            if case % 3 == 0 {
                controls.clear();
            }
            let mut memo = PreStats::default();
            for look in 1..=post.len() {
                // a control stops being one midway: its cycles after that are not used
                if look == 8 && !controls.is_empty() {
                    controls[1].until = Some(post[6].end);
                }
                // another is found to have changed before post cycles already folded: those
                // are folded again without it
                if look == 11 && !controls.is_empty() {
                    controls[2].until = Some(post[3].end);
                }
                let kept = Aligned::with_memo("a", &controls, &pre, &post[..look], memo);
                let fresh = Aligned::new("a", &controls, &pre, &post[..look]);
                for k in kpis {
                    for controlled in [true, false] {
                        for post_len in [look, look.saturating_sub(1)] {
                            let a = kept.observations(k, controlled, post_len);
                            let b = fresh.observations(k, controlled, post_len);
                            assert!(same(&a, &b), "case {case} look {look} {k} {controlled}");
                            // and the formula written out once more, without any cache
                            let c = Aligned::new("a", &controls, &pre, &post[..look])
                                .observations(k, controlled, post_len);
                            assert!(same(&b, &c));
                        }
                    }
                }
                memo = kept.into_memo();
                // with controls, each KPI with and without them
                let per_kpi = if controls.is_empty() { 1 } else { 2 };
                assert_eq!(memo.len(), kpis.len() * per_kpi, "case {case} look {look}");
            }
        }
    }

    #[test]
    fn pre_window_statistics_of_another_window_are_not_reused() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let pre = random_cycles(&mut rng, 1, 10);
        let post = random_cycles(&mut rng, 20, 4);
        let controls = [Control::new("b")];
        let first = Aligned::new("a", &controls, &pre, &post);
        first.observations(kpi::OVERALL_SUCCESS_RATE, true, post.len());
        let memo = first.into_memo();
        assert_eq!(memo.len(), 1);
        // a control that changed within the pre window changes the pre part
        let early = [Control {
            domain: "b".into(),
            until: Some(pre[4].end),
        }];
        // another target, other controls, a shorter pre window: computed afresh
        for (target, controls, pre) in [
            ("c", &controls[..], &pre[..]),
            ("a", &[Control::new("d")][..], &pre[..]),
            ("a", &controls[..], &pre[1..]),
            ("a", &early[..], &pre[..]),
        ] {
            let kept = Aligned::with_memo(target, controls, pre, &post, memo.clone());
            assert!(kept.into_memo().is_empty());
            let kept = Aligned::with_memo(target, controls, pre, &post, memo.clone());
            let fresh = Aligned::new(target, controls, pre, &post);
            assert!(same(
                &kept.observations(kpi::OVERALL_SUCCESS_RATE, true, post.len()),
                &fresh.observations(kpi::OVERALL_SUCCESS_RATE, true, post.len())
            ));
        }
    }
}
