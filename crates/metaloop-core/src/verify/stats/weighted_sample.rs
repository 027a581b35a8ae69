//! Weighted samples: `(value, count)` pairs such as histogram bins, where equal values are ties.

/// Sorts a weighted sample by value and merges equal values, summing their counts.
///
/// Entries with a zero count are dropped (whatever their value). Returns `None` if a
/// counted value is NaN or the total count overflows `u64`. `-0.0` and `0.0` are the
/// same value. The result is strictly increasing in value and every count is positive.
pub(super) fn merge_counts(sample: &[(f64, u64)]) -> Option<Vec<(f64, u64)>> {
    let mut entries = Vec::with_capacity(sample.len());
    for &(value, count) in sample {
        if count == 0 {
            continue;
        }
        if value.is_nan() {
            return None;
        }
        // Adding +0.0 turns -0.0 into +0.0, so that total_cmp sees them as equal.
        entries.push((value + 0.0, count));
    }
    entries.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, u64)> = Vec::with_capacity(entries.len());
    let mut total: u64 = 0;
    for (value, count) in entries {
        total = total.checked_add(count)?;
        match merged.last_mut() {
            Some(last) if last.0 == value => last.1 += count,
            _ => merged.push((value, count)),
        }
    }
    Some(merged)
}

/// The total number of observations in a merged weighted sample.
pub(super) fn total_count(merged: &[(f64, u64)]) -> u64 {
    // merge_counts has already checked that this sum does not overflow.
    merged.iter().map(|&(_, count)| count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_merges_and_drops_empty_entries() {
        let merged = merge_counts(&[
            (3.0, 1),
            (1.0, 2),
            (3.0, 4),
            (f64::NAN, 0),
            (2.0, 0),
            (-0.0, 1),
            (0.0, 2),
            (f64::INFINITY, 1),
        ])
        .unwrap();
        assert_eq!(
            merged,
            vec![(0.0, 3), (1.0, 2), (3.0, 5), (f64::INFINITY, 1)]
        );
        assert_eq!(total_count(&merged), 11);
    }

    #[test]
    fn rejects_nan_and_overflow() {
        assert_eq!(merge_counts(&[(1.0, 1), (f64::NAN, 1)]), None);
        assert_eq!(merge_counts(&[(1.0, u64::MAX), (2.0, 1)]), None);
        assert_eq!(merge_counts(&[]), Some(vec![]));
    }
}
