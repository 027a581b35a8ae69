//! The Hodges–Lehmann estimate of the shift between two weighted samples.

use super::weighted_sample::{merge_counts, total_count};

/// Hodges–Lehmann estimate of the shift post - pre: the weighted median of all pairwise differences (post_j - pre_i),
/// each pair weighted by count_i * count_j. For an even total weight use the mean of the two middle values.
///
/// Works on distinct values, in O(k1 k2 log(k1 k2)) time and O(k1 k2) memory for k1 and
/// k2 distinct values, never in the counts. Entries with a zero count are ignored.
/// Returns `None` if either side has no observations or a counted value is not finite.
pub fn hodges_lehmann(pre: &[(f64, u64)], post: &[(f64, u64)]) -> Option<f64> {
    let pre = merge_counts(pre)?;
    let post = merge_counts(post)?;
    if pre.is_empty() || post.is_empty() {
        return None;
    }
    if pre.iter().chain(&post).any(|&(v, _)| !v.is_finite()) {
        return None;
    }
    let mut pairs: Vec<(f64, u128)> = Vec::with_capacity(pre.len() * post.len());
    for &(b, cb) in &post {
        for &(a, ca) in &pre {
            pairs.push((b - a, u128::from(ca) * u128::from(cb)));
        }
    }
    pairs.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));

    // The two middle positions (0-based) of the expanded, sorted differences; equal when
    // the total weight is odd.
    let weight = u128::from(total_count(&pre)) * u128::from(total_count(&post));
    let (low_rank, high_rank) = ((weight - 1) / 2, weight / 2);
    let mut low = None;
    let mut seen: u128 = 0;
    for &(d, w) in &pairs {
        seen += w;
        if low.is_none() && seen > low_rank {
            low = Some(d);
        }
        if seen > high_rank {
            // Differences of finite values can overflow to ±infinity; report no estimate
            // rather than an infinite or NaN one.
            let estimate = low?.midpoint(d);
            return estimate.is_finite().then_some(estimate);
        }
    }
    unreachable!("the cumulative weight reaches the total weight")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unit(values: &[f64]) -> Vec<(f64, u64)> {
        values.iter().map(|&v| (v, 1)).collect()
    }

    #[test]
    fn hand_computed_examples() {
        // pre {1, 2, 3}, post {2, 4}: differences 1, 0, -1, 3, 2, 1 sort to
        // -1, 0, 1, 1, 2, 3; the two middle values are 1 and 1.
        assert_eq!(
            hodges_lehmann(&unit(&[1.0, 2.0, 3.0]), &unit(&[2.0, 4.0])),
            Some(1.0)
        );
        // pre {1, 5}, post {2, 3}: differences 1, 2, -3, -2 sort to -3, -2, 1, 2;
        // the mean of the middle values -2 and 1 is -0.5.
        assert_eq!(
            hodges_lehmann(&unit(&[1.0, 5.0]), &unit(&[2.0, 3.0])),
            Some(-0.5)
        );
        // Odd number of pairs: pre {0}, post {1, 2, 10}: the median of 1, 2, 10 is 2.
        assert_eq!(
            hodges_lehmann(&unit(&[0.0]), &unit(&[1.0, 2.0, 10.0])),
            Some(2.0)
        );
        // Weighted: pre {10 x3}, post {11 x1, 20 x1}: differences 1, 1, 1, 10, 10, 10;
        // the middle values are 1 and 10, so 5.5.
        assert_eq!(
            hodges_lehmann(&[(10.0, 3)], &[(11.0, 1), (20.0, 1)]),
            Some(5.5)
        );
        // Weight 2 on 20 instead: 1, 1, 1, 10 x6: 9 pairs, the 5th is 10.
        assert_eq!(
            hodges_lehmann(&[(10.0, 3)], &[(11.0, 1), (20.0, 2)]),
            Some(10.0)
        );
    }

    #[test]
    fn shift_of_a_sample_is_recovered() {
        let pre: Vec<(f64, u64)> = (0..200)
            .map(|i| (f64::from(i) * 0.5, 1000 + i as u64))
            .collect();
        let post: Vec<(f64, u64)> = pre.iter().map(|&(v, c)| (v + 3.0, c)).collect();
        assert_eq!(hodges_lehmann(&pre, &post), Some(3.0));
        assert_eq!(hodges_lehmann(&post, &pre), Some(-3.0));
    }

    #[test]
    fn invalid_input() {
        assert_eq!(hodges_lehmann(&[], &[(1.0, 1)]), None);
        assert_eq!(hodges_lehmann(&[(1.0, 0)], &[(1.0, 1)]), None);
        assert_eq!(hodges_lehmann(&[(f64::NAN, 1)], &[(1.0, 1)]), None);
        assert_eq!(hodges_lehmann(&[(f64::INFINITY, 1)], &[(1.0, 1)]), None);
        assert_eq!(hodges_lehmann(&[(-f64::MAX, 1)], &[(f64::MAX, 1)]), None);
        assert_eq!(
            hodges_lehmann(&[(f64::NAN, 0), (1.0, 1)], &[(1.0, 1)]),
            Some(0.0)
        );
    }

    #[test]
    fn large_counts_and_many_bins() {
        // 500 distinct values on each side (250 000 pairs) with counts in the millions.
        let pre: Vec<(f64, u64)> = (0..500).map(|i| (f64::from(i), 2_000_000)).collect();
        let post: Vec<(f64, u64)> = (0..500).map(|i| (f64::from(i) + 7.0, 3_000_000)).collect();
        assert_eq!(hodges_lehmann(&pre, &post), Some(7.0));
    }

    fn brute_force(pre: &[(f64, u64)], post: &[(f64, u64)]) -> f64 {
        let expand = |s: &[(f64, u64)]| -> Vec<f64> {
            s.iter()
                .flat_map(|&(v, c)| std::iter::repeat_n(v, c as usize))
                .collect()
        };
        let mut diffs: Vec<f64> = Vec::new();
        for b in expand(post) {
            for a in expand(pre) {
                diffs.push(b - a);
            }
        }
        diffs.sort_by(f64::total_cmp);
        let n = diffs.len();
        (diffs[(n - 1) / 2] + diffs[n / 2]) / 2.0
    }

    fn weighted() -> impl Strategy<Value = Vec<(f64, u64)>> {
        proptest::collection::vec((-20i32..20, 0u64..6), 1..8).prop_map(|v| {
            v.into_iter()
                .map(|(x, c)| (f64::from(x) / 4.0, c))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn equals_median_of_expanded_pairwise_differences(pre in weighted(), post in weighted()) {
            let has = |s: &[(f64, u64)]| s.iter().any(|&(_, c)| c > 0);
            let estimate = hodges_lehmann(&pre, &post);
            if !has(&pre) || !has(&post) {
                prop_assert_eq!(estimate, None);
            } else {
                prop_assert_eq!(estimate, Some(brute_force(&pre, &post)));
            }
        }

        #[test]
        fn swapping_negates_and_shifting_adds(pre in weighted(), post in weighted(), shift in -10i32..10) {
            let Some(estimate) = hodges_lehmann(&pre, &post) else { return Ok(()) };
            prop_assert_eq!(hodges_lehmann(&post, &pre), Some(-estimate));
            let shifted: Vec<(f64, u64)> = post.iter().map(|&(v, c)| (v + f64::from(shift), c)).collect();
            prop_assert_eq!(hodges_lehmann(&pre, &shifted), Some(estimate + f64::from(shift)));
        }
    }
}
