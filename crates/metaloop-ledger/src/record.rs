//! What callers append, what the ledger holds, and what a store returns before any check.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer, ser::SerializeStruct};
use serde_json::Value;

use crate::canonical_json::{
    CanonicalJsonError, CanonicalizeError, canonicalize, is_canonical, to_canonical_json,
};
use crate::encoding::{HashInput, ZERO_HASH};
use crate::error::LedgerError;
use crate::hex;
use crate::store::Head;

/// A record as a caller appends it; the ledger assigns `seq` and the hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    /// When the recorded decision happened, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Who decided: a principal, a component (`supervisor`), an adapter.
    pub actor: String,
    /// What was decided, e.g. `directive.issued`.
    pub action: String,
    /// What it is about, e.g. `directive/0192…`; may be empty.
    pub resource: String,
    /// Details; stored as canonical JSON.
    pub payload: Value,
}

impl NewRecord {
    /// Builds a record to append.
    pub fn new(
        time_ms: i64,
        actor: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            time_ms,
            actor: actor.into(),
            action: action.into(),
            resource: resource.into(),
            payload,
        }
    }
}

/// A record in the ledger: a [`NewRecord`] with its position and hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the ledger: 1 for the first record, then without gaps.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Who decided.
    pub actor: String,
    /// What was decided.
    pub action: String,
    /// What it is about.
    pub resource: String,
    /// Details.
    pub payload: Value,
    /// Hash of the previous record; all zero for seq 1.
    pub prev_hash: [u8; 32],
    /// SHA-256 over the canonical encoding of all the other fields.
    pub hash: [u8; 32],
}

impl Record {
    /// Lower-case hex of `hash`.
    pub fn hash_hex(&self) -> String {
        hex::encode(&self.hash)
    }

    /// Lower-case hex of `prev_hash`.
    pub fn prev_hash_hex(&self) -> String {
        hex::encode(&self.prev_hash)
    }

    /// `time_ms` as a UTC timestamp, if it is within chrono's range.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.time_ms)
    }

    /// The payload's canonical JSON text, as stored and hashed.
    pub fn canonical_payload(&self) -> Result<String, CanonicalJsonError> {
        to_canonical_json(&self.payload)
    }

    /// Recomputes the hash from the other fields.
    pub fn compute_hash(&self) -> Result<[u8; 32], CanonicalJsonError> {
        let payload = self.canonical_payload()?;
        Ok(HashInput {
            seq: self.seq,
            time_ms: self.time_ms,
            actor: self.actor.as_bytes(),
            action: self.action.as_bytes(),
            resource: self.resource.as_bytes(),
            payload: payload.as_bytes(),
            prev_hash: &self.prev_hash,
        }
        .hash())
    }
}

/// Serialises with hashes as lower-case hex strings (for `ledger show` and the API).
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Record", 8)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("time_ms", &self.time_ms)?;
        s.serialize_field("actor", &self.actor)?;
        s.serialize_field("action", &self.action)?;
        s.serialize_field("resource", &self.resource)?;
        s.serialize_field("payload", &self.payload)?;
        s.serialize_field("prev_hash", &self.prev_hash_hex())?;
        s.serialize_field("hash", &self.hash_hex())?;
        s.end()
    }
}

/// A row exactly as a store holds it, before any check: what verification works from.
///
/// Text fields are raw bytes (a tampered value need not be UTF-8), hashes are whatever
/// length is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Stored sequence number.
    pub seq: i64,
    /// Stored time.
    pub time_ms: i64,
    /// Stored actor bytes.
    pub actor: Vec<u8>,
    /// Stored action bytes.
    pub action: Vec<u8>,
    /// Stored resource bytes.
    pub resource: Vec<u8>,
    /// Stored payload text bytes (canonical JSON unless tampered with).
    pub payload: Vec<u8>,
    /// Stored previous hash (32 bytes unless tampered with).
    pub prev_hash: Vec<u8>,
    /// Stored hash (32 bytes unless tampered with).
    pub hash: Vec<u8>,
    /// Set by the store when a value could not be read as its type (a NULL, a float where an
    /// integer belongs); verification reports the record as malformed.
    pub defect: Option<String>,
}

impl StoredRecord {
    /// Decodes into a [`Record`], failing on anything a valid ledger cannot contain
    /// (it does not check hashes: that is [`crate::verify`]'s job).
    pub fn decode(self) -> Result<Record, LedgerError> {
        let seq = self.seq;
        let corrupt = |detail: String| LedgerError::Corrupt { seq, detail };
        if let Some(defect) = self.defect {
            return Err(corrupt(defect));
        }
        let seq = u64::try_from(self.seq)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| corrupt("sequence number is not positive".into()))?;
        let text = |name: &str, bytes: Vec<u8>| {
            String::from_utf8(bytes).map_err(|_| corrupt(format!("{name} is not valid UTF-8")))
        };
        let payload = serde_json::from_slice(&self.payload)
            .map_err(|e| corrupt(format!("payload is not valid JSON: {e}")))?;
        Ok(Record {
            seq,
            time_ms: self.time_ms,
            actor: text("actor", self.actor)?,
            action: text("action", self.action)?,
            resource: text("resource", self.resource)?,
            payload,
            prev_hash: hash_array("prev_hash", &self.prev_hash).map_err(corrupt)?,
            hash: hash_array("hash", &self.hash).map_err(corrupt)?,
        })
    }

    /// Checks that the stored payload text is canonical JSON.
    pub(crate) fn check_payload(&self) -> Result<(), String> {
        // Most payloads are canonical, and confirming that needs no parsed value.
        if is_canonical(&self.payload) {
            return Ok(());
        }
        match canonicalize(&self.payload) {
            Ok(canonical) if canonical.as_bytes() == self.payload.as_slice() => Ok(()),
            Ok(canonical) => {
                let at = canonical
                    .bytes()
                    .zip(&self.payload)
                    .position(|(a, b)| a != *b)
                    .unwrap_or(canonical.len().min(self.payload.len()));
                Err(format!(
                    "the stored text differs from its canonical form at byte {at}"
                ))
            }
            Err(CanonicalizeError::Parse(e)) => Err(format!("not valid JSON: {e}")),
            Err(CanonicalizeError::Canonical(e)) => Err(e.to_string()),
        }
    }
}

pub(crate) fn hash_array(name: &str, bytes: &[u8]) -> Result<[u8; 32], String> {
    bytes
        .try_into()
        .map_err(|_| format!("{name} is {} bytes, not 32", bytes.len()))
}

/// A [`NewRecord`] that was checked and whose payload is in canonical form, waiting for its
/// place in the chain ([`PreparedRecord::prepare`], [`crate::LedgerStore::append_prepared`]).
///
/// Preparing is the CPU work of an append that does not depend on the chain; the group-commit
/// writer does it on each caller's task, so the task that commits does not.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    new: NewRecord,
    payload_text: String,
}

impl PreparedRecord {
    /// Checks every record of `batch` (actor and action not empty, no NUL in actor, action or
    /// resource, a payload that has a canonical form) and canonicalises the payloads. The
    /// first bad record fails the whole batch as [`LedgerError::InvalidRecord`] with its index.
    pub fn prepare(batch: Vec<NewRecord>) -> Result<Vec<Self>, LedgerError> {
        prepare(batch)
    }

    /// The record as given.
    pub fn record(&self) -> &NewRecord {
        &self.new
    }

    /// The payload's canonical JSON text, as it will be hashed and stored.
    pub fn payload_text(&self) -> &str {
        &self.payload_text
    }
}

/// A record ready to insert: the [`Record`] plus its payload's canonical text.
#[derive(Debug, Clone)]
pub(crate) struct SealedRecord {
    pub record: Record,
    pub payload_text: String,
}

impl SealedRecord {
    /// Takes the record out of the chain again (to chain it after another head).
    pub(crate) fn unseal(self) -> PreparedRecord {
        let Record {
            time_ms,
            actor,
            action,
            resource,
            payload,
            ..
        } = self.record;
        PreparedRecord {
            new: NewRecord {
                time_ms,
                actor,
                action,
                resource,
                payload,
            },
            payload_text: self.payload_text,
        }
    }
}

/// Validates `batch` and canonicalises the payloads (done before taking the append lock).
pub(crate) fn prepare(batch: Vec<NewRecord>) -> Result<Vec<PreparedRecord>, LedgerError> {
    batch
        .into_iter()
        .enumerate()
        .map(|(index, new)| {
            let payload_text = check_new(index, &new)?;
            Ok(PreparedRecord { new, payload_text })
        })
        .collect()
}

/// Checks one record of a batch and returns its payload's canonical text.
fn check_new(index: usize, new: &NewRecord) -> Result<String, LedgerError> {
    let invalid = |reason: String| LedgerError::InvalidRecord { index, reason };
    for (name, value) in [("actor", &new.actor), ("action", &new.action)] {
        if value.is_empty() {
            return Err(invalid(format!("{name} is empty")));
        }
    }
    for (name, value) in [
        ("actor", &new.actor),
        ("action", &new.action),
        ("resource", &new.resource),
    ] {
        // PostgreSQL text cannot hold NUL; refuse it everywhere so backends agree.
        if value.contains('\0') {
            return Err(invalid(format!("{name} contains a NUL character")));
        }
    }
    to_canonical_json(&new.payload).map_err(|e| invalid(format!("payload: {e}")))
}

/// Assigns seqs after `head` and chains the hashes; shared by every backend.
pub(crate) fn chain(
    prepared: Vec<PreparedRecord>,
    head: Option<Head>,
) -> Result<Vec<SealedRecord>, LedgerError> {
    let (mut seq, mut prev_hash) = head.unwrap_or((0, ZERO_HASH));
    let mut sealed = Vec::with_capacity(prepared.len());
    for (index, PreparedRecord { new, payload_text }) in prepared.into_iter().enumerate() {
        seq = seq
            .checked_add(1)
            .filter(|s| i64::try_from(*s).is_ok())
            .ok_or_else(|| LedgerError::InvalidRecord {
                index,
                reason: "the ledger is full (seq would exceed 2^63-1)".into(),
            })?;
        let hash = HashInput {
            seq,
            time_ms: new.time_ms,
            actor: new.actor.as_bytes(),
            action: new.action.as_bytes(),
            resource: new.resource.as_bytes(),
            payload: payload_text.as_bytes(),
            prev_hash: &prev_hash,
        }
        .hash();
        sealed.push(SealedRecord {
            record: Record {
                seq,
                time_ms: new.time_ms,
                actor: new.actor,
                action: new.action,
                resource: new.resource,
                payload: new.payload,
                prev_hash,
                hash,
            },
            payload_text,
        });
        prev_hash = hash;
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seal(batch: Vec<NewRecord>, head: Option<Head>) -> Result<Vec<SealedRecord>, LedgerError> {
        chain(prepare(batch)?, head)
    }

    fn new(actor: &str) -> NewRecord {
        NewRecord::new(1, actor, "act", "res", json!({"b": 1, "a": [1.5]}))
    }

    #[test]
    fn seal_chains_from_zero_and_from_a_head() {
        let sealed = seal(vec![new("x"), new("y")], None).unwrap();
        assert_eq!(sealed[0].record.seq, 1);
        assert_eq!(sealed[0].record.prev_hash, ZERO_HASH);
        assert_eq!(sealed[1].record.prev_hash, sealed[0].record.hash);
        assert_eq!(sealed[0].payload_text, r#"{"a":[1.5],"b":1}"#);
        for s in &sealed {
            assert_eq!(s.record.compute_hash().unwrap(), s.record.hash);
        }
        let next = seal(vec![new("z")], Some((2, sealed[1].record.hash))).unwrap();
        assert_eq!(next[0].record.seq, 3);
        assert_eq!(next[0].record.prev_hash, sealed[1].record.hash);
    }

    #[test]
    fn seal_names_the_bad_record() {
        let err = seal(vec![new("ok"), new("")], None).unwrap_err();
        assert_eq!(err.to_string(), "batch record 1: actor is empty");
        let err = seal(vec![new("a\0b")], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch record 0: actor contains a NUL character"
        );
    }

    #[test]
    fn record_serialises_hashes_as_hex() {
        let r = seal(vec![new("x")], None).unwrap().remove(0).record;
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["prev_hash"], json!("0".repeat(64)));
        assert_eq!(v["hash"], json!(r.hash_hex()));
        assert_eq!(v["payload"], r.payload);
    }
}
