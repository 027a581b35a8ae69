//! Two-proportion z-tests for rate KPIs (successes out of trials, before and after a change).

use super::normal::{normal_cdf, normal_sf, two_sided};

/// The 97.5th percentile of the standard normal distribution, for 95 % intervals.
const Z_975: f64 = 1.959963984540054;

/// The result of a two-proportion z-test of post (group 2) against pre (group 1).
#[derive(Debug, Clone, PartialEq)]
pub struct TwoProportion {
    /// Successes before the change.
    pub x1: u64,
    /// Trials before the change.
    pub n1: u64,
    /// Successes after the change.
    pub x2: u64,
    /// Trials after the change.
    pub n2: u64,
    /// Success rate before the change, `x1 / n1`.
    pub p1: f64,
    /// Success rate after the change, `x2 / n2`.
    pub p2: f64,
    /// Observed difference `p2 - p1`.
    pub diff: f64,
    /// The difference `p2 - p1` under the null hypothesis (0 for the pooled test).
    pub margin: f64,
    /// Standardized statistic `(diff - margin) / se`; positive when post is higher.
    pub z: f64,
    /// One-sided p-value for the alternative `p2 - p1 > margin`.
    pub p_greater: f64,
    /// One-sided p-value for the alternative `p2 - p1 < margin`.
    pub p_less: f64,
    /// Two-sided p-value for the alternative `p2 - p1 != margin`.
    pub p_two_sided: f64,
    /// Lower end of the 95 % Wald interval of `p2 - p1` (unpooled, clamped to [-1, 1]).
    pub ci95_low: f64,
    /// Upper end of the 95 % Wald interval of `p2 - p1` (unpooled, clamped to [-1, 1]).
    pub ci95_high: f64,
}

/// Pooled two-proportion z-test of H0: p2 == p1 (as R's prop.test(correct = FALSE); z^2 = its X-squared).
///
/// Returns `None` if `n1 == 0`, `n2 == 0`, `x1 > n1` or `x2 > n2`. When both groups are
/// all successes or all failures the pooled standard error is 0 and so is the difference;
/// the result is then `z = 0` with p-values 0.5 / 0.5 / 1 (no evidence either way).
pub fn two_proportion(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<TwoProportion> {
    let (p1, p2) = proportions(x1, n1, x2, n2)?;
    // Sums in f64: x1 + x2 could overflow u64.
    let pooled = (x1 as f64 + x2 as f64) / (n1 as f64 + n2 as f64);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    Some(build(x1, n1, x2, n2, p1, p2, 0.0, se))
}

/// Test of H0: p2 - p1 == margin with the unpooled (Wald) standard error; used for non-inferiority guardrails.
///
/// For a guardrail that tolerates a drop of at most 0.02, call it with `margin = -0.02`:
/// a small `p_greater` is evidence that post is no worse than pre by more than 0.02.
/// With `margin = 0` this is the Wald test, not the pooled test of [`two_proportion`].
///
/// Returns `None` if `n1 == 0`, `n2 == 0`, `x1 > n1`, `x2 > n2` or `margin` is not
/// finite. When each group is all successes or all failures the Wald standard error is
/// 0: if `diff == margin` the result is `z = 0` with p-values 0.5 / 0.5 / 1; otherwise
/// `z` is ±infinity and the p-values are 0 or 1 (the Wald test's limit, which overstates
/// the evidence from small samples: callers enforce a minimum sample size).
pub fn two_proportion_margin(
    x1: u64,
    n1: u64,
    x2: u64,
    n2: u64,
    margin: f64,
) -> Option<TwoProportion> {
    if !margin.is_finite() {
        return None;
    }
    let (p1, p2) = proportions(x1, n1, x2, n2)?;
    Some(build(
        x1,
        n1,
        x2,
        n2,
        p1,
        p2,
        margin,
        wald_se(p1, n1, p2, n2),
    ))
}

fn proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    Some((x1 as f64 / n1 as f64, x2 as f64 / n2 as f64))
}

/// Unpooled standard error of p2 - p1.
fn wald_se(p1: f64, n1: u64, p2: f64, n2: u64) -> f64 {
    (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt()
}

#[allow(clippy::too_many_arguments)]
fn build(
    x1: u64,
    n1: u64,
    x2: u64,
    n2: u64,
    p1: f64,
    p2: f64,
    margin: f64,
    se: f64,
) -> TwoProportion {
    let diff = p2 - p1;
    let excess = diff - margin;
    let z = if se > 0.0 {
        excess / se
    } else if excess == 0.0 {
        0.0
    } else {
        excess.signum() * f64::INFINITY
    };
    let p_greater = normal_sf(z);
    let p_less = normal_cdf(z);
    let half_width = Z_975 * wald_se(p1, n1, p2, n2);
    TwoProportion {
        x1,
        n1,
        x2,
        n2,
        p1,
        p2,
        diff,
        margin,
        z,
        p_greater,
        p_less,
        p_two_sided: two_sided(p_greater, p_less),
        ci95_low: (diff - half_width).max(-1.0),
        ci95_high: (diff + half_width).min(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_close(actual: f64, expected: f64, abs_tol: f64) {
        assert!(
            (actual - expected).abs() <= abs_tol,
            "actual {actual}, expected {expected}, tolerance {abs_tol}"
        );
    }

    #[test]
    fn r_prop_test_without_continuity_correction() {
        // influentialpoints.com, "Two-sample test for independent proportions - using R"
        // (notes/n9rmf3.htm): prop.test without continuity correction prints
        // X-squared = 6.1026, p-value = 0.01350, 95 % CI of prop1 - prop2
        // 0.03074072 .. 0.23838896, prop 1 = 0.4392523, prop 2 = 0.3046875.
        // The page does not print the counts; 94/214 and 39/128 are the only counts (with
        // n below 1000) that give both printed proportions and the printed CI width.
        let r = two_proportion(94, 214, 39, 128).unwrap();
        assert_close(r.p1, 0.4392523, 5e-8);
        assert_close(r.p2, 0.3046875, 5e-8);
        assert_close(r.z * r.z, 6.1026, 5e-5);
        assert!(r.z < 0.0, "post is lower, so z is negative");
        assert_close(r.p_two_sided, 0.01350, 5e-6);
        // Our interval is of p2 - p1, R's of p1 - p2.
        assert_close(r.ci95_low, -0.23838896, 5e-9);
        assert_close(r.ci95_high, -0.03074072, 5e-9);
        assert_close(r.p_less, r.p_two_sided / 2.0, 1e-15);
    }

    #[test]
    fn r_prop_test_with_yates_correction_recovered_by_hand() {
        // Emory math117 tech tips, "Two-sample proportion tests": prop.test(x = c(490, 400),
        // n = c(500, 500)) (Yates-corrected) prints X-squared = 80.909 and the 95 % CI of
        // p1 - p2 0.1408536 .. 0.2191464. Yates shrinks |p1 - p2| by (1/n1 + 1/n2)/2 = 0.002
        // before dividing by the same pooled standard error, and widens the Wald interval by
        // 0.002 on each side, so both can be recovered from our uncorrected result.
        let r = two_proportion(490, 500, 400, 500).unwrap();
        assert_close(r.diff, -0.18, 1e-15);
        let se = r.diff / r.z;
        let z_yates = (r.diff.abs() - 0.002) / se;
        assert_close(z_yates * z_yates, 80.909, 5e-4);
        assert_close(r.ci95_low, -0.2191464 + 0.002, 5e-8);
        assert_close(r.ci95_high, -0.1408536 - 0.002, 5e-8);
    }

    #[test]
    fn hand_computed_pooled_z() {
        // 45/100 before, 60/100 after: pooled p = 105/200 = 0.525,
        // se = sqrt(0.525 * 0.475 * (1/100 + 1/100)) = sqrt(0.0049875) = 0.0706222...,
        // z = 0.15 / se = 2.123977...; one-sided p = 1 - Φ(2.123977) = erfc(2.123977 / √2) / 2
        // = 0.0168360...
        let r = two_proportion(45, 100, 60, 100).unwrap();
        assert_close(r.z, 0.15 / 0.0049875f64.sqrt(), 1e-12);
        assert_close(r.z, 2.123977, 1e-6);
        assert_close(r.p_greater, 0.0168360, 1e-7);
        assert_close(r.p_two_sided, 2.0 * r.p_greater, 1e-15);
        assert_eq!(r.margin, 0.0);
    }

    #[test]
    fn hand_computed_margin_test() {
        // 90/100 before, 88/100 after, tolerated drop 0.05 (margin -0.05):
        // se = sqrt(0.9*0.1/100 + 0.88*0.12/100) = sqrt(0.001956) = 0.0442267...,
        // z = (-0.02 + 0.05) / se = 0.678323...
        let r = two_proportion_margin(90, 100, 88, 100, -0.05).unwrap();
        assert_close(r.diff, -0.02, 1e-15);
        assert_close(r.z, 0.03 / 0.001956f64.sqrt(), 1e-12);
        assert_close(r.z, 0.678323, 1e-6);
        assert_close(r.p_greater, normal_sf(0.03 / 0.001956f64.sqrt()), 1e-15);
        assert_eq!(r.margin, -0.05);
        // The interval does not depend on the margin.
        let r0 = two_proportion_margin(90, 100, 88, 100, 0.0).unwrap();
        assert_eq!((r.ci95_low, r.ci95_high), (r0.ci95_low, r0.ci95_high));
    }

    #[test]
    fn invalid_input_is_rejected() {
        assert_eq!(two_proportion(0, 0, 1, 2), None);
        assert_eq!(two_proportion(1, 2, 0, 0), None);
        assert_eq!(two_proportion(3, 2, 1, 2), None);
        assert_eq!(two_proportion(1, 2, 3, 2), None);
        assert_eq!(two_proportion_margin(1, 2, 1, 2, f64::NAN), None);
        assert_eq!(two_proportion_margin(1, 2, 1, 2, f64::INFINITY), None);
        assert_eq!(two_proportion_margin(3, 2, 1, 2, 0.0), None);
    }

    #[test]
    fn degenerate_rates_give_no_evidence_and_no_nan() {
        for (x1, n1, x2, n2) in [(10, 10, 7, 7), (0, 10, 0, 3), (1, 1, 1, 1)] {
            let r = two_proportion(x1, n1, x2, n2).unwrap();
            assert_eq!(
                (r.z, r.p_greater, r.p_less, r.p_two_sided),
                (0.0, 0.5, 0.5, 1.0)
            );
            assert_eq!((r.ci95_low, r.ci95_high), (0.0, 0.0));
            let m = two_proportion_margin(x1, n1, x2, n2, 0.0).unwrap();
            assert_eq!(
                (m.z, m.p_greater, m.p_less, m.p_two_sided),
                (0.0, 0.5, 0.5, 1.0)
            );
        }
        // All failures before, all successes after: the pooled test is well defined...
        let r = two_proportion(0, 5, 5, 5).unwrap();
        assert!(r.z > 0.0 && r.z.is_finite());
        // ...the Wald standard error is 0, so the margin test is at its limit.
        let m = two_proportion_margin(0, 5, 5, 5, -0.1).unwrap();
        assert_eq!(
            (m.z, m.p_greater, m.p_less, m.p_two_sided),
            (f64::INFINITY, 0.0, 1.0, 0.0)
        );
        let m = two_proportion_margin(5, 5, 0, 5, -0.1).unwrap();
        assert_eq!(
            (m.z, m.p_greater, m.p_less, m.p_two_sided),
            (f64::NEG_INFINITY, 1.0, 0.0, 0.0)
        );
        // The interval is clamped to [-1, 1].
        assert_eq!((r.ci95_low, r.ci95_high), (1.0, 1.0));
    }

    #[test]
    fn huge_counts_are_fine() {
        let r = two_proportion(u64::MAX - 1, u64::MAX, u64::MAX, u64::MAX).unwrap();
        assert!(r.z.is_finite() && r.p_two_sided.is_finite());
    }

    proptest! {
        #[test]
        fn p_values_are_consistent_and_never_nan(
            (x1, n1) in (1u64..500).prop_flat_map(|n| (0..=n, Just(n))),
            (x2, n2) in (1u64..500).prop_flat_map(|n| (0..=n, Just(n))),
            margin in -0.5f64..0.5,
        ) {
            for r in [
                two_proportion(x1, n1, x2, n2).unwrap(),
                two_proportion_margin(x1, n1, x2, n2, margin).unwrap(),
            ] {
                for v in [r.z, r.p_greater, r.p_less, r.p_two_sided, r.ci95_low, r.ci95_high] {
                    prop_assert!(!v.is_nan());
                }
                for p in [r.p_greater, r.p_less, r.p_two_sided] {
                    prop_assert!((0.0..=1.0).contains(&p));
                }
                prop_assert!((r.p_greater + r.p_less - 1.0).abs() < 1e-12);
                prop_assert_eq!(r.p_two_sided, two_sided(r.p_greater, r.p_less));
                prop_assert!(r.ci95_low <= r.diff && r.diff <= r.ci95_high);
            }
            // Swapping pre and post mirrors the pooled test.
            let a = two_proportion(x1, n1, x2, n2).unwrap();
            let b = two_proportion(x2, n2, x1, n1).unwrap();
            prop_assert_eq!(a.z, -b.z);
            prop_assert_eq!(a.p_greater, b.p_less);
            prop_assert_eq!(a.p_two_sided, b.p_two_sided);
        }
    }
}
