"""pool.ops.config's action plugin refuses bad input on the controller: run through
ansible-playbook against a host whose Python does not exist, so that any module run would
fail differently (and no node could be touched)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KEY = "A" * 43 + "="
CASES = {
    "wrong type": ({"heartbeat_seconds": "abc"}, "argument 'heartbeat_seconds' is of type str found in 'config'"),
    "missing field": ({"peers": [{"public_key": KEY}]}, "missing required arguments: name found in config -> peers"),
    "unknown key": ({"heartbeat": 5}, "Unsupported parameters for"),
    "out of range": ({"puzzle_difficulty": 40}, "config.puzzle_difficulty: 40 is out of range (0-20)"),
    "bad relay": (
        {"peers": [{"name": "n2", "public_key": KEY, "relays": ["n9"]}]},
        "config.peers[0].relays: 'n9' is no other peer of the document",
    ),
}


def playbook(tmp_path: Path) -> Path:
    names = [f"r{i}" for i in range(len(CASES))]
    tasks = [
        {"name": case, "pool.ops.config": {"config": config}, "ignore_errors": True, "register": name}
        for name, (case, (config, _message)) in zip(names, CASES.items(), strict=True)
    ]
    collect = {"content": "{{ [" + ", ".join(names) + "] | to_json }}", "dest": str(tmp_path / "out.json")}
    tasks.append({"ansible.builtin.copy": collect, "delegate_to": "localhost"})
    path = tmp_path / "play.yml"
    path.write_text(json.dumps([{"hosts": "node", "gather_facts": False, "tasks": tasks}]))
    return path


# Outside the test command (ansible-test units in an environment without ansible-playbook) it
# skips; under scripts/test.sh (POOL_TEST_STRICT) a missing ansible-playbook fails it instead.
@pytest.mark.skipif(
    shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None
    and not os.environ.get("POOL_TEST_STRICT"),
    reason="no ansible-playbook beside this Python",
)
def test_bad_documents_fail_on_the_controller_naming_the_field(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"node": {
        "ansible_connection": "local", "ansible_python_interpreter": "/nonexistent/python"}}}}))  # fmt: skip
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook(tmp_path))],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    out = tmp_path / "out.json"
    assert out.is_file(), "the playbook did not run to its end:\n" + done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    for (name, (_config, message)), result in zip(CASES.items(), results, strict=True):
        assert result["failed"], (name, result)
        assert message in result["msg"], (name, result["msg"])
        assert "nonexistent" not in result["msg"], (name, "the module ran on the node")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
