//! Duplicate detection on (`source`, `id`) in bounded memory.

use metaloop_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};

/// The dedupe window: an accepted (`source`, `id`) is remembered until `window_secs` have
/// passed or `capacity` newer events have been accepted, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupeConfig {
    /// Most remembered events. Memory stays under about 120 bytes per unit of capacity
    /// (a hash set of 16-byte digests plus a ring of (digest, time)), whatever the stream.
    pub capacity: usize,
    /// How long an event is remembered, seconds.
    pub window_secs: u64,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            capacity: 200_000,
            window_secs: 3600,
        }
    }
}

/// The remembered events: a fixed-size 128-bit digest of each (`source`, `id`) (so long ids
/// cost no more than short ones), in arrival order for eviction.
#[derive(Debug)]
pub struct DedupeWindow {
    config: DedupeConfig,
    seen: HashSet<u128>,
    order: VecDeque<(u128, i64)>,
}

/// The digest an event is remembered by: SHA-256 over `len(source) (u64 BE) ‖ source ‖ id`,
/// first 16 bytes.
pub fn event_key(source: &str, id: &str) -> u128 {
    let mut h = Sha256::new();
    h.update((source.len() as u64).to_be_bytes());
    h.update(source.as_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

impl DedupeWindow {
    /// An empty window (a capacity of 0 is treated as 1).
    pub fn new(config: DedupeConfig) -> Self {
        let config = DedupeConfig {
            capacity: config.capacity.max(1),
            ..config
        };
        DedupeWindow {
            config,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> DedupeConfig {
        self.config
    }

    /// Forgets events older than the window.
    fn expire(&mut self, now: Timestamp) {
        let window_ms =
            i64::try_from(self.config.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        while let Some(&(key, at)) = self.order.front() {
            if now.millis().saturating_sub(at) < window_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }

    /// True when (`source`, `id`) is in the window.
    pub fn contains(&mut self, source: &str, id: &str, now: Timestamp) -> bool {
        self.expire(now);
        self.seen.contains(&event_key(source, id))
    }

    /// True when the digest `key` ([`event_key`]) is in the window.
    pub fn contains_key(&mut self, key: u128, now: Timestamp) -> bool {
        self.expire(now);
        self.seen.contains(&key)
    }

    /// Records (`source`, `id`) at `now`; false when it was already in the window.
    pub fn insert(&mut self, source: &str, id: &str, now: Timestamp) -> bool {
        self.insert_key(event_key(source, id), now)
    }

    /// Records the digest `key` ([`event_key`]) at `now`; false when it was already in the
    /// window.
    pub fn insert_key(&mut self, key: u128, now: Timestamp) -> bool {
        self.expire(now);
        if self.seen.contains(&key) {
            return false;
        }
        while self.order.len() >= self.config.capacity {
            let (oldest, _) = self.order.pop_front().expect("non-empty at capacity");
            self.seen.remove(&oldest);
        }
        self.seen.insert(key);
        self.order.push_back((key, now.millis()));
        debug_assert!(self.order.len() <= self.config.capacity);
        debug_assert_eq!(self.order.len(), self.seen.len());
        true
    }

    /// What is remembered, oldest first: (digest of [`event_key`], time accepted). With
    /// [`Self::restore`], this persists the window across restarts.
    pub fn entries(&self) -> impl Iterator<Item = (u128, Timestamp)> + '_ {
        self.order.iter().map(|&(k, at)| (k, Timestamp(at)))
    }

    /// Remembers `entries` (from [`Self::entries`] of an earlier run, in any order) as of
    /// `now`: those older than the window are dropped, and the newest `capacity` kept.
    pub fn restore(
        &mut self,
        entries: impl IntoIterator<Item = (u128, Timestamp)>,
        now: Timestamp,
    ) {
        let mut all: Vec<(u128, i64)> = entries.into_iter().map(|(k, t)| (k, t.millis())).collect();
        all.extend(self.order.drain(..));
        all.sort_by_key(|&(_, at)| at);
        self.seen.clear();
        for (key, at) in all {
            if !self.seen.insert(key) {
                continue;
            }
            while self.order.len() >= self.config.capacity {
                let (oldest, _) = self.order.pop_front().expect("non-empty at capacity");
                self.seen.remove(&oldest);
            }
            self.order.push_back((key, at));
        }
        self.expire(now);
        debug_assert_eq!(self.order.len(), self.seen.len());
    }

    /// Events remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Slots allocated by the two containers (bounded by the capacity, whatever the stream).
    pub fn allocated_slots(&self) -> usize {
        self.seen.capacity() + self.order.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let mut w = DedupeWindow::new(DedupeConfig {
            capacity: 10,
            window_secs: 60,
        });
        let t0 = Timestamp::from_secs(1000);
        assert!(w.insert("s", "1", t0));
        assert!(!w.insert("s", "1", t0.plus_millis(59_999)));
        assert!(w.contains("s", "1", t0.plus_millis(59_999)));
        assert!(!w.contains("s", "1", t0.plus_millis(60_000)));
        assert!(w.insert("s", "1", t0.plus_millis(60_000)));
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let mut w = DedupeWindow::new(DedupeConfig {
            capacity: 3,
            window_secs: 3600,
        });
        let t = Timestamp::from_secs(0);
        for id in ["a", "b", "c", "d"] {
            assert!(w.insert("s", id, t));
        }
        assert_eq!(w.len(), 3);
        assert!(!w.contains("s", "a", t), "oldest evicted");
        assert!(w.contains("s", "b", t));
        assert!(!w.insert("s", "d", t));
    }

    #[test]
    fn restore_keeps_the_window_and_the_capacity() {
        let cfg = DedupeConfig {
            capacity: 3,
            window_secs: 60,
        };
        let mut w = DedupeWindow::new(cfg);
        let t0 = Timestamp::from_secs(1000);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(w.insert("s", id, t0.plus_millis(i as i64 * 10_000)));
        }
        let saved: Vec<_> = w.entries().collect();
        assert_eq!(saved.len(), 3);
        let mut back = DedupeWindow::new(cfg);
        // "a" was evicted by the capacity; 70 s after t0, "b" (accepted at t0+10 s) is past the window
        back.restore(saved.iter().rev().copied(), t0.plus_millis(65_000));
        assert!(!back.contains("s", "a", t0.plus_millis(65_000)));
        assert!(
            !back.contains("s", "b", t0.plus_millis(70_000)),
            "b is past the window"
        );
        assert!(back.contains("s", "c", t0.plus_millis(70_000)));
        assert!(back.contains("s", "d", t0.plus_millis(70_000)));
        assert_eq!(back.entries().collect::<Vec<_>>(), saved[1..].to_vec());
    }

    #[test]
    fn source_and_id_are_not_confused() {
        let mut w = DedupeWindow::new(DedupeConfig::default());
        let t = Timestamp::from_secs(0);
        assert!(w.insert("ab", "c", t));
        assert!(w.insert("a", "bc", t));
    }
}
