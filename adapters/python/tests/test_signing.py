"""The signer against docs/PROTOCOL.md §9: the worked example reproduced byte for byte from
the document itself, and verification that refuses what it must."""

import base64
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from metaloop_adapter import EventSigner, PublicKey, SignatureError, SigningKey
from metaloop_adapter.events import parse_event, verify_event
from metaloop_adapter.signing import normalize_time, pae, verification_material, PAYLOAD_TYPE

PROTOCOL = Path(__file__).resolve().parents[3] / "docs" / "PROTOCOL.md"


def block(name: str) -> str:
    """The fenced block after ``<!-- example:NAME -->`` in PROTOCOL.md."""
    text = PROTOCOL.read_text(encoding="utf-8")
    m = re.search(r"<!-- example:%s -->\n```[a-z]*\n(.*?)\n```" % re.escape(name), text, re.S)
    assert m, f"PROTOCOL.md has no example:{name} block"
    return m.group(1)


def example_signer():
    secret, public, key_id = (line.split()[-1] for line in block("keys").splitlines())
    key = SigningKey.from_hex(secret)
    assert (key.public_key.hex, key.public_key.key_id) == (public, key_id)
    return EventSigner("urn:spine:application", key)


def example_event():
    return example_signer().event(
        "recovery.succeeded",
        json.loads(block("data")),
        id="evt-0001",
        time=datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc),
    )


def test_worked_example_byte_for_byte():
    ev = example_event()
    assert ev.body.decode() == block("event")
    assert ev.msg_id == "urn:spine:application/evt-0001"
    raw = parse_event(ev.body)
    m = verification_material(raw.members, raw.data_bytes)
    material = block("material").splitlines()
    assert m.hex() == material[0].split()[-1]
    assert base64.b64encode(m).decode() == material[1].split()[-1]
    assert pae(PAYLOAD_TYPE, m).hex() == block("pae")
    env = json.loads(base64.b64decode(raw.members["dssematerial"]))
    assert json.dumps(env, separators=(",", ":")) == block("envelope")
    assert env["signatures"][0]["sig"] == block("signature")


def test_the_sdk_reads_a_signed_event():
    ce = example_event().cloudevent()
    assert ce.get_type() == "recovery.succeeded"
    assert ce.get_data()["incident_id"] == "inc-42"
    assert ce.get_time() == datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)


def test_verification_accepts_the_signer_and_refuses_tampering():
    signer = example_signer()
    ev = example_event()
    assert verify_event(parse_event(ev.body), [signer.key.public_key]) == signer.key.public_key
    stranger = SigningKey.generate().public_key
    with pytest.raises(SignatureError):
        verify_event(parse_event(ev.body), [stranger])
    for old, new in [
        (b'"duration_s":42.5', b'"duration_s":42.6'),
        (b'"data":{', b'"data": {'),  # re-formatting the data changes its bytes
        (b'"id":"evt-0001"', b'"id":"evt-0002"'),
        (b'"time":"2026-01-01T00:05:00Z"', b'"time":"2026-01-01T00:05:01Z"'),
    ]:
        assert old in ev.body
        with pytest.raises(SignatureError):
            verify_event(parse_event(ev.body.replace(old, new)), [signer.key.public_key])
    # the same instant written another way is the same signed time
    same = ev.body.replace(b'"time":"2026-01-01T00:05:00Z"', b'"time":"2026-01-01T01:05:00.750+01:00"')
    verify_event(parse_event(same), [signer.key.public_key])


def test_time_normalisation_truncates_to_utc_seconds():
    assert normalize_time("2026-01-01T01:05:00.750+01:00") == "2026-01-01T00:05:00Z"
    assert normalize_time("2025-12-31T23:59:59.999999999-00:30") == "2026-01-01T00:29:59Z"
    for bad in ["2026-01-01", "2026-01-01T00:05:00", "2026-13-01T00:00:00Z", "yesterday"]:
        with pytest.raises(ValueError):
            normalize_time(bad)


def test_duplicate_members_and_weak_keys_are_refused():
    from metaloop_adapter.events import MalformedEvent
    from metaloop_adapter.signing import KeyFileError

    with pytest.raises(MalformedEvent):
        parse_event(b'{"id":"a","id":"b"}')
    with pytest.raises(MalformedEvent):
        parse_event(b'[{"id":"a"}]')
    with pytest.raises(KeyFileError):
        PublicKey.from_hex("00" * 32)  # a small-order point
    with pytest.raises(KeyFileError):
        PublicKey.from_hex("d75a98")
