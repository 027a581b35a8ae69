//! Rate KPIs: counts are the sufficient statistics.

use serde::{Deserialize, Serialize};

/// Successes out of trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateCounts {
    pub successes: u64,
    pub trials: u64,
}

impl RateCounts {
    /// Counts one trial.
    pub fn observe(&mut self, success: bool) {
        self.trials += 1;
        self.successes += u64::from(success);
    }

    /// Adds another window's counts.
    pub fn merge(&mut self, other: &RateCounts) {
        self.successes += other.successes;
        self.trials += other.trials;
    }

    /// successes / trials, or `None` when there is no data (missing, never 0).
    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }

    /// Failures (trials - successes).
    pub fn failures(&self) -> u64 {
        self.trials - self.successes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_none_not_zero() {
        let mut r = RateCounts::default();
        assert_eq!(r.rate(), None);
        r.observe(true);
        r.observe(false);
        assert_eq!(r.rate(), Some(0.5));
        assert_eq!(r.failures(), 1);
    }
}
