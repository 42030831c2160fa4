"""One node's pool_relay: the control handler, the relay port and the door (docs/relay.md).

A node plays every role its enrolments give it: relay (B) for its enrolled peers when
relaying is on, destination (C) for the relays it accepts, source (A) through its door for
the peers whose trust-store entries name relays. Control messages arrive on ControlChannels
(threads); the relay port and the door are asyncio servers on the event loop that `serve` runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pooltools.common.jsonmsg import Refusal
from pooltools.protocol.keys import encode_key
from pooltools.relay import control, door, statements
from pooltools.relay.channel import ChannelClosed, ControlChannel
from pooltools.relay.control import Err
from pooltools.relay.enrolment import Enrolment
from pooltools.relay.ledger import Ledger
from pooltools.relay.limits import Scheduler
from pooltools.relay.splice import Flow, Listener, connect, recv_exactly, splice
from pooltools.relay.tickets import TicketBook

log = logging.getLogger("pool_relay")
HANDSHAKE_WAIT = 10.0  # seconds a new connection has to send its ticket or its INIT


@dataclass(frozen=True)
class Forward:
    """On the relay: carry the source's connection to the destination's relay port."""

    source: bytes
    dest: bytes
    host: str
    port: int
    ticket: bytes


@dataclass(frozen=True)
class Deliver:
    """On the destination: hand the relay's connection to the local pool.ko listener."""

    source: bytes
    relay: bytes


@dataclass
class Carried:
    """A relayed connection this node takes part in, for status and revocation."""

    role: str  # "source", "relay" or "destination"
    peers: tuple[bytes, ...]  # the other nodes it involves
    via: bytes  # the relay
    started: float
    flow: Flow = field(default_factory=Flow)
    task: asyncio.Task[None] | None = None
    local_port: int = 0  # source: pool.ko's end of the door connection


@dataclass(frozen=True)
class Signed:
    statement: statements.Statement
    signed: dict[str, str]  # as it travels: {"statement", "signature"}


class Relay:
    def __init__(
        self,
        enrolment: Callable[[], Enrolment],
        routes: Callable[[], dict[bytes, list[bytes]]],
        peer_host: Callable[[bytes], str | None],
        local_pool: tuple[str, int],
        ledger: Ledger,
        clock: Callable[[], float] = time.time,
        flip_at: int | None = None,
    ) -> None:
        self.enrolment, self.routes, self.peer_host = enrolment, routes, peer_host
        self.local_pool, self.ledger, self.clock, self.flip_at = local_pool, ledger, clock, flip_at
        self.channels: dict[bytes, ControlChannel] = {}
        self.tickets: TicketBook[Forward | Deliver] = TicketBook()
        self.signing_keys: dict[bytes, bytes] = {}  # static key -> Ed25519 key, as its own session said
        self.statements: dict[tuple[bytes, bytes], Signed] = {}  # (observer, subject) -> the latest
        self.carried: list[Carried] = []
        self.on_carried: Callable[[], None] | None = None  # hears when a connection starts or ends
        self.port = control.PORT  # the relay port actually bound
        self.door_port = control.DOOR_PORT
        self.lock = threading.Lock()  # ledger and reports: control threads and the loop share them
        self.scheduler: Scheduler | None = None
        # Since start, for the exporter's counters (under lock): connections and the bytes of
        # the ended ones by role, requests refused by error code.
        self.connections_started: Counter[str] = Counter()
        self.ended_bytes: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()

    # ---- control (threads)

    def handle(self, peer: bytes, req: control.Request) -> bytes:
        try:
            if isinstance(req, control.Open):
                return self._open(peer, req.to)
            if isinstance(req, control.Offer):
                return self._offer(peer, req.source)
            if isinstance(req, control.Scores):
                return self._scores(peer, req)
            return control.reply({"ok": True, **self.figures(peer)})
        except Refusal as exc:
            with self.lock:
                self.refusals[str(exc.code)] += 1
            raise

    def counters(self) -> dict[str, dict[str, int]]:
        """Monotonic since start: connections started and bytes carried by role (a running
        connection's bytes count as they move), refusals by error code."""
        with self.lock:
            carried = Counter(self.ended_bytes)
            for c in self.carried:
                carried[c.role] += c.flow.forward + c.flow.backward
            return {
                "connections": dict(self.connections_started),
                "carried_bytes": dict(carried),
                "refusals": dict(self.refusals),
            }

    def _scores(self, peer: bytes, req: control.Scores) -> bytes:
        """Signed statements from peer: its own, and others' it passes on (docs/relay.md 6a).
        One that fails its check refuses them all; one from an observer never met is skipped."""
        with self.lock:
            known = {**self.signing_keys, peer: req.signing_key}  # the session proved peer's key
        taken, unknown = [], 0
        for i, signed in enumerate(req.statements):
            try:
                taken.append(Signed(statements.verify(signed, known), signed))
            except statements.UnknownObserver:
                unknown += 1  # an observer this node never met: nothing to check it with
            except statements.StatementError as exc:
                raise Refusal(Err.BAD_REQUEST, f"'statements'[{i}]: {exc}") from None
        with self.lock:
            self.signing_keys[peer] = req.signing_key
            for t in taken:
                held = self.statements.get((t.statement.observer, t.statement.subject))
                if held is None or held.statement.at <= t.statement.at:
                    self.statements[(t.statement.observer, t.statement.subject)] = t
        return control.reply({"ok": True, "taken": len(taken), "unknown_observer": unknown})

    def statement_of(self, observer: bytes, subject: bytes) -> statements.Statement:
        """This node's own statement about subject, from its ledger's decayed figures."""
        key, now = encode_key(subject), self.clock()
        with self.lock:
            return statements.Statement(
                observer,
                subject,
                round(self.ledger.decayed(key, "contributed", now)),
                round(self.ledger.decayed(key, "consumed", now)),
                self.ledger.policy.start,
                int(now),
            )

    def held(self, observer: bytes, subject: bytes) -> Signed | None:
        """observer's latest statement about subject, if this node holds one."""
        with self.lock:
            return self.statements.get((observer, subject))

    def held_about(self, subject: bytes) -> list[Signed]:
        with self.lock:
            return [t for (_o, s), t in sorted(self.statements.items()) if s == subject]

    def _open(self, source: bytes, dest: bytes) -> bytes:
        e = self.enrolment()
        if not e.relay:
            raise Refusal(Err.RELAY_DISABLED, "this node does not relay")
        for who, what in ((source, "the source"), (dest, "the destination")):
            if e.lookup(who) is None:
                raise Refusal(Err.NOT_ENROLLED, f"{what} {encode_key(who)} is not enrolled with this relay")
        if dest == source:
            raise Refusal(Err.BAD_REQUEST, "source and destination are the same node")
        if sum(1 for c in self.carried if c.role == "relay") >= e.limits.connections:
            raise Refusal(Err.BUSY, f"{e.limits.connections} relayed connections already")
        ch, host = self.channels.get(dest), self.peer_host(dest)
        if ch is None or ch.closed.is_set() or host is None:
            raise Refusal(Err.UNREACHABLE, f"this relay holds no session with {e.lookup(dest).name}")
        try:
            offered = control.decode_ticket(ch.ask(control.Offer(source)))
        except ChannelClosed as exc:
            raise Refusal(Err.UNREACHABLE, f"{e.lookup(dest).name}: {exc}") from None
        # a refusal by the destination (not_accepted, busy) reaches the source as it is
        ticket = self.tickets.issue(Forward(source, dest, host, offered.port, offered.ticket), time.monotonic())
        if ticket is None:
            raise Refusal(Err.BUSY, "too many tickets outstanding")
        return control.ticket_reply(control.Ticket(ticket, self.port, control.TICKET_SECONDS))

    def _offer(self, relay: bytes, source: bytes) -> bytes:
        entry = self.enrolment().lookup(relay)
        if entry is None or not entry.accept:
            raise Refusal(Err.NOT_ACCEPTED, f"this node does not accept relaying from {encode_key(relay)}")
        ticket = self.tickets.issue(Deliver(source, relay), time.monotonic())
        if ticket is None:
            raise Refusal(Err.BUSY, "too many tickets outstanding")
        return control.ticket_reply(control.Ticket(ticket, self.port, control.TICKET_SECONDS))

    def figures(self, peer: bytes) -> dict[str, object]:
        """This node's own view of peer: bytes, score and tier."""
        key, now = encode_key(peer), self.clock()
        with self.lock:
            score = self.ledger.score(key, now)
            return {
                **self.ledger.totals(key),
                "score": round(score, 4),
                "tier": self.ledger.tier(key, now).name.lower(),
            }

    def count(self, peer: bytes, kind: str) -> Callable[[int], None]:
        key = encode_key(peer)

        def add(n: int) -> None:
            with self.lock:
                self.ledger.add(key, kind, n, self.clock())

        return add

    # ---- the relay port and the door (event loop)

    def _limits_scheduler(self) -> Scheduler:
        limits = self.enrolment().limits
        s = self.scheduler
        if s is None or (s.total.rate, s.peer_rate) != (limits.total_bytes_per_second, limits.peer_bytes_per_second):
            self.scheduler = s = Scheduler(
                limits.total_bytes_per_second,
                limits.peer_bytes_per_second,
                weight=lambda key: self.ledger.tier(key, self.clock()).weight,
            )
        return s

    async def _carry(
        self,
        carried: Carried,
        near: socket.socket,
        far: socket.socket,
        admit_for: bytes | None = None,
        flip: bool = False,
    ) -> None:
        admit = None
        if admit_for is not None:
            scheduler, key = self._limits_scheduler(), encode_key(admit_for)

            async def admit(n: int) -> int:
                return await scheduler.admit(key, n)

        carried.task = asyncio.current_task()
        with self.lock:
            self.carried.append(carried)
            self.connections_started[carried.role] += 1
        self._carried_changed()
        try:
            await splice(near, far, carried.flow, admit, self.flip_at if flip else None)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.info("%s connection via %s ended: %s", carried.role, encode_key(carried.via)[:8], exc)
        finally:
            with self.lock:
                self.carried.remove(carried)
                self.ended_bytes[carried.role] += carried.flow.forward + carried.flow.backward
            self._carried_changed()

    def _carried_changed(self) -> None:
        if self.on_carried:
            self.on_carried()

    # Listener closes the connection when these return: an early return refuses it.

    async def on_relay_port(self, conn: socket.socket) -> None:
        try:
            ticket = await asyncio.wait_for(recv_exactly(conn, control.TICKET_BYTES), HANDSHAKE_WAIT)
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            return
        grant = self.tickets.redeem(ticket, time.monotonic())
        if grant is None:
            log.info("relay port: unknown, used or expired ticket from %s", conn.getpeername())
            return
        onward = (grant.host, grant.port) if isinstance(grant, Forward) else self.local_pool
        try:
            target = await asyncio.wait_for(connect(*onward), HANDSHAKE_WAIT)
        except (TimeoutError, OSError) as exc:
            log.warning("relay port: onward connection failed: %s", exc)
            return
        if isinstance(grant, Forward):
            try:
                await asyncio.get_running_loop().sock_sendall(target, grant.ticket)
            except OSError as exc:
                target.close()
                log.warning("relay port: onward connection failed: %s", exc)
                return
        if isinstance(grant, Forward):
            c = Carried("relay", (grant.source, grant.dest), b"", self.clock())
            c.flow.on_bytes = self.count(grant.source, "consumed")
            await self._carry(c, conn, target, admit_for=grant.source, flip=True)
        else:
            # pool.ko sees this connection come from our end of it: poolctl matches the port
            local_port = target.getsockname()[1]
            c = Carried("destination", (grant.source,), grant.relay, self.clock(), local_port=local_port)
            await self._carry(c, conn, target)

    async def on_door(self, conn: socket.socket) -> None:
        try:
            init = await asyncio.wait_for(recv_exactly(conn, door.INIT_PACKET), HANDSHAKE_WAIT)
            routes = self.routes()
            dest = door.destination(init, routes)
        except (TimeoutError, asyncio.IncompleteReadError, OSError, door.NotAnInit) as exc:
            log.info("door: not a handshake for a relayed peer: %s", exc)
            return
        if dest is None:
            log.info("door: the handshake is for no peer that names relays")
            return
        loop = asyncio.get_running_loop()
        for relay in routes[dest]:
            ch, host = self.channels.get(relay), self.peer_host(relay)
            if ch is None or host is None:
                log.info("door: no session with relay %s", encode_key(relay)[:8])
                continue
            try:
                t = control.decode_ticket(await loop.run_in_executor(None, ch.ask, control.Open(dest)))
                target = await asyncio.wait_for(connect(host, t.port), HANDSHAKE_WAIT)
            except (TimeoutError, Refusal, ChannelClosed, OSError) as exc:
                log.warning("door: relay %s refused or failed: %s", encode_key(relay)[:8], exc)
                continue
            try:
                await loop.sock_sendall(target, t.ticket + init)
            except OSError as exc:
                target.close()
                log.warning("door: relay %s failed: %s", encode_key(relay)[:8], exc)
                continue
            c = Carried("source", (dest,), relay, self.clock(), local_port=conn.getpeername()[1])
            c.flow.on_bytes = self.count(relay, "contributed")
            c.flow.moved(len(init), True)  # the relay carries the INIT like every byte after it
            await self._carry(c, conn, target)
            return

    async def serve(
        self, relay_port: tuple[str | None, int], door_port: tuple[str, int], started: asyncio.Event | None = None
    ) -> None:
        """The relay port and the door until cancelled."""
        relay_listener = Listener(self.on_relay_port, *relay_port)
        try:
            door_listener = Listener(self.on_door, *door_port)
        except OSError:
            await relay_listener.close()
            raise
        self.port, self.door_port = relay_listener.port, door_listener.port
        if started:
            started.set()
        try:
            await asyncio.Event().wait()
        finally:  # every connection, carried or still in its preamble, ends with its listener
            await asyncio.gather(relay_listener.close(), door_listener.close())
