"""An in-memory stand-in for /dev/pool with Device's interface, for unit tests.

It keeps the state pool.ko keeps (identity, trust store, listener, sessions,
statistics, a journal hashed exactly as docs/protocol.md section 6) and fails
with the same PoolError messages, so CLI and daemon code runs unchanged.
`mutations` records every state-changing call, so a test can assert that bad
input changed nothing. Test hooks: inbound(), reload(), unload(), refuse.
"""

from __future__ import annotations

import ctypes
import errno
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pooltools.kernel import uapi
from pooltools.kernel.device import (
    ACCEPT_ERRORS,
    CONFIG_ERRORS,
    CONNECT_ERRORS,
    EXIT_USAGE,
    LISTEN_ERRORS,
    PEER_ADD_ERRORS,
    PEER_DEL_ERRORS,
    SEED_ERRORS,
    SESSION_ERRORS,
    SET_IDENTITY_ERRORS,
    JournalChunk,
    PoolError,
    make_peer,
    raise_errno,
)
from pooltools.kernel.journal import ZERO_HASH, ZERO_KEY, Entry, entry_hash
from pooltools.protocol.address import pool_address
from pooltools.protocol.primitives import MAX_DIFFICULTY
from pooltools.protocol.x25519 import public_key as x25519_public

CONFIG_HISTORY = 8  # kmod/config.c POOL_CONFIG_HISTORY: versions ROLLBACK walks back through


@dataclass
class FakeSessionState:
    index: int
    peer_public_key: bytes
    role: int
    channel: int = 0
    state: int = uapi.SessionState.ESTABLISHED
    peer_addr: bytes = bytes(16)
    peer_port: int = 0
    fds: int = 0
    established_ns: int = 0
    rx: deque[tuple[int, bytes]] = field(default_factory=deque)
    sent: list[tuple[int, bytes]] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_recv: int = 0
    # called with (channel, data) for every message sent: a test's peer
    responder: Callable[[FakeSessionState, int, bytes], None] | None = None


class FakeSession:
    """A session fd of the FakeDevice."""

    def __init__(self, dev: FakeDevice, st: FakeSessionState) -> None:
        self.dev = dev
        self.st = st
        self.index = st.index
        self.peer_public_key = st.peer_public_key
        self.open = True
        self.channel = st.channel
        st.fds += 1

    def fileno(self) -> int:
        return -1

    def info(self) -> uapi.PoolSessionInfo:
        if self.st.index not in self.dev._sessions:
            raise_errno(f"session {self.index} info", errno.ENOTCONN)
        return self.dev._info(self.st)

    def set_channel(self, channel: int) -> None:
        self.channel = channel

    def send(self, data: bytes, channel: int | None = None) -> None:
        what = f"send on session {self.index}"
        if len(data) > uapi.POOL_MAX_MESSAGE:
            raise PoolError(what, f"message of {len(data)} bytes exceeds {uapi.POOL_MAX_MESSAGE}", EXIT_USAGE)
        if self.st.state != uapi.SessionState.ESTABLISHED:
            raise_errno(what, errno.EPIPE)
        ch = self.channel if channel is None else channel
        self.st.sent.append((ch, bytes(data)))
        self.st.bytes_sent += len(data)
        if self.st.responder:
            self.st.responder(self.st, ch, bytes(data))

    def recv(self, channel: int = uapi.POOL_CHANNEL_ANY, timeout: float | None = None) -> tuple[int, bytes] | None:
        for i, (ch, data) in enumerate(self.st.rx):
            if channel in (uapi.POOL_CHANNEL_ANY, ch):
                del self.st.rx[i]
                self.st.bytes_recv += len(data)
                return ch, data
        if self.st.state != uapi.SessionState.ESTABLISHED:
            return None
        raise PoolError(f"receive on session {self.index}", f"nothing received within {timeout or 0:g} s", 7)

    def wait_readable(self, timeout: float | None) -> bool:
        return bool(self.st.rx) or self.st.state != uapi.SessionState.ESTABLISHED

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        self.st.fds -= 1
        if self.st.fds <= 0 and self.st.index in self.dev._sessions:
            self.dev._end_session(self.st, uapi.ErrorCode.LOCAL_CLOSE)

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeDevice:
    """In-memory pool.ko. reload() simulates rmmod + modprobe (fresh state)."""

    DEFAULT_PORT = uapi.POOL_DEFAULT_PORT

    def __init__(self, journal_ring: int = 1024) -> None:
        self.journal_ring = journal_ring
        self.generation = 0
        self.loaded = True
        self.mutations: list[str] = []
        # test hooks: peers whose connect fails with this errno
        self.refuse: dict[bytes, int] = {}
        self.unreachable: set[tuple[bytes, int]] = set()  # (address, port) nobody answers at
        self.reload()
        self.mutations.clear()

    # ---- test hooks
    def reload(self) -> None:
        """Fresh module state, as after rmmod + modprobe."""
        self.generation += 1
        self.loaded = True
        self._private = bytes(32)
        self._identity = uapi.PoolIdentity()
        self._peers: dict[bytes, uapi.PoolPeer] = {}
        self._listen_port = 0
        self._sessions: dict[int, FakeSessionState] = {}
        self._accept: deque[int] = deque()
        self._next_index = 1
        self._stats = [0] * uapi.POOL_STAT_COUNT
        self._journal: list[Entry] = []
        self._config = uapi.PoolConfig()
        self._config_hist: list[tuple[uapi.PoolConfig, dict[bytes, uapi.PoolPeer]]] = []
        self._journal_add(uapi.JournalType.GENESIS, detail=b"pool.ko loaded")

    def unload(self) -> None:
        self.loaded = False

    def inbound(self, peer_public_key: bytes, port: int = 40000) -> FakeSessionState:
        """An inbound session from a trusted peer completes its handshake and waits in the accept queue."""
        st = self._new_session(
            peer_public_key, uapi.POOL_ROLE_RESPONDER, bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2]), port
        )
        self._accept.append(st.index)
        return st

    def peer_close(self, index: int) -> None:
        """The peer closes a session (or it dies)."""
        st = self._sessions.get(index)
        if st:
            self._end_session(st, uapi.ErrorCode.NONE)

    # ---- helpers
    def _check(self, what: str) -> None:
        if not self.loaded:
            raise_errno(what, errno.ENODEV)

    def _mut(self, what: str) -> None:
        self.mutations.append(what)

    def _journal_add(self, type_: int, code: int = 0, peer: bytes = ZERO_KEY, detail: bytes = b"") -> None:
        prev = self._journal[-1] if self._journal else None
        seq = prev.seq + 1 if prev else 0
        prev_hash = prev.hash if prev else ZERO_HASH
        ts = time.time_ns()
        cv = self._config.version if hasattr(self, "_config") else 0
        h = entry_hash(prev_hash, seq, ts, type_, code, cv, peer, detail)
        self._journal.append(Entry(seq, ts, type_, code, cv, peer, prev_hash, h, detail))
        del self._journal[: -self.journal_ring]
        self._stats[uapi.Stat.JOURNAL_ENTRIES] += 1

    def _new_session(self, key: bytes, role: int, addr: bytes, port: int) -> FakeSessionState:
        st = FakeSessionState(
            index=self._next_index,
            peer_public_key=key,
            role=role,
            peer_addr=addr,
            peer_port=port,
            established_ns=time.time_ns(),
        )
        self._next_index += 1
        self._sessions[st.index] = st
        self._stats[uapi.Stat.SESSIONS_OPENED] += 1
        self._stats[uapi.Stat.HANDSHAKES_COMPLETED] += 1
        self._stats[uapi.Stat.SESSIONS_ACTIVE] = len(self._sessions)
        p = self._peers.get(key)
        if p is not None:
            p.handshakes += 1
            p.last_handshake_ns = st.established_ns
        self._journal_add(uapi.JournalType.CONNECT, peer=key, detail=f"session {st.index}".encode())
        return st

    def _end_session(self, st: FakeSessionState, code: int) -> None:
        st.state = uapi.SessionState.CLOSED
        self._sessions.pop(st.index, None)
        if st.index in self._accept:
            self._accept.remove(st.index)
        self._stats[uapi.Stat.SESSIONS_CLOSED] += 1
        self._stats[uapi.Stat.SESSIONS_ACTIVE] = len(self._sessions)
        self._journal_add(uapi.JournalType.DISCONNECT, code, st.peer_public_key, f"session {st.index}".encode())

    def _info(self, st: FakeSessionState) -> uapi.PoolSessionInfo:
        i = uapi.PoolSessionInfo(
            index=st.index,
            state=st.state,
            role=st.role,
            channel=st.channel,
            peer_port=st.peer_port,
            local_port=self._listen_port or self.DEFAULT_PORT,
            established_ns=st.established_ns,
            bytes_sent=st.bytes_sent,
            bytes_recv=st.bytes_recv,
            packets_sent=len(st.sent),
            rx_queue=len(st.rx),
            fds=st.fds,
        )
        ctypes.memmove(i.session_id, st.index.to_bytes(16, "big"), 16)
        ctypes.memmove(i.peer_public_key, st.peer_public_key, 32)
        ctypes.memmove(i.peer_addr, st.peer_addr, 16)
        i.local.rtt_ns = 250_000
        i.local.mtu = 1420
        i.local.uptime_ns = max(0, time.time_ns() - st.established_ns)
        return i

    # ---- Device interface
    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def get_identity(self) -> uapi.PoolIdentity:
        self._check("get identity")
        return self._identity.copy()

    def set_identity(self, private_key: bytes, org_id: int = 0, segment_id: int = 0) -> uapi.PoolIdentity:
        self._check("set identity")
        if len(private_key) != 32 or private_key == bytes(32):
            raise_errno("set identity", errno.EINVAL, SET_IDENTITY_ERRORS)
        pub = x25519_public(private_key)
        if pub in self._peers:
            raise_errno("set identity", errno.EINVAL, SET_IDENTITY_ERRORS)
        if private_key == self._private and org_id == self._identity.org_id and segment_id == self._identity.segment_id:
            return self._identity.copy()
        if self._identity.flags & uapi.POOL_IDENTITY_SET:
            for st in list(self._sessions.values()):
                self._end_session(st, uapi.ErrorCode.LOCAL_CLOSE)
        self._mut("set_identity")
        self._private = bytes(private_key)
        ident = uapi.PoolIdentity(org_id=org_id, segment_id=segment_id, flags=uapi.POOL_IDENTITY_SET)
        ctypes.memmove(ident.public_key, pub, 32)
        ctypes.memmove(ident.address, pool_address(pub, org_id, segment_id), 32)
        self._identity = ident
        self._journal_add(uapi.JournalType.IDENTITY, peer=pub, detail=b"identity set")
        return ident.copy()

    def peer_add(
        self, public_key: bytes, name: str = "", endpoint_addr: bytes = bytes(16), endpoint_port: int = 0
    ) -> uapi.PoolPeer:
        self._check("add peer")
        peer = make_peer(public_key, name, endpoint_addr, endpoint_port)
        if public_key in self._peers:
            raise_errno("add peer", errno.EEXIST, PEER_ADD_ERRORS)
        if public_key == bytes(32) or public_key == bytes(self._identity.public_key):
            raise_errno("add peer", errno.EINVAL, PEER_ADD_ERRORS)
        self._mut(f"peer_add {name}")
        ctypes.memmove(peer.address, pool_address(public_key, self._identity.org_id, self._identity.segment_id), 32)
        self._peers[bytes(public_key)] = peer
        self._journal_add(uapi.JournalType.PEER, peer=public_key, detail=f"add {name}".encode())
        return peer.copy()

    def peer_del(self, public_key: bytes) -> None:
        self._check("remove peer")
        if public_key not in self._peers:
            raise_errno("remove peer", errno.ENOENT, PEER_DEL_ERRORS)
        self._mut("peer_del")
        for st in list(self._sessions.values()):
            if st.peer_public_key == public_key:
                self._end_session(st, uapi.ErrorCode.LOCAL_CLOSE)
        del self._peers[public_key]
        self._journal_add(uapi.JournalType.PEER, peer=public_key, detail=b"remove")

    def peers(self) -> list[uapi.PoolPeer]:
        self._check("list peers")
        out = []
        for key, p in self._peers.items():
            c = p.copy()
            c.active_sessions = sum(1 for s in self._sessions.values() if s.peer_public_key == key)
            out.append(c)
        return out

    def listen(self, port: int = 0) -> None:
        what = f"listen on port {port or 'default'}"
        self._check(what)
        port = port or self.DEFAULT_PORT
        if self._listen_port == port:
            return
        if self._listen_port:
            raise_errno(what, errno.EBUSY, LISTEN_ERRORS)
        self._mut(f"listen {port}")
        self._listen_port = port
        self._journal_add(uapi.JournalType.LISTEN, detail=f"listen {port}".encode())

    def stop(self) -> None:
        self._check("stop listener")
        if self._listen_port:
            self._mut("stop")
            self._listen_port = 0
            self._journal_add(uapi.JournalType.LISTEN, detail=b"stop")

    def connect(
        self,
        peer_public_key: bytes,
        addr: bytes,
        port: int = 0,
        channel: int = 0,
        timeout_ms: int = 0,
        scope_id: int = 0,
        fd_flags: int = 0,
    ) -> FakeSession:
        self._check("connect")
        if not self._identity.flags & uapi.POOL_IDENTITY_SET:
            raise_errno("connect", errno.ENOKEY, CONNECT_ERRORS)
        if peer_public_key not in self._peers:
            raise_errno("connect", errno.ENOKEY, CONNECT_ERRORS)  # as pool.ko does
        if peer_public_key in self.refuse:
            self._stats[uapi.Stat.HANDSHAKES_FAILED] += 1
            raise_errno("connect", self.refuse[peer_public_key], CONNECT_ERRORS)
        if (bytes(addr), port or self.DEFAULT_PORT) in self.unreachable:
            raise_errno("connect", errno.ECONNREFUSED, CONNECT_ERRORS)
        self._mut("connect")
        self._stats[uapi.Stat.HANDSHAKES_INITIATED] += 1
        st = self._new_session(peer_public_key, uapi.POOL_ROLE_INITIATOR, addr, port or self.DEFAULT_PORT)
        st.channel = channel
        return FakeSession(self, st)

    def accept(self, timeout_ms: int = 0, fd_flags: int = 0) -> FakeSession:
        self._check("accept")
        if not self._accept:
            raise_errno("accept", errno.EAGAIN, ACCEPT_ERRORS)
        return FakeSession(self, self._sessions[self._accept.popleft()])

    def attach(self, index: int, fd_flags: int = 0) -> FakeSession:
        what = f"attach to session {index}"
        self._check(what)
        if index not in self._sessions:
            raise_errno(what, errno.ENOENT, SESSION_ERRORS)
        return FakeSession(self, self._sessions[index])

    def close_session(self, index: int, code: int = 0) -> None:
        what = f"close session {index}"
        self._check(what)
        if index not in self._sessions:
            raise_errno(what, errno.ENOENT, SESSION_ERRORS)
        self._mut(f"close {index}")
        self._end_session(self._sessions[index], code or uapi.ErrorCode.LOCAL_CLOSE)

    def sessions(self) -> list[uapi.PoolSessionInfo]:
        self._check("list sessions")
        return [self._info(s) for s in self._sessions.values()]

    def stats(self) -> dict[str, int]:
        self._check("read statistics")
        s = dict(zip((m.name.lower() for m in uapi.Stat), self._stats, strict=True))
        s["listening"] = int(bool(self._listen_port))
        s["listen_port"] = self._listen_port
        s["sessions_active"] = len(self._sessions)
        return s

    def journal_read(self, from_seq: int = 0) -> JournalChunk:
        self._check("read journal")
        head = self._journal[-1]
        return JournalChunk(
            [e for e in self._journal if e.seq >= from_seq], self._journal[0].seq, head.seq + 1, head.hash
        )

    def journal_head(self) -> JournalChunk:
        self._check("read journal")
        head = self._journal[-1]
        return JournalChunk([], self._journal[0].seq, head.seq + 1, head.hash)

    def journal_seed(self, next_seq: int, head_hash: bytes) -> None:
        self._check("seed journal")
        if len(self._journal) != 1 or self._journal[0].type != uapi.JournalType.GENESIS or self._journal[0].seq != 0:
            raise_errno("seed journal", errno.EBUSY, SEED_ERRORS)
        self._mut("journal_seed")
        g = self._journal[0]
        h = entry_hash(
            head_hash, next_seq, g.timestamp_ns, g.type, g.code, g.config_version, g.peer_public_key, g.detail
        )
        self._journal[0] = Entry(
            next_seq, g.timestamp_ns, g.type, g.code, g.config_version, g.peer_public_key, bytes(head_hash), h, g.detail
        )

    def config_get(self) -> uapi.PoolConfig:
        self._check("read configuration")
        c = self._config.copy()
        c.peer_count = len(self._peers)
        return c

    def config_apply(self, c: uapi.PoolConfig, peers: list[uapi.PoolPeer]) -> uapi.PoolConfig:
        """As kmod/config.c: validates, replaces the trust store, keeps one previous version."""
        what = f"apply configuration version {c.version}"
        self._check(what)
        keys = [bytes(p.public_key) for p in peers]
        own = bytes(self._identity.public_key)
        if (
            c.version <= self._config.version
            or not 1 <= c.heartbeat_seconds <= 3600
            or not 5 <= c.rekey_seconds <= 2**31
            or not 1 <= c.rekey_packets < 2**32
            or c.puzzle_difficulty > MAX_DIFFICULTY
            or not 1 <= c.max_sessions <= 65536
            or c.confirm_within_ms > 24 * 3600 * 1000
            or len(set(keys)) != len(keys)
            or any(k in (bytes(32), own) for k in keys)
        ):
            raise_errno(what, errno.EINVAL, CONFIG_ERRORS)
        self._mut(f"config_apply {c.version}")
        hist = self._config_hist
        hist.append((self._config.copy(), {k: p.copy() for k, p in self._peers.items()}))
        self._config_hist = hist[-CONFIG_HISTORY:]
        self._set_peers({bytes(p.public_key): p.copy() for p in peers})
        new = uapi.PoolConfig(
            version=c.version,
            flags=uapi.POOL_CONFIG_HAS_PREV | (uapi.POOL_CONFIG_TENTATIVE if c.confirm_within_ms else 0),
            prev_version=self._config.version,
            deadline_ns=time.time_ns() + c.confirm_within_ms * 1_000_000 if c.confirm_within_ms else 0,
            heartbeat_seconds=c.heartbeat_seconds,
            rekey_seconds=c.rekey_seconds,
            rekey_packets=c.rekey_packets,
            puzzle_difficulty=c.puzzle_difficulty,
            max_sessions=c.max_sessions,
        )
        ctypes.memmove(new.hash, bytes(c.hash), 32)
        ctypes.memmove(new.prev_hash, bytes(self._config.hash), 32)
        self._config = new
        self._journal_add(uapi.JournalType.CONFIG, detail=f"apply {c.version}".encode())
        return self.config_get()

    def _set_peers(self, peers: dict[bytes, uapi.PoolPeer]) -> None:
        for st in list(self._sessions.values()):
            if st.peer_public_key not in peers:
                self._end_session(st, uapi.ErrorCode.LOCAL_CLOSE)
        self._peers = peers

    def config_confirm(self, version: int) -> None:
        what = f"confirm configuration version {version}"
        self._check(what)
        if version != self._config.version:
            raise_errno(what, errno.ESTALE, CONFIG_ERRORS)
        if self._config.flags & uapi.POOL_CONFIG_TENTATIVE:
            self._mut(f"config_confirm {version}")
            self._config.flags &= ~uapi.POOL_CONFIG_TENTATIVE
            self._config.deadline_ns = 0
            self._journal_add(uapi.JournalType.CONFIG, detail=f"confirm {version}".encode())

    def config_rollback(self, version: int) -> None:
        self._config_restore(version, "operator")

    def _config_restore(self, version: int, why: str) -> None:
        what = f"roll back configuration version {version}"
        self._check(what)
        if version != self._config.version:
            raise_errno(what, errno.ESTALE, CONFIG_ERRORS)
        hist = self._config_hist
        if not hist:
            raise_errno(what, errno.ENOENT, CONFIG_ERRORS)
        self._mut(f"config_rollback {version}")
        old, peers = hist.pop()
        self._set_peers(peers)
        self._config = old
        self._config.flags &= ~uapi.POOL_CONFIG_TENTATIVE
        self._config.deadline_ns = 0
        self._config.flags = (self._config.flags & ~uapi.POOL_CONFIG_HAS_PREV) | (
            uapi.POOL_CONFIG_HAS_PREV if hist else 0
        )
        if hist:
            self._config.prev_version = hist[-1][0].version
            ctypes.memmove(self._config.prev_hash, bytes(hist[-1][0].hash), 32)
        else:
            self._config.prev_version = 0
            ctypes.memmove(self._config.prev_hash, bytes(32), 32)
        self._journal_add(uapi.JournalType.ROLLBACK, detail=f"{version} -> {old.version} ({why})".encode())

    def config_expire(self) -> None:
        """Test hook: the deadline of a tentative version passes (the kernel's rollback work)."""
        if self._config.flags & uapi.POOL_CONFIG_TENTATIVE:
            self._config_restore(self._config.version, "not confirmed before the deadline")
