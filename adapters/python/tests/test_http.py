"""Events over HTTP against a real ``metaloop run``: accepted, duplicate and forged events
with their results, counts checked in the ledger; and a restart of the daemon in the middle
of a stream with no event lost or counted twice."""

import http.client
import threading
import time
from datetime import datetime, timezone

from metaloop_adapter import EventSigner, SigningKey
from metaloop_adapter.http import HttpAdapter, wait_until_durable


def recoveries(signer, tag, n, fail_every=4, duration=30.0):
    """n recoveries in application; every ``fail_every``-th one failed."""
    now = datetime.now(timezone.utc)
    return [
        signer.recovery(
            domain="application",
            incident_id=f"inc-{tag}-{i}",
            playbook="restart-service",
            duration_s=duration,
            succeeded=i % fail_every != 0,
            id=f"{tag}-{i}",
            time=now,
        )
        for i in range(n)
    ]


def test_events_over_http_are_accepted_deduplicated_and_counted(daemon_factory):
    d = daemon_factory(cycle="1s").start()
    adapter = HttpAdapter(d.api("adapter"), d.api("viewer"))
    good = recoveries(d.signer, "h", 40)
    results = adapter.send(good)
    assert [r.result for r in results] == ["accepted"] * 40, results[:3]
    assert {(r.source, r.id) for r in results} == {(e.source, e.id) for e in good}

    stranger = EventSigner(d.SOURCE, SigningKey.generate())
    again = adapter.send([good[0], stranger.recovery(domain="application", incident_id="x", playbook="p",
                                                      duration_s=1.0, succeeded=False, id="forged")])
    assert again[0].result == "duplicate"
    assert (again[1].result, again[1].reason) == ("rejected", "unknown_key")

    assert wait_until_durable(adapter, timeout=30)
    folded = d.folded()
    assert (folded["recoveries"], folded["successes"]) == (40, 30), folded
    kpis = d.api("viewer").status()["goals"]
    success = next(g for g in kpis if g["kpi"] == "overall_success_rate")
    assert abs(success["value"] - 0.75) < 1e-9 and abs(success["gap"] - 0.20) < 1e-9
    assert d.stop() == 0


def test_a_restart_in_the_middle_of_an_http_stream_loses_and_doubles_nothing(daemon_factory):
    d = daemon_factory(cycle="3s").start()
    viewer = d.api("viewer")
    adapter = HttpAdapter(d.api("adapter"), viewer, batch_size=25)
    stream = recoveries(d.signer, "r", 600, fail_every=5)  # 480 succeed
    sent = 0
    errors = 0

    def send_next(n):
        nonlocal sent, errors
        chunk = stream[sent : sent + n]
        deadline = time.monotonic() + 60
        while True:
            try:
                results = adapter.send(chunk)
                break
            except (OSError, http.client.HTTPException):
                errors += 1  # metaloop is down: the same events again, shortly
                assert time.monotonic() < deadline, "metaloop did not come back"
                time.sleep(0.2)
        assert all(r.result == "accepted" for r in results), [r for r in results if not r.accepted][:3]
        sent += len(chunk)

    for _ in range(8):
        send_next(25)
        time.sleep(0.1)
    # right after a cycle closes, send more and stop metaloop: the open cycle holds them
    cycle = viewer.status()["cycle"]
    d.wait_for_cycle(cycle)
    send_next(50)
    assert d.stop() == 0

    # keep streaming while metaloop is down and after it comes back
    restarter = threading.Timer(1.0, d.start)
    restarter.start()
    while sent < len(stream):
        send_next(25)
        time.sleep(0.05)
    restarter.join()

    assert wait_until_durable(adapter, timeout=60), f"{adapter.pending} events still not durable"
    # events accepted in the cycle open at the stop were sent again: metaloop answers
    # `duplicate` for those it still holds, `accepted` for those the stop lost
    assert adapter.resent > 0, "no accepted event met a restart before its cycle closed"
    assert errors > 0, "no send met metaloop down"
    d.wait_for_cycle(viewer.status()["cycle"] + 1)  # one more cycle: nothing arrives late
    folded = d.folded()
    assert (folded["recoveries"], folded["successes"]) == (600, 480), folded
    assert d.stop() == 0
