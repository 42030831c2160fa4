"""/dev/pool and session fds: typed ioctl wrappers with errors people can act on.

Device opens /dev/pool; every method is one ioctl. Failures raise PoolError,
whose message names the cause ("peer already trusted", "pool.ko not loaded")
and whose exit_code is the CLI's documented exit status. FakeDevice (in
pooltools.kernel.fakedevice) has the same interface, in memory, for tests.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import time
from dataclasses import dataclass

from pooltools.kernel import uapi
from pooltools.kernel.journal import Entry
from pooltools.kernel.netaddr import parse_endpoint
from pooltools.protocol.keys import decode_key

DEVICE_PATH = "/dev/pool"

# Exit statuses of poolctl, poold and pool_test (documented in docs/poolctl-json.md).
EXIT_OK = 0
EXIT_FAILURE = 1  # anything not listed below
EXIT_USAGE = 2  # bad arguments or bad input (malformed key, bad endpoint, bad pool.conf)
EXIT_NO_MODULE = 3  # /dev/pool missing: pool.ko not loaded
EXIT_PERMISSION = 4  # permission denied (device, key file permissions or owner)
EXIT_NOT_FOUND = 5  # unknown peer, session index, file
EXIT_EXISTS = 6  # already exists (peer already trusted, key file exists)
EXIT_TIMEOUT = 7  # timed out (connect, accept, recv)
EXIT_BUSY = 8  # busy (listening on another port, journal already seeded)
EXIT_VERIFY = 9  # journal chain does not verify; pool_test checksum mismatch
EXIT_UNREACHABLE = 10  # connection refused, host or network unreachable, peer closed

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "general failure",
    EXIT_USAGE: "usage error or invalid input",
    EXIT_NO_MODULE: "pool.ko not loaded (/dev/pool missing)",
    EXIT_PERMISSION: "permission denied",
    EXIT_NOT_FOUND: "not found (peer, session, file)",
    EXIT_EXISTS: "already exists",
    EXIT_TIMEOUT: "timed out",
    EXIT_BUSY: "busy",
    EXIT_VERIFY: "verification failed",
    EXIT_UNREACHABLE: "peer unreachable or connection closed",
}


class PoolError(Exception):
    """A failure with a one-line message "<what>: <why>" and an exit status."""

    def __init__(self, what: str, why: str, exit_code: int = EXIT_FAILURE, err: int | None = None) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why
        self.exit_code = exit_code
        self.errno = err


# errno -> (why, exit status), for every ioctl unless the call overrides it.
_COMMON: dict[int, tuple[str, int]] = {
    errno.EPERM: ("operation not permitted (/dev/pool is root's, mode 0600)", EXIT_PERMISSION),
    errno.EACCES: ("permission denied (/dev/pool is root's, mode 0600)", EXIT_PERMISSION),
    errno.ENOTTY: ("ioctl not supported by the loaded pool.ko (module and tools ABI differ)", EXIT_FAILURE),
    errno.ENODEV: ("pool.ko is gone (module unloaded)", EXIT_NO_MODULE),
    errno.ENOKEY: ("no identity loaded (poolctl identity load)", EXIT_FAILURE),
    errno.ETIMEDOUT: ("timed out", EXIT_TIMEOUT),
    errno.EINTR: ("interrupted", EXIT_FAILURE),
    errno.EINVAL: ("invalid argument (rejected by pool.ko)", EXIT_USAGE),
    errno.ENOMEM: ("out of memory", EXIT_FAILURE),
    errno.ECONNREFUSED: ("connection refused", EXIT_UNREACHABLE),
    errno.EHOSTUNREACH: ("host unreachable", EXIT_UNREACHABLE),
    errno.ENETUNREACH: ("network unreachable", EXIT_UNREACHABLE),
    errno.ECONNRESET: ("connection reset by peer", EXIT_UNREACHABLE),
    errno.EPIPE: ("session closed", EXIT_UNREACHABLE),
    errno.ENOTCONN: ("session not established", EXIT_UNREACHABLE),
    errno.EMSGSIZE: (f"message larger than {uapi.POOL_MAX_MESSAGE} bytes", EXIT_USAGE),
    errno.EBUSY: ("busy", EXIT_BUSY),
}


def _error(what: str, exc: OSError, overrides: dict[int, tuple[str, int]] | None = None) -> PoolError:
    e = exc.errno or 0
    why, code = (overrides or {}).get(e) or _COMMON.get(e) or (os.strerror(e) if e else str(exc), EXIT_FAILURE)
    return PoolError(what, why, code, e)


def open_error(path: str, exc: OSError) -> PoolError:
    if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return PoolError(f"{path} missing", "pool.ko not loaded (modprobe pool)", EXIT_NO_MODULE, exc.errno)
    if exc.errno == errno.EACCES:
        return PoolError(f"open {path}", "permission denied (mode 0600: run as root)", EXIT_PERMISSION, exc.errno)
    if exc.errno == errno.EPERM:  # a device cgroup (systemd DeviceAllow) or an LSM said no
        return PoolError(
            f"open {path}", "operation not permitted (device access denied by a sandbox)", EXIT_PERMISSION, exc.errno
        )
    return _error(f"open {path}", exc)


# Per-call meanings of errno values (shared with FakeDevice so both say the same).
SET_IDENTITY_ERRORS = {errno.EINVAL: ("invalid private key", EXIT_USAGE)}
PEER_ADD_ERRORS = {
    errno.EEXIST: ("peer already trusted", EXIT_EXISTS),
    errno.EINVAL: ("invalid public key (all-zero, low-order or the node's own key)", EXIT_USAGE),
    errno.ENOSPC: ("trust store full", EXIT_FAILURE),
}
PEER_DEL_ERRORS = {
    errno.ENOENT: ("peer not trusted", EXIT_NOT_FOUND),
    errno.EINVAL: ("only the public key may be set", EXIT_USAGE),
}
LISTEN_ERRORS = {
    errno.EBUSY: ("already listening on another port (poolctl stop first)", EXIT_BUSY),
    errno.EADDRINUSE: ("port already in use", EXIT_BUSY),
}
CONNECT_ERRORS = {
    errno.ENOKEY: ("no identity loaded or peer not trusted (poolctl identity load / peers add)", EXIT_FAILURE),
    errno.ENOENT: ("peer not in the trust store (poolctl peers add)", EXIT_NOT_FOUND),
    errno.EACCES: ("the peer rejected this node (AUTH_FAIL: does it trust this node's key?)", EXIT_UNREACHABLE),
    errno.EBUSY: ("the peer is overloaded (OVERLOAD)", EXIT_BUSY),
    errno.EPROTO: ("handshake failed: malformed or unauthenticated reply", EXIT_UNREACHABLE),
    errno.ECONNREFUSED: ("connection refused (or the peer closed the handshake)", EXIT_UNREACHABLE),
    errno.ETIMEDOUT: ("handshake timed out", EXIT_TIMEOUT),
    errno.EMFILE: ("too many open files", EXIT_FAILURE),
    errno.ENOSPC: ("session table full (max_sessions)", EXIT_BUSY),
}
ACCEPT_ERRORS = {
    errno.EAGAIN: ("no inbound session waiting", EXIT_TIMEOUT),
    errno.ETIMEDOUT: ("no inbound session within the timeout", EXIT_TIMEOUT),
}
SESSION_ERRORS = {errno.ENOENT: ("no such session", EXIT_NOT_FOUND)}
SEED_ERRORS = {errno.EBUSY: ("the kernel journal already has entries beyond its genesis", EXIT_BUSY)}
CONFIG_ERRORS = {
    errno.EINVAL: (
        "rejected by pool.ko (a value out of range, an unusable or own peer key, or a version not above the active one)",
        EXIT_USAGE,
    ),
    errno.ESTALE: ("that version is no longer the active one (poolctl config show)", EXIT_BUSY),
    errno.ENOENT: ("no previous version in pool.ko to roll back to", EXIT_NOT_FOUND),
}


def raise_errno(what: str, err: int, overrides: dict[int, tuple[str, int]] | None = None) -> None:
    """Raise the PoolError that a failing ioctl with this errno gives (FakeDevice uses it)."""
    raise _error(what, OSError(err, os.strerror(err)), overrides)


@dataclass
class JournalChunk:
    entries: list[Entry]
    first_seq: int  # oldest seq the kernel still holds
    next_seq: int  # seq the next entry will get
    head_hash: bytes  # hash of the newest entry


def _ioctl(
    fd: int,
    req: int,
    arg: ctypes.Structure | ctypes.c_uint32 | int,
    what: str,
    overrides: dict[int, tuple[str, int]] | None = None,
) -> int:
    try:
        if isinstance(arg, int):
            return fcntl.ioctl(fd, req, arg)
        return fcntl.ioctl(fd, req, arg, True)
    except OSError as exc:
        raise _error(what, exc, overrides) from None


class Session:
    """A session fd (from CONNECT, ACCEPT or ATTACH). The session lives while any fd is open."""

    def __init__(self, fd: int, index: int, peer_public_key: bytes = b"") -> None:
        self.fd = fd
        self.index = index
        self.peer_public_key = peer_public_key

    def fileno(self) -> int:
        return self.fd

    def info(self) -> uapi.PoolSessionInfo:
        info = uapi.PoolSessionInfo()
        _ioctl(self.fd, uapi.POOL_SESS_IOC_INFO, info, f"session {self.index} info")
        return info

    def set_channel(self, channel: int) -> None:
        _ioctl(self.fd, uapi.POOL_SESS_IOC_SET_CHANNEL, ctypes.c_uint32(channel), f"session {self.index} set channel")

    def send(self, data: bytes, channel: int | None = None) -> None:
        """One message; on the fd's default channel (write()) unless channel is given."""
        if len(data) > uapi.POOL_MAX_MESSAGE:
            raise PoolError(
                f"send on session {self.index}",
                f"message of {len(data)} bytes exceeds {uapi.POOL_MAX_MESSAGE}",
                EXIT_USAGE,
            )
        what = f"send on session {self.index}"
        if channel is None:
            try:
                os.write(self.fd, data)
            except OSError as exc:
                raise _error(what, exc) from None
            return
        buf = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
        msg = uapi.PoolMsg(ptr=ctypes.addressof(buf), len=len(data), channel=channel, flags=0)
        _ioctl(self.fd, uapi.POOL_SESS_IOC_SEND, msg, what)

    def _poll(self, events: int, timeout: float | None) -> bool:
        p = select.poll()
        p.register(self.fd, events | select.POLLHUP)
        return bool(p.poll(None if timeout is None else max(0, int(timeout * 1000))))

    def wait_readable(self, timeout: float | None) -> bool:
        """A message is queued on some channel (poll cannot tell which), or the session ended."""
        return self._poll(select.POLLIN, timeout)

    def wait_writable(self, timeout: float | None) -> bool:
        """A message of any size can be sent without blocking, or the session ended."""
        return self._poll(select.POLLOUT, timeout)

    def recv(self, channel: int = uapi.POOL_CHANNEL_ANY, timeout: float | None = None) -> tuple[int, bytes] | None:
        """(channel, message); None once the peer has closed and the queue is empty.

        Raises PoolError(EXIT_TIMEOUT) if nothing arrives within timeout seconds.
        """
        what = f"receive on session {self.index}"
        buf = ctypes.create_string_buffer(uapi.POOL_MAX_MESSAGE)
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if waited:
                    # poll said readable but our channel had nothing: messages of other
                    # channels are queued, so poll would answer at once again
                    time.sleep(min(0.02, max(0.0, left)))
                    left = deadline - time.monotonic()
                if (waited and left <= 0) or not self.wait_readable(max(0.0, left)):
                    raise PoolError(what, f"nothing received within {timeout:g} s", EXIT_TIMEOUT)
                waited = True
            msg = uapi.PoolMsg(ptr=ctypes.addressof(buf), len=len(buf), channel=channel, flags=0)
            if timeout is not None:
                msg.flags = uapi.POOL_MSG_DONTWAIT
            try:
                fcntl.ioctl(self.fd, uapi.POOL_SESS_IOC_RECV, msg, True)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    continue
                if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    return None
                raise _error(what, exc) from None
            if msg.len == 0 and msg.channel == uapi.POOL_CHANNEL_ANY:
                return None  # end of stream: the peer closed and the queue is empty
            return msg.channel, buf.raw[: msg.len]

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def read(self, size: int = uapi.POOL_MAX_MESSAGE) -> bytes:
        return os.read(self.fd, size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Device:
    """/dev/pool, the node-wide control device."""

    def __init__(self, path: str = DEVICE_PATH) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise open_error(path, exc) from None

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _io(
        self, req: int, arg: ctypes.Structure | int, what: str, overrides: dict[int, tuple[str, int]] | None = None
    ) -> int:
        return _ioctl(self.fd, req, arg, what, overrides)

    # ---- identity
    def get_identity(self) -> uapi.PoolIdentity:
        ident = uapi.PoolIdentity()
        self._io(uapi.POOL_IOC_GET_IDENTITY, ident, "get identity")
        return ident

    def set_identity(self, private_key: bytes, org_id: int = 0, segment_id: int = 0) -> uapi.PoolIdentity:
        ident = uapi.PoolIdentity(org_id=org_id, segment_id=segment_id)
        ctypes.memmove(ident.private_key, private_key, uapi.POOL_KEY_LEN)
        try:
            self._io(uapi.POOL_IOC_SET_IDENTITY, ident, "set identity", SET_IDENTITY_ERRORS)
        finally:
            ctypes.memset(ident.private_key, 0, uapi.POOL_KEY_LEN)
        return ident

    # ---- trust store
    def peer_add(
        self, public_key: bytes, name: str = "", endpoint_addr: bytes = bytes(16), endpoint_port: int = 0
    ) -> uapi.PoolPeer:
        peer = make_peer(public_key, name, endpoint_addr, endpoint_port)
        self._io(
            uapi.POOL_IOC_PEER_ADD,
            peer,
            "add peer",
            PEER_ADD_ERRORS,
        )
        return peer

    def peer_del(self, public_key: bytes) -> None:
        peer = make_peer(public_key)
        self._io(uapi.POOL_IOC_PEER_DEL, peer, "remove peer", PEER_DEL_ERRORS)

    def _list(self, req: int, item: type, what: str) -> list:
        capacity = 64
        while True:
            arr = (item * capacity)()
            lst = uapi.PoolList(ptr=ctypes.addressof(arr), capacity=capacity)
            self._io(req, lst, what)
            if lst.total <= capacity:
                return [arr[i].copy() for i in range(lst.count)]
            capacity = lst.total + 16  # the list grew between calls: try again

    def peers(self) -> list[uapi.PoolPeer]:
        return self._list(uapi.POOL_IOC_PEER_LIST, uapi.PoolPeer, "list peers")

    # ---- listener
    def listen(self, port: int = 0) -> None:
        self._io(
            uapi.POOL_IOC_LISTEN,
            uapi.PoolListen(port=port),
            f"listen on port {port or 'default'}",
            LISTEN_ERRORS,
        )

    def stop(self) -> None:
        self._io(uapi.POOL_IOC_STOP, 0, "stop listener")

    # ---- sessions
    def connect(
        self,
        peer_public_key: bytes,
        addr: bytes,
        port: int = 0,
        channel: int = 0,
        timeout_ms: int = 0,
        scope_id: int = 0,
        fd_flags: int = os.O_CLOEXEC,
    ) -> Session:
        c = uapi.PoolConnect(port=port, channel=channel, scope_id=scope_id, timeout_ms=timeout_ms, fd_flags=fd_flags)
        ctypes.memmove(c.addr, addr, 16)
        ctypes.memmove(c.peer_public_key, peer_public_key, uapi.POOL_KEY_LEN)
        self._io(
            uapi.POOL_IOC_CONNECT,
            c,
            "connect",
            CONNECT_ERRORS,
        )
        return Session(c.fd, c.index, peer_public_key)

    def accept(self, timeout_ms: int = 0, fd_flags: int = os.O_CLOEXEC) -> Session:
        a = uapi.PoolAccept(timeout_ms=timeout_ms, fd_flags=fd_flags)
        self._io(uapi.POOL_IOC_ACCEPT, a, "accept", ACCEPT_ERRORS)
        return Session(a.fd, a.index, bytes(a.peer_public_key))

    def attach(self, index: int, fd_flags: int = os.O_CLOEXEC) -> Session:
        a = uapi.PoolAttach(index=index, fd_flags=fd_flags)
        self._io(uapi.POOL_IOC_ATTACH, a, f"attach to session {index}", SESSION_ERRORS)
        return Session(a.fd, index)

    def close_session(self, index: int, code: int = 0) -> None:
        self._io(
            uapi.POOL_IOC_CLOSE,
            uapi.PoolClose(index=index, code=code),
            f"close session {index}",
            SESSION_ERRORS,
        )

    def sessions(self) -> list[uapi.PoolSessionInfo]:
        return self._list(uapi.POOL_IOC_SESSIONS, uapi.PoolSessionInfo, "list sessions")

    # ---- statistics, journal, configuration
    def stats(self) -> dict[str, int]:
        s = uapi.PoolStats()
        self._io(uapi.POOL_IOC_STATS, s, "read statistics")
        return stats_dict(s)

    def journal_head(self) -> JournalChunk:
        """The journal's first and next sequence numbers and head hash, without its entries
        (a read with no room: pool.ko copies none)."""
        jr = uapi.PoolJournalRead(from_seq=0)
        self._io(uapi.POOL_IOC_JOURNAL_READ, jr, "read journal")
        return JournalChunk([], jr.first_seq, jr.next_seq, bytes(jr.head_hash))

    def journal_read(self, from_seq: int = 0) -> JournalChunk:
        entries: list[Entry] = []
        capacity = 256
        arr = (uapi.PoolJournalEntry * capacity)()
        seq = from_seq
        while True:
            jr = uapi.PoolJournalRead(from_seq=seq)
            jr.list.ptr = ctypes.addressof(arr)
            jr.list.capacity = capacity
            self._io(uapi.POOL_IOC_JOURNAL_READ, jr, "read journal")
            entries.extend(Entry.from_struct(arr[i]) for i in range(jr.list.count))
            if jr.list.count == 0 or jr.list.total <= jr.list.count or not entries:
                return JournalChunk(entries, jr.first_seq, jr.next_seq, bytes(jr.head_hash))
            seq = entries[-1].seq + 1
            if seq >= jr.next_seq:
                return JournalChunk(entries, jr.first_seq, jr.next_seq, bytes(jr.head_hash))

    def journal_seed(self, next_seq: int, head_hash: bytes) -> None:
        s = uapi.PoolJournalSeed(next_seq=next_seq)
        ctypes.memmove(s.head_hash, head_hash, uapi.POOL_HASH_LEN)
        self._io(
            uapi.POOL_IOC_JOURNAL_SEED,
            s,
            "seed journal",
            SEED_ERRORS,
        )

    def config_get(self) -> uapi.PoolConfig:
        c = uapi.PoolConfig()
        self._io(uapi.POOL_IOC_CONFIG_GET, c, "read configuration")
        return c

    def config_apply(self, c: uapi.PoolConfig, peers: list[uapi.PoolPeer]) -> uapi.PoolConfig:
        """CONFIG_APPLY: c (version, hash, tunables, confirm_within_ms) with the trust store `peers`."""
        arr = (uapi.PoolPeer * max(len(peers), 1))(*peers)
        c.peers_ptr, c.peer_count = (ctypes.addressof(arr), len(peers)) if peers else (0, 0)
        self._io(uapi.POOL_IOC_CONFIG_APPLY, c, f"apply configuration version {c.version}", CONFIG_ERRORS)
        return c

    def config_confirm(self, version: int) -> None:
        self._io(
            uapi.POOL_IOC_CONFIG_CONFIRM,
            uapi.PoolConfigRef(version=version),
            f"confirm configuration version {version}",
            CONFIG_ERRORS,
        )

    def config_rollback(self, version: int) -> None:
        """CONFIG_ROLLBACK: version must be the active one; restores the previous."""
        self._io(
            uapi.POOL_IOC_CONFIG_ROLLBACK,
            uapi.PoolConfigRef(version=version),
            f"roll back configuration version {version}",
            CONFIG_ERRORS,
        )


def make_peer(
    public_key: bytes, name: str = "", endpoint_addr: bytes = bytes(16), endpoint_port: int = 0
) -> uapi.PoolPeer:
    raw_name = name.encode()
    if len(raw_name) >= uapi.POOL_NAME_LEN:
        raise PoolError("peer name", f"{name!r} is longer than {uapi.POOL_NAME_LEN - 1} bytes", EXIT_USAGE)
    if len(public_key) != uapi.POOL_KEY_LEN:
        raise PoolError("peer key", f"must be {uapi.POOL_KEY_LEN} bytes", EXIT_USAGE)
    peer = uapi.PoolPeer(name=raw_name, endpoint_port=endpoint_port)
    ctypes.memmove(peer.public_key, public_key, uapi.POOL_KEY_LEN)
    ctypes.memmove(peer.endpoint_addr, endpoint_addr, 16)
    return peer


def stats_dict(s: uapi.PoolStats) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(min(s.count, uapi.POOL_STATS_MAX)):
        try:
            name = uapi.Stat(i).name.lower()
        except ValueError:
            name = f"stat_{i}"
        out[name] = s.value[i]
    return out


LIVE_STATES = (uapi.SessionState.ESTABLISHED, uapi.SessionState.REKEYING)


def live_sessions(dev: Device, key: bytes) -> list[int]:
    """Indexes of the sessions with the peer of this key that carry traffic, oldest first."""
    return sorted(s.index for s in dev.sessions() if bytes(s.peer_public_key) == key and s.state in LIVE_STATES)


def resolve_peer(dev: Device, ref: str) -> uapi.PoolPeer:
    """A trusted peer by name or base64 public key (44 characters)."""
    peers = dev.peers()
    if len(ref.strip()) == 44:
        try:
            key = decode_key(ref)
        except ValueError as exc:
            raise PoolError(f"peer {ref}", str(exc), EXIT_USAGE) from None
        for p in peers:
            if bytes(p.public_key) == key:
                return p
    else:
        for p in peers:
            if p.name.decode(errors="replace") == ref:
                return p
    raise PoolError(f"peer {ref}", "not in the trust store (poolctl peers list)", EXIT_NOT_FOUND)


def peer_endpoint(peer: uapi.PoolPeer, endpoint: str | None = None) -> tuple[bytes, int] | None:
    """(address, port) to reach peer: `endpoint` ("addr:port", "[v6]:port") when given, else its
    trust-store endpoint; None when it has neither."""
    if endpoint:
        try:
            ep = parse_endpoint(endpoint)
        except ValueError as exc:
            raise PoolError(f"endpoint {endpoint!r}", str(exc), EXIT_USAGE) from None
        return ep.addr, ep.port
    if peer.endpoint_port:
        return bytes(peer.endpoint_addr), peer.endpoint_port
    return None
