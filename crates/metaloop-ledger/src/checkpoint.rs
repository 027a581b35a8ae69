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
///
/// Serialises as its [`CheckpointText`] (hashes, key id and signature in lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "CheckpointText", try_from = "CheckpointText")]
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
#[serde(deny_unknown_fields)]
pub struct CheckpointText {
    /// Records covered: 1..=seq.
    pub seq: u64,
    /// Hash of record `seq`, 64 hex digits.
    pub head: String,
    /// RFC 6962 Merkle root over the record hashes 1..=seq, 64 hex digits.
    pub merkle_root: String,
    /// When it was made, ms since the epoch.
    pub time_ms: i64,
    /// First 16 hex characters of SHA-256 of the signing key's public key.
    pub key_id: String,
    /// Ed25519 signature, 128 hex digits.
    pub signature: String,
}

/// A [`CheckpointText`] field that is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint {field} is not {expected}")]
pub struct CheckpointTextError {
    /// The offending field.
    pub field: &'static str,
    /// What it must be.
    pub expected: &'static str,
}

impl TryFrom<CheckpointText> for Checkpoint {
    type Error = CheckpointTextError;

    fn try_from(text: CheckpointText) -> Result<Self, Self::Error> {
        let bad = |field, expected| CheckpointTextError { field, expected };
        let hash = |field, value: &str| hex::decode_hash(value).ok_or(bad(field, "64 hex digits"));
        let signature =
            decode_signature(&text.signature).ok_or(bad("signature", "128 hex digits"))?;
        let key_id_ok = text.key_id.len() == 16
            && text
                .key_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !key_id_ok {
            return Err(bad("key_id", "16 lower-case hex digits"));
        }
        Ok(Checkpoint {
            seq: text.seq,
            head: hash("head", &text.head)?,
            merkle_root: hash("merkle_root", &text.merkle_root)?,
            time_ms: text.time_ms,
            key_id: text.key_id,
            signature,
        })
    }
}

impl From<Checkpoint> for CheckpointText {
    fn from(checkpoint: Checkpoint) -> Self {
        checkpoint.to_text()
    }
}

fn decode_signature(text: &str) -> Option<[u8; 64]> {
    if text.len() != 128 || !text.is_char_boundary(64) {
        return None;
    }
    let (a, b) = text.split_at(64);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&hex::decode_hash(a)?);
    out[32..].copy_from_slice(&hex::decode_hash(b)?);
    Some(out)
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

    #[test]
    fn text_form_round_trips_and_rejects_bad_fields() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let cp = Checkpoint::sign(&key, 42, 1_000, [1; 32], [2; 32]);
        let json = serde_json::to_value(&cp).unwrap();
        assert_eq!(json["head"], hex::encode(&[1; 32]));
        assert_eq!(json["signature"].as_str().unwrap().len(), 128);
        let back: Checkpoint = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, cp);
        for (field, value) in [
            ("head", "00"),
            ("merkle_root", "zz"),
            ("signature", "ab"),
            ("key_id", "ABCDEF0123456789"),
        ] {
            let mut bad = json.clone();
            bad[field] = value.into();
            let err = serde_json::from_value::<Checkpoint>(bad).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
