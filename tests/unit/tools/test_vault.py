"""pool_vault's server and client (docs/vault.md), over in-memory links and a real store on disk."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pooltools.common.link import LinkTimeout, MemoryLink
from pooltools.protocol.keys import encode_key
from pooltools.vault import acl as aclmod
from pooltools.vault import wire
from pooltools.vault.client import RemoteError, TransferError, VaultClient
from pooltools.vault.server import Conversation, Limits, Vault
from pooltools.vault.store import Store

WRITER = bytes(range(32))
READER = bytes(range(1, 33))
STRANGER = bytes(range(2, 34))
BS = wire.BLOCK_SIZE_MIN


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Env:
    def __init__(self, tmp: Path, keep: int = 5, limits: Limits | None = None) -> None:
        self.tmp = tmp
        self.store = Store(tmp / "vault", keep_versions=keep, max_file_size=1 << 20)
        self.acl = aclmod.Acl(
            1,
            (
                aclmod.grant(encode_key(WRITER), "writer", "read-write"),
                aclmod.grant(encode_key(READER), "reader", "read", "shared"),
            ),
        )
        self.vault = Vault(self.store, self.acl, limits or Limits(idle_timeout=5.0))
        self.threads: list[threading.Thread] = []

    def client(self, key: bytes = WRITER, depth: int = 64) -> VaultClient:
        near, far = MemoryLink.pair(depth)
        conv = Conversation(self.vault, far, key)
        t = threading.Thread(target=conv.run, daemon=True)
        t.start()
        self.threads.append(t)
        return VaultClient(near, timeout=10)

    def file(self, name: str, data: bytes) -> Path:
        p = self.tmp / name
        p.write_bytes(data)
        return p

    def visible(self) -> list[str]:
        root = self.store.root
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    for t in e.threads:
        t.join(0)


def refused(code: str, fn, *args, **kw) -> RemoteError:
    with pytest.raises(RemoteError) as ei:
        fn(*args, **kw)
    assert ei.value.code == code, ei.value
    return ei.value


# ---- transfers


def test_push_pull_round_trip_with_versions(env: Env) -> None:
    v1 = os.urandom(5 * BS + 123)
    c = env.client()
    done = c.push(env.file("a", v1), "docs/a.bin", block_size=BS)
    assert (done["version"], done["sha256"], done["size"]) == (1, sha(v1), len(v1))
    assert env.visible() == ["docs/a.bin"]
    assert not list(env.store.staging.iterdir())  # nothing left behind

    # no silent overwrite: "new" again, or a stale base, is a conflict; the right base is not
    refused("conflict", c.push, env.file("b", b"other"), "docs/a.bin", block_size=BS)
    refused("conflict", c.push, env.file("b", b"other"), "docs/a.bin", base=sha(b"stale"), block_size=BS)
    v2 = os.urandom(2 * BS)
    assert c.push(env.file("b", v2), "docs/a.bin", base=sha(v1), block_size=BS)["version"] == 2

    out = env.tmp / "out"
    assert c.pull("docs/a.bin", out)["sha256"] == sha(v2)
    assert out.read_bytes() == v2
    c.pull("docs/a.bin", out, version=1, block_size=BS)
    assert out.read_bytes() == v1  # the replaced version is still reachable
    hist = c.history("docs/a.bin")["versions"]
    assert [(v["version"], v["sha256"]) for v in hist] == [(2, sha(v2)), (1, sha(v1))]
    assert c.stat("docs/a.bin")["version"] == 2
    assert [e["path"] for e in c.list()] == ["docs/a.bin"]


def test_empty_file_and_forced_replace(env: Env) -> None:
    c = env.client()
    assert c.push(env.file("e", b""), "empty")["size"] == 0
    assert (env.store.root / "empty").read_bytes() == b""
    assert c.push(env.file("x", b"forced"), "empty", force=True)["version"] == 2
    out = env.tmp / "o"
    c.pull("empty", out, version=1)
    assert out.read_bytes() == b""


def test_keeps_the_last_n_versions(tmp_path: Path) -> None:
    env = Env(tmp_path, keep=3)
    c = env.client()
    base = "new"
    for i in range(5):
        data = f"version {i}".encode()
        c.push(env.file("f", data), "f", base=base)
        base = sha(data)
    assert [v["version"] for v in c.history("f")["versions"]] == [5, 4, 3]
    refused("not_found", c.pull, "f", tmp_path / "o", version=1)
    kept = [p.name for p in env.store.versions_dir.rglob("v*")]
    assert sorted(kept) == ["v3", "v4"]  # v5 is the visible file


def test_delete_needs_the_base_and_keeps_history(env: Env) -> None:
    c = env.client()
    c.push(env.file("d", b"doomed"), "d")
    refused("conflict", c.delete, "d", sha(b"not it"))
    assert c.delete("d", sha(b"doomed"))["version"] == 2
    refused("not_found", c.stat, "d")
    assert env.visible() == []
    assert [v["deleted"] for v in c.history("d")["versions"]] == [True, False]
    c.pull("d", env.tmp / "back", version=1)
    assert (env.tmp / "back").read_bytes() == b"doomed"
    assert c.push(env.file("d2", b"again"), "d")["version"] == 3  # "new" fits a deleted file


def test_change_on_the_node_is_recorded_as_a_version(env: Env) -> None:
    c = env.client()
    c.push(env.file("n", b"one"), "n")
    (env.store.root / "n").write_bytes(b"edited by hand")
    st = c.stat("n")
    assert (st["version"], st["sha256"]) == (2, sha(b"edited by hand"))


def test_list_pages_and_prefixes(env: Env) -> None:
    c = env.client()
    names = [f"many/{'x' * 200}{i:03d}" for i in range(300)]  # more than one reply holds
    for n in names:
        (env.store.root / "many").mkdir(exist_ok=True)
        (env.store.root / n).write_bytes(b"")
    (env.store.root / "many2").write_bytes(b"")
    listed = [e["path"] for e in c.list("many")]
    assert listed == sorted(names)


# ---- interruption and integrity


def _push_blocks(env: Env, key: bytes, path: str, data: bytes, upto: int, corrupt: int | None = None) -> VaultClient:
    """Start a push and send blocks [0, upto) (block `corrupt` damaged) by hand."""
    c = env.client(key)
    start = c.request("push", path=path, size=len(data), sha256=sha(data), base="new", block_size=BS)
    for i in range(start["have"], upto):
        chunk = data[i * BS : (i + 1) * BS]
        msg = wire.block(i, chunk)
        if i == corrupt:
            msg = msg[:-1] + bytes([msg[-1] ^ 1])
        c.link.send(msg)
    return c


def _wait(cond, what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_interrupted_push_leaves_nothing_visible_and_resumes(env: Env) -> None:
    data = os.urandom(10 * BS + 7)
    c = _push_blocks(env, WRITER, "big", data, upto=6)
    _wait(lambda: env.vault.counts["bytes_received"] == 6 * BS, "six blocks stored")
    c.link.close()  # the client dies
    _wait(lambda: not env.vault.conversations, "conversation ended")
    assert env.visible() == []
    assert env.vault.counts["pushes_interrupted"] == 1
    done = env.client().push(env.file("big", data), "big", block_size=BS)
    assert done["resumed_from_block"] == 6 and done["sha256"] == sha(data)
    assert (env.store.root / "big").read_bytes() == data
    assert not list(env.store.staging.iterdir())


def test_resume_offers_only_blocks_that_still_verify(env: Env) -> None:
    data = os.urandom(8 * BS)
    c = _push_blocks(env, WRITER, "r", data, upto=5)
    _wait(lambda: env.vault.counts["bytes_received"] == 5 * BS, "five blocks stored")
    c.link.close()
    _wait(lambda: not env.vault.conversations, "conversation ended")
    part = next(env.store.staging.glob("*.part"))
    with open(part, "r+b") as f:  # a block lost in a crash
        f.seek(3 * BS)
        f.write(b"\0" * 10)
    assert env.client().push(env.file("r", data), "r", block_size=BS)["resumed_from_block"] == 3


def test_damaged_block_is_refused_before_it_is_written(env: Env) -> None:
    data = os.urandom(6 * BS)
    c = _push_blocks(env, WRITER, "dmg", data, upto=6, corrupt=2)
    with pytest.raises(RemoteError) as ei:
        c._reply()
    assert ei.value.code == "bad_block" and "block 2" in ei.value.detail
    assert env.visible() == []
    # the conversation goes on: the stray blocks are dropped, the next request is answered
    assert c.status()["peer"]["name"] == "writer"
    done = c.push(env.file("dmg", data), "dmg", block_size=BS)
    assert done["resumed_from_block"] == 2


def test_wrong_whole_file_hash_is_refused(env: Env) -> None:
    c = env.client()
    data = os.urandom(3 * BS)
    start = c.request("push", path="h", size=len(data), sha256=sha(b"something else"), base="new", block_size=BS)
    assert start["have"] == 0
    for i in range(3):
        c.link.send(wire.block(i, data[i * BS : (i + 1) * BS]))
    refused("bad_hash", c._reply)
    assert env.visible() == [] and not list(env.store.staging.iterdir())


def test_too_large_is_refused_before_any_block(env: Env) -> None:
    c = env.client()
    refused("too_large", c.request, "push", path="x", size=(1 << 20) + 1, sha256=sha(b""), base="new")
    assert env.vault.refusals["too_large"] == 1


# ---- access


def test_read_only_peer_with_a_prefix(env: Env) -> None:
    w = env.client()
    w.push(env.file("s", b"shared"), "shared/s")
    w.push(env.file("p", b"private"), "private/p")
    r = env.client(READER)
    assert r.status()["peer"] == {"name": "reader", "scope": "read", "prefix": "shared"}
    r.pull("shared/s", env.tmp / "got")
    assert (env.tmp / "got").read_bytes() == b"shared"
    refused("denied", r.pull, "private/p", env.tmp / "no")
    refused("denied", r.stat, "sharedx")
    refused("denied", r.push, env.file("w", b"w"), "shared/new")
    refused("denied", r.delete, "shared/s", sha(b"shared"))
    assert [e["path"] for e in r.list()] == ["shared/s"]  # the whole vault, as this peer sees it
    refused("denied", lambda: list(r.list("private")))
    assert not (env.tmp / "no").exists()


def test_stranger_and_revoked_peer(env: Env) -> None:
    s = env.client(STRANGER)
    for call in (s.status, lambda: s.stat("a"), lambda: list(s.list())):
        refused("not_enrolled", call)
    assert env.vault.refusals["not_enrolled"] == 3

    r = env.client(READER)
    assert r.status()["peer"]["name"] == "reader"
    ended = env.vault.set_acl(aclmod.revoked(env.acl, "reader"))
    assert [c.key_text for c in ended] == [encode_key(READER)]
    for conv in ended:
        conv.revoke()
    refused("revoked", r._reply)  # told at once, not at its next request


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../etc/passwd", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("a/./b", "'.'"),
        ("a\0b", "NUL"),
        ("x" * 256, "255"),
        ("\ud800", "UTF-8"),
        ("", "1 to 4096"),
    ],
)
def test_bad_paths_are_refused_and_counted(env: Env, path: str, why: str) -> None:
    c = env.client()
    e = refused("bad_path", c.push, env.file("f", b"data"), path)
    assert why in e.detail
    assert env.vault.refusals["bad_path"] == 1
    assert env.visible() == []


def test_links_out_of_the_root_and_files_as_folders(env: Env, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    os.symlink(outside, env.store.root / "escape")
    (env.store.root / "inside").mkdir()
    os.symlink("inside", env.store.root / "alias")
    c = env.client()
    assert "leading out of the vault root" in refused("bad_path", c.stat, "escape/secret").detail
    refused("bad_path", c.push, env.file("f", b"x"), "escape/new")
    assert not (outside / "new").exists()
    c.push(env.file("f", b"x"), "alias/ok")  # a link inside the root is followed
    assert (env.store.root / "inside" / "ok").read_bytes() == b"x"
    c.push(env.file("g", b"y"), "file")
    assert "is a file, not a folder" in refused("bad_path", c.push, env.file("h", b"z"), "file/under").detail
    assert "is a folder" in refused("bad_path", c.stat, "inside").detail


# ---- malformed messages


@pytest.mark.parametrize(
    ("msg", "code", "detail"),
    [
        (b"\x01", "bad_request", "shorter than the 4-byte prefix"),
        (b"\x02\x01\x00\x02{}", "unsupported_format", "format 2"),
        (b"\x01\x01\x00\x09{}", "bad_request", "runs past"),
        (b"\x01\x01\x00\x02[]", "bad_request", "not a JSON object"),
        (b"\x01\x01\x00\x02\xff\xfe", "bad_request", "not JSON in UTF-8"),
        (b"\x01\x01\x00\x02{}xx", "bad_request", "after its header"),
        (b"\x01\x09\x00\x02{}", "bad_request", "unknown message kind 9"),
        (b"\x01\x02\x00\x02{}", "bad_request", "not REPLY"),
        (b"\x01\x03\x00\x05hello", "bad_request", "BLOCK header of 5 bytes"),
        (wire.request("nope"), "unknown_op", "'nope'"),
        (wire.request("__init__"), "unknown_op", ""),
        (wire.request("stat"), "bad_request", "no 'path'"),
        (wire.request("stat", path=7), "bad_request", "'path' must be a string"),
        (wire.request("pull", path="a", block_size=True), "bad_request", "not a boolean"),
        (wire.request("pull", path="a", block_size=100), "bad_request", "outside 4096..65024"),
        (wire.request("push", path="a", size=1, sha256="ABC", base="new"), "bad_request", "64 lower-case"),
        (wire.request("push", path="a", size=-1, sha256="0" * 64, base="new"), "bad_request", "'size' -1"),
        (wire.request("push", path="a", size=1, sha256="0" * 64, base="old"), "bad_request", "'base'"),
        (wire.request("delete", path="a"), "bad_request", "no 'base'"),
    ],
)
def test_malformed_requests_get_the_documented_error(env: Env, msg: bytes, code: str, detail: str) -> None:
    c = env.client()
    c.link.send(msg)
    raw = c.link.recv(5)
    assert raw is not None
    reply = wire.decode(raw)
    assert reply.kind == wire.Kind.REPLY
    assert (reply.header["ok"], reply.header["error"]) == (False, code), reply.header
    assert detail in reply.header["detail"]
    if code == "unsupported_format":
        assert reply.header["formats"] == [1]
    assert c.status()["ok"]  # and the conversation goes on


def test_blocks_without_a_push_are_refused_once(env: Env) -> None:
    """As after a server restart in the middle of a push: the client hears of it at once."""
    c = env.client()
    for i in range(3):
        c.link.send(wire.block(i, b"stray"))
    e = refused("bad_request", c._reply)
    assert "no push in progress" in e.detail
    assert c.status()["ok"]  # the other two were dropped, the conversation goes on


# ---- many peers, limits


def test_stalled_push_holds_only_itself_and_times_out(tmp_path: Path) -> None:
    env = Env(tmp_path, limits=Limits(max_transfers_per_peer=1, idle_timeout=0.5))
    data = os.urandom(4 * BS)
    stalled = _push_blocks(env, WRITER, "slow", data, upto=1)
    _wait(lambda: env.vault.active, "transfer open")
    other = env.client()
    refused("busy", other.push, env.file("o", b"o"), "o")  # one transfer per peer here
    env.client(READER).status()  # another peer is served meanwhile
    refused("bad_request", stalled._reply)  # the stalled push was abandoned after 0.5 s
    assert not env.vault.active
    assert other.push(env.file("o", b"o"), "o")["version"] == 1
    assert env.visible() == ["o"]


def test_a_pull_nobody_reads_is_ended_without_holding_others(tmp_path: Path) -> None:
    env = Env(tmp_path, limits=Limits(idle_timeout=0.5))
    data = os.urandom(64 * BS)
    pusher = env.client()
    pusher.push(env.file("p", data), "p", block_size=BS)
    pusher.link.close()
    reader = env.client(depth=2)
    reader.link.send(wire.request("pull", path="p", block_size=BS))  # and never reads
    for i in range(5):  # meanwhile the others are served
        out = tmp_path / f"o{i}"
        c = env.client()
        c.pull("p", out)
        c.link.close()
        assert out.read_bytes() == data
    _wait(lambda: not env.vault.active, "the unread pull ended")
    _wait(lambda: not env.vault.conversations, "its conversation ended, like the finished ones")


def test_many_clients_at_once(env: Env) -> None:
    data = {i: os.urandom(BS * 3 + i) for i in range(12)}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            c = env.client()
            c.push(env.file(f"m{i}", data[i]), f"m/{i}", block_size=BS)
            c.pull(f"m/{i}", env.tmp / f"back{i}", block_size=BS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for i, d in data.items():
        assert (env.tmp / f"back{i}").read_bytes() == d


# ---- the client's own checks


def test_pull_refuses_a_damaged_block_and_leaves_no_file(tmp_path: Path) -> None:
    near, far = MemoryLink.pair()
    data = os.urandom(2 * BS)

    def server() -> None:
        far.recv(5)
        far.send(wire.ok(path="p", size=len(data), sha256=sha(data), version=1, blocks=2, block_size=BS))
        far.send(wire.block(0, data[:BS]))
        bad = wire.block(1, data[BS:])
        far.send(bad[:-1] + b"\0")

    threading.Thread(target=server, daemon=True).start()
    with pytest.raises(TransferError, match="block 1"):
        VaultClient(near, timeout=5).pull("p", tmp_path / "dest", block_size=BS)
    assert list(tmp_path.iterdir()) == []


def test_client_times_out_on_a_silent_vault(tmp_path: Path) -> None:
    near, _far = MemoryLink.pair()
    with pytest.raises(TransferError, match="nothing within"):
        VaultClient(near, timeout=0.2).status()
    with pytest.raises(LinkTimeout):
        near.recv(0)


# ---- the ACL file


def test_acl_enroll_revoke_versions_and_atomic_file(tmp_path: Path) -> None:
    path = tmp_path / "acl.json"
    acl = aclmod.load(path)
    assert acl.version == 0 and acl.peers == ()
    g = aclmod.grant(encode_key(WRITER), "w", "read-write", "a/b")
    acl1 = aclmod.enrolled(acl, g)
    assert acl1.version == 1
    assert aclmod.enrolled(acl1, g) is acl1  # idempotent
    acl2 = aclmod.enrolled(acl1, aclmod.grant(encode_key(WRITER), "w", "read"))
    assert acl2.version == 2 and acl2.lookup(WRITER).scope == "read"
    aclmod.save(path, acl2)
    assert aclmod.load(path) == acl2
    assert [p.name for p in tmp_path.iterdir()] == ["acl.json"]  # no temporary left
    assert aclmod.revoked(acl2, "w").peers == () and aclmod.revoked(acl2, "zz") is acl2


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ("not json", "not JSON"),
        ('{"format": 2, "version": 1, "peers": []}', "format-1"),
        ('{"format": 1, "version": true, "peers": []}', "whole number"),
        ('{"format": 1, "version": 1, "peers": {}}', "must be a list"),
        ('{"format": 1, "version": 1, "peers": [{"key": "x", "name": "n", "scope": "read"}]}', "peers[0]: peer key"),
        (
            json.dumps(
                {"format": 1, "version": 1, "peers": [{"key": encode_key(WRITER), "name": "n", "scope": "all"}]}
            ),
            "scope",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "version": 1,
                    "peers": [{"key": encode_key(WRITER), "name": "n", "scope": "read", "prefix": "../x"}],
                }
            ),
            "'..'",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "version": 1,
                    "peers": [
                        {"key": encode_key(WRITER), "name": "a", "scope": "read"},
                        {"key": encode_key(WRITER), "name": "b", "scope": "read"},
                    ],
                }
            ),
            "enrolled twice",
        ),
    ],
)
def test_bad_acl_files_are_refused_naming_the_problem(doc: str, why: str) -> None:
    with pytest.raises(aclmod.AclError, match=why.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        aclmod.parse(doc)


# ---- the server's sessions


def test_server_attaches_held_sessions_and_never_keeps_one_alive(tmp_path: Path, monkeypatch) -> None:
    from pooltools.kernel.fakedevice import FakeDevice
    from pooltools.vault.server import Server

    dev = FakeDevice()
    monkeypatch.setattr(Server, "_converse", lambda self, index, conv: None)  # no thread: decisions only
    env = Env(tmp_path)
    poolds: set[tuple[int, int]] = set()  # what poold publishes (/run/pool/sessions.json)
    server = Server(env.vault, tmp_path / "acl.json", lambda: dev, status_path=None, held=lambda: poolds)
    held = dev.inbound(WRITER)
    poold_fd = dev.accept()  # poold holds it
    poolds.add((held.index, held.established_ns))
    own = dev.inbound(READER)
    client_fd = dev.accept()  # a session some client holds for itself: not poold's
    queued = dev.inbound(READER)  # still in the accept queue: nobody holds it
    server.discover()
    assert list(server.attached) == [held.index] and held.fds == 2
    assert own.fds == 1 and queued.fds == 0 and queued.index in dev._sessions
    server.discover()  # nothing changes while poold holds it
    assert held.fds == 2 and held.index in dev._sessions
    client_fd.close()  # the client's session ends with its descriptor: the vault never held it
    assert own.index not in dev._sessions
    poold_fd.close()  # poold lets go (stops): the vault ends the session rather than hold it alone
    poolds.clear()
    server.discover()
    assert held.index not in dev._sessions and f"close {held.index}" in dev.mutations


def test_status_file_and_acl_follow(tmp_path: Path) -> None:
    from pooltools.kernel.fakedevice import FakeDevice
    from pooltools.vault.server import Server

    acl_path = tmp_path / "acl.json"
    env = Env(tmp_path)
    aclmod.save(acl_path, env.acl)
    status = tmp_path / "status.json"
    server = Server(env.vault, acl_path, FakeDevice, status_path=status)
    r = env.client(READER)
    assert r.status()["ok"]
    aclmod.save(acl_path, aclmod.revoked(env.acl, "reader"))
    server.reload_acl()
    refused("revoked", r._reply)
    assert env.vault.acl.version == 2
    acl_path.write_text("{broken")
    server.reload_acl()  # a broken file is logged, the ACL in use stays
    assert env.vault.acl.version == 2
    server.write_status()
    doc = json.loads(status.read_text())
    assert doc["acl_version"] == 2 and doc["refusals"]["revoked"] == 1 and doc["requests"]["status"] == 1


def test_a_malformed_message_during_a_push_is_a_transfer_error(tmp_path: Path) -> None:
    near, far = MemoryLink.pair()
    data = os.urandom(3 * BS)

    def server() -> None:
        far.recv(5)
        far.send(wire.ok(have=0))
        far.send(b"\x01")  # too short to be a vault message

    threading.Thread(target=server, daemon=True).start()
    (tmp_path / "f").write_bytes(data)
    with pytest.raises(TransferError, match="malformed"):
        VaultClient(near, timeout=5).push(tmp_path / "f", "f", block_size=BS)
