//! The verification layer: did an applied directive really improve its KPI without breaking
//! the others? Pre vs post windows, real statistics, guardrails with a multiple-testing
//! correction (see `docs/VERIFICATION.md`).

pub mod experiment;
pub mod rules;
pub mod sequential;
pub mod series;
pub mod stats;

use crate::goal::Goal;
use crate::kpi::{Direction, DomainWindow, KpiKind, builtin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which verifier decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Anytime-valid sequential statistics with guardrails, examined every cycle (the
    /// default).
    #[default]
    Metaloop,
    /// One look once the post window has `min_samples` observations (the method before the
    /// sequential one).
    Fixed,
    /// The seed's rule, "success if the number went up" after one cycle: for comparison only.
    Naive,
    /// Argo Rollouts' and Flagger's threshold count, one measurement per cycle: for comparison
    /// only.
    ThresholdCount,
    /// Kayenta's Mann–Whitney judge of the per-cycle series, every cycle: for comparison only.
    Kayenta,
}

impl Method {
    /// Every method, in a stable order.
    pub const ALL: [Method; 5] = [
        Method::Metaloop,
        Method::Fixed,
        Method::Naive,
        Method::ThresholdCount,
        Method::Kayenta,
    ];

    /// True for the methods that look once at a merged window (no per-cycle control).
    pub fn is_one_look(self) -> bool {
        matches!(self, Method::Fixed | Method::Naive)
    }

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Metaloop => "metaloop",
            Method::Fixed => "fixed",
            Method::Naive => "naive",
            Method::ThresholdCount => "threshold_count",
            Method::Kayenta => "kayenta",
        }
    }
}

/// How verification keeps the daily cycle out of a before/after comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Seasonality {
    /// Compare against the other domains over the same cycles (a difference in differences);
    /// without a control domain that had no change of its own, no improvement is credited.
    #[default]
    ControlDomains,
    /// The spine has no daily cycle: compare before and after directly.
    None,
}

/// A verification verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Verified,
    NoEffect,
    Degraded,
    Inconclusive,
}

impl Outcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::NoEffect => "no_effect",
            Outcome::Degraded => "degraded",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// Verification settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    pub method: Method,
    /// One-sided significance level to call the target KPI improved.
    pub alpha: f64,
    /// One-sided significance level to call the target KPI degraded.
    pub degrade_alpha: f64,
    /// Family-wise significance level of the guardrail tests (Holm–Bonferroni).
    pub guardrail_alpha: f64,
    /// Observations of the target KPI needed in the post window.
    pub min_samples: u64,
    /// Closed cycles needed in the post window.
    pub min_cycles: u32,
    /// Cycles after which a verification without enough data is `inconclusive`.
    pub max_cycles: u32,
    /// Closed cycles merged into the pre window (fewer right after a change).
    pub pre_cycles: usize,
    /// Cycles after a change (an applied directive, a health change) that belong to neither
    /// window: the spine is still settling, so they describe neither before nor after.
    pub settle_cycles: u32,
    /// Observations a guardrail KPI needs in each window to be tested.
    pub guardrail_min_samples: u64,
    /// Degradation of a rate KPI tolerated when a directive declares none (absolute).
    pub default_rate_tolerance: f64,
    /// Degradation of a duration KPI tolerated when a directive declares none (relative).
    pub default_duration_tolerance: f64,
    /// Degradation of a score KPI tolerated when a directive declares none (points).
    pub default_score_tolerance: f64,
    /// Sequential method: cycles after which a verification still undecided is
    /// `inconclusive`.
    pub max_horizon_cycles: u32,
    /// Cycles a holdout experiment may run before it ends `inconclusive` (and is abandoned):
    /// longer than a before/after verification, since only its slice is exposed and harm
    /// still stops it at any look (default 2016, a week at 5 minutes).
    pub experiment_horizon_cycles: u32,
    /// Observations each arm of an experiment needs of a KPI (and cycles with both arms
    /// observed, at least 2) before that KPI is judged (default 30).
    pub experiment_min_arm_samples: u64,
    /// Sequential method: the longest pre window, cycles (it stops earlier at the domain's
    /// last change).
    pub pre_max_cycles: usize,
    /// Sequential method: the fewest pre cycles accepted when the pre window is shortened so
    /// that other domains can serve as controls.
    pub min_pre_cycles: usize,
    /// Methods other than `fixed`: observations of the target KPI the baseline (cycles since
    /// the domain's last change) needs before a policy may change the domain.
    pub min_baseline_samples: u64,
    /// Until a verification has this many post observations of its target (or reaches its
    /// horizon), policies change neither its domain nor its control domains, so that its
    /// evidence is not confounded (and harm can be told from the time of day).
    pub control_hold_samples: u64,
    /// Sequential method: how the daily cycle is kept out of the comparison.
    pub seasonality: Seasonality,
    /// Sequential method: the most control domains one verification compares against — of
    /// the eligible domains, those with the most observations of the target KPI over the pre
    /// window (ties by name). Beyond a few, more controls barely narrow the comparison,
    /// while each one costs every cycle and holds its domain still.
    pub max_controls: usize,
    /// Sequential method: the size of shift of a rate the test is tuned to find (mixture scale).
    pub mixture_scale_rate: f64,
    /// Sequential method: the same for durations (relative).
    pub mixture_scale_duration: f64,
    /// Sequential method: the same for scores (points; at least 5 % of the pre level).
    pub mixture_scale_score: f64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            method: Method::Metaloop,
            alpha: 0.01,
            degrade_alpha: 0.05,
            guardrail_alpha: 0.05,
            min_samples: 1000,
            min_cycles: 3,
            max_cycles: 12,
            pre_cycles: 12,
            settle_cycles: 1,
            guardrail_min_samples: 100,
            default_rate_tolerance: 0.01,
            default_duration_tolerance: 0.05,
            default_score_tolerance: 1.0,
            max_horizon_cycles: 576,
            experiment_horizon_cycles: 2016,
            experiment_min_arm_samples: 30,
            pre_max_cycles: 576,
            min_pre_cycles: 3,
            min_baseline_samples: 2000,
            control_hold_samples: 2000,
            seasonality: Seasonality::ControlDomains,
            max_controls: 16,
            mixture_scale_rate: 0.03,
            mixture_scale_duration: 0.10,
            mixture_scale_score: 1.0,
        }
    }
}

impl VerifyConfig {
    /// Checks the settings.
    /// The degradation of `kpi` a directive tolerates: what it declared, else the default
    /// for the KPI's scale.
    pub fn tolerance(&self, kpi: &str, side_effects: &BTreeMap<String, f64>) -> f64 {
        side_effects
            .get(kpi)
            .copied()
            .unwrap_or(match series::scale_of(kpi) {
                series::Scale::Rate => self.default_rate_tolerance,
                series::Scale::LogDuration => self.default_duration_tolerance,
                series::Scale::Score => self.default_score_tolerance,
            })
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, a) in [
            ("alpha", self.alpha),
            ("degrade_alpha", self.degrade_alpha),
            ("guardrail_alpha", self.guardrail_alpha),
        ] {
            if !(a > 0.0 && a < 0.5) {
                return Err(format!(
                    "verification.{name} must be within (0, 0.5), got {a}"
                ));
            }
        }
        if self.min_cycles == 0 || self.max_cycles < self.min_cycles {
            return Err(format!(
                "verification needs 1 <= min_cycles <= max_cycles, got {} and {}",
                self.min_cycles, self.max_cycles
            ));
        }
        if self.pre_cycles == 0 {
            return Err("verification.pre_cycles must be at least 1".into());
        }
        if self.experiment_horizon_cycles < self.min_cycles {
            return Err(format!(
                "verification.experiment_horizon_cycles must be at least min_cycles ({}), got {}",
                self.min_cycles, self.experiment_horizon_cycles
            ));
        }
        if self.max_horizon_cycles < self.min_cycles {
            return Err(format!(
                "verification.max_horizon_cycles must be at least min_cycles ({}), got {}",
                self.min_cycles, self.max_horizon_cycles
            ));
        }
        if self.pre_max_cycles == 0 || self.min_pre_cycles == 0 {
            return Err("verification.pre_max_cycles and min_pre_cycles must be at least 1".into());
        }
        if self.max_controls == 0 {
            return Err(
                "verification.max_controls must be at least 1 (set seasonality = \"none\" to verify without control domains)".into(),
            );
        }
        for (name, v) in [
            ("mixture_scale_rate", self.mixture_scale_rate),
            ("mixture_scale_duration", self.mixture_scale_duration),
            ("mixture_scale_score", self.mixture_scale_score),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("verification.{name} must be positive, got {v}"));
            }
        }
        Ok(())
    }
}

/// One statistical test of one KPI, pre vs post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiTest {
    pub kpi: String,
    /// `two_proportion`, `mann_whitney`, `welch` or `naive`.
    pub test: String,
    pub n_pre: u64,
    pub n_post: u64,
    pub pre: f64,
    pub post: f64,
    /// The test statistic (z or t), when there is one.
    pub statistic: Option<f64>,
    /// One-sided p-value of the alternative this test looks for (improvement for the target,
    /// degradation beyond tolerance for a guardrail).
    pub p_value: Option<f64>,
    /// One-sided p-value for degradation of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_worse: Option<f64>,
    /// Holm-adjusted p-value (guardrails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    /// Change signed so that positive is better: difference of proportions, Hodges–Lehmann
    /// shift of durations, or difference of means.
    pub effect: f64,
    /// Tolerated degradation (guardrails).
    pub tolerance: f64,
    pub failed: bool,
    pub note: String,
}

/// The verdict on one directive, with everything used to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub method: Method,
    pub outcome: Outcome,
    pub target: KpiTest,
    pub guardrails: Vec<KpiTest>,
    pub alpha: f64,
    pub degrade_alpha: f64,
    pub guardrail_alpha: f64,
    pub min_samples: u64,
    pub post_cycles: u32,
    pub reason: String,
    /// How the comparison was kept apart from the time of day (sequential method).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub adjustment: String,
}

impl Verdict {
    /// The target's one-sided improvement p-value.
    pub fn p_value(&self) -> Option<f64> {
        self.target.p_value
    }

    /// Where the point estimates of an undecided verdict lean: why the change looks worse
    /// than what it replaced — its target's estimated effect below zero, or a guardrail's
    /// estimated degradation beyond its tolerance (relative for durations), beyond rounding —
    /// or `None`.
    /// Not a test: what is left to go on at the horizon, when no test could decide.
    pub fn leans_worse(&self) -> Option<String> {
        // below zero beyond rounding: a KPI that did not move at all leans nowhere
        let worse =
            |effect: f64, limit: f64, level: f64| effect < -limit - 1e-9 * level.abs().max(1.0);
        let t = &self.target;
        if t.n_pre > 0 && t.n_post > 0 && worse(t.effect, 0.0, t.pre) {
            return Some(format!(
                "{} estimated {} worse than before",
                t.kpi,
                round4(-t.effect)
            ));
        }
        self.guardrails.iter().find_map(|g| {
            let limit = match series::scale_of(&g.kpi) {
                series::Scale::LogDuration => g.tolerance * g.pre.abs(),
                _ => g.tolerance,
            };
            (g.n_pre > 0 && g.n_post > 0 && worse(g.effect, limit, g.pre)).then(|| {
                format!(
                    "guardrail {} estimated {} worse, beyond its tolerance of {}",
                    g.kpi,
                    round4(-g.effect),
                    round4(limit)
                )
            })
        })
    }
}

/// `x` with at most four decimals, for reasons humans read.
fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn kind_of(kpi: &str) -> KpiKind {
    builtin(kpi).map_or(KpiKind::Score, |(_, k)| k)
}

impl KpiTest {
    /// A test with no data yet.
    pub fn empty(kpi: &str) -> KpiTest {
        KpiTest {
            kpi: kpi.to_string(),
            test: "none".into(),
            n_pre: 0,
            n_post: 0,
            pre: 0.0,
            post: 0.0,
            statistic: None,
            p_value: None,
            p_worse: None,
            p_adjusted: None,
            effect: 0.0,
            tolerance: 0.0,
            failed: false,
            note: String::new(),
        }
    }
}

/// Adjusts the guardrails' p-values for the number of tests (Holm–Bonferroni), marks those
/// below `alpha` failed, and returns their KPIs.
pub(crate) fn judge_guardrails(guardrails: &mut [KpiTest], alpha: f64) -> Vec<String> {
    let raw: Vec<f64> = guardrails
        .iter()
        .map(|t| t.p_value.unwrap_or(1.0))
        .collect();
    for (t, p) in guardrails.iter_mut().zip(stats::holm_adjust(&raw)) {
        t.p_adjusted = Some(p);
        t.failed = p < alpha;
        if t.note.is_empty() {
            t.note = if t.failed {
                "degraded beyond its tolerance".into()
            } else {
                "within tolerance".into()
            };
        }
    }
    guardrails
        .iter()
        .filter(|t| t.failed)
        .map(|t| t.kpi.clone())
        .collect()
}

/// The first rules of every statistical verdict, in order: the target credibly worse
/// (`p_worse < degrade_alpha`), then a failed guardrail. `None` when neither applies.
pub(crate) fn harm_first(
    cfg: &VerifyConfig,
    target: &mut KpiTest,
    p_worse: f64,
    failed_guardrails: &[String],
    worse_note: &str,
    p_name: &str,
) -> Option<(Outcome, String)> {
    if p_worse < cfg.degrade_alpha {
        target.failed = true;
        target.note = worse_note.into();
        return Some((
            Outcome::Degraded,
            format!(
                "{} got worse ({p_name} = {p_worse:.4} < {})",
                target.kpi, cfg.degrade_alpha
            ),
        ));
    }
    if !failed_guardrails.is_empty() {
        target.note = "guardrail failed".into();
        return Some((
            Outcome::Degraded,
            format!("guardrail failed: {}", failed_guardrails.join(", ")),
        ));
    }
    None
}

pub(crate) fn direction_of(kpi: &str, goals: &[Goal]) -> Direction {
    builtin(kpi)
        .map(|(d, _)| d)
        .or_else(|| goals.iter().find(|g| g.kpi == kpi).map(|g| g.direction))
        .unwrap_or(Direction::HigherIsBetter)
}

/// Tests `kpi` for a change beyond `tolerance` in the worse direction (`worse = true`) or
/// for any improvement (`worse = false`). `None` when either window lacks data.
fn test_kpi(
    kpi: &str,
    dir: Direction,
    pre: &DomainWindow,
    post: &DomainWindow,
    tolerance: f64,
    worse: bool,
) -> Option<KpiTest> {
    let (n_pre, n_post) = (pre.samples(kpi), post.samples(kpi));
    let (pv, qv) = (pre.value(kpi)?, post.value(kpi)?);
    let higher = dir == Direction::HigherIsBetter;
    let mut t = KpiTest {
        kpi: kpi.to_string(),
        test: String::new(),
        n_pre,
        n_post,
        pre: pv,
        post: qv,
        statistic: None,
        p_value: None,
        p_worse: None,
        p_adjusted: None,
        effect: dir.better(qv - pv),
        tolerance,
        failed: false,
        note: String::new(),
    };
    match kind_of(kpi) {
        KpiKind::Rate => {
            let (a, b) = (pre.rate_counts(kpi)?, post.rate_counts(kpi)?);
            t.test = "two_proportion".into();
            if worse {
                // H1: post worse than pre by more than the tolerance
                let margin = if higher { -tolerance } else { tolerance };
                let r = stats::two_proportion_margin(
                    a.successes,
                    a.trials,
                    b.successes,
                    b.trials,
                    margin,
                )?;
                t.statistic = Some(r.z);
                t.p_value = Some(if higher { r.p_less } else { r.p_greater });
            } else {
                let r = stats::two_proportion(a.successes, a.trials, b.successes, b.trials)?;
                t.statistic = Some(r.z);
                t.p_value = Some(if higher { r.p_greater } else { r.p_less });
                t.p_worse = Some(if higher { r.p_less } else { r.p_greater });
            }
        }
        KpiKind::Duration => {
            t.test = "mann_whitney".into();
            let a = pre.recovery.weighted_values();
            // allow `tolerance` (relative) of slowdown before calling it worse
            let scale = if worse && !higher {
                1.0 / (1.0 + tolerance)
            } else {
                1.0
            };
            let b: Vec<(f64, u64)> = post
                .recovery
                .weighted_values()
                .into_iter()
                .map(|(v, n)| (v * scale, n))
                .collect();
            let r = stats::mann_whitney(&a, &b)?;
            t.statistic = Some(r.z);
            let hl = stats::hodges_lehmann(&a, &post.recovery.weighted_values()).unwrap_or(qv - pv);
            t.effect = dir.better(hl);
            let (p_up, p_down) = (r.p_greater, r.p_less);
            if worse {
                t.p_value = Some(if higher { p_down } else { p_up });
            } else {
                t.p_value = Some(if higher { p_up } else { p_down });
                t.p_worse = Some(if higher { p_down } else { p_up });
            }
        }
        KpiKind::Score => {
            let (a, b) = (pre.score_stats(kpi)?, post.score_stats(kpi)?);
            t.test = "welch".into();
            let margin = match (worse, higher) {
                (true, true) => -tolerance,
                (true, false) => tolerance,
                _ => 0.0,
            };
            let r = stats::welch(
                a.mean()?,
                a.variance()?,
                a.count,
                b.mean()?,
                b.variance()?,
                b.count,
                margin,
            )?;
            t.statistic = Some(r.t);
            if worse {
                t.p_value = Some(if higher { r.p_less } else { r.p_greater });
            } else {
                t.p_value = Some(if higher { r.p_greater } else { r.p_less });
                t.p_worse = Some(if higher { r.p_less } else { r.p_greater });
            }
        }
    }
    // infinite statistics (zero variance on one side) are recorded as absent
    t.statistic = t.statistic.filter(|z| z.is_finite());
    Some(t)
}

/// Decides a verification, or `None` to keep waiting. `side_effects` are the tolerances the
/// directive declared for other KPIs.
pub fn evaluate(
    cfg: &VerifyConfig,
    target_kpi: &str,
    side_effects: &BTreeMap<String, f64>,
    goals: &[Goal],
    pre: &DomainWindow,
    post: &DomainWindow,
    post_cycles: u32,
) -> Option<Verdict> {
    let dir = direction_of(target_kpi, goals);
    let verdict = |outcome, target: KpiTest, guardrails, reason: String| Verdict {
        method: cfg.method,
        outcome,
        target,
        guardrails,
        alpha: cfg.alpha,
        degrade_alpha: cfg.degrade_alpha,
        guardrail_alpha: cfg.guardrail_alpha,
        min_samples: cfg.min_samples,
        post_cycles,
        reason,
        adjustment: String::new(),
    };
    let empty = |note: &str| KpiTest {
        n_pre: pre.samples(target_kpi),
        n_post: post.samples(target_kpi),
        pre: pre.value(target_kpi).unwrap_or(f64::NAN),
        post: post.value(target_kpi).unwrap_or(f64::NAN),
        note: note.into(),
        ..KpiTest::empty(target_kpi)
    };

    if cfg.method == Method::Naive {
        if post_cycles < 1 {
            return None;
        }
        let (Some(a), Some(b)) = (pre.value(target_kpi), post.value(target_kpi)) else {
            let mut t = empty("no data");
            t.pre = pre.value(target_kpi).unwrap_or(0.0);
            t.post = post.value(target_kpi).unwrap_or(0.0);
            return Some(verdict(
                Outcome::Inconclusive,
                t,
                vec![],
                "no data in a window".into(),
            ));
        };
        let mut t = empty("the seed's rule: success if the number went up");
        t.test = "naive".into();
        t.effect = dir.better(b - a);
        let outcome = if t.effect > 0.0 {
            Outcome::Verified
        } else {
            Outcome::Degraded
        };
        return Some(verdict(
            outcome,
            t,
            vec![],
            format!("{target_kpi} moved from {a:.4} to {b:.4}"),
        ));
    }

    let needed = if kind_of(target_kpi) == KpiKind::Score {
        3
    } else {
        cfg.min_samples
    };
    let enough = post.samples(target_kpi) >= needed && post_cycles >= cfg.min_cycles;
    if !enough {
        if post_cycles >= cfg.max_cycles {
            let mut t = empty("not enough data before the window ran out");
            if t.pre.is_nan() {
                t.pre = 0.0;
            }
            if t.post.is_nan() {
                t.post = 0.0;
            }
            let reason = format!(
                "{} of {} observations of {target_kpi} after {post_cycles} cycles",
                post.samples(target_kpi),
                needed
            );
            return Some(verdict(Outcome::Inconclusive, t, vec![], reason));
        }
        return None;
    }
    let Some(mut target) = test_kpi(target_kpi, dir, pre, post, 0.0, false) else {
        let mut t = empty("no data in the pre window");
        t.pre = 0.0;
        if t.post.is_nan() {
            t.post = 0.0;
        }
        return Some(verdict(
            Outcome::Inconclusive,
            t,
            vec![],
            "no pre-window data to compare with".into(),
        ));
    };

    // guardrails: every other goal KPI, tolerance from the declared side effects
    let mut guardrails = Vec::new();
    for g in goals {
        if g.kpi == target_kpi || builtin(&g.kpi).is_none() {
            continue;
        }
        let kind = kind_of(&g.kpi);
        let min = if kind == KpiKind::Score {
            5
        } else {
            cfg.guardrail_min_samples
        };
        if pre.samples(&g.kpi) < min || post.samples(&g.kpi) < min {
            continue;
        }
        // a change too small to matter is no guardrail failure, however significant
        let default_tol = match kind {
            KpiKind::Rate => cfg.default_rate_tolerance,
            KpiKind::Duration => cfg.default_duration_tolerance,
            KpiKind::Score => cfg.default_score_tolerance,
        };
        let tol = side_effects.get(&g.kpi).copied().unwrap_or(default_tol);
        let Some(mut t) = test_kpi(&g.kpi, g.direction, pre, post, tol, true) else {
            continue;
        };
        // a KPI that met its goal and now misses it fails without tolerance
        if g.met_by(t.pre)
            && !g.met_by(t.post)
            && let Some(strict) = test_kpi(&g.kpi, g.direction, pre, post, 0.0, true)
            && strict.p_value < t.p_value
        {
            t.p_value = strict.p_value;
            t.note = format!("moved from meeting its goal ({}) to missing it", g.target);
        }
        guardrails.push(t);
    }
    let failed = judge_guardrails(&mut guardrails, cfg.guardrail_alpha);

    let p_better = target.p_value.unwrap_or(1.0);
    let p_worse = target.p_worse.unwrap_or(1.0);
    let (outcome, reason) = if let Some(harm) = harm_first(
        cfg,
        &mut target,
        p_worse,
        &failed,
        "significantly worse",
        "p",
    ) {
        harm
    } else if p_better < cfg.alpha {
        target.note = "significantly better".into();
        (
            Outcome::Verified,
            format!("{target_kpi} improved (p = {p_better:.4} < {})", cfg.alpha),
        )
    } else {
        target.note = "no significant change".into();
        (
            Outcome::NoEffect,
            format!(
                "no significant improvement of {target_kpi} (p = {p_better:.4} >= {})",
                cfg.alpha
            ),
        )
    };
    Some(verdict(outcome, target, guardrails, reason))
}

/// Everything a verification look can use.
pub struct VerifyInput<'a> {
    pub target_domain: &'a str,
    pub target_kpi: &'a str,
    /// Tolerances the directive declared for other KPIs.
    pub side_effects: &'a BTreeMap<String, f64>,
    /// The least improvement worth keeping, when declared.
    pub min_effect: Option<f64>,
    pub goals: &'a [Goal],
    /// Merged windows (the one-look and naive methods).
    pub pre: &'a DomainWindow,
    pub post: &'a DomainWindow,
    /// Per-cycle summaries (the sequential method and the cycle-by-cycle rules).
    pub pre_series: &'a [std::sync::Arc<series::CycleSummary>],
    pub post_series: &'a [std::sync::Arc<series::CycleSummary>],
    /// Control domains for the sequential method.
    pub controls: &'a [series::Control],
    pub post_cycles: u32,
}

/// Decides a verification with the configured method, or `None` to keep waiting.
pub fn decide(cfg: &VerifyConfig, input: &VerifyInput<'_>) -> Option<Verdict> {
    match cfg.method {
        Method::Metaloop => sequential::evaluate(cfg, input),
        Method::Fixed | Method::Naive => evaluate(
            cfg,
            input.target_kpi,
            input.side_effects,
            input.goals,
            input.pre,
            input.post,
            input.post_cycles,
        ),
        Method::ThresholdCount | Method::Kayenta => judge_by_rule(cfg, input),
    }
}

/// [`decide`], reusing the pre-window statistics of the verification's earlier looks (the
/// sequential method; the other methods ignore them).
pub fn decide_with(
    cfg: &VerifyConfig,
    input: &VerifyInput<'_>,
    memo: &mut series::PreStats,
) -> Option<Verdict> {
    match cfg.method {
        Method::Metaloop => sequential::evaluate_with(cfg, input, memo),
        _ => decide(cfg, input),
    }
}

/// The anchors' rules: one measurement per cycle, judged at every look; the analysis lasts
/// `max_cycles` cycles, as a canary analysis lasts its configured duration.
fn judge_by_rule(cfg: &VerifyConfig, input: &VerifyInput<'_>) -> Option<Verdict> {
    if input.post_cycles == 0 {
        return None;
    }
    let kpi = input.target_kpi;
    let dir = direction_of(kpi, input.goals);
    let higher = dir == Direction::HigherIsBetter;
    let pre = series::values(kpi, input.target_domain, input.pre_series);
    let post = series::values(kpi, input.target_domain, input.post_series);
    let decision = if post.is_empty() {
        rules::RuleDecision::Wait
    } else if cfg.method == Method::ThresholdCount {
        rules::argo::ThresholdCount::default().judge(&pre, &post, higher)
    } else {
        rules::kayenta::KayentaJudge::default().judge(&pre, &post, higher)
    };
    let end = input.post_cycles >= cfg.max_cycles;
    let outcome = match decision {
        rules::RuleDecision::Fail => Outcome::Degraded,
        rules::RuleDecision::Pass => Outcome::Verified,
        // Kayenta promotes a canary that is still passing when its analysis ends
        rules::RuleDecision::Wait if end && cfg.method == Method::Kayenta && !post.is_empty() => {
            Outcome::Verified
        }
        rules::RuleDecision::Wait if end => Outcome::Inconclusive,
        rules::RuleDecision::Wait => return None,
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mut target = KpiTest::empty(kpi);
    target.test = cfg.method.as_str().into();
    target.n_pre = pre.len() as u64;
    target.n_post = post.len() as u64;
    target.pre = mean(&pre);
    target.post = mean(&post);
    target.effect = dir.better(target.post - target.pre);
    target.failed = outcome == Outcome::Degraded;
    target.note = format!(
        "per-cycle measurements: {} before, {} after",
        pre.len(),
        post.len()
    );
    Some(Verdict {
        method: cfg.method,
        outcome,
        reason: format!(
            "{} rule: {} after {} cycles",
            cfg.method.as_str(),
            outcome.as_str(),
            input.post_cycles
        ),
        target,
        guardrails: vec![],
        alpha: cfg.alpha,
        degrade_alpha: cfg.degrade_alpha,
        guardrail_alpha: cfg.guardrail_alpha,
        min_samples: 0,
        post_cycles: input.post_cycles,
        adjustment: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kpi(kpi: &str, pre: f64, effect: f64, tolerance: f64, n: u64) -> KpiTest {
        KpiTest {
            pre,
            effect,
            tolerance,
            n_pre: n,
            n_post: n,
            ..KpiTest::empty(kpi)
        }
    }

    fn inconclusive(target: KpiTest, guardrails: Vec<KpiTest>) -> Verdict {
        Verdict {
            method: Method::Metaloop,
            outcome: Outcome::Inconclusive,
            target,
            guardrails,
            alpha: 0.05,
            degrade_alpha: 0.01,
            guardrail_alpha: 0.01,
            min_samples: 0,
            post_cycles: 576,
            reason: String::new(),
            adjustment: String::new(),
        }
    }

    #[test]
    fn a_verdict_leans_worse_on_its_targets_estimate_or_a_guardrail_beyond_tolerance() {
        let rate = "overall_success_rate";
        let secs = "mean_recovery_time_seconds";
        // the target's estimate below zero, however small
        let v = inconclusive(kpi(rate, 0.85, -0.0001, 0.0, 90), vec![]);
        assert_eq!(
            v.leans_worse().as_deref(),
            Some("overall_success_rate estimated 0.0001 worse than before")
        );
        // zero or better: no lean; a test without data on both sides has no estimate
        assert_eq!(
            inconclusive(kpi(rate, 0.85, 0.0, 0.0, 90), vec![]).leans_worse(),
            None
        );
        assert_eq!(
            inconclusive(kpi(rate, 0.85, -0.2, 0.0, 0), vec![]).leans_worse(),
            None
        );
        // a rate guardrail: absolute tolerance (0.01), worse beyond it leans, within does not
        let target = kpi(rate, 0.85, 0.02, 0.0, 90);
        let within = kpi("autonomy_rate", 0.7, -0.0099, 0.01, 90);
        let beyond = kpi("autonomy_rate", 0.7, -0.0101, 0.01, 90);
        assert_eq!(
            inconclusive(target.clone(), vec![within]).leans_worse(),
            None
        );
        assert_eq!(
            inconclusive(target.clone(), vec![beyond])
                .leans_worse()
                .as_deref(),
            Some("guardrail autonomy_rate estimated 0.0101 worse, beyond its tolerance of 0.01")
        );
        // a duration guardrail: the tolerance is relative, 5 % of 40 s is 2 s
        let slower = |s: f64| kpi(secs, 40.0, -s, 0.05, 90);
        assert_eq!(
            inconclusive(target.clone(), vec![slower(1.9)]).leans_worse(),
            None
        );
        assert_eq!(
            inconclusive(target, vec![slower(2.5)])
                .leans_worse()
                .as_deref(),
            Some(
                "guardrail mean_recovery_time_seconds estimated 2.5 worse, beyond its tolerance of 2"
            )
        );
    }
}
