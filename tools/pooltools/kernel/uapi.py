"""ctypes mirror of kmod/uapi/pool.h, the ioctl ABI of pool.ko.

Every structure, constant and ioctl number here matches the header exactly;
tests/unit/tools/test_uapi_abi.py compiles a C program against the header and
compares every size, offset and number with this module.
"""

from __future__ import annotations

import ctypes
import enum
from typing import Self

from pooltools.protocol.wire import ErrorCode

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32

POOL_PROTOCOL_VERSION = 1
POOL_DEFAULT_PORT = 9253
POOL_KEY_LEN = 32
POOL_ADDR_LEN = 32
POOL_HASH_LEN = 32
POOL_SESSION_ID_LEN = 16
POOL_NAME_LEN = 32
POOL_DETAIL_LEN = 64
POOL_MAX_MESSAGE = 65519
POOL_CHANNEL_ANY = 0xFFFF

POOL_ROLE_INITIATOR = 1
POOL_ROLE_RESPONDER = 2

POOL_IDENTITY_SET = 1 << 0
POOL_ACCEPT_FOREVER = 0xFFFFFFFF
POOL_MSG_DONTWAIT = 1 << 0
POOL_STATS_MAX = 64
POOL_CONFIG_TENTATIVE = 1 << 0
POOL_CONFIG_HAS_PREV = 1 << 1


class SessionState(enum.IntEnum):
    HANDSHAKE = 1
    ESTABLISHED = 2
    REKEYING = 3
    CLOSING = 4
    CLOSED = 5


class Stat(enum.IntEnum):
    HANDSHAKES_INITIATED = 0
    HANDSHAKES_COMPLETED = enum.auto()
    HANDSHAKES_FAILED = enum.auto()
    INIT_RECEIVED = enum.auto()
    CHALLENGE_SENT = enum.auto()
    RESPONSE_RECEIVED = enum.auto()
    AUTH_FAIL = enum.auto()
    UNKNOWN_PEER = enum.auto()
    BAD_PUZZLE = enum.auto()
    STALE_TIMESTAMP = enum.auto()
    REPLAYED_INIT = enum.auto()
    BAD_HMAC = enum.auto()
    REPLAY_DROP = enum.auto()
    DECRYPT_FAIL = enum.auto()
    MALFORMED = enum.auto()
    OVERLOAD = enum.auto()
    SESSIONS_OPENED = enum.auto()
    SESSIONS_CLOSED = enum.auto()
    SESSIONS_ACTIVE = enum.auto()
    PEERS_DEAD = enum.auto()
    REKEYS = enum.auto()
    PACKETS_SENT = enum.auto()
    PACKETS_RECV = enum.auto()
    BYTES_SENT = enum.auto()
    BYTES_RECV = enum.auto()
    JOURNAL_ENTRIES = enum.auto()
    CONFIG_APPLIED = enum.auto()
    CONFIG_CONFIRMED = enum.auto()
    CONFIG_ROLLED_BACK = enum.auto()
    LISTENING = enum.auto()
    LISTEN_PORT = enum.auto()
    HALFOPEN_LIMITED = enum.auto()
    HALFOPEN_SILENT = enum.auto()


POOL_STAT_COUNT = len(Stat)


class JournalType(enum.IntEnum):
    GENESIS = 0
    CONNECT = 1
    DISCONNECT = 2
    CONFIG = 3
    ROLLBACK = 4
    REKEY = 5
    ERROR = 6
    IDENTITY = 7
    PEER = 8
    LISTEN = 9


class _Struct(ctypes.Structure):
    """Base: structures are passed to fcntl.ioctl as mutable buffers."""

    def copy(self) -> Self:
        return type(self).from_buffer_copy(self)


class PoolIdentity(_Struct):
    _fields_ = [
        ("private_key", u8 * POOL_KEY_LEN),
        ("public_key", u8 * POOL_KEY_LEN),
        ("address", u8 * POOL_ADDR_LEN),
        ("org_id", u64),
        ("segment_id", u64),
        ("flags", u32),
        ("reserved", u32),
    ]


class PoolPeer(_Struct):
    _fields_ = [
        ("public_key", u8 * POOL_KEY_LEN),
        ("address", u8 * POOL_ADDR_LEN),
        ("name", ctypes.c_char * POOL_NAME_LEN),
        ("endpoint_addr", u8 * 16),
        ("endpoint_port", u16),
        ("flags", u16),
        ("active_sessions", u32),
        ("last_handshake_ns", u64),
        ("last_init_timestamp", u64),
        ("handshakes", u64),
        ("auth_failures", u64),
    ]


class PoolList(_Struct):
    _fields_ = [
        ("ptr", u64),
        ("capacity", u32),
        ("count", u32),
        ("total", u32),
        ("reserved", u32),
    ]


class PoolListen(_Struct):
    _fields_ = [("port", u16), ("flags", u16), ("reserved", u32)]


class PoolConnect(_Struct):
    _fields_ = [
        ("addr", u8 * 16),
        ("port", u16),
        ("channel", u16),
        ("scope_id", u32),
        ("peer_public_key", u8 * POOL_KEY_LEN),
        ("timeout_ms", u32),
        ("fd_flags", u32),
        ("fd", s32),
        ("index", u32),
    ]


class PoolAccept(_Struct):
    _fields_ = [
        ("timeout_ms", u32),
        ("fd_flags", u32),
        ("fd", s32),
        ("index", u32),
        ("peer_public_key", u8 * POOL_KEY_LEN),
    ]


class PoolAttach(_Struct):
    _fields_ = [("index", u32), ("fd_flags", u32), ("fd", s32), ("reserved", u32)]


class PoolClose(_Struct):
    _fields_ = [("index", u32), ("code", u16), ("reserved", u16)]


class PoolTelemetry(_Struct):
    _fields_ = [
        ("rtt_ns", u64),
        ("jitter_ns", u64),
        ("loss_rate_ppm", u32),
        ("throughput_bps", u32),
        ("mtu", u16),
        ("queue_depth", u16),
        ("rekey_count", u32),
        ("uptime_ns", u64),
        ("config_version", u32),
        ("reserved", u32),
    ]


class PoolSessionInfo(_Struct):
    _fields_ = [
        ("index", u32),
        ("state", u8),
        ("role", u8),
        ("channel", u16),
        ("session_id", u8 * POOL_SESSION_ID_LEN),
        ("peer_public_key", u8 * POOL_KEY_LEN),
        ("peer_addr", u8 * 16),
        ("peer_port", u16),
        ("local_port", u16),
        ("epoch", u32),
        ("established_ns", u64),
        ("bytes_sent", u64),
        ("bytes_recv", u64),
        ("packets_sent", u64),
        ("packets_recv", u64),
        ("heartbeats_sent", u64),
        ("heartbeats_recv", u64),
        ("dropped", u64),
        ("rx_queue", u32),
        ("fds", u32),
        ("local", PoolTelemetry),
        ("peer", PoolTelemetry),
    ]


class PoolMsg(_Struct):
    _fields_ = [("ptr", u64), ("len", u32), ("channel", u16), ("flags", u16)]


class PoolStats(_Struct):
    _fields_ = [("count", u32), ("reserved", u32), ("value", u64 * POOL_STATS_MAX)]


class PoolJournalEntry(_Struct):
    _fields_ = [
        ("seq", u64),
        ("timestamp_ns", u64),
        ("type", u16),
        ("code", u16),
        ("config_version", u32),
        ("peer_public_key", u8 * POOL_KEY_LEN),
        ("prev_hash", u8 * POOL_HASH_LEN),
        ("hash", u8 * POOL_HASH_LEN),
        ("detail", ctypes.c_char * POOL_DETAIL_LEN),
    ]


class PoolJournalRead(_Struct):
    _fields_ = [
        ("list", PoolList),
        ("from_seq", u64),
        ("first_seq", u64),
        ("next_seq", u64),
        ("head_hash", u8 * POOL_HASH_LEN),
    ]


class PoolJournalSeed(_Struct):
    _fields_ = [("next_seq", u64), ("head_hash", u8 * POOL_HASH_LEN)]


class PoolConfig(_Struct):
    _fields_ = [
        ("version", u32),
        ("flags", u32),
        ("hash", u8 * POOL_HASH_LEN),
        ("prev_version", u32),
        ("confirm_within_ms", u32),
        ("prev_hash", u8 * POOL_HASH_LEN),
        ("deadline_ns", u64),
        ("heartbeat_seconds", u32),
        ("rekey_seconds", u32),
        ("rekey_packets", u64),
        ("puzzle_difficulty", u32),
        ("max_sessions", u32),
        ("peers_ptr", u64),
        ("peer_count", u32),
        ("reserved", u32),
    ]


class PoolConfigRef(_Struct):
    _fields_ = [("version", u32), ("reserved", u32)]


# ---- ioctl numbers (asm-generic/ioctl.h, as on x86, arm64, riscv) ---------

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2


def _IOC(direction: int, typ: int, nr: int, size: int) -> int:
    if size >= 1 << _IOC_SIZEBITS:
        raise ValueError(f"ioctl argument too large: {size}")
    return (direction << _IOC_DIRSHIFT) | (typ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IO(typ: int, nr: int) -> int:
    return _IOC(_IOC_NONE, typ, nr, 0)


def _IOR(typ: int, nr: int, t: type) -> int:
    return _IOC(_IOC_READ, typ, nr, ctypes.sizeof(t))


def _IOW(typ: int, nr: int, t: type) -> int:
    return _IOC(_IOC_WRITE, typ, nr, ctypes.sizeof(t))


def _IOWR(typ: int, nr: int, t: type) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, typ, nr, ctypes.sizeof(t))


POOL_IOC_MAGIC = ord("P")

POOL_IOC_SET_IDENTITY = _IOWR(POOL_IOC_MAGIC, 0x01, PoolIdentity)
POOL_IOC_GET_IDENTITY = _IOR(POOL_IOC_MAGIC, 0x02, PoolIdentity)
POOL_IOC_PEER_ADD = _IOWR(POOL_IOC_MAGIC, 0x03, PoolPeer)
POOL_IOC_PEER_DEL = _IOW(POOL_IOC_MAGIC, 0x04, PoolPeer)
POOL_IOC_PEER_LIST = _IOWR(POOL_IOC_MAGIC, 0x05, PoolList)
POOL_IOC_LISTEN = _IOW(POOL_IOC_MAGIC, 0x06, PoolListen)
POOL_IOC_STOP = _IO(POOL_IOC_MAGIC, 0x07)
POOL_IOC_CONNECT = _IOWR(POOL_IOC_MAGIC, 0x08, PoolConnect)
POOL_IOC_ACCEPT = _IOWR(POOL_IOC_MAGIC, 0x09, PoolAccept)
POOL_IOC_ATTACH = _IOWR(POOL_IOC_MAGIC, 0x0A, PoolAttach)
POOL_IOC_CLOSE = _IOW(POOL_IOC_MAGIC, 0x0B, PoolClose)
POOL_IOC_SESSIONS = _IOWR(POOL_IOC_MAGIC, 0x0C, PoolList)
POOL_IOC_STATS = _IOR(POOL_IOC_MAGIC, 0x0D, PoolStats)
POOL_IOC_JOURNAL_READ = _IOWR(POOL_IOC_MAGIC, 0x0E, PoolJournalRead)
POOL_IOC_JOURNAL_SEED = _IOW(POOL_IOC_MAGIC, 0x0F, PoolJournalSeed)
POOL_IOC_CONFIG_GET = _IOR(POOL_IOC_MAGIC, 0x10, PoolConfig)
POOL_IOC_CONFIG_APPLY = _IOWR(POOL_IOC_MAGIC, 0x11, PoolConfig)
POOL_IOC_CONFIG_CONFIRM = _IOW(POOL_IOC_MAGIC, 0x12, PoolConfigRef)
POOL_IOC_CONFIG_ROLLBACK = _IOW(POOL_IOC_MAGIC, 0x13, PoolConfigRef)

POOL_SESS_IOC_INFO = _IOR(POOL_IOC_MAGIC, 0x40, PoolSessionInfo)
POOL_SESS_IOC_SEND = _IOW(POOL_IOC_MAGIC, 0x41, PoolMsg)
POOL_SESS_IOC_RECV = _IOWR(POOL_IOC_MAGIC, 0x42, PoolMsg)
POOL_SESS_IOC_SET_CHANNEL = _IOW(POOL_IOC_MAGIC, 0x43, u32)

# name -> (struct, ioctl number), for the ABI test and diagnostics.
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "pool_identity": PoolIdentity,
    "pool_peer": PoolPeer,
    "pool_list": PoolList,
    "pool_listen": PoolListen,
    "pool_connect": PoolConnect,
    "pool_accept": PoolAccept,
    "pool_attach": PoolAttach,
    "pool_close": PoolClose,
    "pool_telemetry": PoolTelemetry,
    "pool_session_info": PoolSessionInfo,
    "pool_msg": PoolMsg,
    "pool_stats": PoolStats,
    "pool_journal_entry": PoolJournalEntry,
    "pool_journal_read": PoolJournalRead,
    "pool_journal_seed": PoolJournalSeed,
    "pool_config": PoolConfig,
    "pool_config_ref": PoolConfigRef,
}

IOCTLS: dict[str, int] = {
    name: value
    for name, value in globals().items()
    if name.startswith(("POOL_IOC_", "POOL_SESS_IOC_")) and name != "POOL_IOC_MAGIC"
}

CONSTANTS: dict[str, int] = {
    "POOL_PROTOCOL_VERSION": POOL_PROTOCOL_VERSION,
    "POOL_DEFAULT_PORT": POOL_DEFAULT_PORT,
    "POOL_KEY_LEN": POOL_KEY_LEN,
    "POOL_ADDR_LEN": POOL_ADDR_LEN,
    "POOL_HASH_LEN": POOL_HASH_LEN,
    "POOL_SESSION_ID_LEN": POOL_SESSION_ID_LEN,
    "POOL_NAME_LEN": POOL_NAME_LEN,
    "POOL_DETAIL_LEN": POOL_DETAIL_LEN,
    "POOL_MAX_MESSAGE": POOL_MAX_MESSAGE,
    "POOL_CHANNEL_ANY": POOL_CHANNEL_ANY,
    "POOL_ROLE_INITIATOR": POOL_ROLE_INITIATOR,
    "POOL_ROLE_RESPONDER": POOL_ROLE_RESPONDER,
    "POOL_IDENTITY_SET": POOL_IDENTITY_SET,
    "POOL_ACCEPT_FOREVER": POOL_ACCEPT_FOREVER,
    "POOL_MSG_DONTWAIT": POOL_MSG_DONTWAIT,
    "POOL_STATS_MAX": POOL_STATS_MAX,
    "POOL_CONFIG_TENTATIVE": POOL_CONFIG_TENTATIVE,
    "POOL_CONFIG_HAS_PREV": POOL_CONFIG_HAS_PREV,
    "__POOL_STAT_COUNT": POOL_STAT_COUNT,
}
for _e, _prefix in (
    (SessionState, "POOL_STATE_"),
    (ErrorCode, "POOL_ERR_"),
    (Stat, "POOL_STAT_"),
    (JournalType, "POOL_JOURNAL_"),
):
    for _m in _e:
        CONSTANTS[_prefix + _m.name] = int(_m)
del _e, _prefix, _m
