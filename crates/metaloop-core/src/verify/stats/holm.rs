//! Holm–Bonferroni adjustment of p-values for multiple testing.

/// Holm–Bonferroni step-down adjusted p-values, same order as the input, capped at 1 and monotone.
///
/// As R's `p.adjust(p, method = "holm")`: sorted ascending, the i-th smallest (from 0) is
/// multiplied by `m - i` and the running maximum is taken. NaN is treated as 1 and values
/// outside [0, 1] are clamped into it. An empty input gives an empty output.
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let clean: Vec<f64> = p_values
        .iter()
        .map(|&p| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) })
        .collect();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| clean[a].total_cmp(&clean[b]));
    let mut adjusted = vec![1.0; m];
    let mut running_max: f64 = 0.0;
    for (rank, &index) in order.iter().enumerate() {
        let scaled = ((m - rank) as f64 * clean[index]).min(1.0);
        running_max = running_max.max(scaled);
        adjusted[index] = running_max;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_all_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (a - e).abs() < 1e-12,
                "actual {actual:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn pingouin_documentation_example() {
        // pingouin.holm documentation: pvals = [.50, .003, .32, .054, .0003] gives
        // [0.64, 0.012, 0.64, 0.162, 0.0015]. By hand: sorted .0003*5 = .0015,
        // .003*4 = .012, .054*3 = .162, .32*2 = .64, .50*1 = .50 -> running max .64.
        assert_all_close(
            &holm_adjust(&[0.50, 0.003, 0.32, 0.054, 0.0003]),
            &[0.64, 0.012, 0.64, 0.162, 0.0015],
        );
    }

    #[test]
    fn stdlib_js_padjust_example() {
        // stdlib.io @stdlib/stats/padjust documentation: padjust([0.319, 0.201, 0.4, 0.374,
        // 0.113], 'holm') returns [~0.957, 0.804, ..., ~0.957, ~0.565]. By hand: .113*5 =
        // .565, .201*4 = .804, .319*3 = .957, .374*2 = .748 -> .957, .4*1 -> .957.
        assert_all_close(
            &holm_adjust(&[0.319, 0.201, 0.4, 0.374, 0.113]),
            &[0.957, 0.804, 0.957, 0.957, 0.565],
        );
    }

    #[test]
    fn metricgate_example_by_hand() {
        // metricgate.com Holm-Bonferroni page, p = [0.01, 0.04, 0.20, 0.03, 0.005, 0.07]
        // (its R script calls p.adjust(raw_pvalues, method = "holm")). By hand: sorted
        // .005*6 = .03, .01*5 = .05, .03*4 = .12, .04*3 = .12, .07*2 = .14, .20*1 -> .20.
        assert_all_close(
            &holm_adjust(&[0.01, 0.04, 0.20, 0.03, 0.005, 0.07]),
            &[0.05, 0.12, 0.20, 0.12, 0.03, 0.14],
        );
    }

    #[test]
    fn edge_cases() {
        assert!(holm_adjust(&[]).is_empty());
        assert_eq!(holm_adjust(&[0.3]), vec![0.3]);
        // Ties get equal adjusted values, capped at 1.
        assert_eq!(holm_adjust(&[0.01, 0.01]), vec![0.02, 0.02]);
        assert_eq!(holm_adjust(&[0.6, 0.7]), vec![1.0, 1.0]);
        // NaN counts as 1; out-of-range values are clamped.
        assert_eq!(
            holm_adjust(&[f64::NAN, 0.01, -0.5, 2.0]),
            vec![1.0, 0.03, 0.0, 1.0]
        );
    }

    proptest! {
        #[test]
        fn adjusted_values_are_monotone_bounded_and_at_least_raw(
            p in proptest::collection::vec(0.0f64..=1.0, 0..20),
        ) {
            let adjusted = holm_adjust(&p);
            prop_assert_eq!(adjusted.len(), p.len());
            for (raw, adj) in p.iter().zip(&adjusted) {
                prop_assert!(adj >= raw && *adj <= 1.0);
                // Never more than Bonferroni.
                prop_assert!(*adj <= (raw * p.len() as f64).min(1.0) + 1e-15);
            }
            // Monotone: a smaller raw p-value never gets a larger adjusted one.
            for i in 0..p.len() {
                for j in 0..p.len() {
                    if p[i] <= p[j] {
                        prop_assert!(adjusted[i] <= adjusted[j]);
                    }
                }
            }
        }
    }
}
