"""256-bit POOL addresses (docs/protocol.md section 2).

    addr = be32(0x00010001) || be64(org) || be64(seg) || SHA-256(S)[0:8]
        || be32(CRC32(first 28 bytes))

Text form: 8 groups of 8 lowercase hex digits separated by ':'.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib

__all__ = ["ADDR_LEN", "ADDR_TYPE_VERSION", "address_fields", "format_address", "parse_address", "pool_address"]

ADDR_LEN = 32
ADDR_TYPE_VERSION = 0x00010001  # type 1 (node), version 1
_U64_MAX = 2**64 - 1
_TEXT = re.compile(r"[0-9a-fA-F]{8}(?::[0-9a-fA-F]{8}){7}")


def pool_address(public_key: bytes, org_id: int = 0, segment_id: int = 0) -> bytes:
    """The 32-byte POOL address of a static public key."""
    if not isinstance(public_key, (bytes, bytearray, memoryview)):
        raise TypeError(f"public key must be bytes, not {type(public_key).__name__}")
    if len(public_key) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(public_key)}")
    for name, value in (("org_id", org_id), ("segment_id", segment_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer")
        if not 0 <= value <= _U64_MAX:
            raise ValueError(f"{name} must be between 0 and 2^64-1, got {value}")
    node_id = hashlib.sha256(bytes(public_key)).digest()[:8]
    head = struct.pack(">IQQ", ADDR_TYPE_VERSION, org_id, segment_id) + node_id
    return head + struct.pack(">I", zlib.crc32(head) & 0xFFFFFFFF)


def format_address(addr: bytes) -> str:
    """Text form: "00010001:xxxxxxxx:..." (8 groups of 8 hex digits)."""
    if len(addr) != ADDR_LEN:
        raise ValueError(f"address must be {ADDR_LEN} bytes, got {len(addr)}")
    h = bytes(addr).hex()
    return ":".join(h[i : i + 8] for i in range(0, 64, 8))


def parse_address(text: str) -> bytes:
    """Parse the text form; ValueError on bad syntax, unknown type/version or a wrong checksum."""
    if not isinstance(text, str):
        raise TypeError(f"address must be a string, not {type(text).__name__}")
    t = text.strip()
    if not _TEXT.fullmatch(t):
        raise ValueError(f"address {text!r} is not 8 groups of 8 hex digits separated by ':'")
    raw = bytes.fromhex(t.replace(":", ""))
    (kind,) = struct.unpack(">I", raw[:4])
    if kind != ADDR_TYPE_VERSION:
        raise ValueError(f"address type/version is {kind:08x}, expected {ADDR_TYPE_VERSION:08x}")
    (crc,) = struct.unpack(">I", raw[28:])
    want = zlib.crc32(raw[:28]) & 0xFFFFFFFF
    if crc != want:
        raise ValueError(f"address checksum is {crc:08x}, expected {want:08x}")
    return raw


def address_fields(addr: bytes) -> tuple[int, int, bytes]:
    """(org_id, segment_id, node_id) of a 32-byte address."""
    if len(addr) != ADDR_LEN:
        raise ValueError(f"address must be {ADDR_LEN} bytes, got {len(addr)}")
    org, seg = struct.unpack(">QQ", bytes(addr[4:20]))
    return org, seg, bytes(addr[20:28])
