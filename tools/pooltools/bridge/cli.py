"""pool_bridge: TCP connections carried over the POOL sessions poold holds (docs/bridge.md).

    pool_bridge tcp2pool --forward LISTEN=PEER/SERVICE [--forward ...]
    pool_bridge pool2tcp --service NAME=HOST:PORT [--service ...] [--allow PEER ...]

tcp2pool listens on each LISTEN address and carries every TCP connection it accepts, as a
stream of its own, to SERVICE on PEER; pool2tcp, on PEER, connects each stream to the
service's HOST:PORT. Both run until SIGTERM; exit status 0 then, 2 for bad arguments, 3
without pool.ko, 1 for anything else (one line naming it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.bridge import wire
from pooltools.bridge.mux import Mux, Refused
from pooltools.common import sdnotify
from pooltools.common.cli import Parser, UsageError
from pooltools.common.link import SessionLink
from pooltools.common.sessions import SessionId, SessionWatcher, poold_sessions_with, read_held
from pooltools.kernel.device import (
    DEVICE_PATH,
    EXIT_USAGE,
    Device,
    PoolError,
    resolve_peer,
)
from pooltools.kernel.netaddr import format_addr, parse_endpoint
from pooltools.protocol.keys import encode_key

PROG = "pool_bridge"
LOCK_DIR = Path("/run/lock")
CHECK_EVERY = 2.0  # seconds between looks at the sessions

log = logging.getLogger(PROG)


@dataclass(frozen=True)
class Forward:
    host: str
    port: int
    peer: str
    service: str


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int


def host_port(text: str) -> tuple[str, int]:
    endpoint = parse_endpoint(text)  # ValueError names what is wrong
    return format_addr(endpoint.addr), endpoint.port


def forward_arg(text: str) -> Forward:
    listen, sep, target = text.rpartition("=")
    peer, slash, service = target.partition("/")
    if not sep or not slash or not peer:
        raise argparse.ArgumentTypeError(f"{text!r}: LISTEN=PEER/SERVICE, as 127.0.0.1:8080=node2/web")
    if not wire.SERVICE_NAME.fullmatch(service):
        raise argparse.ArgumentTypeError(f"{text!r}: a service name is 1-64 of a-z, 0-9, _ and -")
    try:
        host, port = host_port(listen)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return Forward(host, port, peer, service)


def service_arg(text: str) -> Service:
    name, sep, target = text.partition("=")
    if not sep or not wire.SERVICE_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=HOST:PORT with NAME 1-64 of a-z, 0-9, _ and -")
    try:
        host, port = host_port(target)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return Service(name, host, port)


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Carry TCP connections over POOL sessions (docs/bridge.md).")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--device", default=DEVICE_PATH, help=f"pool.ko's device (default {DEVICE_PATH})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    sp = sub.add_parser("tcp2pool", help="listen on TCP and carry each connection to a peer's service")
    sp.add_argument("--forward", type=forward_arg, action="append", required=True, metavar="LISTEN=PEER/SERVICE",
                    help="listen on LISTEN (ADDRESS:PORT, IPv6 as [ADDRESS]:PORT) for SERVICE on PEER")  # fmt: skip
    sp = sub.add_parser("pool2tcp", help="connect the streams peers open to local TCP services")
    sp.add_argument("--service", type=service_arg, action="append", required=True, metavar="NAME=HOST:PORT",
                    help="a service peers may open, and where it is")  # fmt: skip
    sp.add_argument("--allow", action="append", default=[], metavar="PEER",
                    help="a peer (name or key) allowed to open streams; repeat it; default every trusted peer")  # fmt: skip
    sp.add_argument("--max-streams", type=int, default=256, metavar="N",
                    help="streams open at once on one session (default 256)")  # fmt: skip
    return p


def hold_lock(name: str) -> int:
    """One process per role and peer: two would take each other's messages off the channel."""
    fd = os.open(LOCK_DIR / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PoolError(str(LOCK_DIR / name), "another pool_bridge holds it (one per role and peer)") from None
    return fd


def session_links(session: Any, role: str) -> tuple[SessionLink, SessionLink]:
    """(send, receive) links of one side: each side reads its own channel, the other's sends."""
    to_server, to_client = SessionLink(session, wire.SERVER_CHANNEL), SessionLink(session, wire.CLIENT_CHANNEL)
    return (to_server, to_client) if role == "client" else (to_client, to_server)


class Client:
    """tcp2pool: a Mux per peer on the session poold holds with it, opened when needed. A peer
    named by name is looked up in the trust store for each connection: its key may change
    (playbooks/rotate_identity.yml)."""

    def __init__(self, dev: Any, held: Callable[[], set[SessionId]] = read_held) -> None:
        self.dev, self.held = dev, held
        self.muxes: dict[bytes, tuple[SessionId, Any, Mux]] = {}  # peer key -> (session, its fd, mux)

    def mux_for(self, key: bytes) -> Mux | None:
        """The mux on the session poold holds with this peer (never a client's own session)."""
        held = self.muxes.get(key)
        if held is not None and not held[2].closed.is_set():
            return held[2]
        self.drop(key)
        poolds = poold_sessions_with(self.dev, key, self.held)
        if not poolds:
            return None
        sid = poolds[0]
        session = self.dev.attach(sid[0])
        send, recv = session_links(session, "client")
        mux = Mux(f"{encode_key(key)[:8]}/{sid[0]}", send, recv, "client")
        self.muxes[key] = (sid, session, mux)
        return mux

    def drop(self, key: bytes) -> None:
        held = self.muxes.pop(key, None)
        if held is not None:
            held[2].close()
            held[1].close()

    def close(self) -> None:
        for key in list(self.muxes):
            self.drop(key)

    def check(self) -> None:
        """Let go of sessions that ended, that poold no longer holds, or that carry no stream:
        an idle client holds no session."""
        poolds = self.held()
        for key, (sid, _session, mux) in list(self.muxes.items()):
            if mux.closed.is_set() or sid not in poolds or not mux.streams:
                self.drop(key)

    async def handle(self, forward: Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            mux = self.mux_for(bytes(resolve_peer(self.dev, forward.peer).public_key))
        except PoolError as exc:
            mux = None
            log.warning("%s: %s", forward.peer, exc)
        if mux is None:
            log.info("%s/%s: no established session with %s: connection closed", forward.peer, forward.service,
                     forward.peer)  # fmt: skip
            writer.close()
            return
        try:
            await mux.open(forward.service, reader, writer)
        except Refused as exc:
            log.info("%s/%s: refused: %s", forward.peer, forward.service, exc)


class Server:
    """pool2tcp: a Mux on every session with an allowed peer, as SessionWatcher finds them."""

    def __init__(
        self,
        dev: Any,
        services: dict[str, Service],
        allow: list[str],
        max_streams: int,
        held: Callable[[], set[SessionId]] = read_held,
    ) -> None:
        self.dev, self.services, self.allow, self.max_streams = dev, services, allow, max_streams
        self.sessions: dict[int, tuple[Any, Mux]] = {}
        # Every session, allowed peer or not: the others' OPENs are read and refused, never left
        # queued on the session, where they would hold up its other channels.
        self.watcher = SessionWatcher(dev, self.start, held=held)

    def start(self, index: int, session: Any, info: Any) -> object:
        send, recv = session_links(session, "server")
        key = bytes(info.peer_public_key)
        mux = Mux(f"{encode_key(key)[:8]}/{index}", send, recv, "server", self.connect, self.max_streams, key)
        self.sessions[index] = (session, mux)
        return mux

    async def connect(self, name: str, mux: Mux) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.allow and mux.peer not in self.allowed():
            raise Refused("this peer is not allowed to open streams here")
        service = self.services.get(name)
        if service is None:
            raise Refused(f"unknown service {name!r}")
        try:
            return await asyncio.wait_for(asyncio.open_connection(service.host, service.port), 10)
        except (OSError, TimeoutError) as exc:
            raise Refused(f"connect {service.host}:{service.port}: {exc or 'timed out'}") from None

    def allowed(self) -> set[bytes]:
        """The keys of the peers --allow names, as the trust store has them now."""
        keys = set()
        for ref in self.allow:
            with contextlib.suppress(PoolError):  # a peer no longer trusted allows nothing
                keys.add(bytes(resolve_peer(self.dev, ref).public_key))
        return keys

    def release(self, index: int) -> None:
        session, mux = self.sessions.pop(index)
        mux.close()
        session.close()

    def close(self) -> None:
        for index in list(self.sessions):
            self.release(index)

    def check(self) -> None:
        for index, (_session, mux) in list(self.sessions.items()):
            if mux.closed.is_set():
                self.release(index)
                self.watcher.forget(index)
        self.watcher.discover()
        for index in [i for i in self.sessions if i not in self.watcher.attached]:
            self.release(index)


async def run(args: argparse.Namespace, dev: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.Server] = []
    if args.command == "tcp2pool":
        # a peer not in the trust store fails now, naming it; one client per peer (its key now)
        keys = {bytes(resolve_peer(dev, f.peer).public_key) for f in args.forward}
        locks = [hold_lock(f"pool-bridge-tcp2pool-{key.hex()[:16]}.lock") for key in sorted(keys)]
        role: Client | Server = Client(dev)
        for f in args.forward:
            try:
                servers.append(await asyncio.start_server(lambda r, w, f=f: role.handle(f, r, w), f.host, f.port))
            except OSError as exc:
                raise PoolError(f"listen {f.host}:{f.port}", exc.strerror or str(exc)) from None
        what = ", ".join(f"{f.host}:{f.port} -> {f.peer}/{f.service}" for f in args.forward)
    else:
        for ref in args.allow:
            resolve_peer(dev, ref)
        locks = [hold_lock("pool-bridge-pool2tcp.lock")]
        services = {s.name: s for s in args.service}
        if len(services) != len(args.service):
            raise PoolError("--service", "a service name given twice", EXIT_USAGE)
        role = Server(dev, services, args.allow, args.max_streams)
        what = ", ".join(f"{s.name} -> {s.host}:{s.port}" for s in args.service)
    log.info("%s: %s", args.command, what)
    sdnotify.notify("READY=1", f"STATUS={args.command}: {what}")
    try:
        while not stop.is_set():
            with contextlib.suppress(PoolError):
                role.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_EVERY)
    finally:
        sdnotify.notify("STOPPING=1")
        for s in servers:
            s.close()
        role.close()
        for fd in locks:
            os.close(fd)


def main(argv: Sequence[str] | None = None, device_factory: Callable[[], Any] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "max_streams", 1) < 1:
            raise UsageError("--max-streams", "at least 1")
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        dev = (device_factory or (lambda: Device(args.device)))()
        asyncio.run(run(args, dev))
    except PoolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
