"""poold against the FakeDevice: diffing, accept/connect policy, SIGHUP reload, module reload, journal."""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pooltools.common import sdnotify
from pooltools.config import conf
from pooltools.kernel import journal as jr
from pooltools.kernel import uapi
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.kernel.netaddr import parse_endpoint
from pooltools.poold import daemon as poold
from pooltools.protocol.keys import encode_key

PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
HIGH = bytes([0xDE]) + bytes(range(1, 32))  # greater than PUB: this node connects
LOW = bytes([0x10]) + bytes(range(1, 32))  # smaller than PUB: the peer connects
OTHER = bytes([0xEE]) + bytes(range(1, 32))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def node(tmp_path: Path) -> Path:
    key = tmp_path / "private.key"
    key.write_text(encode_key(PRIV) + "\n")
    key.chmod(0o600)
    return tmp_path


def write_conf(d: Path, peers: str = "", node_extra: str = "") -> Path:
    p = d / "pool.conf"
    p.write_text(f"[node]\nprivate_key_file = {d / 'private.key'}\nstate_dir = {d / 'state'}\n{node_extra}\n{peers}")
    return p


PEERS = f"""
[peer high]
public_key = {encode_key(HIGH)}
endpoint = 10.253.0.12:9253

[peer low]
public_key = {encode_key(LOW)}
endpoint = 10.253.0.10:9253
"""


def make(d: Path, dev: FakeDevice, clock: Clock | None = None) -> poold.Poold:
    p = poold.Poold(str(d / "pool.conf"), lambda: dev, executor=poold.SyncExecutor(), clock=clock or Clock())
    p.load_config()
    p.open_journal()
    return p


def test_start_applies_state_and_connect_policy(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    ident = dev.get_identity()
    assert bytes(ident.public_key) == PUB and ident.flags & uapi.POOL_IDENTITY_SET
    assert {p.name for p in dev.peers()} == {b"high", b"low"}
    assert dev.stats()["listening"] == 1 and d.owns_listener
    # connects only to the peer whose key is greater than ours
    sessions = dev.sessions()
    assert [bytes(s.peer_public_key) for s in sessions] == [HIGH]
    assert sessions[0].role == uapi.POOL_ROLE_INITIATOR
    assert list(d.held) == [sessions[0].index]
    # inbound from the other peer is accepted and held
    st = dev.inbound(LOW)
    d.step()
    assert st.index in d.held and st.fds == 1
    # the journal is persisted and verifies
    entries, _ = jr.read_file(node / "state" / "journal.jsonl")
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert jr.verify(entries).ok
    assert entries[-1].hash == dev.journal_read(0).head_hash


def test_restart_changes_nothing_that_is_right(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    d.shutdown()
    dev.mutations.clear()
    d2 = make(node, dev)
    d2.step()
    # no identity or peer changes; only listen (stopped by the first poold) and the connect
    assert dev.mutations == ["listen 9253", "connect"]
    entries, _ = jr.read_file(node / "state" / "journal.jsonl")
    assert jr.verify(entries).ok and entries[-1].hash == dev.journal_read(0).head_hash


def test_diff_removes_stale_peers_and_updates_idle_ones(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    dev.set_identity(PRIV)
    dev.peer_add(OTHER, "gone")
    dev.peer_add(LOW, "low-old-name")
    dev.mutations.clear()
    d = make(node, dev)
    d.step()
    assert {p.name for p in dev.peers()} == {b"high", b"low"}
    assert "peer_del" in dev.mutations and "set_identity" not in dev.mutations


def test_sighup_keeps_sessions_to_remaining_peers(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    st_low = dev.inbound(LOW)
    d.step()
    high_idx = next(i for i, s in d.held.items() if s.peer_public_key == HIGH)
    # drop 'low', keep 'high', add 'other'
    write_conf(node, PEERS.split("[peer low]")[0] + f"[peer other]\npublic_key = {encode_key(OTHER)}\n")
    assert d.reload() is True
    d.step()
    live = {s.index for s in dev.sessions()}
    assert high_idx in live and high_idx in d.held  # untouched
    assert st_low.index not in live and st_low.index not in d.held
    assert {p.name for p in dev.peers()} == {b"high", b"other"}


def test_sighup_with_bad_config_changes_nothing(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    dev.mutations.clear()
    before = d.conf
    write_conf(node, PEERS, node_extra="prot = 9253")
    assert d.reload() is False
    d.step()
    assert d.conf is before and dev.mutations == []
    (node / "private.key").chmod(0o644)
    write_conf(node, PEERS)
    assert d.reload() is False and dev.mutations == []


def test_config_rejected_at_start(node: Path) -> None:
    write_conf(node, f"[peer me]\npublic_key = {encode_key(PUB)}\n")
    d = poold.Poold(str(node / "pool.conf"), FakeDevice, executor=poold.SyncExecutor())
    with pytest.raises(poold.ConfigRejected, match="has this node's own public key"):
        d.load_config()
    write_conf(node)
    (node / "private.key").chmod(0o640)
    with pytest.raises(poold.ConfigRejected, match="mode 0640 is too open"):
        d.load_config()


def test_module_reload_reapplies_and_seeds_journal(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    head_before = jr.read_file(node / "state" / "journal.jsonl")[0][-1]
    dev.reload()  # rmmod + modprobe: fresh state, fresh journal (GENESIS only)
    d.step()
    assert bytes(dev.get_identity().public_key) == PUB
    assert {p.name for p in dev.peers()} == {b"high", b"low"}
    assert dev.stats()["listening"] == 1
    entries, _ = jr.read_file(node / "state" / "journal.jsonl")
    res = jr.verify(entries)  # one unbroken chain across the reload, no restart allowed
    assert res.ok, res.problems
    genesis = next(e for e in entries if e.seq == head_before.seq + 1)
    assert genesis.type == uapi.JournalType.GENESIS and genesis.prev_hash == head_before.hash


def test_new_poold_after_module_load_seeds(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    d.shutdown()
    dev.reload()
    d2 = make(node, dev)
    d2.step()
    entries, _ = jr.read_file(node / "state" / "journal.jsonl")
    assert jr.verify(entries).ok
    assert dev.journal_read(0).entries[0].seq > 0  # the kernel chain was seeded


def test_unseeded_kernel_chain_becomes_a_new_segment(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    make(node, dev).step()
    dev.reload()
    dev.listen()  # someone acted before poold: the kernel can no longer be seeded
    d = make(node, dev)
    d.step()
    entries, _ = jr.read_file(node / "state" / "journal.jsonl")
    assert not jr.verify(entries).ok
    res = jr.verify(entries, allow_restart=True)
    assert res.ok and res.segments == 2


def test_broken_persisted_journal_is_moved_aside(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    make(node, dev).step()
    path = node / "state" / "journal.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["detail_hex"] = b"forged".hex()
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    make(node, dev)
    assert not path.exists()
    journals = [p.name for p in (node / "state").iterdir() if p.name.startswith("journal")]
    assert [n.startswith("journal.jsonl.broken-") for n in journals] == [True]


def test_torn_last_line_is_dropped(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    make(node, dev).step()
    path = node / "state" / "journal.jsonl"
    good = path.read_bytes()
    path.write_bytes(good + b'{"seq": 99, "trunc')
    d = make(node, dev)
    assert path.read_bytes() == good and d.journal is not None and d.journal.head is not None


def test_connect_backoff(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    dev.refuse[HIGH] = errno.ECONNREFUSED
    clock = Clock()
    d = make(node, dev, clock)
    attempts = failing_connects(d, dev, clock, 100)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) >= 4
    assert all(g2 >= g1 * 1.2 for g1, g2 in itertools.pairwise(gaps) if g1 < poold.BACKOFF_MAX * 0.6), gaps
    del dev.refuse[HIGH]
    clock.t += 120
    d.step()
    d.step()
    assert any(s.peer_public_key == HIGH for s in d.held.values())
    assert d.backoff[HIGH].delay == 0


def test_peer_closes_then_reconnect(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    clock = Clock()
    d = make(node, dev, clock)
    d.step()
    (idx,) = d.held
    dev.peer_close(idx)
    d.step()
    assert idx not in d.held
    assert len(d.held) == 1  # reconnected at once (no failure, no backoff)


def test_shutdown_closes_sessions_and_owned_listener(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    dev.inbound(LOW)
    d.step()
    other = dev.attach(next(iter(d.held)))  # another daemon ATTACHed to a session
    d.shutdown()
    assert dev.stats()["listening"] == 0
    assert [s.index for s in dev.sessions()] == [other.index]  # only the attached one lives on


def test_the_sessions_held_are_published_for_the_services(node: Path) -> None:
    """/run/pool/sessions.json follows what poold holds (connected, accepted, ended) and is
    gone after it stops; a service watching it attaches poold's sessions and no client's, and
    ends poold's once poold stops (poold(8), pooltools.common.sessions)."""
    from pooltools.common.sessions import SessionWatcher, read_held

    write_conf(node, PEERS)
    dev = FakeDevice()
    path = node / "run" / "sessions.json"
    path.parent.mkdir()
    d = poold.Poold(str(node / "pool.conf"), lambda: dev, executor=poold.SyncExecutor(), sessions_file=path)
    d.load_config()
    d.open_journal()
    d.step()
    (connected,) = d.held
    inbound = dev.inbound(LOW)
    d.step()
    ids = {(s.index, s.established_ns) for s in dev.sessions()}
    assert read_held(path) == ids and {i for i, _ in ids} == {connected, inbound.index}
    mtime = path.stat().st_mtime_ns
    d.step()
    assert path.stat().st_mtime_ns == mtime, "rewritten although nothing changed"
    client = dev.connect(LOW, b"\x00" * 16, 9253)  # a client's own session: never published
    d.step()
    assert client.index not in {i for i, _ in read_held(path)}
    watcher = SessionWatcher(dev, lambda i, s, info: object(), held=lambda: read_held(path))
    watcher.discover()
    assert set(watcher.attached) == {connected, inbound.index}
    dev.peer_close(inbound.index)
    d.step()
    assert {i for i, _ in read_held(path)} == {connected}
    d.shutdown()
    assert not path.exists()
    watcher.discover()
    live = {s.index for s in dev.sessions()}
    assert connected not in live, "the service kept alive a session poold let go of"
    assert client.index in live, "a client's own session is not the services' to end"


def test_an_unwritable_sessions_file_is_reported_once(node: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    path = node / "missing" / "sessions.json"
    d = poold.Poold(str(node / "pool.conf"), lambda: dev, executor=poold.SyncExecutor(), sessions_file=path)
    d.load_config()
    d.open_journal()
    for _ in range(3):
        d.step()
    assert d.held, "poold stopped holding sessions over a file it cannot write"
    assert caplog.text.count("cannot publish the sessions held") == 1, caplog.text


def test_listen_false_does_not_touch_the_listener(node: Path) -> None:
    write_conf(node, PEERS, node_extra="listen = false")
    dev = FakeDevice()
    dev.listen(9400)
    d = make(node, dev)
    d.step()
    d.shutdown()
    assert dev.stats()["listen_port"] == 9400


def test_sd_notify(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        assert sdnotify.notify("READY=1", "STATUS=ok", env={"NOTIFY_SOCKET": path})
        assert s.recv(100) == b"READY=1\nSTATUS=ok"
        assert sdnotify.notify(*sdnotify.reloading(), env={"NOTIFY_SOCKET": path})
        assert s.recv(100).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert sdnotify.notify("READY=1", env={}) is False


def _poold(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tools = str(Path(__file__).resolve().parents[3] / "tools")
    e = {**os.environ, "PYTHONPATH": tools, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pooltools.poold.daemon", *args], capture_output=True, text=True, env=e, timeout=60
    )


def test_check_config_cli(node: Path) -> None:
    p = write_conf(node, PEERS)
    r = _poold("--check-config", "-c", str(p))
    assert r.returncode == 0 and "ok (2 peer(s), 2 with an endpoint)" in r.stdout
    p.write_text(p.read_text() + "\n[peer x]\npublic_key = nope\n")
    r = _poold("--check-config", str(p))
    assert r.returncode == 2
    assert r.stderr.startswith(f"poold: {p}:") and "public_key of peer 'x'" in r.stderr


def test_missing_module_exit_3(node: Path) -> None:
    p = write_conf(node, PEERS)
    r = _poold("-c", str(p), "--device", str(node / "nope"), "--wait-module", "0")
    assert r.returncode == 3
    assert "pool.ko not loaded (modprobe pool)" in r.stderr


def test_bad_config_exit_2(node: Path) -> None:
    p = write_conf(node, PEERS, node_extra="prot = 1")
    r = _poold("-c", str(p), "--device", str(node / "nope"))
    assert r.returncode == 2 and "unknown key 'prot' in [node]" in r.stderr


def test_run_loop_signals_and_notify(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real main loop: READY, SIGHUP -> RELOADING/READY, SIGTERM -> STOPPING and exit 0."""
    import signal
    import threading

    conf_path = write_conf(node, PEERS)
    dev = FakeDevice()
    monkeypatch.setattr(poold, "Device", lambda path: dev)
    sock_path = str(node / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    pid = os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
        ns.bind(sock_path)
        timers = [
            threading.Timer(0.8, os.kill, (pid, signal.SIGHUP)),
            threading.Timer(2.0, os.kill, (pid, signal.SIGTERM)),
        ]
        for t in timers:
            t.start()
        try:
            rc = poold.run(poold.build_parser().parse_args(["-c", str(conf_path), "--wait-module", "1"]))
        finally:
            for t in timers:
                t.cancel()
            signal.set_wakeup_fd(-1)
            for s, h in saved.items():
                signal.signal(s, h)
        ns.setblocking(False)
        msgs = []
        with contextlib.suppress(BlockingIOError):
            while True:
                msgs.append(ns.recv(4096).decode())
    assert rc == 0
    kinds = [m.split("\n")[0] for m in msgs if not m.startswith("STATUS=")]
    assert kinds == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], msgs
    assert dev.stats()["listening"] == 0  # it owned the listener and stopped it
    assert dev.sessions() == []


def test_one_rejected_peer_does_not_block_the_rest(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    real_add = dev.peer_add

    def picky(key: bytes, *a: object) -> object:
        if key == LOW:
            from pooltools.kernel.device import raise_errno

            raise_errno("add peer", errno.EINVAL)
        return real_add(key, *a)

    monkeypatch.setattr(dev, "peer_add", picky)
    d = make(node, dev)
    d.step()
    assert {p.name for p in dev.peers()} == {b"high"}
    assert dev.stats()["listening"] == 1 and d.applied


def test_unwritable_journal_does_not_stop_the_daemon(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    size = (node / "state" / "journal.jsonl").stat().st_size
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if len(data) > 100:
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    dev.inbound(LOW)
    d.step()  # logs, keeps running
    assert (node / "state" / "journal.jsonl").stat().st_size == size  # no torn line left behind
    monkeypatch.setattr(os, "write", real_write)
    d.step()
    entries, _ = jr.read_file(node / "state" / "journal.jsonl")
    assert jr.verify(entries).ok and entries[-1].hash == dev.journal_read(0).head_hash


def test_device_denied_exits_for_a_restart(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/pool appeared after start but the unit's device rule denies it: exit 3 for systemd to restart."""
    import signal

    from pooltools.kernel.device import raise_errno

    conf_path = write_conf(node, PEERS)

    def denied(path: str) -> object:
        raise_errno("open", errno.EPERM)  # what a device cgroup returns
        return None

    monkeypatch.setattr(poold, "Device", denied)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        rc = poold.run(poold.build_parser().parse_args(["-c", str(conf_path), "--wait-module", "5"]))
    finally:
        signal.set_wakeup_fd(-1)
        for s, h in saved.items():
            signal.signal(s, h)
    assert rc == 3


# ---- configuration versions (issue 6): who owns the trust store


def version_doc(tmp_path: Path, name: str, peers: dict[str, tuple[bytes, str | None]], **kw: object) -> str:
    """A configuration document file with these peers {name: (key, endpoint)}."""
    d: dict = {"heartbeat_seconds": 5, **kw}
    d["peers"] = [{"name": n, "public_key": encode_key(k), "endpoint": ep} for n, (k, ep) in peers.items()]
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def poolctl_run(dev: FakeDevice, node: Path, *argv: str) -> dict:
    from pooltools.poolctl import cli as poolctl

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = poolctl.main(["--json", *argv, "--state-dir", str(node / "state")], lambda: dev)
    doc = json.loads(out.getvalue())
    assert rc == 0, doc
    return doc


def trust(dev: FakeDevice) -> set[bytes]:
    return {bytes(p.public_key) for p in dev.peers()}


VERSION_PEERS = {"high": (HIGH, "10.253.0.12:9253"), "other": (OTHER, "10.253.0.14:9253")}


@pytest.mark.parametrize("confirm_within", ["0", "300"], ids=["confirmed", "tentative"])
def test_sighup_with_an_active_version_keeps_its_trust_store(
    node: Path, caplog: pytest.LogCaptureFixture, confirm_within: str
) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    high_idx = next(i for i, s in d.held.items() if s.peer_public_key == HIGH)
    doc = version_doc(node, "v.json", VERSION_PEERS, heartbeat_seconds=9)
    poolctl_run(dev, node, "config", "apply", doc, "--confirm-within", confirm_within)
    d.step()
    assert trust(dev) == {HIGH, OTHER}
    # the version's peer with a greater key and an endpoint is connected to (pool.conf does not list it)
    assert {s.peer_public_key for s in d.held.values()} == {HIGH, OTHER}
    # pool.conf now drops 'high' and lists 'low' only; SIGHUP must not touch the version's trust store
    write_conf(node, PEERS.split("[peer high]")[0] + PEERS.split("10.253.0.12:9253")[1])
    dev.mutations.clear()
    before = [(bytes(p.public_key), p.name, bytes(p.endpoint_addr), p.endpoint_port) for p in dev.peers()]
    caplog.clear()
    with caplog.at_level("INFO", logger="poold"):
        assert d.reload() is True
    d.step()
    assert [(bytes(p.public_key), p.name, bytes(p.endpoint_addr), p.endpoint_port) for p in dev.peers()] == before
    assert not [m for m in dev.mutations if m.startswith(("peer_", "config_"))], dev.mutations
    assert high_idx in {s.index for s in dev.sessions()} and high_idx in d.held  # session untouched
    c = dev.config_get()
    assert c.version == 1 and c.heartbeat_seconds == 9  # tunables untouched
    assert bool(c.flags & uapi.POOL_CONFIG_TENTATIVE) == (confirm_within != "0")
    assert "configuration version 1" in caplog.text and "are not applied while a version is active" in caplog.text
    # a restarted poold defers too
    d.shutdown()
    dev.mutations.clear()
    d2 = make(node, dev)
    d2.step()
    assert trust(dev) == {HIGH, OTHER} and not [m for m in dev.mutations if m.startswith(("peer_", "config_"))]
    d2.shutdown()


def test_sighup_without_a_version_applies_pool_conf_peers(node: Path) -> None:
    """Version 0 (no version ever applied): pool.conf's peers are the trust store, diffed."""
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    st_low = dev.inbound(LOW)
    d.step()
    high_idx = next(i for i, s in d.held.items() if s.peer_public_key == HIGH)
    assert dev.config_get().version == 0
    write_conf(node, PEERS.split("[peer low]")[0] + f"[peer other]\npublic_key = {encode_key(OTHER)}\n")
    dev.mutations.clear()
    assert d.reload() is True
    d.step()
    assert trust(dev) == {HIGH, OTHER}
    assert high_idx in {s.index for s in dev.sessions()} and high_idx in d.held  # kept
    assert st_low.index not in {s.index for s in dev.sessions()}  # its peer left the trust store
    assert dev.mutations.count("peer_del") == 1 and "peer_add other" in dev.mutations
    assert "set_identity" not in dev.mutations


def test_rollback_past_the_first_version_hands_the_trust_store_back_to_pool_conf(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v.json", {"other": (OTHER, None)}))
    d.step()
    assert trust(dev) == {OTHER}
    write_conf(node, PEERS + f"[peer late]\npublic_key = {encode_key(bytes([0x33]) + bytes(range(1, 32)))}\n")
    d.reload()  # version 1 is active: pool.conf's new peer waits
    assert trust(dev) == {OTHER}
    poolctl_run(dev, node, "config", "rollback")  # 1 -> 0: the kernel's snapshot of version 0
    d.step()  # poold sees version 0: pool.conf's peers (with 'late') apply again
    assert dev.config_get().version == 0 and len(trust(dev)) == 3 and HIGH in trust(dev)
    assert any(s.peer_public_key == HIGH for s in d.held.values())
    # and a module reload keeps it so: version 0 is what the operator confirmed by rolling back
    dev.reload()
    d.step()
    assert dev.config_get().version == 0 and len(trust(dev)) == 3


def test_boot_restores_the_last_confirmed_version_not_a_tentative_one(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS, heartbeat_seconds=7))
    poolctl_run(
        dev, node, "config", "apply", version_doc(node, "v2.json", {"low": (LOW, None)}), "--confirm-within", "300"
    )
    assert dev.config_get().version == 2 and trust(dev) == {LOW}
    d.shutdown()
    dev.reload()  # power cut before the confirm
    d2 = make(node, dev)
    d2.step()
    c = dev.config_get()
    assert c.version == 1 and c.heartbeat_seconds == 7 and not c.flags & uapi.POOL_CONFIG_TENTATIVE
    assert trust(dev) == {HIGH, OTHER}
    assert {s.peer_public_key for s in d2.held.values()} == {HIGH, OTHER}  # connects to the version's peers
    # the version restored at boot sits on pool.conf's trust store (version 0), not on an empty one
    poolctl_run(dev, node, "config", "rollback")
    d2.step()
    assert dev.config_get().version == 0 and trust(dev) == {HIGH, LOW}


def test_module_reload_under_a_running_poold_restores_the_confirmed_version(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS))
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v2.json", {}), "--confirm-within", "60")
    dev.reload()
    d.step()
    assert dev.config_get().version == 1 and trust(dev) == {HIGH, OTHER}


def test_boot_with_a_corrupted_confirmed_version_uses_the_one_confirmed_before(
    node: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pooltools.config import store as cs

    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS, heartbeat_seconds=7))
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v2.json", {"low": (LOW, None)}, heartbeat_seconds=8))
    d.shutdown()
    path = cs.Store(node / "state").path(2)
    rec = json.loads(path.read_text())
    rec["config"]["heartbeat_seconds"] = 9  # content changed, recorded hash kept: a hash mismatch
    path.write_text(json.dumps(rec))
    dev.reload()
    d2 = make(node, dev)
    with caplog.at_level("INFO", logger="poold"):
        d2.step()
    c = dev.config_get()
    assert c.version == 1 and c.heartbeat_seconds == 7 and trust(dev) == {HIGH, OTHER}
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        f"configuration version 2 (confirmed) not restored: {path}: corrupted "
        f"(content does not match its hash {rec['hash'][:16]}...): not used"
    ]
    assert "configuration version 1 restored instead" in caplog.text
    assert path.read_text() == json.dumps(rec)  # the evidence is left as it is


def test_boot_with_every_confirmed_version_unusable_keeps_pool_conf(
    node: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pooltools.config import store as cs

    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS))
    d.shutdown()
    cs.Store(node / "state").path(1).write_text("garbage")
    dev.reload()
    d2 = make(node, dev)
    with caplog.at_level("INFO", logger="poold"):
        d2.step()
    assert dev.config_get().version == 0 and trust(dev) == {HIGH, LOW}
    assert "configuration version 1 (confirmed) not restored" in caplog.text
    assert "no confirmed configuration version could be restored (tried 1)" in caplog.text


def test_deadline_rollback_reconnects_to_the_restored_versions_peers(node: Path) -> None:
    write_conf(node, "")  # pool.conf lists no peer at all: the versions own the trust store
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS))
    d.step()
    assert {s.peer_public_key for s in d.held.values()} == {HIGH, OTHER}
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v2.json", {}), "--confirm-within", "5")
    d.step()
    assert d.held == {} and trust(dev) == set()
    dev.config_expire()  # not confirmed in time: pool.ko restores version 1 by itself
    d.step()
    assert dev.config_get().version == 1
    assert {s.peer_public_key for s in d.held.values()} == {HIGH, OTHER}


def test_pool_conf_peers_are_applied_under_the_store_lock(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """poolctl holds the store lock while it applies a version: poold's version-0 check and its
    peer changes happen under the same lock, so they cannot land on a version applied meanwhile."""
    import fcntl

    write_conf(node, PEERS)
    dev = FakeDevice()
    seen: list[bool] = []
    real_add = dev.peer_add

    def add(*a: object) -> object:
        fd = os.open(node / "state" / "config" / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(False)  # nobody held it
        except BlockingIOError:
            seen.append(True)
        finally:
            os.close(fd)
        return real_add(*a)

    monkeypatch.setattr(dev, "peer_add", add)
    d = make(node, dev)
    d.step()
    write_conf(node, PEERS + f"[peer other]\npublic_key = {encode_key(OTHER)}\n")
    d.reload()
    assert seen == [True, True, True]


def test_unusable_store_does_not_stop_pool_conf_peers(node: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_conf(node, PEERS)
    (node / "state").mkdir()
    (node / "state" / "config").write_text("a file where the store's folder should be")
    dev = FakeDevice()
    d = make(node, dev)
    with caplog.at_level("WARNING", logger="poold"):
        d.step()
    assert trust(dev) == {HIGH, LOW} and "configuration store not locked" in caplog.text


def test_wakes_at_a_tentative_versions_deadline_to_reconnect_after_pool_kos_rollback(node: Path) -> None:
    """pool.ko rolls a tentative version back by itself: poold's next pass comes just after the
    deadline (not at its idle wake-up), and stops hurrying once the version is confirmed."""
    write_conf(node, "")
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    assert d.next_wakeup() == poold.IDLE_WAKEUP
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS))
    d.step()
    d.backoff.clear()  # no connect attempt due: only the deadline can shorten the wait
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v2.json", {}), "--confirm-within", "3")
    d.step()
    d.backoff.clear()
    assert 2.0 < d.next_wakeup() <= 3.0 + poold.DEADLINE_MARGIN
    dev._config.deadline_ns = time.time_ns() - 1_000_000_000  # the deadline passed, the rollback is late
    d.step()
    d.backoff.clear()
    assert d.next_wakeup() == poold.DEADLINE_MARGIN
    dev._config.deadline_ns = time.time_ns() - int((poold.DEADLINE_HURRY + 1) * 1e9)
    d.step()
    d.backoff.clear()
    assert d.next_wakeup() == poold.IDLE_WAKEUP  # long overdue: back to the idle pace
    poolctl_run(dev, node, "config", "confirm")
    d.step()
    d.backoff.clear()
    assert d.tentative_deadline_ns == 0 and d.next_wakeup() == poold.IDLE_WAKEUP


def failing_connects(d: poold.Poold, dev: FakeDevice, clock: Clock, seconds: float) -> list[float]:
    """Step every 0.5 s of the fake clock for `seconds`; the times of failed connects."""
    attempts = []
    for _ in range(int(seconds * 2)):
        before = dev.stats()["handshakes_failed"]
        d.step()
        if dev.stats()["handshakes_failed"] > before:
            attempts.append(clock.t)
        clock.t += 0.5
    return attempts


def backed_off(d: poold.Poold, dev: FakeDevice, clock: Clock, key: bytes) -> None:
    """Let connects to `key` fail until its next attempt is more than 3 s away, then let the peer answer."""
    dev.refuse[key] = errno.ECONNREFUSED
    failing_connects(d, dev, clock, 30)
    while d.backoff[key].next_at <= clock.t + 3:
        failing_connects(d, dev, clock, 0.5)
    del dev.refuse[key]


def test_backoff_is_capped_so_a_returning_peer_is_reached_soon(node: Path) -> None:
    """A peer down for minutes (its rollout) is retried at least every BACKOFF_MAX + 20 %."""
    write_conf(node, PEERS)
    dev = FakeDevice()
    dev.refuse[HIGH] = errno.ECONNREFUSED
    clock = Clock()
    d = make(node, dev, clock)
    attempts = failing_connects(d, dev, clock, 300)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert max(gaps) <= poold.BACKOFF_MAX * 1.2 + 0.5, gaps
    assert sum(1 for g in gaps if g >= poold.BACKOFF_MAX * 0.8 - 0.5) >= 5, gaps  # it did reach the cap


def test_a_new_version_retries_backed_off_peers_at_once(node: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Both nodes of a pair apply a version just after a rollout brought one of them up: the
    connecting side must not wait out a backoff built up while the other node was down."""
    write_conf(node, "")
    dev = FakeDevice()
    clock = Clock()
    d = make(node, dev, clock)
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS))
    backed_off(d, dev, clock, HIGH)  # the peer is up again, while the backoff still has seconds to run
    assert not any(s.peer_public_key == HIGH for s in d.held.values())
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v2.json", VERSION_PEERS, heartbeat_seconds=7))
    with caplog.at_level("INFO", logger="poold"):
        d.step()
    assert any(s.peer_public_key == HIGH for s in d.held.values())
    assert "configuration version 2: retrying 1 peer(s) now" in caplog.text


def test_sighup_retries_backed_off_peers_at_once(node: Path) -> None:
    write_conf(node, PEERS)
    dev = FakeDevice()
    clock = Clock()
    d = make(node, dev, clock)
    backed_off(d, dev, clock, HIGH)
    assert d.reload() is True
    d.step()
    assert any(s.peer_public_key == HIGH for s in d.held.values())


def test_after_a_version_change_failed_connects_retry_quickly_then_back_off(node: Path) -> None:
    """pool.ko rolled back at our deadline, the peer's rollback comes a moment later: poold keeps
    trying every CHANGE_RETRY seconds for CHANGE_RETRY_WINDOW, then doubles its waits again."""
    write_conf(node, "")
    dev = FakeDevice()
    clock = Clock()
    d = make(node, dev, clock)
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", VERSION_PEERS))
    d.step()
    dev.refuse[HIGH] = errno.ECONNREFUSED  # the peer does not trust us (yet)
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v2.json", VERSION_PEERS, heartbeat_seconds=7))
    for held in list(d.held.values()):
        dev.peer_close(held.index)
    start = clock.t
    attempts = failing_connects(d, dev, clock, 40)
    quick = [t for t in attempts if t < start + poold.CHANGE_RETRY_WINDOW]
    gaps = [b - a for a, b in itertools.pairwise(quick)]
    assert len(quick) >= 10 and all(g <= poold.CHANGE_RETRY + 0.5 for g in gaps), gaps
    later = [b - a for a, b in itertools.pairwise(t for t in attempts if t >= start + poold.CHANGE_RETRY_WINDOW)]
    assert later and max(later) > 3, later  # backing off again
    del dev.refuse[HIGH]
    poolctl_run(dev, node, "config", "rollback")
    d.step()
    assert any(s.peer_public_key == HIGH for s in d.held.values())


RELAYED = (
    PEERS
    + f"""
[peer far]
public_key = {encode_key(OTHER)}
endpoint = 10.253.1.13:9253
relays = high

[peer hidden]
public_key = {encode_key(bytes([0xEF]) + bytes(range(1, 32)))}
relays = high
"""
)


def test_a_peer_that_names_relays_is_reached_through_the_door_when_its_endpoint_fails(node: Path) -> None:
    write_conf(node, RELAYED)
    dev = FakeDevice()
    far_ep = parse_endpoint("10.253.1.13:9253")
    dev.unreachable.add((far_ep.addr, far_ep.port))
    clock = Clock()
    d = make(node, dev, clock)
    d.step()

    def endpoints(key: bytes) -> list[int]:
        return [s.peer_port for s in dev.sessions() if bytes(s.peer_public_key) == key]

    hidden = bytes([0xEF]) + bytes(range(1, 32))
    assert endpoints(hidden) == [conf.RELAY_DOOR.port]  # no endpoint: the door at once
    assert endpoints(OTHER) == []  # the endpoint was tried first and failed
    assert d.backoff[OTHER].direct_failed
    clock.t += poold.BACKOFF_MAX * 2
    d.step()
    d.step()
    assert endpoints(OTHER) == [conf.RELAY_DOOR.port]  # then through the relays
    assert not d.backoff[OTHER].direct_failed


def test_the_status_line_follows_sessions_as_they_come(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(poold.sdnotify, "notify", lambda *msgs, **_: sent.extend(msgs) or True)
    write_conf(node, PEERS)
    dev = FakeDevice()
    d = make(node, dev)
    d.step()
    assert sent[-1].endswith("2 peer(s), 1 session(s) held")
    count = len(sent)
    d.step()
    assert len(sent) == count  # nothing changed: nothing sent
    dev.inbound(LOW)
    d.step()
    assert sent[-1].endswith("2 session(s) held")


def test_a_configuration_version_names_the_relays_of_its_peers(node: Path) -> None:
    """At an active version a peer's relays are the version's (docs/relay.md section 2): a peer
    only the version knows, with no endpoint, is reached through the door; rolled back to a
    version without relays, poold no longer tries the door for it."""
    write_conf(node, PEERS)  # pool.conf names no relays
    dev = FakeDevice()
    clock = Clock()
    d = make(node, dev, clock)
    d.step()
    doc = json.loads(
        Path(version_doc(node, "v1.json", {"high": (HIGH, "10.253.0.12:9253"), "far": (OTHER, None)})).read_text()
    )
    poolctl_run(dev, node, "config", "apply", version_doc(node, "v1.json", {"high": (HIGH, "10.253.0.12:9253")}))
    doc["peers"][1]["relays"] = ["high"]
    (node / "v2.json").write_text(json.dumps(doc))
    poolctl_run(dev, node, "config", "apply", str(node / "v2.json"))
    d.step()
    assert d.relays_of(OTHER) == ("high",)
    assert [s.peer_port for s in dev.sessions() if bytes(s.peer_public_key) == OTHER] == [conf.RELAY_DOOR.port]
    poolctl_run(dev, node, "config", "rollback")  # to v1: "far" is not a peer any more
    d.step()
    assert d.relays_of(OTHER) == () and OTHER not in d.targets
