//! The canonical byte encoding of a record and the hash computed over it.
//!
//! Specified in `docs/LEDGER.md` ("Record encoding"); an auditor re-implements this.

use sha2::{Digest, Sha256};

/// Domain-separation prefix that starts every encoded record (NUL-terminated, so no other
/// metaloop domain string can be a prefix of it or extend it).
pub const DOMAIN: &[u8] = b"metaloop-ledger/v1\0";

/// The `prev_hash` of the first record.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// Every field a record's hash covers, borrowed; `payload` is the canonical JSON text.
///
/// Text fields are bytes so that verification can hash exactly what is stored, even when a
/// tampered value is no longer valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashInput<'a> {
    /// Position in the ledger, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// UTF-8 bytes of the actor.
    pub actor: &'a [u8],
    /// UTF-8 bytes of the action.
    pub action: &'a [u8],
    /// UTF-8 bytes of the resource.
    pub resource: &'a [u8],
    /// Canonical JSON text of the payload.
    pub payload: &'a [u8],
    /// Hash of the previous record, or [`ZERO_HASH`] for seq 1.
    pub prev_hash: &'a [u8; 32],
}

impl HashInput<'_> {
    /// Returns the canonical encoding: the exact bytes the hash is computed over.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut |bytes| out.extend_from_slice(bytes));
        out
    }

    /// Returns SHA-256 of the canonical encoding.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        self.write(&mut |bytes| hasher.update(bytes));
        hasher.finalize().into()
    }

    /// Length in bytes of [`HashInput::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        DOMAIN.len()
            + 8
            + 8
            + [self.actor, self.action, self.resource, self.payload]
                .iter()
                .map(|field| 8 + field.len())
                .sum::<usize>()
            + 32
    }

    fn write(&self, sink: &mut impl FnMut(&[u8])) {
        sink(DOMAIN);
        sink(&self.seq.to_be_bytes());
        sink(&self.time_ms.to_be_bytes());
        for field in [self.actor, self.action, self.resource, self.payload] {
            sink(&(field.len() as u64).to_be_bytes());
            sink(field);
        }
        sink(self.prev_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(actor: &'a [u8], action: &'a [u8]) -> HashInput<'a> {
        HashInput {
            seq: 1,
            time_ms: 0,
            actor,
            action,
            resource: b"",
            payload: b"null",
            prev_hash: &ZERO_HASH,
        }
    }

    #[test]
    fn length_prefixes_keep_field_boundaries_apart() {
        // Same concatenated text, different split between fields.
        assert_ne!(input(b"ab", b"c").hash(), input(b"a", b"bc").hash());
    }

    #[test]
    fn hash_is_sha256_of_the_encoding() {
        let i = input(b"actor", b"action");
        let encoded = i.encode();
        assert_eq!(encoded.len(), i.encoded_len());
        assert!(encoded.starts_with(DOMAIN));
        let direct: [u8; 32] = Sha256::digest(&encoded).into();
        assert_eq!(direct, i.hash());
    }

    #[test]
    fn integers_are_big_endian() {
        let i = HashInput {
            seq: 0x0102,
            time_ms: -2,
            ..input(b"", b"")
        };
        let e = i.encode();
        let at = DOMAIN.len();
        assert_eq!(&e[at..at + 8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            &e[at + 8..at + 16],
            &[0xff; 7].iter().chain(&[0xfe]).copied().collect::<Vec<_>>()[..]
        );
    }
}
