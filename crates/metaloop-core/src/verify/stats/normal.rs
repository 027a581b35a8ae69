//! The standard normal distribution.

use statrs::distribution::{ContinuousCDF, Normal};

/// Standard normal cumulative distribution function, P(Z <= z); NaN input gives 0.5.
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    Normal::standard().cdf(z)
}

/// Standard normal survival function, P(Z > z) = 1 - cdf, accurate in the upper tail; NaN input gives 0.5.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    // statrs computes this as erfc(z / sqrt 2) / 2 rather than 1 - cdf, so it does not
    // cancel to 0 in the upper tail.
    Normal::standard().sf(z)
}

/// The two-sided p-value from the two one-sided ones: twice the smaller, capped at 1.
pub(super) fn two_sided(p_greater: f64, p_less: f64) -> f64 {
    (2.0 * p_greater.min(p_less)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64, rel_tol: f64) {
        let err = ((actual - expected) / expected).abs();
        assert!(
            err <= rel_tol,
            "actual {actual:e}, expected {expected:e}, relative error {err:e}"
        );
    }

    #[test]
    fn quantile_of_the_975th_percentile() {
        // qnorm(0.975) = 1.959963984540054 (R; the usual "1.96" of 95 % intervals).
        // statrs's erfc is accurate to about 1e-10 relative (measured against Python's
        // math.erfc over -8..8, worst near |z| = 0.8), which bounds these tolerances.
        assert_close(normal_cdf(1.959963984540054), 0.975, 1e-11);
        assert_close(normal_sf(1.959963984540054), 0.025, 1e-10);
        assert_close(normal_cdf(-1.959963984540054), 0.025, 1e-10);
    }

    #[test]
    fn sigma_coverage_table() {
        // Wikipedia, "68–95–99.7 rule", table of coverage within ±kσ:
        // 1σ 68.2689492 %, 5σ 0.999999426696856, 6σ 0.999999998026825,
        // 7σ 0.999999999997440. The one-sided tail is half of 1 - coverage.
        assert_close(normal_cdf(1.0) - normal_cdf(-1.0), 0.682689492, 1e-9);
        assert_close(normal_sf(5.0), (1.0 - 0.999999426696856) / 2.0, 1e-6);
        assert_close(normal_sf(6.0), (1.0 - 0.999999998026825) / 2.0, 1e-5);
        assert_close(normal_sf(7.0), (1.0 - 0.999999999997440) / 2.0, 1e-3);
    }

    #[test]
    fn far_upper_tail_does_not_cancel() {
        // R: pnorm(10, lower.tail = FALSE) = 7.619853e-24 (Martin Maechler on R-help,
        // "pnorm how to decide lower-tail true or false", 2007-06-09), whereas
        // 1 - pnorm(10) is 0 in double precision.
        assert_close(normal_sf(10.0), 7.619853e-24, 1e-6);
        assert_close(normal_cdf(-10.0), 7.619853e-24, 1e-6);
        assert_eq!(normal_cdf(10.0), 1.0);
    }

    #[test]
    fn symmetry_and_limits() {
        for &z in &[-8.0, -3.3, -1.0, -0.2, 0.0, 0.7, 2.5, 6.0] {
            assert!(
                (normal_cdf(z) + normal_sf(z) - 1.0).abs() < 1e-15,
                "z = {z}"
            );
            assert!((normal_cdf(z) - normal_sf(-z)).abs() < 1e-15, "z = {z}");
        }
        assert_eq!(normal_cdf(0.0), 0.5);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
        assert_eq!(normal_sf(f64::INFINITY), 0.0);
        assert_eq!(normal_sf(f64::NEG_INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NAN), 0.5);
        assert_eq!(normal_sf(f64::NAN), 0.5);
    }

    #[test]
    fn two_sided_is_twice_the_smaller_tail_capped_at_one() {
        assert_eq!(two_sided(0.01, 0.99), 0.02);
        assert_eq!(two_sided(0.7, 0.4), 0.8);
        assert_eq!(two_sided(0.6, 0.6), 1.0);
    }
}
