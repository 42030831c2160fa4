"""X25519 (on cryptography) against RFC 7748, key text form, POOL addresses."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

import pytest
from pooltools.protocol import address, keys, x25519

# RFC 7748 section 5.2
RFC5_2 = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]
# RFC 7748 section 6.1
ALICE_PRIV = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
ALICE_PUB = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
BOB_PRIV = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
BOB_PUB = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"

LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (2**255 - 19 - 1).to_bytes(32, "little"),
    (2**255 - 19).to_bytes(32, "little"),
    (2**255 - 19 + 1).to_bytes(32, "little"),
]


@pytest.mark.parametrize(("k", "u", "out"), RFC5_2)
def test_rfc7748_5_2(k: str, u: str, out: str) -> None:
    assert x25519.x25519(bytes.fromhex(k), bytes.fromhex(u)).hex() == out


def test_rfc7748_6_1() -> None:
    a, b = bytes.fromhex(ALICE_PRIV), bytes.fromhex(BOB_PRIV)
    assert x25519.public_key(a).hex() == ALICE_PUB
    assert x25519.public_key(b).hex() == BOB_PUB
    assert x25519.x25519(a, bytes.fromhex(BOB_PUB)).hex() == SHARED
    assert x25519.x25519(b, bytes.fromhex(ALICE_PUB)).hex() == SHARED


def test_rfc7748_iterated_1000() -> None:
    k = u = (9).to_bytes(32, "little")
    for i in range(1000):
        k, u = x25519.x25519(k, u), k
        if i == 0:
            assert k.hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


@pytest.mark.parametrize("point", LOW_ORDER)
def test_low_order_points_raise(point: bytes) -> None:
    with pytest.raises(ValueError, match="low-order"):
        x25519.x25519(bytes.fromhex(ALICE_PRIV), point)


def test_generate_private_is_clamped_and_random() -> None:
    a, b = x25519.generate_private(), x25519.generate_private()
    assert a != b
    for k in (a, b):
        assert len(k) == 32 and k[0] & 7 == 0 and k[31] & 0x80 == 0 and k[31] & 0x40


def test_wrong_lengths() -> None:
    with pytest.raises(ValueError, match="private key must be 32 bytes"):
        x25519.public_key(b"\x01" * 31)
    with pytest.raises(ValueError, match="public key must be 32 bytes"):
        x25519.x25519(bytes(32), b"\x09")


# ---- keys ----


def test_key_round_trip() -> None:
    raw = bytes(range(1, 33))
    text = keys.encode_key(raw)
    assert len(text) == 44 and text == base64.b64encode(raw).decode()
    assert keys.decode_key(text) == raw
    assert keys.decode_key(f"  {text}\n") == raw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("AAAA", "44 base64 characters"),
        ("!" * 43 + "=", "not valid base64"),
        (base64.b64encode(bytes(32)).decode(), "all zero"),
        (base64.b64encode(bytes(33)).decode()[:44], "not valid base64|32 bytes"),
    ],
)
def test_decode_key_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        keys.decode_key(text)


def test_encode_key_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        keys.encode_key(b"short")


# ---- address ----


def test_address_layout() -> None:
    pub = bytes.fromhex(ALICE_PUB)
    addr = address.pool_address(pub, org_id=0x1122, segment_id=7)
    assert len(addr) == 32
    assert addr[:4] == b"\x00\x01\x00\x01"
    assert struct.unpack(">QQ", addr[4:20]) == (0x1122, 7)
    assert addr[20:28] == hashlib.sha256(pub).digest()[:8]
    assert addr[28:] == struct.pack(">I", zlib.crc32(addr[:28]))
    assert address.address_fields(addr) == (0x1122, 7, addr[20:28])


def test_address_text_round_trip() -> None:
    addr = address.pool_address(bytes.fromhex(BOB_PUB))
    text = address.format_address(addr)
    groups = text.split(":")
    assert len(groups) == 8 and all(len(g) == 8 for g in groups)
    assert groups[0] == "00010001"
    assert text == text.lower()
    assert address.parse_address(text) == addr
    assert address.parse_address(text.upper()) == addr


def test_parse_address_errors() -> None:
    text = address.format_address(address.pool_address(bytes.fromhex(BOB_PUB)))
    with pytest.raises(ValueError, match="8 groups"):
        address.parse_address(text[:-1])
    bad_crc = text[:-1] + ("0" if text[-1] != "0" else "1")
    with pytest.raises(ValueError, match="checksum"):
        address.parse_address(bad_crc)
    with pytest.raises(ValueError, match="type/version"):
        address.parse_address("00020001" + text[8:])


def test_pool_address_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        address.pool_address(b"x")
    with pytest.raises(ValueError, match="org_id"):
        address.pool_address(bytes(32), org_id=-1)
    with pytest.raises(ValueError, match="segment_id"):
        address.pool_address(bytes(32), segment_id=2**64)
