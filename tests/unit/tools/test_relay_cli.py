"""pool_relay's CLI: enrolments, configuration, peers and status, with --check and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.protocol.keys import encode_key
from pooltools.relay import cli
from pooltools.relay import enrolment as en

K1, K3 = encode_key(bytes([1]) * 32), encode_key(bytes([3]) * 32)


def run(tmp_path: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = cli.main(
        [
            "--json",
            "--enrolments",
            str(tmp_path / "relay.json"),
            "--status-file",
            str(tmp_path / "status.json"),
            "--pid-file",
            str(tmp_path / "pid"),
            *argv,
        ],
        device_factory=FakeDevice,
    )
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def test_enroll_config_revoke_are_idempotent_and_check_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = run(tmp_path, "enroll", "node1", K1, "--check", capsys=capsys)
    assert code == 0 and doc["changed"] and doc["check"]
    assert not (tmp_path / "relay.json").exists() and not (tmp_path / "relay.json.lock").exists()
    code, doc = run(tmp_path, "enroll", "node1", K1, capsys=capsys)
    assert doc["changed"] and doc["after"] == {"key": K1, "name": "node1", "accept": False} and doc["before"] is None
    code, doc = run(tmp_path, "enroll", "node1", K1, capsys=capsys)
    assert not doc["changed"] and doc["version"] == 1
    code, doc = run(tmp_path, "enroll", "node3", K3, "--accept", capsys=capsys)
    assert doc["version"] == 2 and doc["peers"] == ["node1", "node3"]
    code, doc = run(tmp_path, "config", "--relay", "on", "--peer-rate", "10M", capsys=capsys)
    assert doc["changed"] and doc["relay"] and doc["limits"]["peer_bytes_per_second"] == 10 << 20
    code, doc = run(tmp_path, "config", "--relay", "on", "--peer-rate", "10M", capsys=capsys)
    assert not doc["changed"]
    code, doc = run(tmp_path, "revoke", "node1", capsys=capsys)
    assert doc["changed"] and doc["before"]["name"] == "node1" and doc["after"] is None
    e = en.load(tmp_path / "relay.json")
    assert (e.version, e.relay, [p.name for p in e.peers]) == (4, True, ["node3"])
    code, doc = run(tmp_path, "peers", capsys=capsys)
    assert [p["name"] for p in doc["peers"]] == ["node3"] and doc["peers"][0]["accept"]


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["enroll", "node1", "not-a-key"], "peer key 'not-a-key'"),
        (["enroll", "bad name", K1], "without spaces"),
        (["config", "--peer-rate", "100"], "peer_bytes_per_second"),
        (["config", "--total-rate", "2K", "--peer-rate", "4K"], "above total_bytes_per_second"),
    ],
)
def test_bad_input_is_refused_by_name_and_writes_nothing(
    tmp_path: Path, argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = run(tmp_path, *argv, capsys=capsys)
    assert code == 2
    assert why in doc["error"]["why"]
    assert not (tmp_path / "relay.json").exists()


def test_a_broken_enrolment_file_is_named_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "relay.json").write_text('{"format": 1, "version": 1, "peers": "x"}')
    code, doc = run(tmp_path, "enroll", "node1", K1, capsys=capsys)
    assert code == 2 and '"peers" must be a list' in doc["error"]["why"]
    assert (tmp_path / "relay.json").read_text() == '{"format": 1, "version": 1, "peers": "x"}'


def test_status_and_stop_without_a_running_relay_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run(tmp_path, "status", capsys=capsys)
    assert code == 5 and "is pool_relay running" in doc["error"]["why"]
    code, doc = run(tmp_path, "stop", capsys=capsys)
    assert code == 5 and "no pid file" in doc["error"]["why"]


POOL_CONF = f"""
[node]
private_key_file = /etc/pool/private.key

[peer node2]
public_key = {encode_key(bytes([2]) * 32)}
endpoint = 10.253.0.12:9253

[peer node3]
public_key = {K3}
relays = node2
"""


def test_the_daemon_routes_reports_and_reloads(tmp_path: Path) -> None:
    from pooltools.relay.daemon import RelayDaemon

    (tmp_path / "pool.conf").write_text(POOL_CONF)
    path = tmp_path / "relay.json"
    en.save(path, en.enrolled(en.Enrolment(relay=True), en.peer(K1, "node1")))
    d = RelayDaemon(FakeDevice, path, tmp_path / "ledger.json", tmp_path / "pool.conf", tmp_path / "status.json")
    assert d.routes() == {bytes([3]) * 32: [bytes([2]) * 32]}
    d.discover()
    d.write_status()
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["relay"] is True and status["enrolment_version"] == 1
    # the enrolled peer and the relay node3 is reached through, each with this node's figures
    assert {p["name"]: (p["enrolled"], p["tier"]) for p in status["peers"]} == {
        "node1": (True, "balanced"),
        "node2": (False, "balanced"),
    }
    d.relay.ledger.add(K1, "consumed", 5000, d.clock())
    d.save_ledger()
    assert K1 in json.loads((tmp_path / "ledger.json").read_text())["peers"]
    # a new key for node2 in pool.conf (rotate_identity.yml) is picked up without a SIGHUP: the
    # routes name the relay by the key it has now
    new_node2 = bytes([9]) * 32
    conf_text = (tmp_path / "pool.conf").read_text()
    (tmp_path / "pool.conf").write_text(conf_text.replace(encode_key(bytes([2]) * 32), encode_key(new_node2)))
    d.reload()
    assert d.routes() == {bytes([3]) * 32: [new_node2]}
    # a changed file is picked up; a broken one is refused and the one in use stays
    en.save(path, en.revoked(en.load(path), "node1"))
    d.reload()
    assert d.enrolment.version == 2 and d.enrolment.peers == ()
    path.write_text("{broken")
    d.reload()
    assert d.enrolment.version == 2


def test_the_daemon_signs_what_it_observed_for_each_peer(tmp_path: Path) -> None:
    """With its static key readable, the daemon sends each peer its signed statement about it
    and passes on what others signed about this node; status shows its keys."""
    from pooltools.common import keyfile
    from pooltools.relay import control, statements
    from pooltools.relay.daemon import RelayDaemon

    key = tmp_path / "private.key"
    keyfile.generate(key)
    (tmp_path / "pool.conf").write_text(POOL_CONF.replace("/etc/pool/private.key", str(key)))
    path = tmp_path / "relay.json"
    en.save(path, en.enrolled(en.Enrolment(relay=True), en.peer(K1, "node1")))
    d = RelayDaemon(FakeDevice, path, tmp_path / "ledger.json", tmp_path / "pool.conf", tmp_path / "status.json")
    sent: list[control.Scores] = []

    class Channel:
        closed = type("Never", (), {"is_set": staticmethod(lambda: False)})()

        def ask(self, req: control.Scores) -> None:
            sent.append(req)

    node1 = bytes([1]) * 32
    d.relay.channels[node1] = Channel()  # type: ignore[assignment]
    d.relay.ledger.add(K1, "consumed", 7 << 20, d.clock())
    d.send_reports()
    d.workers.shutdown(wait=True)
    (req,) = sent
    st = statements.verify(req.statements[0], {d.public: req.signing_key})
    assert (st.observer, st.subject, st.consumed) == (d.public, node1, 7 << 20)
    d.write_status()
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["signing_key"] == encode_key(req.signing_key) and status["key"] == encode_key(d.public)


def test_apply_sets_everything_at_once_or_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    def apply(doc: str, *extra: str) -> tuple[int, dict]:
        monkeypatch.setattr("sys.stdin", io.StringIO(doc))
        return run(tmp_path, "apply", *extra, capsys=capsys)

    want = {"relay": True, "peers": [{"name": "node1", "key": K1}, {"name": "node3", "key": K3, "accept": True}]}
    code, doc = apply(json.dumps(want))
    assert code == 0 and doc["changed"] and doc["version"] == 1 and doc["after"]["relay"]
    code, doc = apply(json.dumps(want))
    assert not doc["changed"] and doc["version"] == 1
    bad = {**want, "peers": [*want["peers"], {"name": "x", "key": "bad"}]}
    for text, why in (
        (json.dumps(bad), "peers[2]: peer key 'bad'"),
        ("[1]", 'a JSON object of "relay", "limits" and "peers"'),
        ("{x", "not JSON"),
        (json.dumps({"relay": "yes"}), '"relay" must be true or false'),
    ):
        code, doc = apply(text)
        assert code == 2 and why in doc["error"]["why"], doc
    assert en.load(tmp_path / "relay.json").version == 1  # nothing of the bad documents landed


def test_status_shows_what_each_peer_signed_about_this_node(tmp_path: Path) -> None:
    """A peer's statement about this node (its view of what this node relayed for it) shows
    under that peer in the status, checked against the peer's signing key."""
    import os

    from pooltools.common import keyfile
    from pooltools.protocol.x25519 import public_key
    from pooltools.relay import control, statements
    from pooltools.relay.daemon import RelayDaemon

    key = tmp_path / "private.key"
    keyfile.generate(key)
    (tmp_path / "pool.conf").write_text(POOL_CONF.replace("/etc/pool/private.key", str(key)))
    peer_private = os.urandom(32)
    peer = public_key(peer_private)
    path = tmp_path / "relay.json"
    en.save(path, en.enrolled(en.Enrolment(relay=True), en.peer(encode_key(peer), "node1")))
    d = RelayDaemon(FakeDevice, path, tmp_path / "ledger.json", tmp_path / "pool.conf", tmp_path / "status.json")
    said = statements.Statement(peer, d.public, 5 << 20, 1 << 20, 64 << 20, int(d.clock())).sign(peer_private)
    reply = d.relay.handle(peer, control.Scores(statements.public_signing_key(peer_private), (said,)))
    assert control.decode_reply(reply)["taken"] == 1
    d.write_status()
    rows = json.loads((tmp_path / "status.json").read_text())["peers"]
    row = next(r for r in rows if r["name"] == "node1")
    about_us = row["statement_about_this_node"]
    assert (about_us["observer"], about_us["contributed"], about_us["consumed"]) == ("node1", 5 << 20, 1 << 20)
    assert about_us["score"] == round((69 << 20) / (65 << 20), 4) and row["statements"] == []
