"""Requests both ways on the relay channel of one session (docs/relay.md section 4).

Both nodes may ask at any time, so one reader thread takes every message: a REQUEST goes to
the handler (on a worker, so that a handler which itself asks another node never holds up the
replies this channel is waiting for), a REPLY to the one request outstanding here.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable

from pooltools.common.jsonmsg import Kind, Refusal
from pooltools.common.link import Link, LinkClosed, LinkTimeout
from pooltools.relay import control
from pooltools.relay.control import Err

log = logging.getLogger("pool_relay")

Handler = Callable[[bytes, control.Request], bytes]  # (peer key, request) -> REPLY message


class ChannelClosed(Exception):
    """The session is gone; nothing more can be asked over it."""


class ControlChannel:
    def __init__(
        self,
        peer: bytes,
        link: Link,
        handler: Handler,
        workers: concurrent.futures.Executor,
        send_timeout: float = 5.0,
    ) -> None:
        self.peer, self.link, self.handler, self.workers = peer, link, handler, workers
        self.send_timeout = send_timeout
        self.replies: queue.Queue[bytes | None] = queue.Queue()
        self.asking = threading.Lock()  # one request of ours outstanding at a time
        self.sending = threading.Lock()  # messages are whole: one writer at a time
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, name="relay-channel", daemon=True)

    def start(self) -> ControlChannel:
        self.reader.start()
        return self

    def send(self, msg: bytes) -> None:
        with self.sending:
            self.link.send(msg, self.send_timeout)

    def ask(self, req: control.Request, timeout: float = 5.0) -> bytes:
        """The peer's REPLY message to req; ChannelClosed, or Refusal(unreachable) on a timeout."""
        with self.asking:
            if self.closed.is_set():
                raise ChannelClosed("the session ended")
            while not self.replies.empty():  # a late reply to an earlier request that timed out
                self.replies.get_nowait()
            try:
                self.send(control.encode(req))
            except (LinkClosed, LinkTimeout) as exc:
                raise ChannelClosed(str(exc)) from None
            try:
                got = self.replies.get(timeout=timeout)
            except queue.Empty:
                raise Refusal(Err.UNREACHABLE, f"no answer within {timeout:g} s") from None
            if got is None:
                raise ChannelClosed("the session ended")
            return got

    def close(self) -> None:
        self.closed.set()
        self.replies.put(None)
        self.link.close()

    def _read(self) -> None:
        try:
            while (msg := self.link.recv()) is not None:
                self._dispatch(msg)
        except (LinkClosed, LinkTimeout) as exc:
            log.debug("relay channel with %s: %s", self.peer.hex()[:16], exc)
        finally:
            self.closed.set()
            self.replies.put(None)
            # our descriptor must not keep an ended session in pool.ko's table
            self.link.close()

    def _dispatch(self, msg: bytes) -> None:
        kind = msg[1] if len(msg) >= 2 else 0
        if kind == Kind.REPLY:
            self.replies.put(msg)
            return
        try:
            req = control.decode_request(msg)
        except Refusal as exc:
            self._answer(control.reply(exc.reply()))
            return
        self.workers.submit(self._handle, req)

    def _handle(self, req: control.Request) -> None:
        try:
            answer = self.handler(self.peer, req)
        except Refusal as exc:
            answer = control.reply(exc.reply())
        except Exception:  # a bug costs this request, not the channel
            log.exception("relay request %s from %s failed", type(req).__name__, self.peer.hex()[:16])
            answer = control.reply(Refusal(Err.BAD_REQUEST, "the relay failed on this request").reply())
        self._answer(answer)

    def _answer(self, msg: bytes) -> None:
        try:
            self.send(msg)
        except (LinkClosed, LinkTimeout) as exc:
            log.debug("reply to %s not sent: %s", self.peer.hex()[:16], exc)
