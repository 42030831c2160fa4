"""Every module that drives a POOL tool fails with one clear message when the tool is missing
or its ``<tool>_path`` option names something that cannot run (module_utils.poolctl.require_tool)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.pool.ops.plugins.modules import config, identity, relay, vault_peer
from ansible_collections.pool.ops.tests.unit.plugins.fake_poolctl import run_module

KEY = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
CASES = [
    (config, "poolctl", {"config": {}}),
    (identity, "poolctl", {}),
    (relay, "pool_relay", {}),
    (vault_peer, "pool_vault", {"key": KEY, "name": "node1"}),
]


@pytest.mark.parametrize(
    ("module", "tool", "args"), CASES, ids=[c[1] + "-" + c[0].__name__.rsplit(".")[-1] for c in CASES]
)
def test_a_path_that_cannot_run_is_named(module, tool: str, args: dict, tmp_path: Path, capsys) -> None:
    not_executable = tmp_path / tool
    not_executable.write_text("")
    code, res = run_module(module.main, {**args, f"{tool}_path": str(not_executable)}, capsys)
    assert code == 1 and res["failed"]
    assert res["msg"] == (
        f"{tool}_path {not_executable} is not an executable file: install the POOL tools (role pool.ops.node) "
        f"or fix {tool}_path"
    )


@pytest.mark.parametrize(
    ("module", "tool", "args"), CASES, ids=[c[1] + "-" + c[0].__name__.rsplit(".")[-1] for c in CASES]
)
def test_a_tool_nowhere_on_the_node_is_named(module, tool: str, args: dict, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("ansible_collections.pool.ops.plugins.module_utils.poolctl.POOLCTL_DIRS", [])
    code, res = run_module(module.main, args, capsys)
    assert code == 1 and res["failed"]
    assert res["msg"] == f"{tool} not found: install the POOL tools first (role pool.ops.node)"
