//! The agenda of a discrete-event simulation: what happens next, in time order, ties broken
//! by scheduling order so that runs are reproducible.

use crate::burst::Stratum;
use crate::health::Transition;
use crate::incident::Outcome;
use metaloop_core::protocol::Arm;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Something due at a moment of virtual time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Happening {
    /// The next incident of a domain starts (ignored when `epoch` is stale: the domain's
    /// incident rate changed since it was scheduled).
    Arrival { domain: usize, epoch: u64 },
    /// The next incident of a cluster already under way starts; `left` more follow it.
    Follower {
        domain: usize,
        stratum: Stratum,
        left: u32,
    },
    /// The planner's decision on an incident is published.
    Decision {
        domain: usize,
        incident: u64,
        outcome: Outcome,
        /// The experiment (index into the spine's experiment ids) and arm of the incident.
        arm: Option<(usize, Arm)>,
    },
    /// An incident's recovery finishes.
    Recovery {
        domain: usize,
        incident: u64,
        outcome: Outcome,
        arm: Option<(usize, Arm)>,
    },
    /// A domain's periodic report: compliance score and human queue depth.
    Report { domain: usize },
    /// A domain's trust core raises an exception.
    TrustException { domain: usize },
    /// A node of the health graph may change state.
    Health(Transition),
}

#[derive(Debug)]
struct Entry {
    at_ms: i64,
    seq: u64,
    happening: Happening,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// A priority queue of happenings.
#[derive(Debug, Default)]
pub(crate) struct Agenda {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
}

impl Agenda {
    /// Schedules `happening` at `at_ms`.
    pub(crate) fn schedule(&mut self, at_ms: i64, happening: Happening) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry {
            at_ms,
            seq,
            happening,
        }));
    }

    /// Removes and returns the earliest happening if it is due at or before `until_ms`.
    pub(crate) fn pop_due(&mut self, until_ms: i64) -> Option<(i64, Happening)> {
        if self.heap.peek()?.0.at_ms > until_ms {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        Some((e.at_ms, e.happening))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_schedule_order() {
        let mut a = Agenda::default();
        a.schedule(20, Happening::Report { domain: 2 });
        a.schedule(10, Happening::Report { domain: 1 });
        a.schedule(20, Happening::Report { domain: 3 });
        assert_eq!(a.pop_due(15), Some((10, Happening::Report { domain: 1 })));
        assert_eq!(a.pop_due(15), None);
        assert_eq!(a.pop_due(20), Some((20, Happening::Report { domain: 2 })));
        assert_eq!(a.pop_due(20), Some((20, Happening::Report { domain: 3 })));
        assert_eq!(a.pop_due(i64::MAX), None);
    }
}
