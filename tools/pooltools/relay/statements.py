"""Signed score statements (docs/relay.md section 6a): what one node observed of another,
signed so that a third node can check it and nobody can inflate its own figures.

A node's static key is an X25519 key, which agrees keys but cannot sign. Each node therefore
derives an Ed25519 signing key from its static private key (HKDF-SHA256, a label of its own,
so the derived key tells nothing about the static one) and announces the public half over its
authenticated POOL sessions: a peer learns "static key S signs with key V" from a session
whose handshake proved S. Signing and verifying are python3-cryptography's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pooltools.protocol.keys import decode_key, encode_key

FORMAT = 1
SIGNING_LABEL = b"POOL/1 relay signing key"
SIGNED_PREFIX = b"POOL/1 relay statement\x00"  # the signature covers this, then the statement
MAX_COUNT = 1 << 62
MAX_STATEMENT = 1024  # bytes of canonical JSON


class StatementError(ValueError):
    """A statement or signature that does not check out; the message says which part."""


class UnknownObserver(StatementError):
    """A well-formed statement whose observer has no signing key known here."""


def signing_key(static_private: bytes):  # -> Ed25519PrivateKey (imported lazily)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(static_private) != 32:
        raise ValueError("a static private key is 32 bytes")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SIGNING_LABEL).derive(static_private)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_signing_key(static_private: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return signing_key(static_private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Statement:
    observer: bytes  # the static key of the node that counted
    subject: bytes  # the static key of the node it counted
    contributed: int  # bytes the subject forwarded for the observer
    consumed: int  # bytes the observer forwarded for the subject
    start: int  # the observer's starting share: score = (contributed + start) / (consumed + start)
    at: int  # Unix seconds when the observer made it

    @property
    def score(self) -> float:
        return (self.contributed + self.start) / (self.consumed + self.start)

    def canonical(self) -> bytes:
        doc = {
            "format": FORMAT,
            "observer": encode_key(self.observer),
            "subject": encode_key(self.subject),
            "contributed": self.contributed,
            "consumed": self.consumed,
            "start": self.start,
            "at": self.at,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def sign(self, static_private: bytes) -> dict[str, str]:
        text = self.canonical()
        signature = signing_key(static_private).sign(SIGNED_PREFIX + text)
        return {"statement": text.decode(), "signature": base64.b64encode(signature).decode()}


def _int(doc: dict[str, Any], name: str, low: int) -> int:
    v = doc.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= MAX_COUNT:
        raise StatementError(f"statement member {name!r} must be an integer from {low} to 2^62")
    return v


def parse(text: str) -> Statement:
    """A statement from its canonical JSON; StatementError unless it is exactly canonical."""
    if len(text) > MAX_STATEMENT:
        raise StatementError(f"statement longer than {MAX_STATEMENT} bytes")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StatementError(f"statement is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StatementError(f"statement must be an object with format {FORMAT}")
    if set(doc) != {"format", "observer", "subject", "contributed", "consumed", "start", "at"}:
        raise StatementError("statement members must be format, observer, subject, contributed, consumed, start, at")
    try:
        observer, subject = decode_key(doc["observer"]), decode_key(doc["subject"])
    except (ValueError, TypeError) as exc:
        raise StatementError(f"statement key: {exc}") from None
    st = Statement(
        observer,
        subject,
        _int(doc, "contributed", 0),
        _int(doc, "consumed", 0),
        _int(doc, "start", 1),
        _int(doc, "at", 0),
    )
    if st.canonical() != text.encode():
        raise StatementError("statement is not in canonical form (sorted keys, no spaces)")
    return st


def verify(signed: Any, signing_keys: dict[bytes, bytes]) -> Statement:
    """The statement in `signed` ({"statement", "signature"}) once its signature verifies with
    the signing key known for its observer (static key -> Ed25519 public key)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(signed, dict) or set(signed) != {"statement", "signature"}:
        raise StatementError('a signed statement is {"statement": ..., "signature": ...}')
    if not isinstance(signed["statement"], str) or not isinstance(signed["signature"], str):
        raise StatementError("statement and signature must be strings")
    st = parse(signed["statement"])
    key = signing_keys.get(st.observer)
    if key is None:
        raise UnknownObserver(f"no signing key known for observer {encode_key(st.observer)}")
    try:
        signature = base64.b64decode(signed["signature"], validate=True)
        Ed25519PublicKey.from_public_bytes(key).verify(signature, SIGNED_PREFIX + signed["statement"].encode())
    except (binascii.Error, ValueError, InvalidSignature):
        raise StatementError(
            f"signature does not verify with observer {encode_key(st.observer)}'s signing key"
        ) from None
    return st
