//! Checkpoint verification: the chain check of [`verify`](super::verify) and, in the same
//! pass over the records, the Merkle root and every stored signed checkpoint.
//!
//! The chain alone cannot tell a rewritten-and-rehashed ledger or a cut-off tail from the
//! original (anyone can compute SHA-256); a checkpoint signed with the supervisor's key can.

use std::collections::VecDeque;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{Checkpoint, key_id};
use crate::error::LedgerError;
use crate::hex;
use crate::merkle::{Frontier, Hash, empty_root};
use crate::record::{StoredRecord, hash_array};
use crate::store::LedgerStore;
use crate::verify::{
    DEFAULT_PAGE_SIZE, PageCheck, Verifier, VerifyError, VerifyFailure, VerifyReport, check_pages,
};

/// Checkpoints read per query.
const CHECKPOINT_PAGE: u32 = 1_000;

/// What a successful [`verify_with_checkpoints`] covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifyReport {
    /// The chain: records checked and the head.
    pub chain: VerifyReport,
    /// RFC 6962 Merkle root over every record hash (the empty tree's root if none).
    pub merkle_root: Hash,
    /// Stored checkpoints checked (all of them).
    pub checkpoints: u64,
    /// The newest checkpoint, if any.
    pub last_checkpoint: Option<Checkpoint>,
    /// Records after the newest checkpoint: covered by the hash chain only, so a tail cut
    /// off or appended there is not detectable until the next checkpoint.
    pub unsigned_tail: u64,
    /// Whether signatures were checked (a public key was given); without one, checkpoints are
    /// only compared with the records, which anyone could recompute.
    pub signatures_checked: bool,
}

/// Why the stored checkpoints do not vouch for the records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFailure {
    /// A checkpoint covers more records than are stored.
    #[error(
        "checkpoint {seq}: truncated: checkpoint {seq} covers records the ledger no longer has \
         (it ends at record {records})"
    )]
    Truncated {
        /// The checkpoint's seq.
        seq: u64,
        /// Records stored.
        records: u64,
    },
    /// The signed head is not the hash of the record at the checkpoint's seq.
    #[error(
        "checkpoint {seq}: head mismatch (signed head {}, record {seq} has hash {}): \
         records up to {seq} were rewritten and re-hashed, or the checkpoint was edited",
        hex::encode(signed),
        hex::encode(record)
    )]
    HeadMismatch {
        /// The checkpoint's seq.
        seq: u64,
        /// Head as signed.
        signed: Hash,
        /// Hash of record `seq` as stored.
        record: Hash,
    },
    /// The signed Merkle root is not the root recomputed from the records.
    #[error(
        "checkpoint {seq}: Merkle root mismatch (signed {}, records 1..={seq} give {}): \
         records were rewritten or the checkpoint was edited",
        hex::encode(signed),
        hex::encode(computed)
    )]
    RootMismatch {
        /// The checkpoint's seq.
        seq: u64,
        /// Root as signed.
        signed: Hash,
        /// Root recomputed from the stored record hashes.
        computed: Hash,
    },
    /// The checkpoint names another key than the one given.
    #[error(
        "checkpoint {seq}: signed by key {found}, not by the given public key {expected}: \
         the checkpoint was forged, or this is not the ledger's public key"
    )]
    WrongKey {
        /// The checkpoint's seq.
        seq: u64,
        /// Key id stored in the checkpoint.
        found: String,
        /// Key id of the given public key.
        expected: String,
    },
    /// The signature does not verify.
    #[error(
        "checkpoint {seq}: the signature does not verify with public key {key_id}: \
         the checkpoint was forged or edited"
    )]
    BadSignature {
        /// The checkpoint's seq.
        seq: u64,
        /// Key id of the given public key.
        key_id: String,
    },
    /// A public key was given, the ledger has records, and no checkpoint covers any of them.
    #[error(
        "no signed checkpoint: the chain cannot be authenticated \
         ({records} records, none covered by a checkpoint)"
    )]
    Unsigned {
        /// Records stored.
        records: u64,
    },
}

/// Why [`verify_with_checkpoints`] did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointVerifyError {
    /// A record breaks the chain (exit code 3).
    #[error(transparent)]
    Tampered(#[from] VerifyFailure),
    /// The checkpoints do not vouch for the records (exit code 3).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointFailure),
    /// The ledger could not be read (exit code 1).
    #[error(transparent)]
    Store(#[from] LedgerError),
}

impl CheckpointVerifyError {
    /// The process exit code (DESIGN §7): 3 when tampered, 1 when the ledger could not be read.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Tampered(_) | Self::Checkpoint(_) => 3,
            Self::Store(_) => 1,
        }
    }
}

impl From<VerifyError> for CheckpointVerifyError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Tampered(f) => Self::Tampered(f),
            VerifyError::Store(e) => Self::Store(e),
        }
    }
}

/// Checks stored records in seq order like [`Verifier`], keeps their Merkle frontier, and
/// checks each expected checkpoint when its record is reached.
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    chain: Verifier,
    frontier: Frontier,
    key: Option<(VerifyingKey, String)>,
    pending: VecDeque<Checkpoint>,
    checked: u64,
    last: Option<Checkpoint>,
}

impl CheckpointVerifier {
    /// Starts before the first record; with `key`, checkpoints' signatures are checked too.
    pub fn new(key: Option<VerifyingKey>) -> Self {
        Self {
            chain: Verifier::new(),
            frontier: Frontier::new(),
            key: key.map(|k| (k, key_id(&k))),
            pending: VecDeque::new(),
            checked: 0,
            last: None,
        }
    }

    /// Queues a stored checkpoint; give them in increasing seq order, each before the
    /// record it covers is checked. A checkpoint of seq 0 covers nothing and is ignored.
    pub fn expect(&mut self, checkpoint: Checkpoint) {
        debug_assert!(
            checkpoint.seq == 0 || checkpoint.seq > self.chain.records(),
            "checkpoint {} expected after its record was checked",
            checkpoint.seq
        );
        if checkpoint.seq > 0 {
            self.pending.push_back(checkpoint);
        }
    }

    /// Checks the next stored record, then the checkpoints at its seq.
    pub fn check(&mut self, stored: &StoredRecord) -> Result<(), CheckpointVerifyError> {
        self.chain.check(stored)?;
        let hash = hash_array("hash", &stored.hash).expect("the chain check passed: 32 bytes");
        self.frontier.push(&hash);
        let seq = self.chain.records();
        while self.pending.front().is_some_and(|cp| cp.seq == seq) {
            let cp = self.pending.pop_front().expect("just looked");
            self.check_checkpoint(&cp, &hash)?;
            self.checked += 1;
            self.last = Some(cp);
        }
        Ok(())
    }

    fn check_checkpoint(&self, cp: &Checkpoint, head: &Hash) -> Result<(), CheckpointFailure> {
        let seq = cp.seq;
        if let Some((key, id)) = &self.key {
            if cp.key_id != *id {
                return Err(CheckpointFailure::WrongKey {
                    seq,
                    found: cp.key_id.clone(),
                    expected: id.clone(),
                });
            }
            if !cp.verify_signature(key) {
                return Err(CheckpointFailure::BadSignature {
                    seq,
                    key_id: id.clone(),
                });
            }
        }
        if cp.head != *head {
            return Err(CheckpointFailure::HeadMismatch {
                seq,
                signed: cp.head,
                record: *head,
            });
        }
        let computed = self.frontier.root();
        if cp.merkle_root != computed {
            return Err(CheckpointFailure::RootMismatch {
                seq,
                signed: cp.merkle_root,
                computed,
            });
        }
        Ok(())
    }

    /// Records checked so far.
    pub fn records(&self) -> u64 {
        self.chain.records()
    }

    /// Ends verification after the last record: any checkpoint still expected covers records
    /// that are gone; with a key, records without any checkpoint fail.
    pub fn finish(self) -> Result<CheckpointVerifyReport, CheckpointFailure> {
        let records = self.chain.records();
        if let Some(cp) = self.pending.front() {
            return Err(CheckpointFailure::Truncated {
                seq: cp.seq,
                records,
            });
        }
        if self.key.is_some() && records > 0 && self.checked == 0 {
            return Err(CheckpointFailure::Unsigned { records });
        }
        let signed = self.last.as_ref().map_or(0, |cp| cp.seq);
        Ok(CheckpointVerifyReport {
            chain: self.chain.report(),
            merkle_root: if records == 0 {
                empty_root()
            } else {
                self.frontier.root()
            },
            checkpoints: self.checked,
            last_checkpoint: self.last,
            unsigned_tail: records - signed,
            signatures_checked: self.key.is_some(),
        })
    }
}

impl PageCheck for CheckpointVerifier {
    type Error = CheckpointVerifyError;

    fn check(&mut self, stored: &StoredRecord) -> Result<(), CheckpointVerifyError> {
        CheckpointVerifier::check(self, stored)
    }

    fn records(&self) -> u64 {
        CheckpointVerifier::records(self)
    }
}

/// Reads the stored checkpoints in pages, just ahead of the records being checked.
struct CheckpointFeed {
    after: u64,
    exhausted: bool,
}

impl CheckpointFeed {
    /// Queues every stored checkpoint with seq ≤ `reach` (and possibly a few more).
    async fn feed<S: LedgerStore + ?Sized>(
        &mut self,
        store: &S,
        verifier: &mut CheckpointVerifier,
        reach: u64,
    ) -> Result<(), LedgerError> {
        while !self.exhausted && self.after < reach {
            let page = store.checkpoints(self.after, CHECKPOINT_PAGE).await?;
            self.exhausted = page.len() < CHECKPOINT_PAGE as usize;
            for cp in page {
                if cp.seq <= self.after {
                    // Not in increasing order: only a broken store does this.
                    return Err(LedgerError::Corrupt {
                        seq: i64::try_from(cp.seq).unwrap_or(i64::MAX),
                        detail: format!(
                            "checkpoint {} listed after checkpoint {}",
                            cp.seq, self.after
                        ),
                    });
                }
                self.after = cp.seq;
                verifier.expect(cp);
            }
        }
        Ok(())
    }
}

/// Verifies the chain like [`verify`](super::verify) and, in the same pass, every stored
/// checkpoint: that the record at its seq exists and has its head hash, that the Merkle root
/// of records 1..=seq is its root, and — with `key` — that it is signed by that key. With a
/// key, a ledger that has records but no checkpoint fails too.
///
/// Reads [`DEFAULT_PAGE_SIZE`] records at a time and calls `on_progress(checked, total)` after
/// each page. Must run inside a tokio runtime.
pub async fn verify_with_checkpoints<S: LedgerStore + ?Sized>(
    store: &S,
    key: Option<&VerifyingKey>,
    on_progress: impl FnMut(u64, u64),
) -> Result<CheckpointVerifyReport, CheckpointVerifyError> {
    verify_with_checkpoints_paged(store, DEFAULT_PAGE_SIZE, key, on_progress).await
}

/// [`verify_with_checkpoints`] with a chosen page size (at least 1).
pub async fn verify_with_checkpoints_paged<S: LedgerStore + ?Sized>(
    store: &S,
    page_size: u32,
    key: Option<&VerifyingKey>,
    on_progress: impl FnMut(u64, u64),
) -> Result<CheckpointVerifyReport, CheckpointVerifyError> {
    let mut feed = CheckpointFeed {
        after: 0,
        exhausted: false,
    };
    let mut verifier = check_pages(
        store,
        page_size,
        CheckpointVerifier::new(key.copied()),
        async |verifier: &mut CheckpointVerifier, reach| {
            Ok(feed.feed(store, verifier, reach).await?)
        },
        on_progress,
    )
    .await?;
    // One checkpoint beyond the last record, if stored, means the tail was cut off.
    let reach = verifier.records() + 1;
    feed.feed(store, &mut verifier, reach).await?;
    Ok(verifier.finish()?)
}
