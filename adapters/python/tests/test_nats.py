"""Over NATS JetStream against a real ``metaloop run``: events published with their
``Nats-Msg-Id``, a directive received, verified with metaloop's public key, applied once and
acknowledged with the previous value — again on redelivery, never applied twice — and a
restart of the daemon in the middle of a stream with no event lost or counted twice."""

import asyncio
import time
from datetime import datetime, timezone

import pytest

from metaloop_adapter import SigningKey
from metaloop_adapter.directives import DirectiveError, DirectiveHandler, DirectiveJournal, KnobStore
from metaloop_adapter.jetstream import NatsAdapter

THRESHOLD = ("application", "planner.confidence_threshold")


def recovery(signer, tag, i, fail_every=5, now=None):
    return signer.recovery(
        domain="application",
        incident_id=f"inc-{tag}-{i}",
        playbook="restart-service",
        duration_s=25.0,
        succeeded=i % fail_every != 0,
        id=f"{tag}-{i}",
        time=now or datetime.now(timezone.utc),
    )


async def until(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = await asyncio.to_thread(fn)
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def test_directives_over_nats_are_verified_applied_once_and_acked(daemon_factory, nats_deployment, tmp_path):
    url, prefix, stream = nats_deployment
    d = daemon_factory(mesh=url, prefix=prefix, stream=stream, cycle="1s").start()
    viewer = d.api("viewer")
    knobs = KnobStore({THRESHOLD: 0.70})
    journal_path = tmp_path / "directives.jsonl"
    handler = DirectiveHandler(d.signer, [d.supervisor_key()], knobs.apply, journal=DirectiveJournal(journal_path))

    async def scenario():
        bus = await NatsAdapter.connect(url, prefix=prefix)
        stop = asyncio.Event()
        serving = asyncio.create_task(bus.serve_directives(handler, durable="spine-a", stop=stop))
        # 80 % success against a 95 % goal, until the supervisor raises the threshold (after
        # a baseline of at least 2,000 recoveries over 3 cycles)
        i = 0
        deadline = time.monotonic() + 90
        while not knobs.changes:
            for _ in range(100):
                ack = await bus.publish(recovery(d.signer, "n", i))
                assert not ack.duplicate
                i += 1
            await asyncio.sleep(0.2)
            assert not serving.done(), serving
            assert time.monotonic() < deadline, f"no directive reached the adapter: {viewer.directives()}"
        # a publish retried with the same Nats-Msg-Id is stored once
        again = await bus.publish(recovery(d.signer, "n", 0))
        assert again.duplicate
        directive_id, previous, current = knobs.changes[0]
        assert (previous, current) == (0.70, 0.75)
        view = await until(
            "the applied ack",
            lambda: (v := viewer.directive(directive_id)) and v.get("applied") and v,
            30,
        )
        assert view["applied"]["previous"] == 0.70 and view["applied"]["current"] == 0.75
        stop.set()
        await serving

        # the same directives delivered again (a new consumer reads the stream from its start):
        # answered from the journal, never applied twice
        handler2 = DirectiveHandler(d.signer, [d.supervisor_key()], knobs.apply, journal=DirectiveJournal(journal_path))
        stop2 = asyncio.Event()
        serving2 = asyncio.create_task(bus.serve_directives(handler2, durable="spine-b", stop=stop2))
        await until("the directive delivered again", lambda: handler2.repeated_count >= 1, 15)
        stop2.set()
        await serving2
        assert handler2.applied_count == 0
        await bus.close()
        return directive_id, i

    directive_id, published = asyncio.run(scenario())
    assert len(knobs.changes) == len({c[0] for c in knobs.changes}), knobs.changes
    assert knobs.values[THRESHOLD] == pytest.approx(0.70 + 0.05 * len(knobs.changes))
    applied = [r for r in viewer.iter_ledger() if r["action"] == "directive.applied"]
    assert [r["resource"] for r in applied].count(directive_id) == 1

    # what does not verify is never applied
    body = _stored_directive(prefix, url, directive_id)
    stranger = DirectiveHandler(d.signer, [SigningKey.generate().public_key], knobs.apply)
    with pytest.raises(DirectiveError, match="signature"):
        stranger.handle(body)
    tampered = body.replace(b'"adjustment":0.05', b'"adjustment":0.5')
    assert tampered != body
    with pytest.raises(DirectiveError, match="signature"):
        DirectiveHandler(d.signer, [d.supervisor_key()], knobs.apply).handle(tampered)
    assert d.stop() == 0


def _stored_directive(prefix, url, directive_id) -> bytes:
    """The directive's bytes as metaloop published them, read back from the stream."""
    import nats

    async def read():
        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.subscribe(f"{prefix}.meta.directive.*", ordered_consumer=True)
        try:
            while True:
                msg = await sub.next_msg(timeout=5)
                if f'"id":"{directive_id}"'.encode() in msg.data:
                    return msg.data
        finally:
            await nc.close()

    return asyncio.run(read())


def test_a_restart_in_the_middle_of_a_nats_stream_loses_and_doubles_nothing(daemon_factory, nats_deployment):
    url, prefix, stream = nats_deployment
    d = daemon_factory(mesh=url, prefix=prefix, stream=stream, cycle="1s").start()
    total, fail_every = 600, 5

    async def stream_events():
        bus = await NatsAdapter.connect(url, prefix=prefix)
        now = datetime.now(timezone.utc)
        for i in range(total):
            await bus.publish(recovery(d.signer, "s", i, fail_every, now))
            if i % 25 == 24:
                await asyncio.sleep(0.1)
            if i == 300:
                # mid-stream: metaloop stops (its open cycle and unacknowledged deliveries are
                # not recorded) while the adapter keeps publishing to the bus
                assert await asyncio.to_thread(d.stop) == 0
            if i == 450:
                await asyncio.to_thread(d.start)
        await bus.close()

    asyncio.run(stream_events())
    # deliveries left unacknowledged by the stopped run come back after their ack wait
    deadline = time.monotonic() + 150
    while d.folded()["recoveries"] < total:
        assert time.monotonic() < deadline, f"events lost: {d.folded()}"
        time.sleep(1)
    d.wait_for_cycle(d.api("viewer").status()["cycle"] + 2)
    folded = d.folded()
    assert (folded["recoveries"], folded["successes"]) == (total, total - total // fail_every), folded
    assert d.stop() == 0
