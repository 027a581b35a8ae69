"""A spine adapter for metaloop: signed CloudEvents over HTTP and NATS JetStream, verified
directives applied once per directive id and acknowledged with the previous value, and a
small client of metaloop's HTTP API."""

from .client import ApiClient, ApiError, EventResult, MetaPolicy
from .directives import (
    Applied,
    Directive,
    DirectiveError,
    DirectiveHandler,
    DirectiveJournal,
    KnobStore,
    Refused,
    read_directive,
)
from .events import (
    BATCH_CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    EventSigner,
    SignedEvent,
    batch_body,
    parse_event,
    verify_event,
)
from .http import HttpAdapter, wait_until_durable
from .jetstream import NatsAdapter
from .signing import KeyFileError
from .signing import PublicKey, SignatureError, SigningKey

__all__ = [
    "ApiClient",
    "ApiError",
    "Applied",
    "BATCH_CONTENT_TYPE",
    "Directive",
    "DirectiveError",
    "DirectiveHandler",
    "DirectiveJournal",
    "EVENT_CONTENT_TYPE",
    "EventResult",
    "EventSigner",
    "HttpAdapter",
    "KeyFileError",
    "KnobStore",
    "MetaPolicy",
    "NatsAdapter",
    "PublicKey",
    "Refused",
    "SignatureError",
    "SignedEvent",
    "SigningKey",
    "batch_body",
    "parse_event",
    "read_directive",
    "verify_event",
    "wait_until_durable",
]
