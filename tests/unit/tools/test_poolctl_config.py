"""poolctl config apply/confirm/rollback/history/diff against the FakeDevice, and poold's boot restore."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pooltools.config import store as cs
from pooltools.config import versions as poolctl_config
from pooltools.kernel import uapi
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.poolctl import cli as poolctl
from pooltools.protocol import x25519
from pooltools.protocol.keys import encode_key

PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
PUB = x25519.public_key(PRIV)
PEER = x25519.public_key(bytes(range(1, 33)))
OTHER = x25519.public_key(bytes(range(2, 34)))


@pytest.fixture
def dev() -> FakeDevice:
    d = FakeDevice()
    d.set_identity(PRIV)
    return d


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def write_doc(tmp_path: Path, name: str = "c.json", **kw: object) -> str:
    d: dict = {"heartbeat_seconds": 5, "peers": [{"name": "node2", "public_key": encode_key(PEER)}]}
    d.update(kw)
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return str(p)


def jrun(capsys, dev: FakeDevice, state: Path, *argv: str) -> tuple[int, dict]:
    rc = poolctl.main(["--json", *argv, "--state-dir", str(state)], lambda: dev)
    out, _err = capsys.readouterr()
    assert out.count("\n") == 1, out
    return rc, json.loads(out)


def test_apply_tentative_confirm(capsys, dev, state, tmp_path) -> None:
    rc, doc = jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path), "--confirm-within", "30")
    assert rc == 0 and doc["changed"] is True and doc["version"] == 1 and doc["tentative"] is True
    assert doc["previous_version"] == 0 and doc["before"] is None and doc["after"]["heartbeat_seconds"] == 5
    assert dev.config_get().flags & uapi.POOL_CONFIG_TENTATIVE
    assert doc["hash"] == bytes(dev.config_get().hash).hex()
    assert cs.Store(state).confirmed() is None  # not confirmed yet
    rc, doc = jrun(capsys, dev, state, "config", "confirm")
    assert rc == 0 and doc == {"changed": True, "version": 1, "hash": doc["hash"], "confirmed": True}
    assert cs.Store(state).confirmed().version == 1
    rc, doc = jrun(capsys, dev, state, "config", "confirm")
    assert rc == 0 and doc["changed"] is False


def test_apply_is_idempotent(capsys, dev, state, tmp_path) -> None:
    f = write_doc(tmp_path)
    jrun(capsys, dev, state, "config", "apply", f)
    before = list(dev.mutations)
    rc, doc = jrun(capsys, dev, state, "config", "apply", f)
    assert rc == 0 and doc["changed"] is False and doc["version"] == 1
    assert dev.mutations == before
    assert cs.Store(state).versions() == [1]


def test_invalid_values_change_nothing(capsys, dev, state, tmp_path) -> None:
    mut = list(dev.mutations)
    rc, doc = jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, max_sessions=0))
    assert rc == 2
    assert doc["error"]["why"] == "max_sessions: 0 is out of range (1-65536)"
    assert dev.mutations == mut and not (state / "config").exists()
    own = write_doc(tmp_path, peers=[{"name": "me", "public_key": encode_key(PUB)}])
    rc, doc = jrun(capsys, dev, state, "config", "apply", own)
    assert rc == 2 and "own public key" in doc["error"]["why"] and dev.mutations == mut
    assert cs.Store(state).versions() == []


def test_dry_run_changes_nothing(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    mut = list(dev.mutations)
    rc, doc = jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9), "--dry-run")
    assert rc == 0 and doc["changed"] is True and doc["dry_run"] is True and doc["version"] == 2
    assert doc["before"]["heartbeat_seconds"] == 5 and doc["after"]["heartbeat_seconds"] == 9
    assert dev.mutations == mut and cs.Store(state).versions() == [1]


def test_apply_refused_while_tentative(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path), "--confirm-within", "30")
    rc, doc = jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9))
    assert rc == 8 and "awaits confirmation" in doc["error"]["why"]


def test_kernel_refusal_leaves_no_stored_version(capsys, dev, state, tmp_path) -> None:
    dev.unload()
    rc, _doc = jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    assert rc == 3 and cs.Store(state).versions() == []


def test_rollback_previous_and_to(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9))
    rc, doc = jrun(capsys, dev, state, "config", "rollback")
    assert rc == 0 and doc["version"] == 1 and doc["rolled_back_from"] == 2 and doc["after"]["heartbeat_seconds"] == 5
    assert dev.config_get().version == 1 and dev.config_get().heartbeat_seconds == 5
    assert cs.Store(state).confirmed().version == 1
    rc, doc = jrun(capsys, dev, state, "config", "rollback")  # pool.ko keeps up to 8: back to version 0
    assert rc == 0 and doc["version"] == 0 and doc["rolled_back_from"] == 1
    # rolled back past the first version: "no version" is the confirmed state now (kept after a reboot)
    assert cs.Store(state).confirmed() is None and cs.Store(state).confirmed_ref() == (0, bytes(32))
    assert cs.Store(state).confirmed_chain()[1][0] == 1  # version 1 is remembered as the earlier one
    rc, doc = jrun(capsys, dev, state, "config", "rollback")
    assert rc == 5 and "--to N" in doc["error"]["why"]
    rc, doc = jrun(capsys, dev, state, "config", "rollback", "--to", "2")
    assert rc == 0 and doc["changed"] and doc["version"] == 3 and doc["rolled_back_to"] == 2
    assert dev.config_get().heartbeat_seconds == 9
    rc, doc = jrun(capsys, dev, state, "config", "rollback", "--to", "2")
    assert rc == 0 and doc["changed"] is False
    rc, doc = jrun(capsys, dev, state, "config", "rollback", "--version", "1")
    assert rc == 8


def test_rollback_restores_trust_store_and_closes_sessions(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    dev.inbound(PEER)
    wrong = write_doc(tmp_path, peers=[{"name": "node2", "public_key": encode_key(OTHER)}])
    jrun(capsys, dev, state, "config", "apply", wrong, "--confirm-within", "5")
    assert [bytes(p.public_key) for p in dev.peers()] == [OTHER] and not dev.sessions()
    dev.config_expire()
    assert dev.config_get().version == 1 and [bytes(p.public_key) for p in dev.peers()] == [PEER]
    rc, doc = jrun(capsys, dev, state, "config", "history")
    assert rc == 0 and doc["active_version"] == 1 and doc["confirmed_version"] == 1
    assert [(v["version"], v["active"], v["confirmed"]) for v in doc["versions"]] == [
        (1, True, True),
        (2, False, False),
    ]


def test_history_reports_corruption(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    p = cs.Store(state).path(1)
    p.write_text(p.read_text().replace('"heartbeat_seconds": 5', '"heartbeat_seconds": 6'))
    rc, doc = jrun(capsys, dev, state, "config", "history")
    assert rc == 9 and str(p) in doc["versions"][0]["error"]
    rc, doc = jrun(capsys, dev, state, "config", "rollback", "--to", "1")
    assert rc == 9 and str(p) in doc["error"]["why"]


def test_diff(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9))
    rc, doc = jrun(capsys, dev, state, "config", "diff", "1", "2")
    assert rc == 0 and doc["identical"] is False
    assert doc["diff"].startswith("--- version 1\n+++ version 2\n")
    assert '-  "heartbeat_seconds": 5,' in doc["diff"] and '+  "heartbeat_seconds": 9,' in doc["diff"]
    rc, doc = jrun(capsys, dev, state, "config", "diff", "2", "active")
    assert rc == 0 and doc["identical"] is True and doc["diff"] == ""
    rc = poolctl.main(["config", "diff", "1", "2", "--state-dir", str(state)], lambda: dev)
    out, _ = capsys.readouterr()
    assert rc == 0 and out.startswith("--- version 1\n")


def test_bad_confirm_within(capsys, dev, state, tmp_path) -> None:
    rc, doc = jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path), "--confirm-within", "90000")
    assert rc == 2 and "24 h" in doc["error"]["why"]


def test_restore_at_boot(dev, state, tmp_path, capsys) -> None:
    log = logging.getLogger("test")
    assert poolctl_config.restore_at_boot(dev, state, log) is None  # nothing stored
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=7))
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9), "--confirm-within", "30")
    dev.reload()  # powered off before the confirm: the module comes back fresh
    dev.set_identity(PRIV)
    assert poolctl_config.restore_at_boot(dev, state, log) == 1
    c = dev.config_get()
    assert c.version == 1 and c.heartbeat_seconds == 7 and not c.flags & uapi.POOL_CONFIG_TENTATIVE
    assert poolctl_config.restore_at_boot(dev, state, log) is None  # version != 0: left alone


def test_poold_restores_the_confirmed_version_after_a_module_reload(tmp_path, capsys) -> None:
    """The hook in Poold.apply(): pool.ko at version 0 gets the last confirmed version back."""
    from pooltools.poold import daemon as poold

    key = tmp_path / "private.key"
    key.write_text(encode_key(PRIV) + "\n")
    key.chmod(0o600)
    state = tmp_path / "state"
    (tmp_path / "pool.conf").write_text(
        f"[node]\nprivate_key_file = {key}\nstate_dir = {state}\nlisten = false\n"
        f"[peer node2]\npublic_key = {encode_key(PEER)}\n"
    )
    dev = FakeDevice()
    d = poold.Poold(str(tmp_path / "pool.conf"), lambda: dev, executor=poold.SyncExecutor())
    d.load_config()
    d.step()
    assert dev.config_get().version == 0  # nothing stored yet
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=7))
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9), "--confirm-within", "60")
    dev.reload()  # rmmod + modprobe (or a power cut) before the confirm
    d.step()
    c = dev.config_get()
    assert c.version == 1 and c.heartbeat_seconds == 7 and not c.flags & uapi.POOL_CONFIG_TENTATIVE
    assert [bytes(p.public_key) for p in dev.peers()] == [PEER]
    d.shutdown()


# ---- bad input to diff, history and rollback --to: one line, non-zero, nothing changed


def _snapshot(dev: FakeDevice, state: Path) -> tuple:
    files = (
        sorted((p.name, p.read_bytes()) for p in (state / "config").iterdir()) if (state / "config").exists() else []
    )
    c = dev.config_get()
    return list(dev.mutations), files, c.version, bytes(c.hash), c.flags


@pytest.fixture
def two_versions(capsys, dev, state, tmp_path) -> FakeDevice:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path))
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=9), "--confirm-within", "60")
    return dev


@pytest.mark.parametrize(
    ("argv", "rc", "message"),
    [
        (["config", "diff", "1", "7"], 5, "poolctl: config diff 7: "),
        (["config", "diff", "7", "active"], 5, "version 7 is not stored"),
        (["config", "diff", "1", "abc"], 2, "'abc' is not a version number (poolctl config history), 'active'"),
        (["config", "diff", "1.5", "2"], 2, "'1.5' is not a version number"),
        (["config", "diff", "2", "v2"], 2, "'v2' is not a version number"),
        (["config", "diff", "0", "1"], 2, "version 0 has no document"),
        (["config", "diff", "2", "2"], 2, "poolctl: config diff: both sides are '2'"),
        (["config", "diff", "2", "02"], 2, "both sides are '02'"),
        (["config", "diff", "active", "active"], 2, "both sides are 'active'"),
        (["config", "diff", "1"], 2, "poolctl: usage: "),
        (["config", "history", "--limit", "-1"], 2, "--limit: -1 is negative"),
        (["config", "history", "--limit", "x"], 2, "--limit: 'x' is not a whole number"),
        (["config", "rollback", "--to", "7"], 5, "poolctl: config rollback --to 7: "),
        (["config", "rollback", "--to", "abc"], 2, "--to: 'abc' is not a version number"),
        (["config", "rollback", "--to", "0"], 2, "--to: must be 1-4294967295"),
        (["config", "rollback", "--to", "-1"], 2, "poolctl: usage: "),
        (["config", "rollback", "--to", "1.0"], 2, "'1.0' is not a version number"),
        (["config", "rollback", "--to", "4294967296"], 2, "must be 1-4294967295"),
        (["config", "rollback", "--to"], 2, "poolctl: usage: "),
    ],
)
def test_bad_input_one_line_error_nothing_changed(
    capsys, two_versions, state, argv: list[str], rc: int, message: str
) -> None:
    dev = two_versions
    before = _snapshot(dev, state)
    assert poolctl.main([*argv, "--state-dir", str(state)], lambda: dev) == rc
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("poolctl: ") and message in err, err
    assert _snapshot(dev, state) == before
    # --json: the same error as one JSON line on stdout
    if "usage" not in message:
        assert poolctl.main(["--json", *argv, "--state-dir", str(state)], lambda: dev) == rc
        out, _err = capsys.readouterr()
        assert out.count("\n") == 1 and json.loads(out)["error"]["exit_code"] == rc
        assert _snapshot(dev, state) == before


def test_diff_of_two_names_for_the_same_content_is_fine(capsys, two_versions, state) -> None:
    rc, doc = jrun(capsys, two_versions, state, "config", "diff", "2", "active")
    assert rc == 0 and doc["identical"] is True


def test_diff_of_a_corrupted_version_exit_9(capsys, two_versions, state) -> None:
    p = cs.Store(state).path(1)
    p.write_text(p.read_text().replace('"heartbeat_seconds": 5', '"heartbeat_seconds": 6'))
    rc, doc = jrun(capsys, two_versions, state, "config", "diff", "1", "2")
    assert rc == 9 and str(p) in doc["error"]["why"] and "corrupted" in doc["error"]["why"]


def test_history_limit(capsys, two_versions, state) -> None:
    rc, doc = jrun(capsys, two_versions, state, "config", "history", "--limit", "1")
    assert rc == 0 and [v["version"] for v in doc["versions"]] == [2]
    rc, doc = jrun(capsys, two_versions, state, "config", "history", "--limit", "0")
    assert rc == 0 and [v["version"] for v in doc["versions"]] == [1, 2]


def _confirm_two(capsys, dev, state, tmp_path) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=7))
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=8))
    assert [v for v, _h in cs.Store(state).confirmed_chain()] == [2, 1]
    dev.reload()
    dev.set_identity(PRIV)


def test_restore_at_boot_falls_back_when_the_confirmed_file_is_gone(dev, state, tmp_path, capsys, caplog) -> None:
    _confirm_two(capsys, dev, state, tmp_path)
    cs.Store(state).path(2).unlink()
    with caplog.at_level("INFO"):
        assert poolctl_config.restore_at_boot(dev, state, logging.getLogger("test")) == 1
    assert dev.config_get().heartbeat_seconds == 7
    assert "configuration version 2 (confirmed) not restored: version 2 is not stored" in caplog.text


def test_restore_at_boot_with_a_corrupted_pointer_restores_nothing(dev, state, tmp_path, capsys, caplog) -> None:
    _confirm_two(capsys, dev, state, tmp_path)
    (state / "config" / cs.CONFIRMED_FILE).write_text("{")
    before = list(dev.mutations)
    with caplog.at_level("INFO"):
        assert poolctl_config.restore_at_boot(dev, state, logging.getLogger("test")) is None
    assert dev.config_get().version == 0 and dev.mutations == before
    assert "configuration not restored: " in caplog.text and "confirmed.json: corrupted" in caplog.text


def test_restore_at_boot_after_a_rollback_past_the_first_version(dev, state, tmp_path, capsys, caplog) -> None:
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=7))
    jrun(capsys, dev, state, "config", "rollback")
    dev.reload()
    dev.set_identity(PRIV)
    with caplog.at_level("INFO"):
        assert poolctl_config.restore_at_boot(dev, state, logging.getLogger("test")) is None
    assert dev.config_get().version == 0
    assert "last confirmed configuration is version 0" in caplog.text


def test_restore_at_boot_refuses_a_version_holding_the_new_own_key(dev, state, tmp_path, capsys, caplog) -> None:
    """The node's key changed since: a version trusting that key is refused by name, the earlier one used."""
    jrun(capsys, dev, state, "config", "apply", write_doc(tmp_path, heartbeat_seconds=7))
    jrun(
        capsys, dev, state, "config", "apply",
        write_doc(tmp_path, peers=[{"name": "future", "public_key": encode_key(OTHER)}]),
    )  # fmt: skip
    dev.reload()
    dev.set_identity(bytes(range(2, 34)))  # OTHER is now this node's own key
    with caplog.at_level("INFO"):
        assert poolctl_config.restore_at_boot(dev, state, logging.getLogger("test")) == 1
    assert "configuration version 2 (confirmed) not restored: peers[0] (future).public_key" in caplog.text
