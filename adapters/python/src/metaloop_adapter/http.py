"""Events over HTTP (``POST /v1/events``) with nothing lost across a restart of metaloop.

An event is in metaloop's ledger once the cycle it was folded into has closed (its
``snapshot.built`` record). :class:`HttpAdapter` keeps every accepted event until the ledger
shows a cycle closed after it. When a restart comes first — a ``supervisor.started`` record
before any ``snapshot.built`` that follows the acceptance — it sends the event again, the
same bytes and id: metaloop answers ``duplicate`` if it still holds the event and
``accepted`` if the restart lost it, so either way the event counts once.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import Iterable, Sequence

from .client import ApiClient, EventResult
from .events import SignedEvent


@dataclass
class _Pending:
    event: SignedEvent
    head: int  # the ledger's last record when metaloop had answered `accepted`
    lost: bool = False


class HttpAdapter:
    """Posts signed events and tracks them until they are durable.

    ``events`` is a client with the adapter role (for ``POST /v1/events``); ``reader`` one
    with a reader role (viewer, operator, approver or admin) to follow the ledger. Without a
    ``reader`` events are sent but not tracked.
    """

    def __init__(self, events: ApiClient, reader: ApiClient | None = None, *, batch_size: int = 500):
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be within 1..=1000 (metaloop's batch limit)")
        self.events = events
        self.reader = reader
        self.batch_size = batch_size
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._cursor: int | None = None  # the next ledger seq to read
        self.resent = 0
        self.duplicates_on_resend = 0

    @property
    def pending(self) -> int:
        """Accepted events not yet shown durable."""
        return len(self._pending)

    @property
    def lost(self) -> int:
        """Accepted events whose cycle was lost by a restart, waiting for :meth:`resend_lost`."""
        return sum(1 for p in self._pending.values() if p.lost)

    def send(self, events: Sequence[SignedEvent]) -> list[EventResult]:
        """Posts events in batches; returns one result per event. Accepted (and duplicate)
        events are tracked; rejected ones are the caller's to fix (a corrected event may reuse
        the id)."""
        out: list[EventResult] = []
        for i in range(0, len(events), self.batch_size):
            chunk = list(events[i : i + self.batch_size])
            if self.reader is not None:
                self._advance()
            results = self.events.post_events(chunk)
            if len(results) != len(chunk):
                raise RuntimeError(f"{len(chunk)} events posted, {len(results)} results")
            if self.reader is not None:
                head = self._advance()
                for ev, r in zip(chunk, results):
                    # a duplicate may be the copy of a send whose answer was lost, still in
                    # the open cycle: it is tracked like an accepted event
                    if r.result in ("accepted", "duplicate"):
                        self._pending[(ev.source, ev.id)] = _Pending(ev, head)
            out.extend(results)
        return out

    def confirm(self) -> int:
        """Reads the ledger on; returns how many accepted events are not yet durable."""
        if self.reader is None:
            raise RuntimeError("confirming needs a reader client")
        self._advance()
        return self.pending

    def resend_lost(self) -> list[EventResult]:
        """Sends again the accepted events whose open cycle a restart lost."""
        self.confirm()
        lost = [p.event for p in self._pending.values() if p.lost]
        for ev in lost:
            del self._pending[(ev.source, ev.id)]
        results = self.send(lost)
        self.resent += len(lost)
        for r in results:
            if r.result == "duplicate":
                # metaloop says it holds this event already; it is not sent a third time
                self.duplicates_on_resend += 1
        return results

    def _advance(self) -> int:
        """Reads new ledger records; returns the last seq (0 for an empty ledger)."""
        assert self.reader is not None
        if self._cursor is None:
            self._cursor = self._head() + 1
            return self._cursor - 1
        for record in self.reader.iter_ledger(self._cursor):
            seq = record["seq"]
            action = record.get("action")
            if action == "snapshot.built":
                for key in [k for k, p in self._pending.items() if p.head < seq and not p.lost]:
                    del self._pending[key]
            elif action == "supervisor.started":
                for p in self._pending.values():
                    if p.head < seq:
                        p.lost = True
            self._cursor = seq + 1
        return self._cursor - 1

    def _head(self) -> int:
        """The ledger's last seq, found with O(log n) reads."""
        assert self.reader is not None

        def exists(seq: int) -> bool:
            return bool(self.reader.ledger_records(seq, 1))

        if not exists(1):
            return 0
        lo, hi = 1, 2
        while exists(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if exists(mid):
                lo = mid
            else:
                hi = mid
        return lo


def wait_until_durable(adapter: HttpAdapter, timeout: float, poll: float = 0.2) -> bool:
    """Polls :meth:`HttpAdapter.confirm` until nothing is pending or ``timeout`` seconds pass;
    events found lost are sent again on the way. True when everything is durable."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if adapter.lost:
                adapter.resend_lost()
            if adapter.confirm() == 0:
                return True
        except (OSError, http.client.HTTPException):
            pass  # metaloop is restarting
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)


__all__: Iterable[str] = ["HttpAdapter", "wait_until_durable"]
