//! Signed notes (c2sp.org/signed-note), checkpoint notes (c2sp.org/tlog-checkpoint) and
//! Ed25519 cosignatures (c2sp.org/tlog-cosignature): the formats transparency-log tooling
//! and witnesses speak, so that a ledger checkpoint can be checked and cosigned by software
//! that knows nothing about metaloop.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then signature lines
//! `— <key name> <base64(4-byte key id ‖ signature)>`. An Ed25519 note signature (type 0x01)
//! signs the text; a cosignature (type 0x04) signs `cosignature/v1\ntime <t>\n` followed by
//! the text, and carries the 8-byte big-endian time before the 64-byte signature. A key id is
//! `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[..4]`; a verifier key (vkey) is
//! `<name>+<8 hex digits of the id>+<base64(type ‖ public key)>`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Signature type byte of an Ed25519 note signature over the note text.
pub const TYPE_ED25519: u8 = 0x01;

/// Signature type byte of a timestamped Ed25519 checkpoint cosignature.
pub const TYPE_COSIGNATURE: u8 = 0x04;

/// The most signature lines a note may carry (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The most bytes a note may have.
pub const MAX_NOTE_LEN: usize = 64 * 1024;

/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, a signature line, a key or a checkpoint text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note's structure is wrong.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// A verifier key is wrong.
    #[error("malformed verifier key: {0}")]
    BadKey(String),
    /// A checkpoint's text is wrong.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
    /// A signature from a known key did not verify.
    #[error("the signature of {name} ({id:08x}) does not verify: the note was forged or edited")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id.
        id: u32,
    },
    /// No signature from a known key is on the note.
    #[error("no signature from {0} on the note")]
    Unsigned(String),
}

/// Standard base64 (RFC 4648 §4) with padding; decoding refuses anything non-canonical.
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Encodes `bytes`.
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }

    /// Decodes padded standard base64; `None` for any other text (including non-zero
    /// padding bits, so that every byte string has exactly one accepted encoding).
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let t = text.as_bytes();
        if !t.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(t.len() / 4 * 3);
        for (i, quad) in t.chunks(4).enumerate() {
            let last = i + 1 == t.len() / 4;
            let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return None;
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let keep = 3 - pad;
            if bytes[keep..].iter().any(|&b| b != 0) {
                return None;
            }
            out.extend_from_slice(&bytes[..keep]);
        }
        Some(out)
    }
}

/// Whether `name` may be a key name: non-empty, no Unicode space, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[..4]` as a big-endian number.
pub fn key_id(name: &str, kind: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([kind]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// One signature line of a note: the key's name and id and the signature bytes after the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub id: u32,
    /// The signature (for a cosignature: 8-byte time, then 64 bytes).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, with its final newline.
    pub fn line(&self) -> String {
        let mut bytes = self.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, base64::encode(&bytes))
    }

    /// Parses one line (with or without its final newline).
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::Malformed(format!("signature line {line:?}: {why}"));
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| bad("it does not start with an em dash and a space"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad("expected a key name, a space and a base64 signature"))?;
        if !valid_key_name(name) {
            return Err(bad("the key name is empty or holds a space or a plus sign"));
        }
        let bytes = base64::decode(sig).ok_or_else(|| bad("the signature is not base64"))?;
        if bytes.len() < 5 {
            return Err(bad("the signature is shorter than a key id and one byte"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            signature: bytes[4..].to_vec(),
        })
    }

    /// For a cosignature: its time (POSIX seconds).
    pub fn cosignature_time(&self) -> Option<u64> {
        (self.signature.len() == 72)
            .then(|| u64::from_be_bytes(self.signature[..8].try_into().expect("8 bytes")))
    }
}

/// A signed note: its text (ending in a newline) and its signatures, unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, including its final newline.
    pub text: String,
    /// The signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Splits a note into its text and signature lines, checking the format (not the
    /// signatures: see [`Note::verify`]).
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_owned());
        if note.len() > MAX_NOTE_LEN {
            return Err(bad("longer than 64 KiB"));
        }
        if note.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
            return Err(bad("it holds a control character other than newline"));
        }
        if !note.ends_with('\n') {
            return Err(bad("it does not end with a newline"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        let lines = &note[split + 2..];
        let signatures = lines
            .split_terminator('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.is_empty() {
            return Err(bad("no signature lines"));
        }
        if signatures.len() > MAX_SIGNATURES {
            return Err(bad("more than 100 signature lines"));
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn format(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Verifies the note as the spec requires: signatures from unknown keys (name and id
    /// not both those of a verifier) are ignored; a signature from a known key that does
    /// not verify fails the note; a note with no verified signature fails. Returns the
    /// verified signatures with their verifiers.
    pub fn verify<'a>(
        &'a self,
        verifiers: &'a [NoteVerifier],
    ) -> Result<Vec<(&'a NoteVerifier, &'a NoteSignature)>, NoteError> {
        let mut verified = Vec::new();
        for sig in &self.signatures {
            let Some(v) = verifiers
                .iter()
                .find(|v| v.name == sig.name && v.id == sig.id)
            else {
                continue;
            };
            if !v.verify(&self.text, sig) {
                return Err(NoteError::BadSignature {
                    name: sig.name.clone(),
                    id: sig.id,
                });
            }
            verified.push((v, sig));
        }
        if verified.is_empty() {
            let names: Vec<String> = verifiers.iter().map(|v| v.name.clone()).collect();
            return Err(NoteError::Unsigned(names.join(", ")));
        }
        Ok(verified)
    }
}

/// A public key that verifies note signatures: Ed25519 (type 0x01) or Ed25519 cosignatures
/// (type 0x04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    /// Key name.
    pub name: String,
    /// Key id.
    pub id: u32,
    /// Signature type: [`TYPE_ED25519`] or [`TYPE_COSIGNATURE`].
    pub kind: u8,
    /// The public key.
    pub key: VerifyingKey,
}

impl NoteVerifier {
    /// A verifier of Ed25519 note signatures by `name`.
    pub fn ed25519(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        Self::new(name, TYPE_ED25519, key)
    }

    /// A verifier of Ed25519 cosignatures by the witness `name`.
    pub fn cosigner(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        Self::new(name, TYPE_COSIGNATURE, key)
    }

    fn new(name: &str, kind: u8, key: VerifyingKey) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKey(format!(
                "key name {name:?} is empty or holds a space or a plus sign"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, kind, key.as_bytes()),
            kind,
            key,
        })
    }

    /// Parses a verifier key `<name>+<hex id>+<base64(type ‖ key)>`, checking that the id is
    /// the key's.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::BadKey(why.to_owned());
        let vkey = vkey.trim_end_matches(['\n', '\r']);
        // The name holds no `+`, the id is hex: the base64 key is everything after the second.
        let Some((name, id, key)) = vkey
            .split_once('+')
            .and_then(|(name, rest)| rest.split_once('+').map(|(id, key)| (name, id, key)))
        else {
            return Err(bad("expected <name>+<8 hex digits>+<base64 key>"));
        };
        if !valid_key_name(name) {
            return Err(bad("the key name is empty or holds a space"));
        }
        if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("the key id is not 8 lower-case hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("the key id is not hex"))?;
        let bytes = base64::decode(key).ok_or_else(|| bad("the key is not base64"))?;
        let (&kind, material) = bytes.split_first().ok_or_else(|| bad("the key is empty"))?;
        if kind != TYPE_ED25519 && kind != TYPE_COSIGNATURE {
            return Err(bad(&format!(
                "signature type 0x{kind:02x} is not supported (0x01 Ed25519, 0x04 Ed25519 cosignature)"
            )));
        }
        let material: [u8; 32] = material
            .try_into()
            .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&material)
            .map_err(|_| bad("the 32 bytes are not an Ed25519 public key"))?;
        let verifier = Self::new(name, kind, key)?;
        if verifier.id != id {
            return Err(bad(&format!(
                "key id {id:08x} is not the key's id {:08x}",
                verifier.id
            )));
        }
        Ok(verifier)
    }

    /// The verifier key text.
    pub fn to_vkey(&self) -> String {
        let mut bytes = vec![self.kind];
        bytes.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, base64::encode(&bytes))
    }

    /// Whether `sig` (by this key's name and id) is a valid signature of `text`.
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> bool {
        if sig.name != self.name || sig.id != self.id {
            return false;
        }
        match self.kind {
            TYPE_ED25519 => {
                let Ok(s) = Signature::from_slice(&sig.signature) else {
                    return false;
                };
                self.key.verify_strict(text.as_bytes(), &s).is_ok()
            }
            TYPE_COSIGNATURE => {
                let Some(time) = sig.cosignature_time() else {
                    return false;
                };
                if time > i64::MAX as u64 {
                    return false;
                }
                let Ok(s) = Signature::from_slice(&sig.signature[8..]) else {
                    return false;
                };
                self.key
                    .verify_strict(&cosignature_message(time, text), &s)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// A private key that makes note signatures or cosignatures.
#[derive(Debug, Clone)]
pub struct NoteSigner {
    verifier: NoteVerifier,
    key: SigningKey,
}

impl NoteSigner {
    /// Signs notes with Ed25519 as `name`.
    pub fn ed25519(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        Ok(Self {
            verifier: NoteVerifier::ed25519(name, key.verifying_key())?,
            key,
        })
    }

    /// Cosigns checkpoints as the witness `name`.
    pub fn cosigner(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        Ok(Self {
            verifier: NoteVerifier::cosigner(name, key.verifying_key())?,
            key,
        })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// Signs `text` (a note signer) or cosigns it at `time` (a cosigner; POSIX seconds).
    pub fn sign(&self, text: &str, time: u64) -> NoteSignature {
        let signature = match self.verifier.kind {
            TYPE_COSIGNATURE => {
                let time = time.min(i64::MAX as u64);
                let s = self.key.sign(&cosignature_message(time, text));
                let mut bytes = time.to_be_bytes().to_vec();
                bytes.extend_from_slice(&s.to_bytes());
                bytes
            }
            _ => self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        };
        NoteSignature {
            name: self.verifier.name.clone(),
            id: self.verifier.id,
            signature,
        }
    }
}

/// The message an Ed25519 cosignature signs: `cosignature/v1\ntime <t>\n` and the note text.
pub fn cosignature_message(time: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// The text of a checkpoint note: origin, tree size and root hash (c2sp.org/tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointNote {
    /// The log's identity.
    pub origin: String,
    /// Leaves in the tree: the records covered.
    pub size: u64,
    /// The RFC 6962 root over the first `size` record hashes.
    pub root: Hash,
}

impl CheckpointNote {
    /// `origin\nsize\nbase64(root)\n`.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            base64::encode(&self.root)
        )
    }

    /// Parses a checkpoint's note text (extension lines are refused: metaloop writes none).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |why: String| NoteError::BadCheckpoint(why);
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end with a newline".into()))?
            .split('\n')
            .collect();
        let [origin, size, root] = lines[..] else {
            return Err(bad(format!(
                "expected 3 lines (origin, tree size, root hash), found {}",
                lines.len()
            )));
        };
        if origin.is_empty() {
            return Err(bad("the origin line is empty".into()));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| size_ok)
            .ok_or_else(|| bad(format!("tree size {size:?} is not a decimal number")))?;
        let root: Hash = base64::decode(root)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad(format!("root hash {root:?} is not 32 bytes in base64")))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The origin line (and note key name) of the ledger whose checkpoints `key` signs:
/// `metaloop.ledger/` and the 16 hex digits of the key's id.
pub fn ledger_origin(key: &VerifyingKey) -> String {
    origin_for_key_id(&crate::checkpoint::key_id(key))
}

/// [`ledger_origin`] from a checkpoint's stored key id.
pub fn origin_for_key_id(key_id: &str) -> String {
    format!("metaloop.ledger/{key_id}")
}

/// The supervisor's note verifier: Ed25519 under the ledger's origin.
pub fn ledger_verifier(key: &VerifyingKey) -> NoteVerifier {
    NoteVerifier::ed25519(&ledger_origin(key), *key).expect("the origin is a valid key name")
}

/// The supervisor's note signer.
pub fn ledger_signer(key: &SigningKey) -> NoteSigner {
    NoteSigner::ed25519(&ledger_origin(&key.verifying_key()), key.clone())
        .expect("the origin is a valid key name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_non_canonical_text() {
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64::decode(&base64::encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64::encode(b"fo"), "Zm8=");
        for bad in ["Zm9", "Zm9=Zm8=", "Zm9v YmFy", "Zm8==", "Zn==", "Zm9-"] {
            assert_eq!(base64::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn checkpoint_text_round_trips_and_names_bad_lines() {
        let cp = CheckpointNote {
            origin: "example.com/log".into(),
            size: 12,
            root: [7; 32],
        };
        assert_eq!(CheckpointNote::parse(&cp.text()).unwrap(), cp);
        for (text, why) in [
            (
                "o\n012\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
                "tree size",
            ),
            ("o\n12\nBwcH\n", "root hash"),
            ("o\n12\n", "expected 3 lines"),
            (
                "\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
                "origin",
            ),
        ] {
            let err = CheckpointNote::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn a_cosignature_signs_the_timestamped_message() {
        let witness =
            NoteSigner::cosigner("w.example/1", SigningKey::from_bytes(&[3; 32])).unwrap();
        let text = "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let sig = witness.sign(text, 1_700_000_000);
        assert_eq!(sig.cosignature_time(), Some(1_700_000_000));
        assert!(witness.verifier().verify(text, &sig));
        let mut later = sig.clone();
        later.signature[7] ^= 1;
        assert!(!witness.verifier().verify(text, &later));
        // The same key as a note signer has another id: its signatures are not cosignatures.
        let plain = NoteVerifier::ed25519("w.example/1", witness.verifier().key).unwrap();
        assert_ne!(plain.id, witness.verifier().id);
        let vkey = witness.verifier().to_vkey();
        assert_eq!(NoteVerifier::parse(&vkey).unwrap(), *witness.verifier());
    }
}
