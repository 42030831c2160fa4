"""pool_relay's accounting core: enrolments, the ledger, rate caps and control messages (docs/relay.md)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from pooltools.common.jsonmsg import Kind, Refusal
from pooltools.protocol.keys import encode_key
from pooltools.relay import control, door
from pooltools.relay import enrolment as en
from pooltools.relay.ledger import Ledger, LedgerError, MiB, Policy, Tier
from pooltools.relay.limits import TokenBucket, weighted_share
from pooltools.relay.tickets import TicketBook

K1, K2, K3 = (encode_key(bytes([i]) * 32) for i in (1, 2, 3))
HOUR = 3600.0


# ---- enrolments


def test_enrol_revoke_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "relay.json"
    e = en.load(path)
    assert (e.version, e.relay, e.peers) == (0, False, ())
    e = en.enrolled(e, en.peer(K1, "node1"))
    e = en.enrolled(e, en.peer(K3, "node3", accept=True))
    e = en.configured(e, relay=True)
    assert e.version == 3
    assert en.enrolled(e, en.peer(K1, "node1")) is e  # nothing to change
    assert en.configured(e, relay=True) is e
    en.save(path, e)
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    back = en.load(path)
    assert back == e
    assert back.lookup(bytes([3]) * 32).accept is True
    assert back.lookup(bytes([9]) * 32) is None
    gone = en.revoked(back, "node1")
    assert gone.version == 4 and [p.name for p in gone.peers] == ["node3"]
    assert en.revoked(gone, K1) is gone


def test_same_name_for_another_key_is_refused() -> None:
    e = en.enrolled(en.Enrolment(), en.peer(K1, "node1"))
    with pytest.raises(en.EnrolmentError, match="already enrolled for another key"):
        en.enrolled(e, en.peer(K2, "node1"))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "not a format-1"),
        ('{"format": 2, "version": 1, "peers": []}', "not a format-1"),
        ('{"format": 1, "version": -1, "peers": []}', '"version" must be a whole number'),
        ('{"format": 1, "version": true, "peers": []}', '"version" must be a whole number'),
        ('{"format": 1, "version": 1, "relay": "yes", "peers": []}', '"relay" must be true or false'),
        ('{"format": 1, "version": 1, "peers": {}}', '"peers" must be a list'),
        ('{"format": 1, "version": 1, "peers": [{"key": "x", "name": "a"}]}', r"peers\[0\]: peer key"),
        ('{"format": 1, "version": 1, "peers": [{"name": "a"}]}', "needs the strings key and name"),
        (
            json.dumps({"format": 1, "version": 1, "peers": [{"key": K1, "name": "a", "accept": 1}]}),
            '"accept" must be true or false',
        ),
        (
            json.dumps({"format": 1, "version": 1, "peers": [{"key": K1, "name": "a"}, {"key": K1, "name": "b"}]}),
            "enrolled twice",
        ),
        (
            json.dumps({"format": 1, "version": 1, "peers": [{"key": K1, "name": "a"}, {"key": K2, "name": "a"}]}),
            "used twice",
        ),
        (
            json.dumps({"format": 1, "version": 1, "peers": [{"key": K1, "name": "a b"}]}),
            "without spaces",
        ),
        ('{"format": 1, "version": 1, "peers": [], "limits": {"connections": 0}}', '"connections" must be'),
        ('{"format": 1, "version": 1, "peers": [], "limits": {"speed": 1}}', "unknown members speed"),
        (
            '{"format": 1, "version": 1, "peers": [], "limits": '
            '{"peer_bytes_per_second": 5000, "total_bytes_per_second": 4000}}',
            "peer_bytes_per_second is above",
        ),
        ("{not json", "not JSON"),
    ],
)
def test_bad_enrolment_files_are_refused_by_name(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "relay.json"
    path.write_text(doc)
    with pytest.raises(en.EnrolmentError, match=message) as info:
        en.load(path)
    assert str(path) in str(info.value)


# ---- the ledger


def test_a_new_peer_is_balanced_and_scores_follow_the_bytes() -> None:
    led = Ledger()
    now = 1_000_000 * HOUR
    assert led.score(K1, now) == 1.0 and led.tier(K1, now) is Tier.BALANCED
    led.add(K1, "contributed", 200 * MiB, now)  # (200 + 64) / 64
    assert led.score(K1, now) == pytest.approx(264 / 64)
    assert led.tier(K1, now) is Tier.PRIORITY
    led.add(K2, "consumed", 192 * MiB, now)  # 64 / 256
    assert led.tier(K2, now) is Tier.DEPRIORITISED
    assert led.totals(K2) == {"contributed": 0, "consumed": 192 * MiB}


@pytest.mark.parametrize(
    ("score", "tier"),
    [(2.0001, Tier.PRIORITY), (2.0, Tier.BALANCED), (1.0, Tier.BALANCED), (0.9999, Tier.LIGHT),
     (0.5, Tier.LIGHT), (0.4999, Tier.DEPRIORITISED), (0.0, Tier.DEPRIORITISED)],
)  # fmt: skip
def test_tier_bounds_belong_to_the_higher_tier(score: float, tier: Tier) -> None:
    assert Tier.of(score) is tier


def test_credit_decays_and_leaves_the_window() -> None:
    pol = Policy(half_life=24 * HOUR, window=7 * 24 * HOUR, start=MiB)
    led = Ledger(pol)
    t0 = 500_000 * HOUR
    led.add(K1, "contributed", 1000 * MiB, t0)
    fresh = led.decayed(K1, "contributed", t0)
    assert fresh == 1000 * MiB
    # one half-life after the bucket ended, half of it is left
    assert led.decayed(K1, "contributed", t0 + HOUR + 24 * HOUR) == pytest.approx(500 * MiB, rel=1e-3)
    later = t0 + 8 * 24 * HOUR
    assert led.decayed(K1, "contributed", later) == 0.0
    led.prune(later)
    assert K1 not in led.accounts  # hoarded credit is gone, and so is the empty account


def test_ledger_file_round_trip_and_refusals(tmp_path: Path) -> None:
    led = Ledger()
    now = 400_000 * HOUR
    led.add(K1, "contributed", 5, now)
    led.add(K1, "consumed", 7, now - HOUR)
    led.add(K2, "consumed", 9, now)
    path = tmp_path / "ledger.json"
    led.save(path, now)
    back = Ledger.load(path)
    assert back.accounts == led.accounts
    assert back.score(K1, now) == led.score(K1, now)
    assert Ledger.load(tmp_path / "none.json").accounts == {}
    for text, message in [
        ('{"format": 1, "bucket_seconds": 60, "peers": {}}', "bucket_seconds 60, this relay counts in 3600-second"),
        ('{"format": 1, "bucket_seconds": 3600, "peers": {"nokey": {}}}', "peers key 'nokey'"),
        (json.dumps({"format": 1, "bucket_seconds": 3600, "peers": {K1: {"consumed": [[1, -2]]}}}), "whole numbers"),
        (json.dumps({"format": 1, "bucket_seconds": 3600, "peers": {K1: {"given": []}}}), "must be an object of"),
        (json.dumps({"format": 1, "bucket_seconds": 3600, "peers": {K1: {"consumed": [[1, 2], [1, 3]]}}}), "twice"),
        ("[1]", "not a format-1"),
    ]:
        path.write_text(text)
        with pytest.raises(LedgerError, match=message):
            Ledger.load(path)


def test_ledger_refuses_nonsense_counts() -> None:
    led = Ledger()
    with pytest.raises(ValueError, match="kind"):
        led.add(K1, "given", 1, 0)
    with pytest.raises(ValueError, match="negative"):
        led.add(K1, "consumed", -1, 0)


# ---- rate caps and the busy relay's share


def test_token_bucket_caps_and_refills() -> None:
    b = TokenBucket(rate=1000, now=0.0)
    assert b.take(600, 0.0) == 600
    assert b.take(600, 0.0) == 400  # one second of burst, no more
    assert b.take(10, 0.0) == 0
    assert b.wait(500, 0.0) == pytest.approx(0.5)
    assert b.take(600, 0.25) == 250
    assert b.take(5000, 100.0) == 1000  # refill stops at the burst
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_weighted_share_follows_tiers_and_never_starves() -> None:
    demands = {
        "priority": (Tier.PRIORITY.weight, 10_000),
        "balanced": (Tier.BALANCED.weight, 10_000),
        "deprioritised": (Tier.DEPRIORITISED.weight, 10_000),
    }
    got = weighted_share(6500, demands)
    assert sum(got.values()) == 6500
    assert got["priority"] == 4000 and got["balanced"] == 2000 and got["deprioritised"] == 500
    # what a satisfied peer leaves goes to the others
    got = weighted_share(6500, {**demands, "priority": (4.0, 100)})
    assert got["priority"] == 100 and sum(got.values()) == 6500
    assert got["balanced"] == pytest.approx(4 * got["deprioritised"], abs=2)
    # a tiny capacity still reaches the deprioritised peer once the others are served
    got = weighted_share(3, {"a": (4.0, 1), "b": (0.5, 5)})
    assert got == {"a": 1, "b": 2}
    assert weighted_share(0, demands) == dict.fromkeys(demands, 0)
    with pytest.raises(ValueError):
        weighted_share(10, {"a": (0.0, 1)})


# ---- control messages


def test_control_requests_round_trip() -> None:
    a, c = bytes([1]) * 32, bytes([3]) * 32
    for req in (
        control.Open(c),
        control.Offer(a),
        control.Status(),
        control.Scores(c, ({"statement": "{}", "signature": "AA=="},)),
    ):
        assert control.decode_request(control.encode(req)) == req
    wire = control.encode(control.Open(c))
    assert wire[:2] == bytes([1, Kind.REQUEST])
    assert json.loads(wire[4:]) == {"op": "open", "to": encode_key(c)}


def test_ticket_reply_round_trip() -> None:
    t = control.Ticket(os.urandom(32), control.PORT, control.TICKET_SECONDS)
    assert control.decode_ticket(control.ticket_reply(t)) == t


def _req(header: object, fmt: int = 1, kind: int = Kind.REQUEST) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack(">BBH", fmt, kind, len(body)) + body


@pytest.mark.parametrize(
    ("msg", "code", "detail"),
    [
        (b"\x01\x01", "bad_request", "shorter than the 4-byte prefix"),
        (_req({"op": "open"}, fmt=2), "unsupported_format", "format 2"),
        (_req({"op": "open"}, kind=9), "bad_request", "unknown message kind 9"),
        (_req({"op": "open"}, kind=Kind.REPLY), "bad_request", "where a REQUEST was expected"),
        (struct.pack(">BBH", 1, 1, 50) + b"{}", "bad_request", "runs past"),
        (_req(["open"]), "bad_request", "not a JSON object"),
        (_req({"op": "open"}), "bad_request", "has no 'to'"),
        (_req({"op": "open", "to": "abc"}), "bad_request", "'to'"),
        (_req({"op": "offer", "from": 5}), "bad_request", "'from' must be a string"),
        (_req({"op": "fly"}), "unknown_op", "'fly'"),
        (_req({"op": "scores", "statements": []}), "bad_request", "has no 'signing_key'"),
        (_req({"op": "scores", "signing_key": "k", "statements": []}), "bad_request", "'signing_key'"),
        (_req({"op": "scores", "signing_key": K1, "statements": {}}), "bad_request", "'statements' must be"),
        (_req({"op": "scores", "signing_key": K1, "statements": [{"statement": "{}"}]}), "bad_request", "[0] must be"),
        (
            _req({"op": "scores", "signing_key": K1, "statements": [{"statement": 1, "signature": ""}]}),
            "bad_request",
            "strings",
        ),
        (_req({"op": "scores", "signing_key": K1, "statements": [{}] * 65}), "bad_request", "more than 64"),
    ],
)
def test_bad_control_requests_are_refused_by_name(msg: bytes, code: str, detail: str) -> None:
    with pytest.raises(Refusal) as info:
        control.decode_request(msg)
    assert info.value.code == code
    assert detail in info.value.detail
    assert info.value.reply()["error"] == code


def test_refusals_and_bad_tickets_reach_the_asker() -> None:
    refused = control.reply({"ok": False, "error": "not_accepted", "detail": "node3 does not accept this relay"})
    with pytest.raises(Refusal) as info:
        control.decode_reply(refused)
    assert info.value.code == "not_accepted" and "node3" in info.value.detail
    for bad in ("ab", "AB" * 32, "zz" * 32):
        msg = control.reply({"ok": True, "ticket": bad, "port": 9255, "expires_in": 10})
        with pytest.raises(Refusal, match="lower-case hexadecimal"):
            control.decode_ticket(msg)
    with pytest.raises(Refusal, match="'port'"):
        control.decode_ticket(control.reply({"ok": True, "ticket": "00" * 32, "port": 0, "expires_in": 10}))


# ---- tickets


def test_a_ticket_is_good_once_and_until_it_expires() -> None:
    book: TicketBook[str] = TicketBook(limit=2, lifetime=10)
    t = book.issue("A to C", now=100.0)
    assert t is not None and len(t) == control.TICKET_BYTES
    assert book.redeem(os.urandom(32), 101.0) is None  # unknown
    assert book.redeem(t, 101.0) == "A to C"
    assert book.redeem(t, 101.0) is None  # used
    late = book.issue("late", now=100.0)
    assert book.redeem(late, 110.0) is None  # expired at 110
    assert book.outstanding(110.0) == 0


def test_a_full_ticket_book_says_busy() -> None:
    book: TicketBook[int] = TicketBook(limit=2)
    assert book.issue(1, 0.0) and book.issue(2, 0.0)
    assert book.issue(3, 0.0) is None
    assert book.issue(3, 100.0) is not None  # the old ones expired


# ---- the door finds the destination from the INIT's header MAC


def _init_for(dest_static_secret: bytes) -> bytes:
    from pooltools.protocol.handshake import Initiator
    from pooltools.protocol.x25519 import public_key

    return Initiator(os.urandom(32), public_key(dest_static_secret)).create_init()


def test_door_finds_the_destination_among_candidates() -> None:
    from pooltools.protocol.x25519 import public_key

    secrets_ = [os.urandom(32) for _ in range(3)]
    keys = [public_key(s) for s in secrets_]
    packet = _init_for(secrets_[2])
    assert len(packet) == door.INIT_PACKET
    assert door.destination(packet, keys) == keys[2]
    assert door.destination(packet, keys[:2]) is None  # not a peer that names relays
    flipped = bytearray(packet)
    flipped[-1] ^= 1
    assert door.destination(bytes(flipped), keys) is None  # the MAC covers the payload


def test_door_refuses_what_is_not_an_init() -> None:
    packet = _init_for(os.urandom(32))
    with pytest.raises(door.NotAnInit, match="bytes, an INIT is 120"):
        door.destination(packet[:100], [])
    with pytest.raises(door.NotAnInit):
        door.destination(b"\xff" * door.INIT_PACKET, [])
    not_init = bytearray(packet)
    not_init[1] = 3  # the type byte: DATA
    with pytest.raises(door.NotAnInit):
        door.destination(bytes(not_init), [])
