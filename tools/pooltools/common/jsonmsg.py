"""The services' message layout (docs/vault.md section 2, docs/relay.md section 4).

    u8 format | u8 kind | be16 header_len | header | payload

REQUEST and REPLY carry a JSON object as header and no payload; a service may add kinds of its
own (the vault's BLOCK). Refusals carry a service's documented error code and travel back as a
REPLY `{"ok": false, "error": CODE, "detail": TEXT}`.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

MAX_MESSAGE = 65519  # POOL's largest DATA message (docs/protocol.md)
PREFIX = struct.Struct(">BBH")
BAD_REQUEST = "bad_request"


class Kind(enum.IntEnum):
    REQUEST = 1
    REPLY = 2
    BLOCK = 3  # the vault's


class Refusal(Exception):
    """A refusal with its error code (a string the service's document lists)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def reply(self) -> dict[str, Any]:
        return {"ok": False, "error": str(self.code), "detail": self.detail}


class UnsupportedFormat(Refusal):
    def __init__(self, fmt: int, supported: int) -> None:
        super().__init__("unsupported_format", f"message format {fmt}; this end speaks format {supported}")
        self.supported = supported

    def reply(self) -> dict[str, Any]:
        return {**super().reply(), "formats": [self.supported]}


def dump(header: dict[str, Any]) -> bytes:
    # ASCII: a lone surrogate (which has no UTF-8 form) travels escaped and is refused by name
    return json.dumps(header, separators=(",", ":")).encode()


def json_message(fmt: int, kind: int, header: dict[str, Any]) -> bytes:
    body = dump(header)
    if PREFIX.size + len(body) > MAX_MESSAGE:
        raise ValueError(f"{Kind(kind).name} header of {len(body)} bytes does not fit one message")
    return PREFIX.pack(fmt, kind, len(body)) + body


def split(msg: bytes, fmt: int, kinds: frozenset[int]) -> tuple[int, bytes, bytes]:
    """(kind, header, payload) of a message of format fmt; a Refusal naming what is wrong."""
    if len(msg) < PREFIX.size:
        raise Refusal(BAD_REQUEST, f"message of {len(msg)} bytes is shorter than the 4-byte prefix")
    got, kind, hlen = PREFIX.unpack_from(msg)
    if got != fmt:
        raise UnsupportedFormat(got, fmt)
    if kind not in kinds:
        raise Refusal(BAD_REQUEST, f"unknown message kind {kind}")
    if PREFIX.size + hlen > len(msg):
        raise Refusal(BAD_REQUEST, f"header_len {hlen} runs past the message's {len(msg)} bytes")
    return kind, bytes(msg[PREFIX.size : PREFIX.size + hlen]), bytes(msg[PREFIX.size + hlen :])


def json_header(kind: int, head: bytes, payload: bytes) -> dict[str, Any]:
    """The JSON object of a REQUEST or REPLY, which has no payload."""
    if payload:
        raise Refusal(BAD_REQUEST, f"{Kind(kind).name} with {len(payload)} bytes after its header")
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refusal(BAD_REQUEST, f"header is not JSON in UTF-8: {exc}") from None
    if not isinstance(header, dict):
        raise Refusal(BAD_REQUEST, "header is not a JSON object")
    return header


# ---- header members, checked


def member(
    header: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ..., *, what: str = ""
) -> Any:
    """header[name], of type kind; bad_request naming it if missing (and no default) or mistyped."""
    if name not in header:
        if default is ...:
            raise Refusal(BAD_REQUEST, f"{what or 'request'} has no '{name}'")
        return default
    value = header[name]
    # bool is an int in Python; JSON true is not a number
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise Refusal(BAD_REQUEST, f"'{name}' must be {_type_name(kind)}, not a boolean")
    if not isinstance(value, kind):
        raise Refusal(BAD_REQUEST, f"'{name}' must be {_type_name(kind)}, not {type(value).__name__}")
    return value


def int_member(header: dict[str, Any], name: str, lo: int, hi: int, default: Any = ...) -> int:
    value = member(header, name, int, default)
    if not lo <= value <= hi:
        raise Refusal(BAD_REQUEST, f"'{name}' {value} is outside {lo}..{hi}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)
