"""Directive handling without a daemon: what PROTOCOL §8 asks an adapter to check, one
application per directive id across restarts of the adapter, and key files in both formats."""

import json

import pytest

from metaloop_adapter import (
    DirectiveError,
    DirectiveHandler,
    DirectiveJournal,
    EventSigner,
    KeyFileError,
    KnobStore,
    PublicKey,
    SigningKey,
)

SUPERVISOR = EventSigner("urn:metaloop:supervisor", SigningKey.generate())
SPINE = EventSigner("urn:spine:application", SigningKey.generate())
KNOB = ("application", "planner.confidence_threshold")


def directive(id="019b76ec-0000-7000-8000-000000000001", type="ADJUST_THRESHOLD", signer=SUPERVISOR, **over):
    data = {
        "directive_id": id,
        "directive_type": type,
        "target_domain": "application",
        "target_subsystem": "planner",
        "knob": "planner.confidence_threshold",
        "action": "adjust",
        "parameters": {"adjustment": 0.05},
        "target_kpi": "overall_success_rate",
        "justification": "success 8 points below goal",
    }
    data.update(over.pop("data", {}))
    event_type = over.pop("event_type", "meta.directive." + type.lower())
    return signer.event(event_type, data, id=over.pop("event_id", id)).body


def handler(knobs, journal=None):
    return DirectiveHandler(SPINE, [SUPERVISOR.key.public_key], knobs.apply, journal=journal)


def test_a_directive_is_applied_once_and_acked_with_the_previous_value(tmp_path):
    knobs = KnobStore({KNOB: 0.70})
    path = tmp_path / "journal.jsonl"
    ack = handler(knobs, DirectiveJournal(path)).handle(directive())
    assert knobs.values[KNOB] == 0.75
    sent = json.loads(ack.body)
    assert sent["type"] == "meta.directive.applied" and sent["source"] == "urn:spine:application"
    assert sent["data"] == {
        "directive_id": "019b76ec-0000-7000-8000-000000000001",
        "domain": "application",
        "knob": "planner.confidence_threshold",
        "previous": 0.70,
        "current": 0.75,
    }
    # delivered again, to the same adapter or to one restarted on the same journal: the same
    # acknowledgement, byte for byte, and the knob is not moved again
    again = handler(knobs, DirectiveJournal(path))
    assert again.handle(directive()).body == ack.body
    assert handler(knobs, DirectiveJournal(path)).handle(directive()).body == ack.body
    assert knobs.values[KNOB] == 0.75 and len(knobs.changes) == 1
    assert again.applied_count == 0 and again.repeated_count == 1


def test_a_torn_journal_line_is_a_directive_not_yet_handled(tmp_path):
    knobs = KnobStore({KNOB: 0.70})
    path = tmp_path / "journal.jsonl"
    handler(knobs, DirectiveJournal(path)).handle(directive())
    with open(path, "a") as f:
        f.write('{"directive_id":"019b76ec-0000-7000-8000-00000000000')  # a crash mid-write
    journal = DirectiveJournal(path)
    assert len(journal) == 1
    assert handler(knobs, journal).handle(directive(id="019b76ec-0000-7000-8000-000000000002")) is not None
    assert knobs.values[KNOB] == pytest.approx(0.80)


def test_refusals_and_review_requests():
    knobs = KnobStore({KNOB: 0.70})
    ack = handler(knobs).handle(directive(data={"knob": "planner.unknown"}))
    sent = json.loads(ack.body)
    assert sent["type"] == "meta.directive.refused"
    assert "unknown knob" in sent["data"]["reason"]
    seen = []
    h = DirectiveHandler(SPINE, [SUPERVISOR.key.public_key], knobs.apply, on_review=seen.append)
    assert h.handle(directive(id="r1", type="REQUEST_REVIEW")) is None
    assert [d.id for d in seen] == ["r1"] and knobs.values[KNOB] == 0.70


@pytest.mark.parametrize(
    "body, why",
    [
        (lambda: directive(event_type="meta.directive.enable_probe"), "does not match directive_type"),
        (lambda: directive(event_id="another-id"), "is not the directive_id"),
        (lambda: directive(signer=EventSigner("urn:metaloop:supervisor", SigningKey.generate())), "signature"),
        (lambda: directive(signer=EventSigner("urn:someone:else", SUPERVISOR.key)), "is not the supervisor's"),
        (lambda: directive(data={"extra": 1}), "unknown"),
        (lambda: directive(event_type="meta.directive.applied"), "is not a directive"),
        (lambda: directive().replace(b'"adjustment":0.05', b'"adjustment":0.5'), "signature"),
        (lambda: b"[" + directive() + b"]", "malformed"),
    ],
)
def test_what_is_not_a_valid_directive_is_never_applied(body, why):
    knobs = KnobStore({KNOB: 0.70})
    with pytest.raises(DirectiveError, match=why):
        handler(knobs).handle(body())
    assert knobs.values[KNOB] == 0.70


def test_key_files_in_both_formats(tmp_path):
    key = SigningKey.generate()
    key.write(tmp_path / "adapter.key")
    assert (tmp_path / "adapter.key").stat().st_mode & 0o077 == 0
    assert SigningKey.from_file(tmp_path / "adapter.key").public_key == key.public_key
    assert PublicKey.from_file(tmp_path / "adapter.pub") == key.public_key
    # metaloop's own files carry a tag before the hex
    (tmp_path / "supervisor.pub").write_text(f"metaloop-ed25519-public-v1 {key.public_key.hex}\n")
    assert PublicKey.from_file(tmp_path / "supervisor.pub") == key.public_key
    (tmp_path / "supervisor.key").write_text("metaloop-ed25519-secret-v1 " + "11" * 32 + "\n")
    with pytest.raises(KeyFileError, match="public-v1 key is needed"):
        PublicKey.from_file(tmp_path / "supervisor.key")
    with pytest.raises(FileExistsError):
        key.write(tmp_path / "adapter.key")  # never overwritten
