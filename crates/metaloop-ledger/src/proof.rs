//! Inclusion proofs: self-contained evidence that one record is in the ledger a signed
//! checkpoint vouches for, checkable with the public key alone (no access to the ledger).

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::checkpoint::{Checkpoint, key_id};
use crate::error::LedgerError;
use crate::hex;
use crate::merkle::{
    Frontier, Hash, ProofBuilder, leaf_hash, root_from_inclusion_proof, verify_consistency,
};
use crate::record::{Record, hash_array};
use crate::store::LedgerStore;

/// Records read per query while building a proof.
const PAGE: u32 = 10_000;

/// Evidence that record `seq`, with hash `record_hash`, is leaf `seq - 1` of the Merkle tree
/// whose root the enclosed checkpoint signs.
///
/// Serialises with hashes and the signature in lower-case hex:
/// `{"seq":…,"record_hash":"…","leaf_index":…,"tree_size":…,"audit_path":["…"],"checkpoint":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The record's seq.
    pub seq: u64,
    /// The record's hash (the leaf data).
    #[serde(with = "hex_hash")]
    pub record_hash: Hash,
    /// The leaf's index in the tree: `seq - 1`.
    pub leaf_index: u64,
    /// Leaves in the tree: the checkpoint's seq.
    pub tree_size: u64,
    /// Sibling subtree hashes from the leaf up (RFC 9162 §2.1.3).
    #[serde(with = "hex_hashes")]
    pub audit_path: Vec<Hash>,
    /// The signed checkpoint whose Merkle root the path leads to.
    pub checkpoint: Checkpoint,
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// No record has this seq.
    #[error("record {seq} does not exist (the ledger has {records} records)")]
    NoSuchRecord {
        /// Seq asked for.
        seq: u64,
        /// Records stored.
        records: u64,
    },
    /// No stored checkpoint has this seq.
    #[error("there is no checkpoint at record {0}")]
    NoSuchCheckpoint(u64),
    /// No checkpoint covers the record yet (it is in the unsigned tail), or the chosen one
    /// is older than the record.
    #[error(
        "no signed checkpoint covers record {seq} yet ({}); try again after the next checkpoint",
        match latest { Some(c) => format!("the checkpoint used covers records 1..={c}"), None => "the ledger has no checkpoint".to_owned() }
    )]
    NotCovered {
        /// Seq asked for.
        seq: u64,
        /// Seq of the checkpoint considered, if any.
        latest: Option<u64>,
    },
    /// The stored records do not match the checkpoint: the ledger was changed.
    #[error(
        "checkpoint {seq}: the stored records give Merkle root {}, not the signed {}: \
         the ledger was changed (run `metaloop ledger verify`)",
        hex::encode(computed),
        hex::encode(signed)
    )]
    Mismatch {
        /// The checkpoint's seq.
        seq: u64,
        /// Root as signed.
        signed: Hash,
        /// Root of the stored record hashes.
        computed: Hash,
    },
    /// The checkpoint covers records that are no longer stored.
    #[error(
        "truncated: checkpoint {checkpoint} covers records the ledger no longer has \
         (it ends at record {records}) (run `metaloop ledger verify`)"
    )]
    Truncated {
        /// The checkpoint's seq.
        checkpoint: u64,
        /// Records stored.
        records: u64,
    },
    /// A consistency proof between sizes that have none.
    #[error(
        "no consistency proof from checkpoint {old} to checkpoint {new}: the old one must be at least 1 and not after the new one"
    )]
    BadRange {
        /// The earlier size.
        old: u64,
        /// The later size.
        new: u64,
    },
    /// The ledger could not be read.
    #[error(transparent)]
    Store(#[from] LedgerError),
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof's numbers do not fit together (leaf index ≠ seq − 1, tree size ≠ the
    /// checkpoint's seq, or the leaf past the tree).
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The checkpoint names another key than the one given.
    #[error("the checkpoint was signed by key {found}, not by the given public key {expected}")]
    WrongKey {
        /// Key id stored in the checkpoint.
        found: String,
        /// Key id of the given public key.
        expected: String,
    },
    /// The checkpoint's signature does not verify.
    #[error(
        "the checkpoint's signature does not verify with public key {0}: it was forged or edited"
    )]
    BadSignature(String),
    /// The audit path does not lead from the record hash to the signed root.
    #[error(
        "the audit path does not lead from record {seq}'s hash to the Merkle root signed by \
         checkpoint {checkpoint}: the record or the proof was changed"
    )]
    PathMismatch {
        /// The record's seq.
        seq: u64,
        /// The checkpoint's seq.
        checkpoint: u64,
    },
    /// The record is the checkpoint's last, but its hash is not the signed head.
    #[error("record {seq} is the checkpoint's head, but its hash is not the signed head")]
    HeadMismatch {
        /// The record's seq.
        seq: u64,
    },
    /// The consistency path does not connect the two signed roots.
    #[error(
        "the consistency path does not prove checkpoint {old} a prefix of checkpoint {new}: \
         the ledger was rewritten between them, or the proof was changed"
    )]
    Inconsistent {
        /// The earlier checkpoint's seq.
        old: u64,
        /// The later checkpoint's seq.
        new: u64,
    },
    /// The record given is not the one the proof is about.
    #[error("the record does not match the proof: {0}")]
    WrongRecord(String),
}

impl InclusionProof {
    /// Checks the checkpoint's signature with `key` and that the audit path leads from
    /// `record_hash` to its Merkle root.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ProofError> {
        let cp = &self.checkpoint;
        if self.seq == 0 || self.leaf_index != self.seq - 1 {
            return Err(ProofError::Malformed(format!(
                "leaf index {} is not seq {} - 1",
                self.leaf_index, self.seq
            )));
        }
        if self.tree_size != cp.seq {
            return Err(ProofError::Malformed(format!(
                "tree size {} is not the checkpoint's seq {}",
                self.tree_size, cp.seq
            )));
        }
        if self.seq > self.tree_size {
            return Err(ProofError::Malformed(format!(
                "record {} is past the checkpoint's {} records",
                self.seq, self.tree_size
            )));
        }
        let expected = key_id(key);
        if cp.key_id != expected {
            return Err(ProofError::WrongKey {
                found: cp.key_id.clone(),
                expected,
            });
        }
        if !cp.verify_signature(key) {
            return Err(ProofError::BadSignature(expected));
        }
        if self.seq == cp.seq && self.record_hash != cp.head {
            return Err(ProofError::HeadMismatch { seq: self.seq });
        }
        let root = root_from_inclusion_proof(
            &leaf_hash(&self.record_hash),
            self.leaf_index,
            self.tree_size,
            &self.audit_path,
        );
        if root != Some(cp.merkle_root) {
            return Err(ProofError::PathMismatch {
                seq: self.seq,
                checkpoint: cp.seq,
            });
        }
        Ok(())
    }

    /// [`InclusionProof::verify`], and that `record` is the proven record: same seq, and its
    /// fields hash to `record_hash`.
    pub fn verify_record(&self, record: &Record, key: &VerifyingKey) -> Result<(), ProofError> {
        if record.seq != self.seq {
            return Err(ProofError::WrongRecord(format!(
                "it is record {}, the proof is about record {}",
                record.seq, self.seq
            )));
        }
        match record.compute_hash() {
            Ok(hash) if hash == self.record_hash => {}
            Ok(hash) => {
                return Err(ProofError::WrongRecord(format!(
                    "its fields hash to {}, the proof is about {}",
                    hex::encode(&hash),
                    hex::encode(&self.record_hash)
                )));
            }
            Err(e) => return Err(ProofError::WrongRecord(format!("its payload: {e}"))),
        }
        self.verify(key)
    }
}

/// Builds the inclusion proof of record `seq` against the checkpoint at seq `checkpoint`, or
/// against the newest checkpoint if `None`.
///
/// Reads the record hashes 1..=checkpoint once, in pages, keeping O(log n) hashes, and checks
/// that they give the checkpoint's Merkle root (a proof from a changed ledger is refused).
/// It does not check the signature: that is for whoever receives the proof.
pub async fn prove<S: LedgerStore + ?Sized>(
    store: &S,
    seq: u64,
    checkpoint: Option<u64>,
) -> Result<InclusionProof, ProveError> {
    let cp = match checkpoint {
        Some(at) => store
            .checkpoints(at.saturating_sub(1), 1)
            .await?
            .into_iter()
            .next()
            .filter(|cp| cp.seq == at)
            .ok_or(ProveError::NoSuchCheckpoint(at))?,
        None => match store.latest_checkpoint().await? {
            Some(cp) => cp,
            None => {
                let records = store.count().await?;
                if seq == 0 || seq > records {
                    return Err(ProveError::NoSuchRecord { seq, records });
                }
                return Err(ProveError::NotCovered { seq, latest: None });
            }
        },
    };
    if seq == 0 || seq > cp.seq {
        let records = store.count().await?;
        if seq == 0 || seq > records {
            return Err(ProveError::NoSuchRecord { seq, records });
        }
        return Err(ProveError::NotCovered {
            seq,
            latest: Some(cp.seq),
        });
    }
    let mut builder =
        ProofBuilder::inclusion(seq - 1, cp.seq).map_err(|e| LedgerError::Corrupt {
            seq: seq as i64,
            detail: e.to_string(),
        })?;
    let mut frontier = Frontier::new();
    let mut record_hash = None;
    while frontier.size() < cp.seq {
        let next = frontier.size() + 1;
        let limit = u32::try_from(cp.seq - next + 1).map_or(PAGE, |n| n.min(PAGE));
        let page = store.read_stored(next as i64, limit).await?;
        if page.is_empty() {
            return Err(ProveError::Truncated {
                checkpoint: cp.seq,
                records: frontier.size(),
            });
        }
        for stored in page {
            let expected = frontier.size() + 1;
            if stored.seq != expected as i64 {
                return Err(LedgerError::Corrupt {
                    seq: stored.seq,
                    detail: format!("expected record {expected} here while building a proof"),
                }
                .into());
            }
            let hash = hash_array("hash", &stored.hash).map_err(|detail| LedgerError::Corrupt {
                seq: stored.seq,
                detail,
            })?;
            if expected == seq {
                record_hash = Some(hash);
            }
            builder.push(&hash);
            frontier.push(&hash);
        }
    }
    let computed = frontier.root();
    if computed != cp.merkle_root {
        return Err(ProveError::Mismatch {
            seq: cp.seq,
            signed: cp.merkle_root,
            computed,
        });
    }
    let audit_path = builder.finish().map_err(|e| LedgerError::Corrupt {
        seq: seq as i64,
        detail: e.to_string(),
    })?;
    Ok(InclusionProof {
        seq,
        record_hash: record_hash.expect("record seq ≤ checkpoint seq was read"),
        leaf_index: seq - 1,
        tree_size: cp.seq,
        audit_path,
        checkpoint: cp,
    })
}

/// Evidence that the ledger a checkpoint vouches for is an append-only extension of the one an
/// earlier checkpoint vouches for: RFC 6962 §2.1.2's `PROOF(old_size, D[0:new_size])`.
///
/// Serialises as `{"old_size":…,"new_size":…,"consistency_path":["…"],"old_checkpoint":{…},
/// "new_checkpoint":{…}}` with hashes in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Leaves of the earlier tree: the old checkpoint's seq.
    pub old_size: u64,
    /// Leaves of the later tree: the new checkpoint's seq.
    pub new_size: u64,
    /// Subtree hashes of the consistency proof (RFC 9162 §2.1.4), empty when the sizes are
    /// equal.
    #[serde(with = "hex_hashes")]
    pub consistency_path: Vec<Hash>,
    /// The signed checkpoint of the earlier tree.
    pub old_checkpoint: Checkpoint,
    /// The signed checkpoint of the later tree.
    pub new_checkpoint: Checkpoint,
}

impl ConsistencyProof {
    /// Checks both checkpoints' signatures with `key` and that the path proves the old tree a
    /// prefix of the new one.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ProofError> {
        let (old, new) = (&self.old_checkpoint, &self.new_checkpoint);
        if self.old_size != old.seq || self.new_size != new.seq {
            return Err(ProofError::Malformed(format!(
                "sizes {} and {} are not the checkpoints' seqs {} and {}",
                self.old_size, self.new_size, old.seq, new.seq
            )));
        }
        if self.old_size == 0 || self.old_size > self.new_size {
            return Err(ProofError::Malformed(format!(
                "no consistency proof from {} records to {}",
                self.old_size, self.new_size
            )));
        }
        let expected = key_id(key);
        for cp in [old, new] {
            if cp.key_id != expected {
                return Err(ProofError::WrongKey {
                    found: cp.key_id.clone(),
                    expected,
                });
            }
            if !cp.verify_signature(key) {
                return Err(ProofError::BadSignature(expected));
            }
        }
        if self.old_size == self.new_size && old.head != new.head {
            return Err(ProofError::Inconsistent {
                old: self.old_size,
                new: self.new_size,
            });
        }
        if !verify_consistency(
            self.old_size,
            self.new_size,
            &old.merkle_root,
            &new.merkle_root,
            &self.consistency_path,
        ) {
            return Err(ProofError::Inconsistent {
                old: self.old_size,
                new: self.new_size,
            });
        }
        Ok(())
    }
}

/// The checkpoint stored at `seq`.
pub async fn checkpoint_at<S: LedgerStore + ?Sized>(
    store: &S,
    seq: u64,
) -> Result<Checkpoint, ProveError> {
    store
        .checkpoints(seq.saturating_sub(1), 1)
        .await?
        .into_iter()
        .next()
        .filter(|cp| cp.seq == seq)
        .ok_or(ProveError::NoSuchCheckpoint(seq))
}

/// Builds the consistency proof between the checkpoints stored at `old` and `new`.
///
/// Reads the record hashes 1..=new once, in pages, keeping O(log n) hashes, and checks that
/// they give both checkpoints' Merkle roots (a proof from a changed ledger is refused).
pub async fn prove_consistency<S: LedgerStore + ?Sized>(
    store: &S,
    old: u64,
    new: u64,
) -> Result<ConsistencyProof, ProveError> {
    if old == 0 || old > new {
        return Err(ProveError::BadRange { old, new });
    }
    let old_checkpoint = checkpoint_at(store, old).await?;
    let new_checkpoint = checkpoint_at(store, new).await?;
    let consistency_path = consistency_path(
        store,
        (old, old_checkpoint.merkle_root),
        (new, new_checkpoint.merkle_root),
    )
    .await?;
    Ok(ConsistencyProof {
        old_size: old,
        new_size: new,
        consistency_path,
        old_checkpoint,
        new_checkpoint,
    })
}

/// The consistency path from the tree of the first `old.0` records to that of the first
/// `new.0`, read from the store, whose record hashes must give the roots `old.1` and `new.1`.
/// An old size of 0 gives the empty path (every tree extends the empty one).
pub async fn consistency_path<S: LedgerStore + ?Sized>(
    store: &S,
    old: (u64, Hash),
    new: (u64, Hash),
) -> Result<Vec<Hash>, ProveError> {
    let ((old_size, old_root), (new_size, new_root)) = (old, new);
    if old_size > new_size {
        return Err(ProveError::BadRange {
            old: old_size,
            new: new_size,
        });
    }
    let mut builder = (old_size > 0)
        .then(|| ProofBuilder::consistency(old_size, new_size))
        .transpose()
        .map_err(|e| LedgerError::Corrupt {
            seq: old_size as i64,
            detail: e.to_string(),
        })?;
    let mut frontier = Frontier::new();
    read_hashes(store, new_size, |seq, hash| {
        if let Some(b) = &mut builder {
            b.push(hash);
        }
        frontier.push(hash);
        if seq == old_size && frontier.root() != old_root {
            return Err(ProveError::Mismatch {
                seq,
                signed: old_root,
                computed: frontier.root(),
            });
        }
        Ok(())
    })
    .await?;
    let computed = frontier.root();
    if computed != new_root {
        return Err(ProveError::Mismatch {
            seq: new_size,
            signed: new_root,
            computed,
        });
    }
    match builder {
        None => Ok(Vec::new()),
        Some(b) => Ok(b.finish().map_err(|e| LedgerError::Corrupt {
            seq: new_size as i64,
            detail: e.to_string(),
        })?),
    }
}

/// Calls `each(seq, hash)` for the stored records 1..=upto in order, reading pages.
async fn read_hashes<S: LedgerStore + ?Sized>(
    store: &S,
    upto: u64,
    mut each: impl FnMut(u64, &Hash) -> Result<(), ProveError>,
) -> Result<(), ProveError> {
    let mut done = 0u64;
    while done < upto {
        let next = done + 1;
        let limit = u32::try_from(upto - next + 1).map_or(PAGE, |n| n.min(PAGE));
        let page = store.read_stored(next as i64, limit).await?;
        if page.is_empty() {
            return Err(ProveError::Truncated {
                checkpoint: upto,
                records: done,
            });
        }
        for stored in page {
            let expected = done + 1;
            if stored.seq != expected as i64 {
                return Err(LedgerError::Corrupt {
                    seq: stored.seq,
                    detail: format!("expected record {expected} here while building a proof"),
                }
                .into());
            }
            let hash = hash_array("hash", &stored.hash).map_err(|detail| LedgerError::Corrupt {
                seq: stored.seq,
                detail,
            })?;
            each(expected, &hash)?;
            done = expected;
        }
    }
    Ok(())
}

mod hex_hash {
    use super::*;

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode_hash(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

mod hex_hashes {
    use super::*;

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(|h| hex::encode(h)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                hex::decode_hash(text)
                    .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
            })
            .collect()
    }
}
