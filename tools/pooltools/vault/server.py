"""`pool_vault serve`: one conversation per POOL session, each in a thread of its own.

The server ATTACHes every established session on the node (poold holds them; clients open
their own with CONNECT) and reads only the vault channel, with a blocking, channel-filtered
receive: poll() on a session fd reports messages of any channel, so an event loop would spin on
a session whose other channels hold unread messages. A thread per session also means a slow or
stalled peer blocks only its own thread; sends wait for POOL's flow-control window, at most
idle_timeout seconds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.common.fsutil import atomic_write, file_signature
from pooltools.common.link import Link, LinkClosed, LinkTimeout, SessionLink
from pooltools.common.sessions import SessionId, SessionWatcher, read_held
from pooltools.protocol.keys import encode_key
from pooltools.vault import acl as aclmod
from pooltools.vault import paths, wire
from pooltools.vault.store import Store
from pooltools.vault.wire import Err, Kind, VaultError

log = logging.getLogger("pool_vault")

MAX_SIZE = 1 << 53  # JSON numbers are exact up to here
# errors the filesystem gives for a name it cannot hold
NAME_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


@dataclass(frozen=True)
class Limits:
    max_transfers_per_peer: int = 32
    idle_timeout: float = 120.0


class Vault:
    """What every conversation shares: the store, the ACL as it is now, limits, counters."""

    def __init__(self, store: Store, acl: aclmod.Acl, limits: Limits) -> None:
        self.store, self.acl, self.limits = store, acl, limits
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # bytes and transfers
        self.active: Counter[str] = Counter()  # open transfers per peer key (base64)
        self.conversations: set[Conversation] = set()

    def count(self, counter: Counter[str], name: str, n: int = 1) -> None:
        with self.lock:
            counter[name] += n

    @contextlib.contextmanager
    def transfer_slot(self, key: str) -> Iterator[None]:
        with self.lock:
            if self.active[key] >= self.limits.max_transfers_per_peer:
                raise VaultError(
                    Err.BUSY, f"this peer has {self.active[key]} transfers open, the most the vault allows"
                )
            self.active[key] += 1
        try:
            yield
        finally:
            with self.lock:
                self.active[key] -= 1
                if not self.active[key]:
                    del self.active[key]

    def set_acl(self, acl: aclmod.Acl) -> list[Conversation]:
        """Use acl from now on; the conversations of peers it no longer enrols."""
        with self.lock:
            self.acl = acl
            return [c for c in self.conversations if c.grant is not None and acl.lookup(c.peer_key) is None]

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "server": "pool_vault",
                "version": __version__,
                "acl_version": self.acl.version,
                "peers_enrolled": len(self.acl.peers),
                "conversations": len(self.conversations),
                "transfers_active": sum(self.active.values()),
                "requests": dict(self.requests),
                "refusals": dict(self.refusals),
                **dict(self.counts),
                "limits": self.limits_doc(),
            }

    def limits_doc(self) -> dict[str, Any]:
        return {
            "max_file_size": self.store.max_file_size,
            "max_transfers_per_peer": self.limits.max_transfers_per_peer,
            "keep_versions": self.store.keep_versions,
            "block_size_min": wire.BLOCK_SIZE_MIN,
            "block_size_max": wire.BLOCK_SIZE_MAX,
        }


class Conversation:
    """The requests of one session, in order (docs/vault.md section 4)."""

    def __init__(self, vault: Vault, link: Link, peer_key: bytes, on_revoke: Callable[[], None] | None = None) -> None:
        self.vault, self.link, self.peer_key = vault, link, peer_key
        self.key_text = encode_key(peer_key)
        self.grant: aclmod.Grant | None = None
        self.revoked = threading.Event()
        self.on_revoke = on_revoke
        # after a refused push, its remaining blocks are dropped without a word
        self.dropping_blocks = False

    def run(self) -> None:
        with self.vault.lock:
            self.vault.conversations.add(self)
        try:
            while not self.revoked.is_set():
                msg = self.link.recv()
                if msg is None:
                    return
                self.handle(msg)
        except (LinkClosed, LinkTimeout):
            return
        finally:
            with self.vault.lock:
                self.vault.conversations.discard(self)
            self.link.close()

    def revoke(self) -> None:
        """The peer was revoked: say so, end the conversation and its session."""
        self.revoked.set()
        with contextlib.suppress(LinkClosed, LinkTimeout):
            self.link.send(wire.reply(VaultError(Err.REVOKED, "this peer's enrolment was revoked").reply()), 1.0)
        self.vault.count(self.vault.refusals, Err.REVOKED.value)
        if self.on_revoke:
            self.on_revoke()

    def send(self, data: bytes) -> None:
        self.link.send(data, self.vault.limits.idle_timeout)

    def refuse(self, exc: VaultError) -> None:
        self.vault.count(self.vault.refusals, str(exc.code))
        self.send(wire.reply(exc.reply()))

    def handle(self, msg: bytes) -> None:
        try:
            m = wire.decode(msg)
            if m.kind == Kind.BLOCK:
                if self.dropping_blocks:
                    return  # of a push that failed: dropped until the next request
                self.dropping_blocks = True
                raise VaultError(Err.BAD_REQUEST, f"block {m.index} arrived with no push in progress")
            self.dropping_blocks = False
            if m.kind != Kind.REQUEST:
                raise VaultError(Err.BAD_REQUEST, f"a client sends REQUEST and BLOCK messages, not {m.kind.name}")
            op = wire.member(m.header, "op", str)
            handler = getattr(self, f"op_{op}", None) if op.isidentifier() else None
            if handler is None:
                raise VaultError(Err.UNKNOWN_OP, f"unknown op {op!r}")
            self.vault.count(self.vault.requests, op)
            self.grant = self.current_grant()
            handler(m.header, self.grant)
        except VaultError as exc:
            self.dropping_blocks = True
            self.refuse(exc)
        except OSError as exc:
            self.dropping_blocks = True
            code = Err.BAD_PATH if exc.errno in NAME_ERRNOS else Err.IO_ERROR
            self.refuse(
                VaultError(code, f"{exc.strerror or exc}" + (f": {exc.filename}" if code == Err.IO_ERROR else ""))
            )

    def current_grant(self) -> aclmod.Grant:
        g = self.vault.acl.lookup(self.peer_key)
        if g is None:
            if self.grant is not None:
                raise VaultError(Err.REVOKED, "this peer's enrolment was revoked")
            raise VaultError(Err.NOT_ENROLLED, f"peer {self.key_text} is not enrolled in this vault")
        return g

    # ---- checks

    @staticmethod
    def path(header: dict[str, Any], g: aclmod.Grant, name: str = "path") -> str:
        p = paths.check(wire.member(header, name, str), name)
        if not paths.under(p, g.prefix):
            raise VaultError(Err.DENIED, f"{p!r} is outside this peer's prefix {g.prefix!r}")
        return p

    @staticmethod
    def writer(g: aclmod.Grant, op: str) -> None:
        if not g.writes:
            raise VaultError(Err.DENIED, f"{op} needs the read-write scope; this peer has {g.scope}")

    # ---- requests

    def op_status(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        self.send(
            wire.ok(
                server="pool_vault",
                version=__version__,
                formats=[wire.FORMAT],
                peer={"name": g.name, "scope": g.scope, "prefix": g.prefix},
                limits=self.vault.limits_doc(),
            )
        )

    def op_stat(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        self.send(wire.ok(**self.vault.store.stat(self.path(header, g))))

    def op_history(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        p = self.path(header, g)
        self.send(wire.ok(path=p, versions=self.vault.store.history(p)))

    def op_list(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        prefix = paths.check(wire.member(header, "prefix", str, ""), "prefix", allow_empty=True)
        after = wire.member(header, "after", str, "")
        if g.prefix and not paths.under(prefix, g.prefix):
            if paths.under(g.prefix, prefix):
                prefix = g.prefix  # a listing above the peer's prefix shows what is under it
            else:
                raise VaultError(Err.DENIED, f"{prefix!r} is outside this peer's prefix {g.prefix!r}")
        entries: list[dict[str, Any]] = []
        more = False
        room = wire.MAX_MESSAGE - wire.reply_size({"ok": True, "entries": [], "more": True})
        for p in self.vault.store.walk(prefix, after):
            try:
                entry = self.vault.store.stat(p)
            except VaultError:
                continue  # gone, or a name that is not a vault path
            size = len(json.dumps(entry, separators=(",", ":"))) + 1
            if size > room:
                more = True
                break
            room -= size
            entries.append(entry)
        self.send(wire.ok(entries=entries, more=more))

    def op_delete(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        self.writer(g, "delete")
        p = self.path(header, g)
        force = wire.member(header, "force", bool, False)
        base = wire.sha256_member(header, "base", "" if force else ...)
        self.send(wire.ok(path=p, version=self.vault.store.delete(p, base, force, g.name)))

    def op_pull(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        p = self.path(header, g)
        version = wire.int_member(header, "version", 1, MAX_SIZE, None) if "version" in header else None
        bs = wire.int_member(header, "block_size", wire.BLOCK_SIZE_MIN, wire.BLOCK_SIZE_MAX, wire.BLOCK_SIZE_MAX)
        first = wire.int_member(header, "from_block", 0, MAX_SIZE, 0)
        with self.vault.transfer_slot(self.key_text), self.vault.store.open_version(p, version) as (f, v):
            count = wire.blocks_of(v.size, bs)
            if first > count:
                raise VaultError(Err.BAD_REQUEST, f"'from_block' {first} is past the file's {count} blocks")
            self.send(wire.ok(path=p, size=v.size, sha256=v.sha256, version=v.version, blocks=count, block_size=bs))
            f.seek(first * bs)
            for i in range(first, count):
                want = wire.block_length(v.size, bs, i)
                data = f.read(want)
                if len(data) != want:
                    raise VaultError(Err.IO_ERROR, f"version {v.version} of {p!r} is shorter than recorded")
                if self.revoked.is_set():
                    return
                self.send(wire.block(i, data))
                self.vault.count(self.vault.counts, "bytes_sent", want)
            self.send(wire.ok())
            self.vault.count(self.vault.counts, "pulls_completed")

    def op_push(self, header: dict[str, Any], g: aclmod.Grant) -> None:
        self.writer(g, "push")
        p = self.path(header, g)
        size = wire.int_member(header, "size", 0, MAX_SIZE)
        digest = wire.sha256_member(header, "sha256")
        base = wire.member(header, "base", str)
        if base != "new" and not wire.is_sha256(base):
            raise VaultError(Err.BAD_REQUEST, "'base' must be \"new\" or a SHA-256 in 64 lower-case hex digits")
        bs = wire.int_member(header, "block_size", wire.BLOCK_SIZE_MIN, wire.BLOCK_SIZE_MAX, wire.BLOCK_SIZE_MAX)
        force = wire.member(header, "force", bool, False)
        store = self.vault.store
        store.check_size(size)  # before any block moves
        store.expect_base(p, base, force)  # refuse a conflict before any block moves
        with self.vault.transfer_slot(self.key_text):
            up = store.begin_push(self.peer_key, p, size, digest, base, bs)
            try:
                self.send(wire.ok(have=up.have))
                while not up.complete:
                    try:
                        msg = self.link.recv(self.vault.limits.idle_timeout)
                    except LinkTimeout:
                        self.vault.count(self.vault.counts, "pushes_interrupted")
                        raise VaultError(
                            Err.BAD_REQUEST, f"no block for {self.vault.limits.idle_timeout:g} s: push abandoned"
                        ) from None
                    if msg is None or self.revoked.is_set():
                        self.vault.count(self.vault.counts, "pushes_interrupted")
                        return
                    m = wire.decode(msg)
                    if m.kind != Kind.BLOCK:
                        raise VaultError(Err.BAD_REQUEST, f"push of {p!r} unfinished: block {up.have} was due")
                    up.write_block(m.index, m.sha256, m.payload)
                    self.vault.count(self.vault.counts, "bytes_received", len(m.payload))
                up.seal()
                version = store.commit(up, force, g.name)
            finally:
                up.close()
        self.vault.count(self.vault.counts, "pushes_completed")
        self.send(wire.ok(path=p, version=version, sha256=digest, size=size))


class Server:
    """Finds the node's sessions, runs a conversation on each, follows the ACL file."""

    def __init__(
        self,
        vault: Vault,
        acl_path: Path,
        device_factory: Callable[[], Any],
        status_path: Path | None = None,
        staging_max_age: float = 86400.0,
        held: Callable[[], set[SessionId]] = read_held,
    ) -> None:
        self.vault, self.acl_path, self.status_path = vault, Path(acl_path), status_path
        self.dev = device_factory()
        self.staging_max_age = staging_max_age
        self.watcher = SessionWatcher(self.dev, self._start, held=held)
        self.acl_sig = file_signature(self.acl_path)
        self.stop = threading.Event()
        self.reload_requested = threading.Event()

    def reload_acl(self) -> None:
        sig = file_signature(self.acl_path)
        if sig == self.acl_sig and not self.reload_requested.is_set():
            return
        self.reload_requested.clear()
        self.acl_sig = sig
        try:
            acl = aclmod.load(self.acl_path)
        except aclmod.AclError as exc:
            log.error("ACL not reloaded, the one in use stays: %s", exc)
            return
        for conv in self.vault.set_acl(acl):
            log.info("peer %s revoked: ending its conversation", conv.key_text)
            conv.revoke()
        log.info("ACL version %d in use (%d peers)", acl.version, len(acl.peers))

    def discover(self) -> None:
        """Attach the sessions poold holds; end those it let go of."""
        self.watcher.discover()

    @property
    def attached(self) -> dict[int, object]:
        return self.watcher.attached

    def _start(self, index: int, session: Any, info: Any) -> Conversation:
        conv = Conversation(
            self.vault, SessionLink(session, wire.CHANNEL), bytes(info.peer_public_key), self.watcher.closer(index)
        )
        threading.Thread(target=self._converse, args=(index, conv), name=f"session-{index}", daemon=True).start()
        return conv

    def _converse(self, index: int, conv: Conversation) -> None:
        try:
            conv.run()
        except Exception:  # a bug must cost one conversation, not the server
            log.exception("conversation on session %d failed", index)
        finally:
            self.watcher.forget(index)

    def write_status(self) -> None:
        if self.status_path is None:
            return
        try:
            atomic_write(self.status_path, (json.dumps(self.vault.status(), indent=1) + "\n").encode())
        except OSError as exc:
            log.warning("status file %s not written: %s", self.status_path, exc)

    def run(self, interval: float = 0.5, ready: Callable[[], None] | None = None) -> None:
        last_status = last_expiry = 0.0
        self.vault.store.expire_staging(self.staging_max_age)
        if ready:
            ready()
        while not self.stop.is_set():
            self.reload_acl()
            self.discover()
            now = time.monotonic()
            if now - last_status >= 5:
                self.write_status()
                last_status = now
            if now - last_expiry >= 3600:
                self.vault.store.expire_staging(self.staging_max_age)
                last_expiry = now
            self.stop.wait(interval)
        self.write_status()
