//! Verification of a holdout experiment (`SCHEDULE_EXPERIMENT`): the treatment arm against
//! the control arm **within the same cycles**. Each cycle gives one paired difference
//! `D_k = ȳ_treatment − ȳ_control` with weight `w_k = 1 / (1/n_t + 1/n_c)`; whatever the
//! two arms share in a cycle — the hour of the day, a burst, a fault — cancels in it, so the
//! comparison needs neither a baseline nor control domains, and the daily cycle cannot fool
//! it.
//!
//! The evidence is the same normal-mixture e-value as the before/after method
//! ([`super::stats::sequential`]), here for the mean of the paired differences:
//! `d = Σ w_k D_k / W`, `s = σ̂ / sqrt(W)`, with σ̂² the between-cycle variance per unit weight
//! (bursts and overdispersion widen it) floored at the within-cycle variance. It is examined
//! every cycle: harm (the target or a guardrail, Holm-corrected) first, then a credible
//! improvement beyond the template's minimum effect (→ verified → promote), then futility
//! (→ no effect → abandon), then the horizon (→ inconclusive → abandon).

use super::sequential::{natural, on_scale};
use super::series::{DomainCycle, Pooled, Scale, scale_of};
use super::stats::sequential::{p_above, p_below};
use super::{
    KpiTest, Outcome, Verdict, VerifyConfig, VerifyInput, direction_of, harm_first,
    judge_guardrails,
};
use crate::kpi::{ArmWindows, Direction, builtin};
use serde::{Deserialize, Serialize};

/// One cycle of an experiment: each arm's summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArmCycle {
    pub control: DomainCycle,
    pub treatment: DomainCycle,
}

impl ArmCycle {
    pub fn of(w: &ArmWindows) -> ArmCycle {
        ArmCycle {
            control: DomainCycle::of(&w.control),
            treatment: DomainCycle::of(&w.treatment),
        }
    }
}

/// The paired comparison of one KPI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Weighted mean of `treatment − control` on the test scale (raw direction).
    pub estimate: f64,
    pub std_error: f64,
    /// σ̂² per unit weight.
    pub variance: f64,
    /// Σ w_k.
    pub weight: f64,
    /// Cycles with data in both arms.
    pub cycles: usize,
    /// Each arm's pooled mean (test scale) and count.
    pub control_mean: f64,
    pub treatment_mean: f64,
    pub control_n: f64,
    pub treatment_n: f64,
}

/// Pairs the arms' values of `kpi_name` cycle by cycle. `None` until each arm has
/// `min_samples` observations in at least two cycles with both arms observed (and, for
/// durations and scores, enough repeated observations within cycles to bound the variance):
/// a handful of incidents cannot tell their spread, so nothing is judged on them.
pub fn paired(kpi_name: &str, arms: &[ArmCycle], min_samples: u64) -> Option<Paired> {
    let rate = scale_of(kpi_name) == Scale::Rate;
    let mut obs: Vec<(f64, f64)> = Vec::new();
    let (mut ct, mut tt) = (Pooled::default(), Pooled::default());
    let (mut within_ss, mut within_n, mut groups) = (0.0, 0.0, 0.0);
    for c in arms {
        let (mut cp, mut tp) = (Pooled::default(), Pooled::default());
        cp.add(kpi_name, &c.control);
        tp.add(kpi_name, &c.treatment);
        let (Some(cm), Some(tm)) = (cp.mean(), tp.mean()) else {
            continue;
        };
        obs.push((tm - cm, 1.0 / (1.0 / cp.n + 1.0 / tp.n)));
        for p in [cp, tp] {
            if p.n >= 2.0 && !rate {
                let m = p.sum / p.n;
                within_ss += (p.sum_sq - p.n * m * m).max(0.0);
                within_n += p.n;
                groups += 1.0;
            }
        }
        for (acc, p) in [(&mut ct, cp), (&mut tt, tp)] {
            acc.n += p.n;
            acc.sum += p.sum;
        }
    }
    let min = min_samples.max(1) as f64;
    if obs.len() < 2 || ct.n < min || tt.n < min || !rate && within_n - groups < min {
        return None;
    }
    let w: f64 = obs.iter().map(|(_, w)| w).sum();
    let d = obs.iter().map(|(x, w)| w * x).sum::<f64>() / w;
    let between = if obs.len() > 1 {
        obs.iter().map(|(x, wk)| wk * (x - d).powi(2)).sum::<f64>() / (obs.len() - 1) as f64
    } else {
        0.0
    };
    let floor = if rate {
        let p = ((ct.sum + tt.sum) / (ct.n + tt.n)).clamp(0.0, 1.0);
        (p * (1.0 - p)).max(0.001 * 0.999)
    } else if within_n - groups > 0.0 {
        within_ss / (within_n - groups)
    } else {
        0.0
    };
    let variance = between.max(floor).max(1e-12);
    Some(Paired {
        estimate: d,
        std_error: (variance / w).sqrt(),
        variance,
        weight: w,
        cycles: obs.len(),
        control_mean: ct.sum / ct.n,
        treatment_mean: tt.sum / tt.n,
        control_n: ct.n,
        treatment_n: tt.n,
    })
}

fn tau(cfg: &VerifyConfig, scale: Scale, level: f64) -> f64 {
    match scale {
        Scale::Rate => cfg.mixture_scale_rate,
        Scale::LogDuration => cfg.mixture_scale_duration,
        Scale::Score => cfg.mixture_scale_score.max(0.05 * level.abs()).max(1e-9),
    }
}

fn kpi_test(kpi: &str, p: &Paired, dir: Direction, tolerance: f64) -> KpiTest {
    let scale = scale_of(kpi);
    let better = dir.better(p.estimate);
    let control = natural(scale, p.control_mean);
    KpiTest {
        kpi: kpi.to_string(),
        test: "mixture_sequential_paired_arms".into(),
        n_pre: p.control_n.round() as u64,
        n_post: p.treatment_n.round() as u64,
        pre: control,
        post: natural(scale, p.treatment_mean),
        statistic: Some(better / p.std_error).filter(|z| z.is_finite()),
        p_value: None,
        p_worse: None,
        p_adjusted: None,
        effect: match scale {
            Scale::LogDuration => control * (1.0 - (-better).exp()),
            _ => better,
        },
        tolerance,
        failed: false,
        note: String::new(),
    }
}

/// Decides an experiment at this look, or `None` to keep it running. `pre` / `post` of the
/// verdict's tests are the control and treatment arms.
pub fn evaluate(cfg: &VerifyConfig, input: &VerifyInput<'_>, arms: &[ArmCycle]) -> Option<Verdict> {
    let kpi = input.target_kpi;
    let dir = direction_of(kpi, input.goals);
    let horizon = input.post_cycles >= cfg.experiment_horizon_cycles;
    let min = cfg.experiment_min_arm_samples;
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
        adjustment:
            "concurrent arms: treatment minus control within each cycle (the time of day cancels)"
                .into(),
    };
    if input.post_cycles == 0 {
        return None;
    }
    let Some(t) = paired(kpi, arms, min) else {
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
                "no cycle with {kpi} in both arms after {} cycles",
                input.post_cycles
            ),
        ));
    };
    let scale = scale_of(kpi);
    let mde = on_scale(scale, input.min_effect.unwrap_or(0.0).max(0.0));
    let better = dir.better(t.estimate);
    let tau_t = tau(cfg, scale, t.control_mean);
    let se = t.std_error;
    let p_better = p_above(better, mde, se, tau_t);
    let p_worse = p_below(better, 0.0, se, tau_t);
    let p_futile = p_below(better, mde, se, tau_t);
    let mut target = kpi_test(kpi, &t, dir, 0.0);
    target.p_value = Some(p_better);
    target.p_worse = Some(p_worse);

    let mut guardrails = Vec::new();
    for g in input.goals {
        if g.kpi == kpi || builtin(&g.kpi).is_none() {
            continue;
        }
        let Some(gt) = paired(&g.kpi, arms, min) else {
            continue;
        };
        let gscale = scale_of(&g.kpi);
        let tol = cfg.tolerance(&g.kpi, input.side_effects);
        let gbetter = g.direction.better(gt.estimate);
        let mut test = kpi_test(&g.kpi, &gt, g.direction, tol);
        test.p_value = Some(p_below(
            gbetter,
            -on_scale(gscale, tol),
            gt.std_error,
            tau(cfg, gscale, gt.control_mean),
        ));
        guardrails.push(test);
    }
    let failed = judge_guardrails(&mut guardrails, cfg.guardrail_alpha);
    let settled = input.post_cycles >= cfg.min_cycles;
    let (outcome, reason) = if let Some(harm) = harm_first(
        cfg,
        &mut target,
        p_worse,
        &failed,
        "credibly worse in the treatment arm",
        "anytime p",
    ) {
        harm
    } else if settled && p_better < cfg.alpha {
        target.note = "treatment credibly better".into();
        (
            Outcome::Verified,
            format!(
                "{kpi} better in the treatment arm than in the control arm by more than {} (anytime p = {p_better:.4} < {})",
                input.min_effect.unwrap_or(0.0),
                cfg.alpha
            ),
        )
    } else if settled && p_futile < cfg.alpha {
        target.note = "a useful improvement is ruled out".into();
        (
            Outcome::NoEffect,
            format!(
                "{kpi} in the treatment arm is not better by {} or more (anytime p = {p_futile:.4} < {})",
                input.min_effect.unwrap_or(0.0),
                cfg.alpha
            ),
        )
    } else if horizon {
        target.note = "horizon reached".into();
        (
            Outcome::Inconclusive,
            format!(
                "evidence still short after {} cycles (improvement p = {p_better:.4}, degradation p = {p_worse:.4})",
                input.post_cycles
            ),
        )
    } else {
        return None;
    };
    Some(verdict(outcome, target, guardrails, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goal::default_goals;
    use crate::kpi::{self, DomainWindow, RateCounts};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeMap;

    /// `cycles` cycles with `n` incidents per arm; success probability `p(hour) + effect` in
    /// the treatment arm and `p(hour)` in the control arm, where the hour swings the
    /// probability by ±`swing` over a day of 288 cycles.
    fn simulate(seed: u64, cycles: usize, n: u64, effect: f64, swing: f64) -> Vec<ArmCycle> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..cycles)
            .map(|k| {
                let hour = (k % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let p = 0.85 + swing * hour.sin();
                let mut draw = |p: f64| {
                    let s = (0..n).filter(|_| rng.random::<f64>() < p).count() as u64;
                    DomainCycle {
                        success: RateCounts {
                            successes: s,
                            trials: n,
                        },
                        ..DomainCycle::default()
                    }
                };
                ArmCycle {
                    control: draw(p),
                    treatment: draw((p + effect).min(1.0)),
                }
            })
            .collect()
    }

    /// Looks every cycle until a verdict; the verdict and the cycle it came at.
    fn run(arms: &[ArmCycle], min_effect: f64) -> Option<(Outcome, usize)> {
        let cfg = VerifyConfig::default();
        let goals = default_goals();
        let empty = DomainWindow::default();
        let side = BTreeMap::new();
        for k in 1..=arms.len() {
            let input = VerifyInput {
                target_domain: "a",
                target_kpi: kpi::OVERALL_SUCCESS_RATE,
                side_effects: &side,
                min_effect: Some(min_effect),
                goals: &goals,
                pre: &empty,
                post: &empty,
                pre_series: &[],
                post_series: &[],
                controls: &[],
                post_cycles: k as u32,
            };
            if let Some(v) = evaluate(&cfg, &input, &arms[..k]) {
                return Some((v.outcome, k));
            }
        }
        None
    }

    #[test]
    fn paired_difference_matches_a_hand_computation() {
        let cyc = |cs: u64, cn: u64, ts: u64, tn: u64| ArmCycle {
            control: DomainCycle {
                success: RateCounts {
                    successes: cs,
                    trials: cn,
                },
                ..DomainCycle::default()
            },
            treatment: DomainCycle {
                success: RateCounts {
                    successes: ts,
                    trials: tn,
                },
                ..DomainCycle::default()
            },
        };
        // D = 0.1 (w = 1/(1/10+1/10) = 5) and D = 0.3 (w = 1/(1/20+1/20) = 10)
        let arms = [cyc(5, 10, 6, 10), cyc(10, 20, 16, 20)];
        let p = paired(kpi::OVERALL_SUCCESS_RATE, &arms, 30).unwrap();
        assert!(paired(kpi::OVERALL_SUCCESS_RATE, &arms, 31).is_none());
        assert!(paired(kpi::OVERALL_SUCCESS_RATE, &arms[..1], 1).is_none());
        let d = (5.0 * 0.1 + 10.0 * 0.3) / 15.0;
        assert!((p.estimate - d).abs() < 1e-12);
        let between = (5.0 * (0.1f64 - d).powi(2) + 10.0 * (0.3f64 - d).powi(2)) / 1.0;
        // pooled success 37/60: the floor p(1-p)
        let pp = 37.0 / 60.0;
        let var = between.max(pp * (1.0 - pp));
        assert!((p.variance - var).abs() < 1e-12);
        assert!((p.std_error - (var / 15.0).sqrt()).abs() < 1e-12);
        assert_eq!(p.cycles, 2);
    }

    /// A strong daily cycle with no effect: the arms share it, so no verdict of improvement
    /// or harm beyond the error rate, across seeds; a true effect beyond the minimum is
    /// verified, and a harmful one is caught.
    #[test]
    fn the_daily_cycle_does_not_fool_paired_arms() {
        let seeds = 200;
        let mut false_verified = 0;
        let mut false_degraded = 0;
        for seed in 0..seeds {
            let arms = simulate(seed, 576, 10, 0.0, 0.08);
            match run(&arms, 0.01) {
                Some((Outcome::Verified, _)) => false_verified += 1,
                Some((Outcome::Degraded, _)) => false_degraded += 1,
                _ => {}
            }
        }
        // α = 0.01 for improvement, 0.05 for harm (and guardrails); allow the simulation's
        // binomial noise
        assert!(
            false_verified <= 5,
            "{false_verified} of {seeds} falsely verified"
        );
        assert!(
            false_degraded <= 18,
            "{false_degraded} of {seeds} falsely degraded"
        );

        let mut verified = 0;
        for seed in 1000..1050 {
            let arms = simulate(seed, 576, 10, 0.06, 0.08);
            if matches!(run(&arms, 0.01), Some((Outcome::Verified, _))) {
                verified += 1;
            }
        }
        assert!(
            verified >= 45,
            "a +6-point effect verified in {verified} of 50"
        );

        let mut degraded = 0;
        for seed in 2000..2050 {
            let arms = simulate(seed, 576, 10, -0.06, 0.08);
            if matches!(run(&arms, 0.01), Some((Outcome::Degraded, _))) {
                degraded += 1;
            }
        }
        assert!(degraded >= 45, "a −6-point harm caught in {degraded} of 50");
    }
}
