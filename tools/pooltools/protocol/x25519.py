"""Pure-Python X25519 (RFC 7748), standard library only.

Slow (a few milliseconds per scalar multiplication) but enough for key
generation and tests on nodes without the ``cryptography`` package. The
reference peer uses ``cryptography`` for speed.
"""

from __future__ import annotations

import os

__all__ = ["KEY_LEN", "clamp", "generate_private", "public_key", "x25519"]

KEY_LEN = 32
_P = 2**255 - 19
_A24 = 121665
_BASE = (9).to_bytes(32, "little")


def _check(name: str, value: bytes) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != KEY_LEN:
        raise ValueError(f"{name} must be {KEY_LEN} bytes, got {len(value)}")


def clamp(scalar: bytes) -> bytes:
    """Return the RFC 7748 clamped form of a 32-byte scalar."""
    _check("scalar", scalar)
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def _decode_scalar(k: bytes) -> int:
    return int.from_bytes(clamp(k), "little")


def _decode_u(u: bytes) -> int:
    b = bytearray(u)
    b[31] &= 127  # RFC 7748 5: mask the most significant bit
    return int.from_bytes(b, "little") % _P


def _ladder(k: int, u: int) -> int:
    x1 = u
    x2, z2 = 1, 0
    x3, z3 = u, 1
    swap = 0
    for t in reversed(range(255)):
        k_t = (k >> t) & 1
        swap ^= k_t
        if swap:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = k_t
        a = (x2 + z2) % _P
        aa = a * a % _P
        b = (x2 - z2) % _P
        bb = b * b % _P
        e = (aa - bb) % _P
        c = (x3 + z3) % _P
        d = (x3 - z3) % _P
        da = d * a % _P
        cb = c * b % _P
        x3 = (da + cb) % _P
        x3 = x3 * x3 % _P
        z3 = (da - cb) % _P
        z3 = x1 * (z3 * z3 % _P) % _P
        x2 = aa * bb % _P
        z2 = e * ((aa + _A24 * e) % _P) % _P
    if swap:
        x2, x3 = x3, x2
        z2, z3 = z3, z2
    return x2 * pow(z2, _P - 2, _P) % _P


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519(private, public); raises ValueError on an all-zero (low-order) result."""
    _check("private key", private)
    _check("public key", public)
    out = _ladder(_decode_scalar(bytes(private)), _decode_u(bytes(public))).to_bytes(32, "little")
    if out == bytes(32):
        raise ValueError("X25519 result is all zero: the public key is a low-order point")
    return out


def generate_private() -> bytes:
    """A new clamped 32-byte private key from os.urandom."""
    return clamp(os.urandom(KEY_LEN))


def public_key(private: bytes) -> bytes:
    """The public key (u-coordinate) of a private key."""
    return x25519(private, _BASE)
