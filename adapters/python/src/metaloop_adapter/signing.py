"""Ed25519 keys and the DSSE signature of a CloudEvent (docs/PROTOCOL.md §4-§5).

The verification material ``M`` is SHA-256 over the digests of the event's attributes, of the
exact bytes of its ``data`` value, and of any signed extension attributes; the signature is
Ed25519 over the DSSE pre-authentication encoding of ``M``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import nacl.bindings
import nacl.exceptions
import nacl.signing

PAYLOAD_TYPE = "https://cloudevents.io/verifiability/dsse/v0.1"

CORE_ATTRIBUTES = (
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
)

_RESERVED_EXTENSIONS = set(CORE_ATTRIBUTES) | {"data", "data_base64", "dssematerial", "signedextattrs"}

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

#: The first word of metaloop's own key files (``supervisor.pub`` / ``supervisor.key``).
PUBLIC_KEY_TAG = "metaloop-ed25519-public-v1"
SECRET_KEY_TAG = "metaloop-ed25519-secret-v1"


def _key_text(text: str, tag: str, other_tag: str) -> str:
    """The 64 hex characters of a key file: bare (as ``metaloop keys generate`` writes an
    adapter's keys) or after ``tag`` and one space (as metaloop writes its own)."""
    words = text.split()
    if len(words) == 2 and words[0] == tag:
        return words[1]
    if len(words) == 2 and words[0] == other_tag:
        raise KeyFileError(f"it holds a {other_tag} key, a {tag} key is needed here")
    if len(words) == 1:
        return words[0]
    raise KeyFileError(f"expected 64 hex characters, optionally after {tag}")


class SignatureError(Exception):
    """An event's signature is missing, malformed or does not verify."""


class KeyFileError(ValueError):
    """A key file or key text is not what the protocol expects."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def normalize_time(text: str) -> str:
    """An RFC 3339 timestamp converted to UTC with whole seconds: ``YYYY-MM-DDTHH:MM:SSZ``.

    Fractions of a second are truncated, not rounded (PROTOCOL §5.2 step 2).
    """
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"time {text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    offset = m.group(8)
    if offset in ("Z", "z"):
        delta = timedelta(0)
    else:
        sign = 1 if offset[0] == "+" else -1
        hh, mm = int(offset[1:3]), int(offset[4:6])
        if hh > 23 or mm > 59:
            raise ValueError(f"time {text!r} has an invalid UTC offset")
        delta = sign * timedelta(hours=hh, minutes=mm)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(delta))
    except ValueError as e:
        raise ValueError(f"time {text!r}: {e}") from None
    return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time(when: datetime) -> str:
    """A timezone-aware datetime as the whole-second UTC text that is signed."""
    if when.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def extension_value_text(value: object) -> str:
    """An extension attribute's string form as signed: strings as is, integers in decimal,
    booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"extension value {value!r} is not a string, integer or boolean")


def verification_material(
    attributes: Mapping[str, object],
    data: bytes,
    signed_extensions: Sequence[str] = (),
) -> bytes:
    """The 32-byte digest ``M`` of PROTOCOL §5.2.

    ``attributes`` holds the event's context and extension attributes as strings (``time`` as
    sent; it is normalised here); ``data`` is exactly the bytes of the ``data`` member's value
    as they appear in the event's JSON text.
    """
    parts = []
    for name in CORE_ATTRIBUTES:
        value = attributes.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"attribute {name} must be a string")
        if name == "time" and value:
            value = normalize_time(value)
        parts.append(sha256(value.encode("utf-8")))
    parts.append(sha256(data))
    seen = set()
    for name in signed_extensions:
        if name in seen:
            raise ValueError(f"signedextattrs names {name!r} twice")
        if name in _RESERVED_EXTENSIONS:
            raise ValueError(f"signedextattrs must not name {name!r}")
        if name not in attributes or attributes[name] is None:
            raise ValueError(f"signed extension attribute {name!r} is missing")
        seen.add(name)
        parts.append(sha256(name.encode("utf-8")))
        parts.append(sha256(extension_value_text(attributes[name]).encode("utf-8")))
    return sha256(b"".join(parts))


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def key_id(public_key: bytes) -> str:
    """The first 16 lower-case hex characters of SHA-256 of the 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    if not isinstance(text, str):
        raise SignatureError("base64 value is not a string")
    t = text.strip().replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureError(f"not base64: {e}") from None


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key registered for a source (32 bytes)."""

    raw: bytes

    @classmethod
    def from_hex(cls, text: str) -> "PublicKey":
        text = text.strip()
        if not _HEX64.match(text):
            raise KeyFileError("a public key is 64 hex characters")
        raw = bytes.fromhex(text)
        if _is_small_order(raw):
            raise KeyFileError("small-order (weak) public key refused")
        return cls(raw)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "PublicKey":
        """Reads a public key file: an adapter's ``.pub`` from ``metaloop keys generate`` (64
        hex characters and a newline) or metaloop's ``supervisor.pub``
        (``metaloop-ed25519-public-v1 <64 hex>`` and a newline)."""
        try:
            text = Path(path).read_text(encoding="ascii")
            return cls.from_hex(_key_text(text, PUBLIC_KEY_TAG, SECRET_KEY_TAG))
        except KeyFileError as e:
            raise KeyFileError(f"{path}: {e}") from None

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
            return True
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False


def _is_small_order(raw: bytes) -> bool:
    # A point of small order times 8 is the identity; libsodium refuses such keys when
    # verifying, and metaloop refuses to register them.
    try:
        return not nacl.bindings.crypto_core_ed25519_is_valid_point(raw)
    except Exception:
        return True


class SigningKey:
    """An adapter's Ed25519 signing key (the 32-byte seed)."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 secret key (seed) is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = PublicKey(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(os.urandom(32))

    @classmethod
    def from_hex(cls, text: str) -> "SigningKey":
        text = text.strip()
        if not _HEX64.match(text):
            raise KeyFileError("a secret key is 64 hex characters (the 32-byte seed)")
        return cls(bytes.fromhex(text))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "SigningKey":
        """Reads a ``.key`` file written by ``metaloop keys generate``: the seed as 64 hex
        characters and a newline (metaloop's own ``metaloop-ed25519-secret-v1 <hex>`` form is
        read too)."""
        try:
            text = Path(path).read_text(encoding="ascii")
            return cls.from_hex(_key_text(text, SECRET_KEY_TAG, PUBLIC_KEY_TAG))
        except KeyFileError as e:
            raise KeyFileError(f"{path}: {e}") from None

    def write(self, path: str | os.PathLike[str]) -> None:
        """Writes the seed (mode 0600) and the public key beside it (``.pub``), never
        overwriting an existing file."""
        p = Path(path)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(bytes(self._key).hex() + "\n")
        pub = p.with_suffix(".pub")
        fd = os.open(pub, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(self.public_key.hex + "\n")

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def envelope(material: bytes, key: SigningKey) -> str:
    """The ``dssematerial`` value: base64 of the compact DSSE JSON envelope (§5.4)."""
    signature = key.sign(pae(PAYLOAD_TYPE, material))
    env = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(material).decode("ascii"),
        "signatures": [
            {"keyid": key.public_key.key_id, "sig": base64.b64encode(signature).decode("ascii")}
        ],
    }
    return base64.b64encode(json.dumps(env, separators=(",", ":")).encode("utf-8")).decode("ascii")


def verify_envelope(
    dssematerial: object,
    material: bytes,
    keys: Iterable[PublicKey],
) -> PublicKey:
    """Checks ``dssematerial`` against the recomputed material and returns the key that
    signed it. Raises :class:`SignatureError` naming what failed."""
    keys = list(keys)
    if not isinstance(dssematerial, str) or not dssematerial:
        raise SignatureError("unsigned: dssematerial is missing or empty")
    try:
        env = json.loads(_b64decode(dssematerial))
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureError(f"dssematerial is not a DSSE envelope: {e}") from None
    if not isinstance(env, dict):
        raise SignatureError("dssematerial is not a DSSE envelope")
    if env.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureError(f"payloadType {env.get('payloadType')!r} is not {PAYLOAD_TYPE}")
    payload = _b64decode(env.get("payload", ""))
    if len(payload) != 32:
        raise SignatureError("payload is not a 32-byte digest")
    if payload != material:
        raise SignatureError("the signed digest does not match the event")
    signatures = env.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise SignatureError("the envelope has no signature")
    message = pae(PAYLOAD_TYPE, payload)
    for s in signatures:
        if not isinstance(s, dict):
            continue
        sig = _b64decode(s.get("sig", ""))
        hint = s.get("keyid")
        for k in keys:
            if hint and hint != k.key_id:
                continue
            if k.verify(message, sig):
                return k
    raise SignatureError("no signature verifies with a trusted key")
