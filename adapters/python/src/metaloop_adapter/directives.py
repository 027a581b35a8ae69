"""Directives from metaloop (docs/PROTOCOL.md §8): read and verify them, apply each directive
id at most once, and answer with the acknowledgement event.

A directive's id is an idempotency key. The outcome of each directive (applied with the
knob's previous and new value, or refused with a reason) is written to a journal together
with the signed acknowledgement; a directive delivered again is answered with the very same
acknowledgement bytes and never applied a second time.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from .events import EventSigner, MalformedEvent, SignedEvent, parse_event, verify_event
from .signing import PublicKey, SignatureError, normalize_time

DIRECTIVE_TYPE_PREFIX = "meta.directive."
ACK_TYPES = ("meta.directive.applied", "meta.directive.refused")
SUPERVISOR_SOURCE = "urn:metaloop:supervisor"

_DIRECTIVE_FIELDS = {
    "directive_id",
    "directive_type",
    "target_domain",
    "target_subsystem",
    "knob",
    "action",
    "parameters",
    "target_kpi",
    "justification",
}
_OPTIONAL_FIELDS = {"rollback_of"}


class DirectiveError(Exception):
    """A message that is not a valid, correctly signed directive; never applied."""


@dataclass(frozen=True)
class Directive:
    """A verified directive."""

    id: str
    type: str
    target_domain: str
    target_subsystem: str
    knob: str
    action: str
    parameters: Mapping[str, Any]
    target_kpi: str
    justification: str
    rollback_of: str | None
    time: str
    event: CloudEvent

    @property
    def is_review_request(self) -> bool:
        """``REQUEST_REVIEW`` asks humans to look; there is no knob to change and no ack."""
        return self.type == "REQUEST_REVIEW"

    def new_value(self, current: Any) -> Any:
        """The knob's value after this directive, from its value before: ``adjust`` adds
        ``parameters.adjustment`` to a number, ``set`` takes ``parameters.value``."""
        if self.action == "adjust":
            adjustment = self.parameters.get("adjustment")
            if isinstance(current, bool) or not isinstance(current, (int, float)):
                raise ValueError(f"knob {self.knob} holds {current!r}, not a number to adjust")
            if isinstance(adjustment, bool) or not isinstance(adjustment, (int, float)):
                raise ValueError("parameters.adjustment is not a number")
            return round(current + adjustment, 12)
        if self.action == "set":
            if "value" not in self.parameters:
                raise ValueError("parameters.value is missing")
            return self.parameters["value"]
        raise ValueError(f"unknown action {self.action!r}")


def read_directive(
    body: bytes,
    supervisor_keys: Iterable[PublicKey],
    *,
    source: str = SUPERVISOR_SOURCE,
) -> Directive:
    """Parses a directive event and checks it as PROTOCOL §8 asks: a directive type, the
    supervisor's source, ``type`` matching ``directive_type``, ``id`` matching
    ``directive_id``, a known data shape, and a signature by one of ``supervisor_keys``."""
    try:
        raw = parse_event(body)
    except MalformedEvent as e:
        raise DirectiveError(f"malformed: {e}") from None
    m = raw.members
    etype = m.get("type")
    if not isinstance(etype, str) or not etype.startswith(DIRECTIVE_TYPE_PREFIX) or etype in ACK_TYPES:
        raise DirectiveError(f"type {etype!r} is not a directive")
    if m.get("source") != source:
        raise DirectiveError(f"source {m.get('source')!r} is not the supervisor's {source!r}")
    if m.get("specversion") != "1.0":
        raise DirectiveError("specversion is not 1.0")
    data = m.get("data")
    if not isinstance(data, dict):
        raise DirectiveError("data is not a JSON object")
    missing = _DIRECTIVE_FIELDS - data.keys()
    unknown = data.keys() - _DIRECTIVE_FIELDS - _OPTIONAL_FIELDS
    if missing or unknown:
        raise DirectiveError(f"data: missing {sorted(missing)}, unknown {sorted(unknown)}")
    if etype != DIRECTIVE_TYPE_PREFIX + str(data["directive_type"]).lower():
        raise DirectiveError(f"type {etype!r} does not match directive_type {data['directive_type']!r}")
    if m.get("id") != data["directive_id"]:
        raise DirectiveError(f"id {m.get('id')!r} is not the directive_id {data['directive_id']!r}")
    if not isinstance(data["parameters"], dict):
        raise DirectiveError("parameters is not an object")
    try:
        normalize_time(m.get("time") or "")
    except ValueError as e:
        raise DirectiveError(str(e)) from None
    try:
        verify_event(raw, supervisor_keys)
    except SignatureError as e:
        raise DirectiveError(f"signature: {e}") from None
    return Directive(
        id=data["directive_id"],
        type=data["directive_type"],
        target_domain=data["target_domain"],
        target_subsystem=data["target_subsystem"],
        knob=data["knob"],
        action=data["action"],
        parameters=data["parameters"],
        target_kpi=data["target_kpi"],
        justification=data["justification"],
        rollback_of=data.get("rollback_of"),
        time=m["time"],
        event=JSONFormat().read(None, body),
    )


@dataclass(frozen=True)
class Applied:
    """The spine changed the knob: its value before and after."""

    previous: Any
    current: Any


@dataclass(frozen=True)
class Refused:
    """The spine did not change the knob, and why."""

    reason: str


class DirectiveJournal:
    """Outcomes of directives by id, with the signed acknowledgement sent for each.

    With a ``path`` the journal is a JSON-lines file, appended and fsynced per directive, so
    it survives a restart of the adapter; without one it lives in memory.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self._path = Path(path) if path is not None else None
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if self._path is not None and self._path.exists():
            with open(self._path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        self._entries[entry["directive_id"]] = entry
                    except (ValueError, KeyError):
                        # a torn last line from a crash mid-write: that directive was not
                        # acknowledged, so it is delivered again and handled then
                        continue

    def get(self, directive_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._entries.get(directive_id)

    def __contains__(self, directive_id: str) -> bool:
        return self.get(directive_id) is not None

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, directive_id: str, entry: dict[str, Any]) -> None:
        entry = dict(entry, directive_id=directive_id)
        with self._lock:
            if self._path is not None:
                with open(self._path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            self._entries[directive_id] = entry


ApplyFn = Callable[[Directive], "Applied | Refused"]


class DirectiveHandler:
    """Turns a delivered directive into its acknowledgement, applying each id once.

    ``apply`` changes the knob and returns :class:`Applied` (with the previous value) or
    :class:`Refused`; if it raises, nothing is recorded and no ack is produced, so the
    directive is delivered again. ``max_age`` refuses directives published longer ago than
    that (e.g. found in the stream after a long outage).
    """

    def __init__(
        self,
        signer: EventSigner,
        supervisor_keys: Iterable[PublicKey],
        apply: ApplyFn,
        *,
        journal: DirectiveJournal | None = None,
        supervisor_source: str = SUPERVISOR_SOURCE,
        max_age: timedelta | None = None,
        on_review: Callable[[Directive], None] | None = None,
    ):
        self.signer = signer
        self.supervisor_keys = list(supervisor_keys)
        self.apply = apply
        self.journal = journal if journal is not None else DirectiveJournal()
        self.supervisor_source = supervisor_source
        self.max_age = max_age
        self.on_review = on_review
        self.applied_count = 0
        self.repeated_count = 0  # deliveries answered from the journal

    def handle(self, body: bytes) -> SignedEvent | None:
        """The acknowledgement to send for a delivered directive (the same bytes on every
        delivery of the same directive id), or None for a review request. Raises
        :class:`DirectiveError` for anything that is not a valid directive."""
        d = read_directive(body, self.supervisor_keys, source=self.supervisor_source)
        done = self.journal.get(d.id)
        if done is not None:
            self.repeated_count += 1
            return _stored_ack(done)
        if d.is_review_request:
            if self.on_review is not None:
                self.on_review(d)
            self.journal.record(d.id, {"result": "review"})
            return None
        outcome: Applied | Refused
        if self.max_age is not None and _age(d.time) > self.max_age:
            outcome = Refused(f"directive published {d.time}, older than {self.max_age}")
        else:
            outcome = self.apply(d)
        if isinstance(outcome, Applied):
            ack = self.signer.directive_applied(
                directive_id=d.id,
                domain=d.target_domain,
                knob=d.knob,
                previous=outcome.previous,
                current=outcome.current,
            )
            self.applied_count += 1
            result = "applied"
        elif isinstance(outcome, Refused):
            ack = self.signer.directive_refused(directive_id=d.id, domain=d.target_domain, reason=outcome.reason)
            result = "refused"
        else:
            raise TypeError("apply must return Applied or Refused")
        self.journal.record(
            d.id,
            {
                "result": result,
                "ack": {"id": ack.id, "source": ack.source, "type": ack.type, "body": ack.body.decode("utf-8")},
            },
        )
        return ack


def _stored_ack(entry: Mapping[str, Any]) -> SignedEvent | None:
    ack = entry.get("ack")
    if not ack:
        return None
    return SignedEvent(id=ack["id"], source=ack["source"], type=ack["type"], body=ack["body"].encode("utf-8"))


def _age(time_text: str) -> timedelta:
    t = datetime.strptime(normalize_time(time_text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - t


class KnobStore:
    """Knob values per (domain, knob), for adapters whose spine keeps them in memory and for
    tests. ``apply`` is an :data:`ApplyFn`: unknown knobs are refused."""

    def __init__(self, values: Mapping[tuple[str, str], Any] | None = None):
        self.values: dict[tuple[str, str], Any] = dict(values or {})
        self.changes: list[tuple[str, Any, Any]] = []

    def apply(self, d: Directive) -> Applied | Refused:
        key = (d.target_domain, d.knob)
        if key not in self.values:
            return Refused(f"unknown knob {d.knob} in {d.target_domain}")
        previous = self.values[key]
        try:
            current = d.new_value(previous)
        except ValueError as e:
            return Refused(str(e))
        self.values[key] = current
        self.changes.append((d.id, previous, current))
        return Applied(previous=previous, current=current)
