"""POOL/1 constants and building blocks (docs/protocol.md sections 2 to 6).

SHA-256 and HMAC come from the standard library; X25519, HKDF and
ChaCha20-Poly1305 from ``cryptography``, imported lazily so that importing
this module does not need it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from . import wire, x25519
from .errors import ChallengeTooHardError, LowOrderPointError
from .wire import Header

NAME = b"POOL/1 X25519 ChaChaPoly SHA256"
LABEL_MAC = b"POOL/1 mac"
LABEL_MIX = b"POOL/1 mix"
LABEL_PUZZLE = b"POOL/1 puzzle"
LABEL_POW = b"POOL/1 pow"
LABEL_TRANSPORT = b"POOL/1 transport"
LABEL_REKEY = b"POOL/1 rekey"

CLOCK_SKEW_NS = 30 * 10**9
MAX_DIFFICULTY = 20
DEFAULT_DIFFICULTY = 16
COOKIE_ROTATE_NS = 120 * 10**9
OKM_LEN = 176
SEQ_MASK = (1 << 48) - 1
ZERO_NONCE = bytes(12)


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
    """RFC 5869 HKDF-SHA256, extract then expand (an empty salt is 32 zero bytes)."""
    if not 0 < length <= 255 * 32:
        raise ValueError(f"HKDF length {length} out of range")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


def mix(ck: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(ck, dh_out, LABEL_MIX, 64)
    return okm[:32], okm[32:]


def dh(private: bytes, public: bytes) -> bytes:
    """X25519; LowOrderPointError on an all-zero result."""
    try:
        return x25519.x25519(private, public)
    except ValueError as exc:
        raise LowOrderPointError("X25519 result is all zero (low-order point)") from exc


public_key = x25519.public_key


def generate_keypair() -> tuple[bytes, bytes]:
    secret = x25519.generate_private()
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
