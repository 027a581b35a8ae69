//! Each domain's recent window kept from one cycle to the next.
//!
//! A domain's window merges its closed cycles back from the newest until it holds enough
//! recoveries (or reaches its last change): at low volume, tens of cycles, every cycle. The
//! cycles it spans only ever move forward: the next window is the new cycle plus a prefix
//! (newest first) of the last one's cycles. So each domain keeps its current cycles with
//! their duration bins summed (integer counts: adding and removing is exact), and only the
//! sums in floating point are added up again, newest first, as merging from scratch adds
//! them — the result is bit for bit [`SnapshotBuilder::domain_window`]'s. Derived state:
//! never recorded, rebuilt from the history when it does not follow on from it.

use super::SnapshotBuilder;
use crate::kpi::sketch::BINS;
use crate::kpi::{CycleWindows, DomainWindow, PlaybookCounts, RateCounts, ScoreStats};
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// One domain's window of one closed cycle: its counts and sums; its custom KPIs,
/// playbooks and duration bins are in its domain's stores (see [`DomainRecent`]).
#[derive(Debug, Clone)]
struct Kept {
    cycle: u64,
    end: Timestamp,
    /// `None`: the domain had no window in that cycle.
    window: Option<KeptWindow>,
}

#[derive(Debug, Clone)]
struct KeptWindow {
    success: RateCounts,
    autonomy: RateCounts,
    intervention: RateCounts,
    recovery_count: u64,
    recovery_sum: f64,
    recovery_sum_sq: f64,
    compliance: ScoreStats,
    trust_exceptions: u64,
    events: u64,
    /// How many entries of the domain's stores are this window's.
    custom: u32,
    playbooks: u32,
    bins: u32,
}

impl Kept {
    fn trials(&self) -> u64 {
        self.window.as_ref().map_or(0, |w| w.success.trials)
    }
}

/// One domain's current window: its cycles, newest first, and their duration bins summed.
///
/// The cycles' custom KPIs, playbooks and duration bins are kept in three stores, each in
/// the cycles' order (newest first), a cycle's entries in a row: merging reads them front to
/// back, from a few contiguous buffers rather than from allocations of their own per cycle
/// (scattered in memory, at 1,000 domains most of a snapshot's time went to fetching them).
#[derive(Debug, Clone, Default)]
struct DomainRecent {
    kept: VecDeque<Kept>,
    /// Custom KPIs and playbooks by their number in the domain's names.
    custom: VecDeque<(usize, ScoreStats)>,
    playbooks: VecDeque<(usize, PlaybookCounts)>,
    /// The duration bins, to take out of the sum when their cycle leaves the window.
    bin_counts: VecDeque<(u16, u64)>,
    /// The last walk back stopped at an older cycle (rather than running out of history):
    /// the next one stops there or sooner.
    stopped: bool,
    /// Custom KPI and playbook names seen in the domain, numbered in order of appearance.
    custom_names: Vec<String>,
    playbook_names: Vec<String>,
    /// Bin → (observations, cycles of the window that have the bin). A bin within the
    /// sketch's range is in the merged sketch when it has observations; one beyond it (only
    /// from a hand-written record) whenever a cycle has it, as merging keeps it.
    bins: BTreeMap<u16, (u64, u32)>,
}

/// The number of `name` in `names`, added if new.
fn number(names: &mut Vec<String>, name: &str) -> usize {
    match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    }
}

/// Puts `items` at the front of `store` (in their order) or at its back.
fn store<T>(store: &mut VecDeque<T>, items: Vec<T>, front: bool) {
    if front {
        for item in items.into_iter().rev() {
            store.push_front(item);
        }
    } else {
        store.extend(items);
    }
}

impl DomainRecent {
    /// Adds the domain's window of cycle `c`: as the newest cycle (`front`) or as the
    /// oldest.
    fn keep(&mut self, c: &CycleWindows, domain: &str, front: bool) {
        let window = c.domains.get(domain).map(|w| {
            let custom: Vec<(usize, ScoreStats)> = w
                .custom
                .iter()
                .map(|(k, v)| (number(&mut self.custom_names, k), *v))
                .collect();
            let playbooks: Vec<(usize, PlaybookCounts)> = w
                .playbooks
                .iter()
                .map(|(k, v)| (number(&mut self.playbook_names, k), *v))
                .collect();
            let bins: Vec<(u16, u64)> = w.recovery.bins.iter().map(|(b, n)| (*b, *n)).collect();
            for (b, n) in &bins {
                let e = self.bins.entry(*b).or_insert((0, 0));
                e.0 += n;
                e.1 += 1;
            }
            let kept = KeptWindow {
                success: w.success,
                autonomy: w.autonomy,
                intervention: w.intervention,
                recovery_count: w.recovery.count,
                recovery_sum: w.recovery.sum,
                recovery_sum_sq: w.recovery.sum_sq,
                compliance: w.compliance,
                trust_exceptions: w.trust_exceptions,
                events: w.events,
                custom: custom.len() as u32,
                playbooks: playbooks.len() as u32,
                bins: bins.len() as u32,
            };
            store(&mut self.custom, custom, front);
            store(&mut self.playbooks, playbooks, front);
            store(&mut self.bin_counts, bins, front);
            kept
        });
        let k = Kept {
            cycle: c.cycle,
            end: c.end,
            window,
        };
        if front {
            self.kept.push_front(k);
        } else {
            self.kept.push_back(k);
        }
    }

    /// Drops the oldest cycle.
    fn pop_back(&mut self) {
        let Some(w) = self.kept.pop_back().and_then(|k| k.window) else {
            return;
        };
        self.custom.truncate(self.custom.len() - w.custom as usize);
        self.playbooks
            .truncate(self.playbooks.len() - w.playbooks as usize);
        for _ in 0..w.bins {
            let Some((b, n)) = self.bin_counts.pop_back() else {
                break;
            };
            if let Some(e) = self.bins.get_mut(&b) {
                e.0 -= n;
                e.1 -= 1;
                if e.1 == 0 {
                    self.bins.remove(&b);
                }
            }
        }
    }

    /// The merged window of the kept cycles: integer counts summed in any order, sums in
    /// floating point newest first, as [`DomainWindow::merge_all`] adds them.
    fn merged(&self) -> DomainWindow {
        let mut m = DomainWindow::default();
        let mut custom: Vec<Option<ScoreStats>> = vec![None; self.custom_names.len()];
        let mut playbooks: Vec<Option<PlaybookCounts>> = vec![None; self.playbook_names.len()];
        let mut custom_at = self.custom.iter();
        let mut playbooks_at = self.playbooks.iter();
        for w in self.kept.iter().filter_map(|k| k.window.as_ref()) {
            m.success.merge(&w.success);
            m.autonomy.merge(&w.autonomy);
            m.intervention.merge(&w.intervention);
            m.compliance.merge(&w.compliance);
            for (i, v) in custom_at.by_ref().take(w.custom as usize) {
                custom[*i].get_or_insert_default().merge(v);
            }
            for (i, v) in playbooks_at.by_ref().take(w.playbooks as usize) {
                let pb = playbooks[*i].get_or_insert_default();
                pb.autonomous.merge(&v.autonomous);
                pb.all.merge(&v.all);
            }
            m.trust_exceptions += w.trust_exceptions;
            m.events += w.events;
            m.recovery.count += w.recovery_count;
            m.recovery.sum += w.recovery_sum;
            m.recovery.sum_sq += w.recovery_sum_sq;
        }
        m.custom = custom
            .into_iter()
            .zip(&self.custom_names)
            .filter_map(|(v, k)| Some((k.clone(), v?)))
            .collect();
        m.playbooks = playbooks
            .into_iter()
            .zip(&self.playbook_names)
            .filter_map(|(v, k)| Some((k.clone(), v?)))
            .collect();
        m.recovery.bins = self
            .bins
            .iter()
            .filter(|(b, (n, _))| **b >= BINS || *n > 0)
            .map(|(b, (n, _))| (*b, *n))
            .collect();
        m
    }
}

/// Every domain's recent window, kept from one snapshot to the next (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RecentWindows {
    /// The rule the windows were cut by: `window_cycles`, `min_window_samples`,
    /// `max_window_cycles`.
    rule: Option<(usize, u64, usize)>,
    domains: HashMap<String, DomainRecent>,
}

impl RecentWindows {
    /// The same as [`SnapshotBuilder::domain_window`] over `history` (whose last cycle is
    /// the one just closed), from the domain's window of the cycle before when it follows
    /// on from it.
    pub fn window(
        &mut self,
        builder: &SnapshotBuilder,
        domain: &str,
        history: &VecDeque<CycleWindows>,
        regime_start: Option<Timestamp>,
    ) -> (DomainWindow, u32) {
        let rule = (
            builder.window_cycles,
            builder.min_window_samples,
            builder.max_window_cycles,
        );
        if self.rule != Some(rule) {
            self.domains.clear();
            self.rule = Some(rule);
        }
        let Some(newest) = history.back() else {
            self.domains.remove(domain);
            return (DomainWindow::default(), 0);
        };
        let before = history.len().checked_sub(2).map(|i| history[i].cycle);
        let follows = |r: &DomainRecent| {
            let last = r.kept.front().map(|k| k.cycle);
            last.is_some() && last == before && last.map(|c| c + 1) == Some(newest.cycle)
        };
        let recent = match self.domains.get_mut(domain) {
            Some(r) if follows(r) => {
                r.keep(newest, domain, true);
                match cut(builder, r, history, regime_start) {
                    Cut::At(n, stopped) => {
                        while r.kept.len() > n {
                            r.pop_back();
                        }
                        r.stopped = stopped;
                        r
                    }
                    // the window reaches older cycles than it held: merged afresh
                    Cut::Beyond => {
                        *r = from_history(builder, domain, history, regime_start);
                        r
                    }
                }
            }
            _ => {
                let r = from_history(builder, domain, history, regime_start);
                self.domains
                    .entry(domain.to_string())
                    .insert_entry(r)
                    .into_mut()
            }
        };
        (recent.merged(), recent.kept.len() as u32)
    }

    /// Forgets the domains not in `keep` (they are rebuilt if they come back).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.domains.retain(|d, _| keep(d));
    }
}

enum Cut {
    /// The window is the first `n` kept cycles; whether the walk stopped at an older cycle
    /// (rather than running out of history).
    At(usize, bool),
    /// The window goes on past the kept cycles, into older ones of the history.
    Beyond,
}

/// Where [`SnapshotBuilder::domain_window`]'s walk back from the newest cycle stops, over
/// the kept cycles (newest first).
fn cut(
    builder: &SnapshotBuilder,
    recent: &DomainRecent,
    history: &VecDeque<CycleWindows>,
    regime_start: Option<Timestamp>,
) -> Cut {
    let kept = &recent.kept;
    let oldest = history.front().map_or(u64::MAX, |c| c.cycle);
    let mut trials = 0;
    for (i, k) in kept.iter().enumerate() {
        if k.cycle < oldest {
            // no longer in the history: the walk ends here, as it ends at the oldest cycle
            return Cut::At(i, false);
        }
        if stops(builder, i, trials, k.end, regime_start) {
            return Cut::At(i, true);
        }
        trials += k.trials();
    }
    // the last walk stopped at the cycle before the kept ones: this one, one cycle later
    // with as many recoveries or more and a change no earlier, stops there too
    if recent.stopped {
        return Cut::At(kept.len(), true);
    }
    match kept.back() {
        Some(k) if k.cycle > oldest => Cut::Beyond,
        _ => Cut::At(kept.len(), false),
    }
}

/// Whether the walk back stops before the `i`-th newest cycle (ending at `end`), with
/// `trials` recoveries in the cycles after it.
fn stops(
    builder: &SnapshotBuilder,
    i: usize,
    trials: u64,
    end: Timestamp,
    regime_start: Option<Timestamp>,
) -> bool {
    (i >= builder.window_cycles
        && (trials >= builder.min_window_samples || i >= builder.max_window_cycles))
        || (i > 0 && regime_start.is_some_and(|t| end <= t))
}

/// A domain's window walked from the history, as [`SnapshotBuilder::domain_window`] walks it.
fn from_history(
    builder: &SnapshotBuilder,
    domain: &str,
    history: &VecDeque<CycleWindows>,
    regime_start: Option<Timestamp>,
) -> DomainRecent {
    let mut r = DomainRecent::default();
    let mut trials = 0;
    for (i, c) in history.iter().rev().enumerate() {
        if stops(builder, i, trials, c.end, regime_start) {
            r.stopped = true;
            break;
        }
        r.keep(c, domain, false);
        trials += r.kept.back().map_or(0, Kept::trials);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EventData, KpiReport, Recovery};
    use rand::{Rng, SeedableRng};

    fn window(rng: &mut rand_chacha::ChaCha8Rng, domain: &str) -> DomainWindow {
        let mut w = DomainWindow::default();
        for _ in 0..rng.random_range(0..25) {
            let r = Recovery {
                domain: domain.into(),
                incident_id: "i".into(),
                playbook: ["restart-pod", "restart-flaky", "scale-out"][rng.random_range(0..3)]
                    .into(),
                duration_s: rng.random_range(0.0..900.0),
                autonomous: rng.random_bool(0.8),
                human_override: false,
                experiment: None,
            };
            w.observe(&if rng.random_bool(0.8) {
                EventData::RecoverySucceeded(r)
            } else {
                EventData::RecoveryFailed(r)
            });
        }
        for name in ["queue_depth", "error_budget", "cpu", "latency"] {
            if rng.random_bool(0.7) {
                w.observe(&EventData::KpiReported(KpiReport {
                    domain: domain.into(),
                    name: name.into(),
                    value: rng.random_range(-5.0..50.0),
                }));
            }
        }
        if rng.random_bool(0.5) {
            w.compliance.observe(rng.random_range(80.0..100.0));
        }
        if rng.random_bool(0.1) {
            w.trust_exceptions += 1;
        }
        if rng.random_bool(0.05) {
            // a hand-written record: a bin beyond the sketch's range, a KPI with no values
            w.recovery.bins.insert(BINS + 2, 0);
            w.custom.insert("empty".into(), ScoreStats::default());
        }
        // closed, as every window the snapshot merges is
        w.settle();
        w
    }

    fn same(a: &DomainWindow, b: &DomainWindow) -> bool {
        let bits = |w: &DomainWindow| {
            let mut v = vec![
                w.recovery.sum.to_bits(),
                w.recovery.sum_sq.to_bits(),
                w.compliance.sum.to_bits(),
                w.compliance.sum_sq.to_bits(),
                w.compliance.last.to_bits(),
            ];
            for s in w.custom.values() {
                v.extend([s.sum.to_bits(), s.sum_sq.to_bits(), s.last.to_bits()]);
            }
            v
        };
        a == b && bits(a) == bits(b)
    }

    /// Cycle by cycle, with domains coming and going, changes cutting windows and the
    /// history dropping its oldest cycles, the kept windows equal the ones merged afresh.
    #[test]
    fn kept_windows_equal_windows_merged_from_scratch() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let domains = ["a", "b", "c", "d", "e"];
        for case in 0..12 {
            let builder = SnapshotBuilder {
                window_cycles: 1 + case % 4,
                min_window_samples: [0, 30, 120, 400][case % 4],
                max_window_cycles: [5, 40, 288][case % 3],
                ..SnapshotBuilder::default()
            };
            let keep = 10 + case * 5;
            let mut recent = RecentWindows::default();
            let mut history: VecDeque<CycleWindows> = VecDeque::new();
            let mut regime: BTreeMap<&str, Timestamp> = BTreeMap::new();
            for cycle in 1..=120u64 {
                let end = Timestamp::from_secs(cycle as i64 * 300);
                history.push_back(CycleWindows {
                    cycle,
                    start: Timestamp::from_secs(cycle as i64 * 300 - 300),
                    end,
                    domains: {
                        let present: Vec<&str> = domains
                            .into_iter()
                            .filter(|_| rng.random_bool(0.9))
                            .collect();
                        present
                            .into_iter()
                            .map(|d| (d.to_string(), window(&mut rng, d)))
                            .collect()
                    },
                    arms: BTreeMap::new(),
                });
                // a change now and then, sometimes settling past the cycle's end
                for d in domains {
                    if rng.random_bool(0.04) {
                        let t = end.plus_millis(rng.random_range(-400_000..400_000));
                        let e = regime.entry(d).or_insert(t);
                        *e = (*e).max(t);
                    }
                }
                // a domain skipped for a few cycles is built afresh when it comes back
                let skipped = (cycle / 10) % 5;
                for (i, d) in domains.iter().enumerate() {
                    if cycle % 10 < 3 && i as u64 == skipped {
                        continue;
                    }
                    let start = regime.get(d).copied();
                    let want = builder.domain_window(d, &history, start);
                    let got = recent.window(&builder, d, &history, start);
                    assert!(
                        same(&got.0, &want.0) && got.1 == want.1,
                        "case {case} cycle {cycle} domain {d}: {} vs {} cycles",
                        got.1,
                        want.1
                    );
                }
                while history.len() > keep {
                    history.pop_front();
                }
            }
        }
    }

    #[test]
    fn a_window_that_does_not_follow_on_is_merged_afresh() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let builder = SnapshotBuilder::default();
        let history: VecDeque<CycleWindows> = (1..=30u64)
            .map(|cycle| CycleWindows {
                cycle,
                start: Timestamp::from_secs(cycle as i64 * 300 - 300),
                end: Timestamp::from_secs(cycle as i64 * 300),
                domains: [("a".to_string(), window(&mut rng, "a"))].into(),
                arms: BTreeMap::new(),
            })
            .collect();
        let mut recent = RecentWindows::default();
        recent.window(&builder, "a", &history, None);
        // the same cycle again, an older history, another rule: each as merged afresh
        let older: VecDeque<CycleWindows> = history.iter().take(20).cloned().collect();
        let other = SnapshotBuilder {
            window_cycles: 7,
            ..builder.clone()
        };
        for (b, h) in [(&builder, &history), (&builder, &older), (&other, &history)] {
            let want = b.domain_window("a", h, None);
            let got = recent.window(b, "a", h, None);
            assert!(same(&got.0, &want.0) && got.1 == want.1);
        }
    }
}
