"""Header framing checks and payload layouts (docs/protocol.md sections 1, 3 and 4)."""

from __future__ import annotations

import pytest
from pooltools.protocol import wire
from pooltools.protocol.wire import Flag, Header, MalformedError, PacketType


def enc(**kw: object) -> bytearray:
    base: dict[str, object] = {"type": PacketType.DATA, "flags": Flag.ENCRYPTED, "seq": 7, "payload_len": 20}
    base.update(kw)
    return bytearray(Header(**base).encode())  # type: ignore[arg-type]


def test_round_trip_layout() -> None:
    h = Header(
        type=PacketType.HEARTBEAT,
        flags=Flag.ENCRYPTED | Flag.TELEMETRY,
        seq=0x0102030405060708,
        ack=0x1112131415161718,
        session_id=bytes(range(16)),
        timestamp=0x2122232425262728,
        payload_len=60,
        channel=0x41,
        mac=b"\xee" * 32,
    )
    raw = h.encode()
    assert len(raw) == wire.HEADER_LEN
    assert raw[0] == 0x15 and raw[1] == 0 and raw[2:4] == b"\x00\x41"
    assert raw[4:12] == bytes.fromhex("0102030405060708")
    assert raw[12:20] == bytes.fromhex("1112131415161718")
    assert raw[20:36] == bytes(range(16))
    assert raw[36:44] == bytes.fromhex("2122232425262728")
    assert raw[44:46] == b"\x00\x3c" and raw[46] == 0x41 and raw[47] == 0
    assert raw[48:80] == b"\xee" * 32
    assert Header.decode(raw) == h
    assert h.encode_unmacced()[48:] == bytes(32)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.__setitem__(0, 0x23), "version"),
        (lambda r: r.__setitem__(0, 0x03), "version"),
        (lambda r: r.__setitem__(1, 1), "reserved byte 1"),
        (lambda r: r.__setitem__(47, 1), "reserved byte 47"),
        (lambda r: r.__setitem__(0, 0x1D), "type"),
        (lambda r: r.__setitem__(2, 0x04), "flags"),
        (lambda r: r.__setitem__(slice(44, 46), b"\x00\x0f"), "payload length"),
    ],
)
def test_framing_errors_name_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = enc()
    mutate(raw)
    with pytest.raises(MalformedError) as e:
        Header.decode(bytes(raw))
    assert e.value.field == field
    assert e.value.code == wire.ErrorCode.MALFORMED


def test_truncated_header() -> None:
    with pytest.raises(MalformedError, match="truncated"):
        Header.decode(bytes(enc())[:79])


@pytest.mark.parametrize(
    ("ptype", "flags", "good", "bad"),
    [
        (PacketType.INIT, 0, [40], [0, 39, 41, 56]),
        (PacketType.CHALLENGE, 0, [40], [41]),
        (PacketType.RESPONSE, 0, [128], [127, 144]),
        (PacketType.ACK, 0, [48], [32, 49]),
        (PacketType.CLOSE, 0, [2], [0, 18]),
        (PacketType.ACK, Flag.ENCRYPTED, [32], [16, 48]),
        (PacketType.CLOSE, Flag.ENCRYPTED, [18], [2, 16]),
        (PacketType.HEARTBEAT, Flag.ENCRYPTED | Flag.TELEMETRY, [60], [59, 61]),
        (PacketType.REKEY, Flag.ENCRYPTED, [56], [40, 57]),
        (PacketType.CONFIG, Flag.ENCRYPTED, [100], [84]),
        (PacketType.ROLLBACK, Flag.ENCRYPTED, [88], [72]),
        (PacketType.DATA, Flag.ENCRYPTED, [16, 17, 65535], [0, 15]),
        (PacketType.WINDOW, Flag.ENCRYPTED, [32], [16, 31, 33]),
    ],
)
def test_payload_lengths(ptype: int, flags: int, good: list[int], bad: list[int]) -> None:
    for n in good:
        Header(type=ptype, flags=flags, payload_len=n).encode()
    for n in bad:
        with pytest.raises(MalformedError, match="payload length"):
            Header(type=ptype, flags=flags, payload_len=n).encode()


def test_reserved_types_and_flags_are_refused() -> None:
    """Only ENCRYPTED, and TELEMETRY on a HEARTBEAT, have a meaning; DISCOVER and JOURNAL none."""
    for ptype in (PacketType.DISCOVER, PacketType.JOURNAL):
        with pytest.raises(MalformedError, match="reserved"):
            Header(type=ptype, flags=Flag.ENCRYPTED, payload_len=16).encode()
    for flag in Flag:
        if flag in (Flag.NONE, Flag.ENCRYPTED):
            continue
        with pytest.raises(MalformedError, match="reserved bits"):
            Header(type=PacketType.DATA, flags=Flag.ENCRYPTED | flag, payload_len=16).encode()
    Header(type=PacketType.HEARTBEAT, flags=Flag.ENCRYPTED | Flag.TELEMETRY, payload_len=60).encode()
    with pytest.raises(MalformedError, match="reserved bits"):
        Header(type=PacketType.HEARTBEAT, flags=Flag.ENCRYPTED | Flag.PRIORITY, payload_len=60).encode()


def test_window_codec() -> None:
    w = wire.Window(consumed=(1 << 40) + 5, window=wire.FLOW_WINDOW)
    assert wire.Window.decode(w.encode()) == w
    with pytest.raises(wire.WireError, match="reserved"):
        wire.Window.decode(w.encode()[:12] + b"\x00\x00\x00\x01")
    with pytest.raises(wire.WireError, match="above"):
        wire.Window.decode(w.encode()[:8] + (wire.FLOW_MAX_WINDOW + 1).to_bytes(4, "big") + bytes(4))


def test_shapes() -> None:
    with pytest.raises(MalformedError, match="never encrypted"):
        Header(type=PacketType.INIT, flags=Flag.ENCRYPTED, payload_len=56).encode()
    with pytest.raises(MalformedError, match="must have ENCRYPTED"):
        Header(type=PacketType.DATA, payload_len=16).encode()
    with pytest.raises(MalformedError, match="must be zero"):
        Header(type=PacketType.INIT, flags=Flag.PRIORITY, payload_len=40).encode()
    for f in ("seq", "ack", "channel"):
        with pytest.raises(MalformedError) as e:
            Header(type=PacketType.INIT, payload_len=40, **{f: 1}).encode()
        assert e.value.field in ("sequence", "acknowledgment", "channel")
    # check=False writes it anyway (fuzzing)
    assert len(Header(type=PacketType.INIT, payload_len=3).encode(check=False)) == 80


def test_field_range_errors() -> None:
    with pytest.raises(wire.WireError, match="sequence"):
        Header(type=PacketType.DATA, flags=1, seq=2**64, payload_len=16).encode()
    with pytest.raises(wire.WireError, match="session id"):
        Header(type=PacketType.DATA, flags=1, session_id=b"x", payload_len=16).encode()


def test_payload_codecs() -> None:
    e = bytes(range(32))
    assert wire.Init.decode(wire.Init(e, 5).encode()) == wire.Init(e, 5)
    assert len(wire.Init(e, 5).encode()) == 40
    ch = wire.Challenge(e, 16)
    assert wire.Challenge.decode(ch.encode()) == ch and ch.encode()[32:] == b"\x10" + bytes(7)
    r = wire.Response(e, 1, 2, b"s" * 48, b"p" * 32)
    assert wire.Response.decode(r.encode()) == r and len(r.encode()) == 128
    a = wire.HsAck(e, b"c" * 16)
    assert wire.HsAck.decode(a.encode()) == a and len(a.encode()) == 48
    t = wire.Telemetry(1, 2, 3, 4, 1500, 6, 7, 8, 9)
    raw = t.encode()
    assert len(raw) == 44 and wire.Telemetry.decode(raw) == t
    assert raw[:8] == (1).to_bytes(8, "big") and raw[24:26] == (1500).to_bytes(2, "big")
    assert wire.AckEcho.decode(wire.AckEcho(3, 4).encode()) == wire.AckEcho(3, 4)
    assert wire.decode_close(wire.encode_close(wire.ErrorCode.OVERLOAD)) == 9
    rk = wire.Rekey(wire.RekeyKind.REPLY, 7, e)
    assert wire.Rekey.decode(rk.encode()) == rk and rk.encode()[:8] == b"\x02\x00\x00\x00\x00\x00\x00\x07"
    cfg = wire.ConfigAnnounce(2, 1, b"h" * 32, b"p" * 32, 99, wire.CONFIG_TENTATIVE)
    assert wire.ConfigAnnounce.decode(cfg.encode()) == cfg and len(cfg.encode()) == 84
    rb = wire.RollbackAnnounce(1, b"a" * 32, 2, b"b" * 32)
    assert wire.RollbackAnnounce.decode(rb.encode()) == rb and len(rb.encode()) == 72


def test_payload_errors() -> None:
    with pytest.raises(wire.WireError, match="INIT payload"):
        wire.Init.decode(b"short")
    with pytest.raises(wire.WireError, match="CHALLENGE padding"):
        wire.Challenge.decode(bytes(39) + b"\x01")
    with pytest.raises(wire.WireError, match="REKEY kind"):
        wire.Rekey.decode(b"\x09" + bytes(39))
    with pytest.raises(wire.WireError, match="SWITCH"):
        wire.Rekey.decode(b"\x03" + bytes(7) + b"\x01" * 32)
    with pytest.raises(wire.WireError, match="CLOSE code"):
        wire.encode_close(70000)
