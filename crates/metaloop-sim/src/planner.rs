//! The spine's planner: estimates its confidence for an incident and acts alone when that
//! confidence reaches the domain's threshold.

/// Allowed range of the `planner.confidence_threshold` knob.
pub const THRESHOLD_RANGE: (f64, f64) = (0.5, 0.95);

/// Allowed range of the `planner.review_band` knob.
pub const REVIEW_BAND_RANGE: (f64, f64) = (0.0, 0.5);

/// Threshold values are kept on a 1e-4 grid so that `0.70 + 0.05 - 0.05` is `0.70` again.
pub(crate) fn quantize_threshold(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// One band of the planner's confidence distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ConfidenceBand {
    /// The confidence the planner reports for incidents of this band.
    pub(crate) confidence: f64,
    /// Fraction of incidents falling in this band.
    pub(crate) weight: f64,
    /// Success probability when the planner acts alone (before playbook quality and faults).
    pub(crate) success: f64,
}

/// The planner's confidence distribution over incidents.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planner {
    pub(crate) bands: Vec<ConfidenceBand>,
}

impl Planner {
    /// Builds a planner from `(confidence, weight, success)` triples; weights must sum to 1.
    pub(crate) fn new(bands: &[(f64, f64, f64)]) -> Self {
        let bands: Vec<ConfidenceBand> = bands
            .iter()
            .map(|&(confidence, weight, success)| ConfidenceBand {
                confidence,
                weight,
                success,
            })
            .collect();
        let total: f64 = bands.iter().map(|b| b.weight).sum();
        debug_assert!((total - 1.0).abs() < 1e-9, "band weights sum to {total}");
        Planner { bands }
    }

    /// The band of an incident given a uniform draw in [0, 1).
    pub(crate) fn band_for(&self, u: f64) -> usize {
        let mut acc = 0.0;
        for (i, b) in self.bands.iter().enumerate() {
            acc += b.weight;
            if u < acc {
                return i;
            }
        }
        self.bands.len() - 1
    }
}

/// True when the planner acts without asking a human.
pub(crate) fn acts_autonomously(confidence: f64, threshold: f64) -> bool {
    confidence >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_round_trips_on_the_grid() {
        let up = quantize_threshold(0.70 + 0.05);
        assert_eq!(up, 0.75);
        assert_eq!(quantize_threshold(up - 0.05), 0.70);
        assert_eq!(quantize_threshold(0.70 + 0.02), 0.72);
        assert!(acts_autonomously(0.72, quantize_threshold(0.70 + 0.02)));
    }

    #[test]
    fn bands_are_picked_by_cumulative_weight() {
        let p = Planner::new(&[(0.5, 0.25, 0.5), (0.9, 0.75, 0.9)]);
        assert_eq!(p.band_for(0.0), 0);
        assert_eq!(p.band_for(0.2499), 0);
        assert_eq!(p.band_for(0.25), 1);
        assert_eq!(p.band_for(0.999_999), 1);
    }
}
