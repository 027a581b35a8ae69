"""HttpAdapter's bookkeeping against a scripted ledger: an accepted event is durable once a
cycle closes after its acceptance, and sent again when a restart comes first."""

from metaloop_adapter import EventSigner, HttpAdapter, SigningKey
from metaloop_adapter.client import EventResult


class FakeMetaloop:
    """``POST /v1/events`` and ``GET /v1/ledger/records`` over a list of record actions."""

    def __init__(self):
        self.ledger = ["supervisor.started"]
        self.seen: set[str] = set()
        self.posts: list[list[str]] = []

    def post_events(self, events):
        self.posts.append([e.id for e in events])
        out = []
        for e in events:
            out.append(EventResult(e.id, e.source, "duplicate" if e.id in self.seen else "accepted"))
            self.seen.add(e.id)
        return out

    def ledger_records(self, start, limit):
        return [{"seq": s, "action": a} for s, a in enumerate(self.ledger, 1)][start - 1 : start - 1 + limit]

    def iter_ledger(self, start=1, page=1000):
        return iter(self.ledger_records(start, 10**9))


def events(n, tag):
    signer = EventSigner("urn:spine:application", SigningKey.generate())
    return [signer.kpi(domain="application", name="k", value=float(i), id=f"{tag}-{i}") for i in range(n)]


def test_a_cycle_closed_after_acceptance_makes_events_durable():
    ml = FakeMetaloop()
    a = HttpAdapter(ml, ml)
    ml.ledger += ["snapshot.built"] * 3
    a.send(events(5, "a"))
    assert a.confirm() == 5
    ml.ledger += ["strategy.evaluated", "snapshot.built"]
    assert a.confirm() == 0 and a.lost == 0


def test_a_restart_before_the_cycle_closes_sends_the_events_again():
    ml = FakeMetaloop()
    a = HttpAdapter(ml, ml)
    first = events(3, "b")
    a.send(first)
    ml.ledger += ["supervisor.started", "snapshot.built"]  # the open cycle was lost
    ml.seen.clear()  # and the restarted metaloop does not know the events
    a.confirm()
    assert a.lost == 3
    results = a.resend_lost()
    assert [r.result for r in results] == ["accepted"] * 3
    assert ml.posts[-1] == [e.id for e in first]
    assert a.pending == 3 and a.lost == 0
    ml.ledger += ["snapshot.built"]
    assert a.confirm() == 0
    assert a.resent == 3


def test_a_restart_after_the_cycle_closed_sends_nothing_again():
    ml = FakeMetaloop()
    a = HttpAdapter(ml, ml)
    a.send(events(3, "c"))
    ml.ledger += ["snapshot.built", "supervisor.started"]
    assert a.confirm() == 0 and a.lost == 0
    assert len(ml.posts) == 1
