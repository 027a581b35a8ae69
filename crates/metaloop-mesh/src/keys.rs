//! The key registry (`source` → Ed25519 public keys) and the signer adapters and metaloop use.

use crate::envelope::CloudEvent;
use crate::verifiability::{self, SignError};
use ed25519_dalek::{SigningKey, VerifyingKey};
use metaloop_core::protocol::EventData;
use metaloop_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;

/// A key id: the first 16 lower-case hex characters of SHA-256 of the 32-byte public key
/// (the same ids the ledger's checkpoints carry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        KeyId(hex(&digest[..8]))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

fn unhex32(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::Format(format!(
            "expected 64 hex characters, got {} characters",
            t.len()
        )));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("checked hex digits");
    }
    Ok(out)
}

/// Why a key or a registry entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Format(String),
    #[error("not a valid Ed25519 public key: {0}")]
    Invalid(String),
    #[error("weak Ed25519 public key (small order): refused")]
    Weak,
    #[error("source is empty")]
    EmptySource,
    #[error("source {0:?} has no public keys")]
    NoKeys(String),
    #[error("source {0:?} is listed twice")]
    DuplicateSource(String),
    #[error("{field}: {error}")]
    At { field: String, error: Box<KeyError> },
}

/// Parses an Ed25519 public key written as 64 hex characters (32 bytes).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = unhex32(text)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError::Invalid(e.to_string()))?;
    if key.is_weak() {
        return Err(KeyError::Weak);
    }
    Ok(key)
}

/// Parses an Ed25519 secret key (seed) written as 64 hex characters (32 bytes).
pub fn parse_secret_key(text: &str) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&unhex32(text)?))
}

/// A public key as 64 hex characters.
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex(key.as_bytes())
}

/// A fresh signing key from the operating system's random source.
pub fn generate_signing_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random source failed");
    SigningKey::from_bytes(&seed)
}

/// One `[[adapters]]` entry of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterKeys {
    /// The CloudEvents `source` the adapter signs as.
    pub source: String,
    /// Its Ed25519 public keys, 64 hex characters each; several during a rotation.
    pub public_keys: Vec<String>,
    /// The domains it may speak for (events and acks); `None` is any domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
}

/// A public key registered for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredKey {
    pub id: KeyId,
    pub key: VerifyingKey,
}

/// Which public keys may sign for which `source`. Several keys may be valid at once, so a
/// source can rotate: add the new key, switch the adapter over, remove the old key.
#[derive(Debug, Clone, Default)]
pub struct KeyRegistry {
    sources: HashMap<String, Vec<RegisteredKey>>,
    /// The domains a source may speak for; a source absent here may speak for any.
    domains: HashMap<String, std::collections::BTreeSet<String>>,
}

impl KeyRegistry {
    /// An empty registry (every source is unknown).
    pub fn new() -> Self {
        KeyRegistry::default()
    }

    /// Builds the registry from configuration entries; errors name the entry and key.
    pub fn from_entries(entries: &[AdapterKeys]) -> Result<Self, KeyError> {
        let mut reg = KeyRegistry::new();
        for (i, entry) in entries.iter().enumerate() {
            let at = |field: String, error: KeyError| KeyError::At {
                field,
                error: Box::new(error),
            };
            if entry.source.is_empty() {
                return Err(at(format!("adapters[{i}].source"), KeyError::EmptySource));
            }
            if reg.sources.contains_key(&entry.source) {
                return Err(at(
                    format!("adapters[{i}].source"),
                    KeyError::DuplicateSource(entry.source.clone()),
                ));
            }
            if entry.public_keys.is_empty() {
                return Err(at(
                    format!("adapters[{i}].public_keys"),
                    KeyError::NoKeys(entry.source.clone()),
                ));
            }
            for (j, text) in entry.public_keys.iter().enumerate() {
                let key = parse_public_key(text)
                    .map_err(|e| at(format!("adapters[{i}].public_keys[{j}]"), e))?;
                reg.register(entry.source.clone(), key)?;
            }
            if let Some(domains) = &entry.domains {
                if let Some(j) = domains.iter().position(|d| d.trim().is_empty()) {
                    return Err(at(
                        format!("adapters[{i}].domains[{j}]"),
                        KeyError::Format("a domain name must not be empty".into()),
                    ));
                }
                reg.bind_domains(&entry.source, domains.iter().cloned());
            }
        }
        Ok(reg)
    }

    /// Binds a source to the domains it may speak for (replacing an earlier binding).
    pub fn bind_domains(&mut self, source: &str, domains: impl IntoIterator<Item = String>) {
        self.domains
            .insert(source.to_string(), domains.into_iter().collect());
    }

    /// The domains a source is bound to; `None` when it may speak for any.
    pub fn domains_of(&self, source: &str) -> Option<&std::collections::BTreeSet<String>> {
        self.domains.get(source)
    }

    /// Whether `source` may send events and acks about `domain`.
    pub fn may_speak_for(&self, source: &str, domain: &str) -> bool {
        self.domains
            .get(source)
            .is_none_or(|allowed| allowed.contains(domain))
    }

    /// Every (source, key id) pair, sorted: what a reload compares.
    pub fn key_ids(&self) -> Vec<(String, KeyId)> {
        let mut out: Vec<(String, KeyId)> = self
            .sources
            .iter()
            .flat_map(|(s, keys)| keys.iter().map(move |k| (s.clone(), k.id.clone())))
            .collect();
        out.sort();
        out
    }

    /// Adds a key for a source (a key already registered for it is not added twice).
    pub fn register(
        &mut self,
        source: impl Into<String>,
        key: VerifyingKey,
    ) -> Result<KeyId, KeyError> {
        let source = source.into();
        if source.is_empty() {
            return Err(KeyError::EmptySource);
        }
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        let id = KeyId::of(&key);
        let keys = self.sources.entry(source).or_default();
        if !keys.iter().any(|k| k.key == key) {
            keys.push(RegisteredKey {
                id: id.clone(),
                key,
            });
        }
        Ok(id)
    }

    /// Removes a key from a source (the end of a rotation); true when it was there.
    pub fn remove(&mut self, source: &str, id: &KeyId) -> bool {
        let Some(keys) = self.sources.get_mut(source) else {
            return false;
        };
        let before = keys.len();
        keys.retain(|k| &k.id != id);
        let removed = keys.len() != before;
        if keys.is_empty() {
            self.sources.remove(source);
        }
        removed
    }

    /// The keys of a source, `None` when the source is unknown.
    pub fn keys(&self, source: &str) -> Option<&[RegisteredKey]> {
        self.sources.get(source).map(Vec::as_slice)
    }

    /// The sources that have a key, sorted.
    pub fn sources(&self) -> Vec<&str> {
        let mut s: Vec<&str> = self.sources.keys().map(String::as_str).collect();
        s.sort_unstable();
        s
    }

    /// The sources a key id is registered for (to explain a rejection).
    pub fn sources_of(&self, id: &str) -> Vec<&str> {
        let mut s: Vec<&str> = self
            .sources
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k.id.as_str() == id))
            .map(|(s, _)| s.as_str())
            .collect();
        s.sort_unstable();
        s
    }
}

/// Signs events as one `source` with one key: what an adapter embeds, and what metaloop
/// uses for its own `meta.directive.*` events.
#[derive(Clone)]
pub struct EventSigner {
    source: String,
    key: SigningKey,
    key_id: KeyId,
}

impl fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSigner")
            .field("source", &self.source)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl EventSigner {
    /// A signer for `source`.
    pub fn new(source: impl Into<String>, key: SigningKey) -> Self {
        let key_id = KeyId::of(&key.verifying_key());
        EventSigner {
            source: source.into(),
            key,
            key_id,
        }
    }

    /// The source it signs as.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The id of its key.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Its public key (to register with the consumer).
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs an event of this signer's source (no extension attributes signed).
    pub fn sign(&self, event: &mut CloudEvent) -> Result<(), SignError> {
        self.sign_with_extensions(event, &[])
    }

    /// Signs an event, also covering the named extension attributes (`signedextattrs`).
    pub fn sign_with_extensions(
        &self,
        event: &mut CloudEvent,
        extensions: &[&str],
    ) -> Result<(), SignError> {
        if event.source != self.source {
            return Err(SignError::WrongSource {
                event: event.source.clone(),
                signer: self.source.clone(),
            });
        }
        verifiability::sign(event, &self.key, self.key_id.as_str(), extensions)
    }

    /// Builds and signs a spine event: `type` from the payload, `time` in RFC 3339,
    /// `datacontenttype: application/json`, compact JSON `data`.
    pub fn spine_event(
        &self,
        id: impl Into<String>,
        time: Timestamp,
        data: &EventData,
    ) -> CloudEvent {
        let mut event = spine_event_unsigned(id, &self.source, time, data);
        self.sign(&mut event)
            .expect("an event of the signer's own source signs");
        event
    }
}

/// A spine event without a signature (what an adapter signs; tests use it unsigned).
pub fn spine_event_unsigned(
    id: impl Into<String>,
    source: &str,
    time: Timestamp,
    data: &EventData,
) -> CloudEvent {
    let payload = serde_json::to_value(data).expect("protocol payloads serialise");
    CloudEvent::new(id, source, data.type_name())
        .with_time(time.to_rfc3339())
        .with_json_data(&payload["data"])
        .expect("protocol payloads serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_the_ledger_convention() {
        // RFC 8032 TEST 1 public key.
        let key =
            parse_public_key("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let full = hex(&Sha256::digest(key.as_bytes()));
        assert_eq!(KeyId::of(&key).as_str(), &full[..16]);
    }

    #[test]
    fn registry_from_entries_names_the_bad_entry() {
        let good = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let entries = vec![
            AdapterKeys {
                source: "a".into(),
                public_keys: vec![good.into()],
                domains: None,
            },
            AdapterKeys {
                source: "b".into(),
                public_keys: vec![good.into(), "zz".into()],
                domains: None,
            },
        ];
        let err = KeyRegistry::from_entries(&entries).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("adapters[1].public_keys[1]: expected 64 hex"),
            "{err}"
        );
        let dup = vec![entries[0].clone(), entries[0].clone()];
        assert!(matches!(
            KeyRegistry::from_entries(&dup).unwrap_err(),
            KeyError::At { error, .. } if *error == KeyError::DuplicateSource("a".into())
        ));
    }

    #[test]
    fn domains_bind_a_source() {
        let good = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let reg = KeyRegistry::from_entries(&[
            AdapterKeys {
                source: "bound".into(),
                public_keys: vec![good.into()],
                domains: Some(vec!["payments".into(), "search".into()]),
            },
            AdapterKeys {
                source: "free".into(),
                public_keys: vec![good.into()],
                domains: None,
            },
        ])
        .unwrap();
        assert!(reg.may_speak_for("bound", "payments"));
        assert!(!reg.may_speak_for("bound", "checkout"));
        assert!(reg.may_speak_for("free", "checkout"));
        let empty = KeyRegistry::from_entries(&[AdapterKeys {
            source: "x".into(),
            public_keys: vec![good.into()],
            domains: Some(vec![" ".into()]),
        }])
        .unwrap_err();
        assert!(
            empty.to_string().starts_with("adapters[0].domains[0]"),
            "{empty}"
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(parse_public_key(&hex(&identity)), Err(KeyError::Weak));
    }

    #[test]
    fn rotation_keeps_several_keys_then_removes_one() {
        let old = generate_signing_key().verifying_key();
        let new = generate_signing_key().verifying_key();
        let mut reg = KeyRegistry::new();
        let old_id = reg.register("s", old).unwrap();
        reg.register("s", new).unwrap();
        reg.register("s", new).unwrap();
        assert_eq!(reg.keys("s").unwrap().len(), 2);
        assert!(reg.remove("s", &old_id));
        assert_eq!(reg.keys("s").unwrap().len(), 1);
        assert_eq!(reg.sources_of(KeyId::of(&new).as_str()), vec!["s"]);
    }
}
