//! Anytime-valid evidence for a shift between a fixed "pre" sample and a "post" sample that
//! grows by one cycle at each look.
//!
//! The model: per-cycle observations `y_k` with weights `w_k` (effective sample sizes), mean
//! μ_pre before the change and μ_post after it, variance σ²/w_k. The estimate of the shift
//! δ = μ_post − μ_pre is `d = ȳ_post − ȳ_pre` (weighted means), with standard error
//! `s = σ·sqrt(1/W_pre + 1/W_post)`.
//!
//! The evidence is a **mixture likelihood ratio** (Robbins 1970; the "normal mixture" of
//! Howard, Ramdas, McAuliffe & Sekhon, *Time-uniform, nonparametric, nonasymptotic
//! confidence sequences*, Ann. Statist. 49(2), 2021, §3 and eq. (14)). The pre mean is a
//! nuisance location shared by every post observation; the contrasts `y_k − ȳ_pre` are
//! invariant to it, and their likelihood ratio depends on the data through `d` alone
//! (generalised least squares with the covariance σ²·diag(1/w) + σ²/W_pre·11ᵀ), so the
//! mixture over δ is a likelihood ratio of the observed sequence — a test martingale under
//! the null (the group-invariance argument of Pérez-Ortiz, Lardy, de Heide & Grünwald,
//! *E-statistics, group invariance and anytime-valid testing*, Ann. Statist. 2024).
//! Ville's inequality then bounds the chance that it *ever* reaches 1/α by α: the verdict
//! may be examined every cycle without inflating false positives.
//!
//! For a one-sided null `δ ≤ m` the mixing distribution is a half-normal on δ − m > 0 with
//! scale τ (the size of effect the test is tuned for):
//!
//! ```text
//! E⁺ = 2 · sqrt(s² / (s² + τ²)) · exp(x² τ² / (2 s² (s² + τ²))) · Φ(x τ / (s · sqrt(s² + τ²))),   x = d − m
//! ```
//!
//! a supermartingale for every δ ≤ m (each component likelihood ratio of a Gaussian location
//! family against the boundary m has expectation ≤ 1 there). The anytime-valid p-value is
//! `min(1, 1/E⁺)`.
//!
//! σ is not known: it is estimated from the between-cycle spread of the observations (which
//! also captures overdispersion: incidents that arrive in correlated bursts make cycles vary
//! more than independent incidents would) and never below a floor from the within-cycle
//! variance. Plugging a consistent estimate into the mixture boundary is the asymptotic
//! confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, *Time-uniform
//! central limit theory and asymptotic confidence sequences*, Ann. Statist. 2024.

use super::normal::normal_cdf;

/// A weighted per-cycle observation: the cycle's mean on the test's scale and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleObservation {
    pub value: f64,
    pub weight: f64,
}

/// The shift between a pre and a post sample of cycle observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// `ȳ_post − ȳ_pre`, raw direction.
    pub estimate: f64,
    /// Standard error of the estimate, `σ̂·sqrt(1/W_pre + 1/W_post)`.
    pub std_error: f64,
    /// σ̂², per unit of weight.
    pub variance: f64,
    pub pre_mean: f64,
    pub post_mean: f64,
    pub pre_weight: f64,
    pub post_weight: f64,
    /// Cycles with data on each side.
    pub pre_cycles: usize,
    pub post_cycles: usize,
}

fn weighted(obs: &[CycleObservation]) -> Option<(f64, f64)> {
    let w: f64 = obs.iter().map(|o| o.weight).sum();
    if w <= 0.0 || !w.is_finite() {
        return None;
    }
    let m = obs.iter().map(|o| o.weight * o.value).sum::<f64>() / w;
    Some((m, w))
}

/// What a pre sample contributes to a [`Shift`]: its weighted mean, its weight, its sum of
/// weighted squared deviations from the mean, and its cycles. A verification's pre window is
/// fixed, so these are computed once and reused at every look ([`shift_after`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreMoments {
    pub mean: f64,
    pub weight: f64,
    pub ss: f64,
    pub cycles: usize,
}

/// The pre sample's moments; `None` when it has no weight.
pub fn pre_moments(pre: &[CycleObservation]) -> Option<PreMoments> {
    let (mean, weight) = weighted(pre)?;
    let ss: f64 = pre
        .iter()
        .map(|o| o.weight * (o.value - mean).powi(2))
        .sum();
    Some(PreMoments {
        mean,
        weight,
        ss,
        cycles: pre.len(),
    })
}

/// Estimates the shift. `floor_variance` is the smallest variance per unit weight accepted
/// (the within-cycle variance: cycles cannot vary less than independent observations would).
/// `None` when either side has no weight.
pub fn shift(
    pre: &[CycleObservation],
    post: &[CycleObservation],
    floor_variance: f64,
) -> Option<Shift> {
    shift_after(&pre_moments(pre)?, post, floor_variance)
}

/// [`shift`] from the pre sample's moments: the same numbers, to the bit (the post terms
/// are added to the pre sum in the order a single sum over both adds them).
pub fn shift_after(
    pre: &PreMoments,
    post: &[CycleObservation],
    floor_variance: f64,
) -> Option<Shift> {
    let PreMoments {
        mean: pre_mean,
        weight: pre_weight,
        ..
    } = *pre;
    let (post_mean, post_weight) = weighted(post)?;
    let ss: f64 = post
        .iter()
        .map(|o| o.weight * (o.value - post_mean).powi(2))
        .fold(pre.ss, |sum, x| sum + x);
    let dof = (pre.cycles + post.len()).saturating_sub(2);
    let between = if dof > 0 { ss / dof as f64 } else { 0.0 };
    let variance = between.max(floor_variance).max(1e-12);
    Some(Shift {
        estimate: post_mean - pre_mean,
        std_error: (variance * (1.0 / pre_weight + 1.0 / post_weight)).sqrt(),
        variance,
        pre_mean,
        post_mean,
        pre_weight,
        post_weight,
        pre_cycles: pre.cycles,
        post_cycles: post.len(),
    })
}

/// Natural log of the one-sided mixture e-value for the null `δ ≤ margin` against
/// `δ > margin`, from the estimate `d`, its standard error `s` and the mixture scale `tau`
/// (see the module docs for the formula).
pub fn ln_mixture_e_above(d: f64, margin: f64, s: f64, tau: f64) -> f64 {
    if !(s > 0.0 && tau > 0.0 && d.is_finite() && margin.is_finite()) {
        return 0.0;
    }
    let x = d - margin;
    let (s2, t2) = (s * s, tau * tau);
    let ln_phi = normal_cdf(x * tau / (s * (s2 + t2).sqrt())).ln();
    std::f64::consts::LN_2
        + 0.5 * (s2 / (s2 + t2)).ln()
        + x * x * t2 / (2.0 * s2 * (s2 + t2))
        + ln_phi
}

/// Anytime-valid one-sided p-value for the null `δ ≤ margin` (the evidence that the shift
/// exceeds `margin`): `min(1, 1/E⁺)`.
pub fn p_above(d: f64, margin: f64, s: f64, tau: f64) -> f64 {
    (-ln_mixture_e_above(d, margin, s, tau)).exp().min(1.0)
}

/// Anytime-valid one-sided p-value for the null `δ ≥ margin` (the evidence that the shift
/// is below `margin`).
pub fn p_below(d: f64, margin: f64, s: f64, tau: f64) -> f64 {
    p_above(-d, -margin, s, tau)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// The mixture integral ∫_{θ>0} 2 N(θ; 0, τ²) exp((xθ − θ²/2)/s²) dθ by Simpson's rule.
    fn brute_force_e(x: f64, s: f64, tau: f64) -> f64 {
        let hi = 12.0 * tau + 12.0 * s + x.abs() * 2.0;
        let n = 200_000;
        let h = hi / n as f64;
        let f = |t: f64| {
            2.0 / (tau * (2.0 * std::f64::consts::PI).sqrt())
                * (-t * t / (2.0 * tau * tau)).exp()
                * ((x * t - t * t / 2.0) / (s * s)).exp()
        };
        let mut sum = f(0.0) + f(hi);
        for i in 1..n {
            let t = i as f64 * h;
            sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(t);
        }
        sum * h / 3.0
    }

    #[test]
    fn closed_form_matches_the_mixture_integral() {
        for (x, s, tau) in [
            (0.0, 1.0, 1.0),
            (0.02, 0.01, 0.03),
            (-0.01, 0.01, 0.03),
            (0.5, 0.2, 0.1),
            (3.0, 1.0, 0.5),
        ] {
            let closed = ln_mixture_e_above(x, 0.0, s, tau).exp();
            let brute = brute_force_e(x, s, tau);
            assert!(
                ((closed - brute) / brute).abs() < 1e-7,
                "x {x} s {s} tau {tau}: closed {closed} brute {brute}"
            );
        }
    }

    #[test]
    fn known_values() {
        // at x = 0 the half-normal mixture is sqrt(s²/(s²+τ²)): 1/√2 for s = τ
        let e = ln_mixture_e_above(0.0, 0.0, 1.0, 1.0).exp();
        assert!((e - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        // Howard et al. (2021) eq. (14): the two-sided normal-mixture boundary
        // |S| = sqrt((V + ρ) log((V + ρ) / (ρ α²))) is where the two-sided mixture equals 1/α.
        // The one-sided mixture is the two-sided one times 2Φ(·), so on that boundary
        // E⁺ = 2Φ(·)/α. Check with V = 100, ρ = 10, α = 0.05 in the standardised scale
        // (s² = 1/V on the mean scale, τ² = 1/ρ).
        let (v, rho, alpha): (f64, f64, f64) = (100.0, 10.0, 0.05);
        let s_sum = ((v + rho) * ((v + rho) / (rho * alpha * alpha)).ln()).sqrt();
        let d = s_sum / v; // the mean shift whose sum reaches the boundary
        let e_plus = ln_mixture_e_above(d, 0.0, (1.0 / v).sqrt(), (1.0 / rho).sqrt()).exp();
        let phi =
            normal_cdf(d * (1.0 / rho).sqrt() / ((1.0 / v).sqrt() * (1.0 / v + 1.0 / rho).sqrt()));
        assert!(
            (e_plus - 2.0 * phi / alpha).abs() / e_plus < 1e-9,
            "{e_plus}"
        );
    }

    #[test]
    fn p_values_are_monotone_in_the_estimate_and_bounded() {
        let mut last = 1.0;
        for i in 0..50 {
            let d = i as f64 * 0.002;
            let p = p_above(d, 0.0, 0.01, 0.03);
            assert!(p <= last + 1e-15 && (0.0..=1.0).contains(&p));
            last = p;
        }
        assert!(last < 1e-6);
        assert_eq!(p_above(-0.05, 0.0, 0.01, 0.03), 1.0);
        assert!(p_below(-0.05, 0.0, 0.01, 0.03) < 1e-3);
    }

    /// Simulation with fixed seeds: a fixed pre sample of 12 cycles, then 288 looks, one per
    /// cycle, at a post sample with no true shift. The chance that the p-value *ever* falls
    /// below α must be at most α (Ville), where a fixed-sample z-test examined at every look
    /// is not.
    #[test]
    fn examining_every_cycle_keeps_the_false_positive_rate() {
        let mut rng = ChaCha8Rng::seed_from_u64(20261126);
        let (alpha, runs, looks, w): (f64, usize, usize, f64) = (0.05, 4000, 288, 50.0);
        let sigma = 0.3;
        let (mut ours, mut naive) = (0, 0);
        for _ in 0..runs {
            let draw = |rng: &mut ChaCha8Rng| CycleObservation {
                value: 0.9 + sigma / w.sqrt() * rng.sample::<f64, _>(StandardNormal),
                weight: w,
            };
            let pre: Vec<CycleObservation> = (0..12).map(|_| draw(&mut rng)).collect();
            let mut post = Vec::new();
            let (mut hit, mut naive_hit) = (false, false);
            for _ in 0..looks {
                post.push(draw(&mut rng));
                let sh = shift(&pre, &post, sigma * sigma).unwrap();
                if p_above(sh.estimate, 0.0, sh.std_error, 0.03) < alpha {
                    hit = true;
                }
                let z = sh.estimate / sh.std_error;
                if super::super::normal_sf(z) < alpha {
                    naive_hit = true;
                }
            }
            ours += usize::from(hit);
            naive += usize::from(naive_hit);
        }
        let rate = ours as f64 / runs as f64;
        let mc = (alpha * (1.0 - alpha) / runs as f64).sqrt();
        assert!(
            rate <= alpha + 3.0 * mc,
            "anytime false-positive rate {rate}"
        );
        let naive_rate = naive as f64 / runs as f64;
        assert!(
            naive_rate > 3.0 * alpha,
            "a fixed-sample test examined every cycle should be fooled often, got {naive_rate}"
        );
    }

    /// The shift from kept pre moments is the one-pass formula's, bit for bit: the oracle is
    /// that formula written out (one sum over the pre then the post terms).
    #[test]
    fn a_shift_from_kept_pre_moments_is_the_one_pass_shift() {
        fn one_pass(
            pre: &[CycleObservation],
            post: &[CycleObservation],
            floor: f64,
        ) -> Option<Shift> {
            let (pm, pw) = weighted(pre)?;
            let (qm, qw) = weighted(post)?;
            let ss: f64 = pre
                .iter()
                .map(|o| o.weight * (o.value - pm).powi(2))
                .chain(post.iter().map(|o| o.weight * (o.value - qm).powi(2)))
                .sum();
            let dof = (pre.len() + post.len()).saturating_sub(2);
            let between = if dof > 0 { ss / dof as f64 } else { 0.0 };
            let variance = between.max(floor).max(1e-12);
            Some(Shift {
                estimate: qm - pm,
                std_error: (variance * (1.0 / pw + 1.0 / qw)).sqrt(),
                variance,
                pre_mean: pm,
                post_mean: qm,
                pre_weight: pw,
                post_weight: qw,
                pre_cycles: pre.len(),
                post_cycles: post.len(),
            })
        }
        let bits = |s: &Shift| {
            [
                s.estimate,
                s.std_error,
                s.variance,
                s.pre_mean,
                s.post_mean,
                s.pre_weight,
                s.post_weight,
            ]
            .map(f64::to_bits)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for case in 0..500 {
            let n_pre = rng.random_range(1..600);
            let n_post = rng.random_range(1..80);
            let mut sample = |n: usize| -> Vec<CycleObservation> {
                (0..n)
                    .map(|_| CycleObservation {
                        value: rng.random_range(-3.0..3.0),
                        weight: rng.random_range(0.5..400.0),
                    })
                    .collect()
            };
            let pre = sample(n_pre);
            let post = sample(n_post);
            let floor = if case % 3 == 0 { 0.0 } else { 0.05 };
            let kept = pre_moments(&pre).unwrap();
            let a = shift_after(&kept, &post, floor).unwrap();
            let b = one_pass(&pre, &post, floor).unwrap();
            assert_eq!(bits(&a), bits(&b), "case {case}");
            assert_eq!((a.pre_cycles, a.post_cycles), (b.pre_cycles, b.post_cycles));
            assert_eq!(bits(&shift(&pre, &post, floor).unwrap()), bits(&b));
        }
        // no weight on a side: no shift
        assert!(pre_moments(&[]).is_none());
        let pre = [CycleObservation {
            value: 1.0,
            weight: 1.0,
        }];
        assert!(shift_after(&pre_moments(&pre).unwrap(), &[], 0.1).is_none());
    }

    #[test]
    fn a_real_shift_is_found() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (w, sigma): (f64, f64) = (100.0, 0.3);
        let pre: Vec<CycleObservation> = (0..12)
            .map(|_| CycleObservation {
                value: 0.87 + sigma / w.sqrt() * rng.sample::<f64, _>(StandardNormal),
                weight: w,
            })
            .collect();
        let mut post = Vec::new();
        let mut found = None;
        for k in 0..100 {
            post.push(CycleObservation {
                value: 0.91 + sigma / w.sqrt() * rng.sample::<f64, _>(StandardNormal),
                weight: w,
            });
            let sh = shift(&pre, &post, sigma * sigma).unwrap();
            if p_above(sh.estimate, 0.0, sh.std_error, 0.03) < 0.01 {
                found = Some(k);
                break;
            }
        }
        assert!(found.is_some_and(|k| k < 40), "{found:?}");
    }

    #[test]
    fn the_variance_estimate_sees_overdispersion() {
        // cycles that vary 4× more than their weights imply raise σ̂² above the floor
        let obs = |vals: &[f64]| {
            vals.iter()
                .map(|v| CycleObservation {
                    value: *v,
                    weight: 100.0,
                })
                .collect::<Vec<_>>()
        };
        let pre = obs(&[0.80, 0.95, 0.82, 0.93, 0.85, 0.91]);
        let post = obs(&[0.90, 0.84, 0.94, 0.81]);
        let sh = shift(&pre, &post, 0.1).unwrap();
        assert!(sh.variance > 0.2, "{}", sh.variance);
        let flat = shift(&obs(&[0.9, 0.9]), &obs(&[0.9]), 0.09).unwrap();
        assert_eq!(flat.variance, 0.09);
        assert!(shift(&[], &pre, 0.1).is_none());
    }
}
