"""The vault's messages (docs/vault.md section 2): encoding, decoding and the error codes."""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from pooltools.common import jsonmsg
from pooltools.common.jsonmsg import Kind, Refusal, member

# Part of the vault's message API, from the shared JSON message helpers.
UnsupportedFormat = jsonmsg.UnsupportedFormat
int_member = jsonmsg.int_member

CHANNEL = 86
FORMAT = 1
MAX_MESSAGE = jsonmsg.MAX_MESSAGE
BLOCK_SIZE_MIN = 4096
BLOCK_SIZE_MAX = 65024
BLOCK_HEADER = struct.Struct(">Q32s")
KINDS = frozenset(Kind)
VaultError = Refusal  # every vault refusal carries one of the codes of Err


class Err(enum.StrEnum):
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNKNOWN_OP = "unknown_op"
    NOT_ENROLLED = "not_enrolled"
    REVOKED = "revoked"
    DENIED = "denied"
    BAD_PATH = "bad_path"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    BUSY = "busy"
    BAD_BLOCK = "bad_block"
    BAD_HASH = "bad_hash"
    IO_ERROR = "io_error"


@dataclass(frozen=True)
class Message:
    kind: Kind
    header: dict[str, Any]  # REQUEST and REPLY
    index: int = 0  # BLOCK
    sha256: bytes = b""  # BLOCK: the digest the sender claims
    payload: bytes = b""  # BLOCK

    def block_ok(self) -> bool:
        return hashlib.sha256(self.payload).digest() == self.sha256


def request(op: str, **members: Any) -> bytes:
    return jsonmsg.json_message(FORMAT, Kind.REQUEST, {"op": op, **members})


def reply(header: dict[str, Any]) -> bytes:
    return jsonmsg.json_message(FORMAT, Kind.REPLY, header)


def ok(**members: Any) -> bytes:
    return reply({"ok": True, **members})


def block(index: int, data: bytes) -> bytes:
    return (
        jsonmsg.PREFIX.pack(FORMAT, Kind.BLOCK, BLOCK_HEADER.size)
        + BLOCK_HEADER.pack(index, hashlib.sha256(data).digest())
        + data
    )


def reply_size(header: dict[str, Any]) -> int:
    """Bytes the REPLY with this header takes (to fill a list reply up to MAX_MESSAGE)."""
    return jsonmsg.PREFIX.size + len(jsonmsg.dump(header))


def decode(msg: bytes) -> Message:
    """One vault message; a bad_request or unsupported_format Refusal naming what is wrong."""
    kind, head, payload = jsonmsg.split(msg, FORMAT, KINDS)
    if kind == Kind.BLOCK:
        if len(head) != BLOCK_HEADER.size:
            raise VaultError(Err.BAD_REQUEST, f"BLOCK header of {len(head)} bytes, not {BLOCK_HEADER.size}")
        index, digest = BLOCK_HEADER.unpack(head)
        return Message(Kind.BLOCK, {}, index, digest, payload)
    return Message(Kind(kind), jsonmsg.json_header(kind, head, payload))


# ---- header members, checked


def sha256_member(header: dict[str, Any], name: str, default: Any = ...) -> str:
    value = member(header, name, str, default)
    if value is not default and not is_sha256(value):
        raise VaultError(Err.BAD_REQUEST, f"'{name}' must be 64 lower-case hexadecimal digits")
    return value


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def blocks_of(size: int, block_size: int) -> int:
    return -(-size // block_size)


def block_length(size: int, block_size: int, index: int) -> int:
    """The length block index of a file of size bytes must have."""
    return min(block_size, size - index * block_size)
