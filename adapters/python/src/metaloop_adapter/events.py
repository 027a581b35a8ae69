"""Spine events as signed CloudEvents (docs/PROTOCOL.md §1, §2, §5).

Events are built as :class:`cloudevents.core.v1.event.CloudEvent` objects (the official SDK
validates the context attributes) and serialised in structured JSON mode so that the
``"data":`` member is followed by exactly the compact bytes ``D`` that were signed.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from .signing import (
    PublicKey,
    SignatureError,
    SigningKey,
    envelope,
    format_time,
    verification_material,
    verify_envelope,
)

EVENT_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

#: The event types a spine sends (PROTOCOL §2).
SPINE_EVENT_TYPES = (
    "recovery.succeeded",
    "recovery.failed",
    "decision.made",
    "health.changed",
    "trust.exception",
    "compliance.scored",
    "kpi.reported",
    "meta.directive.applied",
    "meta.directive.refused",
)

_WS = re.compile(r"[ \t\n\r]*")


def compact_json(value: Any) -> bytes:
    """``value`` as compact JSON (no NaN or infinities): the bytes ``D`` that are hashed."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


@dataclass(frozen=True)
class SignedEvent:
    """One signed event, ready to send: ``body`` is the exact JSON text."""

    id: str
    source: str
    type: str
    body: bytes

    @property
    def msg_id(self) -> str:
        """The ``Nats-Msg-Id`` header value: ``<source>/<id>``."""
        return f"{self.source}/{self.id}"

    def cloudevent(self) -> CloudEvent:
        """The event parsed back with the CloudEvents SDK."""
        return JSONFormat().read(None, self.body)


def batch_body(events: Sequence[SignedEvent]) -> bytes:
    """A batch document (JSON array) of signed events, each element byte for byte as signed."""
    return b"[" + b",".join(e.body for e in events) + b"]"


class EventSigner:
    """Signs events as one ``source`` with the adapter's Ed25519 key."""

    def __init__(self, source: str, key: SigningKey):
        if not source:
            raise ValueError("source must not be empty")
        self.source = source
        self.key = key

    def sign(self, event: CloudEvent, signed_extensions: Sequence[str] = ()) -> SignedEvent:
        """Signs a CloudEvent whose ``data`` is a JSON object and serialises it (§5.6).

        The ``time`` attribute is written in UTC with whole seconds, the form that is signed.
        """
        attrs = dict(event.get_attributes())
        data = event.get_data()
        if not isinstance(data, Mapping):
            raise ValueError("data must be a JSON object (data_base64 is refused by metaloop)")
        if attrs.get("source") != self.source:
            raise ValueError(f"event source {attrs.get('source')!r} is not the signer's {self.source!r}")
        when = attrs.get("time")
        if not isinstance(when, datetime):
            raise ValueError("time is required")
        attrs["time"] = format_time(when)
        attrs.setdefault("datacontenttype", "application/json")
        attrs.pop("dssematerial", None)
        if signed_extensions:
            attrs["signedextattrs"] = ",".join(signed_extensions)
        else:
            attrs.pop("signedextattrs", None)
        d = compact_json(dict(data))
        m = verification_material(attrs, d, signed_extensions)
        attrs["dssematerial"] = envelope(m, self.key)
        head = json.dumps(attrs, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        body = head[:-1] + b',"data":' + d + b"}"
        return SignedEvent(id=attrs["id"], source=self.source, type=attrs["type"], body=body)

    def event(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        id: str | None = None,
        time: datetime | None = None,
        subject: str | None = None,
        extensions: Mapping[str, str | int | bool] | None = None,
        signed_extensions: Sequence[str] = (),
    ) -> SignedEvent:
        """Builds and signs one event of ``type`` with ``data``."""
        attrs: dict[str, Any] = {
            "specversion": "1.0",
            "id": id or str(uuid.uuid4()),
            "source": self.source,
            "type": type,
            "datacontenttype": "application/json",
            "time": time or datetime.now(timezone.utc),
        }
        if subject is not None:
            attrs["subject"] = subject
        for k, v in (extensions or {}).items():
            attrs[k] = v
        return self.sign(CloudEvent(attrs, dict(data)), signed_extensions)

    # The spine's events (PROTOCOL §2), one helper per type.

    def recovery(
        self,
        *,
        domain: str,
        incident_id: str,
        playbook: str,
        duration_s: float,
        succeeded: bool,
        autonomous: bool = True,
        human_override: bool = False,
        id: str | None = None,
        time: datetime | None = None,
    ) -> SignedEvent:
        return self.event(
            "recovery.succeeded" if succeeded else "recovery.failed",
            {
                "domain": domain,
                "incident_id": incident_id,
                "playbook": playbook,
                "duration_s": duration_s,
                "autonomous": autonomous,
                "human_override": human_override,
            },
            id=id,
            time=time,
        )

    def decision(
        self,
        *,
        domain: str,
        decision_id: str,
        confidence: float,
        autonomous: bool,
        approved_by_human: bool = False,
        overridden: bool = False,
        id: str | None = None,
        time: datetime | None = None,
    ) -> SignedEvent:
        return self.event(
            "decision.made",
            {
                "domain": domain,
                "decision_id": decision_id,
                "confidence": confidence,
                "autonomous": autonomous,
                "approved_by_human": approved_by_human,
                "overridden": overridden,
            },
            id=id,
            time=time,
        )

    def health(
        self,
        *,
        domain: str,
        node: str,
        state: str,
        depends_on: Iterable[str] = (),
        id: str | None = None,
        time: datetime | None = None,
    ) -> SignedEvent:
        if state not in ("healthy", "degraded", "down"):
            raise ValueError(f"state {state!r} is not healthy, degraded or down")
        return self.event(
            "health.changed",
            {"domain": domain, "node": node, "state": state, "depends_on": list(depends_on)},
            id=id,
            time=time,
        )

    def trust_exception(
        self, *, domain: str, policy: str, severity: str, id: str | None = None, time: datetime | None = None
    ) -> SignedEvent:
        return self.event(
            "trust.exception", {"domain": domain, "policy": policy, "severity": severity}, id=id, time=time
        )

    def compliance(
        self, *, domain: str, score: float, id: str | None = None, time: datetime | None = None
    ) -> SignedEvent:
        return self.event("compliance.scored", {"domain": domain, "score": score}, id=id, time=time)

    def kpi(
        self, *, domain: str, name: str, value: float, id: str | None = None, time: datetime | None = None
    ) -> SignedEvent:
        return self.event("kpi.reported", {"domain": domain, "name": name, "value": value}, id=id, time=time)

    def directive_applied(
        self,
        *,
        directive_id: str,
        domain: str,
        knob: str,
        previous: Any,
        current: Any,
        time: datetime | None = None,
    ) -> SignedEvent:
        """The ack of an applied directive. Its id is derived from the directive id, so a
        re-sent ack is the same event (metaloop drops the copy as a duplicate)."""
        return self.event(
            "meta.directive.applied",
            {
                "directive_id": directive_id,
                "domain": domain,
                "knob": knob,
                "previous": previous,
                "current": current,
            },
            id=f"ack-{directive_id}",
            time=time,
        )

    def directive_refused(
        self, *, directive_id: str, domain: str, reason: str, time: datetime | None = None
    ) -> SignedEvent:
        """The ack of a refused directive (id derived from the directive id, like applied)."""
        return self.event(
            "meta.directive.refused",
            {"directive_id": directive_id, "domain": domain, "reason": reason},
            id=f"ack-{directive_id}",
            time=time,
        )


class MalformedEvent(ValueError):
    """Bytes that are not one well-formed CloudEvent JSON object."""


@dataclass
class RawEvent:
    """An event as received: its members as JSON values and the exact bytes of ``data``."""

    members: dict[str, Any]
    data_bytes: bytes
    body: bytes = field(repr=False)

    def attributes(self) -> dict[str, Any]:
        return {k: v for k, v in self.members.items() if k != "data"}


def parse_event(body: bytes) -> RawEvent:
    """Parses one event's JSON text, keeping the raw bytes of its ``data`` value (from after
    the ``:`` to the end of the value, PROTOCOL §5.2 step 3). Duplicate member names and
    anything that is not a JSON object are refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedEvent(f"not UTF-8: {e}") from None
    decoder = json.JSONDecoder()
    members: dict[str, Any] = {}
    data_span: tuple[int, int] | None = None
    i = _WS.match(text, 0).end()
    if i >= len(text) or text[i] != "{":
        raise MalformedEvent("an event is a JSON object")
    i = _WS.match(text, i + 1).end()
    if i < len(text) and text[i] == "}":
        i += 1
    else:
        while True:
            if i >= len(text) or text[i] != '"':
                raise MalformedEvent(f"expected a member name at character {i}")
            try:
                name, i = json.decoder.scanstring(text, i + 1)
            except json.JSONDecodeError as e:
                raise MalformedEvent(str(e)) from None
            i = _WS.match(text, i).end()
            if i >= len(text) or text[i] != ":":
                raise MalformedEvent(f"expected ':' at character {i}")
            start = i + 1
            j = _WS.match(text, start).end()
            try:
                value, end = decoder.raw_decode(text, j)
            except json.JSONDecodeError as e:
                raise MalformedEvent(str(e)) from None
            if name in members:
                raise MalformedEvent(f"member {name!r} appears twice")
            members[name] = value
            if name == "data":
                data_span = (start, end)
            i = _WS.match(text, end).end()
            if i < len(text) and text[i] == ",":
                i = _WS.match(text, i + 1).end()
                continue
            if i < len(text) and text[i] == "}":
                i += 1
                break
            raise MalformedEvent(f"expected ',' or '}}' at character {i}")
    if _WS.match(text, i).end() != len(text):
        raise MalformedEvent("trailing characters after the event")
    data_bytes = text[data_span[0] : data_span[1]].encode("utf-8") if data_span else b""
    return RawEvent(members=members, data_bytes=data_bytes, body=body)


def verify_event(raw: RawEvent, keys: Iterable[PublicKey]) -> PublicKey:
    """Verifies a parsed event's signature with ``keys``; returns the key that signed it."""
    m = raw.members
    for name in ("specversion", "id", "source", "type", "time"):
        if not isinstance(m.get(name), str) or not m.get(name):
            raise SignatureError(f"attribute {name} is missing or not a string")
    if "data_base64" in m:
        raise SignatureError("data_base64 is not accepted")
    signed_ext: list[str] = []
    if "signedextattrs" in m:
        if not isinstance(m["signedextattrs"], str):
            raise SignatureError("signedextattrs is not a string")
        signed_ext = m["signedextattrs"].split(",")
    try:
        material = verification_material(m, raw.data_bytes, signed_ext)
    except ValueError as e:
        raise SignatureError(str(e)) from None
    return verify_envelope(m.get("dssematerial"), material, keys)
