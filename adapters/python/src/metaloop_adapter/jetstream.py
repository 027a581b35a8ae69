"""Events and directives over NATS JetStream (docs/PROTOCOL.md §3, §8).

Events are published on ``<prefix>.<type>`` with ``Nats-Msg-Id: <source>/<id>`` and the
publish acknowledgement awaited, so a retried publish is stored once. Directives are read
from a durable pull consumer on ``<prefix>.meta.directive.*`` with explicit
acknowledgement: a directive is acknowledged on the bus only after its ack event is stored,
so an adapter that stops half way gets it again — and answers it again from its journal
instead of applying it twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import nats
import nats.errors
import nats.js.api
import nats.js.errors

from .directives import ACK_TYPES, DirectiveError, DirectiveHandler
from .events import BATCH_CONTENT_TYPE, EVENT_CONTENT_TYPE, SignedEvent, batch_body

log = logging.getLogger(__name__)


class NatsAdapter:
    """A spine adapter on NATS JetStream under a deployment's subject ``prefix``."""

    def __init__(self, nc: "nats.aio.client.Client", *, prefix: str = "metaloop", publish_timeout: float = 5.0):
        if not prefix or "." in prefix or any(c in prefix for c in " *>"):
            raise ValueError(f"subject prefix {prefix!r} must be one token")
        self.nc = nc
        self.js = nc.jetstream()
        self.prefix = prefix
        self.publish_timeout = publish_timeout

    @classmethod
    async def connect(cls, url: str = "nats://127.0.0.1:4222", *, prefix: str = "metaloop", **options) -> "NatsAdapter":
        nc = await nats.connect(url, **options)
        return cls(nc, prefix=prefix)

    async def close(self) -> None:
        await self.nc.drain()

    def subject(self, event_type: str) -> str:
        return f"{self.prefix}.{event_type}"

    async def publish(self, event: SignedEvent, *, retries: int = 5) -> nats.js.api.PubAck:
        """Publishes one event and waits for JetStream to store it. A publish that times out
        is retried with the same ``Nats-Msg-Id``; JetStream stores it once."""
        headers = {"Nats-Msg-Id": event.msg_id, "Content-Type": EVENT_CONTENT_TYPE}
        return await self._publish(self.subject(event.type), event.body, headers, retries)

    async def publish_batch(self, events: Sequence[SignedEvent], *, msg_id: str, subject: str = "batch", retries: int = 5) -> nats.js.api.PubAck:
        """Publishes a batch document (≤ 1,000 events, ≤ 1 MiB) on ``<prefix>.<subject>``;
        ``msg_id`` identifies the batch for JetStream's duplicate window."""
        headers = {"Nats-Msg-Id": msg_id, "Content-Type": BATCH_CONTENT_TYPE}
        return await self._publish(self.subject(subject), batch_body(events), headers, retries)

    async def _publish(self, subject: str, body: bytes, headers: dict, retries: int) -> nats.js.api.PubAck:
        delay = 0.1
        for attempt in range(retries + 1):
            try:
                return await self.js.publish(subject, body, timeout=self.publish_timeout, headers=headers)
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError, nats.errors.ConnectionClosedError):
                if attempt == retries:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def serve_directives(
        self,
        handler: DirectiveHandler,
        *,
        durable: str = "spine-adapter",
        stop: asyncio.Event | None = None,
        batch: int = 10,
        poll: float = 1.0,
    ) -> None:
        """Reads directives until ``stop`` is set: verifies each, applies it once, publishes
        its ack event, then acknowledges the message on the bus. A message that is not a
        valid directive is terminated (never redelivered) and logged."""
        sub = await self.js.pull_subscribe(
            self.subject("meta.directive.*"),
            durable=durable,
            config=nats.js.api.ConsumerConfig(
                ack_policy=nats.js.api.AckPolicy.EXPLICIT,
                deliver_policy=nats.js.api.DeliverPolicy.ALL,
                ack_wait=30,
            ),
        )
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=poll)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    continue
                for msg in msgs:
                    await self._handle(handler, msg)
        finally:
            await sub.unsubscribe()

    async def _handle(self, handler: DirectiveHandler, msg) -> None:
        token = msg.subject[len(self.prefix) + 1 :]
        if token in ACK_TYPES:
            await msg.ack()  # acknowledgements travel under the same pattern
            return
        try:
            ack = handler.handle(msg.data)
        except DirectiveError as e:
            log.warning("not a valid directive on %s: %s", msg.subject, e)
            await msg.term()
            return
        except Exception:
            log.exception("applying the directive on %s failed; it will be delivered again", msg.subject)
            await msg.nak(delay=1.0)
            return
        if ack is not None:
            await self.publish(ack)
        await msg.ack()
