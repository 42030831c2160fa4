"""POOL/1 reference peer on asyncio and ``cryptography`` (docs/protocol.md).

    python3 -m pooltools.testing.refpeer genkey FILE
    python3 -m pooltools.testing.refpeer connect HOST PORT --key FILE --peer-key B64 [--send FILE [--expect-echo] | --echo]
    python3 -m pooltools.testing.refpeer serve --port P --key FILE --trust B64 [B64...] [--echo | --send FILE] [--once]
    python3 -m pooltools.testing.refpeer fuzz HOST PORT --count N --key FILE --peer-key B64

It handshakes in either direction (as initiator or responder), exchanges DATA,
answers HEARTBEATs with ACK and sends its own, rekeys (either side starting,
with the tie-break), handles CLOSE, and prints one JSON summary per session on
stdout (sha256 and byte counts of what was sent and received). `fuzz` sends
malformed packets to the address it is given, and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pooltools.protocol import noise, wire
from pooltools.protocol.flow import FlowViolationError
from pooltools.protocol.keys import decode_key, encode_key
from pooltools.protocol.session import Session
from pooltools.protocol.wire import ErrorCode, Flag, Header, PacketType

PROG = "refpeer"
log = logging.getLogger("pooltools.testing.refpeer")


@dataclass
class Config:
    heartbeat_seconds: float = 5.0
    rekey_seconds: float = 3600.0
    rekey_packets: int = 1 << 30
    difficulty: int = noise.DEFAULT_DIFFICULTY
    handshake_timeout: float = 10.0
    max_sessions: int = 64
    channel: int = 0
    # flow control window granted once the session is up (docs/protocol.md section 4a)
    window: int = wire.FLOW_WINDOW
    # seconds the application waits before each message it reads (a slow receiver)
    read_delay: float = 0.0
    # a broken peer, for tests: REKEY packets are read and ignored, never answered
    ignore_rekey: bool = False


class PeerError(Exception):
    """A failure the CLI reports as one line."""


PACKET_WHOLE_SECONDS = 5.0  # docs/protocol.md 4b: a packet arrives whole within 5 s of its first byte


async def read_packet(reader: asyncio.StreamReader) -> tuple[Header, bytes]:
    """One packet: MalformedError on bad framing or a packet not whole in time, IncompleteReadError at EOF."""
    first = await reader.readexactly(1)  # a packet may take as long as it likes to begin

    async def rest() -> tuple[Header, bytes]:
        hdr = Header.decode(first + await reader.readexactly(wire.HEADER_LEN - 1))
        return hdr, await reader.readexactly(hdr.payload_len) if hdr.payload_len else b""

    try:
        return await asyncio.wait_for(rest(), PACKET_WHOLE_SECONDS)
    except TimeoutError:
        raise wire.MalformedError("packet", f"not whole within {PACKET_WHOLE_SECONDS:g} s of its first byte") from None


@dataclass
class Stats:
    bytes_sent: int = 0
    bytes_recv: int = 0
    messages_sent: int = 0
    messages_recv: int = 0
    heartbeats_sent: int = 0
    heartbeats_recv: int = 0
    acks_recv: int = 0
    dropped: int = 0
    rekeys: int = 0
    close_code_recv: int | None = None
    close_reason: str = ""
    rtt_ns: int = 0
    jitter_ns: int = 0
    heartbeats_unanswered: int = 0
    flow_waits: int = 0  # times a send waited for the peer's window
    peer_telemetry: dict[str, int] = field(default_factory=dict)
    announcements: list[dict[str, Any]] = field(default_factory=list)


class PeerSession:
    """An established session over one TCP connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
        cfg: Config,
    ) -> None:
        self.reader, self.writer, self.s, self.cfg = reader, writer, session, cfg
        self.stats = Stats()
        self.inbox: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.established_ns = time.time_ns()
        self.last_valid = time.monotonic()
        self._hb_pending: dict[int, int] = {}  # heartbeat seq -> its timestamp
        self._tasks: list[asyncio.Task[None]] = []
        self._rx_hash = hashlib.sha256()
        self._tx_hash = hashlib.sha256()
        self._sent_at_last_hb = 0
        self._closing = False
        self._credit = asyncio.Event()  # set when a WINDOW raised the send limit

    # ---- sending ----

    def _write(self, packets: list[bytes]) -> None:
        for p in packets:
            if log.isEnabledFor(logging.DEBUG):
                h = Header.decode(p)
                log.debug("send %s seq %d len %d", wire.PacketType(h.type).name, h.seq, h.payload_len)
            self.writer.write(p)

    async def _send(self, ptype: PacketType, plaintext: bytes, *, channel: int = 0, flags: int = 0) -> None:
        if self.closed.is_set() or self._closing:
            raise PeerError("session closed")
        self._write([self.s.seal(ptype, plaintext, channel=channel, flags=flags)])
        if self.s.rekey_due(self.cfg.rekey_seconds, self.cfg.rekey_packets):
            self._write(self.s.start_rekey())
        await self.writer.drain()

    async def send(self, data: bytes, channel: int | None = None) -> None:
        """One DATA message, once the peer's window has room for it (flow control)."""
        while not self.s.flow.can_send(len(data)):
            if self.closed.is_set() or self._closing:
                raise PeerError("session closed")
            self.stats.flow_waits += 1
            self._credit.clear()
            await self._credit.wait()
        await self._send(PacketType.DATA, data, channel=self.cfg.channel if channel is None else channel)
        self.s.flow.sent(len(data))
        self.stats.bytes_sent += len(data)
        self.stats.messages_sent += 1
        self._tx_hash.update(data)

    async def rekey(self) -> None:
        self._write(self.s.start_rekey())
        await self.writer.drain()

    async def close(self, code: int = ErrorCode.NONE, reason: str = "local close", *, wait: float = 5.0) -> None:
        """Send CLOSE(code) (codes below 0x10 only), half-close, wait for the peer to close TCP."""
        if self.closed.is_set() or self._closing:
            return
        self._closing = True
        self.stats.close_reason = reason
        if 0 <= code <= wire.CLOSE_CODE_MAX:
            with contextlib.suppress(Exception):
                self._write([self.s.seal(PacketType.CLOSE, wire.encode_close(code))])
                await asyncio.wait_for(self.writer.drain(), 2)
                if self.writer.can_write_eof():
                    self.writer.write_eof()
            if wait and self._tasks and asyncio.current_task() is not self._tasks[0]:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closed.wait(), wait)
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.stats.close_reason = self.stats.close_reason or reason
        self.closed.set()
        self._credit.set()
        self.inbox.put_nowait(None)
        with contextlib.suppress(Exception):
            self.writer.close()
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()

    # ---- receiving ----

    def start(self) -> None:
        # the application holds the session from the start: grant the full window
        self._write([self.s.seal(PacketType.WINDOW, self.s.flow.open(self.cfg.window).encode())])
        self._tasks = [asyncio.create_task(self._rx_loop()), asyncio.create_task(self._timer_loop())]

    async def wait_closed(self) -> None:
        await self.closed.wait()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _rx_loop(self) -> None:
        try:
            while True:
                try:
                    hdr, body = await read_packet(self.reader)
                except asyncio.IncompleteReadError as exc:
                    log.debug("recv: end of stream (%d stray bytes)", len(exc.partial))
                    self._finish("peer closed the connection")
                    return
                except wire.MalformedError as exc:
                    log.debug("recv: malformed: %s", exc)
                    self._finish(f"malformed packet: {exc}")
                    return
                log.debug("recv %s seq %d len %d", wire.PacketType(hdr.type).name, hdr.seq, hdr.payload_len)
                try:
                    got = self.s.open(hdr, body)
                except noise.TransportError as exc:
                    # the stream was altered: the session ends (docs/protocol.md section 4)
                    log.debug("recv: refused, closing: %s", exc)
                    self.stats.dropped += 1
                    await self.close(exc.code, f"refused {wire.code_name(exc.code)}: {exc}", wait=0)
                    return
                except wire.MalformedError as exc:
                    self._finish(f"malformed packet: {exc}")
                    return
                self.last_valid = time.monotonic()
                if not await self._dispatch(got):
                    return
        except (ConnectionError, OSError) as exc:
            self._finish(f"connection error: {exc}")
        except asyncio.CancelledError:
            pass

    async def _dispatch(self, got: Any) -> bool:
        t, pt, hdr = got.type, got.plaintext, got.header
        st = self.stats
        if t == PacketType.DATA:
            try:
                self.s.flow.on_data(len(pt))
            except FlowViolationError as exc:
                await self.close(ErrorCode.FLOW_VIOLATION, f"flow control: {exc}")
                return False
            st.bytes_recv += len(pt)
            st.messages_recv += 1
            self._rx_hash.update(pt)
            await self.inbox.put((hdr.channel, pt))
        elif t == PacketType.HEARTBEAT:
            st.heartbeats_recv += 1
            st.peer_telemetry = wire.Telemetry.decode(pt).__dict__
            if not self._closing:
                await self._send(PacketType.ACK, wire.AckEcho(hdr.seq, hdr.timestamp).encode())
        elif t == PacketType.ACK:
            echo = wire.AckEcho.decode(pt)
            st.acks_recv += 1
            if self._hb_pending.pop(echo.seq, None) == echo.timestamp:
                rtt = max(0, time.time_ns() - echo.timestamp)
                if st.rtt_ns:
                    st.jitter_ns += (abs(rtt - st.rtt_ns) - st.jitter_ns) // 8
                st.rtt_ns = rtt
        elif t == PacketType.REKEY and self.cfg.ignore_rekey:
            log.debug("recv: REKEY ignored (--ignore-rekey)")
        elif t == PacketType.REKEY and not self._closing:
            before = self.s.epoch
            try:
                self._write(self.s.on_rekey(pt))
            except noise.RekeyError as exc:
                await self.close(ErrorCode.REKEY_FAIL, f"rekey failed: {exc}")
                return False
            await self.writer.drain()
            st.rekeys += self.s.epoch - before
        elif t == PacketType.CLOSE:
            st.close_code_recv = wire.decode_close(pt)
            self._finish(f"peer sent CLOSE {wire.code_name(st.close_code_recv)}")
            return False
        elif t == PacketType.WINDOW:
            try:
                self.s.flow.on_window(wire.Window.decode(pt))
            except (wire.WireError, FlowViolationError) as exc:
                await self.close(ErrorCode.FLOW_VIOLATION, f"flow control: {exc}")
                return False
            self._credit.set()
        elif t == PacketType.CONFIG:
            st.announcements.append({"config": wire.ConfigAnnounce.decode(pt).version})
        elif t == PacketType.ROLLBACK:
            st.announcements.append({"rollback": wire.RollbackAnnounce.decode(pt).restored_version})
        return True

    async def _timer_loop(self) -> None:
        hb = self.cfg.heartbeat_seconds
        next_hb = time.monotonic() + hb
        try:
            while not self.closed.is_set():
                await asyncio.sleep(min(1.0, hb))
                now = time.monotonic()
                if now - self.last_valid > 3 * hb:
                    self.stats.close_reason = "peer dead: nothing valid for 3 heartbeat intervals"
                    self._finish(self.stats.close_reason)
                    return
                if self.s.rekey_overdue():
                    await self.close(ErrorCode.REKEY_FAIL, "rekey not completed in time")
                    return
                if self.s.keys_expired(self.cfg.rekey_seconds, self.cfg.rekey_packets):
                    await self.close(ErrorCode.KEY_EXPIRED, "keys past their hard limit")
                    return
                if self.s.rekey_due(self.cfg.rekey_seconds, self.cfg.rekey_packets):
                    await self.rekey()
                if now >= next_hb:
                    next_hb = now + hb
                    await self._heartbeat(hb)
        except (ConnectionError, OSError, PeerError) as exc:
            self._finish(f"connection error: {exc}")
        except asyncio.CancelledError:
            pass

    async def _heartbeat(self, interval: float) -> None:
        if self._closing:
            return
        st = self.stats
        st.heartbeats_unanswered += len(self._hb_pending)
        self._hb_pending.clear()
        sent = st.heartbeats_sent
        loss = st.heartbeats_unanswered * 1_000_000 // sent if sent else 0
        tput = min((st.bytes_sent - self._sent_at_last_hb) * 8 / interval, 2**32 - 1)
        self._sent_at_last_hb = st.bytes_sent
        tel = wire.Telemetry(
            rtt_ns=st.rtt_ns,
            jitter_ns=st.jitter_ns,
            loss_rate_ppm=min(loss, 1_000_000),
            throughput_bps=int(tput),
            mtu=1500,
            queue_depth=min(self.inbox.qsize(), 0xFFFF),
            uptime_ns=time.time_ns() - self.established_ns,
            rekey_count=self.s.epoch,
            config_version=0,
        )
        pkt = self.s.seal(PacketType.HEARTBEAT, tel.encode(), flags=Flag.TELEMETRY)
        self._hb_pending[self.s.send_seq] = Header.decode(pkt).timestamp
        self._write([pkt])
        st.heartbeats_sent += 1
        await self.writer.drain()

    async def recv(self) -> tuple[int, bytes] | None:
        """The next message (None at the end); reading it frees window for the peer."""
        if self.cfg.read_delay:
            await asyncio.sleep(self.cfg.read_delay)
        item = await self.inbox.get()
        if item is not None and not self.closed.is_set() and not self._closing:
            grant = self.s.flow.consumed(len(item[1]))
            if grant is not None:
                with contextlib.suppress(PeerError, ConnectionError, OSError):
                    await self._send(PacketType.WINDOW, grant.encode())
        return item

    def summary(self) -> dict[str, Any]:
        st = self.stats
        return {
            "session_id": self.s.session_id.hex(),
            "role": "initiator" if self.s.initiator else "responder",
            "peer": encode_key(self.s.peer_static),
            "epoch": self.s.epoch,
            "bytes_sent": st.bytes_sent,
            "bytes_received": st.bytes_recv,
            "messages_sent": st.messages_sent,
            "messages_received": st.messages_recv,
            "sha256_sent": self._tx_hash.hexdigest(),
            "sha256_received": self._rx_hash.hexdigest(),
            "heartbeats_sent": st.heartbeats_sent,
            "heartbeats_received": st.heartbeats_recv,
            "acks_received": st.acks_recv,
            "rtt_ns": st.rtt_ns,
            "jitter_ns": st.jitter_ns,
            "rekeys": st.rekeys,
            "dropped": st.dropped,
            "close_code_received": st.close_code_recv,
            "close_reason": st.close_reason,
            "peer_telemetry": st.peer_telemetry,
        }


# ---- handshakes over TCP ----


async def connect(
    host: str,
    port: int,
    static_secret: bytes,
    peer_static: bytes,
    cfg: Config,
    *,
    initiator_factory: Callable[..., noise.Initiator] = noise.Initiator,
) -> PeerSession:
    """Open TCP and run the initiator handshake; HandshakeError/PeerError on failure."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), cfg.handshake_timeout)
    except (OSError, TimeoutError) as exc:
        raise PeerError(f"connect to {host}:{port}: {exc or 'timed out'}") from None
    try:
        ini = initiator_factory(static_secret, peer_static)
        writer.write(ini.create_init())
        await writer.drain()
        hdr, body = await asyncio.wait_for(read_packet(reader), cfg.handshake_timeout)
        ini.on_challenge(hdr, body)
        loop = asyncio.get_running_loop()
        solution = await loop.run_in_executor(None, noise.puzzle_solve, ini.seed, ini.difficulty)
        writer.write(ini.create_response(solution))
        await writer.drain()
        hdr, body = await asyncio.wait_for(read_packet(reader), cfg.handshake_timeout)
        result = ini.on_ack(hdr, body)
    except TimeoutError:
        writer.close()
        raise noise.HandshakeError("handshake timed out") from None
    except asyncio.IncompleteReadError:
        writer.close()
        raise noise.HandshakeError("responder closed the connection during the handshake") from None
    except (noise.PoolError, wire.WireError):
        writer.close()
        raise
    peer = PeerSession(reader, writer, Session(result), cfg)
    peer.start()
    return peer


class Server:
    """Responder side: one stateless handshake per TCP connection, then a PeerSession."""

    def __init__(
        self,
        static_secret: bytes,
        trust: list[bytes],
        cfg: Config,
        on_session: Callable[[PeerSession], Any],
    ) -> None:
        self.cfg = cfg
        self.sessions: set[PeerSession] = set()
        self.responder = noise.Responder(
            static_secret, trust, difficulty=cfg.difficulty, room=lambda: len(self.sessions) < cfg.max_sessions
        )
        self.on_session = on_session
        self.refusals: dict[str, int] = {}
        self.server: asyncio.Server | None = None

    async def start(self, host: str | None, port: int) -> int:
        self.server = await asyncio.start_server(self._handle, host, port)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        ip, port = noise.ip_bytes(peername[0]), peername[1]
        res = self.responder
        hdr: Header | None = None
        try:
            async with asyncio.timeout(self.cfg.handshake_timeout):
                hdr, body = await read_packet(reader)
                writer.write(res.on_init(hdr, body, ip, port))
                await writer.drain()
                hdr, body = await read_packet(reader)
                ack, result = res.on_response(hdr, body, ip, port)
                writer.write(ack)
                await writer.drain()
        except noise.HandshakeError as exc:
            name = type(exc).__name__
            self.refusals[name] = self.refusals.get(name, 0) + 1
            if hdr is not None and exc.wire_code:
                with contextlib.suppress(Exception):
                    writer.write(res.close_packet(hdr, exc.wire_code))
                    await writer.drain()
            writer.close()
            return
        except (wire.WireError, asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError) as exc:
            name = type(exc).__name__
            self.refusals[name] = self.refusals.get(name, 0) + 1
            writer.close()
            return
        peer = PeerSession(reader, writer, Session(result), self.cfg)
        self.sessions.add(peer)
        peer.start()
        try:
            await self.on_session(peer)
        finally:
            await peer.close()
            self.sessions.discard(peer)

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
        for s in list(self.sessions):
            await s.close(ErrorCode.NONE)


# ---- session behaviours (CLI modes) ----


async def run_echo(peer: PeerSession) -> None:
    """Echo every DATA message on its channel until the peer closes."""
    while (item := await peer.recv()) is not None:
        channel, data = item
        try:
            await peer.send(data, channel)
        except (PeerError, ConnectionError, OSError):
            break
    await peer.wait_closed()


async def run_sink(peer: PeerSession, out: Path | None = None) -> None:
    fh = out.open("wb") if out else None
    try:
        while (item := await peer.recv()) is not None:
            if fh:
                fh.write(item[1])
    finally:
        if fh:
            fh.close()
    await peer.wait_closed()


async def run_send(
    peer: PeerSession, path: Path, *, expect_echo: bool = False, chunk: int = wire.MAX_MESSAGE, timeout: float = 60.0
) -> None:
    """Send a file as DATA messages, optionally wait for it to come back, then CLOSE(0)."""
    drain = asyncio.create_task(_collect(peer))
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            await peer.send(block)
    if expect_echo:
        deadline = time.monotonic() + timeout
        while peer.stats.bytes_recv < peer.stats.bytes_sent and not peer.closed.is_set():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
    await peer.close(ErrorCode.NONE, "sent everything")
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain
    await peer.wait_closed()


async def _collect(peer: PeerSession) -> None:
    while await peer.recv() is not None:
        pass


# ---- the pool_test protocol (tools/pooltools/testing/pool_test.py), so that pool_test runs against the peer ----

POOL_TEST_CHANNEL = 7


async def _recv_on(peer: PeerSession, channel: int) -> bytes | None:
    while (item := await peer.recv()) is not None:
        if item[0] == channel:
            return item[1]
    return None


async def run_pool_test_server(peer: PeerSession, channel: int = POOL_TEST_CHANNEL) -> dict[str, Any]:
    """Answer `pool_test client`/`bench` requests (bulk, ping, quit) like `pool_test server`, then CLOSE."""
    from .pool_test import control, parse_control

    results: dict[str, Any] = {"bulk": [], "pings": 0}
    while (msg := await _recv_on(peer, channel)) is not None:
        req = parse_control(msg)
        if req is None:
            continue
        op = req.get("op")
        if op == "quit":
            break
        if op == "bulk":
            total, got, h, t0 = int(req.get("bytes", 0)), 0, hashlib.sha256(), time.monotonic()
            while got < total:
                data = await _recv_on(peer, channel)
                if data is None:
                    break
                h.update(data)
                got += len(data)
            secs = time.monotonic() - t0
            await peer.send(control("result", bytes=got, sha256=h.hexdigest(), seconds=secs), channel)
            results["bulk"].append({"bytes": got, "sha256": h.hexdigest(), "seconds": round(secs, 3)})
        elif op == "ping":
            await peer.send(control("ready"), channel)
            for _i in range(int(req.get("count", 0))):
                data = await _recv_on(peer, channel)
                if data is None:
                    break
                await peer.send(data, channel)
                results["pings"] += 1
        else:
            await peer.send(control("error", why=f"unknown op {op!r}"), channel)
    await peer.close(ErrorCode.NONE, "pool_test client done")
    await peer.wait_closed()
    return results


async def run_pool_test_client(
    peer: PeerSession, total: int, size: int = wire.MAX_MESSAGE, channel: int = POOL_TEST_CHANNEL
) -> dict[str, Any]:
    """A `pool_test client` bulk run against `pool_test server` on the far side; checks its SHA-256."""
    from .pool_test import control, parse_control, pattern

    h = hashlib.sha256()
    t0 = time.monotonic()
    await peer.send(control("bulk", bytes=total), channel)
    for chunk in pattern(total, size):
        h.update(chunk)
        await peer.send(chunk, channel)
    result: dict[str, Any] | None = None
    while result is None and (msg := await _recv_on(peer, channel)) is not None:
        doc = parse_control(msg)
        if doc and doc.get("op") in ("result", "error"):
            result = doc
    secs = time.monotonic() - t0
    with contextlib.suppress(PeerError):
        await peer.send(control("quit"), channel)
    await peer.close(ErrorCode.NONE, "pool_test bulk done")
    await peer.wait_closed()
    if result is None or result.get("op") != "result":
        raise PeerError(f"pool_test server gave no result: {result or 'session closed'}")
    return {
        "bytes": total,
        "seconds": round(secs, 3),
        "sha256": h.hexdigest(),
        "server_sha256": result.get("sha256"),
        "server_bytes": result.get("bytes"),
        "sha256_ok": result.get("sha256") == h.hexdigest() and result.get("bytes") == total,
    }


# ---- key helpers ----


def load_private(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PeerError(f"key file {path}: {exc.strerror or exc}") from None
    if len(data) == 32:
        return data
    try:
        return decode_key(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PeerError(f"key file {path}: {exc}") from None


def parse_key(text: str, what: str) -> bytes:
    try:
        return decode_key(text)
    except ValueError as exc:
        raise PeerError(f"{what}: {exc}") from None


# ---- CLI ----


def _cfg(args: argparse.Namespace) -> Config:
    difficulty = getattr(args, "difficulty", noise.DEFAULT_DIFFICULTY)
    if not 0 <= difficulty <= noise.MAX_DIFFICULTY:
        raise PeerError(f"--difficulty must be 0 to {noise.MAX_DIFFICULTY} (got {difficulty})")
    if not wire.FLOW_MSG_COST + wire.MAX_MESSAGE <= args.window <= wire.FLOW_MAX_WINDOW:
        raise PeerError(
            f"--window must be {wire.FLOW_MSG_COST + wire.MAX_MESSAGE} to {wire.FLOW_MAX_WINDOW} (got {args.window})"
        )
    if not 0 <= args.read_delay <= 60:
        raise PeerError(f"--read-delay must be 0 to 60 seconds (got {args.read_delay})")
    return Config(
        heartbeat_seconds=args.heartbeat_seconds,
        rekey_seconds=args.rekey_seconds,
        rekey_packets=args.rekey_packets,
        difficulty=difficulty,
        handshake_timeout=args.timeout,
        channel=args.channel,
        window=args.window,
        read_delay=args.read_delay,
        ignore_rekey=args.ignore_rekey,
    )


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


async def cmd_connect(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    peer = await connect(args.host, args.port, load_private(args.key), parse_key(args.peer_key, "--peer-key"), cfg)
    if args.rekey_now:
        await peer.rekey()
    if args.bulk is not None:
        res = await run_pool_test_client(peer, args.bulk)
        _emit({**peer.summary(), "pool_test": res})
        return 0 if res["sha256_ok"] else 1
    if args.send:
        await run_send(peer, Path(args.send), expect_echo=args.expect_echo, timeout=args.echo_timeout)
    elif args.echo:
        await run_echo(peer)
    else:
        await run_sink(peer, Path(args.out) if args.out else None)
    _emit(peer.summary())
    return 0


async def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_session(peer: PeerSession) -> None:
        extra: dict[str, Any] = {}
        try:
            if args.pool_test:
                extra["pool_test"] = await run_pool_test_server(peer)
            elif args.send:
                await run_send(peer, Path(args.send), expect_echo=args.expect_echo, timeout=args.echo_timeout)
            elif args.echo:
                await run_echo(peer)
            else:
                await run_sink(peer, Path(args.out) if args.out else None)
        finally:
            _emit({**peer.summary(), **extra})
            if args.once and not done.done():
                done.set_result(None)

    trust = [parse_key(t, "--trust") for t in args.trust]
    server = Server(load_private(args.key), trust, cfg, on_session)
    port = await server.start(args.listen, args.port)
    sys.stderr.write(f"{PROG}: listening on {args.listen or '*'}:{port}\n")
    sys.stderr.flush()
    try:
        await done
    finally:
        await server.close()
    return 0


def cmd_genkey(args: argparse.Namespace) -> int:
    from pooltools.protocol.x25519 import generate_private, public_key

    priv = generate_private()
    path = Path(args.file)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(encode_key(priv) + "\n")
    print(encode_key(public_key(priv)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python3 -m pooltools.{PROG}", description="POOL/1 reference peer")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every packet sent and received to stderr")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key", required=True, help="private key file (base64 line or 32 raw bytes)")
        p.add_argument("--heartbeat-seconds", type=float, default=5.0)
        p.add_argument("--rekey-seconds", type=float, default=3600.0)
        p.add_argument("--rekey-packets", type=int, default=1 << 30)
        p.add_argument("--timeout", type=float, default=10.0, help="handshake timeout (s)")
        p.add_argument("--channel", type=int, default=0, help="channel of sent DATA")
        p.add_argument("--out", help="write received data here")
        p.add_argument("--expect-echo", action="store_true", help="with --send: wait for the data to come back")
        p.add_argument("--echo-timeout", type=float, default=120.0)
        p.add_argument(
            "--window", type=int, default=wire.FLOW_WINDOW, help="flow control window granted to the peer (bytes)"
        )
        p.add_argument(
            "--read-delay", type=float, default=0.0, help="wait this long before reading each message (slow receiver)"
        )
        p.add_argument(
            "--ignore-rekey", action="store_true", help="act as a broken peer that never answers a REKEY (tests)"
        )

    g = sub.add_parser("genkey", help="write a new private key file (0600), print the public key")
    g.add_argument("file")

    c = sub.add_parser("connect", help="handshake as initiator, then send/echo/receive")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--peer-key", required=True, help="responder's static public key (base64)")
    common(c)
    m = c.add_mutually_exclusive_group()
    m.add_argument("--send", help="send this file, then CLOSE")
    m.add_argument("--echo", action="store_true", help="echo every message back")
    c.add_argument("--rekey-now", action="store_true", help="start a rekey right after the handshake")
    m.add_argument(
        "--bulk", type=int, metavar="BYTES", help="run a pool_test bulk transfer against `pool_test server` there"
    )

    s = sub.add_parser("serve", help="accept handshakes as responder")
    s.add_argument("--port", type=int, default=9253)
    s.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--trust", nargs="+", required=True, help="trusted static public keys (base64)")
    s.add_argument("--difficulty", type=int, default=noise.DEFAULT_DIFFICULTY)
    s.add_argument("--once", action="store_true", help="exit after the first session ends")
    common(s)
    m = s.add_mutually_exclusive_group()
    m.add_argument("--send", help="send this file to each peer, then CLOSE")
    m.add_argument("--echo", action="store_true", help="echo every message back")
    m.add_argument("--pool-test", action="store_true", help="answer `pool_test client`/`bench` (channel 7)")

    f = sub.add_parser("fuzz", help="send malformed packets to HOST PORT (bounded)")
    f.add_argument("host")
    f.add_argument("port", type=int)
    f.add_argument("--peer-key", required=True)
    f.add_argument("--count", type=int, default=10000)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--concurrency", type=int, default=8)
    f.add_argument(
        "--fresh-share", type=float, default=0.4, help="least share of the packets sent on fresh connections (0..1)"
    )
    f.add_argument(
        "--session-cases", type=int, default=200, help="most in-session cases, one session (a handshake) each (200)"
    )
    common(f)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {PROG}: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.cmd == "genkey":
            return cmd_genkey(args)
        import cryptography  # noqa: F401  (fail early, with the message below)

        if args.cmd == "connect":
            return asyncio.run(cmd_connect(args))
        if args.cmd == "serve":
            return asyncio.run(cmd_serve(args))
        from .fuzz import cmd_fuzz

        return asyncio.run(cmd_fuzz(args))
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:
        sys.stderr.write(
            f"{PROG}: {args.cmd}: needs the 'cryptography' package ({exc.name or exc}): pip install cryptography\n"
        )
        return 1
    except (PeerError, noise.PoolError, wire.WireError, OSError) as exc:
        sys.stderr.write(f"{PROG}: {args.cmd}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
