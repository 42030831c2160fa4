"""Text form of X25519 keys: standard base64 of 32 bytes (44 characters), like WireGuard."""

from __future__ import annotations

import base64
import binascii

__all__ = ["KEY_LEN", "decode_key", "encode_key"]

KEY_LEN = 32


def encode_key(b: bytes) -> str:
    """Base64 (44 characters) of a 32-byte key."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes, not {type(b).__name__}")
    if len(b) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes, got {len(b)}")
    return base64.b64encode(bytes(b)).decode("ascii")


def decode_key(s: str) -> bytes:
    """Parse a base64 key; ValueError naming the problem if it is not a usable 32-byte key."""
    if isinstance(s, (bytes, bytearray)):
        try:
            s = bytes(s).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("key is not valid base64: non-ASCII characters") from None
    if not isinstance(s, str):
        raise TypeError(f"key must be a string, not {type(s).__name__}")
    text = s.strip()
    if not text:
        raise ValueError("key is empty")
    if len(text) != 44:
        raise ValueError(f"key must be 44 base64 characters (32 bytes), got {len(text)} characters")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key is not valid base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"key must decode to {KEY_LEN} bytes, got {len(raw)}")
    if raw == bytes(KEY_LEN):
        raise ValueError("key is all zero")
    return raw
