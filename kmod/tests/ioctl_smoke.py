#!/usr/bin/env python3
"""Smoke test of pool.ko's ioctl ABI from a lab VM, standard library only.

Run as root where pool.ko is loaded. Subcommands (node-wide state stays in
the kernel between invocations):

    ioctl_smoke.py ident SECRET_HEX [--org N]   set the identity, print the public key (hex)
    ioctl_smoke.py trust PUB_HEX [NAME]           add a trusted peer
    ioctl_smoke.py untrust PUB_HEX                remove it
    ioctl_smoke.py listen [PORT]                  start the listener
    ioctl_smoke.py serve [--count N]              accept sessions and echo every message back
    ioctl_smoke.py client ADDR PEER_HEX [--messages N] [--port P]
                                                  connect, send/receive/verify, exercise the fd API
    ioctl_smoke.py stats | sessions | journal     print counters / sessions / verify the journal chain
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import hashlib
import ipaddress
import os
import select
import struct
import sys
import time

DEV = "/dev/pool"
u8, u16, u32, u64, s32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32


class Identity(ctypes.Structure):
    _fields_ = [
        ("private_key", u8 * 32),
        ("public_key", u8 * 32),
        ("address", u8 * 32),
        ("org_id", u64),
        ("segment_id", u64),
        ("flags", u32),
        ("reserved", u32),
    ]


class Peer(ctypes.Structure):
    _fields_ = [
        ("public_key", u8 * 32),
        ("address", u8 * 32),
        ("name", ctypes.c_char * 32),
        ("endpoint_addr", u8 * 16),
        ("endpoint_port", u16),
        ("flags", u16),
        ("active_sessions", u32),
        ("last_handshake_ns", u64),
        ("last_init_timestamp", u64),
        ("handshakes", u64),
        ("auth_failures", u64),
    ]


class PList(ctypes.Structure):
    _fields_ = [("ptr", u64), ("capacity", u32), ("count", u32), ("total", u32), ("reserved", u32)]


class Listen(ctypes.Structure):
    _fields_ = [("port", u16), ("flags", u16), ("reserved", u32)]


class Connect(ctypes.Structure):
    _fields_ = [
        ("addr", u8 * 16),
        ("port", u16),
        ("channel", u16),
        ("scope_id", u32),
        ("peer_public_key", u8 * 32),
        ("timeout_ms", u32),
        ("fd_flags", u32),
        ("fd", s32),
        ("index", u32),
    ]


class Accept(ctypes.Structure):
    _fields_ = [("timeout_ms", u32), ("fd_flags", u32), ("fd", s32), ("index", u32), ("peer_public_key", u8 * 32)]


class Attach(ctypes.Structure):
    _fields_ = [("index", u32), ("fd_flags", u32), ("fd", s32), ("reserved", u32)]


class Close(ctypes.Structure):
    _fields_ = [("index", u32), ("code", u16), ("reserved", u16)]


class Telemetry(ctypes.Structure):
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


class SessionInfo(ctypes.Structure):
    _fields_ = [
        ("index", u32),
        ("state", u8),
        ("role", u8),
        ("channel", u16),
        ("session_id", u8 * 16),
        ("peer_public_key", u8 * 32),
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
        ("local", Telemetry),
        ("peer", Telemetry),
    ]


class Msg(ctypes.Structure):
    _fields_ = [("ptr", u64), ("len", u32), ("channel", u16), ("flags", u16)]


class Stats(ctypes.Structure):
    _fields_ = [("count", u32), ("reserved", u32), ("value", u64 * 64)]


class JEntry(ctypes.Structure):
    _fields_ = [
        ("seq", u64),
        ("timestamp_ns", u64),
        ("type", u16),
        ("code", u16),
        ("config_version", u32),
        ("peer_public_key", u8 * 32),
        ("prev_hash", u8 * 32),
        ("hash", u8 * 32),
        ("detail", ctypes.c_char * 64),
    ]


class Config(ctypes.Structure):
    _fields_ = [
        ("version", u32),
        ("flags", u32),
        ("hash", u8 * 32),
        ("prev_version", u32),
        ("confirm_within_ms", u32),
        ("prev_hash", u8 * 32),
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


class ConfigRef(ctypes.Structure):
    _fields_ = [("version", u32), ("reserved", u32)]


class JRead(ctypes.Structure):
    _fields_ = [("list", PList), ("from_seq", u64), ("first_seq", u64), ("next_seq", u64), ("head_hash", u8 * 32)]


SIZES = {
    Config: 128,
    ConfigRef: 8,
    Identity: 120,
    Peer: 152,
    PList: 24,
    Listen: 8,
    Connect: 72,
    Accept: 48,
    Attach: 16,
    Close: 8,
    Telemetry: 48,
    SessionInfo: 248,
    Msg: 16,
    Stats: 520,
    JEntry: 184,
    JRead: 80,
}
for _t, _n in SIZES.items():
    assert ctypes.sizeof(_t) == _n, (_t.__name__, ctypes.sizeof(_t), _n)


def _ioc(d: int, nr: int, size: int) -> int:
    return (d << 30) | (size << 16) | (ord("P") << 8) | nr


def IOW(nr, t):
    return _ioc(1, nr, ctypes.sizeof(t))


def IOR(nr, t):
    return _ioc(2, nr, ctypes.sizeof(t))


def IOWR(nr, t):
    return _ioc(3, nr, ctypes.sizeof(t))


SET_IDENTITY = IOWR(0x01, Identity)
GET_IDENTITY = IOR(0x02, Identity)
PEER_ADD = IOWR(0x03, Peer)
PEER_DEL = IOW(0x04, Peer)
PEER_LIST = IOWR(0x05, PList)
LISTEN = IOW(0x06, Listen)
STOP = _ioc(0, 0x07, 0)
CONNECT = IOWR(0x08, Connect)
ACCEPT = IOWR(0x09, Accept)
ATTACH = IOWR(0x0A, Attach)
CLOSE = IOW(0x0B, Close)
SESSIONS = IOWR(0x0C, PList)
STATS = IOR(0x0D, Stats)
JOURNAL_READ = IOWR(0x0E, JRead)
CONFIG_GET = IOR(0x10, Config)
CONFIG_APPLY = IOWR(0x11, Config)
CONFIG_CONFIRM = IOW(0x12, ConfigRef)
CONFIG_ROLLBACK = IOW(0x13, ConfigRef)
S_INFO = IOR(0x40, SessionInfo)
S_SEND = IOW(0x41, Msg)
S_RECV = IOWR(0x42, Msg)
S_SET_CHANNEL = IOW(0x43, ctypes.c_uint32)

STAT_NAMES = [
    "HANDSHAKES_INITIATED",
    "HANDSHAKES_COMPLETED",
    "HANDSHAKES_FAILED",
    "INIT_RECEIVED",
    "CHALLENGE_SENT",
    "RESPONSE_RECEIVED",
    "AUTH_FAIL",
    "UNKNOWN_PEER",
    "BAD_PUZZLE",
    "STALE_TIMESTAMP",
    "REPLAYED_INIT",
    "BAD_HMAC",
    "REPLAY_DROP",
    "DECRYPT_FAIL",
    "MALFORMED",
    "OVERLOAD",
    "SESSIONS_OPENED",
    "SESSIONS_CLOSED",
    "SESSIONS_ACTIVE",
    "PEERS_DEAD",
    "REKEYS",
    "PACKETS_SENT",
    "PACKETS_RECV",
    "BYTES_SENT",
    "BYTES_RECV",
    "JOURNAL_ENTRIES",
    "CONFIG_APPLIED",
    "CONFIG_CONFIRMED",
    "CONFIG_ROLLED_BACK",
    "LISTENING",
    "LISTEN_PORT",
]


def dev() -> int:
    return os.open(DEV, os.O_RDWR)


def ioctl(fd: int, req: int, arg=None):
    if arg is None:
        return fcntl.ioctl(fd, req)
    return fcntl.ioctl(fd, req, arg, True)


def expect_errno(code: int, fn, *a) -> None:
    try:
        fn(*a)
    except OSError as e:
        if e.errno != code:
            raise AssertionError(f"expected {errno.errorcode[code]}, got {e!r}") from e
        return
    raise AssertionError(f"expected {errno.errorcode[code]}, got success")


def hexb(b) -> str:
    return bytes(b).hex()


def set_identity(secret: bytes, org: int = 0) -> bytes:
    with open(DEV, "rb+", buffering=0) as f:
        idt = Identity()
        idt.private_key[:] = secret
        idt.org_id = org
        ioctl(f.fileno(), SET_IDENTITY, idt)
        assert not any(idt.private_key), "private key echoed back"
        assert idt.flags & 1
        return bytes(idt.public_key)


def stats(fd: int) -> dict[str, int]:
    st = Stats()
    ioctl(fd, STATS, st)
    return {STAT_NAMES[i]: st.value[i] for i in range(min(st.count, len(STAT_NAMES)))}


def session_info(sfd: int) -> SessionInfo:
    i = SessionInfo()
    ioctl(sfd, S_INFO, i)
    return i


def recv_msg(sfd: int, cap: int = 70000, channel: int = 0xFFFF, dontwait=False):
    buf = ctypes.create_string_buffer(max(cap, 1))
    m = Msg(ctypes.addressof(buf), cap, channel, 1 if dontwait else 0)
    ioctl(sfd, S_RECV, m)
    return buf.raw[: m.len], m.channel


def send_msg(sfd: int, data: bytes, channel: int) -> None:
    buf = ctypes.create_string_buffer(data, max(len(data), 1))
    m = Msg(ctypes.addressof(buf), len(data), channel, 0)
    ioctl(sfd, S_SEND, m)


def verify_journal(fd: int) -> int:
    cap = 4096
    arr = (JEntry * cap)()
    jr = JRead()
    jr.list.ptr = ctypes.addressof(arr)
    jr.list.capacity = cap
    ioctl(fd, JOURNAL_READ, jr)
    prev = None
    for e in arr[: jr.list.count]:
        detail = bytes(e.detail).split(b"\0", 1)[0]
        h = hashlib.sha256(
            bytes(e.prev_hash)
            + struct.pack(">QQHHI", e.seq, e.timestamp_ns, e.type, e.code, e.config_version)
            + bytes(e.peer_public_key)
            + detail
        ).digest()
        assert h == bytes(e.hash), f"journal entry {e.seq}: hash mismatch"
        if prev is not None:
            assert bytes(e.prev_hash) == prev, f"journal entry {e.seq}: chain broken"
        prev = bytes(e.hash)
    assert prev == bytes(jr.head_hash), "head hash differs"
    return jr.list.count


# ---- subcommands -------------------------------------------------------------------


def cmd_ident(a) -> None:
    pub = set_identity(bytes.fromhex(a.secret), a.org)
    # the same key again changes nothing
    assert set_identity(bytes.fromhex(a.secret), a.org) == pub
    print(pub.hex())


def cmd_trust(a) -> None:
    fd = dev()
    p = Peer()
    p.public_key[:] = bytes.fromhex(a.pub)
    p.name = a.name.encode()
    ioctl(fd, PEER_ADD, p)
    expect_errno(errno.EEXIST, ioctl, fd, PEER_ADD, p)
    bad = Peer()
    expect_errno(errno.EINVAL, ioctl, fd, PEER_ADD, bad)  # all-zero key
    own = Identity()
    ioctl(fd, GET_IDENTITY, own)
    bad.public_key[:] = bytes(own.public_key)
    expect_errno(errno.EINVAL, ioctl, fd, PEER_ADD, bad)  # own key
    arr = (Peer * 8)()
    lst = PList(ctypes.addressof(arr), 8, 0, 0, 0)
    ioctl(fd, PEER_LIST, lst)
    assert any(bytes(arr[i].public_key) == bytes(p.public_key) for i in range(lst.count))
    print(f"trusted {a.name} ({lst.total} peers)")


def cmd_untrust(a) -> None:
    fd = dev()
    p = Peer()
    p.public_key[:] = bytes.fromhex(a.pub)
    ioctl(fd, PEER_DEL, p)
    expect_errno(errno.ENOENT, ioctl, fd, PEER_DEL, p)
    print("removed")


def cmd_listen(a) -> None:
    fd = dev()
    ioctl(fd, LISTEN, Listen(a.port, 0, 0))
    ioctl(fd, LISTEN, Listen(a.port, 0, 0))  # no-op
    expect_errno(errno.EBUSY, ioctl, fd, LISTEN, Listen(a.port + 1, 0, 0))
    expect_errno(errno.EINVAL, ioctl, fd, LISTEN, Listen(a.port, 1, 0))
    print(f"listening on {a.port or 9253}: {stats(fd)['LISTENING']}")


def cmd_serve(a) -> None:
    fd = dev()
    served = 0
    while served < a.count:
        acc = Accept(60000 if a.count else 0xFFFFFFFF, 0, -1, 0)
        ioctl(fd, ACCEPT, acc)
        sfd = acc.fd
        info = session_info(sfd)
        peer = ipaddress.ip_address(bytes(info.peer_addr))
        peer = peer.ipv4_mapped or peer
        print(
            f"accepted session {acc.index} from {peer}:{info.peer_port} key {hexb(acc.peer_public_key)[:16]}",
            flush=True,
        )
        n = nbytes = 0
        while True:
            try:
                data, chan = recv_msg(sfd)
            except OSError as e:
                print(f"recv: {e}", flush=True)
                break
            if chan == 0xFFFF and not data:
                break  # end of stream
            send_msg(sfd, data, chan)
            n += 1
            nbytes += len(data)
        info = session_info(sfd)
        print(
            f"session {acc.index}: echoed {n} messages, {nbytes} bytes, epoch {info.epoch}, dropped {info.dropped}",
            flush=True,
        )
        os.close(sfd)
        served += 1


def cmd_client(a) -> None:
    fd = dev()
    ip = ipaddress.ip_address(a.addr)
    raw = (ipaddress.IPv6Address("::ffff:" + str(ip)) if ip.version == 4 else ip).packed
    c = Connect()
    c.addr[:] = raw
    c.port = a.port
    c.channel = 7
    c.peer_public_key[:] = bytes.fromhex(a.peer)
    c.timeout_ms = 20000
    t0 = time.monotonic()
    ioctl(fd, CONNECT, c)
    print(f"connected: session {c.index} fd {c.fd} in {time.monotonic() - t0:.2f}s", flush=True)
    sfd = c.fd
    info = session_info(sfd)
    assert info.state == 2 and info.role == 1 and info.channel == 7, (info.state, info.role)
    peer = ipaddress.ip_address(bytes(info.peer_addr))
    print(f"peer {peer.ipv4_mapped or peer}:{info.peer_port} local port {info.local_port}")

    # write() on channel 7, read() back the echo
    sizes = [0, 1, 100, 1400, 4096, 65519] + [(i * 7919) % 65520 for i in range(a.messages)]
    t0 = time.monotonic()
    total = 0
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        if size == 0:
            send_msg(sfd, data, 9)
            got, chan = recv_msg(sfd)
            assert got == b"" and chan == 9, (got, chan)
            continue
        assert os.write(sfd, data) == size
        got = os.read(sfd, 65519)
        assert got == data, f"message {i}: {len(got)} bytes back, {size} sent"
        total += size
    dt = time.monotonic() - t0
    print(f"echoed {len(sizes)} messages, {total} bytes in {dt:.2f}s ({total / dt / 1e6:.1f} MB/s round trip)")

    # EMSGSIZE: too small a buffer leaves the message queued and says how big it is
    send_msg(sfd, b"x" * 300, 3)
    deadline = time.time() + 10
    while True:
        r, _, _ = select.select([sfd], [], [], 10)
        assert r, "poll: no EPOLLIN for the echo"
        buf = ctypes.create_string_buffer(10)
        m = Msg(ctypes.addressof(buf), 10, 0xFFFF, 1)
        try:
            ioctl(sfd, S_RECV, m)
        except OSError as e:
            assert e.errno == errno.EMSGSIZE and m.len == 300 and m.channel == 3, (e, m.len)
            break
        assert time.time() < deadline
    expect_errno(errno.EMSGSIZE, os.read, sfd, 10)
    # channel filter: a message on channel 4 is taken before the queued one on 3
    send_msg(sfd, b"four", 4)
    time.sleep(1)
    got, chan = recv_msg(sfd, channel=4)
    assert (got, chan) == (b"four", 4), (got, chan)
    got, chan = recv_msg(sfd)
    assert len(got) == 300 and chan == 3
    expect_errno(errno.EAGAIN, recv_msg, sfd, 100, 0xFFFF, True)
    expect_errno(errno.EMSGSIZE, os.write, sfd, b"y" * 65520)
    # SET_CHANNEL
    ioctl(sfd, S_SET_CHANNEL, ctypes.c_uint32(200))
    os.write(sfd, b"on 200")
    got, chan = recv_msg(sfd)
    assert (got, chan) == (b"on 200", 200)
    expect_errno(errno.EINVAL, ioctl, sfd, S_SET_CHANNEL, ctypes.c_uint32(256))
    # ATTACH a second fd; the session lives while any fd is open
    att = Attach(c.index, 0, -1, 0)
    ioctl(fd, ATTACH, att)
    assert session_info(att.fd).fds == 2
    os.close(att.fd)
    assert session_info(sfd).fds == 1

    if a.hold:
        print(f"holding the session for {a.hold}s (heartbeats)", flush=True)
        time.sleep(a.hold)
        info = session_info(sfd)
        print(
            f"heartbeats sent {info.heartbeats_sent} recv {info.heartbeats_recv} "
            f"rtt {info.local.rtt_ns / 1000:.0f}us jitter {info.local.jitter_ns / 1000:.0f}us "
            f"loss {info.local.loss_rate_ppm}ppm peer-rtt {info.peer.rtt_ns / 1000:.0f}us epoch {info.epoch}"
        )
        assert info.heartbeats_recv >= 1 and info.local.rtt_ns > 0
    info = session_info(sfd)
    print(
        f"session: sent {info.packets_sent} pkts/{info.bytes_sent} B, "
        f"recv {info.packets_recv} pkts/{info.bytes_recv} B, dropped {info.dropped}"
    )
    os.close(sfd)
    print("closed")


def cmd_hold(a) -> None:
    """Connect, then wait until the peer closes (or --seconds); print how it ended."""
    fd = dev()
    ip = ipaddress.ip_address(a.addr)
    raw = (ipaddress.IPv6Address("::ffff:" + str(ip)) if ip.version == 4 else ip).packed
    c = Connect()
    c.addr[:] = raw
    c.peer_public_key[:] = bytes.fromhex(a.peer)
    c.timeout_ms = 20000
    ioctl(fd, CONNECT, c)
    print(f"connected: session {c.index}", flush=True)
    t0 = time.monotonic()
    r, _, _ = select.select([c.fd], [], [], a.seconds)
    if not r:
        print(f"still open after {a.seconds}s", flush=True)
    else:
        data = os.read(c.fd, 65519)
        info = session_info(c.fd)
        print(f"read() -> {len(data)} bytes after {time.monotonic() - t0:.1f}s, state {info.state}", flush=True)
    os.close(c.fd)


def _payload(i: int) -> bytes:
    size = 16 + (i * 7919) % 8000
    seed = hashlib.sha256(struct.pack(">Q", i)).digest()
    return struct.pack(">Q", i) + (seed * (size // 32 + 1))[: size - 8]


def cmd_stream(a) -> None:
    """Pipelined echo traffic for --seconds; every echo checked in order (rekeys happen meanwhile)."""
    fd = dev()
    ip = ipaddress.ip_address(a.addr)
    raw = (ipaddress.IPv6Address("::ffff:" + str(ip)) if ip.version == 4 else ip).packed
    c = Connect()
    c.addr[:] = raw
    c.peer_public_key[:] = bytes.fromhex(a.peer)
    c.timeout_ms = 20000
    c.fd_flags = os.O_NONBLOCK
    ioctl(fd, CONNECT, c)
    sfd = c.fd
    print(f"connected: session {c.index}", flush=True)
    sent = recv = nbytes = 0
    t0 = time.monotonic()
    end = t0 + a.seconds
    p = select.poll()
    p.register(sfd, select.POLLIN | select.POLLOUT)
    last = t0
    while True:
        now = time.monotonic()
        sending = now < end
        if not sending and recv == sent:
            break
        if now - last > 30:
            raise AssertionError(f"no progress for 30 s (sent {sent}, received {recv})")
        p.modify(sfd, select.POLLIN | (select.POLLOUT if sending and sent - recv < 64 else 0))
        for _, ev in p.poll(1000):
            if ev & select.POLLIN:
                while True:
                    try:
                        got = os.read(sfd, 65519)
                    except BlockingIOError:
                        break
                    if not got:
                        raise AssertionError(f"end of stream after {recv} messages")
                    want = _payload(recv)
                    if got != want:
                        n = struct.unpack(">Q", got[:8])[0] if len(got) >= 8 else -1
                        raise AssertionError(
                            f"message {recv}: got #{n} ({len(got)} bytes): lost, duplicated or reordered"
                        )
                    recv += 1
                    nbytes += len(got)
                    last = time.monotonic()
            if ev & select.POLLOUT and sending:
                try:
                    os.write(sfd, _payload(sent))
                    sent += 1
                except BlockingIOError:
                    pass
            if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                raise AssertionError("session hung up")
    info = session_info(sfd)
    dt = time.monotonic() - t0
    print(
        f"stream: {sent} messages, {nbytes} bytes echoed in order in {dt:.1f}s; epoch {info.epoch}, "
        f"dropped {info.dropped}, heartbeats {info.heartbeats_sent}/{info.heartbeats_recv}",
        flush=True,
    )
    assert info.epoch >= a.min_epoch, f"epoch {info.epoch} < {a.min_epoch}"
    os.close(sfd)


def _peers(fd: int):
    arr = (Peer * 64)()
    lst = PList(ctypes.addressof(arr), 64, 0, 0, 0)
    ioctl(fd, PEER_LIST, lst)
    return arr, lst.count


def cmd_config(a) -> None:
    """Apply, confirm, roll back by hand and by the kernel's own timer."""
    fd = dev()
    cur = Config()
    ioctl(fd, CONFIG_GET, cur)
    peers, n = _peers(fd)
    base = cur.version
    print(f"active version {base}, heartbeat {cur.heartbeat_seconds}s, {cur.peer_count} peers")

    def apply(version: int, hb: int, ms: int, npeers: int) -> Config:
        c = Config()
        c.version = version
        c.hash[:] = hashlib.sha256(b"v%d" % version).digest()
        c.confirm_within_ms = ms
        c.heartbeat_seconds = hb
        c.rekey_seconds = cur.rekey_seconds
        c.rekey_packets = cur.rekey_packets
        c.puzzle_difficulty = cur.puzzle_difficulty
        c.max_sessions = cur.max_sessions
        c.peers_ptr = ctypes.addressof(peers)
        c.peer_count = npeers
        ioctl(fd, CONFIG_APPLY, c)
        return c

    # invalid input changes nothing
    bad = Config()
    bad.version = base + 1
    expect_errno(errno.EINVAL, ioctl, fd, CONFIG_APPLY, bad)  # zero heartbeat
    c = apply(base + 1, 7, 0, n)
    assert c.version == base + 1 and not c.flags & 1 and c.prev_version == base
    expect_errno(errno.EINVAL, apply, base + 1, 7, 0, n)  # not newer
    got = Config()
    ioctl(fd, CONFIG_GET, got)
    assert got.heartbeat_seconds == 7 and got.version == base + 1
    # tentative, confirmed
    c = apply(base + 2, 6, 60000, n)
    assert c.flags & 1 and c.deadline_ns > 0
    ioctl(fd, CONFIG_CONFIRM, ConfigRef(base + 2, 0))
    ioctl(fd, CONFIG_GET, got)
    assert not got.flags & 1 and got.heartbeat_seconds == 6
    # tentative with an empty trust store, not confirmed: the kernel rolls back by itself
    c = apply(base + 3, 4, 3000, 0)
    assert _peers(fd)[1] == 0
    time.sleep(5)
    ioctl(fd, CONFIG_GET, got)
    assert got.version == base + 2 and got.heartbeat_seconds == 6, (got.version, got.heartbeat_seconds)
    assert _peers(fd)[1] == n, "trust store not restored"
    # operator rollback to the version before
    expect_errno(errno.ESTALE, ioctl, fd, CONFIG_ROLLBACK, ConfigRef(base + 1, 0))
    ioctl(fd, CONFIG_ROLLBACK, ConfigRef(base + 2, 0))
    ioctl(fd, CONFIG_GET, got)
    assert got.version == base + 1 and got.heartbeat_seconds == 7
    ioctl(fd, CONFIG_ROLLBACK, ConfigRef(base + 1, 0))
    ioctl(fd, CONFIG_GET, got)
    assert got.version == base and got.heartbeat_seconds == cur.heartbeat_seconds
    if base == 0:
        expect_errno(errno.ENOENT, ioctl, fd, CONFIG_ROLLBACK, ConfigRef(base, 0))
    # back to the original values as a new version
    apply(base + 4, cur.heartbeat_seconds, 0, n)
    st = stats(fd)
    print(
        f"config ok: applied {st['CONFIG_APPLIED']}, confirmed {st['CONFIG_CONFIRMED']}, "
        f"rolled back {st['CONFIG_ROLLED_BACK']}"
    )


def cmd_cycles(a) -> None:
    """connect/close N times (slab usage should stay flat)."""
    fd = dev()
    ip = ipaddress.ip_address(a.addr)
    raw = (ipaddress.IPv6Address("::ffff:" + str(ip)) if ip.version == 4 else ip).packed
    t0 = time.monotonic()
    for i in range(a.count):
        c = Connect()
        c.addr[:] = raw
        c.peer_public_key[:] = bytes.fromhex(a.peer)
        c.timeout_ms = 20000
        ioctl(fd, CONNECT, c)
        os.write(c.fd, b"hello %d" % i)
        os.close(c.fd)
    print(f"{a.count} connect/close cycles in {time.monotonic() - t0:.1f}s")


def cmd_flood(a) -> None:
    """Write to a peer that never reads until write() says EAGAIN; the session must survive."""
    fd = dev()
    ip = ipaddress.ip_address(a.addr)
    raw = (ipaddress.IPv6Address("::ffff:" + str(ip)) if ip.version == 4 else ip).packed
    c = Connect()
    c.addr[:] = raw
    c.peer_public_key[:] = bytes.fromhex(a.peer)
    c.timeout_ms = 20000
    c.fd_flags = os.O_NONBLOCK
    ioctl(fd, CONNECT, c)
    n = 0
    blocked_since = None
    msg = os.urandom(8192)
    while True:
        try:
            os.write(c.fd, msg)
            n += 1
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 5:
                break
            time.sleep(0.1)
    print(f"session {c.index}: {n} messages ({n * 8192 >> 20} MiB) written before write() blocked for 5 s", flush=True)
    time.sleep(a.seconds)
    info = session_info(c.fd)
    print(
        f"after {a.seconds}s: state {info.state}, heartbeats {info.heartbeats_sent}/{info.heartbeats_recv}", flush=True
    )
    assert info.state == 2, "session did not survive backpressure"
    os.close(c.fd)


def cmd_stats(a) -> None:
    for k, v in stats(dev()).items():
        print(f"{k:22} {v}")


def cmd_sessions(a) -> None:
    fd = dev()
    arr = (SessionInfo * 64)()
    lst = PList(ctypes.addressof(arr), 64, 0, 0, 0)
    ioctl(fd, SESSIONS, lst)
    print(f"{lst.count} of {lst.total} sessions")
    for i in arr[: lst.count]:
        print(
            f"  {i.index} state {i.state} role {i.role} epoch {i.epoch} fds {i.fds} "
            f"sent {i.packets_sent} recv {i.packets_recv}"
        )


def cmd_journal(a) -> None:
    n = verify_journal(dev())
    print(f"journal: {n} entries, chain verified")


def cmd_close(a) -> None:
    ioctl(dev(), CLOSE, Close(a.index, a.code, 0))
    print(f"closed {a.index}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ident")
    s.add_argument("secret")
    s.add_argument("--org", type=int, default=0)
    s = sub.add_parser("trust")
    s.add_argument("pub")
    s.add_argument("name", nargs="?", default="peer")
    s = sub.add_parser("untrust")
    s.add_argument("pub")
    s = sub.add_parser("listen")
    s.add_argument("port", nargs="?", type=int, default=0)
    s = sub.add_parser("serve")
    s.add_argument("--count", type=int, default=1)
    s = sub.add_parser("client")
    s.add_argument("addr")
    s.add_argument("peer")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--messages", type=int, default=50)
    s.add_argument("--hold", type=int, default=0)
    s = sub.add_parser("hold")
    s.add_argument("addr")
    s.add_argument("peer")
    s.add_argument("--seconds", type=int, default=60)
    s = sub.add_parser("stream")
    s.add_argument("addr")
    s.add_argument("peer")
    s.add_argument("--seconds", type=int, default=60)
    s.add_argument("--min-epoch", type=int, default=0)
    s = sub.add_parser("cycles")
    s.add_argument("addr")
    s.add_argument("peer")
    s.add_argument("--count", type=int, default=1000)
    s = sub.add_parser("flood")
    s.add_argument("addr")
    s.add_argument("peer")
    s.add_argument("--seconds", type=int, default=25)
    for n in ("stats", "sessions", "journal", "config"):
        sub.add_parser(n)
    s = sub.add_parser("close")
    s.add_argument("index", type=int)
    s.add_argument("--code", type=int, default=0)
    a = p.parse_args()
    globals()["cmd_" + a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
