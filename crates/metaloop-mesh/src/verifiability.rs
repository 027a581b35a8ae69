//! The CloudEvents verifiability extension (DSSE envelope in `dssematerial`), pinned to
//! cloudevents/spec `cloudevents/extensions/verifiability.md` at commit
//! `0dcb92309cf73ae6c529e5ce10dc4f3d2e2bf6d1` (the text under review in PR #1371 in
//! February 2026, with `signedextattrs`); `docs/PROTOCOL.md` gives the byte-level rules and the worked example.
//!
//! What is signed: `SHA256(SHA256(id) ‖ SHA256(source) ‖ SHA256(specversion) ‖ SHA256(type) ‖
//! SHA256(datacontenttype) ‖ SHA256(dataschema) ‖ SHA256(subject) ‖ SHA256(time in UTC,
//! RFC 3339, whole seconds, "Z") ‖ SHA256(data bytes) ‖ for each signed extension:
//! SHA256(name) ‖ SHA256(value))`, an absent attribute digesting as the empty string. That
//! 32-byte digest is the DSSE payload, of type `https://cloudevents.io/verifiability/dsse/v0.1`,
//! signed as `PAE(type, digest)` with Ed25519.

use crate::dsse::{self, Envelope, EnvelopeSignature, pae};
use crate::envelope::{CORE_ATTRIBUTES, CloudEvent, ExtensionValue, is_valid_extension_name};
use crate::keys::RegisteredKey;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The DSSE payload type of the pinned revision.
pub const PAYLOAD_TYPE: &str = "https://cloudevents.io/verifiability/dsse/v0.1";
/// The extension attribute carrying base64 of the DSSE envelope.
pub const DSSEMATERIAL: &str = "dssematerial";
/// The extension attribute listing the signed extension attributes, comma-separated.
pub const SIGNEDEXTATTRS: &str = "signedextattrs";

/// Why an event could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("event source {event:?} is not the signer's source {signer:?}")]
    WrongSource { event: String, signer: String },
    #[error("{0}")]
    Material(String),
}

/// Why an event did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `dssematerial`, or an empty one.
    #[error("the event is not signed (no dssematerial)")]
    Unsigned,
    /// `dssematerial` is not base64 of a DSSE envelope of the expected type and shape.
    #[error("dssematerial is corrupt: {0}")]
    Corrupt(String),
    /// Every signature names a key that is not registered for the event's source.
    #[error("signed by key {keyid} which is not registered for source {event_source}")]
    UnknownKey { keyid: String, event_source: String },
    /// No signature verifies with the source's keys.
    #[error("the signature does not verify with the keys of source {0}")]
    BadSignature(String),
    /// The signature is valid but the event differs from what was signed.
    #[error("the event was modified after signing (verification material differs)")]
    Modified,
    /// `signedextattrs` breaks the extension's rules.
    #[error("signedextattrs is invalid: {0}")]
    SignedExtAttrs(String),
    /// `time` is not RFC 3339.
    #[error("time {0:?} is not RFC 3339")]
    Time(String),
}

/// `time` as signed: converted to UTC, whole seconds (fractions dropped), `Z` suffix,
/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn normalize_time(text: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    )
}

/// Reads and checks `signedextattrs`: comma-separated names, no repetitions, no core
/// attributes, not `dssematerial` or `signedextattrs`, each present on the event.
pub fn signed_extension_names(event: &CloudEvent) -> Result<Vec<String>, VerifyError> {
    let text = match event.extension(SIGNEDEXTATTRS) {
        None => return Ok(Vec::new()),
        Some(ExtensionValue::String(s)) => s.as_str(),
        Some(_) => {
            return Err(VerifyError::SignedExtAttrs("must be a string".into()));
        }
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = text.split(',').collect();
    check_signed_names(&names, event).map_err(VerifyError::SignedExtAttrs)?;
    Ok(names.into_iter().map(str::to_owned).collect())
}

fn check_signed_names(names: &[&str], event: &CloudEvent) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if !is_valid_extension_name(name) {
            return Err(format!(
                "{name:?} is not an extension attribute name (lower-case letters and digits, no spaces)"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("{name:?} is listed twice"));
        }
        if CORE_ATTRIBUTES.contains(name) || *name == "data" {
            return Err(format!("{name:?} is a core attribute, not an extension"));
        }
        if *name == DSSEMATERIAL || *name == SIGNEDEXTATTRS {
            return Err(format!("{name:?} cannot be signed"));
        }
        if event.extension(name).is_none() {
            return Err(format!("{name:?} is not an attribute of the event"));
        }
    }
    Ok(())
}

/// The 32-byte verification material of an event (the DSSE payload), covering the listed
/// extension attributes in that order.
pub fn verification_material(
    event: &CloudEvent,
    signed_extensions: &[String],
) -> Result<[u8; 32], VerifyError> {
    let time = match &event.time {
        Some(t) if !t.is_empty() => {
            Some(normalize_time(t).ok_or_else(|| VerifyError::Time(t.clone()))?)
        }
        _ => None,
    };
    let mut list = Sha256::new();
    let mut add = |bytes: &[u8]| list.update(Sha256::digest(bytes));
    add(event.id.as_bytes());
    add(event.source.as_bytes());
    add(crate::envelope::SPEC_VERSION.as_bytes());
    add(event.event_type.as_bytes());
    for optional in [
        &event.datacontenttype,
        &event.dataschema,
        &event.subject,
        &time,
    ] {
        add(optional.as_deref().unwrap_or("").as_bytes());
    }
    add(event.data.as_ref().map_or(&[][..], |d| d.signed_bytes()));
    for name in signed_extensions {
        let value = event.extension(name).ok_or_else(|| {
            VerifyError::SignedExtAttrs(format!("{name:?} is not an attribute of the event"))
        })?;
        add(name.as_bytes());
        add(value.canonical_string().as_bytes());
    }
    Ok(list.finalize().into())
}

/// Signs an event: sets `signedextattrs` (removed when `extensions` is empty) and
/// `dssematerial` (base64 of a one-signature DSSE envelope naming `key_id`).
pub fn sign(
    event: &mut CloudEvent,
    key: &SigningKey,
    key_id: &str,
    extensions: &[&str],
) -> Result<(), SignError> {
    check_signed_names(extensions, event).map_err(SignError::Material)?;
    if extensions.is_empty() {
        event.extensions.remove(SIGNEDEXTATTRS);
    } else {
        event
            .extensions
            .insert(SIGNEDEXTATTRS.into(), extensions.join(",").into());
    }
    let names: Vec<String> = extensions.iter().map(|s| (*s).to_owned()).collect();
    let digest =
        verification_material(event, &names).map_err(|e| SignError::Material(e.to_string()))?;
    let signature = key.sign(&pae(PAYLOAD_TYPE.as_bytes(), &digest));
    let envelope = Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: dsse::encode_base64(&digest),
        signatures: vec![EnvelopeSignature {
            keyid: Some(key_id.to_owned()),
            sig: dsse::encode_base64(&signature.to_bytes()),
        }],
    };
    let json = serde_json::to_vec(&envelope).expect("an envelope serialises");
    event
        .extensions
        .insert(DSSEMATERIAL.into(), dsse::encode_base64(&json).into());
    Ok(())
}

/// A signature check that is ready to run: everything but the Ed25519 equation has been
/// checked, so several can be verified together (`ed25519_dalek::verify_batch`).
#[derive(Debug, Clone)]
pub struct PendingSignature {
    /// `PAE(payloadType, payload)`.
    pub message: Vec<u8>,
    pub signature: Signature,
    pub key: VerifyingKey,
    /// The signed extension attributes (to keep on the verified event).
    pub signed_extensions: Vec<String>,
}

/// The result of reading an event's verification material.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// One candidate signature and key: verify [`PendingSignature`] to finish.
    Single(Box<PendingSignature>),
    /// Several signatures or candidate keys: use [`verify`].
    Multiple,
}

struct Material {
    envelope: Envelope,
    payload: Vec<u8>,
}

fn read_material(event: &CloudEvent) -> Result<Material, VerifyError> {
    let text = match event.extension(DSSEMATERIAL) {
        None => return Err(VerifyError::Unsigned),
        Some(ExtensionValue::String(s)) if s.is_empty() => return Err(VerifyError::Unsigned),
        Some(ExtensionValue::String(s)) => s,
        Some(_) => return Err(VerifyError::Corrupt("not a string".into())),
    };
    let json =
        dsse::decode_base64(text).map_err(|e| VerifyError::Corrupt(format!("not base64: {e}")))?;
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|e| VerifyError::Corrupt(format!("not a DSSE JSON envelope: {e}")))?;
    let payload = envelope
        .payload_bytes()
        .map_err(|e| VerifyError::Corrupt(e.to_string()))?;
    Ok(Material { envelope, payload })
}

/// Keys whose id a signature names, or all keys when it names none of them.
fn candidates<'k>(
    keyid: Option<&str>,
    keys: &'k [RegisteredKey],
) -> (Vec<&'k RegisteredKey>, bool) {
    match keyid {
        Some(id) if keys.iter().any(|k| k.id.as_str() == id) => {
            (keys.iter().filter(|k| k.id.as_str() == id).collect(), true)
        }
        Some(_) => (keys.iter().collect(), false),
        None => (keys.iter().collect(), true),
    }
}

fn check_payload(material: &Material, event: &CloudEvent) -> Result<Vec<String>, VerifyError> {
    if material.envelope.payload_type != PAYLOAD_TYPE {
        return Err(VerifyError::Corrupt(format!(
            "payloadType {:?} is not {PAYLOAD_TYPE:?}",
            material.envelope.payload_type
        )));
    }
    if material.payload.len() != 32 {
        return Err(VerifyError::Corrupt(format!(
            "payload is {} bytes, not a 32-byte digest",
            material.payload.len()
        )));
    }
    let names = signed_extension_names(event)?;
    if verification_material(event, &names)? != material.payload[..] {
        return Err(VerifyError::Modified);
    }
    Ok(names)
}

/// Verifies an event against the keys registered for its source, following the pinned
/// revision's verification protocol. Returns the signed extension attribute names.
pub fn verify(event: &CloudEvent, keys: &[RegisteredKey]) -> Result<Vec<String>, VerifyError> {
    let material = read_material(event)?;
    let message = pae(material.envelope.payload_type.as_bytes(), &material.payload);
    let mut verified = false;
    let mut any_known_keyid = material.envelope.signatures.is_empty();
    for s in &material.envelope.signatures {
        let (keys, known) = candidates(s.keyid.as_deref(), keys);
        any_known_keyid |= known;
        let Some(sig) = dsse::decode_base64(&s.sig)
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
        else {
            continue;
        };
        if keys
            .iter()
            .any(|k| k.key.verify_strict(&message, &sig).is_ok())
        {
            verified = true;
            break;
        }
    }
    if !verified {
        return Err(signature_failure(event, &material, any_known_keyid));
    }
    check_payload(&material, event)
}

fn signature_failure(
    event: &CloudEvent,
    material: &Material,
    any_known_keyid: bool,
) -> VerifyError {
    if any_known_keyid {
        return VerifyError::BadSignature(event.source.clone());
    }
    let keyid = material
        .envelope
        .signatures
        .iter()
        .filter_map(|s| s.keyid.clone())
        .collect::<Vec<_>>()
        .join(",");
    VerifyError::UnknownKey {
        keyid,
        event_source: event.source.clone(),
    }
}

/// Reads and checks everything except the signature equation itself. The common case (one
/// signature, one candidate key) comes back as [`Prepared::Single`]; the event is verified
/// once its [`PendingSignature`] verifies.
pub fn prepare(event: &CloudEvent, keys: &[RegisteredKey]) -> Result<Prepared, VerifyError> {
    let material = read_material(event)?;
    let [s] = material.envelope.signatures.as_slice() else {
        return Ok(Prepared::Multiple);
    };
    let (candidates, known) = candidates(s.keyid.as_deref(), keys);
    if !known {
        // Let the full protocol decide between an unknown key and a bad signature.
        return Ok(Prepared::Multiple);
    }
    let [key] = candidates.as_slice() else {
        return Ok(Prepared::Multiple);
    };
    let Some(signature) = dsse::decode_base64(&s.sig)
        .ok()
        .and_then(|raw| Signature::from_slice(&raw).ok())
    else {
        return Err(VerifyError::BadSignature(event.source.clone()));
    };
    let signed_extensions = match check_payload(&material, event) {
        Ok(names) => names,
        // The full protocol checks the signature first and so reports the right reason.
        Err(_) => return Ok(Prepared::Multiple),
    };
    Ok(Prepared::Single(Box::new(PendingSignature {
        message: pae(material.envelope.payload_type.as_bytes(), &material.payload),
        signature,
        key: key.key,
        signed_extensions,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_normalised_to_utc_whole_seconds() {
        assert_eq!(
            normalize_time("2020-06-18T19:24:53+02:00").as_deref(),
            Some("2020-06-18T17:24:53Z")
        );
        assert_eq!(
            normalize_time("2020-06-18T17:24:53.999Z").as_deref(),
            Some("2020-06-18T17:24:53Z")
        );
        assert_eq!(
            normalize_time("2020-06-18t17:24:53-00:30").as_deref(),
            Some("2020-06-18T17:54:53Z")
        );
        assert_eq!(normalize_time("2020-06-18 17:24"), None);
    }

    #[test]
    fn signedextattrs_rules() {
        let mut e = CloudEvent::new("1", "s", "t");
        e.extensions.insert("exta".into(), "1".into());
        e.extensions.insert("extb".into(), "2".into());
        let check = |v: &str, e: &CloudEvent| {
            let mut e = e.clone();
            e.extensions.insert(SIGNEDEXTATTRS.into(), v.into());
            signed_extension_names(&e)
        };
        assert_eq!(check("exta,extb", &e).unwrap(), vec!["exta", "extb"]);
        assert_eq!(check("", &e).unwrap(), Vec::<String>::new());
        for bad in [
            "exta, extb",
            "exta,exta",
            "id",
            "dssematerial",
            "signedextattrs",
            "extc",
            "exta,",
        ] {
            assert!(check(bad, &e).is_err(), "{bad:?} must be refused");
        }
    }
}
