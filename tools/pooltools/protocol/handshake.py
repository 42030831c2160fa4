"""The POOL/1 handshake, INIT -> CHALLENGE -> RESPONSE -> ACK (docs/protocol.md section 3).

Every source of randomness and time is injectable (ephemerals, ids, clock,
cookie secrets) so that the test vectors are deterministic.
"""

from __future__ import annotations

import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import wire
from .errors import (
    AuthFailError,
    BadMacError,
    BadPuzzleError,
    ChallengeTooHardError,
    HandshakeClosedError,
    LowOrderPointError,
    OverloadError,
    ProtocolError,
    ReplayedInitError,
    StaleTimestampError,
    UnknownPeerError,
)
from .primitives import (
    CLOCK_SKEW_NS,
    COOKIE_ROTATE_NS,
    DEFAULT_DIFFICULTY,
    MAX_DIFFICULTY,
    NAME,
    ZERO_NONCE,
    TransportKeys,
    aead_decrypt,
    aead_encrypt,
    check_mac,
    dh,
    mac_key,
    mix,
    public_key,
    puzzle_ok,
    puzzle_seed,
    puzzle_solve,
    seal_packet,
    sha256,
    transport_keys,
)
from .wire import Flag, Header, PacketType
from .x25519 import clamp

SPENT_MAX = 4096  # puzzle seeds a responder remembers (docs/protocol.md, RESPONSE step 3)

Clock = Callable[[], int]


# ---- handshake ----


def _init_hash(s_r: bytes, e_i: bytes) -> tuple[bytes, bytes]:
    h = sha256(NAME)
    ck = h
    h = sha256(h, s_r)
    h = sha256(h, e_i)
    return ck, h


def _hs_header(ptype: PacketType, sid: bytes, ts: int, plen: int) -> Header:
    return Header(type=ptype, session_id=sid, timestamp=ts, payload_len=plen)


def _realtime_ns() -> int:
    return time.time_ns()


@dataclass
class HandshakeResult:
    keys: TransportKeys
    iid: bytes
    rid: bytes
    peer_static: bytes
    initiator: bool

    @property
    def session_id(self) -> bytes:
        return self.iid + self.rid


class Initiator:
    """The initiator side: create_init -> on_challenge -> create_response -> on_ack."""

    def __init__(
        self,
        static_secret: bytes,
        peer_static: bytes,
        *,
        ephemeral_secret: bytes | None = None,
        iid: bytes | None = None,
        clock: Clock = _realtime_ns,
        max_difficulty: int = MAX_DIFFICULTY,
    ) -> None:
        self.s = bytes(static_secret)
        self.S = public_key(self.s)
        self.S_r = bytes(peer_static)
        self.mk = mac_key(self.S_r)
        self.e = clamp(ephemeral_secret if ephemeral_secret is not None else os.urandom(32))
        self.E = public_key(self.e)
        self.iid = bytes(iid) if iid is not None else os.urandom(8)
        if len(self.iid) != 8:
            raise ValueError("iid must be 8 bytes")
        self.clock = clock
        self.max_difficulty = max_difficulty
        self.ts = 0
        self.ck = b""
        self.h = b""
        self.seed = b""
        self.difficulty = 0

    def create_init(self) -> bytes:
        self.ts = self.clock()
        payload = wire.Init(self.E, self.ts).encode()
        hdr = _hs_header(PacketType.INIT, self.iid + bytes(8), self.ts, len(payload))
        return seal_packet(self.mk, hdr, payload)

    def _check_reply(self, hdr: Header, payload: bytes, want: PacketType) -> None:
        if not check_mac(self.mk, hdr, payload):
            raise BadMacError(f"{PacketType(hdr.type).name} header HMAC does not verify")
        if hdr.type == PacketType.CLOSE and not hdr.flags & Flag.ENCRYPTED:
            raise HandshakeClosedError(wire.decode_close(payload))
        if hdr.type != want:
            raise ProtocolError(f"expected {want.name}, got {PacketType(hdr.type).name}")
        if hdr.flags or hdr.seq or hdr.ack or hdr.channel:
            raise ProtocolError(f"{want.name}: flags, sequence, acknowledgment and channel must be zero")
        if hdr.iid != self.iid:
            raise ProtocolError(f"{want.name}: session id does not echo our initiator id")

    def on_challenge(self, hdr: Header, payload: bytes) -> wire.Challenge:
        self._check_reply(hdr, payload, PacketType.CHALLENGE)
        if any(hdr.rid):
            raise ProtocolError("CHALLENGE: responder id must be zero")
        ch = wire.Challenge.decode(payload)
        if ch.difficulty > self.max_difficulty:
            raise ChallengeTooHardError(f"puzzle difficulty {ch.difficulty} above {self.max_difficulty}")
        self.seed, self.difficulty = ch.seed, ch.difficulty
        return ch

    def create_response(self, solution: int | None = None) -> bytes:
        if solution is None:
            solution = puzzle_solve(self.seed, self.difficulty)
        ck, h = _init_hash(self.S_r, self.E)
        ck, k = mix(ck, dh(self.e, self.S_r))
        enc_static = aead_encrypt(k, ZERO_NONCE, self.S, h)
        h = sha256(h, enc_static)
        ck, k = mix(ck, dh(self.s, self.S_r))
        enc_proof = aead_encrypt(k, ZERO_NONCE, struct.pack(">QQ", self.ts, solution), h)
        h = sha256(h, enc_proof)
        self.ck, self.h = ck, h
        payload = wire.Response(self.E, self.ts, solution, enc_static, enc_proof).encode()
        hdr = _hs_header(PacketType.RESPONSE, self.iid + bytes(8), self.clock(), len(payload))
        return seal_packet(self.mk, hdr, payload)

    def on_ack(self, hdr: Header, payload: bytes) -> HandshakeResult:
        self._check_reply(hdr, payload, PacketType.ACK)
        ack = wire.HsAck.decode(payload)
        # both ids enter the transcript: a rewritten rid fails the confirm tag
        h = sha256(self.h, self.iid, hdr.rid, ack.ephemeral)
        ck, _key = mix(self.ck, dh(self.e, ack.ephemeral))
        ck, k = mix(ck, dh(self.s, ack.ephemeral))
        if aead_decrypt(k, ZERO_NONCE, ack.confirm, h) != b"":
            raise AuthFailError("ACK confirm tag does not verify")
        h = sha256(h, ack.confirm)
        keys = transport_keys(ck, h)
        self.e = bytes(32)  # wipe (as far as Python allows)
        return HandshakeResult(keys, self.iid, hdr.rid, self.S_r, True)


class Responder:
    """The stateless responder: on_init -> CHALLENGE; on_response -> ACK and keys."""

    def __init__(
        self,
        static_secret: bytes,
        trust: Iterable[bytes],
        *,
        difficulty: int = DEFAULT_DIFFICULTY,
        clock: Clock = _realtime_ns,
        cookie_secret: bytes | None = None,
        room: Callable[[], bool] = lambda: True,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.s = bytes(static_secret)
        self.S = public_key(self.s)
        self.mk = mac_key(self.S)
        self.trust = {bytes(k) for k in trust}
        self.difficulty = difficulty
        self.clock = clock
        self.rng = rng
        self.room = room
        self.cookies = [cookie_secret if cookie_secret is not None else rng(32), rng(32)]
        self.cookie_rotated = clock()
        # Puzzle seeds of the last SPENT_MAX RESPONSEs past the puzzle check (step 3).
        self.spent: deque[bytes] = deque()
        self.spent_set: set[bytes] = set()
        self.last_init: dict[bytes, int] = {}

    def _spend(self, seed: bytes) -> bool:
        """Records a puzzle seed answered; False if it was answered before (and is remembered)."""
        if seed in self.spent_set:
            return False
        if len(self.spent) == SPENT_MAX:
            self.spent_set.discard(self.spent.popleft())
        self.spent.append(seed)
        self.spent_set.add(seed)
        return True

    def _rotate(self, now: int) -> None:
        """Whole periods from the first secret: current for one period, previous for the next."""
        periods = (now - self.cookie_rotated) // COOKIE_ROTATE_NS
        if periods <= 0:
            return
        previous = self.cookies[0] if periods == 1 else self.rng(32)
        self.cookies = [self.rng(32), previous]
        self.cookie_rotated += periods * COOKIE_ROTATE_NS

    def check_mac(self, hdr: Header, payload: bytes) -> None:
        if not check_mac(self.mk, hdr, payload):
            raise BadMacError(f"{PacketType(hdr.type).name} header HMAC does not verify")

    def _check_hs_header(self, hdr: Header, payload: bytes, want: PacketType) -> None:
        self.check_mac(hdr, payload)
        if hdr.type != want:
            raise ProtocolError(f"expected {want.name}, got {PacketType(hdr.type).name}")
        if hdr.flags or hdr.seq or hdr.ack or hdr.channel or any(hdr.rid):
            raise ProtocolError(f"{want.name}: flags, sequence, acknowledgment, channel, responder id must be zero")

    def _fresh(self, ts: int, now: int) -> None:
        if abs(ts - now) > CLOCK_SKEW_NS:
            raise StaleTimestampError(f"timestamp {ts} is {(ts - now) / 1e9:+.1f} s from our clock")

    def on_init(self, hdr: Header, payload: bytes, ip: bytes, port: int) -> bytes:
        """CHALLENGE packet for a valid INIT; stores nothing."""
        self._check_hs_header(hdr, payload, PacketType.INIT)
        init = wire.Init.decode(payload)
        if init.timestamp != hdr.timestamp:
            raise ProtocolError("INIT: header timestamp differs from the payload timestamp")
        now = self.clock()
        self._fresh(init.timestamp, now)
        self._rotate(now)
        seed = puzzle_seed(self.cookies[0], ip, port, hdr.iid, init.ephemeral, init.timestamp)
        body = wire.Challenge(seed, self.difficulty).encode()
        return seal_packet(self.mk, _hs_header(PacketType.CHALLENGE, hdr.session_id, now, len(body)), body)

    def on_response(
        self,
        hdr: Header,
        payload: bytes,
        ip: bytes,
        port: int,
        *,
        ephemeral_secret: bytes | None = None,
        rid: bytes | None = None,
    ) -> tuple[bytes, HandshakeResult]:
        """(ACK packet, result) for a valid RESPONSE; raises the specific refusal otherwise."""
        self._check_hs_header(hdr, payload, PacketType.RESPONSE)
        r = wire.Response.decode(payload)
        now = self.clock()
        self._fresh(r.timestamp, now)  # 1
        self._rotate(now)
        iid = hdr.iid
        seeds = (puzzle_seed(c, ip, port, iid, r.ephemeral, r.timestamp) for c in self.cookies)
        seed = next((s for s in seeds if puzzle_ok(s, r.solution, self.difficulty)), None)  # 2
        if seed is None:
            raise BadPuzzleError("puzzle solution does not meet the difficulty for either cookie secret")
        if not self._spend(seed):  # 3
            raise ReplayedInitError("puzzle already answered (replayed RESPONSE)")
        ck, h = _init_hash(self.S, r.ephemeral)  # 4
        ck, k = mix(ck, dh(self.s, r.ephemeral))
        s_i = aead_decrypt(k, ZERO_NONCE, r.enc_static, h)
        if s_i is None:
            raise AuthFailError("RESPONSE static key does not decrypt")
        h = sha256(h, r.enc_static)
        # the same work for a stranger as for a trusted key, then the refusal (step 4)
        try:
            ck, k = mix(ck, dh(self.s, s_i))
            proof = aead_decrypt(k, ZERO_NONCE, r.enc_proof, h)
        except LowOrderPointError:
            if s_i in self.trust:
                raise
            proof = None
        if s_i not in self.trust:
            raise UnknownPeerError(f"static key {s_i.hex()} is not in the trust store")
        if proof is None:
            raise AuthFailError("RESPONSE proof does not decrypt (wrong static key)")
        if proof != struct.pack(">QQ", r.timestamp, r.solution):
            raise AuthFailError("RESPONSE proof does not repeat the timestamp and solution")
        h = sha256(h, r.enc_proof)
        if r.timestamp <= self.last_init.get(s_i, -1):  # 5
            raise ReplayedInitError("INIT timestamp not newer than the last accepted one of this peer")
        self.last_init[s_i] = r.timestamp
        if not self.room():  # 6
            raise OverloadError("no room for another session")
        e_r = clamp(ephemeral_secret if ephemeral_secret is not None else self.rng(32))
        E_r = public_key(e_r)
        rid = bytes(rid) if rid is not None else self.rng(8)
        h = sha256(h, iid, rid, E_r)
        ck, _key = mix(ck, dh(e_r, r.ephemeral))
        ck, k = mix(ck, dh(e_r, s_i))
        confirm = aead_encrypt(k, ZERO_NONCE, b"", h)
        h = sha256(h, confirm)
        body = wire.HsAck(E_r, confirm).encode()
        pkt = seal_packet(self.mk, _hs_header(PacketType.ACK, iid + rid, now, len(body)), body)
        return pkt, HandshakeResult(transport_keys(ck, h), iid, rid, s_i, False)

    def close_packet(self, hdr: Header, code: int) -> bytes:
        """Handshake CLOSE answering `hdr` (MAC with our mk, as the initiator expects)."""
        body = wire.encode_close(code)
        return seal_packet(self.mk, _hs_header(PacketType.CLOSE, hdr.session_id, self.clock(), len(body)), body)
