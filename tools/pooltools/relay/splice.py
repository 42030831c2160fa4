"""Moving a relayed byte stream between two TCP connections (docs/relay.md section 1).

The bytes never enter Python: each direction moves them socket -> pipe -> socket with the
kernel's splice(2), so a relay costs its node little more than the two TCP connections (the
relay's throughput is what the path allows, not what an interpreter copies). The connections are
plain non-blocking sockets driven by the event loop's readiness callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

CHUNK = 65536  # what the relay reads at a time where it reads through Python
# A direction's pipe: at most this much of it is in the relay's hands at a time. A splice from a
# TCP socket takes one pipe slot per received segment, so the default pipe (16 slots) holds about
# 23 KB of 1500-byte frames and each refill costs the event loop a round; 1 MiB is Linux's default
# fs.pipe-max-size, the most an unprivileged relay may ask for.
PIPE_SIZE = 1 << 20
LINGER = 2.0  # seconds a closing side gets for the bytes already written to it to be acknowledged
_MOVE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK

Admit = Callable[[int], Awaitable[int]]
log = logging.getLogger("pool_relay")


async def _ready(sock: socket.socket, writable: bool) -> None:
    """Until sock can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    fd = sock.fileno()
    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await woken
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _prepare(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # POOL's handshake and control packets are small: no Nagle delay on the relay's hop
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def connect(host: str, port: int) -> socket.socket:
    """A non-blocking TCP connection to host:port (each address tried in turn)."""
    loop = asyncio.get_running_loop()
    failure: OSError = OSError(f"{host}: no address")
    for family, kind, proto, _canonname, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = _prepare(socket.socket(family, kind, proto))
        try:
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            failure = exc
        except BaseException:
            sock.close()
            raise
    raise failure


async def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes, and not one more (what follows is spliced); IncompleteReadError at an
    early end of stream."""
    loop, got = asyncio.get_running_loop(), bytearray()
    while len(got) < n:
        chunk = await loop.sock_recv(sock, n - len(got))
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(got), n)
        got += chunk
    return bytes(got)


class Listener:
    """A listening TCP socket whose every connection runs `on_connection(sock)` in a task of its
    own; the connection is closed when that returns or fails, whatever it did with it."""

    def __init__(self, on_connection: Callable[[socket.socket], Awaitable[None]], host: str | None, port: int) -> None:
        if host is None:  # every address: IPv6 and IPv4 on one socket where the node has both
            dual = socket.has_dualstack_ipv6()
            listening = socket.create_server(
                ("::" if dual else "0.0.0.0", port),
                family=socket.AF_INET6 if dual else socket.AF_INET,
                dualstack_ipv6=dual,
            )
        else:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            listening = socket.create_server((host, port), family=family)
        listening.setblocking(False)
        self.sock = listening
        self.port: int = listening.getsockname()[1]
        self._on_connection = on_connection
        self._connections: set[asyncio.Task[None]] = set()
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _address = await loop.sock_accept(self.sock)
            except OSError as exc:  # EMFILE and its kind: not the listener's end
                log.warning("accept: %s", exc)
                await asyncio.sleep(0.5)
                continue
            task = loop.create_task(self._serve(_prepare(conn)))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self._on_connection(conn)
        except Exception:  # a bug costs this connection, not the listener
            log.exception("relayed connection on port %d failed", self.port)
        finally:
            if conn.fileno() >= 0:  # refused: what it sent is dropped, so that it sees a FIN, not a reset
                _discard_input(conn)
                conn.close()

    async def close(self) -> None:
        """Stop accepting and end every connection it accepted (a splice closes gently)."""
        self._accepting.cancel()
        await asyncio.gather(self._accepting, return_exceptions=True)
        self.sock.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


def _discard_input(sock: socket.socket, limit: int = 1 << 20) -> None:
    """Read and drop what already arrived (at most limit bytes), without waiting."""
    with contextlib.suppress(OSError):
        while limit > 0 and (chunk := sock.recv(min(limit, CHUNK))):
            limit -= len(chunk)


def unacknowledged(sock: Any) -> int:
    """Bytes written to a TCP socket that its peer has not acknowledged yet (0 if unknown)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    except (AttributeError, OSError, ValueError):
        return 0
    return struct.unpack("i", raw)[0]


async def close_gently(sock: socket.socket) -> None:
    """Close a side once what was written to it arrived (at most LINGER): closing a TCP socket
    with unread input sends a reset, and a reset discards what the kernel still queues."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER
    while sock.fileno() >= 0 and unacknowledged(sock) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    sock.close()


@dataclass
class Flow:
    """Bytes moved each way; `forward` is from the side that connected first. `on_bytes` hears
    of every move (the ledger counts while the flow lasts, not only when it ends)."""

    forward: int = 0
    backward: int = 0
    on_bytes: Callable[[int], None] | None = None

    def moved(self, n: int, forward: bool) -> None:
        if forward:
            self.forward += n
        else:
            self.backward += n
        if self.on_bytes:
            self.on_bytes(n)


def _pipe() -> tuple[int, int, int]:
    """A pipe for one direction: its read end, write end and size. PIPE_SIZE where the system
    allows it; otherwise (fs.pipe-max-size lowered, or this user's pipe pages used up) the size
    the system gave it, which only costs speed."""
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return pipe_out, pipe_in, fcntl.fcntl(pipe_in, fcntl.F_GETPIPE_SZ)


async def _fill(source: socket.socket, pipe_in: int, size: int) -> int:
    """Up to size bytes from source into the (empty) pipe; 0 at the end of the stream. A reset
    is raised only once every byte that arrived before it was taken (the kernel's order)."""
    while True:
        try:
            return os.splice(source.fileno(), pipe_in, size, flags=_MOVE)
        except BlockingIOError:
            await _ready(source, writable=False)


async def _drain(pipe_out: int, dest: socket.socket, n: int) -> None:
    """n bytes from the pipe into dest, waiting while dest's send buffer is full."""
    while n:
        try:
            n -= os.splice(pipe_out, dest.fileno(), n, flags=_MOVE)
        except BlockingIOError:
            await _ready(dest, writable=True)


async def _flip_one(pipe_out: int, dest: socket.socket, n: int, at: int) -> None:
    """The fault switch's chunk: through Python, with byte `at` of it inverted."""
    data = bytearray()
    while len(data) < n:
        data += os.read(pipe_out, n - len(data))
    data[at] ^= 0xFF
    await asyncio.get_running_loop().sock_sendall(dest, data)


async def pump(
    source: socket.socket,
    dest: socket.socket,
    count: Callable[[int], None],
    admit: Admit | None = None,
    flip_at: int | None = None,
) -> None:
    """Copy source to dest until end of stream, then half-close dest.

    `admit(n)` grants 1 to n bytes (the rate caps); `flip_at` inverts one byte at that offset
    of the stream, a fault for tests that the ends must detect. A chunk is read only once the
    previous one was written: a slow receiver stops this pump, and so the reading.
    """
    pipe_out, pipe_in, size = _pipe()
    offset, failure = 0, None
    try:
        while True:
            try:
                got = await _fill(source, pipe_in, size)
            except (ConnectionError, TimeoutError) as exc:
                failure = exc
                break
            if not got:
                break
            left = got
            while left:
                n = await admit(left) if admit else left
                try:
                    if flip_at is not None and offset <= flip_at < offset + n:
                        await _flip_one(pipe_out, dest, n, flip_at - offset)
                    else:
                        await _drain(pipe_out, dest, n)
                except (ConnectionError, TimeoutError) as exc:
                    # dest is gone: stop here, but not the other direction, which still
                    # forwards what dest sent before it went (the CLOSE before its reset)
                    log.debug("relayed connection: the receiving end went away: %s", exc)
                    return
                count(n)
                offset += n
                left -= n
        with contextlib.suppress(OSError):
            dest.shutdown(socket.SHUT_WR)
        if failure is not None:
            raise failure  # forwarded to the end: now the other direction stops too
    finally:
        os.close(pipe_out)
        os.close(pipe_in)


async def splice(
    first: socket.socket,
    second: socket.socket,
    flow: Flow,
    admit: Admit | None = None,
    flip_at: int | None = None,
) -> None:
    """Both directions until both ends closed; an error on either side closes both. Both
    sockets are closed (gently) when it returns, fails or is cancelled."""

    def fwd(n: int) -> None:
        flow.moved(n, True)

    def back(n: int) -> None:
        flow.moved(n, False)

    tasks = [
        asyncio.create_task(pump(first, second, fwd, admit, flip_at)),
        asyncio.create_task(pump(second, first, back, admit)),
    ]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        for t in tasks:
            t.cancel()
        # a pump's cancellation must run its finally (the pipe) before the sockets go
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(close_gently(first), close_gently(second))
