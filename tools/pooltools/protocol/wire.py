"""POOL/1 wire codec (docs/protocol.md sections 1 and 4), standard library only.

The 80-byte header, packet types, flags, error codes and every payload layout
as encode/decode functions. Nothing here does cryptography: see noise.py.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace

__all__ = [
    "ACK_ECHO_LEN",
    "CLOSE_CODE_MAX",
    "CLOSE_LEN",
    "CONFIG_LEN",
    "FLOW_INITIAL_WINDOW",
    "FLOW_MAX_WINDOW",
    "FLOW_MSG_COST",
    "FLOW_WINDOW",
    "HEADER_LEN",
    "HEARTBEAT_LEN",
    "HS_ACK_LEN",
    "MAC_LEN",
    "MAC_OFFSET",
    "MAX_MESSAGE",
    "MAX_PAYLOAD",
    "REKEY_LEN",
    "ROLLBACK_LEN",
    "TAG_LEN",
    "VERSION",
    "WINDOW_LEN",
    "AckEcho",
    "Challenge",
    "ConfigAnnounce",
    "ErrorCode",
    "Flag",
    "Header",
    "HsAck",
    "Init",
    "MalformedError",
    "PacketType",
    "Rekey",
    "RekeyKind",
    "Response",
    "RollbackAnnounce",
    "Telemetry",
    "Window",
    "WireError",
    "decode_close",
    "encode_close",
    "flow_cost",
    "payload_range",
]

VERSION = 1
HEADER_LEN = 80
MAC_OFFSET = 48
MAC_LEN = 32
TAG_LEN = 16
MAX_PAYLOAD = 65535
MAX_MESSAGE = MAX_PAYLOAD - TAG_LEN  # 65519
SESSION_ID_LEN = 16
KEY_LEN = 32


class PacketType(enum.IntEnum):
    INIT = 0x0
    CHALLENGE = 0x1
    RESPONSE = 0x2
    DATA = 0x3
    ACK = 0x4
    HEARTBEAT = 0x5
    REKEY = 0x6
    CLOSE = 0x7
    CONFIG = 0x8
    ROLLBACK = 0x9
    DISCOVER = 0xA  # reserved: no payload defined, framing refuses it
    JOURNAL = 0xB  # reserved, likewise
    WINDOW = 0xC


class Flag(enum.IntFlag):
    NONE = 0
    ENCRYPTED = 1 << 0
    COMPRESSED = 1 << 1
    PRIORITY = 1 << 2
    FRAGMENT = 1 << 3
    LAST_FRAG = 1 << 4
    REQUIRE_ACK = 1 << 5
    TELEMETRY = 1 << 6
    ROLLBACK_READY = 1 << 7
    CONFIG_LOCKED = 1 << 8
    JOURNAL_SYNC = 1 << 9


FLAGS_ALL = 0x03FF
# Only ENCRYPTED (every transport packet) and TELEMETRY (on a HEARTBEAT) have a meaning;
# framing refuses the other bits.
RESERVED_TYPES = frozenset({PacketType.DISCOVER, PacketType.JOURNAL})
# The highest code a CLOSE may carry; higher codes are local reasons.
CLOSE_CODE_MAX = 0xC


# CLOSE codes (sent) and local reasons (journaled, never sent). kmod/uapi/pool.h carries the
# same values as POOL_ERR_*; the ABI binding re-exports this enum and its test compares them.
class ErrorCode(enum.IntEnum):
    NONE = 0x0
    AUTH_FAIL = 0x1
    DECRYPT_FAIL = 0x2
    SEQ_INVALID = 0x3
    FRAG_TIMEOUT = 0x4
    MTU_EXCEEDED = 0x5
    CONFIG_REJECT = 0x6
    REKEY_FAIL = 0x7
    JOURNAL_FULL = 0x8
    OVERLOAD = 0x9
    VERSION_MISMATCH = 0xA
    KEY_EXPIRED = 0xB
    FLOW_VIOLATION = 0xC
    PEER_DEAD = 0x10
    LOCAL_CLOSE = 0x11
    UNKNOWN_PEER = 0x12
    BAD_PUZZLE = 0x13
    STALE_TIMESTAMP = 0x14
    REPLAY = 0x15
    MALFORMED = 0x16
    TIMEOUT = 0x17


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


class WireError(ValueError):
    """A packet or payload that cannot be encoded or decoded; `field` names the culprit."""

    code: ErrorCode = ErrorCode.MALFORMED

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class MalformedError(WireError):
    """Framing that cannot be trusted: the connection is closed (MALFORMED)."""


# Handshake payloads (plain), and transport plaintext sizes.
INIT_LEN = 40
CHALLENGE_LEN = 40
RESPONSE_LEN = 128
HS_ACK_LEN = 48
CLOSE_LEN = 2
HEARTBEAT_LEN = 44
ACK_ECHO_LEN = 16
REKEY_LEN = 40
CONFIG_LEN = 84
ROLLBACK_LEN = 72
WINDOW_LEN = 16

HANDSHAKE_TYPES = frozenset({PacketType.INIT, PacketType.CHALLENGE, PacketType.RESPONSE})
_HANDSHAKE_EXACT = {
    PacketType.INIT: INIT_LEN,
    PacketType.CHALLENGE: CHALLENGE_LEN,
    PacketType.RESPONSE: RESPONSE_LEN,
}
# Types that also exist unencrypted in the handshake (flags 0): the handshake ACK and CLOSE.
_PLAIN_EXACT = {PacketType.ACK: HS_ACK_LEN, PacketType.CLOSE: CLOSE_LEN}
# Exact transport plaintext sizes (checked after decryption).
PLAINTEXT_LEN = {
    PacketType.ACK: ACK_ECHO_LEN,
    PacketType.HEARTBEAT: HEARTBEAT_LEN,
    PacketType.REKEY: REKEY_LEN,
    PacketType.CLOSE: CLOSE_LEN,
    PacketType.CONFIG: CONFIG_LEN,
    PacketType.ROLLBACK: ROLLBACK_LEN,
    PacketType.WINDOW: WINDOW_LEN,
}


def payload_range(ptype: int, flags: int) -> tuple[int, int]:
    """(min, max) payload_len that framing accepts for a type and its flags.

    Two shapes exist. Handshake shape (ENCRYPTED clear): INIT 40, CHALLENGE 40,
    RESPONSE 128, ACK 48, CLOSE 2 exactly; other types cannot be unencrypted.
    Transport shape (ENCRYPTED set; never INIT, CHALLENGE, RESPONSE): the
    type's plaintext size + 16 for fixed-size types, 16..65535 for DATA.
    The reserved DISCOVER and JOURNAL have none. (0, -1) means "no valid length".
    """
    pt = PacketType(ptype)
    if not flags & Flag.ENCRYPTED:
        n = _HANDSHAKE_EXACT.get(pt, _PLAIN_EXACT.get(pt))
        return (n, n) if n is not None else (0, -1)
    if pt in _HANDSHAKE_EXACT or pt in RESERVED_TYPES:
        return 0, -1
    if pt in PLAINTEXT_LEN:
        n = PLAINTEXT_LEN[pt] + TAG_LEN
        return n, n
    return TAG_LEN, MAX_PAYLOAD


_HDR = struct.Struct(">BBHQQ16sQHBB32s")
assert _HDR.size == HEADER_LEN


def _u(name: str, value: int, bits: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(name, f"must be an integer, not {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise WireError(name, f"{value} does not fit in {bits} bits")


def _b(name: str, value: bytes, length: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise WireError(name, f"must be bytes, not {type(value).__name__}")
    if len(value) != length:
        raise WireError(name, f"must be {length} bytes, got {len(value)}")
    return bytes(value)


@dataclass(frozen=True)
class Header:
    """The 80-byte POOL/1 header, host-order values."""

    type: int
    flags: int = 0
    seq: int = 0
    ack: int = 0
    session_id: bytes = bytes(SESSION_ID_LEN)
    timestamp: int = 0
    payload_len: int = 0
    channel: int = 0
    mac: bytes = field(default=bytes(MAC_LEN), repr=False)

    def encode(self, *, check: bool = True) -> bytes:
        """80 bytes. With check=False any values that fit are written (for fuzzing)."""
        _u("type", self.type, 4)
        _u("flags", self.flags, 16)
        _u("sequence", self.seq, 64)
        _u("acknowledgment", self.ack, 64)
        sid = _b("session id", self.session_id, SESSION_ID_LEN)
        _u("timestamp", self.timestamp, 64)
        _u("payload length", self.payload_len, 16)
        _u("channel", self.channel, 8)
        mac = _b("HMAC", self.mac, MAC_LEN)
        if check:
            _check_framing(self.type, self.flags, self.payload_len, self.seq, self.ack, self.channel)
        return _HDR.pack(
            (VERSION << 4) | self.type,
            0,
            self.flags,
            self.seq,
            self.ack,
            sid,
            self.timestamp,
            self.payload_len,
            self.channel,
            0,
            mac,
        )

    def encode_unmacced(self) -> bytes:
        """The header as the HMAC covers it: MAC field zeroed."""
        return replace(self, mac=bytes(MAC_LEN)).encode()

    def with_mac(self, mac: bytes) -> Header:
        return replace(self, mac=mac)

    @property
    def iid(self) -> bytes:
        return self.session_id[:8]

    @property
    def rid(self) -> bytes:
        return self.session_id[8:]

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Parse and check framing (section 1); MalformedError naming the field otherwise."""
        if len(data) < HEADER_LEN:
            raise MalformedError("header", f"truncated: {len(data)} of {HEADER_LEN} bytes")
        vt, res1, flags, seq, ack, sid, ts, plen, chan, res2, mac = _HDR.unpack_from(data)
        version, ptype = vt >> 4, vt & 0x0F
        if version != VERSION:
            raise MalformedError("version", f"{version}, expected {VERSION}")
        if res1:
            raise MalformedError("reserved byte 1", f"0x{res1:02x}, must be zero")
        if res2:
            raise MalformedError("reserved byte 47", f"0x{res2:02x}, must be zero")
        _check_framing(ptype, flags, plen, seq, ack, chan)
        return cls(ptype, flags, seq, ack, sid, ts, plen, chan, mac)


def _check_framing(ptype: int, flags: int, plen: int, seq: int = 0, ack: int = 0, channel: int = 0) -> None:
    try:
        name = PacketType(ptype).name
    except ValueError:
        raise MalformedError("type", f"unknown packet type 0x{ptype:x}") from None
    if flags & ~FLAGS_ALL:
        raise MalformedError("flags", f"0x{flags:04x} has undefined bits 0x{flags & ~FLAGS_ALL:04x}")
    if not flags & Flag.ENCRYPTED:
        if ptype not in _HANDSHAKE_EXACT and ptype not in _PLAIN_EXACT:
            raise MalformedError("flags", f"{name} must have ENCRYPTED set")
        if flags:
            raise MalformedError("flags", f"0x{flags:04x} in an unencrypted (handshake) {name}, must be zero")
        for field_name, value in (("sequence", seq), ("acknowledgment", ack), ("channel", channel)):
            if value:
                raise MalformedError(field_name, f"{value} in a handshake {name}, must be zero")
    elif ptype in _HANDSHAKE_EXACT:
        raise MalformedError("flags", f"{name} is never encrypted")
    elif ptype in RESERVED_TYPES:
        raise MalformedError("type", f"{name} is reserved (no payload is defined)")
    else:
        allowed = Flag.ENCRYPTED | (Flag.TELEMETRY if ptype == PacketType.HEARTBEAT else 0)
        if flags & ~allowed:
            raise MalformedError("flags", f"0x{flags:04x} has reserved bits 0x{flags & ~allowed:04x} for {name}")
    lo, hi = payload_range(ptype, flags)
    if not lo <= plen <= hi:
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        raise MalformedError("payload length", f"{plen} outside {want} for {name}")


# ---- handshake payloads (section 3) ----


@dataclass(frozen=True)
class Init:
    ephemeral: bytes
    timestamp: int

    def encode(self) -> bytes:
        _u("INIT timestamp", self.timestamp, 64)
        return _b("INIT ephemeral", self.ephemeral, KEY_LEN) + struct.pack(">Q", self.timestamp)

    @classmethod
    def decode(cls, p: bytes) -> Init:
        _b("INIT payload", p, INIT_LEN)
        return cls(bytes(p[:32]), struct.unpack(">Q", p[32:40])[0])


@dataclass(frozen=True)
class Challenge:
    seed: bytes
    difficulty: int

    def encode(self) -> bytes:
        _u("CHALLENGE difficulty", self.difficulty, 8)
        return _b("CHALLENGE seed", self.seed, 32) + bytes([self.difficulty]) + bytes(7)

    @classmethod
    def decode(cls, p: bytes) -> Challenge:
        _b("CHALLENGE payload", p, CHALLENGE_LEN)
        if any(p[33:40]):
            raise WireError("CHALLENGE padding", "must be zero")
        return cls(bytes(p[:32]), p[32])


@dataclass(frozen=True)
class Response:
    ephemeral: bytes
    timestamp: int
    solution: int
    enc_static: bytes
    enc_proof: bytes

    def encode(self) -> bytes:
        _u("RESPONSE timestamp", self.timestamp, 64)
        _u("RESPONSE solution", self.solution, 64)
        return (
            _b("RESPONSE ephemeral", self.ephemeral, KEY_LEN)
            + struct.pack(">QQ", self.timestamp, self.solution)
            + _b("RESPONSE enc_static", self.enc_static, 48)
            + _b("RESPONSE enc_proof", self.enc_proof, 32)
        )

    @classmethod
    def decode(cls, p: bytes) -> Response:
        _b("RESPONSE payload", p, RESPONSE_LEN)
        ts, sol = struct.unpack(">QQ", p[32:48])
        return cls(bytes(p[:32]), ts, sol, bytes(p[48:96]), bytes(p[96:128]))


@dataclass(frozen=True)
class HsAck:
    ephemeral: bytes
    confirm: bytes

    def encode(self) -> bytes:
        return _b("ACK ephemeral", self.ephemeral, KEY_LEN) + _b("ACK confirm", self.confirm, 16)

    @classmethod
    def decode(cls, p: bytes) -> HsAck:
        _b("ACK payload", p, HS_ACK_LEN)
        return cls(bytes(p[:32]), bytes(p[32:48]))


# ---- transport plaintexts (section 4) ----

_TELEMETRY = struct.Struct(">QQIIHHQII")
assert _TELEMETRY.size == HEARTBEAT_LEN


@dataclass(frozen=True)
class Telemetry:
    rtt_ns: int = 0
    jitter_ns: int = 0
    loss_rate_ppm: int = 0
    throughput_bps: int = 0
    mtu: int = 0
    queue_depth: int = 0
    uptime_ns: int = 0
    rekey_count: int = 0
    config_version: int = 0

    def encode(self) -> bytes:
        for name, bits in (
            ("rtt_ns", 64),
            ("jitter_ns", 64),
            ("loss_rate_ppm", 32),
            ("throughput_bps", 32),
            ("mtu", 16),
            ("queue_depth", 16),
            ("uptime_ns", 64),
            ("rekey_count", 32),
            ("config_version", 32),
        ):
            _u(f"HEARTBEAT {name}", getattr(self, name), bits)
        return _TELEMETRY.pack(
            self.rtt_ns,
            self.jitter_ns,
            self.loss_rate_ppm,
            self.throughput_bps,
            self.mtu,
            self.queue_depth,
            self.uptime_ns,
            self.rekey_count,
            self.config_version,
        )

    @classmethod
    def decode(cls, p: bytes) -> Telemetry:
        _b("HEARTBEAT plaintext", p, HEARTBEAT_LEN)
        return cls(*_TELEMETRY.unpack(p))


@dataclass(frozen=True)
class AckEcho:
    seq: int
    timestamp: int

    def encode(self) -> bytes:
        _u("ACK sequence", self.seq, 64)
        _u("ACK timestamp", self.timestamp, 64)
        return struct.pack(">QQ", self.seq, self.timestamp)

    @classmethod
    def decode(cls, p: bytes) -> AckEcho:
        _b("ACK plaintext", p, ACK_ECHO_LEN)
        return cls(*struct.unpack(">QQ", p))


@dataclass(frozen=True)
class Window:
    """WINDOW (section 4a): DATA cost the receiver consumed, and the window it grants beyond."""

    consumed: int
    window: int

    def encode(self) -> bytes:
        _u("WINDOW consumed", self.consumed, 64)
        _u("WINDOW window", self.window, 32)
        if self.window > FLOW_MAX_WINDOW:
            raise WireError("WINDOW window", f"{self.window} above {FLOW_MAX_WINDOW}")
        return struct.pack(">QII", self.consumed, self.window, 0)

    @classmethod
    def decode(cls, p: bytes) -> Window:
        _b("WINDOW plaintext", p, WINDOW_LEN)
        consumed, window, reserved = struct.unpack(">QII", p)
        if reserved:
            raise WireError("WINDOW reserved", f"0x{reserved:08x}, must be zero")
        if window > FLOW_MAX_WINDOW:
            raise WireError("WINDOW window", f"{window} above {FLOW_MAX_WINDOW}")
        return cls(consumed, window)


# Flow control (section 4a).
FLOW_MSG_COST = 256
FLOW_INITIAL_WINDOW = 256 << 10
FLOW_WINDOW = 4 << 20
FLOW_MAX_WINDOW = 1 << 30


def flow_cost(length: int) -> int:
    """What a DATA of `length` plaintext bytes costs of the receiver's window."""
    return length + FLOW_MSG_COST


def encode_close(code: int) -> bytes:
    _u("CLOSE code", int(code), 16)
    return struct.pack(">H", int(code))


def decode_close(p: bytes) -> int:
    _b("CLOSE payload", p, CLOSE_LEN)
    return struct.unpack(">H", p)[0]


class RekeyKind(enum.IntEnum):
    INIT = 1
    REPLY = 2
    SWITCH = 3


@dataclass(frozen=True)
class Rekey:
    kind: int
    epoch: int
    ephemeral: bytes = bytes(KEY_LEN)

    def encode(self) -> bytes:
        _u("REKEY kind", self.kind, 8)
        _u("REKEY epoch", self.epoch, 32)
        return bytes([self.kind]) + bytes(3) + struct.pack(">I", self.epoch) + _b("REKEY ephemeral", self.ephemeral, 32)

    @classmethod
    def decode(cls, p: bytes) -> Rekey:
        _b("REKEY plaintext", p, REKEY_LEN)
        try:
            kind = RekeyKind(p[0])
        except ValueError:
            raise WireError("REKEY kind", f"unknown kind {p[0]}") from None
        if any(p[1:4]):
            raise WireError("REKEY padding", "must be zero")
        eph = bytes(p[8:40])
        if kind == RekeyKind.SWITCH and any(eph):
            raise WireError("REKEY ephemeral", "must be zero in SWITCH")
        return cls(kind, struct.unpack(">I", p[4:8])[0], eph)


CONFIG_TENTATIVE = 1 << 0


@dataclass(frozen=True)
class ConfigAnnounce:
    version: int
    prev_version: int
    hash: bytes
    prev_hash: bytes
    deadline_ns: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        _u("CONFIG version", self.version, 32)
        _u("CONFIG prev_version", self.prev_version, 32)
        _u("CONFIG deadline_ns", self.deadline_ns, 64)
        _u("CONFIG flags", self.flags, 32)
        return (
            struct.pack(">II", self.version, self.prev_version)
            + _b("CONFIG hash", self.hash, 32)
            + _b("CONFIG prev_hash", self.prev_hash, 32)
            + struct.pack(">QI", self.deadline_ns, self.flags)
        )

    @classmethod
    def decode(cls, p: bytes) -> ConfigAnnounce:
        _b("CONFIG plaintext", p, CONFIG_LEN)
        ver, prev = struct.unpack(">II", p[:8])
        deadline, flags = struct.unpack(">QI", p[72:84])
        return cls(ver, prev, bytes(p[8:40]), bytes(p[40:72]), deadline, flags)


@dataclass(frozen=True)
class RollbackAnnounce:
    restored_version: int
    restored_hash: bytes
    from_version: int
    from_hash: bytes

    def encode(self) -> bytes:
        _u("ROLLBACK restored_version", self.restored_version, 32)
        _u("ROLLBACK from_version", self.from_version, 32)
        return (
            struct.pack(">I", self.restored_version)
            + _b("ROLLBACK restored_hash", self.restored_hash, 32)
            + struct.pack(">I", self.from_version)
            + _b("ROLLBACK from_hash", self.from_hash, 32)
        )

    @classmethod
    def decode(cls, p: bytes) -> RollbackAnnounce:
        _b("ROLLBACK plaintext", p, ROLLBACK_LEN)
        (rv,) = struct.unpack(">I", p[:4])
        (fv,) = struct.unpack(">I", p[36:40])
        return cls(rv, bytes(p[4:36]), fv, bytes(p[40:72]))
