//! Why an event was not accepted.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The reason an event (or a whole message) was rejected; each is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Larger than the configured limit (checked before parsing).
    Oversized,
    /// Not a well-formed CloudEvent (or batch): bad JSON, missing or mistyped attributes.
    Malformed,
    /// A content type that is neither a structured-mode event nor a batch.
    UnsupportedContentType,
    /// A well-formed CloudEvent that is not a spine event: unknown `type`, `data` that does
    /// not match the type's schema, missing or invalid `time`.
    WrongSchema,
    /// No `dssematerial`.
    Unsigned,
    /// The `source` has no registered key.
    UnknownSource,
    /// Signed by a key that is not registered for the event's `source`.
    UnknownKey,
    /// The signature does not verify, the event was modified after signing, or the
    /// verification material is corrupt.
    BadSignature,
    /// The event's `time` is further in the past than `max_event_age` allows.
    Stale,
    /// The event's `time` is further in the future than `max_clock_skew` allows.
    Future,
    /// The same (`source`, `id`) was accepted within the dedupe window.
    Duplicate,
    /// The event (or ack) is about a domain its adapter is not bound to
    /// (`[[adapters]] domains`).
    ForbiddenDomain,
    /// Every check passed but the supervisor refused the event: an acknowledgement of a
    /// directive it does not know, that is not awaiting one, or that names another domain.
    RefusedBySupervisor,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 13] = [
        RejectReason::Oversized,
        RejectReason::Malformed,
        RejectReason::UnsupportedContentType,
        RejectReason::WrongSchema,
        RejectReason::Unsigned,
        RejectReason::UnknownSource,
        RejectReason::UnknownKey,
        RejectReason::BadSignature,
        RejectReason::Stale,
        RejectReason::Future,
        RejectReason::Duplicate,
        RejectReason::ForbiddenDomain,
        RejectReason::RefusedBySupervisor,
    ];

    /// The snake_case name (metrics label, API field).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversized => "oversized",
            RejectReason::Malformed => "malformed",
            RejectReason::UnsupportedContentType => "unsupported_content_type",
            RejectReason::WrongSchema => "wrong_schema",
            RejectReason::Unsigned => "unsigned",
            RejectReason::UnknownSource => "unknown_source",
            RejectReason::UnknownKey => "unknown_key",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::Stale => "stale",
            RejectReason::Future => "future",
            RejectReason::Duplicate => "duplicate",
            RejectReason::ForbiddenDomain => "forbidden_domain",
            RejectReason::RefusedBySupervisor => "refused_by_supervisor",
        }
    }

    pub(crate) fn index(self) -> usize {
        RejectReason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("ALL lists every reason")
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event: the reason, a message for humans, and what is known of the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reason: RejectReason,
    /// Lower-case, names what was wrong and where.
    pub message: String,
    /// The event's `source`, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The event's `id`, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Rejection {
    /// A rejection with no event identity.
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
            source: None,
            id: None,
        }
    }

    /// Adds the event's identity.
    pub fn of_event(mut self, source: &str, id: &str) -> Self {
        self.source = Some(source.to_owned());
        self.id = Some(id.to_owned());
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        if let (Some(s), Some(i)) = (&self.source, &self.id) {
            write!(f, " (source {s}, id {i})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}
