"""The relay's control messages on channel 87 (docs/relay.md section 4)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pooltools.common import jsonmsg
from pooltools.common.jsonmsg import Kind, Refusal, int_member, member
from pooltools.config import conf
from pooltools.protocol.keys import decode_key, encode_key

CHANNEL = 87
FORMAT = 1
PORT = 9255  # the relay port (the exporter keeps 9254)
DOOR_PORT = conf.RELAY_DOOR.port  # the local door, on the loopback only
TICKET_BYTES = 32
TICKET_SECONDS = 10
KINDS = frozenset({Kind.REQUEST, Kind.REPLY})


class Err(enum.StrEnum):
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNKNOWN_OP = "unknown_op"
    RELAY_DISABLED = "relay_disabled"
    NOT_ENROLLED = "not_enrolled"
    NOT_ACCEPTED = "not_accepted"
    UNREACHABLE = "unreachable"
    BUSY = "busy"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Open:
    to: bytes  # the destination's static key


@dataclass(frozen=True)
class Offer:
    source: bytes  # the source's static key ("from")


@dataclass(frozen=True)
class Scores:
    signing_key: bytes  # the sender's Ed25519 public key (statements.py)
    statements: tuple[dict[str, str], ...]  # signed statements, checked by the receiver


MAX_STATEMENTS = 64


@dataclass(frozen=True)
class Status:
    pass


Request = Open | Offer | Scores | Status


@dataclass(frozen=True)
class Ticket:
    ticket: bytes
    port: int
    expires_in: int


def encode(req: Request) -> bytes:
    if isinstance(req, Open):
        header: dict[str, Any] = {"op": "open", "to": encode_key(req.to)}
    elif isinstance(req, Offer):
        header = {"op": "offer", "from": encode_key(req.source)}
    elif isinstance(req, Scores):
        header = {"op": "scores", "signing_key": encode_key(req.signing_key), "statements": list(req.statements)}
    else:
        header = {"op": "status"}
    return jsonmsg.json_message(FORMAT, Kind.REQUEST, header)


def reply(header: dict[str, Any]) -> bytes:
    return jsonmsg.json_message(FORMAT, Kind.REPLY, header)


def ticket_reply(t: Ticket) -> bytes:
    return reply({"ok": True, "ticket": t.ticket.hex(), "port": t.port, "expires_in": t.expires_in})


def _key(header: dict[str, Any], name: str) -> bytes:
    text = member(header, name, str)
    try:
        return decode_key(text)
    except ValueError as exc:
        raise Refusal(Err.BAD_REQUEST, f"'{name}': {exc}") from None


def decode_request(msg: bytes) -> Request:
    """One control request; a Refusal (bad_request, unsupported_format, unknown_op) naming what is wrong."""
    kind, head, payload = jsonmsg.split(msg, FORMAT, KINDS)
    header = jsonmsg.json_header(kind, head, payload)
    if kind != Kind.REQUEST:
        raise Refusal(Err.BAD_REQUEST, f"a {Kind(kind).name} where a REQUEST was expected")
    op = member(header, "op", str)
    if op == "open":
        return Open(_key(header, "to"))
    if op == "offer":
        return Offer(_key(header, "from"))
    if op == "status":
        return Status()
    if op == "scores":
        signed = member(header, "statements", list)
        if len(signed) > MAX_STATEMENTS:
            raise Refusal(Err.BAD_REQUEST, f"'statements': more than {MAX_STATEMENTS}")
        for i, one in enumerate(signed):
            if not isinstance(one, dict) or set(one) != {"statement", "signature"}:
                raise Refusal(Err.BAD_REQUEST, f"'statements'[{i}] must be an object of statement and signature")
            if not all(isinstance(v, str) for v in one.values()):
                raise Refusal(Err.BAD_REQUEST, f"'statements'[{i}]: statement and signature must be strings")
        return Scores(_key(header, "signing_key"), tuple(signed))
    raise Refusal(Err.UNKNOWN_OP, f"unknown op {op!r}")


def decode_reply(msg: bytes) -> dict[str, Any]:
    """A REPLY's header: {"ok": true, ...}, or a Refusal carrying the refusal it reports."""
    kind, head, payload = jsonmsg.split(msg, FORMAT, KINDS)
    header = jsonmsg.json_header(kind, head, payload)
    if kind != Kind.REPLY:
        raise Refusal(Err.BAD_REQUEST, f"a {Kind(kind).name} where a REPLY was expected")
    ok = member(header, "ok", bool, what="reply")
    if not ok:
        raise Refusal(member(header, "error", str, what="refusal"), member(header, "detail", str, "", what="refusal"))
    return header


def decode_ticket(msg: bytes) -> Ticket:
    header = decode_reply(msg)
    text = member(header, "ticket", str, what="reply")
    try:
        ticket = bytes.fromhex(text)
    except ValueError:
        ticket = b""
    if len(ticket) != TICKET_BYTES or text != ticket.hex():
        raise Refusal(Err.BAD_REQUEST, f"'ticket' must be {2 * TICKET_BYTES} lower-case hexadecimal digits")
    return Ticket(ticket, int_member(header, "port", 1, 65535), int_member(header, "expires_in", 1, 3600))
