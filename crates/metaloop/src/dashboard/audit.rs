//! The ledger's verification status, kept current incrementally: every stored record is
//! checked once, in order (hash, link, canonical payload), with each checkpoint's Merkle root
//! and — given the supervisor's public key — its signature, exactly as `metaloop ledger
//! verify` checks them. A catch-up runs in the background when the ledger page asks for it.

use ed25519_dalek::VerifyingKey;
use metaloop_ledger::CheckpointVerifier;
use metaloop_ledger::{Checkpoint, LedgerStore};
use std::sync::{Arc, Mutex};

/// Records checked per step (one read, one blocking check).
const PAGE: u32 = 5_000;

/// What the verification has established so far.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditStatus {
    /// Records 1..=checked verified.
    pub checked: u64,
    /// Checkpoints verified so far (Merkle root; signature too with a key).
    pub checkpoints: u64,
    /// The ledger's head when last looked at.
    pub head: u64,
    /// A catch-up is running.
    pub running: bool,
    /// The first problem found; verification stops there.
    pub failure: Option<String>,
    /// The key id signatures are checked with, if any.
    pub key_id: Option<String>,
}

struct Progress {
    verifier: Option<CheckpointVerifier>,
    /// Checkpoints already given to the verifier (by seq).
    expected_to: u64,
    status: AuditStatus,
}

/// The incremental ledger verification.
pub struct LedgerAudit {
    store: Arc<dyn LedgerStore>,
    progress: Arc<Mutex<Progress>>,
}

impl LedgerAudit {
    /// Nothing verified yet; signatures are checked with `key` when given.
    pub fn new(store: Arc<dyn LedgerStore>, key: Option<VerifyingKey>) -> LedgerAudit {
        LedgerAudit {
            store,
            progress: Arc::new(Mutex::new(Progress {
                verifier: Some(CheckpointVerifier::new(key)),
                expected_to: 0,
                status: AuditStatus {
                    checked: 0,
                    checkpoints: 0,
                    head: 0,
                    running: false,
                    failure: None,
                    key_id: key.map(|k| metaloop_ledger::checkpoint::key_id(&k)),
                },
            })),
        }
    }

    /// The status now; starts a catch-up in the background when records are unchecked.
    pub async fn status(&self) -> AuditStatus {
        let head = self.store.head().await.ok().flatten().map_or(0, |(s, _)| s);
        let start = {
            let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            p.status.head = head;
            let start = !p.status.running && p.status.failure.is_none() && p.status.checked < head;
            if start {
                p.status.running = true;
            }
            start
        };
        if start {
            let store = self.store.clone();
            let progress = self.progress.clone();
            tokio::spawn(async move { catch_up(store, progress, head).await });
        }
        self.snapshot()
    }

    /// The status without starting anything.
    pub fn snapshot(&self) -> AuditStatus {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .clone()
    }

    /// Runs the catch-up to `head` and waits for it.
    #[cfg(test)]
    pub async fn verify_to_head(&self) -> AuditStatus {
        let head = self.store.head().await.ok().flatten().map_or(0, |(s, _)| s);
        let busy = {
            let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            let busy = p.status.running;
            if !busy {
                p.status.running = true;
                p.status.head = head;
            }
            busy
        };
        if busy {
            while self.snapshot().running {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            return self.snapshot();
        }
        catch_up(self.store.clone(), self.progress.clone(), head).await;
        self.snapshot()
    }
}

async fn catch_up(store: Arc<dyn LedgerStore>, progress: Arc<Mutex<Progress>>, head: u64) {
    let finish = |failure: Option<String>| {
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        p.status.running = false;
        if failure.is_some() {
            p.status.failure = failure;
        }
    };
    loop {
        let (mut verifier, from, expected_to) = {
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            let Some(v) = p.verifier.take() else {
                drop(p);
                return finish(None);
            };
            (v, p.status.checked + 1, p.expected_to)
        };
        if from > head {
            progress.lock().unwrap_or_else(|e| e.into_inner()).verifier = Some(verifier);
            return finish(None);
        }
        let page = match store.read_stored(from as i64, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                progress.lock().unwrap_or_else(|e| e.into_inner()).verifier = Some(verifier);
                return finish_read_error(&progress, e.to_string());
            }
        };
        let last = page.last().map_or(from - 1, |r| r.seq.max(0) as u64);
        // the checkpoints this page reaches, each queued before its record
        let cps: Vec<Checkpoint> = match store.checkpoints(expected_to, u32::MAX).await {
            Ok(c) => c.into_iter().filter(|c| c.seq <= last).collect(),
            Err(e) => {
                progress.lock().unwrap_or_else(|e| e.into_inner()).verifier = Some(verifier);
                return finish_read_error(&progress, e.to_string());
            }
        };
        let new_expected = cps.last().map_or(expected_to, |c| c.seq);
        // a checkpoint stored after its records were read here cannot be checked in line
        // (the chain has passed it); `metaloop ledger verify` checks it
        let cps: Vec<Checkpoint> = cps
            .into_iter()
            .filter(|c| c.seq > verifier.records())
            .collect();
        let n_cps = cps.len() as u64;
        for c in cps {
            verifier.expect(c);
        }
        let checked = tokio::task::spawn_blocking(move || {
            let mut failure = None;
            for r in &page {
                if let Err(e) = verifier.check(r) {
                    failure = Some(e.to_string());
                    break;
                }
            }
            (verifier, failure)
        })
        .await;
        let Ok((verifier, failure)) = checked else {
            return finish(Some("the verification task failed".into()));
        };
        let empty = last < from;
        {
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            p.status.checked = verifier.records();
            p.status.checkpoints += n_cps;
            p.expected_to = new_expected;
            p.verifier = Some(verifier);
        }
        if failure.is_some() {
            return finish(failure);
        }
        if empty {
            return finish(None);
        }
    }
}

fn finish_read_error(progress: &Mutex<Progress>, message: String) {
    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
    p.status.running = false;
    // a failed read is not tampering: the next look tries again
    tracing::warn!(error = %message, "ledger verification could not read the ledger");
}

#[cfg(test)]
mod tests {
    use super::*;
    use metaloop_ledger::{NewRecord, SqliteLedger};

    async fn ledger(records: usize) -> (tempfile::TempDir, Arc<dyn LedgerStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn LedgerStore> =
            Arc::new(SqliteLedger::open(&dir.path().join("l.db")).await.unwrap());
        let batch = (0..records)
            .map(|i| {
                NewRecord::new(
                    i as i64,
                    "a",
                    "x.y",
                    format!("r{i}"),
                    serde_json::json!({ "i": i }),
                )
            })
            .collect();
        store.append(batch).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn every_record_is_checked_once_and_new_ones_later() {
        let (_dir, store) = ledger(12_345).await;
        let audit = LedgerAudit::new(store.clone(), None);
        let s = audit.verify_to_head().await;
        assert_eq!(
            (s.checked, s.head, s.failure.clone()),
            (12_345, 12_345, None)
        );
        store
            .append(vec![NewRecord::new(
                1,
                "a",
                "x.y",
                "r",
                serde_json::json!({}),
            )])
            .await
            .unwrap();
        let s = audit.verify_to_head().await;
        assert_eq!(s.checked, 12_346);
        assert!(!s.running);
    }
}
