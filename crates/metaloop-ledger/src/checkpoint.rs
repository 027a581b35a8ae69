//! Signed checkpoints: the supervisor's Ed25519 signature over (seq, head hash, Merkle root),
//! so that a chain re-computed by someone without the key, or a tail cut off after a
//! checkpoint, is detected.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hex;

/// Domain separation of the signed message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"metaloop-checkpoint/v1\0";

/// A signed statement: "the ledger's first `seq` records end in `head` and have Merkle root
/// `merkle_root`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Records covered: 1..=seq.
    pub seq: u64,
    /// Hash of record `seq`.
    pub head: [u8; 32],
    /// RFC 6962 Merkle tree hash over the record hashes 1..=seq.
    pub merkle_root: [u8; 32],
    /// When it was made, ms since the epoch.
    pub time_ms: i64,
    /// First 16 hex characters of SHA-256 of the signing key's public key.
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::message`].
    pub signature: [u8; 64],
}

/// A checkpoint as text, for humans, notifications and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointText {
    pub seq: u64,
    pub head: String,
    pub merkle_root: String,
    pub time_ms: i64,
    pub key_id: String,
    pub signature: String,
}

/// The id of a public key: the first 16 hex characters of SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let d = Sha256::digest(key.to_bytes());
    hex::encode(&d[..8])
}

impl Checkpoint {
    /// The exact bytes signed: domain, seq (u64 BE), time_ms (i64 BE), head, merkle_root.
    pub fn message(seq: u64, time_ms: i64, head: &[u8; 32], merkle_root: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 80);
        m.extend_from_slice(CHECKPOINT_DOMAIN);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&time_ms.to_be_bytes());
        m.extend_from_slice(head);
        m.extend_from_slice(merkle_root);
        m
    }

    /// Signs a checkpoint.
    pub fn sign(
        key: &SigningKey,
        seq: u64,
        time_ms: i64,
        head: [u8; 32],
        merkle_root: [u8; 32],
    ) -> Self {
        let sig = key.sign(&Self::message(seq, time_ms, &head, &merkle_root));
        Checkpoint {
            seq,
            head,
            merkle_root,
            time_ms,
            key_id: key_id(&key.verifying_key()),
            signature: sig.to_bytes(),
        }
    }

    /// Checks the signature with `key` (strict verification: no malleable signatures).
    pub fn verify_signature(&self, key: &VerifyingKey) -> bool {
        let sig = Signature::from_bytes(&self.signature);
        let msg = Self::message(self.seq, self.time_ms, &self.head, &self.merkle_root);
        key.verify_strict(&msg, &sig).is_ok() && key.verify(&msg, &sig).is_ok()
    }

    /// The hex form.
    pub fn to_text(&self) -> CheckpointText {
        CheckpointText {
            seq: self.seq,
            head: hex::encode(&self.head),
            merkle_root: hex::encode(&self.merkle_root),
            time_ms: self.time_ms,
            key_id: self.key_id.clone(),
            signature: hex::encode(&self.signature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_bind_every_field() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let cp = Checkpoint::sign(&key, 42, 1_000, [1; 32], [2; 32]);
        let vk = key.verifying_key();
        assert!(cp.verify_signature(&vk));
        assert_eq!(cp.key_id.len(), 16);
        let mut bad = cp.clone();
        bad.seq = 41;
        assert!(!bad.verify_signature(&vk));
        let mut bad = cp.clone();
        bad.head[0] ^= 1;
        assert!(!bad.verify_signature(&vk));
        let mut bad = cp.clone();
        bad.merkle_root[31] ^= 1;
        assert!(!bad.verify_signature(&vk));
        let mut bad = cp.clone();
        bad.time_ms += 1;
        assert!(!bad.verify_signature(&vk));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(!cp.verify_signature(&other));
    }
}
