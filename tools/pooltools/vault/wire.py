"""The vault's messages (docs/vault.md section 2): encoding, decoding and the error codes."""

from __future__ import annotations

import enum
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

CHANNEL = 86
FORMAT = 1
MAX_MESSAGE = 65519  # POOL's largest DATA message (docs/protocol.md)
BLOCK_SIZE_MIN = 4096
BLOCK_SIZE_MAX = 65024
BLOCK_HEADER = struct.Struct(">Q32s")
_PREFIX = struct.Struct(">BBH")


class Kind(enum.IntEnum):
    REQUEST = 1
    REPLY = 2
    BLOCK = 3


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


class VaultError(Exception):
    """A refusal with its docs/vault.md error code; the server sends it as a REPLY."""

    def __init__(self, code: Err, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail

    def reply(self) -> dict[str, Any]:
        return {"ok": False, "error": self.code.value, "detail": self.detail}


class UnsupportedFormat(VaultError):
    def __init__(self, fmt: int) -> None:
        super().__init__(Err.UNSUPPORTED_FORMAT, f"message format {fmt}; this server speaks format {FORMAT}")

    def reply(self) -> dict[str, Any]:
        return {**super().reply(), "formats": [FORMAT]}


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
    return _json_message(Kind.REQUEST, {"op": op, **members})


def reply(header: dict[str, Any]) -> bytes:
    return _json_message(Kind.REPLY, header)


def ok(**members: Any) -> bytes:
    return reply({"ok": True, **members})


def block(index: int, data: bytes) -> bytes:
    return (
        _PREFIX.pack(FORMAT, Kind.BLOCK, BLOCK_HEADER.size)
        + BLOCK_HEADER.pack(index, hashlib.sha256(data).digest())
        + data
    )


def reply_size(header: dict[str, Any]) -> int:
    """Bytes the REPLY with this header takes (to fill a list reply up to MAX_MESSAGE)."""
    return _PREFIX.size + len(_dump(header))


def _dump(header: dict[str, Any]) -> bytes:
    # ASCII: a lone surrogate (which has no UTF-8 form) travels escaped and is refused by name
    return json.dumps(header, separators=(",", ":")).encode()


def _json_message(kind: Kind, header: dict[str, Any]) -> bytes:
    body = _dump(header)
    if _PREFIX.size + len(body) > MAX_MESSAGE:
        raise ValueError(f"{kind.name} header of {len(body)} bytes does not fit one message")
    return _PREFIX.pack(FORMAT, kind, len(body)) + body


def decode(msg: bytes) -> Message:
    """One vault message; VaultError(BAD_REQUEST) or UnsupportedFormat naming what is wrong."""
    if len(msg) < _PREFIX.size:
        raise VaultError(Err.BAD_REQUEST, f"message of {len(msg)} bytes is shorter than the 4-byte prefix")
    fmt, kind, hlen = _PREFIX.unpack_from(msg)
    if fmt != FORMAT:
        raise UnsupportedFormat(fmt)
    if kind not in Kind._value2member_map_:
        raise VaultError(Err.BAD_REQUEST, f"unknown message kind {kind}")
    if _PREFIX.size + hlen > len(msg):
        raise VaultError(Err.BAD_REQUEST, f"header_len {hlen} runs past the message's {len(msg)} bytes")
    head = msg[_PREFIX.size : _PREFIX.size + hlen]
    payload = msg[_PREFIX.size + hlen :]
    if kind == Kind.BLOCK:
        if hlen != BLOCK_HEADER.size:
            raise VaultError(Err.BAD_REQUEST, f"BLOCK header of {hlen} bytes, not {BLOCK_HEADER.size}")
        index, digest = BLOCK_HEADER.unpack(head)
        return Message(Kind.BLOCK, {}, index, digest, bytes(payload))
    if payload:
        raise VaultError(Err.BAD_REQUEST, f"{Kind(kind).name} with {len(payload)} bytes after its header")
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VaultError(Err.BAD_REQUEST, f"header is not JSON in UTF-8: {exc}") from None
    if not isinstance(header, dict):
        raise VaultError(Err.BAD_REQUEST, "header is not a JSON object")
    return Message(Kind(kind), header)


# ---- header members, checked


def member(
    header: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ..., *, what: str = ""
) -> Any:
    """header[name], of type kind; BAD_REQUEST naming it if missing (and no default) or mistyped."""
    if name not in header:
        if default is ...:
            raise VaultError(Err.BAD_REQUEST, f"{what or 'request'} has no '{name}'")
        return default
    value = header[name]
    # bool is an int in Python; JSON true is not a number
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise VaultError(Err.BAD_REQUEST, f"'{name}' must be {_type_name(kind)}, not a boolean")
    if not isinstance(value, kind):
        raise VaultError(Err.BAD_REQUEST, f"'{name}' must be {_type_name(kind)}, not {type(value).__name__}")
    return value


def int_member(header: dict[str, Any], name: str, lo: int, hi: int, default: Any = ...) -> int:
    value = member(header, name, int, default)
    if not lo <= value <= hi:
        raise VaultError(Err.BAD_REQUEST, f"'{name}' {value} is outside {lo}..{hi}")
    return value


def sha256_member(header: dict[str, Any], name: str, default: Any = ...) -> str:
    value = member(header, name, str, default)
    if value is not default and not is_sha256(value):
        raise VaultError(Err.BAD_REQUEST, f"'{name}' must be 64 lower-case hexadecimal digits")
    return value


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def blocks_of(size: int, block_size: int) -> int:
    return -(-size // block_size)


def block_length(size: int, block_size: int, index: int) -> int:
    """The length block index of a file of size bytes must have."""
    return min(block_size, size - index * block_size)
