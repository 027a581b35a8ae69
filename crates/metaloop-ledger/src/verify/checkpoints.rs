//! Checkpoint verification: the chain check of [`verify`](super::verify) and, in the same
//! pass over the records, the Merkle root and every stored signed checkpoint.
//!
//! The chain alone cannot tell a rewritten-and-rehashed ledger or a cut-off tail from the
//! original (anyone can compute SHA-256); a checkpoint signed with the supervisor's key can.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{Checkpoint, key_id};
use crate::error::LedgerError;
use crate::hex;
use crate::merkle::{Frontier, Hash, empty_root};
use crate::note::{
    CheckpointNote, NoteSignature, NoteVerifier, ledger_verifier, origin_for_key_id,
};
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
    /// Checkpoints whose signed-note signature by the supervisor's key was checked.
    pub notes_checked: u64,
    /// For each witness required, the newest checkpoint it cosigned.
    pub witnessed: Vec<(String, u64)>,
    /// Records after the newest checkpoint every required witness cosigned (the whole
    /// ledger if none was required).
    pub unwitnessed_tail: u64,
}

/// A root the ledger must have at some size, vouched for elsewhere (a witness's latest
/// cosigned checkpoint, fetched from the witness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRoot {
    /// Who vouches for it (for messages).
    pub source: String,
    /// Leaves of the tree.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// What verification requires beyond the chain and the checkpoints' own signatures.
#[derive(Debug, Clone, Default)]
pub struct AuditRequirements {
    /// The supervisor's public key: checkpoint and note signatures must verify with it.
    pub key: Option<VerifyingKey>,
    /// Witnesses (cosigner keys) each of which must have cosigned a checkpoint.
    pub witnesses: Vec<NoteVerifier>,
    /// Roots the ledger must have at given sizes (a witness's latest view).
    pub expected_roots: Vec<ExpectedRoot>,
    /// The ledger's origin (the checkpoints' note key name), which witnesses cosign; by
    /// default that of the key, else of the newest checkpoint's key id.
    pub origin: Option<String>,
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
    /// The supervisor's signed-note signature of a checkpoint does not verify.
    #[error(
        "checkpoint {seq}: its signed-note signature by {name} does not verify: \
         the note signature was forged or edited"
    )]
    BadNoteSignature {
        /// The checkpoint's seq.
        seq: u64,
        /// The key name.
        name: String,
    },
    /// A witness's cosignature of a checkpoint does not verify.
    #[error(
        "checkpoint {seq}: the cosignature of witness {witness} does not verify: \
         the checkpoint (seq, Merkle root or origin) is not the one the witness cosigned; \
         the ledger was rewritten or forked"
    )]
    BadCosignature {
        /// The checkpoint's seq.
        seq: u64,
        /// The witness's key name.
        witness: String,
    },
    /// A required witness cosigned no checkpoint of this ledger.
    #[error(
        "no cosignature from witness {witness}: none of the {checkpoints} checkpoints is \
         cosigned by it; the ledger was rewritten, or never shown to the witness"
    )]
    Unwitnessed {
        /// The witness's key name.
        witness: String,
        /// Checkpoints checked.
        checkpoints: u64,
    },
    /// The ledger's root at a size some witness vouches for is another.
    #[error(
        "{by}: the ledger's first {size} records give Merkle root {}, not the {} it \
         cosigned: the ledger was rewritten or forked",
        hex::encode(computed),
        hex::encode(expected)
    )]
    Forked {
        /// Who vouches for the root.
        by: String,
        /// The tree size.
        size: u64,
        /// The root vouched for.
        expected: Hash,
        /// The ledger's root at that size.
        computed: Hash,
    },
    /// The ledger has fewer records than a witness has cosigned.
    #[error("{by}: truncated: the witness cosigned {size} records, the ledger has {records}")]
    TruncatedBelowWitness {
        /// Who vouches for the size.
        by: String,
        /// The size cosigned.
        size: u64,
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
    /// The supervisor's note verifier (with a key).
    note_key: Option<NoteVerifier>,
    /// Stored note signatures by checkpoint seq, for the checkpoints not reached yet.
    notes: BTreeMap<u64, Vec<NoteSignature>>,
    notes_checked: u64,
    witnesses: Vec<NoteVerifier>,
    /// Per witness, the newest checkpoint it cosigned.
    witnessed: Vec<u64>,
    /// The required witnesses' stored cosignatures, by size: (size, witness, signature).
    cosignatures: VecDeque<(u64, usize, NoteSignature)>,
    /// The origin the witnesses cosign.
    origin: String,
    /// Roots vouched for elsewhere, by size.
    expected_roots: VecDeque<ExpectedRoot>,
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
            note_key: key.map(|k| ledger_verifier(&k)),
            notes: BTreeMap::new(),
            notes_checked: 0,
            witnesses: Vec::new(),
            witnessed: Vec::new(),
            cosignatures: VecDeque::new(),
            origin: String::new(),
            expected_roots: VecDeque::new(),
        }
    }

    /// A verifier that also checks the stored note signatures (`notes`), requires a
    /// cosignature from each witness and the roots vouched for elsewhere.
    pub fn with_requirements(
        requirements: AuditRequirements,
        notes: Vec<(u64, NoteSignature)>,
    ) -> Self {
        let mut v = Self::new(requirements.key);
        for (seq, sig) in notes {
            let witness = requirements
                .witnesses
                .iter()
                .position(|w| w.name == sig.name && w.id == sig.id);
            match witness {
                Some(i) => v.cosignatures.push_back((seq, i, sig)),
                None => v.notes.entry(seq).or_default().push(sig),
            }
        }
        v.cosignatures
            .make_contiguous()
            .sort_by_key(|(seq, _, _)| *seq);
        v.origin = requirements.origin.unwrap_or_default();
        v.witnessed = vec![0; requirements.witnesses.len()];
        v.witnesses = requirements.witnesses;
        let mut roots = requirements.expected_roots;
        roots.sort_by_key(|r| r.size);
        v.expected_roots = roots.into();
        v
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
            if !self.notes.is_empty() {
                self.check_notes(&cp)?;
            }
            self.checked += 1;
            self.last = Some(cp);
        }
        while self.expected_roots.front().is_some_and(|r| r.size == seq) {
            let expected = self.expected_roots.pop_front().expect("just looked");
            let computed = self.frontier.root();
            if computed != expected.root {
                return Err(CheckpointFailure::Forked {
                    by: expected.source,
                    size: expected.size,
                    expected: expected.root,
                    computed,
                }
                .into());
            }
        }
        if self.cosignatures.front().is_some_and(|(s, _, _)| *s == seq) {
            self.check_cosignatures(seq)?;
        }
        Ok(())
    }

    /// Checks the required witnesses' cosignatures of the tree of the first `seq` records
    /// against the root recomputed from them (not against a stored checkpoint, which whoever
    /// rewrote the ledger could have rewritten too).
    fn check_cosignatures(&mut self, seq: u64) -> Result<(), CheckpointFailure> {
        let text = CheckpointNote {
            origin: self.origin.clone(),
            size: seq,
            root: self.frontier.root(),
        }
        .text();
        while self.cosignatures.front().is_some_and(|(s, _, _)| *s == seq) {
            let (_, i, sig) = self.cosignatures.pop_front().expect("just looked");
            let w = &self.witnesses[i];
            if !w.verify(&text, &sig) {
                return Err(CheckpointFailure::BadCosignature {
                    seq,
                    witness: w.name.clone(),
                });
            }
            self.witnessed[i] = seq;
        }
        Ok(())
    }

    /// Checks the stored note signatures of `cp` (whose root was just checked) by the
    /// supervisor's key; others are ignored.
    fn check_notes(&mut self, cp: &Checkpoint) -> Result<(), CheckpointFailure> {
        let Some(sigs) = self.notes.remove(&cp.seq) else {
            return Ok(());
        };
        let text = CheckpointNote {
            origin: origin_for_key_id(&cp.key_id),
            size: cp.seq,
            root: cp.merkle_root,
        }
        .text();
        for sig in &sigs {
            if let Some(v) = &self.note_key
                && v.name == sig.name
                && v.id == sig.id
            {
                if !v.verify(&text, sig) {
                    return Err(CheckpointFailure::BadNoteSignature {
                        seq: cp.seq,
                        name: sig.name.clone(),
                    });
                }
                self.notes_checked += 1;
            }
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
        if let Some(r) = self.expected_roots.front() {
            return Err(CheckpointFailure::TruncatedBelowWitness {
                by: r.source.clone(),
                size: r.size,
                records,
            });
        }
        if let Some((size, i, _)) = self.cosignatures.front() {
            return Err(CheckpointFailure::TruncatedBelowWitness {
                by: format!("witness {}", self.witnesses[*i].name),
                size: *size,
                records,
            });
        }
        for (w, &seq) in self.witnesses.iter().zip(&self.witnessed) {
            if seq == 0 && records > 0 {
                return Err(CheckpointFailure::Unwitnessed {
                    witness: w.name.clone(),
                    checkpoints: self.checked,
                });
            }
        }
        let witnessed_upto = if self.witnesses.is_empty() {
            0
        } else {
            self.witnessed.iter().copied().min().unwrap_or(0)
        };
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
            notes_checked: self.notes_checked,
            witnessed: self
                .witnesses
                .iter()
                .map(|w| w.name.clone())
                .zip(self.witnessed.iter().copied())
                .collect(),
            unwitnessed_tail: records - witnessed_upto.min(records),
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
    let requirements = AuditRequirements {
        key: key.copied(),
        ..AuditRequirements::default()
    };
    verify_audit_paged(store, page_size, requirements, on_progress).await
}

/// [`verify_with_checkpoints`], and the stored note signatures: the supervisor's (with a
/// key), a cosignature from every witness in `requirements`, and the roots it names.
pub async fn verify_audit<S: LedgerStore + ?Sized>(
    store: &S,
    requirements: AuditRequirements,
    on_progress: impl FnMut(u64, u64),
) -> Result<CheckpointVerifyReport, CheckpointVerifyError> {
    verify_audit_paged(store, DEFAULT_PAGE_SIZE, requirements, on_progress).await
}

/// Note signatures read per query.
const NOTE_PAGE: u32 = 10_000;

/// [`verify_audit`] reading `page_size` records per query.
pub async fn verify_audit_paged<S: LedgerStore + ?Sized>(
    store: &S,
    page_size: u32,
    requirements: AuditRequirements,
    on_progress: impl FnMut(u64, u64),
) -> Result<CheckpointVerifyReport, CheckpointVerifyError> {
    let mut requirements = requirements;
    if requirements.origin.is_none() && !requirements.witnesses.is_empty() {
        requirements.origin = match &requirements.key {
            Some(key) => Some(crate::note::ledger_origin(key)),
            None => store
                .latest_checkpoint()
                .await?
                .map(|cp| origin_for_key_id(&cp.key_id)),
        };
    }
    // Note signatures are few (one per checkpoint and witness): read them all first.
    let mut notes: Vec<(u64, NoteSignature)> = Vec::new();
    loop {
        let after = notes.last().map_or(0, |(seq, _)| *seq);
        let page = store.note_signatures(after, NOTE_PAGE).await?;
        let full = page.len() == NOTE_PAGE as usize;
        let page_last = page.last().map(|(seq, _)| *seq);
        match (full, page_last) {
            // A full page may end inside one checkpoint's signatures: read that one again.
            (true, Some(last)) if page.iter().any(|(seq, _)| *seq < last) => {
                notes.extend(page.into_iter().filter(|(seq, _)| *seq < last));
            }
            _ => {
                notes.extend(page);
                break;
            }
        }
    }
    let mut feed = CheckpointFeed {
        after: 0,
        exhausted: false,
    };
    let mut verifier = check_pages(
        store,
        page_size,
        CheckpointVerifier::with_requirements(requirements, notes),
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
