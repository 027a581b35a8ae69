//! Welch's unequal-variance t-test from summary statistics.

use super::normal::two_sided;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The result of Welch's t-test of post (group 2) against pre (group 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Welch {
    /// Observed difference of means, `mean2 - mean1`.
    pub diff: f64,
    /// The difference `mean2 - mean1` under the null hypothesis.
    pub margin: f64,
    /// Standard error of the difference, `sqrt(var1 / n1 + var2 / n2)`.
    pub se: f64,
    /// Statistic `(diff - margin) / se`; positive when post is higher than pre + margin.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// One-sided p-value for the alternative `mean2 - mean1 > margin`.
    pub p_greater: f64,
    /// One-sided p-value for the alternative `mean2 - mean1 < margin`.
    pub p_less: f64,
    /// Two-sided p-value for the alternative `mean2 - mean1 != margin`.
    pub p_two_sided: f64,
}

/// Welch's t-test of H0: mean2 - mean1 == margin from summary statistics (sample variances with n-1).
///
/// Returns `None` if `n1 < 2`, `n2 < 2`, a mean, variance or the margin is not finite, or
/// a variance is negative. When both variances are 0 the standard error is 0: if
/// `diff == margin` the result is `t = 0` with p-values 0.5 / 0.5 / 1, otherwise `t` is
/// ±infinity with p-values 0 or 1; `df` is then `n1 + n2 - 2`, its limit for equal
/// vanishing variances.
pub fn welch(
    mean1: f64,
    var1: f64,
    n1: u64,
    mean2: f64,
    var2: f64,
    n2: u64,
    margin: f64,
) -> Option<Welch> {
    if n1 < 2 || n2 < 2 {
        return None;
    }
    let finite = [mean1, var1, mean2, var2, margin]
        .iter()
        .all(|v| v.is_finite());
    if !finite || var1 < 0.0 || var2 < 0.0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (s1, s2) = (var1 / n1f, var2 / n2f);
    let se = (s1 + s2).sqrt();
    let diff = mean2 - mean1;
    let excess = diff - margin;
    let df_denominator = s1 * s1 / (n1f - 1.0) + s2 * s2 / (n2f - 1.0);
    let df = if df_denominator > 0.0 {
        (s1 + s2) * (s1 + s2) / df_denominator
    } else {
        n1f + n2f - 2.0
    };
    let t = if se > 0.0 {
        excess / se
    } else if excess == 0.0 {
        0.0
    } else {
        excess.signum() * f64::INFINITY
    };
    // Each tail as a lower-tail probability, which statrs computes without cancellation.
    let p_greater = t_cdf(-t, df);
    let p_less = t_cdf(t, df);
    Some(Welch {
        diff,
        margin,
        se,
        t,
        df,
        p_greater,
        p_less,
        p_two_sided: two_sided(p_greater, p_less),
    })
}

/// P(T <= t) for Student's t with `df` degrees of freedom (df >= 1 here, t possibly infinite).
fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => dist.cdf(t).clamp(0.0, 1.0),
        // Unreachable: df >= min(n1, n2) - 1 >= 1 and t is finite.
        Err(_) => 0.5,
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

    fn summary(xs: &[f64]) -> (f64, f64, u64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
        (mean, var, xs.len() as u64)
    }

    #[test]
    fn r_sleep_data_example() {
        // Cookbook for R, "t-test" (cookbook-r.com/Statistical_analysis/t-test): with R's
        // built-in sleep data, t.test(extra ~ group, sleep) prints "Welch Two Sample
        // t-test", t = -1.8608, df = 17.776, p-value = 0.07939, means 0.75 and 2.33.
        // R's t is for group 1 - group 2; ours is for post (group 2) - pre (group 1).
        let group1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
        let group2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];
        let (m1, v1, n1) = summary(&group1);
        let (m2, v2, n2) = summary(&group2);
        let r = welch(m1, v1, n1, m2, v2, n2, 0.0).unwrap();
        assert_close(r.diff, 2.33 - 0.75, 1e-12);
        assert_close(r.t, 1.8608, 5e-5);
        assert_close(r.df, 17.776, 5e-4);
        assert_close(r.p_two_sided, 0.07939, 5e-6);
        assert_close(r.p_greater, 0.07939 / 2.0, 5e-6);
        assert_close(r.p_greater + r.p_less, 1.0, 1e-12);
        // The same test as H0: diff == 1.58 is exactly null.
        let r = welch(m1, v1, n1, m2, v2, n2, r.diff).unwrap();
        assert_close(r.t, 0.0, 1e-12);
        assert_close(r.p_two_sided, 1.0, 1e-9);
    }

    #[test]
    fn hand_computed_degrees_of_freedom() {
        // var1/n1 = 4/5 = 0.8, var2/n2 = 9/10 = 0.9: se = sqrt(1.7), t = (13 - 10 - 1)/se,
        // df = 1.7^2 / (0.8^2/4 + 0.9^2/9) = 2.89 / (0.16 + 0.09) = 11.56.
        let r = welch(10.0, 4.0, 5, 13.0, 9.0, 10, 1.0).unwrap();
        assert_close(r.se, 1.7f64.sqrt(), 1e-15);
        assert_close(r.t, 2.0 / 1.7f64.sqrt(), 1e-15);
        assert_close(r.df, 11.56, 1e-12);
        assert_eq!(r.margin, 1.0);
    }

    #[test]
    fn student_t_closed_form_with_one_degree_of_freedom() {
        // With df = 1 (Cauchy), P(T <= t) = 1/2 + atan(t)/π. One variance 0 and n = 2 on
        // the other side give df = n2 - 1 = 1.
        let r = welch(0.0, 0.0, 5, 1.0, 2.0, 2, 0.0).unwrap();
        assert_close(r.df, 1.0, 1e-15);
        assert_close(r.t, 1.0, 1e-15);
        assert_close(r.p_less, 0.5 + 1f64.atan() / std::f64::consts::PI, 1e-12);
        assert_close(r.p_greater, 0.25, 1e-12);
        assert_close(r.p_two_sided, 0.5, 1e-12);
    }

    #[test]
    fn large_samples_approach_the_normal_test() {
        let r = welch(100.0, 400.0, 2_000_000, 100.05, 410.0, 2_500_000, 0.0).unwrap();
        assert!(r.df > 1e6);
        let z = r.t;
        assert_close(r.p_greater, 1.0 - normal_cdf_for_test(z), 1e-6);
        assert_close(
            r.p_two_sided,
            2.0 * (1.0 - normal_cdf_for_test(z.abs())),
            1e-6,
        );
    }

    fn normal_cdf_for_test(z: f64) -> f64 {
        super::super::normal_cdf(z)
    }

    #[test]
    fn invalid_and_degenerate_input() {
        assert_eq!(welch(0.0, 1.0, 1, 0.0, 1.0, 5, 0.0), None);
        assert_eq!(welch(0.0, 1.0, 5, 0.0, 1.0, 0, 0.0), None);
        assert_eq!(welch(f64::NAN, 1.0, 5, 0.0, 1.0, 5, 0.0), None);
        assert_eq!(welch(0.0, -1.0, 5, 0.0, 1.0, 5, 0.0), None);
        assert_eq!(welch(0.0, 1.0, 5, 0.0, f64::INFINITY, 5, 0.0), None);
        assert_eq!(welch(0.0, 1.0, 5, 0.0, 1.0, 5, f64::NAN), None);

        let r = welch(3.0, 0.0, 4, 3.0, 0.0, 6, 0.0).unwrap();
        assert_eq!(
            (r.t, r.df, r.p_greater, r.p_less, r.p_two_sided),
            (0.0, 8.0, 0.5, 0.5, 1.0)
        );
        let r = welch(3.0, 0.0, 4, 5.0, 0.0, 6, 0.0).unwrap();
        assert_eq!(
            (r.t, r.p_greater, r.p_less, r.p_two_sided),
            (f64::INFINITY, 0.0, 1.0, 0.0)
        );
        let r = welch(3.0, 0.0, 4, 5.0, 0.0, 6, 2.5).unwrap();
        assert_eq!((r.t, r.p_greater, r.p_less), (f64::NEG_INFINITY, 1.0, 0.0));
    }

    proptest! {
        #[test]
        fn p_values_are_consistent_and_never_nan(
            m1 in -100.0f64..100.0, v1 in 0.0f64..1000.0, n1 in 2u64..10_000,
            m2 in -100.0f64..100.0, v2 in 0.0f64..1000.0, n2 in 2u64..10_000,
            margin in -10.0f64..10.0,
        ) {
            let r = welch(m1, v1, n1, m2, v2, n2, margin).unwrap();
            for v in [r.diff, r.se, r.t, r.df, r.p_greater, r.p_less, r.p_two_sided] {
                prop_assert!(!v.is_nan());
            }
            prop_assert!(r.df >= (n1.min(n2) - 1) as f64 - 1e-9);
            prop_assert!(r.df <= (n1 + n2 - 2) as f64 + 1e-9);
            prop_assert!((r.p_greater + r.p_less - 1.0).abs() < 1e-9);
            // Swapping pre and post (and negating the margin) mirrors the test.
            let s = welch(m2, v2, n2, m1, v1, n1, -margin).unwrap();
            prop_assert!((r.t + s.t).abs() < 1e-9 * r.t.abs().max(1.0));
            prop_assert!((r.p_greater - s.p_less).abs() < 1e-12);
        }
    }
}
