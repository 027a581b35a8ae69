//! The generic webhook: a JSON body, signed with HMAC-SHA256.
//!
//! Body (`Content-Type: application/json`):
//!
//! ```json
//! {"id": "0197…", "source": "metaloop", "kind": "verdict", "time": "2026-01-01T00:05:00Z",
//!  "text": "…", "subject": "0197…" | null, "fields": {"name": "value"}}
//! ```
//!
//! `id` identifies the delivery and stays the same across retries, so a receiver can drop
//! duplicates; `time` is when it happened (the supervisor's clock), `kind` one of
//! [`super::MessageKind`]'s snake_case names.
//!
//! Headers:
//!
//! - `X-Metaloop-Delivery: <id>`
//! - `X-Metaloop-Timestamp: <t>` — Unix seconds (wall clock) when this attempt was sent.
//! - `X-Metaloop-Signature: sha256=<hex>` — only when the channel has a secret (`secret_env`):
//!   the lower-case hex HMAC-SHA256, keyed with the secret's bytes, of `"<t>." + body`
//!   (the timestamp header's decimal text, a full stop, then the exact body bytes).
//!
//! A receiver recomputes the HMAC over the raw body it got, compares it in constant time, and
//! refuses a timestamp more than 5 minutes from its own clock. Because the timestamp is signed,
//! a captured request cannot be replayed later with a fresh timestamp; within the window, the
//! delivery id lets the receiver refuse a second copy.

use super::message::Message;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::BTreeMap;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-metaloop-signature";
/// Header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "x-metaloop-timestamp";
/// Header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "x-metaloop-delivery";

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    source: &'static str,
    kind: &'static str,
    time: String,
    text: &'a str,
    subject: Option<&'a str>,
    fields: &'a BTreeMap<String, String>,
}

/// The JSON body for `m`, under delivery id `id`.
pub fn body(id: &str, m: &Message) -> Vec<u8> {
    let b = Body {
        id,
        source: "metaloop",
        kind: m.kind.as_str(),
        time: m.time.to_rfc3339(),
        text: &m.text,
        subject: m.subject.as_deref(),
        fields: &m.fields,
    };
    // a struct of strings always serializes
    serde_json::to_vec(&b).unwrap_or_default()
}

/// The `X-Metaloop-Signature` value: `sha256=` and the hex HMAC-SHA256 of `"<timestamp>." + body`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::MessageKind;
    use metaloop_core::time::Timestamp;

    #[test]
    fn signature_matches_an_independent_implementation() {
        // python3: hmac.new(b"Jefe", b'1767225600.{"a":1}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"Jefe", 1_767_225_600, br#"{"a":1}"#),
            "sha256=bb7f7f576d169b57777ab3f8cf1a3b51416fd9eba32fdcb6f59ea046006c32b8"
        );
    }

    #[test]
    fn body_has_every_field() {
        let m = Message::new(MessageKind::Verdict, Timestamp::from_secs(300), "verified")
            .with_subject("d1")
            .with_field("outcome", "verified");
        let v: serde_json::Value = serde_json::from_slice(&body("x", &m)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "x", "source": "metaloop", "kind": "verdict",
                "time": "1970-01-01T00:05:00Z", "text": "verified", "subject": "d1",
                "fields": {"outcome": "verified"}})
        );
    }
}
