"""Moving a relayed byte stream between two TCP connections (docs/relay.md section 1)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

CHUNK = 65536  # at most this much of one direction is in the relay's hands at a time
LINGER = 2.0  # seconds a closing side gets for the bytes already written to it to be acknowledged

Admit = Callable[[int], Awaitable[int]]


class WholeStreamReader(asyncio.StreamReader):
    """A reader that hands out every byte that arrived before a connection error, then ends the
    stream and keeps the error in `error`. asyncio's own reader raises the error at once and
    discards what it buffered, which for a relay is the CLOSE an end sent just before its reset."""

    error: BaseException | None = None

    def set_exception(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.feed_eof()


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_connection(host: str, port: int) -> Streams:
    """asyncio.open_connection with a WholeStreamReader."""
    loop = asyncio.get_running_loop()
    reader = WholeStreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(lambda: protocol, host, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def start_server(
    on_connection: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str | None,
    port: int,
    **kw: Any,
) -> asyncio.Server:
    """asyncio.start_server with a WholeStreamReader for every connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: asyncio.StreamReaderProtocol(WholeStreamReader(), on_connection), host, port, **kw
    )


def unacknowledged(sock: Any) -> int:
    """Bytes written to a TCP socket that its peer has not acknowledged yet (0 if unknown)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    except (AttributeError, OSError, ValueError):
        return 0
    return struct.unpack("i", raw)[0]


async def close_gently(writer: asyncio.StreamWriter) -> None:
    """Close a side once what was written to it arrived (at most LINGER): closing a TCP socket
    with unread input sends a reset, and a reset discards what the kernel still queues."""
    if not writer.is_closing():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer.drain(), LINGER)
            while unacknowledged(writer.get_extra_info("socket")) and loop.time() < deadline:
                await asyncio.sleep(0.02)
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError, asyncio.TimeoutError):
        await writer.wait_closed()


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


async def pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    count: Callable[[int], None],
    admit: Admit | None = None,
    flip_at: int | None = None,
) -> None:
    """Copy reader to writer until end of stream, then half-close the writer.

    `admit(n)` grants 1 to n bytes (the rate caps); `flip_at` inverts one byte at that offset
    of the stream, a fault for tests that the ends must detect.
    """
    offset = 0
    while data := await reader.read(CHUNK):
        if flip_at is not None and offset <= flip_at < offset + len(data):
            data = bytearray(data)
            data[flip_at - offset] ^= 0xFF
        view = memoryview(data)
        while view:
            n = await admit(len(view)) if admit else len(view)
            writer.write(view[:n])
            await writer.drain()  # a slow receiver stops this pump, and so the reading
            count(n)
            offset += n
            view = view[n:]
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()
    if isinstance(reader, WholeStreamReader) and reader.error is not None:
        raise reader.error  # forwarded to the end: now the other direction stops too


async def splice(
    first: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    second: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    flow: Flow,
    admit: Admit | None = None,
    flip_at: int | None = None,
) -> None:
    """Both directions until both ends closed; an error on either side closes both."""

    def fwd(n: int) -> None:
        flow.moved(n, True)

    def back(n: int) -> None:
        flow.moved(n, False)

    tasks = [
        asyncio.create_task(pump(first[0], second[1], fwd, admit, flip_at)),
        asyncio.create_task(pump(second[0], first[1], back, admit)),
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
        await asyncio.gather(close_gently(first[1]), close_gently(second[1]))
