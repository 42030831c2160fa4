"""poold: keeps a node's POOL state in pool.ko (see tools/man/poold.8).

- reads /etc/pool/pool.conf (docs/pool.conf.md), loads the identity into the
  module and, while pool.ko runs no configuration version (version 0), the
  trust store from its [peer] sections, changing only what differs;
- precedence with configuration versions (poolctl config, docs/operations-config.md):
  identity and listener always come from pool.conf; the trust store and the
  tunables belong to the active version whenever pool.ko runs one (version > 0):
  poold then applies no [peer] section over it (it logs that it defers) and
  connects to the version's peers; when pool.ko is at version 0 at start or
  after a module load, poold restores the last confirmed version (or, if that
  file fails its hash check, the confirmed one before it);
- owns the listener when `listen = true`; ACCEPTs every inbound session and
  holds its fd (a session lives while an fd is open); connects to each trusted
  peer with an endpoint whose public key is greater than the node's own, with
  exponential backoff;
- persists the kernel journal, append-only, to state_dir/journal.jsonl, rotated by size
  (journal.jsonl.1 .. .8, about 36 MiB at most, the chain unbroken across files); after a
  module load it SEEDs the kernel chain with the persisted head, so the history
  continues; it verifies the persisted chain at start;
- notices a reloaded module (device gone, identity unset) and re-applies;
- SIGHUP: re-reads pool.conf (keeps the old one if the new one is invalid),
  applying the difference: sessions to peers that remain stay up (peers only
  at version 0, as above);
- SIGTERM/SIGINT: closes its sessions, stops the listener it owns, exits 0;
- sd_notify READY=1 / RELOADING=1 / STOPPING=1 / STATUS=; logs to stderr.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.common import keyfile, sdnotify
from pooltools.common.sessions import POOLD_SESSIONS, SessionId, write_held
from pooltools.config import conf
from pooltools.config.store import Store, StoreError
from pooltools.config.versions import VersionRelays, restore_at_boot
from pooltools.kernel import journal as jr
from pooltools.kernel import uapi
from pooltools.kernel.device import (
    DEVICE_PATH,
    EXIT_NO_MODULE,
    EXIT_PERMISSION,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Device,
    PoolError,
)
from pooltools.kernel.netaddr import Endpoint
from pooltools.protocol.keys import encode_key
from pooltools.protocol.x25519 import BackendMissing
from pooltools.protocol.x25519 import public_key as x25519_public

log = logging.getLogger("poold")

JOURNAL_FILE = "journal.jsonl"
BACKOFF_MIN = 1.0
# A peer that comes back (its rollout, restart or reboot) is reached again within BACKOFF_MAX
# (+20 % jitter): it must stay well inside pool.ops.config's default health_timeout (30 s), or a
# version applied just after a rollout fails its health check waiting for this retry.
BACKOFF_MAX = 15.0
CONNECT_TIMEOUT_MS = 5000
DENIED_HINT = (
    "cannot open /dev/pool: permission denied; if pool.ko was loaded after poold started, the unit's "
    "DeviceAllow rule did not cover it: exiting so that systemd restarts poold"
)
IDLE_WAKEUP = 5.0  # seconds between passes when nothing happens
DEADLINE_MARGIN = 0.1  # seconds after a tentative version's deadline before poold looks again
DEADLINE_HURRY = 10.0  # seconds past that deadline during which poold keeps looking every DEADLINE_MARGIN
# For CHANGE_RETRY_WINDOW seconds after the active version changes (or a reload), a failed connect is
# retried every CHANGE_RETRY seconds instead of backing off: the peer is most likely changing too
# (the same rollout, or its own deadline rollback a moment after ours) and answers any moment now.
CHANGE_RETRY_WINDOW = 10.0
CHANGE_RETRY = 0.5
LIVE_STATES = (uapi.SessionState.HANDSHAKE, uapi.SessionState.ESTABLISHED, uapi.SessionState.REKEYING)


class ConfigRejected(Exception):
    """The configuration cannot be applied (bad file, bad key file): nothing was changed."""


def tentative_deadline_ns(cur: uapi.PoolConfig) -> int:
    """The deadline (CLOCK_REALTIME) of pool.ko's active version while it is tentative, else 0."""
    return cur.deadline_ns if cur.flags & uapi.POOL_CONFIG_TENTATIVE else 0


@dataclass
class Backoff:
    delay: float = 0.0
    next_at: float = 0.0
    last_error: str = ""
    direct_failed: bool = False  # the last attempt went to the endpoint and failed: try the relays

    def failed(self, now: float, error: str, quick: bool = False) -> float:
        """Schedule the next attempt; `quick`: right after a configuration change (CHANGE_RETRY)."""
        if quick:
            self.delay = 0.0  # the doubling starts afresh once the change window is over
            wait = CHANGE_RETRY
        else:
            self.delay = BACKOFF_MIN if self.delay == 0 else min(self.delay * 2, BACKOFF_MAX)
            wait = self.delay * random.uniform(0.8, 1.2)
        self.next_at = now + wait
        self.last_error = error
        return wait

    def reset(self) -> None:
        self.delay = 0.0
        self.next_at = 0.0
        self.last_error = ""
        self.direct_failed = False


class SyncExecutor:
    """Runs jobs at once (unit tests); same submit() as a ThreadPoolExecutor."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        f: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            f.set_result(fn(*args))
        except BaseException as exc:  # delivered through the future, like a thread pool
            f.set_exception(exc)
        return f

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class Poold:
    def __init__(
        self,
        conf_path: str,
        open_device: Callable[[], Any],
        executor: Any = None,
        clock: Callable[[], float] = time.monotonic,
        key_owner: int | None = None,
        sessions_file: Path | None = None,
    ) -> None:
        self.conf_path = conf_path
        # where the services read which sessions poold holds (None: nowhere, as in tests)
        self.sessions_file = sessions_file
        self.published: list[SessionId] | None = None  # what sessions_file says now
        self.publish_error = ""
        self.open_device = open_device
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="connect")
        self.clock = clock
        self.key_owner = key_owner
        self.conf: conf.PoolConf | None = None
        self.private: bytes = b""
        self.public: bytes = b""
        self.dev: Any = None
        self.held: dict[int, Any] = {}  # session index -> session fd we hold
        self.owns_listener = False
        self.listen_port = 0
        self.backoff: dict[bytes, Backoff] = {}
        self.pending: dict[bytes, concurrent.futures.Future[Any]] = {}
        self.via_door: set[bytes] = set()  # pending connects that go through pool_relay's door
        self.last_status = ""  # the status line systemd has
        self.journal: jr.JournalFile | None = None
        self.journal_next = 0  # next kernel seq to persist
        self.device_retry_at = 0.0
        self.open_error: PoolError | None = None
        self.applied = False
        self.config_version: int | None = None  # pool.ko's active configuration version, as last seen
        # CLOCK_REALTIME deadline of a tentative version (0: none), so poold wakes when pool.ko
        # rolls it back and reconnects to the restored peers at once, not at its next idle pass.
        self.tentative_deadline_ns = 0
        self.quick_retry_until = 0.0  # monotonic: failed connects retry every CHANGE_RETRY until then
        # the trust store poold connects to and names peers from: pool.conf's [peer] sections at
        # version 0, the kernel's (the active version's) otherwise
        self.targets: dict[bytes, conf.PeerConf] = {}
        self.version_relays: VersionRelays | None = None  # the active version's relays, read once per version

    # ---- configuration

    def read_config(self) -> tuple[conf.PoolConf, bytes, bytes]:
        """Parse pool.conf and the key file; ConfigRejected with a one-line reason."""
        try:
            c = conf.load(self.conf_path)
        except conf.ConfError as exc:
            raise ConfigRejected(str(exc)) from None
        try:
            private = keyfile.read_private(c.node.private_key_file, self.key_owner)
        except PoolError as exc:
            raise ConfigRejected(str(exc)) from None
        public = x25519_public(private)
        for p in c.peers:
            if p.public_key == public:
                raise ConfigRejected(f"{c.path}:{p.line}: peer '{p.name}' has this node's own public key")
        return c, private, public

    def load_config(self) -> None:
        self.conf, self.private, self.public = self.read_config()

    # ---- device

    def ensure_device(self) -> bool:
        """Open /dev/pool if needed; True when the device is usable."""
        if self.dev is not None:
            return True
        if self.clock() < self.device_retry_at:
            return False
        try:
            self.dev = self.open_device()
        except PoolError as exc:
            self.device_retry_at = self.clock() + 2.0
            if self.open_error is None or str(exc) != str(self.open_error):
                log.warning("%s; waiting for it", exc)
            self.open_error = exc
            return False
        self.open_error = None
        log.info("opened %s", getattr(self.dev, "path", "/dev/pool"))
        self.applied = False
        return True

    @property
    def device_denied(self) -> bool:
        """/dev/pool exists but cannot be opened: under systemd, the unit's device rule
        (DeviceAllow=/dev/pool) is resolved at start, so a module loaded later needs a restart."""
        return self.open_error is not None and self.open_error.exit_code == EXIT_PERMISSION

    def drop_device(self, why: str) -> None:
        log.warning(
            "lost pool.ko (%s): dropping %d session fd(s), will re-apply state when it is back", why, len(self.held)
        )
        for s in self.held.values():
            _close_quietly(s)
        self.held.clear()
        self.pending.clear()
        if self.dev is not None:
            _close_quietly(self.dev)
        self.dev = None
        self.owns_listener = False
        self.applied = False
        self.device_retry_at = self.clock() + 1.0
        sdnotify.notify("STATUS=waiting for pool.ko")

    # ---- applying state

    def apply(self) -> None:
        """Bring the kernel in line with the configuration (only what differs).

        Precedence: identity and listener from pool.conf, always. The trust store from
        pool.conf's [peer] sections only while pool.ko runs configuration version 0; at
        start or after a module load (not on SIGHUP) the last confirmed version is then
        restored over it. A version pool.ko runs (tentative or confirmed) is never
        overridden: poold defers to it.
        """
        assert self.conf is not None and self.dev is not None
        initial = not self.applied
        self.sync_journal(initial=initial)
        self.apply_identity()
        with self.store_lock():
            cur = self.dev.config_get()
            if cur.version == 0:
                self.apply_peers()  # version 0's trust store (what a rollback past the first version returns to)
                if initial:
                    restore_at_boot(self.dev, self.conf.node.state_dir, log)
                    cur = self.dev.config_get()
        if cur.version:
            log.info(
                "configuration version %d%s is active: keeping its trust store and tunables; pool.conf's "
                "[peer] sections (%d) are not applied while a version is active",
                cur.version,
                " (tentative)" if cur.flags & uapi.POOL_CONFIG_TENTATIVE else "",
                len(self.conf.peers),
            )
        self.config_version = cur.version
        self.tentative_deadline_ns = tentative_deadline_ns(cur)
        self.follow_relays(cur)
        self.refresh_targets()
        self.apply_listener()
        self.applied = True
        self.sync_journal()

    def track_version(self) -> None:
        """Each pass: follow pool.ko's active configuration version (poolctl config apply,
        rollback, a deadline passing) and the trust store poold connects to."""
        assert self.conf is not None and self.dev is not None
        cur = self.dev.config_get()
        self.tentative_deadline_ns = tentative_deadline_ns(cur)
        if cur.version != self.config_version:
            if cur.version:
                log.info(
                    "configuration version %d%s is active now: it owns the trust store and tunables "
                    "(pool.conf's [peer] sections are not applied)",
                    cur.version,
                    " (tentative)" if cur.flags & uapi.POOL_CONFIG_TENTATIVE else "",
                )
            else:
                with self.store_lock():
                    cur = self.dev.config_get()
                    if cur.version == 0:
                        log.info(
                            "configuration version 0 (rolled back past the first version): "
                            "pool.conf's [peer] sections make the trust store again"
                        )
                        self.apply_peers()
            self.config_version = cur.version
            self.retry_now(f"configuration version {cur.version}")
        self.follow_relays(cur)
        self.refresh_targets()

    def follow_relays(self, cur: uapi.PoolConfig) -> None:
        assert self.conf is not None
        if self.version_relays is None:
            self.version_relays = VersionRelays(self.conf.node.state_dir, log)
        self.version_relays.follow(cur)

    def retry_now(self, why: str) -> None:
        """A new trust store or configuration: the failures behind the backoff may be over
        (a peer that a rollout was bringing up, a corrected key), so try every peer at once, and
        retry failures quickly for CHANGE_RETRY_WINDOW seconds."""
        waiting = [key for key, b in self.backoff.items() if b.delay]
        if waiting:
            log.info("%s: retrying %d peer(s) now instead of after their backoff", why, len(waiting))
        self.backoff.clear()
        self.quick_retry_until = self.clock() + CHANGE_RETRY_WINDOW

    @contextlib.contextmanager
    def store_lock(self) -> Iterator[None]:
        """The configuration store's lock, which poolctl holds while it applies a version: poold
        checks "version 0" and changes peers under it, so pool.conf's peers never land on a
        version applied in between. Without a usable store, poold goes on unlocked."""
        assert self.conf is not None
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(Store(self.conf.node.state_dir).locked())
            except (StoreError, OSError) as exc:
                log.warning("configuration store not locked (%s): going on without the lock", exc)
            yield

    def refresh_targets(self) -> None:
        """The peers poold connects to: pool.conf's at version 0, the active version's otherwise."""
        assert self.conf is not None
        if not self.config_version:
            self.targets = self.conf.peer_by_key()
        else:
            self.targets = {
                bytes(p.public_key): conf.PeerConf(
                    name=p.name.decode(errors="replace"),
                    public_key=bytes(p.public_key),
                    endpoint=Endpoint(bytes(p.endpoint_addr), p.endpoint_port) if p.endpoint_port else None,
                )
                for p in self.dev.peers()
            }
        for key in [k for k in self.backoff if k not in self.targets]:
            del self.backoff[key]

    def apply_identity(self) -> None:
        assert self.conf is not None
        node = self.conf.node
        cur = self.dev.get_identity()
        if (
            cur.flags & uapi.POOL_IDENTITY_SET
            and bytes(cur.public_key) == self.public
            and (cur.org_id, cur.segment_id) == (node.org_id, node.segment_id)
        ):
            return
        if cur.flags & uapi.POOL_IDENTITY_SET:
            log.warning("identity changes: every session closes (peers trust the old key)")
            for s in self.held.values():
                _close_quietly(s)
            self.held.clear()
        self.dev.set_identity(self.private, node.org_id, node.segment_id)
        log.info("identity loaded: %s (org %d, segment %d)", encode_key(self.public), node.org_id, node.segment_id)

    def apply_peers(self) -> None:
        assert self.conf is not None
        want = self.conf.peer_by_key()
        have = {bytes(p.public_key): p for p in self.dev.peers()}
        for key, kp in have.items():
            if key not in want:
                self.dev.peer_del(key)
                self.forget_peer(key)
                log.info("peer %s removed (%s)", kp.name.decode(errors="replace"), encode_key(key))
        for key, p in want.items():
            ep_addr = p.endpoint.addr if p.endpoint else bytes(16)
            ep_port = p.endpoint.port if p.endpoint else 0
            kp = have.get(key)
            if kp is not None:
                same = kp.name.decode(errors="replace") == p.name and (bytes(kp.endpoint_addr), kp.endpoint_port) == (
                    ep_addr,
                    ep_port,
                )
                if same:
                    continue
                if kp.active_sessions:
                    log.info(
                        "peer %s: poold uses the new name/endpoint now; the kernel's copy is updated at a reload "
                        "or restart when the peer has no session",
                        p.name,
                    )
                    continue
                self.dev.peer_del(key)
            try:
                self.dev.peer_add(key, p.name, ep_addr, ep_port)
            except PoolError as exc:
                if exc.exit_code == EXIT_NO_MODULE:
                    raise
                log.error("peer %s (%s) not loaded: %s", p.name, encode_key(key), exc.why)
                continue
            log.info(
                "peer %s %s (%s, endpoint %s)",
                p.name,
                "updated" if kp else "added",
                encode_key(key),
                p.endpoint or "none",
            )

    def apply_listener(self) -> None:
        assert self.conf is not None
        node = self.conf.node
        stats = self.dev.stats()
        listening, port = bool(stats.get("listening")), int(stats.get("listen_port", 0))
        if not node.listen:
            if self.owns_listener and listening:
                self.dev.stop()
                log.info("listener stopped (listen = false)")
            self.owns_listener = False
            return
        want = node.port or (port if self.owns_listener and listening else 0)
        if listening and want and port != want:
            log.warning("listener on port %d, configured %d: restarting it", port, want)
            self.dev.stop()
        self.dev.listen(want)
        self.owns_listener = True
        self.listen_port = int(self.dev.stats().get("listen_port", want)) or want
        if not (listening and port == self.listen_port):
            log.info("listening on port %d", self.listen_port)

    def forget_peer(self, key: bytes) -> None:
        for idx, s in list(self.held.items()):
            if s.peer_public_key == key:
                _close_quietly(s)
                del self.held[idx]
        self.backoff.pop(key, None)
        self.pending.pop(key, None)

    # ---- journal

    def open_journal(self) -> None:
        assert self.conf is not None
        d = self.conf.node.state_dir
        try:
            d.mkdir(mode=0o750, parents=True, exist_ok=True)
            self.journal = jr.JournalFile(d / JOURNAL_FILE)
            entries = self.journal.load()
        except OSError as exc:
            log.error("journal not persisted: %s: %s", exc.filename or d, exc.strerror or exc)
            self.journal = None
            return
        except jr.JournalFileError as exc:
            aside = self.journal.rotate_aside(f"unreadable-{int(time.time())}")
            log.error("%s: moved to %s, starting a new journal", exc, aside)
            return
        res = jr.verify(entries, allow_restart=True)
        if not res.ok:
            aside = self.journal.rotate_aside(f"broken-{int(time.time())}")
            log.error(
                "persisted journal does not verify (%s): moved to %s, starting a new one",
                "; ".join(res.problems[:3]),
                aside,
            )
            return
        if entries:
            log.info(
                "persisted journal verified: %d entries, head seq %d %s",
                res.checked,
                res.last_seq,
                res.head_hash.hex() if res.head_hash else "",
            )

    def sync_journal(self, initial: bool = False) -> None:
        """Append the kernel's new entries; on the first sync after a module load, SEED first."""
        if self.journal is None:
            return
        head = self.journal.head
        if initial:
            chunk = self.dev.journal_read(0)
            fresh = (
                len(chunk.entries) == 1
                and chunk.entries[0].type == uapi.JournalType.GENESIS
                and chunk.entries[0].seq == 0
            )
            continues = head is not None and any(e.seq == head.seq and e.hash == head.hash for e in chunk.entries)
            if head is not None and continues:
                self.journal_next = head.seq + 1
            elif head is not None and fresh:
                self.dev.journal_seed(head.seq + 1, head.hash)
                log.info("journal seeded: the kernel chain continues at seq %d", head.seq + 1)
                self.journal_next = head.seq + 1
            elif head is not None:
                log.warning(
                    "journal: the kernel chain (seq %d..%d) does not continue the persisted one (head seq %d): recording it as a new segment",
                    chunk.first_seq,
                    chunk.next_seq - 1,
                    head.seq,
                )
                self.journal_next = 0
            else:
                self.journal_next = 0
        chunk = self.dev.journal_read(self.journal_next)
        if self.journal_next and chunk.first_seq > self.journal_next:
            log.error(
                "journal: entries %d..%d left the kernel ring before poold saved them",
                self.journal_next,
                chunk.first_seq - 1,
            )
        new = [e for e in chunk.entries if e.seq >= self.journal_next]
        if new:
            try:
                self.journal.append(new)
            except OSError as exc:  # disk full, read-only: retry at the next pass
                log.error("journal: cannot append to %s: %s", self.journal.path, exc.strerror or exc)
                return
            self.journal_next = new[-1].seq + 1

    # ---- sessions

    def accept_all(self) -> None:
        while True:
            try:
                s = self.dev.accept(0)
            except PoolError as exc:
                if exc.exit_code == EXIT_TIMEOUT:
                    return
                raise
            self.held[s.index] = s
            log.info("accepted session %d from %s", s.index, self.peer_label(s.peer_public_key))

    def reap(self) -> list[uapi.PoolSessionInfo]:
        infos = self.dev.sessions()
        live = {i.index for i in infos if i.state in LIVE_STATES}
        for idx in [i for i in self.held if i not in live]:
            s = self.held.pop(idx)
            log.info("session %d with %s ended", idx, self.peer_label(s.peer_public_key))
            _close_quietly(s)
        return infos

    def connect_due(self, infos: list[uapi.PoolSessionInfo]) -> None:
        """Connect policy: each peer with an endpoint whose key is greater than ours, with backoff."""
        assert self.conf is not None
        connected = {bytes(i.peer_public_key) for i in infos if i.state in LIVE_STATES}
        connected |= self.harvest()
        now = self.clock()
        for p in self.targets.values():
            relays = self.relays_of(p.public_key)
            if (
                (p.endpoint is None and not relays)
                or p.public_key <= self.public
                or p.public_key in connected
                or p.public_key in self.pending
            ):
                continue
            b = self.backoff.setdefault(p.public_key, Backoff())
            if now < b.next_at:
                continue
            # the endpoint first; after it failed (or without one), the relays through the door
            door = bool(relays) and (p.endpoint is None or b.direct_failed)
            target = conf.RELAY_DOOR if door else p.endpoint
            assert target is not None
            log.debug("connecting to %s at %s%s", p.name, target, f" (relays {', '.join(relays)})" if door else "")
            self.via_door.discard(p.public_key)
            if door:
                self.via_door.add(p.public_key)
            self.pending[p.public_key] = self.executor.submit(
                self.dev.connect, p.public_key, target.addr, target.port, 0, CONNECT_TIMEOUT_MS
            )
        self.harvest()

    def relays_of(self, key: bytes) -> tuple[str, ...]:
        """A peer's relays: those the active configuration version names for it, otherwise
        those pool.conf names for the same key (docs/relay.md section 2)."""
        assert self.conf is not None
        routes = self.version_relays.routes.get(key) if self.version_relays else None
        if routes:
            return tuple(name for name, _key in routes)
        p = self.conf.peer_by_key().get(key)
        return p.relays if p is not None else ()

    def harvest(self) -> set[bytes]:
        """Collect finished connects; returns the peers now connected."""
        assert self.conf is not None
        now = self.clock()
        done: set[bytes] = set()
        for key, fut in list(self.pending.items()):
            if not fut.done():
                continue
            del self.pending[key]
            b = self.backoff.setdefault(key, Backoff())
            try:
                s = fut.result()
            except PoolError as exc:
                door = key in self.via_door
                wait = b.failed(now, exc.why, quick=now < self.quick_retry_until)
                b.direct_failed = not door
                how = " through the relays" if door else ""
                log.warning("connect to %s%s failed: %s; retry in %.1f s", self.peer_label(key), how, exc.why, wait)
                continue
            if key not in self.targets or self.dev is None:
                _close_quietly(s)
                continue
            b.reset()
            self.held[s.index] = s
            done.add(key)
            log.info("connected session %d to %s", s.index, self.peer_label(key))
        return done

    def publish_held(self, infos: list[uapi.PoolSessionInfo]) -> None:
        """Write the sessions poold holds to sessions_file when they changed: the services
        attach those and no other (pooltools.common.sessions)."""
        if self.sessions_file is None:
            return
        by_index = {i.index: i for i in infos}
        if self.dev is not None and any(index not in by_index for index in self.held):  # connected this pass
            by_index = {i.index: i for i in self.dev.sessions()}
        mine = [by_index[index] for index in sorted(self.held) if index in by_index]
        ids = [(i.index, i.established_ns) for i in mine]
        if ids == self.published:
            return
        try:
            write_held(self.sessions_file, mine)
        except OSError as exc:
            why = f"{self.sessions_file}: {exc.strerror or exc}"
            if why != self.publish_error:  # once per cause, not at every pass
                log.error("cannot publish the sessions held, services will not attach them: %s", why)
            self.publish_error = why
            return
        self.published, self.publish_error = ids, ""

    def unpublish(self) -> None:
        if self.sessions_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.sessions_file.unlink()
        self.published = None

    def peer_label(self, key: bytes) -> str:
        p = self.targets.get(key)
        if p is None and self.conf is not None:
            p = self.conf.peer_by_key().get(key)
        return p.name if p is not None else encode_key(key)

    # ---- the loop body

    def step(self) -> None:
        """One pass: device health, re-apply if needed, accept, reap, connect, journal."""
        if not self.ensure_device():
            self.publish_held([])
            return
        try:
            ident = self.dev.get_identity()
            if self.applied and (not ident.flags & uapi.POOL_IDENTITY_SET or bytes(ident.public_key) != self.public):
                log.warning("pool.ko lost its state (module reloaded?): re-applying")
                for s in self.held.values():
                    _close_quietly(s)
                self.held.clear()
                self.pending.clear()
                self.owns_listener = False
                self.applied = False
            if not self.applied:
                self.apply()
                self.status()
            else:
                self.track_version()
            self.accept_all()
            infos = self.reap()
            self.connect_due(infos)
            self.publish_held(infos)
            self.sync_journal()
            self.status(force=False)
        except PoolError as exc:
            if exc.exit_code == EXIT_NO_MODULE:
                self.drop_device(exc.why)
            else:
                raise

    def wait(self, wake_fd: int) -> None:
        """Sleep until a signal, an inbound session (/dev/pool readable), a session hang-up,
        a connect attempt falling due, or IDLE_WAKEUP seconds (a safety net)."""
        p = select.poll()
        p.register(wake_fd, select.POLLIN)
        if self.dev is not None and self.dev.fileno() >= 0:
            p.register(self.dev.fileno(), select.POLLIN)
        for s in self.held.values():
            if s.fileno() >= 0:
                p.register(s.fileno(), 0)  # POLLHUP/POLLERR are always reported
        with contextlib.suppress(InterruptedError):
            p.poll(max(50, int(self.next_wakeup() * 1000)))

    def next_wakeup(self) -> float:
        """Seconds until the next pass is due: a connect attempt, a tentative version's deadline,
        or IDLE_WAKEUP."""
        timeout = IDLE_WAKEUP
        if self.pending or self.dev is None:
            timeout = 1.0
        now = self.clock()
        for b in self.backoff.values():
            if b.next_at > now:
                timeout = min(timeout, b.next_at - now)
        if self.tentative_deadline_ns:
            # pool.ko rolls the version back by itself at its deadline: look just after it, and
            # again soon while the rollback is late, but not forever (a version confirmed meanwhile
            # clears the deadline at the next pass anyway).
            until = (self.tentative_deadline_ns - time.time_ns()) / 1e9 + DEADLINE_MARGIN
            if until > -DEADLINE_HURRY:
                timeout = min(timeout, max(until, DEADLINE_MARGIN))
        return timeout

    def status_text(self) -> str:
        listener = f"listening on {self.listen_port}" if self.owns_listener else "not listening"
        version = f" (configuration version {self.config_version})" if self.config_version else ""
        return f"{listener}, {len(self.targets)} peer(s){version}, {len(self.held)} session(s) held"

    def status(self, force: bool = True) -> None:
        """systemd's status line (systemctl status poold); after every pass, sent when it changed,
        so it follows sessions and configuration versions as they come and go."""
        text = self.status_text()
        if force or text != self.last_status:
            sdnotify.notify(f"STATUS={text}")
            self.last_status = text

    def reload(self) -> bool:
        """SIGHUP: apply a new pool.conf; keep the old one if it is invalid."""
        sdnotify.notify(*sdnotify.reloading())
        try:
            new = self.read_config()
        except ConfigRejected as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            sdnotify.notify("READY=1", "STATUS=reload refused: see the log")
            return False
        old = self.conf
        self.conf, self.private, self.public = new
        if old is not None and old.node.state_dir != self.conf.node.state_dir:
            log.warning("state_dir changes take effect at restart")
            self.conf.node.state_dir = old.node.state_dir
        self.retry_now("reload")
        try:
            if self.dev is not None:
                self.apply()
        except PoolError as exc:
            log.error("reload: %s", exc)
        log.info("configuration reloaded: %d peer(s) in pool.conf", len(self.conf.peers))
        sdnotify.notify("READY=1")
        self.status()
        return True

    def shutdown(self) -> None:
        sdnotify.notify("STOPPING=1")
        self.executor.shutdown(wait=False, cancel_futures=True)
        n = len(self.held)
        self.unpublish()  # first: the services end what poold no longer holds
        for s in self.held.values():
            _close_quietly(s)
        self.held.clear()
        if self.dev is not None:
            try:
                if self.owns_listener:
                    self.dev.stop()
                    log.info("listener stopped")
                self.sync_journal()
            except PoolError as exc:
                log.warning("at exit: %s", exc)
            _close_quietly(self.dev)
            self.dev = None
        log.info("stopped: closed %d session(s)", n)


def _close_quietly(obj: Any) -> None:
    with contextlib.suppress(OSError, PoolError):
        obj.close()


# ---- process


class _Signals:
    def __init__(self) -> None:
        self.stop = False
        self.hup = False
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.w.setblocking(False)
        signal.set_wakeup_fd(self.w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self.hup = True

    def drain(self) -> None:
        try:
            while self.r.recv(4096):
                pass
        except BlockingIOError:
            pass


def _setup_logging(verbose: bool) -> None:
    if os.environ.get("JOURNAL_STREAM"):
        # journald: syslog level prefixes, no timestamps (journald adds them)
        levels = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

        class Prefix(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return f"<{levels.get(record.levelno, 6)}>{record.getMessage()}"

        fmt: logging.Formatter = Prefix()
    else:
        fmt = logging.Formatter("%(asctime)s poold %(levelname)s: %(message)s")
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(fmt)
    log.handlers[:] = [h]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def run(args: argparse.Namespace) -> int:
    daemon = Poold(args.config, lambda: Device(args.device), sessions_file=args.sessions_file)
    try:
        daemon.load_config()
    except ConfigRejected as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    daemon.open_journal()
    sig = _Signals()
    deadline = time.monotonic() + args.wait_module
    while not daemon.ensure_device():
        if sig.stop:
            return 0
        if daemon.device_denied:
            log.error(DENIED_HINT)
            return EXIT_NO_MODULE
        if time.monotonic() >= deadline:
            log.error("/dev/pool missing: pool.ko not loaded (modprobe pool)")
            return EXIT_NO_MODULE
        time.sleep(0.5)
    try:
        daemon.step()
    except PoolError as exc:
        log.error("%s", exc)
        daemon.shutdown()
        return exc.exit_code
    sdnotify.notify("READY=1")
    daemon.status()
    log.info("poold %s ready: %d peer(s)", __version__, len(daemon.targets))
    while not sig.stop:
        if sig.hup:
            sig.hup = False
            daemon.reload()
        daemon.wait(sig.r.fileno())
        sig.drain()
        if sig.stop:
            break
        try:
            daemon.step()
        except PoolError as exc:  # one failed ioctl must not kill the node's sessions
            log.error("%s", exc)
            time.sleep(1.0)
        if daemon.dev is None and daemon.device_denied:
            log.error(DENIED_HINT)
            daemon.shutdown()
            return EXIT_NO_MODULE
    daemon.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="poold", description="Keep this node's POOL state in pool.ko.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-c", "--config", default=conf.DEFAULT_PATH, help="pool.conf (default %(default)s)")
    p.add_argument(
        "--device", default=os.environ.get("POOL_DEVICE", DEVICE_PATH), help="control device (default /dev/pool)"
    )
    p.add_argument(
        "--check-config",
        nargs="?",
        const="",
        metavar="PATH",
        help="validate PATH (default: --config) and exit: 0 valid, 2 invalid (for template validate: %%s)",
    )
    p.add_argument(
        "--sessions-file",
        type=Path,
        default=POOLD_SESSIONS,
        metavar="PATH",
        help="where the services read which sessions poold holds (default %(default)s)",
    )
    p.add_argument(
        "--wait-module", type=float, default=30.0, help="seconds to wait for /dev/pool at start (default 30)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except BackendMissing as exc:
        print(f"poold: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _main(args: argparse.Namespace) -> int:
    if args.check_config is not None:
        path = args.check_config or args.config
        try:
            c = conf.load(path)
        except conf.ConfError as exc:
            print(f"poold: {exc}", file=sys.stderr)
            return EXIT_USAGE
        eps = sum(1 for p in c.peers if p.endpoint)
        print(f"{path}: ok ({len(c.peers)} peer(s), {eps} with an endpoint)")
        return 0
    _setup_logging(args.verbose)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
