"""pool_test: traffic checks and benchmarks over POOL sessions, with a plain-TCP baseline.

    pool_test server (--peer P | --index N | --accept | --tcp [ADDR:]PORT) [--channel C] [--once]
    pool_test client (--peer P | --index N | --connect P | --tcp HOST:PORT) [--bytes N] [--size S]
    pool_test bench  (same target options) [--bytes N] [--pings K] [--ping-size S] [--json]

The client sends N bytes in messages of up to 65519 bytes (POOL's maximum) and
checks the SHA-256 the server computed over what it received; bench adds a
small-message round-trip test. Over POOL the tools ATTACH to the session poold
holds (or CONNECT/ACCEPT themselves when no poold runs) and use their own
channel (default 7); over TCP each message is framed with a 4-byte length.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pooltools import __version__
from pooltools.common.cli import Parser
from pooltools.kernel import uapi
from pooltools.kernel.device import (
    DEVICE_PATH,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EXIT_VERIFY,
    Device,
    PoolError,
    live_sessions,
    peer_endpoint,
    resolve_peer,
)

PROG = "pool_test"
MAGIC = b"POOLTEST1 "
DEFAULT_CHANNEL = 7
DEFAULT_TCP_PORT = 9254
DEFAULT_BYTES = 64 * 1024 * 1024
MAX_MESSAGE = uapi.POOL_MAX_MESSAGE


class Transport(Protocol):
    name: str

    def send(self, data: bytes) -> None:
        """Send one message."""

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next message; None when the other end closed."""

    def close(self) -> None:
        """Close the transport."""


class PoolTransport:
    """Messages on one channel of a POOL session fd."""

    name = "pool"

    def __init__(self, session: Any, channel: int) -> None:
        self.session = session
        self.channel = channel

    def send(self, data: bytes) -> None:
        self.session.send(data, self.channel)

    def recv(self, timeout: float | None = None) -> bytes | None:
        got = self.session.recv(self.channel, timeout)
        return None if got is None else got[1]

    def close(self) -> None:
        self.session.close()


class TcpTransport:
    """Messages over TCP, each framed by a 4-byte big-endian length."""

    name = "tcp"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def _fill(self, n: int, timeout: float | None) -> bool:
        self.sock.settimeout(timeout)
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(max(1 << 20, n - len(self.buf)))
            except TimeoutError:
                raise PoolError("receive", f"nothing received within {timeout:g} s", 7) from None
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self, timeout: float | None = None) -> bytes | None:
        if not self._fill(4, timeout):
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        if not self._fill(4 + n, timeout):
            return None
        data = bytes(self.buf[4 : 4 + n])
        del self.buf[: 4 + n]
        return data

    def close(self) -> None:
        self.sock.close()


# ---- the test protocol


def control(op: str, **fields: Any) -> bytes:
    return MAGIC + json.dumps({"op": op, **fields}).encode()


def parse_control(msg: bytes) -> dict[str, Any] | None:
    if not msg.startswith(MAGIC):
        return None
    try:
        doc = json.loads(msg[len(MAGIC) :])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


_BLOCK: bytes = b""


def _block() -> bytes:
    global _BLOCK
    if not _BLOCK:
        _BLOCK = b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range((1 << 20) // 32))
    return _BLOCK


def pattern(total: int, size: int) -> Iterator[bytes]:
    """Deterministic, incompressible messages: SHA-256 counter blocks (1 MiB, built before timing)."""
    block = _block()
    sent = 0
    off = 0
    while sent < total:
        n = min(size, total - sent)
        if off + n > len(block):
            off = 0
        yield block[off : off + n]
        off += n
        sent += n


class TransferIncomplete(Exception):
    """The client went away in the middle of a bulk transfer: what arrived is not what was sent."""


def serve(t: Transport, log: Callable[[str], None], timeout: float | None = None) -> int:
    """Answer one client's requests until it says quit or goes away; returns requests served.
    TransferIncomplete if it goes away in the middle of a bulk transfer."""
    served = 0
    while True:
        msg = t.recv(timeout)
        if msg is None:
            return served
        req = parse_control(msg)
        if req is None:
            continue  # stray data: ignore
        op = req.get("op")
        if op == "quit":
            return served
        if op == "bulk":
            total = int(req.get("bytes", 0))
            h = hashlib.sha256()
            got = 0
            t0 = time.monotonic()
            while got < total:
                data = t.recv(timeout)
                if data is None:
                    raise TransferIncomplete(f"bulk: peer went away after {got} of {total} bytes")
                h.update(data)
                got += len(data)
            secs = time.monotonic() - t0
            t.send(control("result", bytes=got, sha256=h.hexdigest(), seconds=secs))
            log(f"bulk: received {got} bytes in {secs:.3f} s, sha256 {h.hexdigest()[:16]}")
        elif op == "ping":
            count = int(req.get("count", 0))
            t.send(control("ready"))
            for _i in range(count):
                data = t.recv(timeout)
                if data is None:
                    return served
                t.send(data)
            log(f"ping: echoed {count} messages")
        else:
            t.send(control("error", why=f"unknown op {op!r}"))
        served += 1


def _expect(t: Transport, op: str, timeout: float | None) -> dict[str, Any]:
    while True:
        msg = t.recv(timeout)
        if msg is None:
            raise PoolError("test", "the server closed the session/connection", EXIT_UNREACHABLE)
        doc = parse_control(msg)
        if doc is None:
            continue
        if doc.get("op") == "error":
            raise PoolError("test", f"server: {doc.get('why')}", EXIT_FAILURE)
        if doc.get("op") == op:
            return doc


def bulk(t: Transport, total: int, size: int, timeout: float | None) -> dict[str, Any]:
    if not 1 <= size <= MAX_MESSAGE:
        raise PoolError("bulk", f"message size must be 1-{MAX_MESSAGE}", EXIT_USAGE)
    h = hashlib.sha256()
    _block()  # not inside the timed part
    t.send(control("bulk", bytes=total))
    t0 = time.monotonic()
    for chunk in pattern(total, size):
        h.update(chunk)
        t.send(chunk)
    res = _expect(t, "result", timeout)
    secs = time.monotonic() - t0
    ok = res.get("sha256") == h.hexdigest() and res.get("bytes") == total
    return {
        "bytes": total,
        "message_size": size,
        "messages": -(-total // size),
        "seconds": round(secs, 6),
        "throughput_mbit_s": round(total * 8 / secs / 1e6, 3) if secs > 0 else None,
        "sha256": h.hexdigest(),
        "server_sha256": res.get("sha256"),
        "server_bytes": res.get("bytes"),
        "sha256_ok": ok,
    }


def ping(t: Transport, count: int, size: int, timeout: float | None) -> dict[str, Any]:
    t.send(control("ping", count=count))
    _expect(t, "ready", timeout)
    payload = os.urandom(size)
    rtts: list[float] = []
    for _i in range(count):
        t0 = time.perf_counter_ns()
        t.send(payload)
        back = t.recv(timeout)
        if back is None:
            raise PoolError("ping", "the server closed the session/connection", EXIT_UNREACHABLE)
        rtts.append((time.perf_counter_ns() - t0) / 1000)
        if back != payload:
            raise PoolError("ping", "echo differs from what was sent", EXIT_VERIFY)
    rtts.sort()

    def pct(p: float) -> float:
        return round(rtts[min(len(rtts) - 1, int(p * len(rtts)))], 1)

    return {
        "count": count,
        "size": size,
        "rtt_us": {
            "min": round(rtts[0], 1),
            "mean": round(statistics.fmean(rtts), 1),
            "p50": pct(0.50),
            "p99": pct(0.99),
            "max": round(rtts[-1], 1),
        },
    }


# ---- getting a transport


def _pool_session(args: argparse.Namespace, dev: Any, wait: bool) -> Any:

    if args.index is not None:
        return dev.attach(args.index)
    if getattr(args, "accept", False):
        return dev.accept(uapi.POOL_ACCEPT_FOREVER)
    if getattr(args, "connect", None):
        peer = resolve_peer(dev, args.connect)
        target = peer_endpoint(peer, args.endpoint)
        if target is None:
            raise PoolError("connect", "peer has no endpoint: give --endpoint", EXIT_USAGE)
        return dev.connect(bytes(peer.public_key), *target, args.channel, 10000)
    peer = resolve_peer(dev, args.peer)
    key = bytes(peer.public_key)
    while True:
        live = live_sessions(dev, key)
        if live:
            return dev.attach(live[0])
        if not wait:
            raise PoolError(f"peer {args.peer}", "no established session (is poold running?)", EXIT_NOT_FOUND)
        time.sleep(0.5)


def _tcp_target(text: str) -> tuple[str, int]:
    host, _colon, port = text.rpartition(":")
    if not host:
        return "", int(port)
    return host.strip("[]"), int(port)


def client_transport(args: argparse.Namespace, device_factory: Callable[[], Any]) -> tuple[Transport, Any]:
    if args.tcp:
        host, port = _tcp_target(args.tcp)
        try:
            sock = socket.create_connection((host or "127.0.0.1", port), timeout=10)
        except OSError as exc:
            raise PoolError(f"connect to {args.tcp}", exc.strerror or str(exc), EXIT_UNREACHABLE) from None
        sock.settimeout(None)
        return TcpTransport(sock), None
    dev = device_factory()
    return PoolTransport(_pool_session(args, dev, wait=False), args.channel), dev


# ---- commands


def _serve_client(t: Transport, log: Callable[[str], None]) -> tuple[int, int]:
    """serve() one client, then close: (requests served, exit status: 1 for a cut transfer)."""
    try:
        return serve(t, log), 0
    except TransferIncomplete as exc:
        log(str(exc))
        return 1, 1
    finally:
        t.close()


def cmd_server(args: argparse.Namespace, device_factory: Callable[[], Any]) -> int:
    def log(msg: str) -> None:
        print(f"{PROG} server: {msg}", file=sys.stderr, flush=True)

    if args.tcp:
        host, port = _tcp_target(args.tcp)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as ls:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((host, port))
            ls.listen(4)
            log(f"tcp: listening on {host or '*'}:{ls.getsockname()[1]}")
            while True:
                conn, peer = ls.accept()
                log(f"tcp: client {peer[0]}:{peer[1]}")
                _served, status = _serve_client(TcpTransport(conn), log)
                if args.once:
                    return status
    dev = device_factory()
    while True:
        sess = _pool_session(args, dev, wait=True)
        log(f"pool: serving session {sess.index} on channel {args.channel}")
        n, status = _serve_client(PoolTransport(sess, args.channel), log)
        if args.once or (n == 0 and args.index is not None):
            return status
        time.sleep(0.2)


def cmd_client(args: argparse.Namespace, device_factory: Callable[[], Any]) -> int:
    t, _dev = client_transport(args, device_factory)
    try:
        res = {"transport": t.name, **bulk(t, args.bytes, args.size, args.timeout)}
        t.send(control("quit"))
    finally:
        t.close()
    _print(args, res, _human_bulk(res))
    if not res["sha256_ok"]:
        print(
            f"{PROG}: client: SHA-256 mismatch: sent {res['sha256']}, server got {res['server_sha256']} ({res['server_bytes']} bytes)",
            file=sys.stderr,
        )
        return EXIT_VERIFY
    return 0


def cmd_bench(args: argparse.Namespace, device_factory: Callable[[], Any]) -> int:
    t, _dev = client_transport(args, device_factory)
    try:
        b = bulk(t, args.bytes, args.size, args.timeout)
        p = ping(t, args.pings, args.ping_size, args.timeout)
        t.send(control("quit"))
    finally:
        t.close()
    res = {"transport": t.name, "bulk": b, "ping": p}
    _print(args, res, _human_bulk(b) + "\n" + _human_ping(p))
    if not b["sha256_ok"]:
        print(f"{PROG}: bench: SHA-256 mismatch", file=sys.stderr)
        return EXIT_VERIFY
    return 0


def _human_bulk(b: dict[str, Any]) -> str:
    ok = "ok" if b["sha256_ok"] else "MISMATCH"
    return (
        f"bulk: {b['bytes']} bytes in {b['messages']} messages of {b['message_size']} in {b['seconds']:.3f} s: "
        f"{b['throughput_mbit_s']} Mbit/s, sha256 {ok}"
    )


def _human_ping(p: dict[str, Any]) -> str:
    r = p["rtt_us"]
    return f"ping: {p['count']} x {p['size']} bytes: rtt min {r['min']} / mean {r['mean']} / p50 {r['p50']} / p99 {r['p99']} / max {r['max']} us"


def _print(args: argparse.Namespace, doc: dict[str, Any], human: str) -> None:
    print(json.dumps(doc) if args.json else human, flush=True)


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = units.get(t[-1:], 1)
    v = int(float(t[:-1] if t[-1:] in units else t) * mult)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def build_parser() -> argparse.ArgumentParser:

    p = Parser(prog=PROG, description="Traffic checks and benchmarks over POOL (and plain TCP).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--device", default=os.environ.get("POOL_DEVICE", DEVICE_PATH), help="control device")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    def target(sp: argparse.ArgumentParser, server: bool) -> None:
        g = sp.add_mutually_exclusive_group(required=True)
        g.add_argument("--peer", help="use the established session with this peer (ATTACH; poold holds it)")
        g.add_argument("--index", type=int, help="use the session with this index (ATTACH)")
        if server:
            g.add_argument("--accept", action="store_true", help="ACCEPT inbound sessions (only when no poold runs)")
            g.add_argument(
                "--tcp", metavar="[ADDR:]PORT", help=f"plain TCP baseline: listen here (e.g. :{DEFAULT_TCP_PORT})"
            )
        else:
            g.add_argument(
                "--connect", metavar="PEER", help="CONNECT to this trusted peer (only when no poold holds a session)"
            )
            g.add_argument("--tcp", metavar="HOST:PORT", help="plain TCP baseline: connect to a pool_test server --tcp")
            sp.add_argument("--endpoint", help="with --connect: address:port (default: the peer's endpoint)")
        sp.add_argument(
            "--channel",
            type=int,
            choices=range(256),
            metavar="0-255",
            default=DEFAULT_CHANNEL,
            help=f"POOL channel (default {DEFAULT_CHANNEL})",
        )
        sp.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for any reply (default 60)")
        sp.add_argument("--json", action="store_true", help="print one JSON document")

    sp = sub.add_parser("server", help="answer client and bench requests")
    target(sp, True)
    sp.add_argument("--once", action="store_true", help="exit after the first client")
    sp.set_defaults(func=cmd_server)
    for name, func, help_ in (
        ("client", cmd_client, "send N bytes and verify the server's SHA-256"),
        ("bench", cmd_bench, "throughput and round-trip latency figures"),
    ):
        sp = sub.add_parser(name, help=help_)
        target(sp, False)
        sp.add_argument(
            "--bytes", type=_size, default=DEFAULT_BYTES, help="bytes to send (suffixes k, m, g; default 64m)"
        )
        sp.add_argument(
            "--size", type=_size, default=MAX_MESSAGE, help=f"message size (default and maximum {MAX_MESSAGE})"
        )
        if name == "bench":
            sp.add_argument("--pings", type=int, default=1000, help="round trips to time (default 1000)")
            sp.add_argument("--ping-size", type=int, default=64, help="bytes per round-trip message (default 64)")
        sp.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None, device_factory: Callable[[], Any] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        factory = device_factory or (lambda: Device(args.device))
        return args.func(args, factory)
    except PoolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except OSError as exc:
        print(f"{PROG}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
