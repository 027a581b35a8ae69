//! How many observations of a KPI each domain has over a run of recent cycles, in time
//! linear in the domains.
//!
//! A directive's control domains are the ones with the most observations of its KPI over
//! its pre window: up to `pre_max_cycles` cycles of every other domain. Summing them cycle
//! by cycle reads every domain's summary of every such cycle (hundreds of cycles × every
//! domain, scattered in memory: tens of milliseconds a directive at 1,000 domains). Counts
//! are integers, so a sum over the last cycles is exactly the difference of two running
//! totals; this keeps, per KPI asked about, each domain's running total through each
//! cycle. Derived state: never recorded, caught up from the cycle summaries when asked, and
//! rebuilt when they no longer follow on.

use crate::verify::series::{CycleSummary, KpiAt};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Per KPI name, the running totals of its observations (see the module docs). Equal to
/// any other: it only caches what the summaries hold.
#[derive(Debug, Clone, Default)]
pub struct ObservationCounts {
    kpis: HashMap<String, KpiCounts>,
}

impl PartialEq for ObservationCounts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Default)]
struct KpiCounts {
    /// The summary of each row, oldest first (held to tell that the summaries still are
    /// the ones counted: a rebuilt summary of the same cycle is counted afresh).
    cycles: VecDeque<Arc<CycleSummary>>,
    /// A domain's column in the rows.
    columns: HashMap<String, usize>,
    /// Per cycle, each column's total through that cycle (from an arbitrary start). A
    /// row is as long as the columns were when it was added: a later column's total there
    /// is 0.
    rows: VecDeque<Vec<u64>>,
    /// The totals through the cycle before the first row.
    base: Vec<u64>,
}

/// The total of `column` in `row`, 0 where the column came later.
fn at(row: &[u64], column: usize) -> u64 {
    row.get(column).copied().unwrap_or(0)
}

impl KpiCounts {
    /// Brings the rows in step with `summaries`: rows of cycles that left dropped, rows of
    /// new cycles added; rebuilt when they do not follow on.
    fn sync(&mut self, kpi: &str, summaries: &VecDeque<Arc<CycleSummary>>) {
        while self
            .cycles
            .front()
            .is_some_and(|c| summaries.front().is_none_or(|s| c.cycle < s.cycle))
        {
            self.cycles.pop_front();
            self.base = self.rows.pop_front().unwrap_or_default();
        }
        let held = self.cycles.len();
        let follows = held <= summaries.len()
            && self
                .cycles
                .iter()
                .zip(summaries.iter())
                .all(|(c, s)| Arc::ptr_eq(c, s));
        if !follows {
            *self = KpiCounts::default();
        }
        let at_kpi = KpiAt::of(kpi);
        for s in summaries.iter().skip(self.cycles.len()) {
            let mut row = self.rows.back().unwrap_or(&self.base).clone();
            for (domain, d) in &s.domains {
                let n = at_kpi.count(d);
                let next = self.columns.len();
                let column = *self.columns.entry(domain.clone()).or_insert(next);
                if column >= row.len() {
                    row.resize(column + 1, 0);
                }
                row[column] += n;
            }
            self.cycles.push_back(s.clone());
            self.rows.push_back(row);
        }
    }

    /// `domain`'s observations over the rows from `from` to the last.
    fn since(&self, from: usize, domain: &str) -> u64 {
        let (Some(last), Some(column)) = (self.rows.back(), self.columns.get(domain)) else {
            return 0;
        };
        let before = match from {
            0 => &self.base,
            _ => &self.rows[from - 1],
        };
        at(last, *column) - at(before, *column)
    }
}

impl ObservationCounts {
    /// Per domain of `domains`, its observations of `kpi` over `pre`, when `pre` is the
    /// last cycles of `summaries`, the same summaries (`None` otherwise: the caller sums
    /// them itself). The
    /// same numbers as adding up each cycle's count.
    pub fn over_last(
        &mut self,
        kpi: &str,
        summaries: &VecDeque<Arc<CycleSummary>>,
        pre: &[Arc<CycleSummary>],
        domains: &[&String],
    ) -> Option<Vec<u64>> {
        let from = summaries.len().checked_sub(pre.len())?;
        let last = summaries.iter().skip(from);
        if pre.is_empty() || !last.zip(pre).all(|(s, p)| Arc::ptr_eq(s, p)) {
            return None;
        }
        let counts = self.kpis.entry(kpi.to_string()).or_default();
        counts.sync(kpi, summaries);
        Some(domains.iter().map(|d| counts.since(from, d)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::RateCounts;
    use crate::kpi::ScoreStats;
    use crate::time::Timestamp;
    use crate::verify::series::DomainCycle;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn summary(rng: &mut rand_chacha::ChaCha8Rng, cycle: u64, domains: usize) -> CycleSummary {
        let mut out = BTreeMap::new();
        for d in 0..domains {
            // domains come and go
            if rng.random_bool(0.15) {
                continue;
            }
            let trials = rng.random_range(0..40u64);
            let mut custom = BTreeMap::new();
            if rng.random_bool(0.5) {
                let count = rng.random_range(1..9u64);
                custom.insert(
                    "queue_depth".to_string(),
                    ScoreStats {
                        count,
                        sum: count as f64,
                        sum_sq: count as f64,
                        ..ScoreStats::default()
                    },
                );
            }
            let dc = DomainCycle {
                success: RateCounts {
                    successes: trials / 2,
                    trials,
                },
                log_recovery: ScoreStats {
                    count: trials.saturating_sub(3),
                    ..ScoreStats::default()
                },
                custom: Arc::new(custom),
                ..DomainCycle::default()
            };
            out.insert(format!("d{d:02}"), dc);
        }
        CycleSummary {
            cycle,
            start: Timestamp::from_secs(cycle as i64 * 300),
            end: Timestamp::from_secs(cycle as i64 * 300 + 300),
            domains: out,
        }
    }

    #[test]
    fn counts_over_the_last_cycles_are_the_cycle_by_cycle_sums() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let names: Vec<String> = (0..30).map(|d| format!("d{d:02}")).collect();
        let domains: Vec<&String> = names.iter().collect();
        let mut counts = ObservationCounts::default();
        let mut summaries: VecDeque<Arc<CycleSummary>> = VecDeque::new();
        let mut checked = 0;
        for cycle in 1..400u64 {
            // the history grows, then is trimmed to its last 50 cycles; once it is replaced
            // by other summaries of the same cycles
            summaries.push_back(Arc::new(summary(&mut rng, cycle, 30)));
            while summaries.len() > 50 {
                summaries.pop_front();
            }
            if cycle == 250 {
                summaries = (200..250)
                    .map(|c| Arc::new(summary(&mut rng, c, 30)))
                    .collect();
            }
            if !rng.random_bool(0.3) {
                continue;
            }
            for kpi in [
                crate::kpi::OVERALL_SUCCESS_RATE,
                crate::kpi::P95_RECOVERY_TIME,
                "queue_depth",
            ] {
                let len = rng.random_range(1..=summaries.len());
                let pre: Vec<Arc<CycleSummary>> = summaries
                    .iter()
                    .skip(summaries.len() - len)
                    .cloned()
                    .collect();
                let got = counts.over_last(kpi, &summaries, &pre, &domains).unwrap();
                // brute force: each cycle's count, added up
                let at = KpiAt::of(kpi);
                let want: Vec<u64> = names
                    .iter()
                    .map(|d| {
                        pre.iter()
                            .filter_map(|s| s.domains.get(d))
                            .map(|c| at.count(c))
                            .sum()
                    })
                    .collect();
                assert_eq!(got, want, "cycle {cycle}, {kpi}, last {len}");
                assert!(want.iter().any(|n| *n > 0));
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked}");
        // cycles that are not the last ones of the summaries are not counted here
        let pre: Vec<Arc<CycleSummary>> = summaries.iter().take(3).cloned().collect();
        assert_eq!(
            counts.over_last(crate::kpi::OVERALL_SUCCESS_RATE, &summaries, &pre, &domains),
            None
        );
    }
}
