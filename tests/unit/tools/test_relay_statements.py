"""Signed score statements (docs/relay.md section 6a): made, checked, tampered with, exchanged."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("cryptography")

from pooltools.common.jsonmsg import Refusal
from pooltools.protocol.keys import encode_key
from pooltools.protocol.x25519 import public_key
from pooltools.relay import control, statements
from pooltools.relay.ledger import Ledger, MiB
from pooltools.relay.service import Relay
from pooltools.relay.statements import Statement, StatementError

SECRETS = {n: os.urandom(32) for n in ("node1", "node2", "node3")}
KEYS = {n: public_key(s) for n, s in SECRETS.items()}
SIGNING = {KEYS[n]: statements.public_signing_key(s) for n, s in SECRETS.items()}


def said(observer: str, subject: str, contributed: int = 5 * MiB, consumed: int = 100 * MiB) -> dict[str, str]:
    return Statement(KEYS[observer], KEYS[subject], contributed, consumed, 64 * MiB, 1_796_000_000).sign(
        SECRETS[observer]
    )


def test_a_statement_verifies_and_carries_the_observers_score() -> None:
    st = statements.verify(said("node2", "node1"), SIGNING)
    assert (st.observer, st.subject, st.contributed, st.consumed) == (KEYS["node2"], KEYS["node1"], 5 * MiB, 100 * MiB)
    assert st.score == pytest.approx(69 / 164)
    # derived, stable, and not the static key
    assert statements.public_signing_key(SECRETS["node2"]) == SIGNING[KEYS["node2"]] != KEYS["node2"]


def test_nobody_can_inflate_what_an_observer_said() -> None:
    signed = said("node2", "node1")
    doc = json.loads(signed["statement"])
    doc["contributed"] = 500 * MiB  # node1 improves its figures before passing the statement on
    forged = {**signed, "statement": json.dumps(doc, sort_keys=True, separators=(",", ":"))}
    with pytest.raises(StatementError, match="does not verify"):
        statements.verify(forged, SIGNING)
    # nor sign it anew with its own key in node2's name
    own = Statement(KEYS["node2"], KEYS["node1"], 500 * MiB, 0, 64 * MiB, 1).sign(SECRETS["node1"])
    with pytest.raises(StatementError, match="does not verify"):
        statements.verify(own, SIGNING)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.replace('"at":', '"at" :'), "canonical"),
        (lambda s: s.replace('"format":1', '"format":2'), "format 1"),
        (lambda s: s.replace('"consumed":', '"used":'), "members must be"),
        (lambda s: s.replace('"start":67108864', '"start":0'), "'start'"),
        (lambda s: "[" + s, "not JSON"),
        (lambda s: s + " " * 1024, "longer than"),
    ],
)
def test_malformed_statements_are_refused_by_name(change, message: str) -> None:
    signed = said("node2", "node1")
    with pytest.raises(StatementError, match=message):
        statements.verify({**signed, "statement": change(signed["statement"])}, SIGNING)


def test_an_unknown_observer_and_a_bad_signature_are_named() -> None:
    with pytest.raises(StatementError, match="no signing key known"):
        statements.verify(said("node2", "node1"), {})
    with pytest.raises(StatementError, match="does not verify"):
        statements.verify({**said("node2", "node1"), "signature": "not base64!"}, SIGNING)


def _relay() -> Relay:
    from pooltools.relay import enrolment as en

    return Relay(en.Enrolment, dict, lambda key: None, ("127.0.0.1", 0), Ledger())


def test_a_relay_takes_statements_over_the_senders_session_and_passes_them_on() -> None:
    """node2 tells node1 its statement; node1 passes it to node3, which knows node2's key from
    its own session with node2; a tampered batch is refused whole."""
    n1, n3 = _relay(), _relay()
    reply = control.decode_reply(
        n1.handle(KEYS["node2"], control.Scores(SIGNING[KEYS["node2"]], (said("node2", "node1"),)))
    )
    assert reply == {"ok": True, "taken": 1, "unknown_observer": 0}
    held = n1.held_about(KEYS["node1"])
    assert [h.statement.observer for h in held] == [KEYS["node2"]]
    # node3 has not met node2 yet: the passed-on statement is skipped, not refused
    passed_on = control.Scores(SIGNING[KEYS["node1"]], (said("node1", "node3"), held[0].signed))
    assert control.decode_reply(n3.handle(KEYS["node1"], passed_on))["unknown_observer"] == 1
    n3.handle(KEYS["node2"], control.Scores(SIGNING[KEYS["node2"]], ()))  # node3 meets node2
    assert control.decode_reply(n3.handle(KEYS["node1"], passed_on))["taken"] == 2
    assert {h.statement.observer for h in n3.held_about(KEYS["node1"])} == {KEYS["node2"]}
    assert n3.held_about(KEYS["node3"])[0].statement.score == pytest.approx(69 / 164)
    # one forged statement refuses the batch, and nothing of it is kept
    forged = {**said("node1", "node3", contributed=1), "signature": said("node1", "node3")["signature"]}
    before = dict(n3.statements)
    with pytest.raises(Refusal) as info:
        n3.handle(KEYS["node1"], control.Scores(SIGNING[KEYS["node1"]], (said("node1", "node3", 9), forged)))
    assert info.value.code == "bad_request" and "'statements'[1]" in info.value.detail
    assert n3.statements == before


def test_a_relays_own_statement_follows_its_ledger() -> None:
    r = _relay()
    r.clock = lambda: 1_796_000_000.0
    r.ledger.add(encode_key(KEYS["node1"]), "consumed", 100 * MiB, r.clock())
    st = statements.verify(r.statement_of(KEYS["node2"], KEYS["node1"]).sign(SECRETS["node2"]), SIGNING)
    assert st.consumed == 100 * MiB and st.contributed == 0
    assert st.score == pytest.approx(r.ledger.score(encode_key(KEYS["node1"]), r.clock()))
