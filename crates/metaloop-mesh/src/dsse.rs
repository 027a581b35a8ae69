//! DSSE v1.0.2 (Dead Simple Signing Envelope): the pre-authentication encoding, the JSON
//! envelope, and its verification protocol with Ed25519 keys.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where `LEN` is
/// the ASCII decimal byte length without leading zeros.
pub fn pae(payload_type: &[u8], body: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let body_len = body.len().to_string();
    let mut out =
        Vec::with_capacity(10 + type_len.len() + payload_type.len() + body_len.len() + body.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type);
    out.push(b' ');
    out.extend_from_slice(body_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// The DSSE JSON envelope. Written in this member order: `payloadType`, `payload`,
/// `signatures` (any order is accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload type, e.g. `https://cloudevents.io/verifiability/dsse/v0.1`.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the serialized body.
    pub payload: String,
    /// One or more signatures over `PAE(payloadType, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Unauthenticated hint naming the key; only narrows which keys are tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// Base64 of the signature.
    pub sig: String,
}

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
const URL_SAFE_ANY_PADDING: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);

/// Decodes base64 in either the standard or the URL-safe alphabet, padded or not (DSSE:
/// "verifiers MUST accept either").
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD_ANY_PADDING
        .decode(text)
        .or_else(|_| URL_SAFE_ANY_PADDING.decode(text))
}

/// Standard, padded base64 (what metaloop writes).
pub fn encode_base64(bytes: &[u8]) -> String {
    general_purpose::STANDARD.encode(bytes)
}

/// Why an envelope did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    /// A field is not valid base64 or a signature has the wrong length.
    #[error("undecodable envelope: {0}")]
    Decode(String),
    /// Fewer than the required number of distinct trusted keys signed.
    #[error("{verified} of the required {threshold} trusted keys signed the envelope")]
    Threshold { verified: usize, threshold: usize },
    /// The signature is valid but the payload type is not one the verifier accepts.
    #[error("payload type {0:?} is not supported")]
    UnsupportedPayloadType(String),
}

/// A key the verifier trusts, with the id that signatures may name.
#[derive(Debug, Clone, Copy)]
pub struct TrustedKey<'a> {
    pub id: &'a str,
    pub key: &'a VerifyingKey,
}

impl Envelope {
    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        decode_base64(&self.payload)
            .map_err(|e| DsseError::Decode(format!("payload is not base64: {e}")))
    }

    /// The DSSE verification protocol: every signature is checked against the trusted keys
    /// its `keyid` names (all trusted keys when it names none or an unknown one); the
    /// envelope verifies when at least `threshold` distinct keys signed, then its payload
    /// type must be one of `supported`. Returns the payload and the ids of the keys that
    /// signed.
    pub fn verify(
        &self,
        trusted: &[TrustedKey<'_>],
        threshold: usize,
        supported: &[&str],
    ) -> Result<(Vec<u8>, Vec<String>), DsseError> {
        let payload = self.payload_bytes()?;
        let message = pae(self.payload_type.as_bytes(), &payload);
        let mut accepted: Vec<&str> = Vec::new();
        for s in &self.signatures {
            let Ok(raw) = decode_base64(&s.sig) else {
                continue;
            };
            let Ok(sig) = Signature::from_slice(&raw) else {
                continue;
            };
            let named: Vec<&TrustedKey> = match &s.keyid {
                Some(id) if trusted.iter().any(|k| k.id == id) => {
                    trusted.iter().filter(|k| k.id == id).collect()
                }
                _ => trusted.iter().collect(),
            };
            if let Some(k) = named
                .into_iter()
                .find(|k| k.key.verify_strict(&message, &sig).is_ok())
                && !accepted.contains(&k.id)
            {
                accepted.push(k.id);
            }
            if accepted.len() >= threshold.max(1) {
                break;
            }
        }
        if accepted.len() < threshold.max(1) {
            return Err(DsseError::Threshold {
                verified: accepted.len(),
                threshold: threshold.max(1),
            });
        }
        if !supported.contains(&self.payload_type.as_str()) {
            return Err(DsseError::UnsupportedPayloadType(self.payload_type.clone()));
        }
        Ok((payload, accepted.into_iter().map(str::to_owned).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_protocol_example() {
        // secure-systems-lab/dsse protocol.md, "Test Vectors".
        assert_eq!(
            pae(b"http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae(b"", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn base64_accepts_both_alphabets_and_optional_padding() {
        assert_eq!(
            decode_base64("-_-_Pj8=").unwrap(),
            [0xfb, 0xff, 0xbf, 0x3e, 0x3f]
        );
        assert_eq!(
            decode_base64("+/+/Pj8").unwrap(),
            [0xfb, 0xff, 0xbf, 0x3e, 0x3f]
        );
        assert!(decode_base64("not base64!").is_err());
    }
}
