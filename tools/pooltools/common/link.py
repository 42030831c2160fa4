"""Message links a service's conversation runs over: one channel of a POOL session, or (for
tests) an in-memory pair with the same blocking and back-pressure behaviour."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Protocol

from pooltools.kernel.device import EXIT_TIMEOUT, PoolError


class LinkTimeout(Exception):
    """Nothing could be received, or sent, within the time given."""


class LinkClosed(Exception):
    """The other end is gone."""


class Link(Protocol):
    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send one message."""

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next message; None when the other end closed."""

    def close(self) -> None:
        """Close the link."""


class SessionLink:
    """One channel of a POOL session fd (device.Session)."""

    def __init__(self, session: Any, channel: int) -> None:
        self.session = session
        self.channel = channel

    def send(self, data: bytes, timeout: float | None = None) -> None:
        if timeout is not None and not self.session.wait_writable(timeout):
            raise LinkTimeout(f"the peer took nothing for {timeout:g} s")
        try:
            self.session.send(data, self.channel)
        except PoolError as exc:
            raise LinkClosed(str(exc)) from None

    def recv(self, timeout: float | None = None) -> bytes | None:
        try:
            got = self.session.recv(self.channel, timeout)
        except PoolError as exc:
            if exc.exit_code == EXIT_TIMEOUT:
                raise LinkTimeout(str(exc)) from None
            raise LinkClosed(str(exc)) from None
        return None if got is None else got[1]

    def close(self) -> None:
        self.session.close()


class MemoryLink:
    """One end of an in-memory pair: at most `depth` messages in flight each way."""

    def __init__(self, inbox: queue.Queue, outbox: queue.Queue) -> None:
        self.inbox, self.outbox = inbox, outbox
        self.closed = threading.Event()
        self.peer: MemoryLink | None = None

    @classmethod
    def pair(cls, depth: int = 64) -> tuple[MemoryLink, MemoryLink]:
        a2b: queue.Queue = queue.Queue(depth)
        b2a: queue.Queue = queue.Queue(depth)
        a, b = cls(b2a, a2b), cls(a2b, b2a)
        a.peer, b.peer = b, a
        return a, b

    def send(self, data: bytes, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.closed.is_set() or (self.peer and self.peer.closed.is_set()):
                raise LinkClosed("the other end closed")
            try:
                self.outbox.put(bytes(data), timeout=0.05)
                return
            except queue.Full:
                if deadline is not None and time.monotonic() > deadline:
                    raise LinkTimeout(f"the peer took nothing for {timeout:g} s") from None

    def recv(self, timeout: float | None = None) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                item = self.inbox.get(timeout=0.05)
            except queue.Empty:
                if self.closed.is_set() or (self.peer and self.peer.closed.is_set()):
                    return None
                if deadline is not None and time.monotonic() > deadline:
                    raise LinkTimeout(f"nothing received within {timeout:g} s") from None
                continue
            return item

    def close(self) -> None:
        self.closed.set()
