"""`pool_relay start`: the relay service on a node, glued to pool.ko, pool.conf and its files."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pooltools.common import keyfile
from pooltools.common.fsutil import atomic_write, file_signature
from pooltools.common.jsonmsg import Refusal
from pooltools.common.link import SessionLink
from pooltools.common.sessions import SessionId, SessionWatcher, read_held
from pooltools.config import conf
from pooltools.config.versions import VersionRelays
from pooltools.kernel import uapi
from pooltools.kernel.device import PoolError
from pooltools.kernel.netaddr import format_addr
from pooltools.protocol.keys import decode_key, encode_key
from pooltools.protocol.x25519 import public_key as x25519_public
from pooltools.relay import control, statements
from pooltools.relay import enrolment as en
from pooltools.relay.channel import ChannelClosed, ControlChannel
from pooltools.relay.ledger import Ledger
from pooltools.relay.service import Relay, Signed

log = logging.getLogger("pool_relay")
DISCOVER_EVERY = 1.0
STATUS_EVERY = 5.0
SAVE_EVERY = 60.0  # the ledger, and the scores reports to peers


class RelayDaemon:
    def __init__(
        self,
        device_factory: Callable[[], Any],
        enrolment_path: Path,
        ledger_path: Path,
        conf_path: Path,
        status_path: Path | None,
        flip_at: int | None = None,
        clock: Callable[[], float] = time.time,
        held: Callable[[], set[SessionId]] = read_held,
    ) -> None:
        self.dev = device_factory()
        self.enrolment_path, self.ledger_path, self.conf_path = enrolment_path, ledger_path, conf_path
        self.status_path, self.clock = status_path, clock
        self.enrolment = en.load(enrolment_path)
        # the files reload() follows: a changed one is read again without a SIGHUP
        self.followed_sigs = self.file_signatures()
        self.pool_conf = conf.load(conf_path)
        # the relays the configuration version pool.ko runs names, read once per version
        self.version_relays = VersionRelays(self.pool_conf.node.state_dir, log)
        self.hosts: dict[bytes, str] = {}  # peer key -> address its session comes from
        self.indexes: dict[bytes, int] = {}  # peer key -> the session its channel rides on
        self.relay = Relay(
            lambda: self.enrolment,
            self.routes,
            self.hosts.get,
            ("127.0.0.1", 0),
            Ledger.load(ledger_path),
            clock,
            flip_at,
        )
        self.relay.on_carried = self.write_status  # `status` shows a connection as soon as it starts
        self.workers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="relay-request")
        self.watcher = SessionWatcher(self.dev, self._start, self._wanted, held)
        self.reload_requested = False
        self.static_private, self.public, self.signing_key = self._identity()

    def _identity(self) -> tuple[bytes | None, bytes, bytes]:
        """This node's static key pair and signing key; without the private key the relay still
        relays, and sends no statements."""
        try:
            private = keyfile.read_private(self.pool_conf.node.private_key_file)
        except PoolError as exc:
            log.warning("no signed statements: %s", exc)
            return None, b"", b""
        return private, x25519_public(private), statements.public_signing_key(private)

    # ---- who is who

    def routes(self) -> dict[bytes, list[bytes]]:
        """Destination key -> its relays' keys: those the active configuration version names,
        otherwise pool.conf's [peer] relays (poold connects by the same rule)."""
        by_name = {p.name: p.public_key for p in self.pool_conf.peers}
        routes = {p.public_key: [by_name[r] for r in p.relays] for p in self.pool_conf.peers if p.relays}
        routes.update({dest: [key for _name, key in relays] for dest, relays in self.version_relays.routes.items()})
        return routes

    def _wanted(self, info: Any) -> bool:
        key = bytes(info.peer_public_key)
        relays = {k for ks in self.routes().values() for k in ks}
        return self.enrolment.lookup(key) is not None or key in relays

    def _start(self, index: int, session: Any, info: Any) -> ControlChannel | None:
        key = bytes(info.peer_public_key)
        old = self.relay.channels.get(key)
        if old is not None and not old.closed.is_set():
            return None  # one channel per peer: the first session carries it
        self.hosts[key] = format_addr(info.peer_addr)
        self.indexes[key] = index
        ch = ControlChannel(key, SessionLink(session, control.CHANNEL), self.relay.handle, self.workers)
        self.relay.channels[key] = ch.start()
        log.info("relay channel with %s on session %d", self.name(key), index)
        return ch

    def name(self, key: bytes) -> str:
        e = self.enrolment.lookup(key)
        if e is not None:
            return e.name
        p = self.pool_conf.peer_by_key().get(key)
        return p.name if p is not None else encode_key(key)

    # ---- housekeeping

    def discover(self) -> None:
        for key, ch in list(self.relay.channels.items()):
            if ch.closed.is_set():
                del self.relay.channels[key]
                self.watcher.forget(self.indexes.pop(key, -1))
        self.relay.local_pool = ("127.0.0.1", self.pool_port())
        try:
            self.version_relays.follow(self.dev.config_get())
        except PoolError as exc:
            log.warning("configuration version not read: %s", exc)
        self.watcher.discover()

    def pool_port(self) -> int:
        try:
            return int(self.dev.stats().get("listen_port", 0)) or self.pool_conf.node.port or uapi.POOL_DEFAULT_PORT
        except PoolError:
            return self.pool_conf.node.port or uapi.POOL_DEFAULT_PORT

    def file_signatures(self) -> tuple[object, object]:
        return file_signature(self.enrolment_path), file_signature(self.conf_path)

    def reload(self) -> None:
        """Read the enrolments and pool.conf again on SIGHUP or when either file changed: a
        peer's key in pool.conf changes under a running relay (playbooks/rotate_identity.yml),
        and the routes name relays by that key."""
        sigs = self.file_signatures()
        if sigs == self.followed_sigs and not self.reload_requested:
            return
        self.reload_requested = False
        self.followed_sigs = sigs
        try:
            new = en.load(self.enrolment_path)
            pool_conf = conf.load(self.conf_path)
        except (en.EnrolmentError, conf.ConfError) as exc:
            log.error("not reloaded, what is in use stays: %s", exc)
            return
        gone = {p.key for p in self.enrolment.peers} - {p.key for p in new.peers}
        self.enrolment, self.pool_conf = new, pool_conf
        log.info("enrolments version %d in use (%d peers, relaying %s)", new.version, len(new.peers), new.relay)
        for text in gone:
            self.revoke(text)

    def revoke(self, key_text: str) -> None:
        """End what a revoked peer takes part in: its relayed connections and its channel."""
        for c in list(self.relay.carried):
            if key_text in {encode_key(k) for k in (*c.peers, c.via) if k} and c.task:
                c.task.cancel()
        for key, ch in list(self.relay.channels.items()):
            if encode_key(key) == key_text:
                log.info("peer %s revoked: its relay channel ends", key_text)
                ch.close()
                self.watcher.forget(self.indexes.pop(key, -1))

    def status(self) -> dict[str, Any]:
        now = self.clock()
        peers = []
        keys = {p.key for p in self.enrolment.peers} | {encode_key(k) for ks in self.routes().values() for k in ks}
        for text in sorted(keys):
            key = decode_key(text)
            peers.append(
                {
                    "name": self.name(key),
                    "key": text,
                    "enrolled": self.enrolment.lookup(key) is not None,
                    "channel": key in self.relay.channels and not self.relay.channels[key].closed.is_set(),
                    **self.relay.figures(key),
                    "signing_key": encode_key(self.relay.signing_keys[key]) if key in self.relay.signing_keys else None,
                    # what this peer signed about this node, and what others signed about this
                    # peer (docs/relay.md section 6a)
                    "statement_about_this_node": self._statement_doc(self.relay.held(key, self.public)),
                    "statements": [self._statement_doc(t) for t in self.relay.held_about(key)],
                }
            )
        return {
            "format": 1,
            "time": int(now),
            "key": encode_key(self.public) if self.public else None,
            "signing_key": encode_key(self.signing_key) if self.signing_key else None,
            "relay": self.enrolment.relay,
            "enrolment_version": self.enrolment.version,
            "limits": self.enrolment.document()["limits"],
            "relay_port": self.relay.port,
            "counters": self.relay.counters(),
            "peers": peers,
            "carried": [
                {
                    "role": c.role,
                    "peers": [self.name(k) for k in c.peers],
                    "via": self.name(c.via) if c.via else None,
                    "bytes_forward": c.flow.forward,
                    "bytes_backward": c.flow.backward,
                    "started": int(c.started),
                    "local_port": c.local_port,
                }
                for c in self.relay.carried
            ],
        }

    def _statement_doc(self, t: Signed | None) -> dict[str, Any] | None:
        if t is None:
            return None
        st = t.statement
        return {
            "observer": self.name(st.observer),
            "contributed": st.contributed,
            "consumed": st.consumed,
            "score": round(st.score, 4),
            "at": st.at,
            "signed": t.signed,
        }

    def write_status(self) -> None:
        if self.status_path is None:
            return
        try:
            atomic_write(self.status_path, (json.dumps(self.status(), indent=1) + "\n").encode())
        except OSError as exc:
            log.warning("status file %s not written: %s", self.status_path, exc)

    def save_ledger(self) -> None:
        try:
            with self.relay.lock:
                self.relay.ledger.save(self.ledger_path, self.clock())
        except OSError as exc:
            log.warning("ledger %s not saved: %s", self.ledger_path, exc)

    def send_reports(self) -> None:
        """Send each peer with a channel this node's signed statement about it, and the statements
        others made about this node (docs/relay.md section 6a)."""
        if self.static_private is None:
            return
        own = bytes(self.public)
        vouchers = self.relay.held_about(own)
        for key, ch in list(self.relay.channels.items()):
            mine = self.relay.statement_of(own, key).sign(self.static_private)
            passed_on = [t.signed for t in vouchers if t.statement.observer != key]
            req = control.Scores(self.signing_key, (mine, *passed_on[: control.MAX_STATEMENTS - 1]))
            with contextlib.suppress(RuntimeError):  # the pool shuts down: the relay stops
                self.workers.submit(self._report, key, ch, req)

    def _report(self, key: bytes, ch: ControlChannel, req: control.Scores) -> None:
        """One scores message; what the peer did with it is logged (nothing else depends on it)."""
        try:
            answer = control.decode_reply(ch.ask(req))
        except (ChannelClosed, Refusal) as exc:
            log.info("scores to %s: %s", self.name(key), exc)
            return
        log.debug(
            "scores to %s: %d statement(s) taken, %d with an observer it never met",
            self.name(key),
            answer.get("taken", 0),
            answer.get("unknown_observer", 0),
        )

    async def run(self, relay_listen: tuple[str | None, int], door: tuple[str, int], stop: asyncio.Event) -> None:
        started = asyncio.Event()
        server = asyncio.create_task(self.relay.serve(relay_listen, door, started))
        await started.wait()
        log.info("relay port %d, door %s:%d", self.relay.port, door[0], self.relay.door_port)
        last_status = last_save = 0.0
        try:
            while not stop.is_set():
                self.reload()
                self.discover()
                now = time.monotonic()
                if now - last_status >= STATUS_EVERY:
                    self.write_status()
                    last_status = now
                if now - last_save >= SAVE_EVERY:
                    if last_save:
                        self.save_ledger()
                        self.send_reports()
                    last_save = now
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), DISCOVER_EVERY)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
            self.save_ledger()
            for ch in self.relay.channels.values():
                ch.close()
            self.workers.shutdown(wait=False, cancel_futures=True)
