//! Kayenta's canary judge for one metric: NetflixACAJudge with its Mann–Whitney classifier.
//!
//! Kayenta (Spinnaker's automated canary analysis) compares the experiment's (canary's)
//! values of a metric with the control's (baseline's) and labels the metric High, Low, Pass
//! or NoData. Here the control is the KPI's cycles before the change and the experiment its
//! cycles since, and each look re-runs the judge on all cycles since the change, as a
//! Kayenta canary analysis without `lookbackMins` judges "a growing time window" from its
//! start at every interval (`kayenta-standalone-canary-analysis/.../domain/
//! CanaryAnalysisExecutionRequest.java`).
//!
//! # Sources followed (`spinnaker/kayenta`)
//!
//! - `kayenta-judge/src/main/scala/com/netflix/kayenta/judge/NetflixACAJudge.scala`,
//!   `classifyMetric`: builds `MannWhitneyClassifier(tolerance = 0.25, confLevel = 0.98, ...)`;
//!   `effectSize.allowedIncrease` / `allowedDecrease` default to 1.0 for the mean ratio
//!   (0.5 for CLES); `nanStrategy` defaults to remove, `direction` to either, outliers to
//!   keep. NaNs are handled (`handleNaNs`) before the classifier runs.
//! - `.../judge/classifiers/metric/MannWhitneyClassifier.scala`:
//!   - `classify`: no data on either side is NoData (with nanStrategy remove; Pass with
//!     replace); identical sorted samples are Pass; a single distinct value over both
//!     samples is Pass; otherwise `compare`.
//!   - `compare`: High when the direction allows an increase, the interval's lower bound is
//!     above `tolerance * |estimate|` (`calculateBounds`) and the effect size is at least
//!     `allowedIncrease`; Low when the direction allows a decrease, the upper bound is below
//!     `-tolerance * |estimate|` and the effect size is at most `allowedDecrease`. An effect
//!     size that cannot be computed (NaN) is ignored. High is tested first.
//!   - `MannWhitneyUTest`: when both samples are constant, Gaussian noise with standard
//!     deviation `value * 1e-5` is added to each (`addGaussianNoise`) so ranks are defined.
//! - `.../judge/stats/EffectSizes.scala`: `meanRatio(control, experiment)` is
//!   `mean(experiment) / mean(control)`, NaN when either mean is 0; `cles` is
//!   `(2 R1 - m (m + 1)) / (2 n m)` with R1 the experiment's rank sum.
//! - `kayenta-mannwhitney/src/main/scala/com/netflix/kayenta/mannwhitney/MannWhitney.scala`:
//!   `calculateConfidenceInterval` and `wilcoxonDiff` are a port of R's
//!   `wilcox.test(x = experiment, y = control, conf.int = TRUE, exact = FALSE, correct = TRUE)`
//!   (always the normal approximation, whatever the sample sizes): the bounds are the roots
//!   in `mu` of `(dz - sign(dz) / 2) / sigma - z`, where `dz` is the experiment's rank sum
//!   in the pooled sample `{x - mu} ∪ y` (Apache Commons `NaturalRanking`, average ranks)
//!   minus its null mean, `sigma` its tie-corrected standard deviation and
//!   `z = ±qnorm(alpha / 2)`; a bound whose equation has no sign change on
//!   `[min x - max y, max x - min y]` is that end of the range. The estimate is the root
//!   with `z = 0`.
//! - `kayenta-mannwhitney/src/main/java/com/netflix/kayenta/mannwhitney/BrentSolver.java`,
//!   `solve`: R's `zeroin` with absolute tolerance 1e-4, ported line by line below.
//! - `.../judge/scorers/WeightedSumScorer.scala`: with one metric, Pass scores 100 and High
//!   or Low score 0, so a High/Low label fails the canary; critical thresholds
//!   (`criticalIncrease` / `criticalDecrease`) only mark the failure as critical, which
//!   changes nothing when the metric is the only one, so they are not modelled.
//!
//! # Interpretations
//!
//! - Kayenta enforces no minimum number of data points (Spinnaker's best-practices guide only
//!   recommends 50 per metric). With few points the test cannot reach 98 % in either
//!   direction, so each bound falls back to the end of the range of pairwise differences:
//!   one canary value above every baseline value is already High.
//! - Significance is not enough: the interval must also clear a quarter of the estimate,
//!   so a shift whose interval starts close to 0 passes.
//! - The noise Kayenta adds to constant samples is random; here it is deterministic, the
//!   normal quantiles at `(i + 1/2) / n` scaled by `value * 1e-5`. The samples are then
//!   separated by far more than the noise, so the label does not depend on its draw.
//! - When every pooled value ties at an end of the search range (one value on each side,
//!   say), Kayenta's `wilcoxonDiff` throws and the judge labels the metric Error; here that
//!   is NoData. Either way the rule does not fail the change (the scorer counts an Error
//!   metric as no data).
//! - Infinite values are treated like NaN (Kayenta's arithmetic on them is undefined).
//! - The Spinnaker scorer fails a canary whose only metric is NoData; [`KayentaJudge::judge`]
//!   waits instead, because an empty series here means "not measured yet".

use statrs::distribution::{ContinuousCDF, Normal};

use super::RuleDecision;

/// Kayenta's label for one metric, experiment (after the change) against control (before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// No significant difference, or one too small to matter.
    Pass,
    /// The experiment is significantly higher than the control.
    High,
    /// The experiment is significantly lower than the control.
    Low,
    /// One side has no data, or the test cannot be computed.
    NoData,
}

/// Which changes the classifier may report (Kayenta's `canary.direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Only High.
    Increase,
    /// Only Low.
    Decrease,
    /// High or Low (Kayenta's default).
    Either,
}

/// How the size of a change is measured (Kayenta's `canary.effectSize.measure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectSize {
    /// `mean(experiment) / mean(control)`; NaN when either mean is 0 (Kayenta's default).
    MeanRatio,
    /// Common-language effect size: the share of (experiment, control) pairs where the experiment is higher.
    Cles,
}

/// What to do with missing (NaN) values (Kayenta's `canary.nanStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanStrategy {
    /// Drop them; a side left empty is NoData (Kayenta's default).
    Remove,
    /// Replace them with 0; a side left empty is Pass.
    Replace,
}

/// The Mann–Whitney confidence interval for the shift experiment - control, as Kayenta computes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftInterval {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// The location-shift estimate: the root at z = 0, the Hodges–Lehmann median of the
    /// pairwise differences give or take the continuity correction.
    pub estimate: f64,
}

/// NetflixACAJudge's classification of one metric, with its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KayentaJudge {
    /// Two-sided confidence level of the Mann–Whitney interval (NetflixACAJudge: 0.98).
    pub confidence: f64,
    /// The interval must clear `tolerance * |estimate|` (NetflixACAJudge: 0.25).
    pub tolerance: f64,
    /// High also needs an effect size at least this (`effectSize.allowedIncrease`, default 1.0).
    pub allowed_increase: f64,
    /// Low also needs an effect size at most this (`effectSize.allowedDecrease`, default 1.0).
    pub allowed_decrease: f64,
    /// How the effect size is measured.
    pub effect_size: EffectSize,
    /// What to do with NaN values.
    pub nan_strategy: NanStrategy,
}

impl Default for KayentaJudge {
    /// NetflixACAJudge's settings for a metric configured with nothing but its query.
    fn default() -> Self {
        Self {
            confidence: 0.98,
            tolerance: 0.25,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            effect_size: EffectSize::MeanRatio,
            nan_strategy: NanStrategy::Remove,
        }
    }
}

impl KayentaJudge {
    /// The metric's label for experiment `post` against control `pre`, either direction.
    pub fn classify(&self, pre: &[f64], post: &[f64]) -> Classification {
        self.classify_toward(pre, post, Direction::Either)
    }

    /// The metric's label when only changes in `direction` are reported.
    pub fn classify_toward(
        &self,
        pre: &[f64],
        post: &[f64],
        direction: Direction,
    ) -> Classification {
        let control = self.prepare(pre);
        let experiment = self.prepare(post);
        if experiment.is_empty() || control.is_empty() {
            return match self.nan_strategy {
                NanStrategy::Remove => Classification::NoData,
                NanStrategy::Replace => Classification::Pass,
            };
        }
        if sorted(&experiment) == sorted(&control) {
            return Classification::Pass;
        }
        let pooled: Vec<f64> = experiment.iter().chain(&control).copied().collect();
        if distinct_count(&pooled) == 1 {
            return Classification::Pass;
        }
        self.compare(&experiment, &control, direction)
    }

    /// Fail when Kayenta labels the change in the bad direction (Low when higher is better,
    /// High otherwise), configured to report only that direction; Wait otherwise.
    pub fn judge(&self, pre: &[f64], post: &[f64], higher_is_better: bool) -> RuleDecision {
        let (direction, bad) = if higher_is_better {
            (Direction::Decrease, Classification::Low)
        } else {
            (Direction::Increase, Classification::High)
        };
        if self.classify_toward(pre, post, direction) == bad {
            RuleDecision::Fail
        } else {
            RuleDecision::Wait
        }
    }

    /// The values after Kayenta's NaN handling (infinite values count as NaN).
    fn prepare(&self, values: &[f64]) -> Vec<f64> {
        match self.nan_strategy {
            NanStrategy::Remove => values.iter().copied().filter(|v| v.is_finite()).collect(),
            NanStrategy::Replace => values
                .iter()
                .map(|&v| if v.is_finite() { v } else { 0.0 })
                .collect(),
        }
    }

    /// MannWhitneyClassifier.compare: the interval against the bounds, then the effect size.
    fn compare(&self, experiment: &[f64], control: &[f64], direction: Direction) -> Classification {
        let constant = distinct_count(experiment) == 1 && distinct_count(control) == 1;
        let (experiment, control) = if constant {
            (add_noise(experiment), add_noise(control))
        } else {
            (experiment.to_vec(), control.to_vec())
        };
        let Some(interval) = shift_interval(&experiment, &control, self.confidence) else {
            return Classification::NoData;
        };
        let effect = match self.effect_size {
            EffectSize::MeanRatio => mean_ratio(&control, &experiment),
            EffectSize::Cles => cles(&control, &experiment),
        };
        let bound = self.tolerance * interval.estimate.abs();
        let may_increase = matches!(direction, Direction::Increase | Direction::Either);
        let may_decrease = matches!(direction, Direction::Decrease | Direction::Either);
        let is_high = may_increase
            && interval.lower > bound
            && (effect.is_nan() || effect >= self.allowed_increase);
        let is_low = may_decrease
            && interval.upper < -bound
            && (effect.is_nan() || effect <= self.allowed_decrease);
        if is_high {
            Classification::High
        } else if is_low {
            Classification::Low
        } else {
            Classification::Pass
        }
    }
}

/// Kayenta's Mann–Whitney interval for the shift experiment - control at a two-sided confidence level.
///
/// A port of `MannWhitney.calculateConfidenceInterval` (R's asymptotic `wilcox.test`
/// interval). `None` if a sample is empty or not finite, `confidence` is not in (0, 1),
/// or every pooled value ties at an end of the search range (where Kayenta throws).
pub fn shift_interval(
    experiment: &[f64],
    control: &[f64],
    confidence: f64,
) -> Option<ShiftInterval> {
    if experiment.is_empty() || control.is_empty() || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    if experiment.iter().chain(control).any(|v| !v.is_finite()) {
        return None;
    }
    let (x, y) = (experiment, control);
    let alpha = 1.0 - confidence;
    let mu_min = min(x) - max(y);
    let mu_max = max(x) - min(y);
    let root = |zq: f64| -> Option<f64> {
        let f_lower = wilcoxon_diff(mu_min, zq, x, y)?;
        let f_upper = wilcoxon_diff(mu_max, zq, x, y)?;
        if f_lower <= 0.0 {
            Some(mu_min)
        } else if f_upper >= 0.0 {
            Some(mu_max)
        } else {
            brent_solve(mu_min, mu_max, f_lower, f_upper, |mu| {
                wilcoxon_diff(mu, zq, x, y)
            })
        }
    };
    // qnorm(alpha / 2) is negative: the lower bound solves for +|z|, the upper for -|z|.
    let z_quant = Normal::standard().inverse_cdf(alpha / 2.0);
    let lower = root(-z_quant)?;
    let upper = root(z_quant)?;
    // The estimate is solved without the end checks, as Kayenta does.
    let f_lower = wilcoxon_diff(mu_min, 0.0, x, y)?;
    let f_upper = wilcoxon_diff(mu_max, 0.0, x, y)?;
    let estimate = brent_solve(mu_min, mu_max, f_lower, f_upper, |mu| {
        wilcoxon_diff(mu, 0.0, x, y)
    })?;
    Some(ShiftInterval {
        lower,
        upper,
        estimate,
    })
}

/// `MannWhitney.wilcoxonDiff`: the continuity-corrected normal score of the rank sum of
/// `x - mu` among `y`, minus `quantile`; `None` when every pooled value ties.
fn wilcoxon_diff(mu: f64, quantile: f64, x: &[f64], y: &[f64]) -> Option<f64> {
    let x_len = x.len() as f64;
    let y_len = y.len() as f64;
    let pooled: Vec<f64> = x.iter().map(|&v| v - mu).chain(y.iter().copied()).collect();
    let ranking = rank(&pooled);
    let x_rank_sum: f64 = ranking.ranks[..x.len()].iter().sum();
    let dz = x_rank_sum - x_len * (x_len + 1.0) / 2.0 - x_len * y_len / 2.0;
    // Scala's signum: -1, 0 or 1 (dz is never NaN here).
    let correction = if dz > 0.0 {
        0.5
    } else if dz < 0.0 {
        -0.5
    } else {
        0.0
    };
    let n = x_len + y_len;
    let sigma = ((x_len * y_len / 12.0) * ((n + 1.0) - ranking.tie_sum / (n * (n - 1.0)))).sqrt();
    if sigma == 0.0 || sigma.is_nan() {
        // Kayenta: "cannot compute confidence interval when all observations are tied".
        return None;
    }
    Some((dz - correction) / sigma - quantile)
}

/// Average ranks (1-based) and the tie term sum(t^3 - t) over groups of equal values.
struct Ranking {
    ranks: Vec<f64>,
    tie_sum: f64,
}

/// Apache Commons `NaturalRanking(NaNStrategy.MAXIMAL, TiesStrategy.AVERAGE)` for finite
/// values: values tie when `Double.compare` says so, which `total_cmp` reproduces (it also
/// separates -0.0 from 0.0).
fn rank(values: &[f64]) -> Ranking {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]].total_cmp(&values[order[start]]).is_eq() {
            end += 1;
        }
        // Positions start + 1 ..= end share their average rank.
        let average = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = average;
        }
        let t = (end - start) as f64;
        tie_sum += t * t * t - t;
        start = end;
    }
    Ranking { ranks, tie_sum }
}

/// `BrentSolver.solve`: a zero of `f` in `[ax, bx]` given `f(ax) = fa` and `f(bx) = fb`.
///
/// R's `zeroin` (Brent's method) as Kayenta ported it, with its constants: at most 1000
/// iterations, absolute tolerance 1e-4; there is no check that `fa` and `fb` differ in sign.
/// `None` when `f` cannot be evaluated.
fn brent_solve(
    ax: f64,
    bx: f64,
    fa: f64,
    fb: f64,
    mut f: impl FnMut(f64) -> Option<f64>,
) -> Option<f64> {
    const MAX_ITERATIONS: u32 = 1000;
    const TOLERANCE: f64 = 1e-4;
    const EPSILON: f64 = 2.220446049250313e-16;

    let (mut a, mut b, mut fa, mut fb) = (ax, bx, fa, fb);
    let mut c = a;
    let mut fc = fa;
    if is_zero(fa) {
        return Some(a);
    }
    if is_zero(fb) {
        return Some(b);
    }
    // Java's `iteration = MAX + 1; while (iteration-- > 0)` runs MAX + 1 times.
    for _ in 0..=MAX_ITERATIONS {
        let prev_step = b - a;
        if fc.abs() < fb.abs() {
            // Swap b and c so that b is the best approximation.
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * EPSILON * b.abs() + TOLERANCE / 2.0;
        let mut new_step = (c - b) / 2.0;
        if new_step.abs() <= tol_act || is_zero(fb) {
            return Some(b);
        }
        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                // Linear interpolation.
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                // Inverse quadratic interpolation.
                q = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0));
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }
        if new_step.abs() < tol_act {
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b)?;
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    Some(b)
}

/// Apache Commons `Precision.equals(x, 0)`: within one ulp of zero.
fn is_zero(x: f64) -> bool {
    x.abs() <= f64::from_bits(1)
}

/// `EffectSizes.meanRatio(control, experiment)`.
fn mean_ratio(control: &[f64], experiment: &[f64]) -> f64 {
    let control_mean = mean(control);
    let experiment_mean = mean(experiment);
    if control_mean == 0.0 || experiment_mean == 0.0 {
        f64::NAN
    } else {
        experiment_mean / control_mean
    }
}

/// `EffectSizes.cles(control, experiment)`: Vargha and Delaney's A from the experiment's rank sum.
fn cles(control: &[f64], experiment: &[f64]) -> f64 {
    let m = experiment.len() as f64;
    let n = control.len() as f64;
    let pooled: Vec<f64> = experiment.iter().chain(control).copied().collect();
    let r1: f64 = rank(&pooled).ranks[..experiment.len()].iter().sum();
    (2.0 * r1 - m * (m + 1.0)) / (2.0 * n * m)
}

/// Apache Commons `Mean.evaluate`: the sum over n, corrected by the mean residual.
fn mean(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let xbar = values.iter().sum::<f64>() / n;
    let correction: f64 = values.iter().map(|v| v - xbar).sum();
    xbar + correction / n
}

/// MannWhitneyClassifier.addGaussianNoise with the noise made deterministic: the value
/// plus `value * 1e-5` times the normal quantile at `(i + 1/2) / n`.
fn add_noise(values: &[f64]) -> Vec<f64> {
    let scale = values[0] * 1e-5;
    let n = values.len() as f64;
    let normal = Normal::standard();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| v + scale * normal.inverse_cdf((i as f64 + 0.5) / n))
        .collect()
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values
}

/// Number of distinct values, as Scala's `distinct` on boxed doubles counts them.
fn distinct_count(values: &[f64]) -> usize {
    let mut values = sorted(values);
    values.dedup_by(|a, b| a.total_cmp(b).is_eq());
    values.len()
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use suite::*;

    /// The absolute tolerance of Kayenta's MannWhitneySuite.
    const E: f64 = 1e-6;

    fn assert_near(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "actual {actual:e}, expected {expected:e} (tolerance {tolerance:e})"
        );
    }

    /// `new MannWhitneyClassifier(tolerance, confLevel, effectSizeThresholds = (decrease, increase))`.
    fn classifier(
        tolerance: f64,
        confidence: f64,
        (decrease, increase): (f64, f64),
    ) -> KayentaJudge {
        KayentaJudge {
            confidence,
            tolerance,
            allowed_increase: increase,
            allowed_decrease: decrease,
            ..KayentaJudge::default()
        }
    }

    /// The classifier most of ClassifierSuite uses: tolerance 0.10, confLevel 0.95.
    fn suite_classifier() -> KayentaJudge {
        classifier(0.10, 0.95, (1.0, 1.0))
    }

    #[test]
    fn defaults_are_netflix_aca_judges() {
        let judge = KayentaJudge::default();
        assert_eq!(judge.confidence, 0.98);
        assert_eq!(judge.tolerance, 0.25);
        assert_eq!(judge.allowed_increase, 1.0);
        assert_eq!(judge.allowed_decrease, 1.0);
        assert_eq!(judge.effect_size, EffectSize::MeanRatio);
        assert_eq!(judge.nan_strategy, NanStrategy::Remove);
    }

    // ----- MannWhitneySuite (kayenta-mannwhitney), numbers Kayenta checked against R -----

    #[test]
    fn z_quantile_at_98_percent() {
        // "Test zQuant": NormalDistribution(0, 1).inverseCumulativeProbability(0.02 / 2).
        assert_near(Normal::standard().inverse_cdf(0.02 / 2.0), -2.326348, E);
    }

    #[test]
    fn interval_of_small_separated_samples_is_the_range_of_differences() {
        // "Mann-Whitney Confidence Interval & Estimate": 4 against 4 cannot reach 95 %, so
        // both bounds fall back to the ends of the differences, 10 - 4 and 40 - 1.
        let interval =
            shift_interval(&[10.0, 20.0, 30.0, 40.0], &[1.0, 2.0, 3.0, 4.0], 0.95).unwrap();
        assert_near(interval.lower, 6.0, E);
        assert_near(interval.upper, 39.0, E);
        assert_near(interval.estimate, 22.5, E);
    }

    #[test]
    fn interval_ties_out_with_r() {
        // "Tie out with R Version": 90 against 90 half-unit latencies at 95 %.
        let interval = shift_interval(&R_TIE_OUT_EXPERIMENT, &R_TIE_OUT_CONTROL, 0.95).unwrap();
        assert_near(interval.lower, -0.500002521696696, E);
        assert_near(interval.upper, -3.486287505871302e-5, E);
        assert_near(interval.estimate, -0.4999393907180323, 1e-4);
    }

    #[test]
    fn interval_ties_out_with_r_at_98_percent() {
        // "Tie out with R Version (Large)": 180 against 180 at 98 %.
        let interval =
            shift_interval(&R_TIE_OUT_LARGE_EXPERIMENT, &R_TIE_OUT_LARGE_CONTROL, 0.98).unwrap();
        assert_near(interval.lower, -0.4999173250549087, E);
        assert_near(interval.upper, -6.912685789769486e-6, E);
        assert_near(interval.estimate, -3.45044082729315e-5, 1e-4);
    }

    #[test]
    fn intermediate_values_tie_out_with_r() {
        // "Mann-Whitney Intermediate Values / Variables": the search range, the rank-sum
        // scores at its ends and the three Brent roots, for 210 mostly-zero values a side.
        let (x, y) = (&SPARSE_X[..], &SPARSE_Y[..]);
        let mu_min = min(x) - max(y);
        let mu_max = max(x) - min(y);
        assert_near(mu_min, -3.124999999999986, E);
        assert_near(mu_max, 5.555555555555557, E);
        let zq_upper = Normal::standard().inverse_cdf(0.05 / 2.0);
        let zq_lower = -zq_upper;
        assert_near(zq_lower, 1.9599639845400536, E);
        let diff = |mu: f64, zq: f64| wilcoxon_diff(mu, zq, x, y).unwrap();
        let (f_lower1, f_upper1) = (diff(mu_min, zq_lower), diff(mu_max, zq_lower));
        let (f_lower2, f_upper2) = (diff(mu_min, zq_upper), diff(mu_max, zq_upper));
        assert_near(f_lower1, 17.090968923762254, E);
        assert_near(f_upper1, -20.997687930433106, E);
        assert_near(f_lower2, 21.01089689284236, E);
        assert_near(f_upper2, -17.077759961353, E);
        let solve = |fa: f64, fb: f64, zq: f64| {
            brent_solve(mu_min, mu_max, fa, fb, |mu| wilcoxon_diff(mu, zq, x, y)).unwrap()
        };
        assert_near(solve(f_lower1, f_upper1, zq_lower), 3.521755377702165e-5, E);
        assert_near(solve(f_lower2, f_upper2, zq_upper), 2.02456461662334e-5, E);
        let (f_lower0, f_upper0) = (diff(mu_min, 0.0), diff(mu_max, 0.0));
        assert_near(solve(f_lower0, f_upper0, 0.0), 2.6279243045155653e-5, E);
    }

    // ----- The interval by brute force: counting pairwise differences, not ranking -----

    /// `wilcoxonDiff` recomputed from the pairwise differences for samples without ties
    /// inside either one: U counts the pairs with `x - mu > y` plus half those with
    /// `x - mu = y`, and each such equality is a tie of two, adding 6 to sum(t^3 - t).
    fn counted_diff(mu: f64, zq: f64, x: &[f64], y: &[f64]) -> Option<f64> {
        let (n, m) = (x.len() as f64, y.len() as f64);
        let (mut above, mut equal) = (0.0, 0.0);
        for &a in x {
            for &b in y {
                let shifted = a - mu;
                if shifted > b {
                    above += 1.0;
                } else if shifted == b {
                    equal += 1.0;
                }
            }
        }
        let dz = above + equal / 2.0 - n * m / 2.0;
        let correction = 0.5 * if dz == 0.0 { 0.0 } else { dz.signum() };
        let total = n + m;
        let sigma = (n * m / 12.0 * ((total + 1.0) - 6.0 * equal / (total * (total - 1.0)))).sqrt();
        (sigma > 0.0).then(|| (dz - correction) / sigma - zq)
    }

    /// Where the normal-approximation test statistic crosses `zq`: it only moves at the
    /// pairwise differences and falls as mu grows, so the root is the first difference at
    /// which, or just after which, it is no longer positive; the ends of the range when
    /// it never changes sign.
    fn counted_root(zq: f64, x: &[f64], y: &[f64]) -> Option<f64> {
        let mut differences: Vec<f64> = x
            .iter()
            .flat_map(|&a| y.iter().map(move |&b| a - b))
            .collect();
        differences.sort_by(f64::total_cmp);
        differences.dedup();
        let (first, last) = (differences[0], differences[differences.len() - 1]);
        if counted_diff(first, zq, x, y)? <= 0.0 {
            return Some(first);
        }
        if counted_diff(last, zq, x, y)? >= 0.0 {
            return Some(last);
        }
        for pair in differences.windows(2) {
            let gap = (pair[0] + pair[1]) / 2.0;
            if counted_diff(pair[0], zq, x, y)? <= 0.0 || counted_diff(gap, zq, x, y)? <= 0.0 {
                return Some(pair[0]);
            }
        }
        Some(last)
    }

    /// Distinct quarter-unit values, so that pairwise differences are exact and either
    /// equal or at least 0.25 apart.
    fn quarter_units() -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::btree_set(-40i32..40, 1..14)
            .prop_map(|set| set.into_iter().map(|k| f64::from(k) / 4.0).collect())
    }

    /// Brent stops once the bracket around the root is at most 2 * (1e-4 / 2 + 2 eps |b|) wide.
    const BRENT_TOLERANCE: f64 = 1e-4 + 1e-12;

    proptest! {
        #[test]
        fn interval_is_where_the_counted_statistic_crosses_its_quantiles(
            x in quarter_units(),
            y in quarter_units(),
            confidence in prop::sample::select(vec![0.8, 0.9, 0.95, 0.98, 0.99]),
        ) {
            let z = -Normal::standard().inverse_cdf((1.0 - confidence) / 2.0);
            let expected = counted_root(z, &x, &y).zip(counted_root(-z, &x, &y));
            match (shift_interval(&x, &y, confidence), expected) {
                (None, None) => {}
                (Some(interval), Some((lower, upper))) => {
                    prop_assert!((interval.lower - lower).abs() <= BRENT_TOLERANCE,
                        "lower {} against {}", interval.lower, lower);
                    prop_assert!((interval.upper - upper).abs() <= BRENT_TOLERANCE,
                        "upper {} against {}", interval.upper, upper);
                }
                (got, want) => prop_assert!(false, "got {:?}, want {:?}", got, want),
            }
        }

        #[test]
        fn estimate_is_where_the_counted_statistic_changes_sign(
            x in quarter_units(),
            y in quarter_units(),
        ) {
            let Some(interval) = shift_interval(&x, &y, 0.98) else { return Ok(()) };
            // With z = 0 the statistic is positive while more than half a pair's worth of
            // differences lie above mu, and 0 where |above - below| <= 1: the estimate is
            // the Hodges-Lehmann median of the differences, give or take the continuity
            // correction. Brent's answer must have the sign change within its tolerance.
            let f = |mu: f64| counted_diff(mu, 0.0, &x, &y).unwrap();
            let (left, right) = (interval.estimate - BRENT_TOLERANCE, interval.estimate + BRENT_TOLERANCE);
            prop_assert!(f(left) >= 0.0 && f(right) <= 0.0,
                "estimate {}: f(left) = {}, f(right) = {}", interval.estimate, f(left), f(right));
        }
    }

    #[test]
    fn shift_interval_rejects_what_kayenta_cannot_compute() {
        assert_eq!(shift_interval(&[], &[1.0], 0.98), None);
        assert_eq!(shift_interval(&[1.0], &[], 0.98), None);
        assert_eq!(shift_interval(&[f64::NAN], &[1.0, 2.0], 0.98), None);
        assert_eq!(shift_interval(&[1.0, 3.0], &[1.0, 2.0], 1.0), None);
        assert_eq!(shift_interval(&[1.0, 3.0], &[1.0, 2.0], 0.0), None);
        // One value a side: at either end of the range the two values tie, and Kayenta's
        // wilcoxonDiff throws "all observations are tied".
        assert_eq!(shift_interval(&[3.0], &[1.0], 0.98), None);
    }

    #[test]
    fn effect_sizes_hand_computed() {
        // Means 1.5 and 3.0: ratio experiment / control = 2.
        assert_eq!(mean_ratio(&[1.0, 2.0], &[2.0, 4.0]), 2.0);
        assert!(mean_ratio(&[0.0, 0.0], &[2.0, 4.0]).is_nan());
        assert!(mean_ratio(&[1.0, 2.0], &[-1.0, 1.0]).is_nan());
        // Experiment {3, 0} against control {1, 2}: 3 beats both, 0 neither, 2 of 4 pairs.
        assert_eq!(cles(&[1.0, 2.0], &[3.0, 0.0]), 0.5);
        // Experiment {3, 2} against control {1, 2}: 3 beats both, 2 beats 1 and ties 2: 3.5 / 4.
        assert_eq!(cles(&[1.0, 2.0], &[3.0, 2.0]), 0.875);
    }

    #[test]
    fn ranks_average_ties() {
        // Sorted: 17, 17, 17, 20, 30, 42.3, 50. The three 17s share (1 + 2 + 3) / 3 = 2,
        // and add 3^3 - 3 = 24 to the tie term.
        let ranking = rank(&[20.0, 17.0, 30.0, 42.3, 17.0, 50.0, 17.0]);
        assert_eq!(ranking.ranks, [4.0, 2.0, 5.0, 6.0, 2.0, 7.0, 2.0]);
        assert_eq!(ranking.tie_sum, 24.0);
    }

    // ----- ClassifierSuite (kayenta-judge): inputs and expected labels ported -----

    #[test]
    fn classifier_suite_pass_high_low() {
        let c = suite_classifier();
        // "Pass Metric", "High Metric", "Low Metric" (direction either).
        assert_eq!(c.classify(&NEAR_10_B, &NEAR_10_A), Classification::Pass);
        assert_eq!(c.classify(&NEAR_10_B, &NEAR_20_A), Classification::High);
        assert_eq!(c.classify(&NEAR_20_B, &NEAR_10_A), Classification::Low);
    }

    #[test]
    fn classifier_suite_directions() {
        let c = suite_classifier();
        // "Directional Test: Increase": a decrease is not reported when only increases are.
        assert_eq!(
            c.classify_toward(&NEAR_20_B, &NEAR_10_A, Direction::Increase),
            Classification::Pass
        );
        // "Directional Test: Decrease".
        assert_eq!(
            c.classify_toward(&NEAR_10_B, &NEAR_20_A, Direction::Decrease),
            Classification::Pass
        );
        // "Directional Test: High Metric" / "Low Metric".
        assert_eq!(
            c.classify_toward(&NEAR_10_B, &NEAR_20_A, Direction::Increase),
            Classification::High
        );
        assert_eq!(
            c.classify_toward(&NEAR_20_B, &NEAR_10_A, Direction::Decrease),
            Classification::Low
        );
    }

    #[test]
    fn classifier_suite_large_sparse_input() {
        // "High Metric (Large Input)": 210 values a side, mostly zeros.
        assert_eq!(
            suite_classifier().classify(&SPARSE_Y, &SPARSE_X),
            Classification::High
        );
        // "Mean Ratio Effect Size: Pass (Large Input)": the same data, allowedIncrease 5.
        assert_eq!(
            classifier(0.10, 0.95, (1.0, 5.0)).classify(&SPARSE_Y, &SPARSE_X),
            Classification::Pass
        );
    }

    #[test]
    fn classifier_suite_mean_ratio_effect_size() {
        let experiment = [20.0, 22.0, 21.0, 25.0, 30.0];
        let control = [1.0, 2.2, 1.1, 2.5, 3.0];
        // Means 23.6 and 1.96, a ratio of about 12.04.
        // "Mean Ratio Effect Size: High": thresholds (0.8, 1.2).
        assert_eq!(
            classifier(0.10, 0.95, (0.8, 1.2)).classify(&control, &experiment),
            Classification::High
        );
        // "Critical Effect Size: High" and "Pass": allowedIncrease 5 is cleared, 13 is not.
        assert_eq!(
            classifier(0.10, 0.95, (1.0, 5.0)).classify(&control, &experiment),
            Classification::High
        );
        assert_eq!(
            classifier(0.10, 0.95, (1.0, 13.0)).classify(&control, &experiment),
            Classification::Pass
        );
        // "Mean Ratio Effect Size: Low": direction decrease, thresholds (0.8, 1.2).
        assert_eq!(
            classifier(0.10, 0.95, (0.8, 1.2)).classify_toward(
                &NEAR_20_B,
                &NEAR_10_A,
                Direction::Decrease
            ),
            Classification::Low
        );
        // "Mean Ratio Effect Size: Pass": a ratio of about 0.57 is not below allowedDecrease 0.5.
        assert_eq!(
            classifier(0.10, 0.95, (0.5, 1.0)).classify(
                &[20.0, 22.0, 21.0, 25.0, 30.0],
                &[10.0, 12.2, 10.1, 12.5, 23.0]
            ),
            Classification::Pass
        );
    }

    #[test]
    fn classifier_suite_cles_effect_size() {
        let cles_classifier = |thresholds| KayentaJudge {
            effect_size: EffectSize::Cles,
            ..classifier(0.20, 0.98, thresholds)
        };
        // "CLES Effect Size: Pass", "High", "Low".
        assert_eq!(
            cles_classifier((0.5, 0.8)).classify(&CLES_PASS_CONTROL, &CLES_PASS_EXPERIMENT),
            Classification::Pass
        );
        assert_eq!(
            cles_classifier((0.2, 0.8)).classify(&CLES_HIGH_CONTROL, &CLES_HIGH_EXPERIMENT),
            Classification::High
        );
        assert_eq!(
            cles_classifier((0.2, 0.8)).classify(&CLES_LOW_CONTROL, &CLES_LOW_EXPERIMENT),
            Classification::Low
        );
    }

    #[test]
    fn classifier_suite_ties_and_identical_samples() {
        let c = suite_classifier();
        // "Tied Observations", "Identical Populations", "Leading Zero Identical Population"
        // (direction decrease), "Majority Tied Observations".
        let decrease =
            |pre: &[f64], post: &[f64]| c.classify_toward(pre, post, Direction::Decrease);
        assert_eq!(
            decrease(&[1.0, 1.0], &[1.0, 1.0, 1.0]),
            Classification::Pass
        );
        assert_eq!(
            decrease(&[5.0, 4.0, 3.0, 2.0, 1.0], &[1.0, 2.0, 3.0, 4.0, 5.0]),
            Classification::Pass
        );
        assert_eq!(
            decrease(&[1.0; 5], &[0.0, 1.0, 1.0, 1.0, 1.0]),
            Classification::Pass
        );
        assert_eq!(
            c.classify(&[1.0; 5], &[1.0, 1.0, 1.0, 1.0, 10.0]),
            Classification::Pass
        );
        // "Tied Ranks" and "Tied Ranks With Zeros": constant samples, made rankable by noise.
        assert_eq!(c.classify(&[1.0; 5], &[10.0; 5]), Classification::High);
        assert_eq!(c.classify(&[0.0; 5], &[10.0; 5]), Classification::High);
    }

    #[test]
    fn classifier_suite_zero_means() {
        let c = classifier(0.10, 0.95, (0.8, 1.2));
        let high = [54.9, 54.5, 55.1, 55.6, 57.4];
        // "Zero Mean: High / Low Metric with Effect Size": the ratio is NaN and is ignored.
        assert_eq!(c.classify(&[0.0; 5], &high), Classification::High);
        assert_eq!(c.classify(&high, &[0.0; 5]), Classification::Low);
        // "Zero Mean: Pass Metric".
        assert_eq!(c.classify(&[0.0; 5], &[0.0; 5]), Classification::Pass);
        // "Zero Mean: Critical Metric" (nanStrategy replace).
        let experiment = [
            0.05000000074505806,
            0.05000000074505806,
            0.01666666753590107,
            0.01666666753590107,
            0.01666666753590107,
            0.05000000074505806,
            0.03333333507180214,
            0.05000000260770321,
            0.05000000260770321,
            0.13333333656191826,
        ];
        let replace = KayentaJudge {
            nan_strategy: NanStrategy::Replace,
            ..suite_classifier()
        };
        assert_eq!(
            replace.classify(&[0.0; 10], &experiment),
            Classification::High
        );
    }

    #[test]
    fn classifier_suite_missing_data() {
        let c = suite_classifier();
        // "Missing Experiment Data": NoData; "... with NaN Replacement": Pass.
        assert_eq!(
            c.classify_toward(&[1.0, 2.0, 3.0, 4.0, 5.0], &[], Direction::Decrease),
            Classification::NoData
        );
        let replace = KayentaJudge {
            nan_strategy: NanStrategy::Replace,
            ..c
        };
        assert_eq!(
            replace.classify_toward(&[1.0, 2.0, 3.0, 4.0, 5.0], &[], Direction::Decrease),
            Classification::Pass
        );
        // "Missing Data: Reason String": both sides empty.
        assert_eq!(c.classify(&[], &[]), Classification::NoData);
    }

    // ----- The rule as metaloop uses it -----

    #[test]
    fn no_data_on_empty_or_missing_input() {
        let judge = KayentaJudge::default();
        assert_eq!(judge.classify(&[], &[1.0, 2.0]), Classification::NoData);
        assert_eq!(judge.classify(&[1.0, 2.0], &[]), Classification::NoData);
        // NaN (and infinite) values are removed first.
        assert_eq!(
            judge.classify(&[1.0, 2.0], &[f64::NAN, f64::INFINITY]),
            Classification::NoData
        );
        assert_eq!(judge.judge(&[], &[1.0, 2.0], true), RuleDecision::Wait);
        assert_eq!(judge.judge(&[1.0, 2.0], &[], false), RuleDecision::Wait);
        // Replaced by 0 instead, 0 is a real (low) value.
        let replace = KayentaJudge {
            nan_strategy: NanStrategy::Replace,
            ..judge
        };
        assert_eq!(
            replace.classify(&[10.0, 11.0], &[f64::NAN]),
            Classification::Low
        );
    }

    #[test]
    fn judge_fails_only_in_the_bad_direction() {
        let judge = KayentaJudge::default();
        // Post clearly higher than pre: bad only when lower is better.
        assert_eq!(judge.classify(&NEAR_10_B, &NEAR_20_A), Classification::High);
        assert_eq!(
            judge.judge(&NEAR_10_B, &NEAR_20_A, true),
            RuleDecision::Wait
        );
        assert_eq!(
            judge.judge(&NEAR_10_B, &NEAR_20_A, false),
            RuleDecision::Fail
        );
        // Post clearly lower than pre: bad only when higher is better.
        assert_eq!(judge.classify(&NEAR_20_B, &NEAR_10_A), Classification::Low);
        assert_eq!(
            judge.judge(&NEAR_20_B, &NEAR_10_A, true),
            RuleDecision::Fail
        );
        assert_eq!(
            judge.judge(&NEAR_20_B, &NEAR_10_A, false),
            RuleDecision::Wait
        );
        // No difference: never Fail, and the rule never says Pass itself.
        assert_eq!(
            judge.judge(&NEAR_10_B, &NEAR_10_A, true),
            RuleDecision::Wait
        );
        assert_eq!(
            judge.judge(&NEAR_10_B, &NEAR_10_A, false),
            RuleDecision::Wait
        );
    }

    #[test]
    fn one_canary_value_outside_the_baseline_range_is_already_high() {
        // Control 10.0, 10.1, ..., 11.1 (12 values), experiment the single value 15.0.
        // The search range is [15 - 11.1, 15 - 10] = [3.9, 5]. At 3.9 the experiment ties
        // the control's maximum: rank sum 12.5, dz = 12.5 - 1 - 6 = 5.5, sigma =
        // sqrt(12 / 12 * (14 - 6 / (13 * 12))) = 3.7365, and (5.5 - 0.5) / 3.7365 = 1.338 is
        // short of qnorm(0.99) = 2.326: the lower bound is the end, 3.9. Symmetrically the
        // upper bound is 5. The estimate is where 15 - mu sits mid-control, between
        // 10.5 and 10.6, so mu in [4.4, 4.5]; 3.9 > 0.25 * 4.5, and 15 / 10.55 > 1: High.
        let control = [
            10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 10.7, 10.8, 10.9, 11.0, 11.1,
        ];
        let interval = shift_interval(&[15.0], &control, 0.98).unwrap();
        assert_eq!(interval.lower, 15.0 - 11.1);
        assert_eq!(interval.upper, 15.0 - 10.0);
        assert!(
            interval.estimate >= 4.4 - BRENT_TOLERANCE
                && interval.estimate <= 4.5 + BRENT_TOLERANCE
        );
        let judge = KayentaJudge::default();
        assert_eq!(judge.classify(&control, &[15.0]), Classification::High);
        assert_eq!(judge.judge(&control, &[15.0], false), RuleDecision::Fail);
        // Inside the baseline's range the interval spans 0: Pass.
        assert_eq!(judge.classify(&control, &[10.55]), Classification::Pass);
        assert_eq!(judge.classify(&control, &[9.0]), Classification::Low);
    }

    #[test]
    fn significance_is_not_enough_the_interval_must_clear_a_quarter_of_the_estimate() {
        // Control 0, 1, ..., 19; experiment the same shifted by 6. The differences are
        // 6 + k for k = i - j, with 20 - |k| pairs each. For mu in (1, 2), 280 of the 400
        // pairs lie above mu: dz = 80, sigma = sqrt(400 / 12 * 41) = 36.97, and
        // (80 - 0.5) / 36.97 = 2.15 < 2.326; for mu in (0, 1), 295 do: 2.56 > 2.326. So the
        // lower bound is 1, the upper 11 by symmetry, and the estimate 6.
        let control: Vec<f64> = (0..20).map(f64::from).collect();
        let shifted = |by: f64| control.iter().map(|v| v + by).collect::<Vec<f64>>();
        let interval = shift_interval(&shifted(6.0), &control, 0.98).unwrap();
        assert_near(interval.lower, 1.0, BRENT_TOLERANCE);
        assert_near(interval.upper, 11.0, BRENT_TOLERANCE);
        assert_near(interval.estimate, 6.0, BRENT_TOLERANCE);
        // 0 is outside the interval, but 1 < 0.25 * 6: Pass at Kayenta's tolerance,
        // High at ClassifierSuite's 0.10.
        let judge = KayentaJudge::default();
        assert_eq!(
            judge.classify(&control, &shifted(6.0)),
            Classification::Pass
        );
        let lenient = KayentaJudge {
            tolerance: 0.10,
            ..judge
        };
        assert_eq!(
            lenient.classify(&control, &shifted(6.0)),
            Classification::High
        );
        // Shifted by 8 the lower bound is 3 > 0.25 * 8: High.
        assert_eq!(
            judge.classify(&control, &shifted(8.0)),
            Classification::High
        );
    }

    #[test]
    fn constant_samples_are_compared_through_the_noise() {
        let judge = KayentaJudge::default();
        // Kayenta's "Tied Ranks" situation at its own settings, both directions.
        assert_eq!(
            judge.classify(&[5.0; 12], &[6.0, 6.0]),
            Classification::High
        );
        assert_eq!(judge.classify(&[5.0; 12], &[4.0, 4.0]), Classification::Low);
        // The deterministic noise is centred on the value and scaled by 1e-5 of it.
        let noisy = add_noise(&[5.0; 4]);
        assert!(noisy.iter().all(|v| (v - 5.0).abs() < 5.0 * 1e-5 * 1.2));
        assert_near(noisy.iter().sum::<f64>() / 4.0, 5.0, 1e-12);
        assert_eq!(distinct_count(&noisy), 4);
    }

    /// Inputs of Kayenta's own test suites, copied digit for digit from
    /// `kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ClassifierSuite.scala` and
    /// `kayenta-mannwhitney/src/test/scala/com/netflix/kayenta/mannwhitney/MannWhitneySuite.scala`.
    #[allow(clippy::excessive_precision)]
    #[rustfmt::skip]
    mod suite {
    /// ClassifierSuite, "Pass Metric" experimentData.
    pub const NEAR_10_A: [f64; 30] = [
        9.7767343120109462, 10.587071850477695, 7.8375506388901766, 9.3243326886113884,
        8.3774505409784421, 8.9359264399606282, 8.2707663324728511, 9.7484308126716925,
        11.623746715547156, 9.2753442679633942, 8.1538047749171518, 10.562020975754294,
        13.498135575451835, 11.054419256110332, 6.9538903590055092, 12.521008342195479,
        9.0216358603546443, 4.9234856699531662, 11.251360203607172, 11.598449508040337,
        8.435232204668182, 11.110228516867279, 10.70063380164755, 8.9212773652115249,
        10.086167067942661, 11.42107515483087, 9.3792347813644952, 7.7980320148552593,
        10.62339807275746, 11.909642062063739,
    ];

    /// ClassifierSuite, "Pass Metric" controlData.
    pub const NEAR_10_B: [f64; 30] = [
        11.1453586774086, 9.9618059885597017, 7.068574306369829, 7.3012661810483657,
        9.7944630265656727, 9.6037918603687302, 6.1867793350339388, 12.345599159550174,
        10.371891733859533, 8.6094300785016724, 9.913162673361084, 10.361375299003466,
        14.206800387518818, 10.946153754753301, 10.215876627044048, 11.739760899484603,
        10.907627468626439, 12.823353694464775, 8.1018609771732137, 8.4981616408804932,
        12.113441374697231, 13.272210809932028, 10.114579381663297, 6.9463958767978067,
        6.2105278541727778, 10.160401684903775, 8.3457712066455461, 8.383822063895833,
        7.0020205070083765, 10.755757401808442,
    ];

    /// ClassifierSuite, "High Metric" experimentData.
    pub const NEAR_20_A: [f64; 30] = [
        20.878412601720026, 21.78550581191622, 19.70828084717019, 15.859946903461562,
        19.510058772176841, 19.392005525270303, 22.926528314912101, 17.156530276709894,
        18.655117916226171, 23.422607911610392, 24.055817684156644, 22.62689958516501,
        21.979472967817678, 21.659318607218694, 20.067707574072426, 22.119570836305414,
        16.44037132663307, 21.559622826341268, 21.000181443489218, 17.779369411412663,
        17.806006358943584, 18.537200618386109, 20.555550300210797, 19.552928184468378,
        21.771118944087092, 21.809622806176627, 20.961762909905271, 20.977571577503021,
        19.106303205498794, 16.976918966987078,
    ];

    /// ClassifierSuite, "Low Metric" controlData.
    pub const NEAR_20_B: [f64; 30] = [
        20.758113589510348, 22.802059629464559, 20.612340363492208, 20.973274654749986,
        23.469237330498622, 21.53133988954805, 21.767353687439805, 18.308050730374301,
        19.062145167827566, 25.879498436001779, 18.982629726336128, 19.387920182269266,
        18.995398251246982, 24.228420230932805, 20.050985172694688, 18.2340451091756,
        17.870515494460435, 23.058103863806618, 18.400259567501134, 16.971352091177167,
        19.467529066052151, 17.90465423342031, 17.553948617825831, 16.104611843907193,
        24.38171081433039, 15.919294339922635, 20.479409626304697, 19.08307201492406,
        17.455788050722866, 18.853826823235142,
    ];

    /// ClassifierSuite, "High Metric (Large Input)" experimentData; MannWhitneySuite, "Intermediate Values" x.
    pub const SPARSE_X: [f64; 210] = [
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.6666666666666572, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 3.7037037037036811,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.5625000000000142, 0.0,
        0.0, 0.0, 0.0, 3.3333333333333428,
        0.0, 1.7543859649122737, 0.0, 1.8518518518518476,
        0.0, 0.0, 1.8518518518518476, 0.0,
        0.0, 1.5151515151515156, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.7857142857142776,
        1.3333333333333286, 0.0, 3.1250000000000142, 1.9607843137255117,
        1.4492753623188293, 2.4390243902438868, 1.6393442622950687, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.6129032258064484, 1.9607843137255117,
        1.5873015873015817, 0.0, 0.0, 2.8169014084507182,
        0.0, 0.0, 3.0303030303030454, 0.0,
        0.0, 3.3898305084745743, 0.0, 0.0,
        1.234567901234584, 0.0, 0.0, 0.0,
        0.0, 1.7241379310344769, 0.0, 0.0,
        0.0, 0.0, 1.6949152542372872, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.470588235294116, 0.0,
        0.0, 1.3698630136986196, 3.225806451612911, 1.7543859649122879,
        3.4482758620689538, 0.0, 3.3333333333333428, 0.0,
        0.0, 0.0, 1.818181818181813, 0.0,
        0.0, 1.4285714285714448, 0.0, 0.0,
        1.8867924528301927, 2.0000000000000284, 0.0, 0.0,
        0.0, 2.985074626865682, 0.0, 0.0,
        1.6666666666666714, 0.0, 0.0, 1.5625,
        1.9230769230769198, 0.0, 1.8518518518518619, 0.0,
        2.7027027027027088, 0.0, 0.0, 0.0,
        1.3513513513513544, 0.0, 1.818181818181813, 0.0,
        1.6666666666666572, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.818181818181813, 0.0, 1.4285714285714164, 0.0,
        0.0, 4.1095890410959015, 0.0, 0.0,
        0.0, 1.8518518518518619, 0.0, 0.0,
        1.8518518518518476, 1.3888888888888857, 0.0, 0.0,
        0.0, 0.0, 1.8867924528301785, 1.4285714285714164,
        0.0, 0.0, 1.5625, 1.8867924528301927,
        0.0, 0.0, 0.0, 0.0,
        2.040816326530603, 1.818181818181813, 0.0, 0.0,
        1.6393442622950687, 0.0, 1.7241379310344769, 1.5151515151515156,
        2.564102564102555, 0.0, 0.0, 0.0,
        0.0, 5.5555555555555571, 0.0, 0.0,
        4.0816326530612059, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 3.5714285714285836, 0.0, 2.040816326530603,
        3.1746031746031633, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0,
    ];

    /// ClassifierSuite, "High Metric (Large Input)" controlData; MannWhitneySuite, "Intermediate Values" y.
    pub const SPARSE_Y: [f64; 210] = [
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.5625000000000142, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.3888888888888857,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.5384615384615614,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.4925373134328339,
        0.0, 0.0, 0.0, 1.6949152542373014,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 1.470588235294116, 0.0, 0.0,
        0.0, 0.0, 1.7543859649122879, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 1.8518518518518619, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.6393442622950687, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 1.7241379310344769, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.5873015873015817, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.4925373134328339, 0.0, 0.0, 0.0,
        3.1249999999999858, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.4925373134328339, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 2.9850746268656536,
        0.0, 2.5000000000000284, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.7857142857142776, 0.0,
        0.0, 0.0,
    ];

    /// ClassifierSuite, "CLES Effect Size: Pass" experimentData.
    pub const CLES_PASS_EXPERIMENT: [f64; 60] = [
        0.00000000e+00, 0.00000000e+00, 1.46580998e-04, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 7.94701987e-05, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 2.68889486e-05, 0.00000000e+00,
        0.00000000e+00, 2.64935753e-05, 0.00000000e+00, 0.00000000e+00,
        0.00000000e+00, 2.61608895e-05, 1.27824931e-04, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 2.54511211e-05, 2.58665287e-05,
        7.63339355e-05, 0.00000000e+00, 2.54239443e-05, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 2.61001201e-05, 5.20101940e-05,
        0.00000000e+00, 2.64452319e-05, 5.27551370e-05, 7.83719533e-05,
        5.19467027e-05, 2.58344528e-05, 2.58899676e-05, 0.00000000e+00,
        2.59497613e-05, 2.57938043e-05, 7.78553448e-05, 2.60593110e-05,
        2.61001201e-05, 0.00000000e+00, 0.00000000e+00, 2.59349551e-05,
        2.60559160e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 2.58819267e-05,
        0.00000000e+00, 2.58825965e-05, 2.57572635e-05, 2.56877906e-05,
    ];

    /// ClassifierSuite, "CLES Effect Size: Pass" controlData.
    pub const CLES_PASS_CONTROL: [f64; 60] = [
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        2.91528191e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        2.98284862e-05, 5.99916012e-05, 0.00000000e+00, 5.92276712e-05,
        0.00000000e+00, 2.98053709e-05, 0.00000000e+00, 2.97309350e-05,
        5.92153960e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        2.92800047e-05, 0.00000000e+00, 2.94550810e-05, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 5.83958656e-05, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        2.88600289e-05, 2.90334756e-05, 2.91740817e-05, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
        0.00000000e+00, 2.92765758e-05, 0.00000000e+00, 0.00000000e+00,
        0.00000000e+00, 0.00000000e+00, 0.00000000e+00, 2.94637596e-05,
        5.89136326e-05, 0.00000000e+00, 0.00000000e+00, 0.00000000e+00,
    ];

    /// ClassifierSuite, "CLES Effect Size: High" experimentData.
    pub const CLES_HIGH_EXPERIMENT: [f64; 60] = [
        0.00689808, 0.00568664, 0.00680876, 0.00642045,
        0.00561825, 0.00472294, 0.00398378, 0.00392403,
        0.00421201, 0.0047529, 0.00460853, 0.00439888,
        0.00561875, 0.01998866, 0.0124369, 0.00624391,
        0.00444361, 0.00442059, 0.00372095, 0.00540736,
        0.00715402, 0.00425974, 0.00414409, 0.01172436,
        0.0125959, 0.00371891, 0.00429855, 0.00369876,
        0.00325709, 0.00415943, 0.00371754, 0.00445212,
        0.00521721, 0.00443938, 0.00380859, 0.01602997,
        0.00788885, 0.0038155, 0.00326921, 0.00336928,
        0.00365917, 0.00333869, 0.00427639, 0.00355911,
        0.00381224, 0.00360057, 0.00349305, 0.00401164,
        0.00351947, 0.00356299, 0.003407, 0.00414397,
        0.00393346, 0.00413318, 0.00359041, 0.00366314,
        0.00309383, 0.00383733, 0.00363324, 0.00280674,
    ];

    /// ClassifierSuite, "CLES Effect Size: High" controlData.
    pub const CLES_HIGH_CONTROL: [f64; 60] = [
        0.00081956, 0.00239282, 0.00133685, 0.00094917,
        0.00029518, 0.00035344, 0.00048194, 0.00034893,
        0.0003202, 0.00079814, 0.00090881, 0.00072599,
        0.00037819, 0.00038286, 0.00057604, 0.00064821,
        0.00032194, 0.0002245, 0.00025202, 0.00071997,
        0.00022721, 0.00042578, 0.00042496, 0.00045613,
        0.00037072, 0.0003317, 0.00032889, 0.00032749,
        0.00036093, 0.00029285, 0.00038401, 0.00044467,
        0.00071086, 0.00036692, 0.00052079, 0.00074974,
        0.00128791, 0.00062046, 0.00086345, 0.00118563,
        0.00103379, 0.00028913, 0.00057628, 0.00057943,
        0.00048735, 0.00029409, 0.0002005, 0.00016612,
        0.00089312, 0.00059367, 0.00061706, 0.00163313,
        0.00097784, 0.00029305, 0.00058839, 0.00085212,
        0.00048298, 0.00035546, 0.00025866, 0.00038767,
    ];

    /// ClassifierSuite, "CLES Effect Size: Low" experimentData.
    pub const CLES_LOW_EXPERIMENT: [f64; 30] = [
        24.24693907, 26.13330099, 22.50056744, 24.36646841,
        23.19935673, 19.43801304, 20.99654102, 18.90793651,
        21.31949881, 21.83528381, 21.64211206, 23.13365968,
        21.09163134, 19.45540615, 20.74783158, 22.25527831,
        19.82051791, 20.9865487, 19.94450026, 23.2904056,
        18.18408424, 22.13843542, 19.42896044, 19.84140464,
        23.91557662, 21.00981557, 21.8594633, 23.11630163,
        22.95700392, 17.80045135,
    ];

    /// ClassifierSuite, "CLES Effect Size: Low" controlData.
    pub const CLES_LOW_CONTROL: [f64; 30] = [
        25.09626848, 26.15032198, 24.88431438, 24.18870163,
        22.14684987, 28.01743443, 21.29910501, 27.24688773,
        28.64187535, 27.03504445, 24.67888311, 22.35137878,
        27.41640397, 26.00225548, 23.02118534, 25.99647292,
        22.77446912, 25.56704719, 25.57025827, 21.2721602,
        23.12987357, 24.59111604, 27.48865016, 27.21967755,
        23.5951111, 22.5429607, 25.83015564, 23.31965305,
        24.3911644, 25.11468194,
    ];

    /// MannWhitneySuite, "Tie out with R Version" control.
    pub const R_TIE_OUT_CONTROL: [f64; 90] = [
        1.5, 6.0, 5.0, 2.5,
        2.5, 2.0, 2.0, 3.5,
        3.0, 3.0, 3.0, 2.0,
        3.0, 8.0, 4.0, 2.5,
        3.0, 2.5, 2.5, 2.0,
        2.5, 2.0, 2.0, 2.5,
        3.5, 3.0, 1.5, 5.0,
        2.5, 5.5, 2.0, 2.5,
        3.5, 2.0, 2.5, 4.0,
        2.0, 2.0, 2.0, 2.0,
        5.5, 4.5, 4.0, 3.0,
        3.0, 3.5, 2.5, 3.0,
        2.5, 4.0, 6.0, 2.0,
        5.0, 6.0, 3.5, 3.0,
        54.5, 3.0, 5.0, 6.0,
        3.5, 4.5, 2.5, 2.0,
        6.0, 5.0, 2.5, 3.5,
        2.0, 3.0, 2.5, 3.5,
        3.5, 2.5, 3.0, 4.5,
        3.0, 15.5, 5.0, 2.5,
        3.0, 4.0, 3.5, 4.0,
        4.0, 2.0, 4.5, 2.5,
        4.0, 3.0,
    ];

    /// MannWhitneySuite, "Tie out with R Version" experiment.
    pub const R_TIE_OUT_EXPERIMENT: [f64; 90] = [
        2.5, 2.5, 2.0, 2.5,
        3.5, 2.0, 3.5, 1.5,
        3.0, 3.0, 2.5, 3.5,
        2.0, 2.5, 2.0, 2.0,
        5.0, 3.0, 2.0, 1.5,
        2.0, 4.0, 3.0, 2.5,
        3.0, 2.0, 2.0, 2.0,
        2.5, 3.5, 1.5, 1.5,
        3.5, 2.0, 2.5, 2.5,
        3.0, 3.5, 2.5, 6.5,
        2.5, 4.0, 2.5, 3.0,
        2.5, 6.5, 2.5, 3.0,
        1.5, 2.0, 2.5, 3.0,
        7.5, 1.5, 2.0, 4.0,
        2.5, 2.0, 2.5, 3.5,
        4.0, 2.5, 3.0, 2.5,
        2.0, 3.5, 3.0, 16.5,
        3.0, 3.0, 7.0, 4.5,
        5.0, 2.0, 3.5, 6.0,
        1.5, 3.0, 2.5, 4.0,
        3.0, 1.5, 5.0, 3.0,
        2.5, 5.5, 3.0, 1.5,
        2.5, 6.0,
    ];

    /// MannWhitneySuite, "Tie out with R Version (Large)" experiment.
    pub const R_TIE_OUT_LARGE_EXPERIMENT: [f64; 180] = [
        1.5, 2.0, 5.0, 1.5,
        1.5, 8.5, 1.0, 1.0,
        2.0, 1.0, 1.5, 0.5,
        2.0, 1.5, 2.0, 1.5,
        1.0, 2.5, 1.5, 1.5,
        2.0, 1.5, 1.5, 1.5,
        2.0, 2.0, 1.0, 5.5,
        1.5, 2.0, 1.5, 1.5,
        1.0, 2.5, 1.0, 2.0,
        1.5, 1.5, 2.0, 2.0,
        1.5, 1.5, 1.0, 1.0,
        2.0, 0.5, 1.5, 0.5,
        3.5, 1.5, 3.0, 19.0,
        0.5, 1.5, 0.5, 1.5,
        2.0, 1.5, 1.5, 1.5,
        1.5, 2.0, 1.5, 2.0,
        2.0, 1.5, 1.0, 1.5,
        1.0, 2.0, 1.0, 2.0,
        1.5, 1.5, 3.0, 2.0,
        1.5, 1.5, 0.5, 2.0,
        1.5, 1.0, 2.0, 1.0,
        1.0, 2.0, 1.0, 2.0,
        1.5, 1.0, 1.0, 2.0,
        1.5, 1.5, 1.5, 0.5,
        1.5, 1.5, 0.5, 1.0,
        1.5, 1.5, 1.5, 1.0,
        2.0, 2.0, 2.0, 1.5,
        1.0, 1.5, 1.0, 1.0,
        1.5, 3.5, 2.0, 1.5,
        1.0, 2.0, 1.5, 5.5,
        0.5, 2.0, 3.5, 1.5,
        1.0, 2.0, 0.5, 2.5,
        1.0, 1.5, 0.5, 2.0,
        2.0, 1.0, 0.5, 1.5,
        1.0, 1.5, 0.5, 0.5,
        1.0, 1.5, 1.0, 1.5,
        0.5, 1.5, 1.0, 1.0,
        0.5, 1.0, 0.5, 4.0,
        1.0, 1.5, 2.0, 5.5,
        1.5, 0.5, 2.0, 1.0,
        1.5, 1.0, 1.5, 1.5,
        1.0, 1.5, 1.5, 1.5,
        1.5, 1.5, 1.5, 2.0,
        0.5, 1.5, 1.0, 2.0,
        1.0, 1.0, 0.5, 1.0,
    ];

    /// MannWhitneySuite, "Tie out with R Version (Large)" control.
    pub const R_TIE_OUT_LARGE_CONTROL: [f64; 180] = [
        1.5, 1.5, 1.0, 2.0,
        1.5, 1.5, 1.5, 2.0,
        1.0, 1.0, 2.0, 1.5,
        1.5, 1.0, 1.5, 1.5,
        1.5, 1.5, 1.5, 2.0,
        1.0, 1.5, 3.0, 2.0,
        1.0, 1.5, 1.5, 1.5,
        2.0, 1.5, 1.0, 1.0,
        1.5, 2.5, 2.0, 0.0,
        1.0, 2.0, 2.0, 1.5,
        3.0, 2.0, 1.0, 2.5,
        0.5, 1.5, 0.5, 2.5,
        2.0, 1.5, 1.5, 2.0,
        1.0, 4.5, 2.5, 0.5,
        2.5, 1.5, 1.5, 1.0,
        2.0, 1.0, 2.5, 1.5,
        2.0, 1.5, 3.0, 1.5,
        1.5, 1.5, 1.5, 2.0,
        1.0, 2.5, 1.0, 1.5,
        2.5, 1.5, 2.5, 2.0,
        1.5, 1.5, 1.5, 2.5,
        1.0, 7.5, 1.5, 3.0,
        5.5, 1.0, 1.5, 2.0,
        1.0, 1.5, 2.5, 2.5,
        1.0, 1.0, 2.5, 1.5,
        1.5, 3.0, 4.0, 1.0,
        1.5, 2.0, 1.5, 1.5,
        1.5, 2.5, 1.5, 3.5,
        2.5, 1.5, 2.0, 1.0,
        4.0, 1.5, 1.0, 1.5,
        2.5, 2.5, 2.0, 2.5,
        1.5, 1.5, 2.0, 1.0,
        1.5, 2.0, 1.5, 1.0,
        2.5, 1.5, 1.5, 2.0,
        2.0, 1.0, 1.5, 2.5,
        0.5, 2.0, 2.5, 2.0,
        1.0, 2.0, 0.5, 1.5,
        1.0, 2.5, 1.0, 1.5,
        1.0, 7.0, 1.0, 3.5,
        1.5, 2.0, 1.5, 1.5,
        2.0, 3.0, 1.5, 1.5,
        2.0, 1.5, 2.0, 1.5,
        4.0, 2.0, 1.5, 1.5,
        1.5, 1.5, 1.5, 0.5,
        2.0, 1.0, 1.5, 0.5,
    ];
    }
}
