"""POOL/1 key schedule, handshake and packet protection (docs/protocol.md sections 3 to 6).

SHA-256, HMAC and HKDF come from the standard library; X25519 and
ChaCha20-Poly1305 from the ``cryptography`` package, imported lazily so that
importing this module (or any other pooltools module) does not need it.

Every source of randomness and time is injectable (ephemerals, ids, clock,
cookie secrets) so that the test vectors are deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .wire import ErrorCode, Flag, Header, PacketType

NAME = b"POOL/1 X25519 ChaChaPoly SHA256"
LABEL_MAC = b"POOL/1 mac"
LABEL_MIX = b"POOL/1 mix"
LABEL_PUZZLE = b"POOL/1 puzzle"
LABEL_POW = b"POOL/1 pow"
LABEL_TRANSPORT = b"POOL/1 transport"
LABEL_REKEY = b"POOL/1 rekey"

CLOCK_SKEW_NS = 30 * 10**9
MAX_DIFFICULTY = 28
DEFAULT_DIFFICULTY = 16
COOKIE_ROTATE_NS = 120 * 10**9
REPLAY_WINDOW = 128
OKM_LEN = 176
SEQ_MASK = (1 << 48) - 1
ZERO_NONCE = bytes(12)

Clock = Callable[[], int]


# ---- errors ----


class PoolError(Exception):
    """Base of every refusal; `code` is the POOL error code it maps to."""

    code: ErrorCode = ErrorCode.NONE


class HandshakeError(PoolError):
    code = ErrorCode.AUTH_FAIL

    @property
    def wire_code(self) -> int:
        """Code a responder sends in a handshake CLOSE for this refusal, 0 for none.

        Only AUTH_FAIL (also for an unknown peer) and OVERLOAD are told; stale
        timestamps, bad puzzles, replays, bad framing and bad header HMACs are
        answered by closing the connection only.
        """
        if self.code in (ErrorCode.AUTH_FAIL, ErrorCode.UNKNOWN_PEER) and not isinstance(self, BadMacError):
            return ErrorCode.AUTH_FAIL
        if self.code == ErrorCode.OVERLOAD:
            return ErrorCode.OVERLOAD
        return 0


class BadMacError(HandshakeError):
    """Handshake header HMAC does not verify (sender does not know our static key)."""

    code = ErrorCode.AUTH_FAIL


class StaleTimestampError(HandshakeError):
    code = ErrorCode.STALE_TIMESTAMP


class BadPuzzleError(HandshakeError):
    code = ErrorCode.BAD_PUZZLE


class AuthFailError(HandshakeError):
    code = ErrorCode.AUTH_FAIL


class LowOrderPointError(AuthFailError):
    """An X25519 result was all zero."""


class UnknownPeerError(HandshakeError):
    code = ErrorCode.UNKNOWN_PEER


class ReplayedInitError(HandshakeError):
    code = ErrorCode.REPLAY


class OverloadError(HandshakeError):
    code = ErrorCode.OVERLOAD


class ChallengeTooHardError(HandshakeError):
    code = ErrorCode.TIMEOUT


class ProtocolError(HandshakeError):
    """A packet of the wrong type or with wrong fields for the current step."""

    code = ErrorCode.MALFORMED


class HandshakeClosedError(HandshakeError):
    """The responder answered with a handshake CLOSE carrying `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"responder closed the handshake: {wire.code_name(code)}")
        self.code = code  # type: ignore[assignment]


class TransportError(PoolError):
    """A transport packet that is dropped (session stays up)."""


class BadHmacError(TransportError):
    code = ErrorCode.AUTH_FAIL


class ReplayError(TransportError):
    code = ErrorCode.SEQ_INVALID


class DecryptError(TransportError):
    code = ErrorCode.DECRYPT_FAIL


class BadPlaintextError(TransportError):
    """An authenticated plaintext of the wrong size for its type (dropped, MALFORMED)."""

    code = ErrorCode.MALFORMED


class RekeyError(PoolError):
    code = ErrorCode.REKEY_FAIL


# ---- primitives ----


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    m = hmac.new(key, digestmod=hashlib.sha256)
    for p in parts:
        m.update(p)
    return m.digest()


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256, extract then expand."""
    if not 0 < length <= 255 * 32:
        raise ValueError(f"HKDF length {length} out of range")
    prk = hmac_sha256(salt if salt else bytes(32), ikm)
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac_sha256(prk, t, info, bytes([i]))
        out += t
        i += 1
    return out[:length]


def mix(ck: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(ck, dh_out, LABEL_MIX, 64)
    return okm[:32], okm[32:]


def _x() -> Any:
    from cryptography.hazmat.primitives.asymmetric import x25519 as xc

    return xc


def dh(private: bytes, public: bytes) -> bytes:
    """X25519; LowOrderPointError on an all-zero result."""
    xc = _x()
    try:
        out = xc.X25519PrivateKey.from_private_bytes(bytes(private)).exchange(
            xc.X25519PublicKey.from_public_bytes(bytes(public))
        )
    except ValueError as exc:  # cryptography refuses all-zero results itself
        raise LowOrderPointError("X25519 result is all zero (low-order point)") from exc
    if not any(out):
        raise LowOrderPointError("X25519 result is all zero (low-order point)")
    return out


def public_key(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = _x().X25519PrivateKey.from_private_bytes(bytes(private))
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_keypair() -> tuple[bytes, bytes]:
    from .x25519 import clamp

    secret = clamp(os.urandom(32))
    return secret, public_key(secret)


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, ad)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    """Plaintext, or None if the tag does not verify."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        return None


def mac_key(static_public: bytes) -> bytes:
    """mk: the handshake header MAC key of packets addressed to `static_public`'s owner."""
    return sha256(LABEL_MAC, static_public)


def packet_mac(key: bytes, header: Header, payload: bytes) -> bytes:
    return hmac_sha256(key, header.encode_unmacced(), payload)


def seal_packet(key: bytes, header: Header, payload: bytes) -> bytes:
    """Header (with payload_len set) || payload, HMAC filled in with `key`."""
    if header.payload_len != len(payload):
        raise ValueError(f"payload_len {header.payload_len} != {len(payload)} payload bytes")
    return header.with_mac(packet_mac(key, header, payload)).encode() + payload


def check_mac(key: bytes, header: Header, payload: bytes) -> bool:
    return hmac.compare_digest(packet_mac(key, header, payload), header.mac)


def split_packet(packet: bytes) -> tuple[Header, bytes]:
    """Decode a complete packet held in memory (framing checked)."""
    hdr = Header.decode(packet)
    body = packet[wire.HEADER_LEN :]
    if len(body) != hdr.payload_len:
        raise wire.MalformedError("payload length", f"{hdr.payload_len} announced, {len(body)} present")
    return hdr, bytes(body)


# ---- puzzle ----


def puzzle_seed(cookie_secret: bytes, ip: bytes, port: int, iid: bytes, e_i: bytes, ts: int) -> bytes:
    if len(ip) != 16:
        raise ValueError(f"ip must be 16 bytes (IPv4 as ::ffff:a.b.c.d), got {len(ip)}")
    return hmac_sha256(cookie_secret, LABEL_PUZZLE, ip, struct.pack(">H", port), iid, e_i, struct.pack(">Q", ts))


def puzzle_ok(seed: bytes, solution: int, difficulty: int) -> bool:
    if difficulty == 0:
        return True
    d = sha256(LABEL_POW, seed, struct.pack(">Q", solution))
    return int.from_bytes(d, "big") >> (256 - difficulty) == 0


def puzzle_solve(seed: bytes, difficulty: int, start: int = 0) -> int:
    """Smallest solution >= start (the vectors use start 0)."""
    if difficulty > MAX_DIFFICULTY:
        raise ChallengeTooHardError(f"puzzle difficulty {difficulty} above {MAX_DIFFICULTY}")
    prefix = hashlib.sha256(LABEL_POW + seed)
    shift = 256 - difficulty
    n = start
    while True:
        h = prefix.copy()
        h.update(n.to_bytes(8, "big"))
        if difficulty == 0 or int.from_bytes(h.digest(), "big") >> shift == 0:
            return n
        n = (n + 1) & 0xFFFFFFFFFFFFFFFF


def ip_bytes(host: str) -> bytes:
    """16-byte form of an IP address string (IPv4 as ::ffff:a.b.c.d)."""
    import ipaddress

    a = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(a, ipaddress.IPv4Address):
        return bytes(10) + b"\xff\xff" + a.packed
    return a.packed


# ---- transport keys ----


@dataclass(frozen=True)
class DirectionKeys:
    key: bytes
    mac: bytes


@dataclass(frozen=True)
class TransportKeys:
    """The 176-byte T split as section 3 says (roles of the original handshake)."""

    okm: bytes = field(repr=False)

    @property
    def i2r(self) -> DirectionKeys:
        return DirectionKeys(self.okm[0:32], self.okm[32:64])

    @property
    def r2i(self) -> DirectionKeys:
        return DirectionKeys(self.okm[64:96], self.okm[96:128])

    @property
    def seq_i2r(self) -> int:
        return int.from_bytes(self.okm[128:136], "big") & SEQ_MASK

    @property
    def seq_r2i(self) -> int:
        return int.from_bytes(self.okm[136:144], "big") & SEQ_MASK

    @property
    def rk(self) -> bytes:
        return self.okm[144:176]


def transport_keys(ck: bytes, h: bytes) -> TransportKeys:
    return TransportKeys(hkdf(ck, h, LABEL_TRANSPORT, OKM_LEN))


def rekey_keys(rk: bytes, dh_out: bytes) -> TransportKeys:
    return TransportKeys(hkdf(rk, dh_out, LABEL_REKEY, OKM_LEN))


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
        from .x25519 import clamp

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
        h = sha256(self.h, ack.ephemeral)
        ck, _ = mix(self.ck, dh(self.e, ack.ephemeral))
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
        self.last_init: dict[bytes, int] = {}

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
        if not any(
            puzzle_ok(puzzle_seed(c, ip, port, iid, r.ephemeral, r.timestamp), r.solution, self.difficulty)
            for c in self.cookies
        ):  # 2
            raise BadPuzzleError("puzzle solution does not meet the difficulty for either cookie secret")
        ck, h = _init_hash(self.S, r.ephemeral)  # 3
        ck, k = mix(ck, dh(self.s, r.ephemeral))
        s_i = aead_decrypt(k, ZERO_NONCE, r.enc_static, h)
        if s_i is None:
            raise AuthFailError("RESPONSE static key does not decrypt")
        h = sha256(h, r.enc_static)
        if s_i not in self.trust:
            raise UnknownPeerError(f"static key {s_i.hex()} is not in the trust store")
        ck, k = mix(ck, dh(self.s, s_i))
        proof = aead_decrypt(k, ZERO_NONCE, r.enc_proof, h)
        if proof is None:
            raise AuthFailError("RESPONSE proof does not decrypt (wrong static key)")
        if proof != struct.pack(">QQ", r.timestamp, r.solution):
            raise AuthFailError("RESPONSE proof does not repeat the timestamp and solution")
        h = sha256(h, r.enc_proof)
        if r.timestamp <= self.last_init.get(s_i, -1):  # 4
            raise ReplayedInitError("INIT timestamp not newer than the last accepted one of this peer")
        self.last_init[s_i] = r.timestamp
        if not self.room():  # 5
            raise OverloadError("no room for another session")
        from .x25519 import clamp

        e_r = clamp(ephemeral_secret if ephemeral_secret is not None else self.rng(32))
        E_r = public_key(e_r)
        rid = bytes(rid) if rid is not None else self.rng(8)
        h = sha256(h, E_r)
        ck, _ = mix(ck, dh(e_r, r.ephemeral))
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


# ---- transport ----


class ReplayWindow:
    """Sliding window of REPLAY_WINDOW sequence numbers above a start value."""

    def __init__(self, start: int, size: int = REPLAY_WINDOW) -> None:
        self.size = size
        self.top = start  # everything at or below start counts as seen: the first valid is start + 1
        self.bits = (1 << size) - 1

    def check(self, seq: int) -> bool:
        if seq > self.top:
            return True
        off = self.top - seq
        return off < self.size and not (self.bits >> off) & 1

    def update(self, seq: int) -> None:
        if seq > self.top:
            shift = seq - self.top
            self.bits = ((self.bits << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.top = seq
        else:
            self.bits |= 1 << (self.top - seq)


def nonce_for(mac: bytes, seq: int) -> bytes:
    return mac[:4] + struct.pack(">Q", seq)


def protect(
    keys: DirectionKeys,
    ptype: int,
    plaintext: bytes,
    *,
    seq: int,
    ack: int,
    session_id: bytes,
    timestamp: int,
    channel: int = 0,
    flags: int = 0,
) -> bytes:
    """A complete transport packet (section 4)."""
    ct = aead_encrypt(keys.key, nonce_for(keys.mac, seq), plaintext, b"")
    hdr = Header(
        type=ptype,
        flags=flags | Flag.ENCRYPTED,
        seq=seq,
        ack=ack,
        session_id=session_id,
        timestamp=timestamp,
        payload_len=len(ct),
        channel=channel,
    )
    return seal_packet(keys.mac, hdr, ct)


def unprotect(keys: DirectionKeys, hdr: Header, payload: bytes, window: ReplayWindow) -> bytes:
    """Plaintext of a transport packet: HMAC -> replay window -> decrypt; updates the window."""
    if not check_mac(keys.mac, hdr, payload):
        raise BadHmacError(f"seq {hdr.seq}: header HMAC does not verify")
    if not hdr.flags & Flag.ENCRYPTED:
        raise BadHmacError(f"seq {hdr.seq}: ENCRYPTED flag missing")
    if not window.check(hdr.seq):
        raise ReplayError(f"seq {hdr.seq}: replayed or outside the window (top {window.top})")
    pt = aead_decrypt(keys.key, nonce_for(keys.mac, hdr.seq), payload, b"")
    if pt is None:
        raise DecryptError(f"seq {hdr.seq}: AEAD tag does not verify")
    window.update(hdr.seq)
    return pt


# ---- rekey state machine (section 5) ----


class RekeyState:
    IDLE = "idle"
    INIT_SENT = "init-sent"
    REPLY_SENT = "reply-sent"


@dataclass
class RekeyAction:
    """What the session must do after a rekey event, in this order.

    send: REKEY plaintext to send under the *current* send keys (or None);
    new_send: keys to switch sending to right after that packet (or None);
    new_recv: keys to receive with from the next packet on (or None).
    """

    send: wire.Rekey | None = None
    new_send: DirectionKeys | None = None
    new_recv: DirectionKeys | None = None
    epoch_done: int | None = None


class Rekeyer:
    """Rekey bookkeeping of one session: epochs, ephemerals and the tie-break."""

    def __init__(
        self,
        rk: bytes,
        initiator: bool,
        own_id: bytes,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.rk = rk
        self.initiator = initiator
        self.own_id = int.from_bytes(own_id, "big")
        self.peer_id: int | None = None
        self.epoch = 0
        self.state = RekeyState.IDLE
        self.rng = rng
        self._e = b""
        self._pending: TransportKeys | None = None

    def set_peer_id(self, peer_id: bytes) -> None:
        self.peer_id = int.from_bytes(peer_id, "big")

    def _wins(self) -> bool:
        assert self.peer_id is not None
        if self.own_id == self.peer_id:
            return self.initiator
        return self.own_id < self.peer_id

    def _orient(self, t: TransportKeys) -> tuple[DirectionKeys, DirectionKeys]:
        return (t.i2r, t.r2i) if self.initiator else (t.r2i, t.i2r)

    def start(self) -> wire.Rekey | None:
        """REKEY INIT to send (under current keys), or None if a rekey is already running."""
        if self.state != RekeyState.IDLE:
            return None
        from .x25519 import clamp

        self._e = clamp(self.rng(32))
        self.state = RekeyState.INIT_SENT
        return wire.Rekey(wire.RekeyKind.INIT, self.epoch + 1, public_key(self._e))

    def on_rekey(self, msg: wire.Rekey) -> RekeyAction:
        nxt = self.epoch + 1
        if msg.epoch != nxt:
            raise RekeyError(f"REKEY {wire.RekeyKind(msg.kind).name} for epoch {msg.epoch}, expected {nxt}")
        if msg.kind == wire.RekeyKind.INIT:
            if self.state == RekeyState.INIT_SENT:
                if self._wins():
                    return RekeyAction()  # the peer abandons its INIT and answers ours
                self._e = b""  # abandon ours
            elif self.state != RekeyState.IDLE:
                raise RekeyError("REKEY INIT while a reply is outstanding")
            from .x25519 import clamp

            e_b = clamp(self.rng(32))
            t = rekey_keys(self.rk, dh(e_b, msg.ephemeral))
            self._pending = t
            self.state = RekeyState.REPLY_SENT
            send, _ = self._orient(t)
            return RekeyAction(send=wire.Rekey(wire.RekeyKind.REPLY, nxt, public_key(e_b)), new_send=send)
        if msg.kind == wire.RekeyKind.REPLY:
            if self.state != RekeyState.INIT_SENT:
                raise RekeyError("REKEY REPLY without our INIT")
            t = rekey_keys(self.rk, dh(self._e, msg.ephemeral))
            self._e = b""
            send, recv = self._orient(t)
            self._finish(t)
            return RekeyAction(
                send=wire.Rekey(wire.RekeyKind.SWITCH, nxt), new_send=send, new_recv=recv, epoch_done=nxt
            )
        # SWITCH
        if self.state != RekeyState.REPLY_SENT or self._pending is None:
            raise RekeyError("REKEY SWITCH without our REPLY")
        t = self._pending
        _, recv = self._orient(t)
        self._finish(t)
        return RekeyAction(new_recv=recv, epoch_done=nxt)

    def _finish(self, t: TransportKeys) -> None:
        self.rk = t.rk
        self.epoch += 1
        self.state = RekeyState.IDLE
        self._pending = None


# ---- journal (section 6) ----


def journal_hash(
    prev_hash: bytes,
    seq: int,
    timestamp_ns: int,
    type_: int,
    code: int,
    config_version: int,
    peer_public_key: bytes = bytes(32),
    detail: bytes = b"",
) -> bytes:
    if len(prev_hash) != 32 or len(peer_public_key) != 32:
        raise ValueError("prev_hash and peer_public_key must be 32 bytes")
    d = bytes(detail).split(b"\0", 1)[0]
    return sha256(
        prev_hash,
        struct.pack(">QQHHI", seq, timestamp_ns, type_, code, config_version),
        peer_public_key,
        d,
    )
