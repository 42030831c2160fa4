"""In-process handshake, every refusal path, transport protection, rekey and journal hash."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from pooltools.protocol import noise, wire
from pooltools.protocol.session import Session
from pooltools.protocol.wire import ErrorCode, PacketType

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors"
T0 = 1_764_000_000_000_000_000
IP = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
PORT = 50000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def keypair() -> tuple[bytes, bytes]:
    return noise.generate_keypair()


@pytest.fixture
def parties() -> dict:
    s_i, S_i = keypair()
    s_r, S_r = keypair()
    clock = Clock()
    res = noise.Responder(s_r, [S_i], difficulty=8, clock=clock)
    return {"s_i": s_i, "S_i": S_i, "s_r": s_r, "S_r": S_r, "clock": clock, "res": res}


def run(p: dict, ini: noise.Initiator | None = None, *, solution: int | None = None):
    ini = ini or noise.Initiator(p["s_i"], p["S_r"], clock=p["clock"])
    res: noise.Responder = p["res"]
    ch = res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)
    ini.on_challenge(*noise.split_packet(ch))
    resp = ini.create_response(solution)
    ack, r_result = res.on_response(*noise.split_packet(resp), IP, PORT)
    return ini.on_ack(*noise.split_packet(ack)), r_result


# ---- primitives against published values ----


def test_rfc_vectors() -> None:
    v = json.loads((VECTORS / "rfc.json").read_text())
    h = v["hkdf_sha256"]
    okm = noise.hkdf(bytes.fromhex(h["salt"]), bytes.fromhex(h["ikm"]), bytes.fromhex(h["info"]), h["length"])
    assert okm.hex() == h["okm"]
    m = v["hmac_sha256"]
    assert noise.hmac_sha256(bytes.fromhex(m["key"]), bytes.fromhex(m["data"])).hex() == m["mac"]
    x = v["x25519"]
    assert noise.dh(bytes.fromhex(x["alice_secret"]), bytes.fromhex(x["bob_public"])).hex() == x["shared"]
    c = v["chacha20poly1305"]
    ct = noise.aead_encrypt(
        bytes.fromhex(c["key"]), bytes.fromhex(c["nonce"]), bytes.fromhex(c["plaintext"]), bytes.fromhex(c["aad"])
    )
    assert ct.hex() == c["ciphertext"]


def test_handshake_vector_replays_step_by_step() -> None:
    """The responder side of the vector, checked against the stored packets."""
    v = json.loads((VECTORS / "handshake.json").read_text())
    b = {k: bytes.fromhex(val) for k, val in v.items() if isinstance(val, str) and k != "comment"}
    clock = Clock(v["timestamp"])
    res = noise.Responder(
        b["responder_static_secret"],
        [b["initiator_static_public"]],
        difficulty=v["difficulty"],
        clock=clock,
        cookie_secret=b["cookie_secret"],
    )
    ch = res.on_init(*noise.split_packet(b["init_packet"]), b["client_ip"], v["client_port"])
    assert ch == b["challenge_packet"]
    ack, result = res.on_response(
        *noise.split_packet(b["response_packet"]),
        b["client_ip"],
        v["client_port"],
        ephemeral_secret=b["responder_ephemeral_secret"],
        rid=b["rid"],
    )
    assert ack == b["ack_packet"]
    assert result.keys.okm == b["transport_okm"]
    assert result.peer_static == b["initiator_static_public"]
    sess = Session(result, clock=clock)
    got = sess.open(*noise.split_packet(b["data_packet"]))
    assert got.type == PacketType.DATA and got.plaintext == b["data_plaintext"]
    assert got.header.seq == v["data_seq"] and got.header.channel == v["data_channel"]
    assert got.header.timestamp == v["data_timestamp"]
    assert noise.puzzle_ok(b["puzzle_seed"], v["solution"], v["difficulty"])
    assert not any(noise.puzzle_ok(b["puzzle_seed"], s, v["difficulty"]) for s in range(v["solution"]))


def test_rekey_and_journal_and_address_vectors() -> None:
    r = json.loads((VECTORS / "rekey.json").read_text())
    assert noise.rekey_keys(bytes.fromhex(r["rk"]), bytes.fromhex(r["dh"])).okm.hex() == r["okm"]
    j = json.loads((VECTORS / "journal.json").read_text())
    h = noise.journal_hash(
        bytes.fromhex(j["prev_hash"]),
        j["seq"],
        j["timestamp_ns"],
        j["type"],
        j["code"],
        j["config_version"],
        bytes.fromhex(j["peer_public_key"]),
        bytes.fromhex(j["detail_hex"]),
    )
    assert h.hex() == j["hash"]
    from pooltools.protocol.address import pool_address

    a = json.loads((VECTORS / "address.json").read_text())
    assert pool_address(bytes.fromhex(a["public_key"]), a["org_id"], a["segment_id"]).hex() == a["address"]


# ---- full handshake ----


def test_full_handshake_and_data(parties: dict) -> None:
    ri, rr = run(parties)
    assert ri.keys.okm == rr.keys.okm and len(ri.keys.okm) == 176
    assert ri.session_id == rr.session_id and ri.rid != bytes(8)
    assert rr.peer_static == parties["S_i"] and ri.peer_static == parties["S_r"]
    a, b = Session(ri, clock=parties["clock"]), Session(rr, clock=parties["clock"])
    for i in range(5):
        pkt = a.seal(PacketType.DATA, b"hello %d" % i, channel=3)
        got = b.open(*noise.split_packet(pkt))
        assert got.plaintext == b"hello %d" % i and got.header.channel == 3
        back = b.seal(PacketType.DATA, got.plaintext[::-1])
        assert a.open(*noise.split_packet(back)).plaintext == got.plaintext[::-1]
    assert a.send_seq == ri.keys.seq_i2r + 5 and b.highest_recv == a.send_seq
    pkt = b.seal(PacketType.DATA, b"x")
    assert wire.Header.decode(pkt).ack == a.send_seq


def test_each_handshake_has_fresh_keys(parties: dict) -> None:
    k1 = run(parties)[0].keys.okm
    parties["clock"].now += 1
    k2 = run(parties)[0].keys.okm
    assert k1 != k2


# ---- refusals ----


def test_unknown_peer(parties: dict) -> None:
    stranger, _ = keypair()
    with pytest.raises(noise.UnknownPeerError) as e:
        run(parties, noise.Initiator(stranger, parties["S_r"], clock=parties["clock"]))
    assert e.value.code == ErrorCode.UNKNOWN_PEER


def test_wrong_static_key_presented(parties: dict) -> None:
    """Claims a trusted S_i but holds another secret: the proof does not decrypt."""

    class Impostor(noise.Initiator):
        def create_response(self, solution: int | None = None) -> bytes:
            real = self.S
            self.S = parties["S_i"]  # claim the trusted key
            try:
                return super().create_response(solution)
            finally:
                self.S = real

    other, _ = keypair()
    with pytest.raises(noise.AuthFailError) as e:
        run(parties, Impostor(other, parties["S_r"], clock=parties["clock"]))
    assert e.value.code == ErrorCode.AUTH_FAIL


def test_wrong_responder_key_fails_hmac(parties: dict) -> None:
    _, other_pub = keypair()
    ini = noise.Initiator(parties["s_i"], other_pub, clock=parties["clock"])
    with pytest.raises(noise.BadMacError):
        parties["res"].on_init(*noise.split_packet(ini.create_init()), IP, PORT)


def test_replayed_init(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ch = res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)
    ini.on_challenge(*noise.split_packet(ch))
    resp = ini.create_response()
    res.on_response(*noise.split_packet(resp), IP, PORT)
    with pytest.raises(noise.ReplayedInitError, match="puzzle already answered") as e:
        res.on_response(*noise.split_packet(resp), IP, PORT)
    assert e.value.code == ErrorCode.REPLAY


def test_replayed_response_costs_no_dh(parties: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 3 refuses a RESPONSE whose puzzle was answered before doing any DH; one the
    responder has forgotten (SPENT_MAX later seeds) is still refused, at step 5."""
    from pooltools.protocol import handshake

    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    resp = ini.create_response()
    res.on_response(*noise.split_packet(resp), IP, PORT)
    calls = []
    real_dh = handshake.dh
    monkeypatch.setattr(handshake, "dh", lambda *a: calls.append(a) or real_dh(*a))
    with pytest.raises(noise.ReplayedInitError, match="puzzle already answered"):
        res.on_response(*noise.split_packet(resp), IP, PORT)
    assert calls == []
    for i in range(handshake.SPENT_MAX):
        assert res._spend(i.to_bytes(32, "big"))
    with pytest.raises(noise.ReplayedInitError, match="INIT timestamp not newer"):
        res.on_response(*noise.split_packet(resp), IP, PORT)
    assert calls, "the forgotten seed went on to the DH and the timestamp guard"


@pytest.mark.parametrize("skew", [31 * 10**9, -31 * 10**9])
def test_stale_timestamp(parties: dict, skew: int) -> None:
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=Clock(T0 + skew))
    with pytest.raises(noise.StaleTimestampError) as e:
        parties["res"].on_init(*noise.split_packet(ini.create_init()), IP, PORT)
    assert e.value.code == ErrorCode.STALE_TIMESTAMP


def test_stale_response(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    resp = ini.create_response()
    parties["clock"].now += 31 * 10**9
    with pytest.raises(noise.StaleTimestampError):
        res.on_response(*noise.split_packet(resp), IP, PORT)


def test_wrong_puzzle_solution(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ch = ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    bad = next(s for s in range(1000) if not noise.puzzle_ok(ch.seed, s, ch.difficulty))
    with pytest.raises(noise.BadPuzzleError) as e:
        res.on_response(*noise.split_packet(ini.create_response(bad)), IP, PORT)
    assert e.value.code == ErrorCode.BAD_PUZZLE


def test_puzzle_bound_to_address(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    resp = ini.create_response()
    sol = wire.Response.decode(noise.split_packet(resp)[1]).solution

    def solves(port: int) -> bool:
        return any(
            noise.puzzle_ok(noise.puzzle_seed(c, IP, port, ini.iid, ini.E, ini.ts), sol, res.difficulty)
            for c in res.cookies
        )

    other = next(p for p in range(PORT + 1, PORT + 100) if not solves(p))  # 1 in 256 also solves
    with pytest.raises(noise.BadPuzzleError):
        res.on_response(*noise.split_packet(resp), IP, other)


def test_previous_cookie_accepted_then_expires(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    resp = ini.create_response()
    res.cookies = [b"\x01" * 32, res.cookies[0]]  # one rotation: previous still valid
    res.on_response(*noise.split_packet(resp), IP, PORT)
    ini2 = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    parties["clock"].now += 1
    ini2.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini2.create_init()), IP, PORT)))
    resp2 = ini2.create_response()
    sol = wire.Response.decode(noise.split_packet(resp2)[1]).solution
    fresh = next(
        [bytes([i]) * 32, bytes([i + 1]) * 32]
        for i in range(2, 200, 2)
        if not any(
            noise.puzzle_ok(noise.puzzle_seed(bytes([j]) * 32, IP, PORT, ini2.iid, ini2.E, ini2.ts), sol, 8)
            for j in (i, i + 1)
        )
    )
    res.cookies = fresh  # two rotations: the secret that made the seed is gone
    with pytest.raises(noise.BadPuzzleError):
        res.on_response(*noise.split_packet(resp2), IP, PORT)


def test_cookie_rotates_every_120_s(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    first = res.cookies[0]
    parties["clock"].now += 121 * 10**9
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)
    assert res.cookies[1] == first and res.cookies[0] != first


def test_overload(parties: dict) -> None:
    parties["res"].room = lambda: False
    with pytest.raises(noise.OverloadError) as e:
        run(parties)
    assert e.value.code == ErrorCode.OVERLOAD


def test_challenge_too_hard(parties: dict) -> None:
    parties["res"].difficulty = noise.MAX_DIFFICULTY + 1
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ch = parties["res"].on_init(*noise.split_packet(ini.create_init()), IP, PORT)
    with pytest.raises(noise.ChallengeTooHardError):
        ini.on_challenge(*noise.split_packet(ch))


def test_bad_confirm_in_ack(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    ack, _ = res.on_response(*noise.split_packet(ini.create_response()), IP, PORT)
    hdr, body = noise.split_packet(ack)
    body = body[:-1] + bytes([body[-1] ^ 1])
    forged = noise.seal_packet(res.mk, hdr, body)  # valid header MAC, broken confirm
    with pytest.raises(noise.AuthFailError):
        ini.on_ack(*noise.split_packet(forged))


def test_rewritten_rid_in_ack_is_refused(parties: dict) -> None:
    """Both session ids are in the transcript: an on-path rewrite of the ACK's rid (with the
    header MAC recomputed, which anyone knowing S_r can do) fails the confirm tag."""
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    ack, _ = res.on_response(*noise.split_packet(ini.create_response()), IP, PORT)
    hdr, body = noise.split_packet(ack)
    rid = bytes([hdr.rid[0] ^ 0x80]) + hdr.rid[1:]
    forged = noise.seal_packet(res.mk, dataclasses.replace(hdr, session_id=hdr.iid + rid), body)
    with pytest.raises(noise.AuthFailError):
        ini.on_ack(*noise.split_packet(forged))


def test_transport_packet_with_another_session_id_is_dropped(parties: dict) -> None:
    a, b = sessions(parties)
    hdr, body = noise.split_packet(a.seal(PacketType.DATA, b"payload"))
    other = dataclasses.replace(hdr, session_id=bytes(16))
    with pytest.raises(noise.BadPlaintextError, match="session id") as e:
        b.open(*noise.split_packet(noise.seal_packet(a.send_keys.mac, other, body)))
    assert e.value.code == ErrorCode.MALFORMED


def test_handshake_close_is_reported(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    hdr, _ = noise.split_packet(ini.create_init())
    with pytest.raises(noise.HandshakeClosedError) as e:
        ini.on_challenge(*noise.split_packet(res.close_packet(hdr, ErrorCode.OVERLOAD)))
    assert e.value.code == ErrorCode.OVERLOAD


@pytest.mark.parametrize(
    "point",
    [
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_low_order_ephemeral(parties: dict, point: bytes) -> None:
    res: noise.Responder = parties["res"]
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    ini.E = point  # a RESPONSE carrying a low-order E_i
    ini.on_challenge(*noise.split_packet(res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)))
    payload = wire.Response(point, ini.ts, noise.puzzle_solve(ini.seed, ini.difficulty), bytes(48), bytes(32))
    body = payload.encode()
    hdr = wire.Header(type=PacketType.RESPONSE, session_id=ini.iid + bytes(8), timestamp=T0, payload_len=len(body))
    with pytest.raises(noise.LowOrderPointError) as e:
        res.on_response(*noise.split_packet(noise.seal_packet(res.mk, hdr, body)), IP, PORT)
    assert e.value.code == ErrorCode.AUTH_FAIL


def test_low_order_dh_raises() -> None:
    s, _ = keypair()
    with pytest.raises(noise.LowOrderPointError):
        noise.dh(s, bytes(32))


# ---- transport refusals ----


def sessions(parties: dict) -> tuple[Session, Session]:
    ri, rr = run(parties)
    return Session(ri, clock=parties["clock"]), Session(rr, clock=parties["clock"])


@pytest.mark.parametrize("offset", [-1, 60], ids=["ciphertext", "hmac"])
def test_bad_hmac_is_refused(parties: dict, offset: int) -> None:
    a, b = sessions(parties)
    pkt = bytearray(a.seal(PacketType.DATA, b"payload"))
    pkt[offset] ^= 1
    with pytest.raises(noise.BadHmacError) as e:
        b.open(*noise.split_packet(bytes(pkt)))
    assert e.value.code == ErrorCode.AUTH_FAIL


def test_decrypt_fail_after_valid_hmac(parties: dict) -> None:
    a, b = sessions(parties)
    pkt = a.seal(PacketType.DATA, b"payload")
    hdr, body = noise.split_packet(pkt)
    body = bytes([body[0] ^ 1]) + body[1:]
    forged = noise.seal_packet(a.send_keys.mac, hdr, body)
    with pytest.raises(noise.DecryptError) as e:
        b.open(*noise.split_packet(forged))
    assert e.value.code == ErrorCode.DECRYPT_FAIL


def test_only_the_next_sequence_is_accepted(parties: dict) -> None:
    """TCP delivers a genuine stream in order: a repeat, an old or a skipped sequence (a
    message deleted on the way) is refused (SEQ_INVALID), and the last accepted one stays."""
    a, b = sessions(parties)
    pkts = [a.seal(PacketType.DATA, b"%d" % i) for i in range(4)]
    assert b.open(*noise.split_packet(pkts[0])).plaintext == b"0"
    for bad in (pkts[0], pkts[2]):  # a repeat, then a gap (pkts[1] never came)
        with pytest.raises(noise.ReplayError) as e:
            b.open(*noise.split_packet(bad))
        assert e.value.code == ErrorCode.SEQ_INVALID
    assert b.highest_recv == noise.split_packet(pkts[0])[0].seq
    assert b.open(*noise.split_packet(pkts[1])).plaintext == b"1"


def test_receive_sequence_unit() -> None:
    w = noise.ReceiveSequence(1000)
    assert w.check(1001) and not w.check(1000) and not w.check(1002) and not w.check(5)
    w.update(1001)
    assert w.check(1002) and not w.check(1001) and w.top == 1001


def test_handshake_packet_after_establishment_is_malformed(parties: dict) -> None:
    _, b = sessions(parties)
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    with pytest.raises(wire.MalformedError):
        b.open(*noise.split_packet(ini.create_init()))


def test_fixed_size_transport_lengths_are_framing(parties: dict) -> None:
    a, _ = sessions(parties)
    pkt = a.seal(PacketType.HEARTBEAT, wire.Telemetry(rtt_ns=5).encode(), flags=wire.Flag.TELEMETRY)
    hdr, body = noise.split_packet(pkt)
    assert hdr.payload_len == len(body) == wire.HEARTBEAT_LEN + wire.TAG_LEN
    raw = bytearray(pkt[: wire.HEADER_LEN])
    raw[44:46] = (len(body) + 1).to_bytes(2, "big")
    with pytest.raises(wire.MalformedError, match="payload length"):
        wire.Header.decode(bytes(raw))


# ---- rekey ----


def pump(src: Session, dst: Session, pkts: list[bytes]) -> list[bytes]:
    """Deliver packets from src to dst, returning dst's answers."""
    out: list[bytes] = []
    for p in pkts:
        got = dst.open(*noise.split_packet(p))
        if got.type == PacketType.REKEY:
            out.extend(dst.on_rekey(got.plaintext))
    return out


def test_rekey_sequence_and_keys(parties: dict) -> None:
    a, b = sessions(parties)
    rk0 = a.rekeyer.rk
    init = a.start_rekey()
    assert a.start_rekey() == []  # already running
    data_a = [a.seal(PacketType.DATA, b"old keys from a")]
    reply = pump(a, b, init + data_a)  # b answers with REPLY and switches its send keys
    data_b = [b.seal(PacketType.DATA, b"new keys from b")]
    switch = pump(b, a, reply + data_b)
    assert a.epoch == 1 and b.epoch == 0
    more_a = [a.seal(PacketType.DATA, b"new keys from a")]
    assert pump(a, b, switch + more_a) == []
    assert a.epoch == b.epoch == 1 and a.rekeyer.rk == b.rekeyer.rk != rk0
    assert a.send_keys == b.recv_keys and b.send_keys == a.recv_keys
    # sequences continued across the rekey
    assert a.open(*noise.split_packet(b.seal(PacketType.DATA, b"z"))).header.seq == b.send_seq


@pytest.mark.parametrize("initiator_lower", [True, False])
def test_rekey_collision_tie_break(parties: dict, initiator_lower: bool) -> None:
    a, b = sessions(parties)  # a initiator, b responder
    lo, hi = b"\x00" * 7 + b"\x01", b"\xff" * 8
    a.rekeyer.own_id, b.rekeyer.peer_id = (int.from_bytes(lo if initiator_lower else hi, "big"),) * 2
    b.rekeyer.own_id, a.rekeyer.peer_id = (int.from_bytes(hi if initiator_lower else lo, "big"),) * 2
    init_a, init_b = a.start_rekey(), b.start_rekey()
    ans_b = pump(a, b, init_a)  # b sees a's INIT
    ans_a = pump(b, a, init_b)  # a sees b's INIT
    winner, loser = (a, b) if initiator_lower else (b, a)
    w_ans, l_ans = (ans_a, ans_b) if initiator_lower else (ans_b, ans_a)
    assert w_ans == []  # the winner ignores the loser's INIT
    assert len(l_ans) == 1  # the loser answers with a REPLY
    switch = pump(loser, winner, l_ans)
    assert pump(winner, loser, switch) == []
    assert winner.epoch == loser.epoch == 1
    assert winner.send_keys == loser.recv_keys and loser.send_keys == winner.recv_keys
    for x, y in ((a, b), (b, a)):
        assert y.open(*noise.split_packet(x.seal(PacketType.DATA, b"after"))).plaintext == b"after"


def test_rekey_unexpected_epoch(parties: dict) -> None:
    _, b = sessions(parties)
    bad = wire.Rekey(wire.RekeyKind.INIT, 5, noise.generate_keypair()[1]).encode()
    with pytest.raises(noise.RekeyError) as e:
        b.on_rekey(bad)
    assert e.value.code == ErrorCode.REKEY_FAIL
    with pytest.raises(noise.RekeyError):
        b.on_rekey(wire.Rekey(wire.RekeyKind.SWITCH, 1).encode())


def test_many_rekeys(parties: dict) -> None:
    a, b = sessions(parties)
    for n in range(1, 6):
        starter, other = (a, b) if n % 2 else (b, a)
        sw = pump(other, starter, pump(starter, other, starter.start_rekey()))
        pump(starter, other, sw)
        assert a.epoch == b.epoch == n
    assert b.open(*noise.split_packet(a.seal(PacketType.DATA, b"ok"))).plaintext == b"ok"


def test_journal_hash_truncates_at_nul() -> None:
    prev = bytes(32)
    assert noise.journal_hash(prev, 0, 1, 0, 0, 0, bytes(32), b"abc\0def") == noise.journal_hash(
        prev, 0, 1, 0, 0, 0, bytes(32), b"abc"
    )
    expect = noise.sha256(prev, struct.pack(">QQHHI", 0, 1, 0, 0, 0), bytes(32), b"abc")
    assert noise.journal_hash(prev, 0, 1, 0, 0, 0, bytes(32), b"abc") == expect


def test_wire_codes_of_refusals() -> None:
    assert noise.UnknownPeerError("x").wire_code == ErrorCode.AUTH_FAIL
    assert noise.AuthFailError("x").wire_code == ErrorCode.AUTH_FAIL
    assert noise.OverloadError("x").wire_code == ErrorCode.OVERLOAD
    for cls in (noise.BadMacError, noise.StaleTimestampError, noise.BadPuzzleError, noise.ReplayedInitError):
        assert cls("x").wire_code == 0


def test_acknowledgment_starts_at_peer_seq0(parties: dict) -> None:
    ri, _ = run(parties)
    a = Session(ri, clock=parties["clock"])
    assert wire.Header.decode(a.seal(PacketType.DATA, b"x")).ack == ri.keys.seq_r2i


def test_cookie_rotation_after_long_idle(parties: dict) -> None:
    res: noise.Responder = parties["res"]
    first = res.cookies[0]
    parties["clock"].now += 250 * 10**9  # two periods: the old secret is gone
    ini = noise.Initiator(parties["s_i"], parties["S_r"], clock=parties["clock"])
    res.on_init(*noise.split_packet(ini.create_init()), IP, PORT)
    assert first not in res.cookies
    assert res.cookie_rotated == T0 + 240 * 10**9


def test_rekey_timeout_and_hard_key_limits(parties: dict) -> None:
    now = [10**18]
    ri, rr = run(parties)
    a, b = Session(ri, clock=lambda: now[0]), Session(rr, clock=lambda: now[0])
    init = a.start_rekey()
    assert init and a.rekey_since == now[0]
    now[0] += 15 * 10**9 + 1
    assert not a.rekey_overdue()  # b has not acknowledged the INIT: still on its way
    b.open(*noise.split_packet(init[0]))  # b reads the INIT and ignores it (a broken peer)
    a.open(*noise.split_packet(b.seal(PacketType.HEARTBEAT, wire.Telemetry().encode(), flags=wire.Flag.TELEMETRY)))
    assert not a.rekey_overdue()  # acknowledged now: 15 s from here
    now[0] += 15 * 10**9 + 1
    assert a.rekey_overdue()  # the REPLY never came
    assert not b.keys_expired(3600, 1 << 30)
    now[0] += (3600 + 60) * 10**9
    assert b.keys_expired(3600, 1 << 30)
    c = Session(rr, clock=lambda: now[0])
    c.packets_on_keys = (1 << 30) + (1 << 20)
    assert c.keys_expired(3600, 1 << 30)
