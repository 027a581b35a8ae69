//! The Mann-Whitney U test (Wilcoxon rank-sum test) on weighted samples.

use super::normal::{normal_cdf, normal_sf, two_sided};
use super::weighted_sample::{merge_counts, total_count};

/// Largest `n1 + n2` for which p-values come from the exact permutation distribution.
const EXACT_MAX_TOTAL: u64 = 40;

/// Largest `n1 + n2` accepted: counts up to 2^53 are exact in an f64.
const MAX_TOTAL: u64 = 1 << 53;

/// The result of a Mann-Whitney U test of post (sample 2) against pre (sample 1).
#[derive(Debug, Clone, PartialEq)]
pub struct MannWhitney {
    /// Number of observations before the change.
    pub n1: u64,
    /// Number of observations after the change.
    pub n2: u64,
    /// Number of (pre, post) pairs with pre > post, ties counting 1/2 (R's `W` with x = pre).
    pub u1: f64,
    /// Number of (pre, post) pairs with post > pre, ties counting 1/2; `u1 + u2 = n1 * n2` (up to rounding).
    pub u2: f64,
    /// Mean of U under the null hypothesis, `n1 * n2 / 2`.
    pub mean_u: f64,
    /// Variance of U under the null hypothesis, corrected for ties.
    pub var_u: f64,
    /// Normal score of `u2` with R's two-sided continuity correction, positive when post tends to be larger (reported even when `exact`).
    pub z: f64,
    /// One-sided p-value for the alternative "post tends to be greater than pre".
    pub p_greater: f64,
    /// One-sided p-value for the alternative "post tends to be less than pre".
    pub p_less: f64,
    /// Two-sided p-value: twice the smaller one-sided p-value, capped at 1.
    pub p_two_sided: f64,
    /// Whether the p-values come from the exact permutation distribution of U.
    pub exact: bool,
}

/// Mann-Whitney U (Wilcoxon rank-sum) on weighted data: each slice is (value, count) pairs, any order.
///
/// Counts may be large: the data come from histogram bins, and values in the same bin
/// are ties. The cost is O(k log k) in the number k of distinct values, never in the
/// counts. Entries with a zero count are ignored.
///
/// P-values are exact (from the permutation distribution of U) when there are no ties
/// and `n1 + n2 <= 40`. Otherwise they come from the normal approximation with the
/// tie-corrected variance `n1 n2 / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1)))` and a
/// continuity correction of 1/2 toward the null for each alternative, as R's
/// `wilcox.test(correct = TRUE)` computes them. When every observation has the same
/// value the variance is 0: then `z = 0` and the p-values are 0.5 / 0.5 / 1.
///
/// Returns `None` if either side has no observations, a counted value is NaN, or there
/// are more than 2^53 observations in all. Infinite values are ordinary (extreme) values.
pub fn mann_whitney(pre: &[(f64, u64)], post: &[(f64, u64)]) -> Option<MannWhitney> {
    let pre = merge_counts(pre)?;
    let post = merge_counts(post)?;
    let n1 = total_count(&pre);
    let n2 = total_count(&post);
    if n1 == 0 || n2 == 0 || n1.checked_add(n2)? > MAX_TOTAL {
        return None;
    }
    let pooled = pool(&pre, &post);

    // Twice U1, as an integer: each pre observation scores 2 per post observation below it
    // and 1 per post observation equal to it. At most 2 * n1 * n2 < 2^107.
    let mut twice_u1: u128 = 0;
    let mut post_below: u128 = 0;
    for &(_, in_pre, in_post) in &pooled {
        twice_u1 += u128::from(in_pre) * (2 * post_below + u128::from(in_post));
        post_below += u128::from(in_post);
    }
    let has_ties = pooled.iter().any(|&(_, a, b)| a + b > 1);

    // Beyond 2^53 pairs f64 arithmetic rounds, so differences from the mean are taken in
    // integers first: with no shift at all, z is then exactly 0.
    let pairs = u128::from(n1) * u128::from(n2);
    let twice_u2 = 2 * pairs - twice_u1;
    let u1 = twice_u1 as f64 / 2.0;
    let u2 = twice_u2 as f64 / 2.0;
    let mean_u = pairs as f64 / 2.0;
    // u1 - mean_u and u2 - mean_u, exactly up to the final rounding.
    let u1_excess = (twice_u1 as i128 - pairs as i128) as f64 / 2.0;
    let u2_excess = -u1_excess;
    let var_u = tie_corrected_variance(n1, n2, &pooled);
    let sd = var_u.sqrt();

    if var_u <= 0.0 {
        // Every observation has the same value: U carries no information.
        return Some(MannWhitney {
            n1,
            n2,
            u1,
            u2,
            mean_u,
            var_u: 0.0,
            z: 0.0,
            p_greater: 0.5,
            p_less: 0.5,
            p_two_sided: 1.0,
            exact: false,
        });
    }

    // R's correction is sign(excess) / 2, with sign(0) = 0 (f64::signum(0.0) would be 1).
    let correction = if u2_excess > 0.0 {
        0.5
    } else if u2_excess < 0.0 {
        -0.5
    } else {
        0.0
    };
    let z = (u2_excess - correction) / sd;
    let exact = !has_ties && n1 + n2 <= EXACT_MAX_TOTAL;
    let (p_greater, p_less) = if exact {
        // Without ties U1 is an integer and n1 + n2 <= 40, so the casts are exact.
        let distribution = u_distribution(n1 as usize, n2 as usize);
        let observed = (twice_u1 / 2) as usize;
        let total: u64 = distribution.iter().sum();
        let at_most: u64 = distribution[..=observed].iter().sum();
        let at_least: u64 = distribution[observed..].iter().sum();
        // Post tends to be greater exactly when U1 (pre above post) is small.
        (
            at_most as f64 / total as f64,
            at_least as f64 / total as f64,
        )
    } else {
        (
            normal_cdf((u1_excess + 0.5) / sd),
            normal_sf((u1_excess - 0.5) / sd),
        )
    };
    Some(MannWhitney {
        n1,
        n2,
        u1,
        u2,
        mean_u,
        var_u,
        z,
        p_greater,
        p_less,
        p_two_sided: two_sided(p_greater, p_less),
        exact,
    })
}

/// Merges two sorted, deduplicated weighted samples into `(value, count in pre, count in post)`.
fn pool(pre: &[(f64, u64)], post: &[(f64, u64)]) -> Vec<(f64, u64, u64)> {
    let mut pooled = Vec::with_capacity(pre.len() + post.len());
    let (mut i, mut j) = (0, 0);
    while i < pre.len() || j < post.len() {
        let next = match (pre.get(i), post.get(j)) {
            (Some(&(a, ca)), Some(&(b, cb))) if a == b => {
                i += 1;
                j += 1;
                (a, ca, cb)
            }
            (Some(&(a, ca)), Some(&(b, _))) if a < b => {
                i += 1;
                (a, ca, 0)
            }
            (Some(&(a, ca)), None) => {
                i += 1;
                (a, ca, 0)
            }
            (_, Some(&(b, cb))) => {
                j += 1;
                (b, 0, cb)
            }
            (None, None) => unreachable!("loop condition"),
        };
        pooled.push(next);
    }
    pooled
}

/// Permutation variance of U given the tie pattern.
///
/// `n1 n2 / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1)))` equals
/// `n1 n2 (N^3 - sum t^3) / (12 N (N - 1))` because the tie sizes t sum to N; the second
/// form is computed exactly in integers when it fits, so that all-tied data give exactly 0.
fn tie_corrected_variance(n1: u64, n2: u64, pooled: &[(f64, u64, u64)]) -> f64 {
    let n = u128::from(n1) + u128::from(n2);
    let exact_numerator = pooled
        .iter()
        .try_fold(0u128, |sum, &(_, a, b)| {
            let t = u128::from(a) + u128::from(b);
            sum.checked_add(t.checked_pow(3)?)
        })
        .and_then(|sum_t3| Some(n.checked_pow(3)? - sum_t3));
    let n_f = n as f64;
    let product = n1 as f64 * n2 as f64;
    match exact_numerator {
        Some(numerator) => product * numerator as f64 / (12.0 * n_f * (n_f - 1.0)),
        None => {
            // More than ~7e12 observations: fall back to floating point, term by term.
            let ties: f64 = pooled
                .iter()
                .map(|&(_, a, b)| {
                    let t = a as f64 + b as f64;
                    (t / n_f) * ((t - 1.0) / (n_f - 1.0)) * (t + 1.0)
                })
                .sum();
            (product / 12.0 * ((n_f + 1.0) - ties)).max(0.0)
        }
    }
}

/// Number of ways each value of U1 arises when N = n1 + n2 distinct values are split into
/// n1 pre and n2 post; index u holds the count for U1 = u.
///
/// Recurrence on the largest value: if it is a pre observation it exceeds all post
/// observations and adds their number to U1, otherwise it adds nothing, so
/// `f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u)`. Counts are at most C(40, 20) < 2^38.
fn u_distribution(n1: usize, n2: usize) -> Vec<u64> {
    let len = n1 * n2 + 1;
    // by_m[m] = distribution for (m, n) with the current n; n = 0 has U1 = 0 only.
    let mut by_m: Vec<Vec<u64>> = (0..=n1)
        .map(|_| {
            let mut d = vec![0; len];
            d[0] = 1;
            d
        })
        .collect();
    for n in 1..=n2 {
        // Updating m in increasing order: by_m[m - 1] already holds (m - 1, n), and
        // by_m[m] still holds (m, n - 1).
        for m in 1..=n1 {
            let (done, rest) = by_m.split_at_mut(m);
            let smaller = &done[m - 1];
            let current = &mut rest[0];
            for u in n..=m * n {
                current[u] += smaller[u - n];
            }
        }
    }
    by_m.swap_remove(n1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit(values: &[f64]) -> Vec<(f64, u64)> {
        values.iter().map(|&v| (v, 1)).collect()
    }

    fn assert_close(actual: f64, expected: f64, abs_tol: f64) {
        assert!(
            (actual - expected).abs() <= abs_tol,
            "actual {actual}, expected {expected}, tolerance {abs_tol}"
        );
    }

    #[test]
    fn r_wilcox_test_exact_example() {
        // R documentation of wilcox.test (Hollander & Wolfe 1973, p. 69f, permeability
        // constants): wilcox.test(x, y, alternative = "greater") gives W = 35,
        // p-value = 0.1272 (exact). x = pre; "x greater" means post is less: our p_less.
        let x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46];
        let y = [1.15, 0.88, 0.90, 0.74, 1.21];
        let r = mann_whitney(&unit(&x), &unit(&y)).unwrap();
        assert!(r.exact);
        assert_eq!((r.n1, r.n2), (10, 5));
        assert_eq!((r.u1, r.u2), (35.0, 15.0));
        assert_close(r.p_less, 0.1272, 5e-5);
        assert_close(r.p_two_sided, 2.0 * r.p_less, 1e-15);
        assert!(r.p_greater > 0.5);
    }

    #[test]
    fn r_wilcox_test_with_ties_uses_corrected_normal_approximation() {
        // endmemo.com/r/wilcoxon.php: x <- c(1,5,9,24,56,21,3,7,21,4),
        // y <- c(12,15,5,9,9,14,56,22,3,7,32,5); wilcox.test(x, y) prints
        // "Wilcoxon rank sum test with continuity correction", W = 51.5, p-value = 0.5966.
        let x = [1.0, 5.0, 9.0, 24.0, 56.0, 21.0, 3.0, 7.0, 21.0, 4.0];
        let y = [
            12.0, 15.0, 5.0, 9.0, 9.0, 14.0, 56.0, 22.0, 3.0, 7.0, 32.0, 5.0,
        ];
        let r = mann_whitney(&unit(&x), &unit(&y)).unwrap();
        assert!(!r.exact);
        assert_eq!(r.u1, 51.5);
        assert_close(r.p_two_sided, 0.5966, 5e-5);

        // Same page, second example: y <- c(1233,4356,987,39999,1111,200000) gives W = 0,
        // p-value = 0.001364. By hand: mean 30, one tie of size 2 (21), so
        // var = 60/12 * (17 - 6/240) = 84.875 and z = (0 - 30 + 0.5) / sqrt(84.875).
        let y = [1233.0, 4356.0, 987.0, 39999.0, 1111.0, 200000.0];
        let r = mann_whitney(&unit(&x), &unit(&y)).unwrap();
        assert!(!r.exact);
        assert_eq!((r.u1, r.u2, r.mean_u), (0.0, 60.0, 30.0));
        assert_close(r.var_u, 84.875, 1e-12);
        assert_close(r.z, 29.5 / 84.875f64.sqrt(), 1e-12);
        assert_close(r.p_two_sided, 0.001364, 5e-7);
        assert_close(r.p_greater, 0.001364 / 2.0, 5e-7);
    }

    #[test]
    fn wikipedia_tortoise_and_hare() {
        // Wikipedia, "Mann–Whitney U test", illustration of calculation methods: finishing
        // order T H H H H H T T T T T H gives U_T = 11 (hares beaten by tortoises) and
        // U_H = 25. With finishing positions as times, beating means a smaller time.
        let tortoises = [1.0, 7.0, 8.0, 9.0, 10.0, 11.0];
        let hares = [2.0, 3.0, 4.0, 5.0, 6.0, 12.0];
        let r = mann_whitney(&unit(&tortoises), &unit(&hares)).unwrap();
        // u2 counts pairs with hare time > tortoise time: tortoise wins.
        assert_eq!((r.u1, r.u2), (25.0, 11.0));
    }

    #[test]
    fn exact_distribution_small_cases_by_hand() {
        // n1 = n2 = 2: the 6 splits of 4 values give U = 0, 1, 2, 2, 3, 4.
        assert_eq!(u_distribution(2, 2), vec![1, 1, 2, 1, 1]);
        // n1 = 1: U is uniform on 0..=n2.
        assert_eq!(u_distribution(1, 3), vec![1, 1, 1, 1]);
        assert_eq!(u_distribution(3, 0), vec![1]);
        // Total is C(N, n1): C(40, 20) = 137846528820.
        assert_eq!(u_distribution(20, 20).iter().sum::<u64>(), 137_846_528_820);
        assert_eq!(u_distribution(7, 4).iter().sum::<u64>(), 330);
    }

    #[test]
    fn all_values_equal_has_zero_variance() {
        let r = mann_whitney(&[(3.0, 5)], &[(3.0, 7)]).unwrap();
        assert_eq!(r.var_u, 0.0);
        assert_eq!(
            (r.z, r.p_greater, r.p_less, r.p_two_sided),
            (0.0, 0.5, 0.5, 1.0)
        );
        assert_eq!((r.u1, r.u2), (17.5, 17.5));
        assert!(!r.exact);
        // Also with millions of observations, where N^3 is far beyond 2^53.
        let r = mann_whitney(&[(3.0, 4_000_000)], &[(3.0, 3_000_000)]).unwrap();
        assert_eq!((r.var_u, r.z, r.p_two_sided), (0.0, 0.0, 1.0));
    }

    #[test]
    fn invalid_input() {
        assert_eq!(mann_whitney(&[], &[(1.0, 1)]), None);
        assert_eq!(mann_whitney(&[(1.0, 1)], &[(2.0, 0)]), None);
        assert_eq!(mann_whitney(&[(f64::NAN, 1)], &[(1.0, 1)]), None);
        assert_eq!(mann_whitney(&[(1.0, 1 << 53)], &[(1.0, 1)]), None);
        // Zero-count entries are ignored, NaN or not.
        assert!(mann_whitney(&[(f64::NAN, 0), (1.0, 1)], &[(2.0, 1)]).is_some());
    }

    #[test]
    fn single_observation_each() {
        let r = mann_whitney(&[(1.0, 1)], &[(2.0, 1)]).unwrap();
        assert!(r.exact);
        assert_eq!((r.u1, r.u2, r.var_u), (0.0, 1.0, 0.25));
        assert_eq!((r.p_greater, r.p_less, r.p_two_sided), (0.5, 1.0, 1.0));
    }

    #[test]
    fn infinite_values_rank_at_the_ends() {
        let r = mann_whitney(
            &[(f64::NEG_INFINITY, 1), (0.0, 1)],
            &[(1.0, 1), (f64::INFINITY, 2)],
        )
        .unwrap();
        assert_eq!((r.u1, r.u2), (0.0, 6.0));
    }

    #[test]
    fn millions_of_observations_across_300_bins() {
        // Post is shifted up by 2 bins: overwhelming evidence, computed from bins only.
        let pre: Vec<(f64, u64)> = (0..300).map(|i| (i as f64, 2_000_000 + i)).collect();
        let post: Vec<(f64, u64)> = (0..300).map(|i| (i as f64 + 2.0, 2_000_000 + i)).collect();
        let r = mann_whitney(&pre, &post).unwrap();
        assert!(!r.exact);
        let n: u64 = pre.iter().map(|&(_, c)| c).sum();
        assert_eq!((r.n1, r.n2), (n, n));
        // n^2 is beyond 2^53, so the sum is only equal up to rounding.
        assert!(((r.u1 + r.u2) / (n as f64 * n as f64) - 1.0).abs() < 1e-15);
        assert!(r.z > 10.0 && r.p_greater < 1e-20 && r.p_less == 1.0);
        // No shift: no evidence.
        let r = mann_whitney(&pre, &pre).unwrap();
        assert_eq!((r.z, r.p_two_sided), (0.0, 1.0));
        assert!(r.var_u > 0.0);
    }

    /// U1, its permutation mean and variance, and the permutation tail probabilities, by
    /// enumerating every split of the pooled observations into n1 pre and n2 post.
    struct BruteForce {
        u1: f64,
        mean: f64,
        var: f64,
        p_at_most: f64,
        p_at_least: f64,
    }

    fn u1_of(pre: &[f64], post: &[f64]) -> f64 {
        let mut twice = 0u64;
        for &a in pre {
            for &b in post {
                twice += if a > b {
                    2
                } else if a == b {
                    1
                } else {
                    0
                };
            }
        }
        twice as f64 / 2.0
    }

    fn brute_force(pre: &[f64], post: &[f64]) -> BruteForce {
        let pooled: Vec<f64> = pre.iter().chain(post).copied().collect();
        let n = pooled.len();
        let observed = u1_of(pre, post);
        let (mut count, mut sum, mut sum_sq, mut at_most, mut at_least) =
            (0u64, 0.0, 0.0, 0u64, 0u64);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != pre.len() {
                continue;
            }
            let in_a = |i: usize| mask & (1 << i) != 0;
            let a: Vec<f64> = (0..n).filter(|&i| in_a(i)).map(|i| pooled[i]).collect();
            let b: Vec<f64> = (0..n).filter(|&i| !in_a(i)).map(|i| pooled[i]).collect();
            let u = u1_of(&a, &b);
            count += 1;
            sum += u;
            sum_sq += u * u;
            at_most += u64::from(u <= observed);
            at_least += u64::from(u >= observed);
        }
        let c = count as f64;
        let mean = sum / c;
        BruteForce {
            u1: observed,
            mean,
            var: sum_sq / c - mean * mean,
            p_at_most: at_most as f64 / c,
            p_at_least: at_least as f64 / c,
        }
    }

    fn expand(sample: &[(f64, u64)]) -> Vec<f64> {
        sample
            .iter()
            .flat_map(|&(v, c)| std::iter::repeat_n(v, c as usize))
            .collect()
    }

    /// Distinct values split into a pre and a post sample of at least one each.
    fn distinct_split() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        (2usize..=12)
            .prop_flat_map(|n| {
                (
                    proptest::sample::subsequence((0..60).collect::<Vec<i32>>(), n).prop_shuffle(),
                    1..n,
                )
            })
            .prop_map(|(values, n1)| {
                let values: Vec<f64> = values.into_iter().map(|v| f64::from(v) / 4.0).collect();
                (values[..n1].to_vec(), values[n1..].to_vec())
            })
    }

    /// Weighted samples over a few values, so ties within and across samples are common.
    fn tied_weighted() -> impl Strategy<Value = Vec<(f64, u64)>> {
        proptest::collection::vec((0i32..5, 1u64..4), 1..5)
            .prop_map(|v| v.into_iter().map(|(x, c)| (f64::from(x), c)).collect())
    }

    proptest! {
        #[test]
        fn exact_p_values_equal_the_permutation_distribution((pre, post) in distinct_split()) {
            let r = mann_whitney(&unit(&pre), &unit(&post)).unwrap();
            let bf = brute_force(&pre, &post);
            prop_assert!(r.exact);
            prop_assert_eq!(r.u1, bf.u1);
            prop_assert!((r.mean_u - bf.mean).abs() < 1e-9);
            prop_assert!((r.var_u - bf.var).abs() < 1e-9 * bf.var.max(1.0));
            prop_assert!((r.p_greater - bf.p_at_most).abs() < 1e-12);
            prop_assert!((r.p_less - bf.p_at_least).abs() < 1e-12);
        }

        #[test]
        fn tie_corrected_variance_is_the_permutation_variance(
            pre in tied_weighted(),
            post in tied_weighted(),
        ) {
            let (pre_x, post_x) = (expand(&pre), expand(&post));
            prop_assume!(pre_x.len() + post_x.len() <= 14);
            let r = mann_whitney(&pre, &post).unwrap();
            let bf = brute_force(&pre_x, &post_x);
            prop_assert_eq!(r.u1, bf.u1);
            prop_assert!((r.mean_u - bf.mean).abs() < 1e-9);
            prop_assert!((r.var_u - bf.var).abs() < 1e-9 * bf.var.max(1.0), "{} vs {}", r.var_u, bf.var);
        }

        #[test]
        fn weighted_input_equals_expanded_input(pre in tied_weighted(), post in tied_weighted()) {
            let weighted = mann_whitney(&pre, &post).unwrap();
            let expanded = mann_whitney(&unit(&expand(&pre)), &unit(&expand(&post))).unwrap();
            prop_assert_eq!(weighted, expanded);
        }

        #[test]
        fn swapping_pre_and_post_mirrors_the_result(
            pre in proptest::collection::vec((-5i32..5, 0u64..50), 1..8),
            post in proptest::collection::vec((-5i32..5, 0u64..50), 1..8),
        ) {
            let pre: Vec<(f64, u64)> = pre.into_iter().map(|(v, c)| (f64::from(v), c)).collect();
            let post: Vec<(f64, u64)> = post.into_iter().map(|(v, c)| (f64::from(v), c)).collect();
            let (Some(a), Some(b)) = (mann_whitney(&pre, &post), mann_whitney(&post, &pre)) else {
                prop_assert!(mann_whitney(&pre, &post).is_none() && mann_whitney(&post, &pre).is_none());
                return Ok(());
            };
            prop_assert_eq!((a.u1, a.u2), (b.u2, b.u1));
            prop_assert_eq!((a.p_greater, a.p_less), (b.p_less, b.p_greater));
            prop_assert_eq!(a.p_two_sided, b.p_two_sided);
            prop_assert_eq!(a.z, -b.z);
            prop_assert_eq!(a.var_u, b.var_u);
        }

        #[test]
        fn p_values_are_sane_and_never_nan(
            pre in proptest::collection::vec((-3i32..3, 0u64..1_000_000), 0..6),
            post in proptest::collection::vec((-3i32..3, 0u64..1_000_000), 0..6),
        ) {
            let pre: Vec<(f64, u64)> = pre.into_iter().map(|(v, c)| (f64::from(v), c)).collect();
            let post: Vec<(f64, u64)> = post.into_iter().map(|(v, c)| (f64::from(v), c)).collect();
            let Some(r) = mann_whitney(&pre, &post) else { return Ok(()) };
            for v in [r.u1, r.u2, r.mean_u, r.var_u, r.z, r.p_greater, r.p_less, r.p_two_sided] {
                prop_assert!(!v.is_nan());
            }
            for p in [r.p_greater, r.p_less, r.p_two_sided] {
                prop_assert!((0.0..=1.0).contains(&p));
            }
            // The two one-sided tails overlap at the observed value (and by the continuity
            // correction), so together they cover at least everything.
            prop_assert!(r.p_greater + r.p_less >= 1.0 - 1e-12);
            prop_assert_eq!(r.p_two_sided, two_sided(r.p_greater, r.p_less));
            prop_assert_eq!(r.u1 + r.u2, r.n1 as f64 * r.n2 as f64);
            prop_assert!(r.var_u >= 0.0);
        }
    }
}
