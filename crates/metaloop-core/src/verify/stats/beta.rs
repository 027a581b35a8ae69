//! The beta distribution's cumulative distribution function (regularized incomplete beta).

use statrs::distribution::{Beta, ContinuousCDF};

/// Regularized incomplete beta: P(X <= x) for X ~ Beta(a, b).
///
/// `x` below 0 gives 0 and above 1 gives 1. Invalid input (a NaN `x`, or `a` or `b` not
/// finite and positive) gives 0.5, the uninformative value, rather than NaN.
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x.is_nan() {
        return 0.5;
    }
    match Beta::new(a, b) {
        Ok(beta) => beta.cdf(x).clamp(0.0, 1.0),
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

    #[test]
    fn closed_forms() {
        // Beta(2, 3): cdf(x) = 6x^2 - 8x^3 + 3x^4, so cdf(1/2) = 3/2 - 1 + 3/16 = 11/16.
        assert_close(beta_cdf(0.5, 2.0, 3.0), 11.0 / 16.0, 1e-14);
        // Beta(1, 1) is uniform; Beta(a, 1) has cdf x^a; Beta(1, b) has cdf 1 - (1 - x)^b.
        assert_close(beta_cdf(0.37, 1.0, 1.0), 0.37, 1e-15);
        assert_close(beta_cdf(0.8, 3.0, 1.0), 0.512, 1e-14);
        assert_close(beta_cdf(0.2, 1.0, 4.0), 1.0 - 0.8f64.powi(4), 1e-14);
    }

    #[test]
    fn binomial_tail_identity() {
        // I_p(k, n - k + 1) = P(Binomial(n, p) >= k). For n = 5, p = 0.3, k = 2:
        // 1 - 0.7^5 - 5 * 0.3 * 0.7^4 = 1 - 0.16807 - 0.36015 = 0.47178.
        assert_close(beta_cdf(0.3, 2.0, 4.0), 0.47178, 1e-12);
        // n = 5, p = 0.5, k = 3: (10 + 5 + 1) / 32 = 0.5.
        assert_close(beta_cdf(0.5, 3.0, 3.0), 0.5, 1e-14);
    }

    #[test]
    fn large_posterior_parameters() {
        // A symmetric posterior with thousands of observations is 1/2 at its centre.
        assert_close(beta_cdf(0.5, 5000.5, 5000.5), 0.5, 1e-9);
        // Beta(a, b) for large a + b is close to normal with mean a/(a+b) and
        // variance ab/((a+b)^2 (a+b+1)): 950 successes out of 1000 (uniform prior).
        let (a, b) = (951.0f64, 51.0f64);
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        assert!((beta_cdf(mean + sd, a, b) - super::super::normal_cdf(1.0)).abs() < 0.01);
    }

    #[test]
    fn out_of_range_and_invalid_input() {
        assert_eq!(beta_cdf(-0.1, 2.0, 3.0), 0.0);
        assert_eq!(beta_cdf(0.0, 2.0, 3.0), 0.0);
        assert_eq!(beta_cdf(1.0, 2.0, 3.0), 1.0);
        assert_eq!(beta_cdf(7.0, 2.0, 3.0), 1.0);
        assert_eq!(beta_cdf(f64::NAN, 2.0, 3.0), 0.5);
        assert_eq!(beta_cdf(0.5, 0.0, 3.0), 0.5);
        assert_eq!(beta_cdf(0.5, 2.0, -1.0), 0.5);
        assert_eq!(beta_cdf(0.5, f64::INFINITY, 3.0), 0.5);
        assert_eq!(beta_cdf(0.5, 2.0, f64::NAN), 0.5);
    }

    proptest! {
        #[test]
        fn reflection_and_monotonicity(x in 0.0f64..=1.0, y in 0.0f64..=1.0, a in 0.1f64..200.0, b in 0.1f64..200.0) {
            // I_x(a, b) = 1 - I_{1-x}(b, a).
            prop_assert!((beta_cdf(x, a, b) - (1.0 - beta_cdf(1.0 - x, b, a))).abs() < 1e-9);
            let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
            prop_assert!(beta_cdf(lo, a, b) <= beta_cdf(hi, a, b) + 1e-12);
            prop_assert!((0.0..=1.0).contains(&beta_cdf(x, a, b)));
        }
    }
}
