"""pool_vault's command line: arguments, output, exit codes and the ACL commands, with each client
command's session to an in-process vault (the conversation of test_vault.py's Env)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from pooltools.common.link import MemoryLink
from pooltools.kernel.device import EXIT_EXISTS, EXIT_NOT_FOUND, EXIT_PERMISSION, EXIT_USAGE
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.protocol.keys import encode_key
from pooltools.vault import cli
from pooltools.vault.server import Conversation
from test_vault import READER, WRITER, Env

VAULT_KEY = bytes(range(100, 132))


class SessionOverLink:
    """What SessionLink needs of a device.Session, over one end of a MemoryLink pair."""

    def __init__(self, link: MemoryLink) -> None:
        self.link = link

    def wait_writable(self, timeout: float | None) -> bool:
        return True

    def send(self, data: bytes, channel: int | None = None) -> None:
        self.link.send(data)

    def recv(self, channel: int, timeout: float | None = None):
        from pooltools.common.link import LinkTimeout
        from pooltools.kernel.device import EXIT_TIMEOUT, PoolError

        try:
            data = self.link.recv(timeout)
        except LinkTimeout:
            raise PoolError("receive", "nothing received", EXIT_TIMEOUT) from None
        return None if data is None else (channel, data)

    def close(self) -> None:
        self.link.close()


class Node(FakeDevice):
    """A client node whose CONNECT to the vault node reaches env's vault as `me`."""

    def __init__(self, env: Env, me: bytes) -> None:
        super().__init__()
        self.env, self.me = env, me
        self.set_identity(bytes(range(7, 39)))
        self.peer_add(VAULT_KEY, "vaultnode", bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2]), 9253)

    def connect(self, peer_public_key: bytes, addr: bytes, port: int = 0, channel: int = 0, timeout_ms: int = 0, **kw):
        assert peer_public_key == VAULT_KEY and channel == 86
        near, far = MemoryLink.pair()
        threading.Thread(target=Conversation(self.env.vault, far, self.me).run, daemon=True).start()
        return SessionOverLink(near)


def vault_cli(env: Env, me: bytes, *argv: str, capsys) -> tuple[int, dict]:
    code = cli.main(["--json", *argv, "--vault", "vaultnode"], device_factory=lambda: Node(env, me))
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_push_pull_stat_list_history_delete(env: Env, tmp_path: Path, capsys) -> None:
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(200_000))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    code, doc = vault_cli(env, WRITER, "push", str(src), "docs/report.pdf", capsys=capsys)
    assert code == 0 and doc["sha256"] == digest and doc["version"] == 1
    code, doc = vault_cli(env, WRITER, "push", str(src), "docs/report.pdf", capsys=capsys)
    assert code == EXIT_EXISTS and doc["error"]["code"] == "conflict"
    out = tmp_path / "out"
    out.mkdir()
    code, doc = vault_cli(env, WRITER, "pull", "docs/report.pdf", str(out), capsys=capsys)
    assert code == 0 and (out / "report.pdf").read_bytes() == src.read_bytes()
    assert vault_cli(env, WRITER, "stat", "docs/report.pdf", capsys=capsys)[1]["sha256"] == digest
    assert [e["path"] for e in vault_cli(env, WRITER, "list", "docs", capsys=capsys)[1]["entries"]] == [
        "docs/report.pdf"
    ]
    code, doc = vault_cli(env, WRITER, "delete", "docs/report.pdf", capsys=capsys)
    assert code == EXIT_USAGE and "--base" in doc["error"]["why"]
    assert vault_cli(env, WRITER, "delete", "docs/report.pdf", "--base", digest, capsys=capsys)[0] == 0
    assert vault_cli(env, WRITER, "stat", "docs/report.pdf", capsys=capsys)[0] == EXIT_NOT_FOUND
    hist = vault_cli(env, WRITER, "history", "docs/report.pdf", capsys=capsys)[1]["versions"]
    assert [v["deleted"] for v in hist] == [True, False]


def test_refusals_map_to_exit_codes(env: Env, tmp_path: Path, capsys) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    code, doc = vault_cli(env, READER, "push", str(src), "shared/f", capsys=capsys)
    assert code == EXIT_PERMISSION and doc["error"]["code"] == "denied"
    code, doc = vault_cli(env, bytes(range(60, 92)), "status", capsys=capsys)
    assert code == EXIT_PERMISSION and doc["error"]["code"] == "not_enrolled"
    code, doc = vault_cli(env, WRITER, "push", str(src), "../f", capsys=capsys)
    assert code == EXIT_USAGE and doc["error"]["code"] == "bad_path"
    assert env.visible() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["push", "nofile", "--vault", "v"],
        ["pull", "p", "--version", "0", "--vault", "v"],
        ["push", "f", "--base", "abc", "--vault", "v"],
        ["push", "f", "--block-size", "100", "--vault", "v"],
        ["serve", "--keep", "0"],
        ["serve", "--max-file-size", "lots"],
        ["enroll", "key", "--name", "n", "--scope", "all"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ei:
        code = cli.main(argv, device_factory=FakeDevice)
        raise SystemExit(code)
    assert ei.value.code == EXIT_USAGE


def test_enroll_revoke_peers_on_the_vault_node(tmp_path: Path, capsys) -> None:
    acl = tmp_path / "acl.json"

    def run(*argv: str) -> tuple[int, dict]:
        code = cli.main(["--json", *argv, "--acl", str(acl)])
        return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    key = encode_key(WRITER)
    code, doc = run("enroll", key, "--name", "node1", "--scope", "read-write", "--check")
    assert code == 0 and doc["changed"] and doc["check"] and list(tmp_path.iterdir()) == []  # no lock file either
    code, doc = run("enroll", key, "--name", "node1", "--scope", "read-write")
    assert code == 0 and doc["changed"] and doc["acl_version"] == 1 and doc["before"] is None
    assert run("enroll", key, "--name", "node1", "--scope", "read-write")[1]["changed"] is False
    code, doc = run("enroll", "not-a-key", "--name", "x", "--scope", "read")
    assert code == EXIT_USAGE and "44 base64" in doc["error"]["why"]
    assert run("peers")[1]["peers"][0]["name"] == "node1"
    code, doc = run("revoke", "node1")
    assert code == 0 and doc["changed"] and doc["after"] is None and doc["acl_version"] == 2
    assert run("revoke", "node1")[1]["changed"] is False
    acl.write_text("{")
    code, doc = run("peers")
    assert code == EXIT_USAGE and "not JSON" in doc["error"]["why"]


def test_connect_is_retried_when_the_listener_resets_it(env: Env, tmp_path: Path, capsys, monkeypatch) -> None:
    """Many clients at once from one node meet the listener's half-open cap: reset, then retried."""
    import errno

    from pooltools.kernel.device import PoolError

    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    resets = iter([True, True, False])

    class Busy(Node):
        def connect(self, *a, **kw):
            if next(resets):
                raise PoolError("connect", "connection reset by peer", 10, errno.ECONNRESET)
            return super().connect(*a, **kw)

    code = cli.main(["--json", "status", "--vault", "vaultnode"], device_factory=lambda: Busy(env, WRITER))
    assert code == 0, capsys.readouterr()

    class Refusing(Node):
        def connect(self, *a, **kw):
            raise PoolError("connect", "no key for that peer", 5, errno.ENOKEY)

    code = cli.main(["--json", "status", "--vault", "vaultnode"], device_factory=lambda: Refusing(env, WRITER))
    assert code == 5  # not retried
