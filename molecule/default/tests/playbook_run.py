"""Run ansible-playbook from a test against the molecule lab and read its play recap.

Molecule exports ANSIBLE_FORCE_COLOR to the verifier, and Ansible lets it win over
ANSIBLE_NOCOLOR: the child gets both unset-and-off here, and escapes are stripped anyway,
so a recap line always parses.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
RECAP_LINE = re.compile(r"^(\S+)\s*:\s*(ok=\d+.*)$", re.M)


def lab_inventory() -> str:
    """Molecule's inventory folder: its own inventory and the lab's (links, neighbours, peers);
    skips when not run by molecule."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("not run by molecule (MOLECULE_INVENTORY_FILE is unset)")
    return os.path.dirname(inventory)


def run(argv: list[str], what: str, timeout: int = 3600) -> tuple[str, dict[str, dict[str, int]]]:
    """Run argv (an ansible-playbook command line); assert success; return (output, recaps).

    recaps maps each host of the PLAY RECAP to its counters (ok, changed, unreachable,
    failed, skipped, rescued, ignored).
    """
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_FORCE_COLOR"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    out = ANSI_ESCAPE.sub("", done.stdout)
    assert done.returncode == 0, f"{what} failed (exit {done.returncode}):\n{out[-3000:]}\n{done.stderr[-2000:]}"
    recaps = {
        host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)} for host, counters in RECAP_LINE.findall(out)
    }
    assert recaps, f"{what}: no PLAY RECAP in its output:\n{out[-2000:]}"
    return out, recaps
