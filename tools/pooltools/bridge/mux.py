"""Streams of TCP bytes over one message link, with per-stream credit (docs/bridge.md section 3).

One Mux serves one POOL session (or, in tests, an in-memory link): a reader thread hands every
message to the event loop, a writer thread sends what the loop queues, so that pool.ko's
blocking calls never stall the loop. A stream may send DATA only within the credit its
receiver granted, and the receiver grants credit only for bytes its TCP side has taken: a
stalled TCP peer stops its own stream after WINDOW bytes and holds up nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from pooltools.bridge import wire
from pooltools.bridge.wire import Frame, FrameError, Type
from pooltools.common.link import LinkClosed, LinkTimeout

log = logging.getLogger("pool_bridge")

OPEN_TIMEOUT = 30.0
MAX_CREDIT = 1 << 31  # a grant that lifts a stream's credit above this is a protocol error

# A server's answer to OPEN: the TCP connection the stream joins, or Refused.
Connector = Callable[[str, "Mux"], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class Refused(Exception):
    """An OPEN the server turns down, with the reason it sends back."""


class Stream:
    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.send_credit = wire.WINDOW  # bytes this side may still send
        self.recv_allowed = wire.WINDOW  # bytes the other side may still send
        self.credit_changed = asyncio.Event()
        self.inbound: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the other side's EOF
        self.answer: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.eof_received = False
        self.tasks: list[asyncio.Task[None]] = []
        self.reset_reason: str | None = None


class Mux:
    """The streams of one link. role "client" opens streams; "server" accepts them with connector."""

    def __init__(
        self,
        name: str,
        send_link: Any,
        recv_link: Any,
        role: str,
        connector: Connector | None = None,
        max_streams: int = 256,
        peer: bytes = b"",
    ) -> None:
        self.name, self.role, self.connector, self.max_streams = name, role, connector, max_streams
        self.peer = peer  # the other side's public key, for the connector
        self.send_link, self.recv_link = send_link, recv_link
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, Stream] = {}
        self.ids = itertools.count(1)
        self.outbox: queue.Queue[bytes | None] = queue.Queue()
        self.closed = asyncio.Event()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._read, name=f"bridge-read-{name}", daemon=True),
            threading.Thread(target=self._write, name=f"bridge-write-{name}", daemon=True),
        ]
        for t in self.threads:
            t.start()

    # ---- the two threads

    def _read(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    message = self.recv_link.recv(timeout=1.0)
                except LinkTimeout:
                    continue
                if message is None:
                    break
                self.loop.call_soon_threadsafe(self._on_message, message)
        except LinkClosed as exc:
            log.info("%s: session ended: %s", self.name, exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to end
                self.loop.call_soon_threadsafe(self._end, "the session ended")

    def _write(self) -> None:
        while (message := self.outbox.get()) is not None:
            try:
                self.send_link.send(message)
            except LinkClosed as exc:
                log.info("%s: session ended: %s", self.name, exc)
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(self._end, "the session ended")
                return

    def send(self, message: bytes) -> None:
        if not self.closed.is_set():
            self.outbox.put(message)

    def close(self) -> None:
        """Stop the threads; the links are the caller's to close."""
        self._end("the bridge stops")
        self.stopping.set()
        self.outbox.put(None)

    def _end(self, why: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for stream in list(self.streams.values()):
            self._drop(stream, why)

    # ---- messages from the other side (event loop)

    def _on_message(self, message: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            frame = wire.decode(message)
        except FrameError as exc:
            log.warning("%s: message dropped: %s", self.name, exc)
            return
        stream = self.streams.get(frame.stream)
        if frame.type is Type.OPEN:
            if self.role != "server":
                self.send(wire.reason(Type.RESET, frame.stream, "protocol: OPEN sent to a client"))
            elif stream is not None:
                self._reset(stream, "protocol: OPEN of a stream already open")
            elif len(self.streams) >= self.max_streams:
                self.send(wire.reason(Type.REFUSED, frame.stream, f"busy: {self.max_streams} streams open"))
            else:
                stream = self.streams[frame.stream] = Stream(frame.stream)
                stream.tasks.append(self.loop.create_task(self._serve(stream, frame.text)))
            return
        if stream is None:
            if frame.type is Type.DATA:  # CREDIT, EOF or RESET of a stream that just ended: nothing to say
                self.send(wire.reason(Type.RESET, frame.stream, "protocol: DATA for a stream not open"))
            elif frame.type in (Type.ACCEPTED, Type.REFUSED):
                self.send(wire.reason(Type.RESET, frame.stream, "protocol: an answer for a stream not opened"))
            return
        if frame.type in (Type.ACCEPTED, Type.REFUSED):
            if self.role != "client" or stream.answer.done():
                self._reset(stream, f"protocol: {frame.type.name} unexpected")
            else:
                stream.answer.set_result(frame)
        elif frame.type is Type.DATA:
            if stream.eof_received:
                self._reset(stream, "protocol: DATA after EOF")
            elif len(frame.payload) > stream.recv_allowed:
                self._reset(stream, f"protocol: {len(frame.payload)} bytes of DATA, {stream.recv_allowed} of credit")
            else:
                stream.recv_allowed -= len(frame.payload)
                stream.inbound.put_nowait(frame.payload)
        elif frame.type is Type.CREDIT:
            if stream.send_credit + frame.credit > MAX_CREDIT:
                self._reset(stream, "protocol: credit above 2^31")
            else:
                stream.send_credit += frame.credit
                stream.credit_changed.set()
        elif frame.type is Type.EOF:
            if stream.eof_received:
                self._reset(stream, "protocol: a second EOF")
            else:
                stream.eof_received = True
                stream.inbound.put_nowait(None)
        elif frame.type is Type.RESET:
            log.info("%s: stream %d reset by the other side: %s", self.name, stream.sid, frame.text)
            self._drop(stream, f"reset by the other side: {frame.text}")

    def _reset(self, stream: Stream, why: str) -> None:
        log.warning("%s: stream %d reset: %s", self.name, stream.sid, why)
        self.send(wire.reason(Type.RESET, stream.sid, why))
        self._drop(stream, why)

    def _drop(self, stream: Stream, why: str) -> None:
        """End the stream here without a word to the other side."""
        if self.streams.get(stream.sid) is not stream:
            return
        del self.streams[stream.sid]
        stream.reset_reason = why
        if not stream.answer.done():
            stream.answer.set_exception(Refused(why))
            stream.answer.exception()  # marked as seen: a server's stream has nobody awaiting it
        for task in stream.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    # ---- opening and serving streams

    async def open(self, service: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client: carry one TCP connection to the other side's service until both ends finish."""
        sid = next(sid for sid in self.ids if sid not in self.streams and sid < 1 << 32)
        stream = self.streams[sid] = Stream(sid)
        try:
            self.send(wire.encode(Type.OPEN, sid, service.encode()))
            try:
                answer = await asyncio.wait_for(asyncio.shield(stream.answer), OPEN_TIMEOUT)
            except TimeoutError:
                self._reset(stream, f"no answer to OPEN within {OPEN_TIMEOUT:g} s")
                raise Refused(f"no answer within {OPEN_TIMEOUT:g} s") from None
            if answer.type is Type.REFUSED:
                self._drop(stream, answer.text)
                raise Refused(answer.text)
            await self._carry(stream, reader, writer)
        finally:
            _close_writer(writer)

    async def _serve(self, stream: Stream, service: str) -> None:
        assert self.connector is not None
        try:
            reader, writer = await self.connector(service, self)
        except Refused as exc:
            self._drop(stream, str(exc))
            self.send(wire.reason(Type.REFUSED, stream.sid, str(exc)))
            return
        try:
            if self.streams.get(stream.sid) is not stream:
                return  # reset while connecting
            self.send(wire.encode(Type.ACCEPTED, stream.sid))
            await self._carry(stream, reader, writer)
        finally:
            _close_writer(writer)

    async def _carry(self, stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        outbound = self.loop.create_task(self._outbound(stream, reader))
        inbound = self.loop.create_task(self._inbound(stream, writer))
        stream.tasks += [outbound, inbound]
        try:
            await asyncio.gather(outbound, inbound)
        except (ConnectionError, OSError) as exc:
            self._reset(stream, f"TCP: {exc}")
        except asyncio.CancelledError:
            if stream.reset_reason is None:
                raise
        finally:
            for task in (outbound, inbound):
                task.cancel()
            if self.streams.get(stream.sid) is stream:
                del self.streams[stream.sid]

    async def _outbound(self, stream: Stream, reader: asyncio.StreamReader) -> None:
        """TCP -> the other side, within the credit it granted."""
        while True:
            while stream.send_credit <= 0:
                stream.credit_changed.clear()
                await stream.credit_changed.wait()
            data = await reader.read(min(stream.send_credit, wire.MAX_DATA))
            if not data:
                self.send(wire.encode(Type.EOF, stream.sid))
                return
            stream.send_credit -= len(data)
            self.send(wire.encode(Type.DATA, stream.sid, data))

    async def _inbound(self, stream: Stream, writer: asyncio.StreamWriter) -> None:
        """The other side -> TCP; credit goes back once TCP took the bytes."""
        while (data := await stream.inbound.get()) is not None:
            writer.write(data)
            await writer.drain()
            stream.recv_allowed += len(data)
            self.send(wire.credit(stream.sid, len(data)))
        if writer.can_write_eof():
            writer.write_eof()


def _close_writer(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
