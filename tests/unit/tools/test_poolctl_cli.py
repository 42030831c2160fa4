"""poolctl against the FakeDevice: argument handling, the --json contract, errors and exit codes."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from pooltools.kernel import uapi
from pooltools.kernel.device import PoolError
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.poolctl import cli as poolctl
from pooltools.protocol import x25519
from pooltools.protocol.keys import encode_key

PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
PEER = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
PEER_B64 = encode_key(PEER)


@pytest.fixture
def dev() -> FakeDevice:
    return FakeDevice()


def run(capsys: pytest.CaptureFixture[str], dev: FakeDevice | None, *argv: str) -> tuple[int, str, str]:
    rc = poolctl.main(list(argv), (lambda: dev) if dev is not None else None)
    out, err = capsys.readouterr()
    return rc, out, err


def jrun(capsys: pytest.CaptureFixture[str], dev: FakeDevice, *argv: str) -> tuple[int, dict]:
    rc, out, _err = run(capsys, dev, "--json", *argv)
    assert out.count("\n") == 1, out  # exactly one JSON document
    return rc, json.loads(out)


def keyfile(tmp_path: Path, mode: int = 0o600, key: bytes = PRIV) -> Path:
    p = tmp_path / "private.key"
    p.write_text(encode_key(key) + "\n")
    p.chmod(mode)
    return p


# ---- identity


def test_identity_generate_creates_0600_and_refuses_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "private.key"
    old = os.umask(0)
    try:
        rc, doc = jrun(capsys, FakeDevice(), "identity", "generate", "--key-file", str(path))
    finally:
        os.umask(old)
    assert rc == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = base64.b64decode(path.read_text().strip())
    assert doc["public_key"] == encode_key(x25519.public_key(private))
    assert doc["created"] is True and doc["key_file"] == str(path)
    assert doc["address"].startswith("00010001:")
    assert "private" not in json.dumps(doc).replace("private.key", "")
    assert [p.name for p in tmp_path.iterdir()] == ["private.key"]  # no temp file left

    before = path.read_bytes()
    rc, out, err = run(capsys, None, "identity", "generate", "--key-file", str(path))
    assert rc == 6 and out == ""
    assert err == f"poolctl: generate {path}: key file exists (use --force to replace it)\n"
    assert path.read_bytes() == before
    rc, _, _ = run(capsys, None, "identity", "generate", "--key-file", str(path), "--force")
    assert rc == 0 and path.read_bytes() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_identity_load_show(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    kf = keyfile(tmp_path)
    rc, doc = jrun(capsys, dev, "identity", "load", "--key-file", str(kf))
    assert rc == 0 and doc["changed"] is True and doc["set"] is True
    assert doc["public_key"] == encode_key(PUB)
    rc, doc = jrun(capsys, dev, "identity", "load", "--key-file", str(kf))
    assert doc["changed"] is False
    rc, doc = jrun(capsys, dev, "identity", "show")
    assert doc == {
        "source": "kernel",
        "set": True,
        "public_key": encode_key(PUB),
        "address": doc["address"],
        "org_id": 0,
        "segment_id": 0,
    }
    rc, doc = jrun(capsys, dev, "identity", "show", "--key-file", str(kf))
    assert doc["source"] == "file" and doc["public_key"] == encode_key(PUB)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_identity_load_refuses_loose_permissions(
    tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    kf = keyfile(tmp_path, mode)
    rc, _out, err = run(capsys, dev, "identity", "load", "--key-file", str(kf))
    assert rc == 4
    assert err == f"poolctl: key file {kf}: mode {mode:04o} is too open: must be 0600 or stricter (chmod 600 {kf})\n"
    assert dev.mutations == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_identity_load_refuses_wrong_owner(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    kf = keyfile(tmp_path)
    os.chown(kf, 4242, 4242)
    rc, _, err = run(capsys, dev, "identity", "load", "--key-file", str(kf))
    assert rc == 4 and "owned by uid 4242, must be owned by uid 0" in err
    assert dev.mutations == []


def test_identity_load_bad_key_file(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    kf = tmp_path / "k"
    kf.write_text("garbage\n")
    kf.chmod(0o600)
    rc, _, err = run(capsys, dev, "identity", "load", "--key-file", str(kf))
    assert rc == 2 and err.startswith(f"poolctl: key file {kf}: key must be 44 base64 characters")
    rc, _, err = run(capsys, dev, "identity", "load", "--key-file", str(tmp_path / "missing"))
    assert rc == 5 and "does not exist" in err
    link = tmp_path / "link"
    link.symlink_to(keyfile(tmp_path))
    rc, _, err = run(capsys, dev, "identity", "load", "--key-file", str(link))
    assert rc == 4 and "symbolic link" in err
    assert dev.mutations == []


# ---- peers


def test_peers_add_list_remove(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = jrun(capsys, dev, "peers", "add", "node2", PEER_B64, "--endpoint", "10.253.0.12:9253")
    assert rc == 0 and doc["changed"] is True
    peer = doc["peer"]
    assert set(peer) == {
        "name",
        "public_key",
        "address",
        "endpoint",
        "active_sessions",
        "last_handshake_ns",
        "handshakes",
        "auth_failures",
    }
    assert (peer["name"], peer["public_key"], peer["endpoint"]) == ("node2", PEER_B64, "10.253.0.12:9253")
    rc, doc = jrun(capsys, dev, "peers", "add", "node2", PEER_B64, "--endpoint", "10.253.0.12:9253", "--exist-ok")
    assert rc == 0 and doc["changed"] is False
    rc, doc = jrun(capsys, dev, "peers", "list")
    assert [p["name"] for p in doc["peers"]] == ["node2"]
    assert jrun(capsys, dev, "peers") == (0, doc)  # no action: the list
    rc, out, _ = run(capsys, dev, "peers", "list")
    assert out.splitlines()[0].split() == ["NAME", "PUBLIC", "KEY", "ENDPOINT", "SESSIONS", "HANDSHAKE", "AUTH", "FAIL"]
    rc, doc = jrun(capsys, dev, "peers", "remove", "node2")
    assert rc == 0 and doc == {"changed": True, "public_key": PEER_B64}
    rc, doc = jrun(capsys, dev, "peers", "remove", "node2", "--missing-ok")
    assert rc == 0 and doc["changed"] is False
    rc, _, err = run(capsys, dev, "peers", "remove", PEER_B64)
    assert rc == 5 and err == f"poolctl: peer {PEER_B64}: not in the trust store (poolctl peers list)\n"


BAD_KEYS = [
    ("abc", "key must be 44 base64 characters (32 bytes), got 3 characters"),
    ("!" * 43 + "=", "key is not valid base64"),
    (base64.b64encode(bytes(32)).decode(), "key is all zero"),
    (base64.b64encode(bytes(33)).decode()[:44], "key"),
]


@pytest.mark.parametrize(("key", "why"), BAD_KEYS)
def test_peers_add_malformed_key(dev: FakeDevice, capsys: pytest.CaptureFixture[str], key: str, why: str) -> None:
    rc, out, err = run(capsys, dev, "peers", "add", "node2", key)
    assert rc == 2 and out == ""
    assert err.startswith(f"poolctl: add peer node2: {why}") and err.count("\n") == 1
    assert dev.mutations == []


def test_peers_add_duplicate(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, dev, "peers", "add", "node2", PEER_B64)[0] == 0
    dev.mutations.clear()
    rc, out, err = run(capsys, dev, "--json", "peers", "add", "node3", PEER_B64)
    assert rc == 6
    assert err == "poolctl: add peer node3: peer already trusted (as 'node2')\n"
    assert json.loads(out) == {
        "error": {"what": "add peer node3", "why": "peer already trusted (as 'node2')", "exit_code": 6}
    }
    other = encode_key(bytes(range(1, 33)))
    rc, _, err = run(capsys, dev, "peers", "add", "node2", other)
    assert rc == 6 and "name already used by peer" in err
    assert dev.mutations == []


def test_peers_add_kernel_eexist_message(dev: FakeDevice) -> None:
    dev.peer_add(PEER, "a")
    with pytest.raises(PoolError) as exc:
        dev.peer_add(PEER, "b")
    assert str(exc.value) == "add peer: peer already trusted" and exc.value.exit_code == 6


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--endpoint", "10.0.0.1"], "is not address:port"),
        (["--endpoint", "example.org:9253"], "is not an IPv4 or IPv6 address"),
        (["--endpoint", "10.0.0.1:99999"], "port must be 1-65535"),
    ],
)
def test_peers_add_bad_endpoint(dev: FakeDevice, capsys: pytest.CaptureFixture[str], args: list[str], why: str) -> None:
    rc, _, err = run(capsys, dev, "peers", "add", "node2", PEER_B64, *args)
    assert rc == 2 and why in err
    assert dev.mutations == []


def test_peers_add_bad_name_and_own_key(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, dev, "peers", "add", "bad/name", PEER_B64)
    assert rc == 2 and "name must be" in err
    dev.set_identity(PRIV)
    dev.mutations.clear()
    rc, _, err = run(capsys, dev, "peers", "add", "me", encode_key(PUB))
    assert rc == 2 and "this node's own public key" in err
    assert dev.mutations == []


# ---- module missing, permission


def test_missing_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "pool")
    for argv in (["peers", "list"], ["sessions"], ["listen"], ["peers", "add", "n", PEER_B64]):
        rc, out, err = run(capsys, None, "--device", missing, *argv)
        assert rc == 3, argv
        assert err == f"poolctl: {missing} missing: pool.ko not loaded (modprobe pool)\n"
    rc, out, err = run(capsys, None, "--device", missing, "--json", "status")
    assert rc == 3 and json.loads(out) == {"module_loaded": False, "module_version": None, "device": missing}


def _poolctl_unprivileged(*argv: str) -> tuple[int, str]:
    """Runs poolctl in a forked child that is not root (root bypasses file modes; CI runs as root)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            sys.stderr = os.fdopen(write_end, "w")  # pytest has replaced the real one
            code = poolctl.main(list(argv), None)
            sys.stderr.flush()
        except BaseException:  # the child must exit, whatever happens
            code = 99
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as err:
        text = err.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def test_permission_denied(tmp_path: Path) -> None:
    # A world-traversable folder, so only the device's own mode 0 refuses the open.
    folder = tmp_path / "dev"
    folder.mkdir()
    for d in (folder, *folder.parents):
        if d == Path("/"):
            break
        if d.stat().st_uid == os.geteuid():
            d.chmod(d.stat().st_mode | 0o011)
    p = folder / "pool"
    p.write_text("")
    p.chmod(0)
    rc, err = _poolctl_unprivileged("--device", str(p), "stats")
    assert rc == 4, err
    assert "permission denied" in err


def test_unloaded_module_mid_way(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    dev.unload()
    rc, _, err = run(capsys, dev, "stats")
    assert rc == 3 and err == "poolctl: read statistics: pool.ko is gone (module unloaded)\n"


# ---- usage


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["peers", "bogus"],
        ["peers", "add", "x"],
        ["listen", "--port", "70000"],
        ["close", "x"],
        ["send", "--index", "1"],
        ["send", "--peer", "a", "--index", "1", "m"],
    ],
)
def test_usage_errors_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = run(capsys, FakeDevice(), *argv)
    assert rc == 2 and out == ""
    assert err.startswith("poolctl: usage: ") and err.count("\n") == 1


def test_json_flag_anywhere(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    a = run(capsys, dev, "--json", "stats")[1]
    b = run(capsys, dev, "stats", "--json")[1]
    assert json.loads(a) == json.loads(b)


# ---- listener, sessions, telemetry, stats


def _node_with_peer(dev: FakeDevice) -> None:
    dev.set_identity(PRIV)
    dev.peer_add(PEER, "node2", bytes(10) + b"\xff\xff" + bytes([10, 253, 0, 12]), 9253)


def test_listen_stop(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = jrun(capsys, dev, "listen")
    assert doc == {"changed": True, "listening": True, "port": 9253}
    rc, doc = jrun(capsys, dev, "listen")
    assert doc["changed"] is False
    rc, _out, err = run(capsys, dev, "listen", "--port", "9300")
    assert rc == 8 and err == "poolctl: listen on port 9300: already listening on another port (poolctl stop first)\n"
    rc, doc = jrun(capsys, dev, "stop")
    assert doc == {"changed": True, "listening": False}
    rc, doc = jrun(capsys, dev, "stop")
    assert doc["changed"] is False


def test_connect_hold_zero_and_sessions(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    _node_with_peer(dev)
    rc, doc = jrun(capsys, dev, "connect", "--peer", "node2", "--hold", "0")
    assert rc == 0
    assert doc == {
        "index": 1,
        "peer_public_key": PEER_B64,
        "peer_name": "node2",
        "endpoint": "10.253.0.12:9253",
        "held_seconds": 0.0,
    }
    assert dev.sessions() == []  # the session closed with poolctl's fd
    dev.inbound(PEER)
    sess = dev.accept()
    rc, doc = jrun(capsys, dev, "sessions")
    (s,) = doc["sessions"]
    assert s["index"] == sess.index and s["state"] == "established" and s["role"] == "responder"
    assert s["peer_name"] == "node2" and s["peer_public_key"] == PEER_B64 and s["peer_endpoint"] == "10.0.0.2:40000"
    assert set(s["telemetry"]) == {"local", "peer"}
    assert set(s["telemetry"]["local"]) == {
        "rtt_ns",
        "jitter_ns",
        "loss_rate_ppm",
        "throughput_bps",
        "mtu",
        "queue_depth",
        "rekey_count",
        "uptime_ns",
        "config_version",
    }
    rc, doc = jrun(capsys, dev, "telemetry", str(sess.index))
    assert doc["sessions"][0]["index"] == sess.index and doc["sessions"][0]["local"]["mtu"] == 1420
    rc, out, _ = run(capsys, dev, "sessions")
    assert out.split()[:10] == ["IDX", "PEER", "ENDPOINT", "STATE", "ROLE", "SENT", "RECV", "RTT", "EPOCH", "FDS"]
    rc, doc = jrun(capsys, dev, "close", str(sess.index))
    assert doc == {"changed": True, "index": sess.index}
    rc, _, err = run(capsys, dev, "close", str(sess.index))
    assert rc == 5 and err == f"poolctl: close session {sess.index}: no such session\n"


def test_connect_errors(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, dev, "connect", "--peer", "node2", "10.0.0.1:9253")
    assert rc == 5 and "not in the trust store" in err
    _node_with_peer(dev)
    import errno

    dev.refuse[PEER] = errno.ECONNREFUSED
    rc, _, err = run(capsys, dev, "connect", "--peer", "node2", "--hold", "0")
    assert rc == 10 and err == "poolctl: connect: connection refused (or the peer closed the handshake)\n"
    dev.refuse[PEER] = errno.ETIMEDOUT
    rc, _, err = run(capsys, dev, "connect", "--peer", "node2", "--hold", "0")
    assert rc == 7 and err == "poolctl: connect: handshake timed out\n"


def test_stats_names(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    _rc, doc = jrun(capsys, dev, "stats")
    assert list(doc["stats"]) == [m.name.lower() for m in uapi.Stat]


def test_send_recv(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    _node_with_peer(dev)
    st = dev.inbound(PEER)
    held = dev.accept()  # poold's fd
    rc, doc = jrun(capsys, dev, "send", "--peer", "node2", "--channel", "5", "hello")
    assert rc == 0 and doc == {"index": st.index, "channel": 5, "bytes": 5}
    assert st.sent == [(5, b"hello")]
    st.rx.append((7, b"\x00\x01bin"))
    rc, doc = jrun(capsys, dev, "recv", "--index", str(st.index), "--timeout", "1")
    assert doc == {
        "index": st.index,
        "channel": 7,
        "bytes": 5,
        "data": base64.b64encode(b"\x00\x01bin").decode(),
        "closed": False,
    }
    rc, _, err = run(capsys, dev, "recv", "--peer", "node2", "--timeout", "0")
    assert rc == 7 and "nothing received" in err
    rc, _, err = run(capsys, dev, "send", "--peer", "node2", "x" * 65520)
    assert rc == 2 and "longer than 65519" in err
    held.close()
    rc, _, err = run(capsys, dev, "send", "--peer", "node2", "hi")
    assert rc == 5 and "no established session" in err


# ---- journal


def test_journal_show_verify(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    _node_with_peer(dev)
    rc, doc = jrun(capsys, dev, "journal", "show")
    assert [e["type"] for e in doc["entries"]] == ["genesis", "identity", "peer"]
    e = doc["entries"][2]
    assert set(e) == {
        "seq",
        "timestamp_ns",
        "type",
        "type_code",
        "code",
        "code_name",
        "config_version",
        "peer_public_key",
        "prev_hash",
        "hash",
        "detail",
    }
    assert (
        e["peer_public_key"] == PEER_B64 and e["detail"] == "add node2" and e["prev_hash"] == doc["entries"][1]["hash"]
    )
    assert doc["next_seq"] == 3 and doc["head_hash"] == e["hash"]
    rc, doc = jrun(capsys, dev, "journal", "show", "--limit", "1")
    assert [x["seq"] for x in doc["entries"]] == [2]
    assert jrun(capsys, dev, "journal")[1]["entries"] == jrun(capsys, dev, "journal", "show")[1]["entries"]
    rc, doc = jrun(capsys, dev, "journal", "verify")
    assert rc == 0 and doc["ok"] is True and doc["checked"] == 3 and doc["problems"] == []


def test_journal_verify_detects_tampering(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    _node_with_peer(dev)
    dev._journal[1] = dataclasses.replace(dev._journal[1], detail=b"forged")
    rc, out, err = run(capsys, dev, "--json", "journal", "verify")
    doc = json.loads(out)
    assert rc == 9 and doc["ok"] is False
    assert doc["problems"] == ["seq 1: hash does not match the entry's contents"]
    assert err.startswith("poolctl: journal verify: 1 problem(s)")


def test_journal_verify_file(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    from pooltools.kernel.journal import JournalFile

    _node_with_peer(dev)
    jf = JournalFile(tmp_path / "journal.jsonl")
    jf.append(dev.journal_read(0).entries)
    rc, doc = jrun(capsys, dev, "journal", "verify", "--file", str(jf.path))
    assert rc == 0 and doc["ok"] and doc["checked"] == 3 and doc["source"] == str(jf.path)
    lines = jf.path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["timestamp_ns"] += 1
    lines[2] = json.dumps(rec)
    jf.path.write_text("\n".join(lines) + "\n")
    rc, doc = jrun(capsys, dev, "journal", "verify", "--file", str(jf.path))
    assert rc == 9 and doc["problems"] == ["seq 2: hash does not match the entry's contents"]


def test_journal_verify_rotated_files(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    """poold's rotated journal, oldest first, verifies as one chain; out of order it does not."""
    from pooltools.kernel.journal import JournalFile

    _node_with_peer(dev)
    for i in range(60):
        dev.peer_add(bytes([9, i]) + bytes(30), f"p{i}")
    entries = dev.journal_read(0).entries
    jf = JournalFile(tmp_path / "journal.jsonl", max_bytes=4096, keep=8)
    for e in entries:
        jf.append([e])
    files = [*sorted(tmp_path.glob("journal.jsonl.*"), key=lambda p: -int(p.suffix[1:])), jf.path]
    assert len(files) >= 4
    rc, doc = jrun(capsys, dev, "journal", "verify", *(a for f in files for a in ("--file", str(f))))
    assert rc == 0 and doc["ok"] and doc["checked"] == len(entries) and doc["segments"] == 1, doc
    # two files out of order (neither starts with the GENESIS entry, which may begin a segment)
    rc, doc = jrun(capsys, dev, "journal", "verify", "--file", str(files[2]), "--file", str(files[1]))
    assert rc == 9 and "entries missing or reordered" in doc["problems"][0], doc
    rc, _doc = jrun(capsys, dev, "journal", "verify", "--file", str(tmp_path / "nope"))
    assert rc != 0


def test_status_and_config(tmp_path: Path, dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    _node_with_peer(dev)
    dev.listen()
    rc, doc = jrun(capsys, dev, "status")
    assert rc == 0
    assert doc["module_loaded"] is True and doc["identity"]["public_key"] == encode_key(PUB)
    assert (doc["listening"], doc["listen_port"], doc["peers"], doc["sessions"]) == (True, 9253, 1, 0)
    assert doc["journal"]["next_seq"] == 4
    _rc, doc = jrun(capsys, dev, "config", "show")
    assert doc["version"] == 0 and doc["tentative"] is False and len(doc["hash"]) == 64


def test_connect_explicit_endpoint_forms(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    _node_with_peer(dev)
    for ep, shown in (
        ("10.0.0.9", "10.0.0.9:9253"),
        ("10.0.0.9:9300", "10.0.0.9:9300"),
        ("fd53:253::12", "[fd53:253::12]:9253"),
        ("[fd53:253::12]:9300", "[fd53:253::12]:9300"),
    ):
        rc, doc = jrun(capsys, dev, "connect", "--peer", "node2", ep, "--hold", "0")
        assert rc == 0 and doc["endpoint"] == shown, ep
    rc, _, err = run(capsys, dev, "connect", "--peer", "node2", "nothost", "--hold", "0")
    assert rc == 2 and "is not an IPv4 or IPv6 address" in err


def test_sessions_show_the_relay_a_session_runs_through(
    dev: FakeDevice, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _node_with_peer(dev)
    status = tmp_path / "status.json"
    monkeypatch.setenv("POOL_RELAY_STATUS", str(status))
    dev.inbound(PEER, port=40000)
    dev.accept()
    rc, doc = jrun(capsys, dev, "sessions")
    assert doc["sessions"][0]["path"] == "direct"  # no relay runs here
    carried = {"role": "destination", "peers": ["node1"], "via": "node2", "local_port": 40000}
    status.write_text(json.dumps({"format": 1, "carried": [carried]}))
    rc, doc = jrun(capsys, dev, "sessions")
    assert doc["sessions"][0]["path"] == "relay node2"
    rc, out, _ = run(capsys, dev, "sessions")
    assert "via node2" in out
    status.write_text("{half-written")
    rc, doc = jrun(capsys, dev, "sessions")
    assert rc == 0 and doc["sessions"][0]["path"] == "direct"
