//! Ingest counters, shared with whoever exports them (`/metrics`).

use super::rejection::RejectReason;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Accepted events and rejections per reason; lock-free, readable from any thread.
#[derive(Debug, Default)]
pub struct IngestCounters {
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    pub accepted: u64,
    /// Every reason, zeros included.
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl CountersSnapshot {
    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

impl IngestCounters {
    pub(crate) fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rejected(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Rejections for one reason so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            accepted: self.accepted(),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| (*r, self.rejected(*r)))
                .collect(),
        }
    }
}
