//! A mergeable duration sketch: log-spaced bins plus count, sum and sum of squares.
//!
//! Memory is bounded by the number of bins (at most [`BINS`]), independent of how many
//! observations it has seen. Bin `i` covers `[MIN * GROWTH^i, MIN * GROWTH^(i+1))`, so every
//! quantile is known to within 2 % relative error; the mean is exact (from sum/count).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Smallest value with its own bin (seconds); smaller values share bin 0.
pub const MIN: f64 = 0.01;
/// Ratio between consecutive bin edges.
pub const GROWTH: f64 = 1.04;
/// Number of bins: covers 0.01 s to about 11.6 days.
pub const BINS: u16 = 512;

/// Distribution of a duration KPI over one window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DurationSketch {
    // fields in key order: the ledger's canonical text writes members sorted by key, and
    // moves none of them when they come in that order
    /// bin index → observations (sparse).
    pub bins: BTreeMap<u16, u64>,
    pub count: u64,
    pub sum: f64,
    /// What rounding lost from `sum` in an open cycle; 0 once settled (as in
    /// [`super::ScoreStats`]).
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub sum_lo: f64,
    pub sum_sq: f64,
    /// What rounding lost from `sum_sq` in an open cycle; 0 once settled.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub sum_sq_lo: f64,
}

/// The bin holding `value` (non-finite and negative values go to bin 0).
pub fn bin_of(value: f64) -> u16 {
    if value.is_nan() || value <= MIN {
        return 0;
    }
    let i = ((value / MIN).ln() / GROWTH.ln()).floor();
    if i >= f64::from(BINS - 1) {
        BINS - 1
    } else {
        i as u16
    }
}

/// The representative value of a bin: the geometric midpoint of its edges.
pub fn bin_value(bin: u16) -> f64 {
    MIN * GROWTH.powf(f64::from(bin) + 0.5)
}

impl DurationSketch {
    /// Adds one observation; negative or non-finite values count as 0 s.
    pub fn observe(&mut self, value: f64) {
        let v = if value.is_finite() && value > 0.0 {
            value
        } else {
            0.0
        };
        self.count += 1;
        super::add_exactly(&mut self.sum, &mut self.sum_lo, v);
        super::add_exactly(&mut self.sum_sq, &mut self.sum_sq_lo, v * v);
        *self.bins.entry(bin_of(v)).or_insert(0) += 1;
    }

    /// Adds a partial sketch of the open cycle (an ingest worker's), keeping what rounding
    /// loses from the sums, as [`DurationSketch::observe`] does.
    pub fn merge_open(&mut self, other: &DurationSketch) {
        self.count += other.count;
        super::add_exactly(&mut self.sum, &mut self.sum_lo, other.sum);
        self.sum_lo += other.sum_lo;
        super::add_exactly(&mut self.sum_sq, &mut self.sum_sq_lo, other.sum_sq);
        self.sum_sq_lo += other.sum_sq_lo;
        for (b, n) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += n;
        }
    }

    /// The cycle closes: each sum and its low part become one double, rounded once.
    pub fn settle(&mut self) {
        self.sum += std::mem::take(&mut self.sum_lo);
        self.sum_sq += std::mem::take(&mut self.sum_sq_lo);
    }

    /// Merges many sketches of closed windows (low parts 0) into this one, in order: the
    /// same result as merging them one by one, with the bins counted in a dense array (one
    /// pass instead of a map lookup per bin per sketch).
    pub fn merge_all<'a>(&mut self, others: impl IntoIterator<Item = &'a DurationSketch>) {
        let mut dense = vec![0u64; usize::from(BINS)];
        // a bin beyond the sketch's range (only from a hand-written record) is kept aside
        let mut beyond: BTreeMap<u16, u64> = BTreeMap::new();
        let mut add = |b: u16, n: u64| match dense.get_mut(usize::from(b)) {
            Some(slot) => *slot += n,
            None => *beyond.entry(b).or_insert(0) += n,
        };
        for (b, n) in &self.bins {
            add(*b, *n);
        }
        for o in others {
            self.count += o.count;
            self.sum += o.sum;
            self.sum_sq += o.sum_sq;
            for (b, n) in &o.bins {
                add(*b, *n);
            }
        }
        self.bins = dense
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (b as u16, *n))
            .chain(beyond)
            .collect();
    }

    /// Adds a closed window's sketch (low parts 0: plain sums).
    pub fn merge(&mut self, other: &DurationSketch) {
        self.count += other.count;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        for (b, n) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += n;
        }
    }

    /// Exact mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Sample variance (n - 1), or `None` with fewer than two observations.
    pub fn variance(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        Some(((self.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0))
    }

    /// The `q` quantile (0..=1) to within one bin, or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0;
        for (b, n) in &self.bins {
            seen += n;
            if seen > rank {
                return Some(bin_value(*b));
            }
        }
        self.bins.keys().next_back().map(|b| bin_value(*b))
    }

    /// The bins as (representative value, count) pairs, for rank statistics.
    pub fn weighted_values(&self) -> Vec<(f64, u64)> {
        self.bins.iter().map(|(b, n)| (bin_value(*b), *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn merging_all_at_once_equals_merging_one_by_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for case in 0..50 {
            let sketches: Vec<DurationSketch> = (0..1 + case % 12)
                .map(|_| {
                    let mut s = DurationSketch::default();
                    for _ in 0..rng.random_range(0..40) {
                        s.observe(rng.random_range(0.0..3_000.0));
                    }
                    s
                })
                .collect();
            let mut start = DurationSketch::default();
            start.observe(12.5);
            start.bins.insert(BINS + 3, 1); // out of range: kept as it is
            let mut one_by_one = start.clone();
            sketches.iter().for_each(|s| one_by_one.merge(s));
            let mut all = start.clone();
            all.merge_all(&sketches);
            assert_eq!(all.bins, one_by_one.bins, "case {case}");
            assert_eq!(all.count, one_by_one.count);
            assert_eq!(all.sum.to_bits(), one_by_one.sum.to_bits());
            assert_eq!(all.sum_sq.to_bits(), one_by_one.sum_sq.to_bits());
        }
    }

    #[test]
    fn bins_bracket_values() {
        for v in [0.02, 1.0, 42.3, 300.0, 86_400.0] {
            let b = bin_of(v);
            let lo = MIN * GROWTH.powi(i32::from(b));
            assert!(
                lo <= v * (1.0 + 1e-12) && v < lo * GROWTH * (1.0 + 1e-12),
                "{v} in bin {b}"
            );
            assert!((bin_value(b) / v - 1.0).abs() < 0.04);
        }
        assert_eq!(bin_of(-1.0), 0);
        assert_eq!(bin_of(f64::NAN), 0);
        assert_eq!(bin_of(1e12), BINS - 1);
    }

    #[test]
    fn mean_and_variance_are_exact_and_memory_bounded() {
        let mut s = DurationSketch::default();
        for i in 0..100_000u64 {
            s.observe((i % 100) as f64 + 1.0);
        }
        assert_eq!(s.count, 100_000);
        assert!((s.mean().unwrap() - 50.5).abs() < 1e-9);
        // variance of 1..=100 repeated: population var 833.25, sample var close to it
        assert!((s.variance().unwrap() - 833.25 * 100_000.0 / 99_999.0).abs() < 1e-3);
        assert!(
            s.bins.len() <= 120,
            "bins grow with distinct magnitudes, not with volume"
        );
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 / 50.0 - 1.0).abs() < 0.05, "p50 {p50}");
    }

    #[test]
    fn merge_equals_observing_all() {
        let mut a = DurationSketch::default();
        let mut b = DurationSketch::default();
        let mut all = DurationSketch::default();
        for i in 0..50 {
            let v = f64::from(i) * 1.7;
            if i % 2 == 0 {
                a.observe(v)
            } else {
                b.observe(v)
            }
            all.observe(v);
        }
        a.merge(&b);
        assert_eq!(a.bins, all.bins);
        assert_eq!(a.count, all.count);
        assert!((a.sum - all.sum).abs() < 1e-9);
        assert_eq!(DurationSketch::default().mean(), None);
    }
}
