"""Bounded malformed-traffic generator for `python3 -m pooltools.testing.refpeer fuzz`.

Sends exactly `count` malformed packets to the one address it is given:
- on fresh TCP connections: random bytes, truncated headers and payloads,
  oversized lengths, wrong version, reserved bytes, unknown types, undefined
  flags, bad header HMAC, stale INIT, wrong puzzle solution;
- inside established sessions, one case per session, each of which must end
  that session with the reason the protocol gives (docs/protocol.md section 4:
  a TCP stream that was altered cannot go on): bad HMAC, bit flips in the
  ciphertext, a duplicated, an old and a skipped sequence number, an
  undecryptable payload with a valid HMAC (each answered by CLOSE with its
  code), and framing errors (the connection closed, nothing sent).
Every session first answers a heartbeat; fresh sessions must keep working
during and after the run (`alive_after`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pooltools.protocol import noise, wire
from pooltools.protocol.wire import ErrorCode, Flag, Header, PacketType

from .refpeer import Config, PeerError, PeerSession, _cfg, connect, load_private, log, parse_key

FRESH_CASES = (
    "random_bytes",
    "truncated_header",
    "truncated_payload",
    "oversized_length",
    "wrong_version",
    "reserved_set",
    "unknown_type",
    "bad_flags",
    "bad_hmac_init",
    "stale_init",
    "bad_puzzle",
)
# case -> the CLOSE code the target must end the session with (None: closed, nothing sent)
SESSION_CASES: dict[str, int | None] = {
    "session_bad_hmac": ErrorCode.AUTH_FAIL,
    "session_ciphertext_flip": ErrorCode.AUTH_FAIL,
    "session_random_hmac": ErrorCode.AUTH_FAIL,
    "session_duplicate": ErrorCode.SEQ_INVALID,
    "session_old_seq": ErrorCode.SEQ_INVALID,
    "session_skipped_seq": ErrorCode.SEQ_INVALID,
    "session_decrypt_fail": ErrorCode.DECRYPT_FAIL,
    "session_wrong_version": None,
    "session_oversized_length": None,
    "session_truncated": None,
}
SESSION_CASES_MAX = 200  # each costs a handshake: the rest of the count goes to fresh connections


class Fuzzer:
    def __init__(
        self,
        host: str,
        port: int,
        static_secret: bytes,
        peer_static: bytes,
        cfg: Config,
        rng: random.Random,
        concurrency: int = 8,
    ) -> None:
        self.host, self.port = host, port
        self.static, self.peer_static = static_secret, peer_static
        self.cfg = cfg
        self.rng = rng
        self.sent: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sem = asyncio.Semaphore(max(1, concurrency))
        self.mk = noise.mac_key(peer_static)
        self.sessions_made = 0
        self.heartbeats_checked = 0
        self.heartbeats_answered = 0
        self.ended_as_expected = 0
        self.close_wait = 10.0  # seconds a target has to end a session it must end
        self.handshake_lock = asyncio.Lock()
        self.down = ""  # why the target stopped answering, if it did

    def _progress(self) -> None:
        n = sum(self.sent.values())
        if n % 500 == 0:
            log.info("fuzz: %d malformed packets sent", n)

    # ---- fresh connections ----

    def _init_packet(self, ts: int | None = None) -> bytes:
        ini = noise.Initiator(self.static, self.peer_static, clock=(lambda: ts) if ts else time.time_ns)
        return ini.create_init()

    def _fresh_payload(self, case: str) -> bytes:
        r = self.rng
        init = bytearray(self._init_packet())
        if case == "random_bytes":
            return r.randbytes(r.randint(1, 400))
        if case == "truncated_header":
            return bytes(init[: r.randint(1, wire.HEADER_LEN - 1)])
        if case == "truncated_payload":
            return bytes(init[: wire.HEADER_LEN + r.randint(0, 39)])
        if case == "oversized_length":
            ptype = r.choice([PacketType.INIT, PacketType.RESPONSE, PacketType.ACK, PacketType.CLOSE])
            hdr = Header(type=ptype, payload_len=r.randint(129, 65535), timestamp=time.time_ns())
            return hdr.encode(check=False) + r.randbytes(r.randint(0, 200))
        if case == "wrong_version":
            init[0] = (r.choice([0, 2, 3, 7, 15]) << 4) | (init[0] & 0x0F)
        elif case == "reserved_set":
            init[r.choice([1, 47])] = r.randint(1, 255)
        elif case == "unknown_type":
            init[0] = 0x10 | r.randint(0xC, 0xF)
        elif case == "bad_flags":
            init[2:4] = (r.randint(1, 0x3F) << 10).to_bytes(2, "big")
        elif case == "bad_hmac_init":
            i = r.randint(wire.MAC_OFFSET, wire.HEADER_LEN - 1)
            init[i] ^= 1 << r.randint(0, 7)
        elif case == "stale_init":
            return self._init_packet(time.time_ns() - r.randint(31, 3600) * 10**9)
        return bytes(init)

    async def _fresh(self, case: str) -> None:
        async with self.sem:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
            except (OSError, TimeoutError) as exc:
                self.errors[f"connect: {type(exc).__name__}"] += 1
                self.down = self.down or f"after {sum(self.sent.values())} packets: connect: {exc or 'timed out'}"
                return
            try:
                if case == "bad_puzzle":
                    await self._bad_puzzle(reader, writer)
                else:
                    writer.write(self._fresh_payload(case))
                    await writer.drain()
                    if writer.can_write_eof():
                        writer.write_eof()
                # Wait (bounded) for the peer to close or answer.
                with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                    await asyncio.wait_for(reader.read(65536), 2)
                self.sent[case] += 1
                self._progress()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, noise.PoolError, wire.WireError) as exc:
                self.sent[case] += 1
                self.errors[f"{case}: {type(exc).__name__}"] += 1
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _bad_puzzle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ini = noise.Initiator(self.static, self.peer_static)
        writer.write(ini.create_init())
        await writer.drain()
        raw = await asyncio.wait_for(reader.readexactly(wire.HEADER_LEN), 5)
        hdr = Header.decode(raw)
        body = await asyncio.wait_for(reader.readexactly(hdr.payload_len), 5)
        ch = ini.on_challenge(hdr, body)
        bad = next(s for s in range(1 << 20) if not noise.puzzle_ok(ch.seed, s, ch.difficulty))
        writer.write(ini.create_response(bad))
        await writer.drain()

    # ---- inside a session ----

    async def _session(self) -> PeerSession:
        cfg = Config(**{**self.cfg.__dict__, "heartbeat_seconds": 3600.0})  # we send heartbeats ourselves
        # one handshake at a time: a responder refuses an INIT whose timestamp is not newer than
        # the last one it took from this key (docs/protocol.md section 3), which concurrent
        # handshakes from one key cannot promise
        async with self.handshake_lock:
            peer = await connect(self.host, self.port, self.static, self.peer_static, cfg)
        self.sessions_made += 1
        return peer

    def _session_packet(self, peer: PeerSession, case: str, history: list[bytes]) -> bytes:
        r, s = self.rng, peer.s
        if case == "session_duplicate" and history:
            return r.choice(history)
        if case == "session_old_seq":
            seq = max(1, s.send_seq - 200 - r.randint(0, 1 << 20))
            return noise.protect(
                s.send_keys,
                PacketType.DATA,
                r.randbytes(r.randint(0, 64)),
                seq=seq,
                ack=s.highest_recv,
                session_id=s.session_id,
                timestamp=time.time_ns(),
            )
        if case == "session_skipped_seq":
            s.send_seq += 1  # the packet before it never comes: a deleted message
            return s.seal(PacketType.DATA, r.randbytes(r.randint(0, 64)), channel=r.randint(0, 255))
        if case == "session_decrypt_fail":
            s.send_seq += 1
            body = r.randbytes(r.randint(16, 200))
            hdr = Header(
                type=PacketType.DATA,
                flags=Flag.ENCRYPTED,
                seq=s.send_seq,
                ack=s.highest_recv,
                session_id=s.session_id,
                timestamp=time.time_ns(),
                payload_len=len(body),
            )
            return noise.seal_packet(s.send_keys.mac, hdr, body)
        # A valid packet, then broken.
        pkt = bytearray(s.seal(PacketType.DATA, r.randbytes(r.randint(0, 128)), channel=r.randint(0, 255)))
        if case == "session_bad_hmac":
            pkt[r.randint(wire.MAC_OFFSET, wire.HEADER_LEN - 1)] ^= 1 << r.randint(0, 7)
        elif case == "session_ciphertext_flip":
            pkt[r.randint(wire.HEADER_LEN, len(pkt) - 1)] ^= 1 << r.randint(0, 7)
        elif case == "session_random_hmac":
            pkt[wire.MAC_OFFSET : wire.HEADER_LEN] = r.randbytes(32)
        elif case == "session_wrong_version":
            pkt[0] = (r.choice([0, 2, 15]) << 4) | (pkt[0] & 0x0F)
        elif case == "session_oversized_length":
            pkt[44:46] = b"\xff\xff"
            pkt = pkt[: wire.HEADER_LEN] + bytearray(r.randbytes(100))
        elif case == "session_truncated":
            pkt = pkt[: r.randint(1, len(pkt) - 1)]
        return bytes(pkt)

    async def _heartbeat_ok(self, peer: PeerSession, timeout: float = 10.0) -> bool:
        """Send a HEARTBEAT; True once the peer's ACK for it arrived."""
        before = peer.stats.acks_recv
        await peer._heartbeat(1.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not peer.closed.is_set():
            if peer.stats.acks_recv > before:
                return True
            await asyncio.sleep(0.01)
        return False

    async def _probe(self) -> None:
        """A fresh session must still answer a heartbeat; otherwise the target is down."""
        try:
            peer = await self._session()
        except (PeerError, noise.PoolError, wire.WireError, OSError) as exc:
            self.down = self.down or f"after {sum(self.sent.values())} packets: no new session: {exc}"
            return
        self.heartbeats_checked += 1
        if await self._heartbeat_ok(peer):
            self.heartbeats_answered += 1
        else:
            self.down = self.down or f"after {sum(self.sent.values())} packets: heartbeat not answered"
        await peer.close(wire.ErrorCode.NONE, wait=2)

    async def _in_session(self, case: str) -> None:
        """One session: a heartbeat answered, a few good packets, then `case`, which must end
        the session with the code SESSION_CASES gives."""
        async with self.sem:
            try:
                peer = await self._session()
            except (PeerError, noise.PoolError, wire.WireError, OSError) as exc:
                self.down = self.down or f"after {sum(self.sent.values())} packets: no new session: {exc}"
                return
            try:
                self.heartbeats_checked += 1
                if await self._heartbeat_ok(peer):
                    self.heartbeats_answered += 1
                history: list[bytes] = []
                for _step in range(self.rng.randint(1, 4)):
                    good = peer.s.seal(PacketType.HEARTBEAT, wire.Telemetry().encode(), flags=Flag.TELEMETRY)
                    peer.writer.write(good)
                    history.append(good)
                peer.writer.write(self._session_packet(peer, case, history))
                if case == "session_truncated" and peer.writer.can_write_eof():
                    peer.writer.write_eof()  # the rest never comes
                await peer.writer.drain()
            except (OSError, ConnectionError) as exc:
                self.errors[f"{case}: {type(exc).__name__}"] += 1
            self.sent[case] += 1
            self._progress()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peer.closed.wait(), self.close_wait)
            want, got = SESSION_CASES[case], peer.stats.close_code_recv
            if not peer.closed.is_set():
                self.errors[f"{case}: the target kept the session"] += 1
            elif got != want:
                self.errors[f"{case}: ended with {_code(got)}, expected {_code(want)}"] += 1
            else:
                self.ended_as_expected += 1
            await peer.close(wire.ErrorCode.NONE, wait=1)

    async def run(self, count: int, fresh_share: float = 0.4, session_cases: int = SESSION_CASES_MAX) -> dict[str, Any]:
        r = self.rng
        n_session = min(count - int(count * fresh_share), session_cases)
        cases = list(SESSION_CASES)
        # every in-session case at least once when there is room, then at random
        session = (cases * (n_session // len(cases) + 1))[: min(n_session, len(cases))]
        session += [r.choice(cases) for _i in range(n_session - len(session))]
        r.shuffle(session)
        fresh = [r.choice(FRESH_CASES) for _i in range(count - n_session)]
        start = time.monotonic()
        batch = 256
        half = len(session) // 2
        await asyncio.gather(*(self._in_session(c) for c in session[:half]))
        for i in range(0, len(fresh), batch):
            if self.down:
                break
            await asyncio.gather(*(self._fresh(c) for c in fresh[i : i + batch]))
            await self._probe()
        if not self.down:
            await asyncio.gather(*(self._in_session(c) for c in session[half:]))
        # Finally: a brand-new session must still work.
        alive_after = False
        try:
            last = await self._session()
            self.heartbeats_checked += 1
            alive_after = await self._heartbeat_ok(last)
            self.heartbeats_answered += alive_after
            await last.close(wire.ErrorCode.NONE, wait=2)
        except (PeerError, noise.PoolError, wire.WireError, OSError) as exc:
            self.errors[f"final session: {exc}"] += 1
        return {
            "target": f"{self.host}:{self.port}",
            "malformed_sent": sum(self.sent.values()),
            "by_case": dict(sorted(self.sent.items())),
            "sessions_made": self.sessions_made,
            "heartbeats_checked": self.heartbeats_checked,
            "heartbeats_answered": self.heartbeats_answered,
            "session_cases": len(session),
            "sessions_ended_as_expected": self.ended_as_expected,
            "alive_after": alive_after,
            "errors": dict(self.errors),
            "target_down": self.down or None,
            "seconds": round(time.monotonic() - start, 2),
        }


def _code(code: int | None) -> str:
    return "no CLOSE" if code is None else wire.code_name(code)


def passed(report: dict[str, Any]) -> bool:
    """The target refused every case as the protocol says, answered every heartbeat and works."""
    return (
        report["alive_after"]
        and not report["target_down"]
        and report["sessions_ended_as_expected"] == report["session_cases"]
        and report["heartbeats_answered"] == report["heartbeats_checked"]
    )


async def cmd_fuzz(args: argparse.Namespace, emit: Callable[[str], Any] = sys.stdout.write) -> int:
    if args.count < 1:
        raise PeerError("--count must be at least 1")
    f = Fuzzer(
        args.host,
        args.port,
        load_private(args.key),
        parse_key(args.peer_key, "--peer-key"),
        _cfg(args),
        random.Random(args.seed),
        args.concurrency,
    )
    if not 0 <= args.fresh_share <= 1:
        raise PeerError("--fresh-share must be between 0 and 1")
    if args.session_cases < 0:
        raise PeerError("--session-cases must be 0 or more")
    report = await f.run(args.count, args.fresh_share, args.session_cases)
    emit(json.dumps(report, sort_keys=True) + "\n")
    return 0 if passed(report) else 1
