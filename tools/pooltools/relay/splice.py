"""Moving a relayed byte stream between two TCP connections (docs/relay.md section 1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

CHUNK = 65536  # at most this much of one direction is in the relay's hands at a time

Admit = Callable[[int], Awaitable[int]]


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
        for w in (first[1], second[1]):
            w.close()
        for w in (first[1], second[1]):
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await w.wait_closed()
