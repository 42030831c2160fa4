"""pool.ops.vault_peer, running the real pool_vault CLI (tools/) on an ACL in a temporary folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible_collections.pool.ops.plugins.modules import vault_peer
from ansible_collections.pool.ops.tests.unit.plugins.fake_poolctl import run_module

TOOLS = Path(__file__).resolve().parents[4] / "tools"
KEY1 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
KEY2 = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="


@pytest.fixture
def tool(tmp_path: Path) -> Path:
    script = tmp_path / "pool_vault"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(TOOLS)!r})\n"
        "from pooltools.vault.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


def run(tool: Path, acl: Path, capsys, **kw) -> tuple[int, dict]:
    return run_module(vault_peer.main, {"pool_vault_path": str(tool), "acl_path": str(acl), **kw}, capsys)


def test_enroll_is_idempotent_with_check_and_diff(tool: Path, tmp_path: Path, capsys) -> None:
    acl = tmp_path / "acl.json"
    code, res = run(tool, acl, capsys, key=KEY1, name="node1", scope="read-write", _ansible_check_mode=True)
    assert code == 0 and res["changed"] and res["acl_version"] == 1, res
    assert not acl.exists()  # check mode wrote nothing
    code, res = run(tool, acl, capsys, key=KEY1, name="node1", scope="read-write", _ansible_diff=True)
    assert code == 0 and res["changed"] and res["peer"]["scope"] == "read-write"
    assert res["diff"] == {"before": {}, "after": {"key": KEY1, "name": "node1", "scope": "read-write", "prefix": ""}}
    assert json.loads(acl.read_text())["version"] == 1
    code, res = run(tool, acl, capsys, key=KEY1, name="node1", scope="read-write")
    assert code == 0 and not res["changed"] and res["acl_version"] == 1

    code, res = run(tool, acl, capsys, key=KEY1, name="node1", scope="read", prefix="shared", _ansible_diff=True)
    assert (
        res["changed"] and res["diff"]["before"]["scope"] == "read-write" and res["diff"]["after"]["prefix"] == "shared"
    )
    run(tool, acl, capsys, key=KEY2, name="node3")
    assert res["acl_version"] == 2
    code, res = run(tool, acl, capsys, name="node1", state="absent")
    assert code == 0 and res["changed"] and res["peer"] is None and res["peers"] == ["node3"]
    code, res = run(tool, acl, capsys, name="node1", state="absent")
    assert code == 0 and not res["changed"]


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"key": "short", "name": "n"}, "44 base64 characters"),
        ({"key": KEY1, "name": "two words"}, "without spaces"),
        ({"key": KEY1, "name": "n", "prefix": "../up"}, "'..'"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(tool: Path, tmp_path: Path, capsys, kw: dict, why: str) -> None:
    acl = tmp_path / "acl.json"
    code, res = run(tool, acl, capsys, **kw)
    assert code == 1 and why in res["msg"], res
    assert not acl.exists()


def test_a_name_taken_by_another_key_is_refused(tool: Path, tmp_path: Path, capsys) -> None:
    acl = tmp_path / "acl.json"
    run(tool, acl, capsys, key=KEY1, name="node1")
    before = acl.read_bytes()
    code, res = run(tool, acl, capsys, key=KEY2, name="node1")
    assert code == 1 and "already enrolled for another key" in res["msg"]
    assert acl.read_bytes() == before


def test_missing_tool_is_named(tmp_path: Path, capsys) -> None:
    code, res = run_module(
        vault_peer.main, {"pool_vault_path": str(tmp_path / "nope"), "key": KEY1, "name": "n"}, capsys
    )
    assert code == 1 and "pool_vault_path" in res["msg"]
