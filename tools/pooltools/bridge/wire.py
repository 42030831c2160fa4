"""The bridge's messages (docs/bridge.md section 2): one frame per POOL message.

A frame is `type` (1 byte), `stream` (4 bytes, big-endian) and a payload whose form the type
fixes. decode() checks everything a frame alone can tell and raises FrameError naming what is
wrong; what depends on a stream's state (credit, a known stream) is the multiplexer's.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum

# Channels of the session poold holds: frames to a node's bridge server, and to its clients.
SERVER_CHANNEL = 88
CLIENT_CHANNEL = 89

HEADER = struct.Struct(">BI")
MAX_MESSAGE = 65519  # pool.ko's largest message
MAX_DATA = MAX_MESSAGE - HEADER.size
WINDOW = 256 * 1024  # credit each side holds for a stream when it opens
MAX_REASON = 200
SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class Type(IntEnum):
    OPEN = 1  # client -> server: payload the service's name
    ACCEPTED = 2  # server -> client: empty
    REFUSED = 3  # server -> client: payload the reason (UTF-8)
    DATA = 4  # either way: 1 to MAX_DATA bytes, within the credit the receiver granted
    CREDIT = 5  # either way: 4-byte big-endian increment, at least 1
    EOF = 6  # either way: the sender's side will send no more DATA
    RESET = 7  # either way: the stream ends now; payload the reason (UTF-8)


class FrameError(ValueError):
    """A message that is not a frame of this protocol."""


@dataclass(frozen=True)
class Frame:
    type: Type
    stream: int
    payload: bytes = b""

    @property
    def credit(self) -> int:
        return struct.unpack(">I", self.payload)[0]

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


def encode(kind: Type, stream: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, stream) + payload


def credit(stream: int, increment: int) -> bytes:
    return encode(Type.CREDIT, stream, struct.pack(">I", increment))


def reason(kind: Type, stream: int, why: str) -> bytes:
    """REFUSED or RESET with its reason, cut to MAX_REASON bytes on a character boundary."""
    return encode(kind, stream, why.encode()[:MAX_REASON].decode(errors="ignore").encode())


def decode(message: bytes) -> Frame:
    if len(message) < HEADER.size:
        raise FrameError(f"{len(message)} bytes: shorter than the {HEADER.size}-byte header")
    kind, stream = HEADER.unpack_from(message)
    payload = message[HEADER.size :]
    try:
        kind = Type(kind)
    except ValueError:
        raise FrameError(f"unknown type {kind}") from None
    if stream == 0:
        raise FrameError("stream 0")
    if kind is Type.OPEN:
        if not SERVICE_NAME.fullmatch(payload.decode("ascii", errors="replace")):
            raise FrameError(
                "OPEN: the service name must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit"
            )
    elif kind in (Type.ACCEPTED, Type.EOF):
        if payload:
            raise FrameError(f"{kind.name} carries {len(payload)} bytes; it carries none")
    elif kind is Type.DATA:
        if not payload:
            raise FrameError("DATA without data")
    elif kind is Type.CREDIT:
        if len(payload) != 4 or struct.unpack(">I", payload)[0] == 0:
            raise FrameError("CREDIT must carry a 4-byte increment of at least 1")
    elif len(payload) > MAX_REASON:  # REFUSED, RESET
        raise FrameError(f"{kind.name}: a reason of {len(payload)} bytes (at most {MAX_REASON})")
    return Frame(kind, stream, payload)
