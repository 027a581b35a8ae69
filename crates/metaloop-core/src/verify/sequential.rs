//! The default verification method: the evidence is examined every cycle with anytime-valid
//! statistics ([`super::stats::sequential`]), so harm is rolled back as soon as it shows, a
//! credible improvement is verified as soon as it is credible, and a low-volume domain simply
//! takes longer, up to a horizon (→ `inconclusive`). See `docs/VERIFICATION.md`.

use super::series::{Aligned, PreStats, Scale, scale_of};
use super::stats::sequential::{Shift, p_above, p_below, shift_after};
use super::{
    KpiTest, Outcome, Seasonality, Verdict, VerifyConfig, VerifyInput, direction_of, harm_first,
    judge_guardrails, stats,
};
use crate::kpi::{Direction, builtin};

/// The mixture scale is at least this many baseline standard errors.
const PRE_PRECISION_MULTIPLE: f64 = 3.0;

/// A shift on a KPI's test scale, with the numbers a verdict records.
struct Tested {
    shift: Shift,
    /// The better-signed shift on the test scale.
    better: f64,
    tau: f64,
    /// The target's own pooled value before and after, on the KPI's natural scale.
    pre: f64,
    post: f64,
}

pub(super) fn natural(scale: Scale, v: f64) -> f64 {
    if scale == Scale::LogDuration {
        v.exp()
    } else {
        v
    }
}

/// A tolerance or minimum effect on the test scale.
pub(super) fn on_scale(scale: Scale, x: f64) -> f64 {
    if scale == Scale::LogDuration {
        (1.0 + x).ln()
    } else {
        x
    }
}

/// Tests one KPI over the first `post_len` post cycles of `aligned`.
fn test(
    cfg: &VerifyConfig,
    kpi: &str,
    dir: Direction,
    aligned: &Aligned<'_>,
    post_len: usize,
) -> Option<Tested> {
    let scale = scale_of(kpi);
    // the pre window's moments are kept from the first look: each look adds its post cycles
    let (sh, pre_level) = aligned
        .with_observations(kpi, true, post_len, |obs| {
            // no moments: no weight before, and so no shift
            let pre = obs.pre_moments?;
            shift_after(&pre, obs.post, obs.floor_variance).map(|sh| (sh, obs.pre_level))
        })
        .flatten()?;
    // the target's own level, without the controls, for humans (the pre one is the kept
    // mean: the same sums)
    let level = |o: &[stats::sequential::CycleObservation]| {
        let w: f64 = o.iter().map(|x| x.weight).sum();
        o.iter().map(|x| x.weight * x.value).sum::<f64>() / w
    };
    let (own_pre, own_post) = aligned.with_observations(kpi, false, post_len, |own| {
        let pre = match &own.pre_moments {
            Some(m) => m.mean,
            None => level(own.pre),
        };
        (pre, level(own.post))
    })?;
    let tau = match scale {
        Scale::Rate => cfg.mixture_scale_rate,
        Scale::LogDuration => cfg.mixture_scale_duration,
        Scale::Score => cfg
            .mixture_scale_score
            .max(0.05 * pre_level.abs())
            .max(1e-9),
    }
    // the baseline bounds the precision (the standard error never falls below
    // σ/sqrt(W_pre)): a mixture narrower than a few of those wastes most of the evidence
    // of the effects this baseline can detect
    .max(PRE_PRECISION_MULTIPLE * (sh.variance / sh.pre_weight).sqrt());
    Some(Tested {
        better: dir.better(sh.estimate),
        shift: sh,
        tau,
        pre: natural(scale, own_pre),
        post: natural(scale, own_post),
    })
}

fn kpi_test(kpi: &str, t: &Tested, tolerance: f64) -> KpiTest {
    let scale = scale_of(kpi);
    // the effect on the natural scale, signed so that positive is better
    let effect = match scale {
        Scale::LogDuration => t.pre * (1.0 - (-t.better).exp()),
        _ => t.better,
    };
    KpiTest {
        kpi: kpi.to_string(),
        test: "mixture_sequential".into(),
        n_pre: t.shift.pre_weight.round() as u64,
        n_post: t.shift.post_weight.round() as u64,
        pre: t.pre,
        post: t.post,
        statistic: Some(t.better / t.shift.std_error).filter(|z| z.is_finite()),
        p_value: None,
        p_worse: None,
        p_adjusted: None,
        effect,
        tolerance,
        failed: false,
        note: String::new(),
    }
}

/// Decides a verification at this look, or `None` to keep observing.
pub fn evaluate(cfg: &VerifyConfig, input: &VerifyInput<'_>) -> Option<Verdict> {
    evaluate_with(cfg, input, &mut PreStats::default())
}

/// [`evaluate`], reusing (and extending) the pre-window statistics of the verification's
/// earlier looks.
pub fn evaluate_with(
    cfg: &VerifyConfig,
    input: &VerifyInput<'_>,
    memo: &mut PreStats,
) -> Option<Verdict> {
    let adjusted = cfg.seasonality == Seasonality::None || !input.controls.is_empty();
    // written only into a verdict
    let adjustment = || {
        if !input.controls.is_empty() {
            format!(
                "difference against control domains {}",
                input
                    .controls
                    .iter()
                    .map(|c| match c.until {
                        Some(t) => format!("{} (until {})", c.domain, t.to_rfc3339()),
                        None => c.domain.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if cfg.seasonality == Seasonality::None {
            "none (no daily cycle assumed)".to_string()
        } else {
            "none: no control domain without a change of its own since the pre window began"
                .to_string()
        }
    };
    // every control domain has changed since: no further cycle can be compared
    let controls_gone =
        !input.controls.is_empty() && input.controls.iter().all(|c| c.until.is_some());
    let horizon = input.post_cycles >= cfg.max_horizon_cycles || controls_gone;
    if input.post_cycles == 0 {
        return None;
    }
    let aligned = Aligned::with_memo(
        input.target_domain,
        input.controls,
        input.pre_series,
        input.post_series,
        std::mem::take(memo),
    );
    let verdict = judge_look(
        cfg,
        input,
        &aligned,
        &adjustment,
        controls_gone,
        horizon,
        adjusted,
    );
    *memo = aligned.into_memo();
    verdict
}

/// One look of [`evaluate_with`] over the aligned cycles.
fn judge_look(
    cfg: &VerifyConfig,
    input: &VerifyInput<'_>,
    aligned: &Aligned<'_>,
    adjustment: &dyn Fn() -> String,
    controls_gone: bool,
    horizon: bool,
    adjusted: bool,
) -> Option<Verdict> {
    let kpi = input.target_kpi;
    let dir = direction_of(kpi, input.goals);
    let verdict = |outcome, target: KpiTest, guardrails, reason: String| Verdict {
        method: cfg.method,
        outcome,
        target,
        guardrails,
        alpha: cfg.alpha,
        degrade_alpha: cfg.degrade_alpha,
        guardrail_alpha: cfg.guardrail_alpha,
        min_samples: 0,
        post_cycles: input.post_cycles,
        reason,
        adjustment: adjustment(),
    };
    let post_len = input.post_series.len();
    let Some(t) = test(cfg, kpi, dir, aligned, post_len) else {
        if !horizon {
            return None;
        }
        let mut empty = KpiTest::empty(kpi);
        empty.note = "no data".into();
        return Some(verdict(
            Outcome::Inconclusive,
            empty,
            vec![],
            format!(
                "no observations of {kpi} on both sides after {} cycles",
                input.post_cycles
            ),
        ));
    };
    let scale = scale_of(kpi);
    let mde = on_scale(scale, input.min_effect.unwrap_or(0.0).max(0.0));
    let se = t.shift.std_error;
    let p_better = p_above(t.better, mde, se, t.tau);
    let p_worse = p_below(t.better, 0.0, se, t.tau);
    let p_futile = p_below(t.better, mde, se, t.tau);
    let mut target = kpi_test(kpi, &t, 0.0);
    target.p_value = Some(p_better);
    target.p_worse = Some(p_worse);

    let mut guardrails = Vec::new();
    for g in input.goals {
        if g.kpi == kpi || builtin(&g.kpi).is_none() {
            continue;
        }
        let Some(gt) = test(cfg, &g.kpi, g.direction, aligned, post_len) else {
            continue;
        };
        if gt.shift.pre_cycles < 2 || gt.shift.post_cycles < 1 {
            continue;
        }
        let gscale = scale_of(&g.kpi);
        let tol = cfg.tolerance(&g.kpi, input.side_effects);
        let gse = gt.shift.std_error;
        let mut test = kpi_test(&g.kpi, &gt, tol);
        let mut p = p_below(gt.better, -on_scale(gscale, tol), gse, gt.tau);
        if g.met_by(gt.pre) && !g.met_by(gt.post) {
            let strict = p_below(gt.better, 0.0, gse, gt.tau);
            if strict < p {
                p = strict;
                test.note = format!("moved from meeting its goal ({}) to missing it", g.target);
            }
        }
        test.p_value = Some(p);
        guardrails.push(test);
    }
    let failed = judge_guardrails(&mut guardrails, cfg.guardrail_alpha);
    let settled = input.post_cycles >= cfg.min_cycles;
    let (outcome, reason) = if let Some(harm) = harm_first(
        cfg,
        &mut target,
        p_worse,
        &failed,
        "credibly worse",
        "anytime p",
    ) {
        harm
    } else if settled && adjusted && p_better < cfg.alpha {
        target.note = "credibly better".into();
        (
            Outcome::Verified,
            format!(
                "{kpi} improved by more than {} (anytime p = {p_better:.4} < {})",
                input.min_effect.unwrap_or(0.0),
                cfg.alpha
            ),
        )
    } else if settled && adjusted && p_futile < cfg.alpha {
        target.note = "a useful improvement is ruled out".into();
        (
            Outcome::NoEffect,
            format!(
                "{kpi} did not improve by {} or more (anytime p = {p_futile:.4} < {})",
                input.min_effect.unwrap_or(0.0),
                cfg.alpha
            ),
        )
    } else if horizon {
        target.note = "horizon reached".into();
        let why = if controls_gone {
            format!(
                "every control domain changed before the evidence was enough ({} cycles)",
                input.post_cycles
            )
        } else if adjusted {
            format!("evidence still short after {} cycles", input.post_cycles)
        } else {
            format!(
                "after {} cycles no control domain could separate the change from the time of day",
                input.post_cycles
            )
        };
        (
            Outcome::Inconclusive,
            format!("{why} (improvement p = {p_better:.4}, degradation p = {p_worse:.4})"),
        )
    } else {
        return None;
    };
    Some(verdict(outcome, target, guardrails, reason))
}

/// The evidence at one look of a sequential verification.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Look {
    /// Post cycles seen at this look.
    pub post_cycles: u32,
    /// The change of the target KPI on its natural scale, signed so that positive is better.
    pub effect: f64,
    /// The anytime-valid `1 - alpha` confidence sequence of the effect at this look.
    pub lower: f64,
    pub upper: f64,
    /// Anytime p-value of an improvement by the least effect worth keeping.
    pub p_better: f64,
    /// Anytime p-value of a degradation.
    pub p_worse: f64,
}

/// The evidence of the target KPI at every look so far: the post window cut after 1, 2, …
/// of its cycles, each with the same statistics the verdict uses, and the effect's
/// confidence sequence at level `alpha` (two-sided: `alpha / 2` each side). Empty when the
/// data do not allow a test.
pub fn trace(cfg: &VerifyConfig, input: &VerifyInput<'_>, alpha: f64) -> Vec<Look> {
    let kpi = input.target_kpi;
    let dir = direction_of(kpi, input.goals);
    let scale = scale_of(kpi);
    let mde = on_scale(scale, input.min_effect.unwrap_or(0.0).max(0.0));
    let mut out = Vec::new();
    let aligned = Aligned::new(
        input.target_domain,
        input.controls,
        input.pre_series,
        input.post_series,
    );
    for k in 1..=input.post_series.len() {
        let Some(t) = test(cfg, kpi, dir, &aligned, k) else {
            continue;
        };
        let se = t.shift.std_error;
        let (lo, hi) = confidence_sequence(t.better, se, t.tau, alpha);
        // natural scale: durations are tested as logs, shown in seconds
        let natural = |x: f64| match scale {
            Scale::LogDuration => t.pre * (1.0 - (-x).exp()),
            _ => x,
        };
        out.push(Look {
            post_cycles: k as u32,
            effect: natural(t.better),
            lower: natural(lo),
            upper: natural(hi),
            p_better: p_above(t.better, mde, se, t.tau),
            p_worse: p_below(t.better, 0.0, se, t.tau),
        });
    }
    out
}

/// The shifts `m` that neither one-sided mixture test rejects at `alpha / 2` given the
/// estimate `d`: `[lo, hi]` with `p_above(d, lo) = alpha / 2 = p_below(d, hi)`. Each bound is
/// an anytime-valid test inverted, so the interval is a confidence sequence.
pub fn confidence_sequence(d: f64, s: f64, tau: f64, alpha: f64) -> (f64, f64) {
    if !(s > 0.0 && tau > 0.0 && d.is_finite() && alpha > 0.0 && alpha < 1.0) {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    let level = alpha / 2.0;
    let reach = 60.0 * s + 60.0 * tau;
    // p_above(d, m) rises with m: the lower bound is where it reaches the level
    let mut a = d - reach;
    let mut b = d;
    for _ in 0..200 {
        let m = 0.5 * (a + b);
        if p_above(d, m, s, tau) < level {
            a = m;
        } else {
            b = m;
        }
    }
    let lo = 0.5 * (a + b);
    // p_below(d, m) falls as m rises: the upper bound is where it drops to the level
    let (mut a, mut b) = (d, d + reach);
    for _ in 0..200 {
        let m = 0.5 * (a + b);
        if p_below(d, m, s, tau) < level {
            b = m;
        } else {
            a = m;
        }
    }
    (lo, 0.5 * (a + b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goal::default_goals;
    use crate::kpi::{self, DomainWindow, RateCounts};
    use crate::time::Timestamp;
    use crate::verify::series::{Control, CycleSummary, DomainCycle};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn rate(p: f64, n: u64) -> RateCounts {
        RateCounts {
            successes: (p * n as f64).round() as u64,
            trials: n,
        }
    }

    /// `cycles` cycles from `first`, target `a` with success `s` and autonomy `auto`, control
    /// `b` steady; alternate cycles move ±1 point so the cycles vary a little.
    fn cycles(first: u64, cycles: u64, s: f64, auto: f64) -> Vec<Arc<CycleSummary>> {
        (first..first + cycles)
            .map(|i| {
                let wiggle = if i % 2 == 0 { 0.01 } else { -0.01 };
                let dom = |s: f64, a: f64| DomainCycle {
                    success: rate(s + wiggle, 1000),
                    autonomy: rate(a + wiggle, 1000),
                    intervention: rate(0.05, 1000),
                    ..DomainCycle::default()
                };
                CycleSummary {
                    cycle: i,
                    start: Timestamp(i as i64 * 300_000),
                    end: Timestamp((i + 1) as i64 * 300_000),
                    domains: BTreeMap::from([
                        ("a".to_string(), dom(s, auto)),
                        ("b".to_string(), dom(0.90, 0.80)),
                    ]),
                }
            })
            .map(Arc::new)
            .collect()
    }

    /// One look with target `a` and, when `controlled`, control `b`.
    fn decide_on(
        cfg: &VerifyConfig,
        side: &BTreeMap<String, f64>,
        pre: &[Arc<CycleSummary>],
        post: &[Arc<CycleSummary>],
        controlled: bool,
        post_cycles: u32,
    ) -> Option<Verdict> {
        let goals = default_goals();
        let empty = DomainWindow::default();
        let controls = [Control::new("b")];
        evaluate(
            cfg,
            &VerifyInput {
                target_domain: "a",
                target_kpi: kpi::OVERALL_SUCCESS_RATE,
                side_effects: side,
                min_effect: Some(0.01),
                goals: &goals,
                pre: &empty,
                post: &empty,
                pre_series: pre,
                post_series: post,
                controls: if controlled { &controls } else { &[] },
                post_cycles,
            },
        )
    }

    #[test]
    fn the_trace_ends_where_the_verdict_is_reached() {
        let cfg = VerifyConfig::default();
        let side = BTreeMap::new();
        let pre = cycles(0, 12, 0.85, 0.8);
        let post = cycles(12, 6, 0.90, 0.8);
        let goals = default_goals();
        let empty = DomainWindow::default();
        let controls = [Control::new("b")];
        let input = VerifyInput {
            target_domain: "a",
            target_kpi: kpi::OVERALL_SUCCESS_RATE,
            side_effects: &side,
            min_effect: Some(0.01),
            goals: &goals,
            pre: &empty,
            post: &empty,
            pre_series: &pre,
            post_series: &post,
            controls: &controls,
            post_cycles: 6,
        };
        let looks = trace(&cfg, &input, cfg.alpha);
        assert_eq!(looks.len(), 6);
        assert_eq!(
            looks.iter().map(|l| l.post_cycles).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        let verdict = evaluate(&cfg, &input).expect("decided");
        let last = looks.last().unwrap();
        assert_eq!(Some(last.p_better), verdict.target.p_value);
        assert_eq!(Some(last.p_worse), verdict.target.p_worse);
        assert!((last.effect - verdict.target.effect).abs() < 1e-12);
        // a 5-point improvement: the evidence grows and the interval excludes zero at the end
        assert!(looks[5].p_better < looks[0].p_better);
        assert!(last.lower > 0.0 && last.lower < last.effect && last.effect < last.upper);
        assert!((last.effect - 0.05).abs() < 0.01, "{last:?}");
    }

    #[test]
    fn the_confidence_sequence_inverts_both_one_sided_tests() {
        for (d, s, tau) in [(0.04, 0.01, 0.03), (-0.2, 0.05, 0.1), (0.0, 1.0, 1.0)] {
            let alpha = 0.05;
            let (lo, hi) = confidence_sequence(d, s, tau, alpha);
            assert!(lo < d && d < hi, "{lo} < {d} < {hi}");
            // at each bound the mixture e-value is exactly 2 / alpha
            use crate::verify::stats::sequential::ln_mixture_e_above;
            let e_lo = ln_mixture_e_above(d, lo, s, tau);
            let e_hi = ln_mixture_e_above(-d, -hi, s, tau);
            assert!((e_lo - (2.0 / alpha).ln()).abs() < 1e-6, "{e_lo}");
            assert!((e_hi - (2.0 / alpha).ln()).abs() < 1e-6, "{e_hi}");
            // wider than the fixed-sample normal interval (it holds at every look)
            assert!(hi - lo > 2.0 * 1.96 * s, "{lo}..{hi}");
        }
        assert_eq!(
            confidence_sequence(0.0, 0.0, 1.0, 0.05),
            (f64::NEG_INFINITY, f64::INFINITY)
        );
    }

    #[test]
    fn the_confidence_sequence_covers_the_true_shift() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (delta, s, tau, alpha) = (0.02, 0.01, 0.03, 0.05);
        let n = 4000;
        let mut missed = 0;
        for _ in 0..n {
            // a normal draw by Box–Muller
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            let (lo, hi) = confidence_sequence(delta + s * z, s, tau, alpha);
            if !(lo <= delta && delta <= hi) {
                missed += 1;
            }
        }
        assert!(
            (missed as f64) / (n as f64) < alpha,
            "missed {missed} of {n}"
        );
    }

    fn look(post_auto: f64, pre_auto: f64, tolerance: f64) -> Verdict {
        let side = BTreeMap::from([(kpi::AUTONOMY_RATE.to_string(), tolerance)]);
        let pre = cycles(0, 12, 0.85, pre_auto);
        let post = cycles(12, 6, 0.90, post_auto);
        decide_on(&VerifyConfig::default(), &side, &pre, &post, true, 6)
            .expect("6 cycles of 1,000 incidents decide")
    }

    #[test]
    fn a_guardrail_beyond_its_tolerance_fails_the_directive() {
        // success +5 points, but autonomy -20 points against a declared 10
        let v = look(0.60, 0.80, 0.10);
        assert_eq!(v.outcome, Outcome::Degraded, "{}", v.reason);
        assert!(v.reason.contains("autonomy_rate"), "{}", v.reason);
        let g = v
            .guardrails
            .iter()
            .find(|g| g.kpi == kpi::AUTONOMY_RATE)
            .unwrap();
        assert!(g.failed);
        // Holm never lowers a p-value
        assert!(g.p_adjusted.unwrap() >= g.p_value.unwrap());
        assert!((g.effect + 0.20).abs() < 1e-9, "{}", g.effect);
    }

    #[test]
    fn a_declared_side_effect_within_tolerance_is_no_failure() {
        // autonomy -5 points against a declared 10 (below its 0.80 goal before and after):
        // the improvement stands
        let v = look(0.70, 0.75, 0.10);
        assert_eq!(v.outcome, Outcome::Verified, "{}", v.reason);
        assert!(v.guardrails.iter().all(|g| !g.failed));
        assert!(
            v.adjustment.contains("control domains b"),
            "{}",
            v.adjustment
        );
    }

    #[test]
    fn moving_from_meeting_a_goal_to_missing_it_fails_without_tolerance() {
        // autonomy 0.83 → 0.78 crosses the 0.80 goal: the 0.10 tolerance does not apply
        let v = look(0.78, 0.83, 0.10);
        let g = v
            .guardrails
            .iter()
            .find(|g| g.kpi == kpi::AUTONOMY_RATE)
            .unwrap();
        assert!(g.note.contains("meeting its goal"), "{}", g.note);
        assert!(g.failed, "{g:?}");
        assert_eq!(v.outcome, Outcome::Degraded);
    }

    #[test]
    fn without_a_control_no_improvement_is_credited_until_the_horizon() {
        let side = BTreeMap::new();
        let pre = cycles(0, 12, 0.85, 0.80);
        let post = cycles(12, 6, 0.95, 0.80);
        let cfg = VerifyConfig {
            max_horizon_cycles: 10,
            ..VerifyConfig::default()
        };
        assert_eq!(
            decide_on(&cfg, &side, &pre, &post, false, 6),
            None,
            "+10 points, but it could be the hour"
        );
        let v = decide_on(&cfg, &side, &pre, &post, false, 10).unwrap();
        assert_eq!(v.outcome, Outcome::Inconclusive);
        // a spine known to have no daily cycle compares directly
        let flat = VerifyConfig {
            seasonality: Seasonality::None,
            ..cfg
        };
        let v = decide_on(&flat, &side, &pre, &post, false, 6).unwrap();
        assert_eq!(v.outcome, Outcome::Verified);
    }
}
