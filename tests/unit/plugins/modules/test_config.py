"""pool.ops.config against a stateful fake poolctl: the real poolctl code on a pickled FakeDevice."""

from __future__ import annotations

import json
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.pool.ops.plugins.modules import config as config_module
from ansible_collections.pool.ops.tests.unit.plugins.fake_poolctl import run_module
from pooltools.kernel import uapi
from pooltools.kernel.fakedevice import FakeDevice
from pooltools.protocol import x25519
from pooltools.protocol.keys import encode_key

TOOLS = Path(__file__).resolve().parents[4] / "tools"
PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
PEER = x25519.public_key(bytes(range(1, 33)))
WRONG = x25519.public_key(bytes(range(2, 34)))

SCRIPT = r"""#!{python}
import json, os, pickle, sys
sys.path.insert(0, {tools!r})
from pooltools.poolctl import cli as poolctl
here = {here!r}
with open(os.path.join(here, "calls.log"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
with open(os.path.join(here, "dev.pickle"), "rb") as f:
    dev = pickle.load(f)
os.environ["POOL_STATE_DIR"] = os.path.join(here, "state")
rc = poolctl.main(sys.argv[1:], lambda: dev)
with open(os.path.join(here, "dev.pickle"), "wb") as f:
    pickle.dump(dev, f)
sys.exit(rc)
"""


class StatefulPoolctl:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "poolctl"
        dev = FakeDevice()
        dev.set_identity(PRIV)
        dev.peer_add(PEER, "node2")
        dev.inbound(PEER)  # poold holds a session with node2
        self.save(dev)
        self.path.write_text(SCRIPT.format(python=sys.executable, tools=str(TOOLS), here=str(folder)))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def dev(self) -> FakeDevice:
        return pickle.loads((self.folder / "dev.pickle").read_bytes())

    def save(self, dev: FakeDevice) -> None:
        (self.folder / "dev.pickle").write_bytes(pickle.dumps(dev))

    @property
    def calls(self) -> list[list[str]]:
        log = self.folder / "calls.log"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    def verbs(self) -> list[str]:
        return [" ".join(a for a in c[1:3]) for c in self.calls]


@pytest.fixture
def fake(tmp_path: Path) -> StatefulPoolctl:
    folder = tmp_path / "bin"
    folder.mkdir()
    return StatefulPoolctl(folder)


def cfg(key: bytes = PEER, **kw: object) -> dict:
    d: dict = {"heartbeat_seconds": 5, "peers": [{"name": "node2", "public_key": encode_key(key)}]}
    d.update(kw)
    return d


def run(fake: StatefulPoolctl, capsys, check: bool = False, diff: bool = False, **params: object) -> tuple[int, dict]:
    args: dict = {"poolctl_path": str(fake.path), "health_timeout": 2, "confirm_within": 10, **params}
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    return run_module(config_module.main, args, capsys)


def test_apply_confirms_when_healthy_then_idempotent(fake, capsys) -> None:
    code, res = run(fake, capsys, diff=True, config=cfg())
    assert code == 0, res
    assert res["changed"] is True and res["version"] == 1 and res["previous_version"] == 0
    assert res["tentative"] is False and res["rolled_back"] is False
    assert res["health"]["peers_missing"] == [] and 0 < res["seconds_to_confirm"] < 30
    assert res["health"]["session_states"] == {"node2": ["established"]}
    assert res["diff"]["before"] == "" and '"heartbeat_seconds": 5' in res["diff"]["after"]
    c = fake.dev().config_get()
    assert c.version == 1 and not c.flags & uapi.POOL_CONFIG_TENTATIVE and bytes(c.hash).hex() == res["hash"]
    assert "config confirm" in fake.verbs()

    n = len(fake.calls)
    code, res = run(fake, capsys, config=cfg())
    assert code == 0 and res["changed"] is False and res["version"] == 1
    assert fake.verbs()[n:] == ["config apply"]  # the dry run only
    assert "--dry-run" in fake.calls[n]


def test_check_mode_changes_nothing_and_shows_diff(fake, capsys) -> None:
    run(fake, capsys, config=cfg())
    before = fake.dev()
    code, res = run(fake, capsys, check=True, diff=True, config=cfg(heartbeat_seconds=9))
    assert code == 0 and res["changed"] is True and res["version"] == 2
    assert '-  "heartbeat_seconds": 5,' not in res["diff"]["before"]  # a pretty form, not a diff text
    assert '"heartbeat_seconds": 5' in res["diff"]["before"] and '"heartbeat_seconds": 9' in res["diff"]["after"]
    after = fake.dev()
    assert after.config_get().version == 1 and after.mutations == before.mutations
    assert all("--dry-run" in c for c in fake.calls[-1:])


def test_broken_link_fails_health_and_rolls_back(fake, capsys) -> None:
    run(fake, capsys, config=cfg())
    code, res = run(fake, capsys, config=cfg(WRONG))
    assert code == 1
    assert "health check of version 2 failed" in res["msg"]
    assert "no established session within 2 s with peer(s) node2 (no session)" in res["msg"]
    assert res["health"]["session_states"] == {"node2": []}
    assert "rolled back to version 1" in res["msg"]
    assert res["rolled_back"] is True and res["version"] == 1 and res["health"]["peers_missing"] == ["node2"]
    d = fake.dev()
    assert d.config_get().version == 1 and [bytes(p.public_key) for p in d.peers()] == [PEER]


def test_failed_health_check_names_the_state_of_the_missing_session(fake, capsys) -> None:
    """A peer reached but stuck in its handshake is told apart from a peer never reached."""
    run(fake, capsys, config=cfg())
    dev = fake.dev()
    for st in dev._sessions.values():
        st.state = uapi.SessionState.HANDSHAKE
    fake.save(dev)
    code, res = run(fake, capsys, config=cfg(heartbeat_seconds=9), health_timeout=1)
    assert code == 1 and res["rolled_back"] is True
    assert "with peer(s) node2 (sessions: handshake)" in res["msg"], res["msg"]
    assert res["health"]["session_states"] == {"node2": ["handshake"]}


def test_failing_health_command_rolls_back(fake, capsys) -> None:
    run(fake, capsys, config=cfg())
    code, res = run(fake, capsys, config=cfg(heartbeat_seconds=9), health_command="exit 3", health_timeout=1)
    assert code == 1 and "health_command exited 3" in res["msg"] and res["rolled_back"] is True
    assert fake.dev().config_get().heartbeat_seconds == 5


def test_invalid_values_refused_before_anything_runs(fake, capsys) -> None:
    before = fake.dev().mutations
    code, res = run(fake, capsys, config=cfg(puzzle_difficulty=40))
    assert code == 1 and "config.puzzle_difficulty: 40 is out of range (0-20)" in res["msg"]
    assert fake.dev().mutations == before
    assert fake.verbs() == []  # refused by the module's own checks: poolctl never ran


def test_a_document_the_node_refuses_changes_nothing(fake, capsys) -> None:
    """What only the node can check (here an endpoint's form) is refused by poolctl there."""
    before = fake.dev().mutations
    doc = cfg()
    doc["peers"][0]["endpoint"] = "not-an-endpoint"
    code, res = run(fake, capsys, config=doc)
    assert code == 1 and "endpoint" in res["msg"], res["msg"]
    assert fake.dev().mutations == before
    assert fake.verbs() == ["config apply", "config show"]  # the refused apply, then the active version read
    c = fake.dev().config_get()
    assert res["version"] == c.version and res["hash"] == bytes(c.hash).hex() and res["tentative"] is False


def test_ad_hoc_rollback_and_rollback_to(fake, capsys) -> None:
    run(fake, capsys, config=cfg())
    run(fake, capsys, config=cfg(heartbeat_seconds=9))
    code, res = run(fake, capsys, check=True, rollback=True)
    assert code == 0 and res["changed"] is True and fake.dev().config_get().version == 2
    code, res = run(fake, capsys, rollback=True)
    assert code == 0 and res["changed"] and res["rolled_back"] and res["version"] == 1
    assert fake.dev().config_get().heartbeat_seconds == 5
    code, res = run(fake, capsys, rollback=True)  # pool.ko keeps up to 8 versions: back to 0
    assert code == 0 and res["version"] == 0 and res["previous_version"] == 1
    code, res = run(fake, capsys, rollback=True)
    assert code == 1 and "--to N" in res["msg"]
    code, res = run(fake, capsys, rollback_to=2)
    assert code == 0 and res["changed"] and res["version"] == 3 and fake.dev().config_get().heartbeat_seconds == 9
    code, res = run(fake, capsys, rollback_to=2)
    assert code == 0 and res["changed"] is False


def test_tentative_leftover_is_checked_and_confirmed(fake, capsys) -> None:
    rc = subprocess.run(
        [str(fake.path), "--json", "config", "apply", "-", "--confirm-within", "60"],
        input=json.dumps(cfg()).encode(),
        capture_output=True,
        check=False,
    ).returncode
    assert rc == 0 and fake.dev().config_get().flags & uapi.POOL_CONFIG_TENTATIVE
    code, res = run(fake, capsys, config=cfg())
    assert code == 0 and res["changed"] is True and res["tentative"] is False
    assert not fake.dev().config_get().flags & uapi.POOL_CONFIG_TENTATIVE


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"config": cfg(), "rollback_to": 1}, "mutually exclusive"),
        ({"rollback": True, "config": cfg()}, "takes neither config nor rollback_to"),
        ({}, "rollback is False"),
        ({"config": cfg(), "confirm_within": 10, "health_timeout": 10}, "must be shorter than confirm_within"),
        ({"config": cfg(), "confirm_within": 100000}, "0-86400"),
    ],
)
def test_argument_errors(fake, capsys, params, fragment) -> None:
    args = {"poolctl_path": str(fake.path), **params}
    code, res = run_module(config_module.main, args, capsys)
    assert code == 1 and fragment in res["msg"], res["msg"]
    assert fake.calls == []


def test_state_dir_is_passed_to_the_store_commands(fake, capsys, tmp_path) -> None:
    run(fake, capsys, config=cfg(), state_dir=str(tmp_path / "vstate"))
    code, res = run(fake, capsys, config=cfg(WRONG), state_dir=str(tmp_path / "vstate"), health_timeout=1)
    assert code == 1 and res["rolled_back"] is True and res["version"] == 1  # config show ran without it
    assert (tmp_path / "vstate" / "config" / "v0000000001.json").exists()
    assert all("--state-dir" not in c for c in fake.calls if c[1:3] in (["config", "show"], ["sessions"]))
