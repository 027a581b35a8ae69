//! Directives out: metaloop's signed `meta.directive.<type>` events, and how a spine adapter
//! reads and checks them. The acknowledgements (`meta.directive.applied` / `.refused`) come
//! back as ordinary spine events through the [`crate::ingest::Ingestor`].

use crate::envelope::{self, CloudEvent, Data, SizeLimits};
use crate::ingest::{RejectReason, Rejection};
use crate::keys::{EventSigner, KeyRegistry};
use crate::verifiability::{self, VerifyError};
use metaloop_core::protocol::DirectiveMessage;
use metaloop_core::time::Timestamp;

/// Every directive type starts with this.
pub const DIRECTIVE_TYPE_PREFIX: &str = "meta.directive.";

/// Why a directive cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    #[error("directive type {0:?} is not one subject token (letters, digits, '_' or '-')")]
    BadType(String),
    #[error("directive type {0:?} would collide with the acknowledgement event of the same name")]
    ReservedType(String),
    #[error("directive id is empty")]
    EmptyId,
    #[error("{0}")]
    Sign(#[from] verifiability::SignError),
}

/// The signed CloudEvent of a directive: `type` `meta.directive.<lower-case type>`, `source`
/// the signer's (metaloop's), `id` the directive id, `data` the message.
pub fn directive_event(
    message: &DirectiveMessage,
    signer: &EventSigner,
    time: Timestamp,
) -> Result<CloudEvent, DirectiveError> {
    let token = message.directive_type.to_ascii_lowercase();
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(DirectiveError::BadType(message.directive_type.clone()));
    }
    if token == "applied" || token == "refused" {
        return Err(DirectiveError::ReservedType(message.directive_type.clone()));
    }
    if message.directive_id.is_empty() {
        return Err(DirectiveError::EmptyId);
    }
    let event_type = message.event_type();
    debug_assert_eq!(event_type, format!("{DIRECTIVE_TYPE_PREFIX}{token}"));
    let mut event = CloudEvent::new(&message.directive_id, signer.source(), event_type)
        .with_time(time.to_rfc3339())
        .with_json_data(message)
        .expect("a directive serialises");
    signer.sign(&mut event)?;
    Ok(event)
}

/// What a spine adapter does with a directive it received: size, parse, type, schema,
/// id, then the signature against metaloop's key(s) in `registry`.
pub fn read_directive(
    bytes: &[u8],
    registry: &KeyRegistry,
    limits: &SizeLimits,
) -> Result<DirectiveMessage, Rejection> {
    if bytes.len() > limits.max_event_bytes {
        return Err(Rejection::new(
            RejectReason::Oversized,
            format!(
                "directive is {} bytes; the limit is {}",
                bytes.len(),
                limits.max_event_bytes
            ),
        ));
    }
    let event =
        envelope::parse_event(bytes).map_err(|e| Rejection::new(RejectReason::Malformed, e.0))?;
    let wrong =
        |m: String| Rejection::new(RejectReason::WrongSchema, m).of_event(&event.source, &event.id);
    if !event.event_type.starts_with(DIRECTIVE_TYPE_PREFIX) {
        return Err(wrong(format!(
            "type {:?} is not a directive",
            event.event_type
        )));
    }
    let Some(Data::Json(json)) = &event.data else {
        return Err(wrong("data must be a JSON directive".into()));
    };
    let message: DirectiveMessage = serde_json::from_str(json.value())
        .map_err(|e| wrong(format!("data is not a directive: {e}")))?;
    if message.event_type() != event.event_type {
        return Err(wrong(format!(
            "type {:?} does not match directive_type {:?}",
            event.event_type, message.directive_type
        )));
    }
    if message.directive_id != event.id {
        return Err(wrong(format!(
            "id {:?} is not the directive_id {:?}",
            event.id, message.directive_id
        )));
    }
    if event
        .time
        .as_deref()
        .and_then(verifiability::normalize_time)
        .is_none()
    {
        return Err(wrong("time is missing or not RFC 3339".into()));
    }
    let Some(keys) = registry.keys(&event.source) else {
        return Err(Rejection::new(
            RejectReason::UnknownSource,
            format!("source {:?} has no registered key", event.source),
        )
        .of_event(&event.source, &event.id));
    };
    verifiability::verify(&event, keys).map_err(|e| {
        let reason = match e {
            VerifyError::Unsigned => RejectReason::Unsigned,
            VerifyError::UnknownKey { .. } => RejectReason::UnknownKey,
            _ => RejectReason::BadSignature,
        };
        Rejection::new(reason, e.to_string()).of_event(&event.source, &event.id)
    })?;
    Ok(message)
}
