"""X25519 (RFC 7748) keys and key agreement, done by ``cryptography`` (OpenSSL).

The nodes get it from Debian (python3-cryptography, installed by role pool.ops.node). It is
imported on first use, so that the parts of the tools that need no key (the codec, the
journal, the kernel binding) still import without it, and a tool that needs a key says
which package is missing instead of failing at import.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["KEY_LEN", "BackendMissing", "clamp", "generate_private", "public_key", "x25519"]

KEY_LEN = 32
_BASE = (9).to_bytes(32, "little")


class BackendMissing(ImportError):
    """python3-cryptography is not installed, and an X25519 operation needs it."""


def _backend() -> ModuleType:
    try:
        from cryptography.hazmat.primitives.asymmetric import x25519 as backend
    except ImportError as exc:
        raise BackendMissing(
            "X25519 keys need the 'cryptography' package, which is not installed"
            " (Debian: apt install python3-cryptography)",
            name="cryptography",
        ) from exc
    return backend


def _check(name: str, value: bytes) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) != KEY_LEN:
        raise ValueError(f"{name} must be {KEY_LEN} bytes, got {len(value)}")


def clamp(scalar: bytes) -> bytes:
    """The RFC 7748 clamped form of a 32-byte scalar (how the key is stored and shown;
    X25519 itself clamps whatever it is given)."""
    _check("scalar", scalar)
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519(private, public); ValueError on an all-zero (low-order) result."""
    _check("private key", private)
    _check("public key", public)
    backend = _backend()
    try:
        out = backend.X25519PrivateKey.from_private_bytes(bytes(private)).exchange(
            backend.X25519PublicKey.from_public_bytes(bytes(public))
        )
    except ValueError as exc:  # OpenSSL refuses an all-zero result itself
        raise ValueError("X25519 result is all zero: the public key is a low-order point") from exc
    if not any(out):
        raise ValueError("X25519 result is all zero: the public key is a low-order point")
    return out


def generate_private() -> bytes:
    """A new private key from the operating system's random source, in clamped form."""
    backend = _backend()
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = backend.X25519PrivateKey.generate()
    return clamp(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def public_key(private: bytes) -> bytes:
    """The public key (u-coordinate) of a private key."""
    _check("private key", private)
    backend = _backend()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = backend.X25519PrivateKey.from_private_bytes(bytes(private))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
