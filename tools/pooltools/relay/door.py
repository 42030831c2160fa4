"""The local door (docs/relay.md sections 1 and 3): which peer a locally started handshake is for."""

from __future__ import annotations

from collections.abc import Iterable

from pooltools.protocol import wire
from pooltools.protocol.primitives import check_mac, mac_key

INIT_PACKET = wire.HEADER_LEN + wire.INIT_LEN


class NotAnInit(ValueError):
    """The connection did not start with a well-formed INIT."""


def destination(packet: bytes, candidates: Iterable[bytes]) -> bytes | None:
    """The static key, among candidates, whose header MAC key authenticates this INIT; None if none.

    `packet` is the first INIT_PACKET bytes of the connection.
    """
    if len(packet) != INIT_PACKET:
        raise NotAnInit(f"{len(packet)} bytes, an INIT is {INIT_PACKET}")
    try:
        header = wire.Header.decode(packet[: wire.HEADER_LEN])
    except wire.WireError as exc:
        raise NotAnInit(str(exc)) from None
    if header.type != wire.PacketType.INIT or header.payload_len != wire.INIT_LEN:
        raise NotAnInit(f"packet type {header.type} of {header.payload_len} bytes, not an INIT")
    payload = packet[wire.HEADER_LEN :]
    for key in candidates:
        if check_mac(mac_key(key), header, payload):
            return key
    return None
