"""A spine adapter for metaloop: signed CloudEvents over HTTP and NATS JetStream, verified
directives acknowledged once per directive id, and a small client of metaloop's HTTP API."""

from .events import (
    BATCH_CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    EventSigner,
    SignedEvent,
    batch_body,
    parse_event,
    verify_event,
)
from .signing import KeyError_ as KeyFileError
from .signing import PublicKey, SignatureError, SigningKey

__all__ = [
    "BATCH_CONTENT_TYPE",
    "EVENT_CONTENT_TYPE",
    "EventSigner",
    "KeyFileError",
    "PublicKey",
    "SignatureError",
    "SignedEvent",
    "SigningKey",
    "batch_body",
    "parse_event",
    "verify_event",
]
