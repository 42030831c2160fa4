"""kernel_upgrade.yml's batch check (playbooks/templates/kernel_upgrade_conflicts.j2): a batch
may not reboot a node together with every relay it reaches a peer through, or with every vault
node that serves it. Rendered by ansible-playbook on local hosts, as the plan play renders it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "playbooks" / "templates" / "kernel_upgrade_conflicts.j2"
RENDER = "{{ lookup('ansible.builtin.template', '" + str(TEMPLATE) + "') | from_yaml | default([], true) | to_json }}"
PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))


def conflicts(tmp_path: Path, batch: int, upgrading: list[str]) -> list[str]:
    """The template's lines for the lab's shape: node1 and node3 relayed by node2, node2 the
    vault of node1 and node3; `upgrading` are the nodes with a newer kernel."""
    hosts = {
        "node1": {"pool_node_relayed_peers": {"node3": ["node2"]}},
        "node2": {},
        "node3": {"pool_node_relayed_peers": {"node1": ["node2"]}},
    }
    for name, host in hosts.items():
        host.update(ansible_connection="local", ansible_python_interpreter=sys.executable)
        host["pool_upgrade_kernel"] = "6.12.9-amd64" if name in upgrading else ""
    inventory = {
        "all": {
            "hosts": hosts,
            "children": {
                "pool_vaults": {"hosts": {"node2": {"pool_vault_peers": [{"name": "node1"}, {"name": "node3"}]}}}
            },
        }
    }
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    out = tmp_path / "out.json"
    play = [
        {
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "ansible.builtin.copy": {
                        "content": RENDER,
                        "dest": str(out),
                    },
                    "vars": {"__pool_batch_size": batch},
                    "run_once": True,
                    "delegate_to": "localhost",
                }
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    done = subprocess.run(
        [PLAYBOOK, "-i", str(tmp_path / "hosts.json"), str(tmp_path / "play.yml")],
        capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.skipif(PLAYBOOK is None and not os.environ.get("POOL_TEST_STRICT"), reason="no ansible-playbook")
def test_a_batch_never_takes_a_node_down_with_all_its_relays_or_vaults(tmp_path: Path) -> None:
    everyone = ["node1", "node2", "node3"]
    assert conflicts(tmp_path, 1, everyone) == []
    # batches of two: node1 and node2 together (node1's only relay and vault), node3 alone
    assert conflicts(tmp_path, 2, everyone) == [
        "node1 and all its relays (node2)",
        "node1 and all its vault nodes (node2)",
    ]
    # node2 has no newer kernel: it stays up, so the same batch is fine
    assert conflicts(tmp_path, 2, ["node1", "node3"]) == []
    assert len(conflicts(tmp_path, 3, everyone)) == 4
