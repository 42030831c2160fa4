"""pool.ops.relay, running the real pool_relay CLI (tools/) on an enrolment file in a temporary folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible_collections.pool.ops.plugins.modules import relay
from ansible_collections.pool.ops.tests.unit.plugins.fake_poolctl import run_module

TOOLS = Path(__file__).resolve().parents[4] / "tools"
KEY1 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
KEY3 = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
PEERS = [{"name": "node1", "key": KEY1}, {"name": "node3", "key": KEY3, "accept": True}]


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    script = tmp_path / "pool_relay"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(TOOLS)!r})\n"
        "from pooltools.relay.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


def run(tool: Path, tmp_path: Path, capsys, **kw) -> tuple[int, dict]:
    args = {
        "pool_relay_path": str(tool),
        "enrolments_path": str(tmp_path / "relay.json"),
        "status_file": str(tmp_path / "status.json"),
        **kw,
    }
    return run_module(relay.main, args, capsys)


def test_enrolments_are_set_at_once_idempotently_with_check_and_diff(tool: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "relay.json"
    code, res = run(tool, tmp_path, capsys, relay=True, peers=PEERS, _ansible_check_mode=True)
    assert code == 0 and res["changed"] and res["version"] == 1, res
    assert not path.exists()  # check mode wrote nothing
    code, res = run(tool, tmp_path, capsys, relay=True, peers=PEERS, limits={"connections": 64}, _ansible_diff=True)
    assert code == 0 and res["changed"] and res["version"] == 1 and res["relay"] is True
    assert res["diff"]["before"] == {"relay": False, "limits": res["diff"]["before"]["limits"], "peers": []}
    assert [p["name"] for p in res["diff"]["after"]["peers"]] == ["node1", "node3"]
    assert res["limits"]["connections"] == 64 and not res["running"]
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["peers"][1] == {"key": KEY3, "name": "node3", "accept": True}
    code, res = run(tool, tmp_path, capsys, relay=True, peers=PEERS, limits={"connections": 64})
    assert code == 0 and not res["changed"] and res["version"] == 1
    # exclusive (the default) revokes what the task does not list; exclusive=false keeps it
    code, res = run(tool, tmp_path, capsys, relay=True, peers=PEERS[:1], exclusive=False)
    assert not res["changed"]
    code, res = run(tool, tmp_path, capsys, relay=True, peers=PEERS[:1])
    assert res["changed"] and [p["name"] for p in res["peers"]] == ["node1"] and res["version"] == 2


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"peers": [{"name": "n", "key": "short"}]}, "peer key 'short'"),
        ({"peers": [{"name": "two words", "key": KEY1}]}, "without spaces"),
        ({"limits": {"connections": 0}}, '"connections" must be'),
        ({"peers": [{"name": "a", "key": KEY1}, {"name": "a", "key": KEY3}]}, "every name and every key"),
    ],
)
def test_bad_input_fails_and_writes_nothing(tool: Path, tmp_path: Path, capsys, kw: dict, why: str) -> None:
    code, res = run(tool, tmp_path, capsys, **kw)
    assert code == 1 and res["failed"] and why in res["msg"], res
    assert not (tmp_path / "relay.json").exists()


def test_a_missing_tool_is_named(tmp_path: Path, capsys) -> None:
    code, res = run(tmp_path / "nowhere", tmp_path, capsys)
    assert code == 1 and "pool_relay_path" in res["msg"]
