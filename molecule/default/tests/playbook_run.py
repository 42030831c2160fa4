"""Run ansible-playbook from a test against the molecule lab and read its stats.

The run goes through ansible-runner, whose stats come from Ansible's own events (per host: ok,
changed, unreachable, failed, skipped, rescued, ignored), not from the coloured text of a play
recap.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ansible_runner
import pytest

# ansible-runner's stats, named as the play recap names them.
STAT_NAMES = {"ok": "ok", "changed": "changed", "dark": "unreachable", "failures": "failed",
              "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}  # fmt: skip


def lab_inventory() -> str:
    """Molecule's inventory folder: its own inventory and the lab's (links, neighbours, peers);
    skips when not run by molecule."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("not run by molecule (MOLECULE_INVENTORY_FILE is unset)")
    return os.path.dirname(inventory)


def run(playbook: Path, inventory: str, args: list[str], what: str, timeout: int = 3600) -> dict[str, dict[str, int]]:
    """Run playbook with ansible-runner; assert success; return each host's counters."""
    with tempfile.TemporaryDirectory(prefix="pool-runner.") as private:
        r = ansible_runner.run(
            private_data_dir=private,
            playbook=str(playbook),
            inventory=inventory,
            cmdline=" ".join(args),
            envvars={"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
            timeout=timeout,
            quiet=True,
        )
        failed = [
            f"{e['event_data'].get('task', '?')} on {e['event_data'].get('host', '?')}: "
            f"{e['event_data'].get('res', {}).get('msg', '')}"
            for e in r.events
            if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
            and not e["event_data"].get("ignore_errors")
        ]
        stats = r.stats or {}
    hosts = set().union(*(stats.get(k, {}) for k in STAT_NAMES))
    counters = {
        host: {name: int(stats.get(key, {}).get(host, 0)) for key, name in STAT_NAMES.items()} for host in hosts
    }
    if r.status != "successful" or r.rc != 0:
        pytest.fail(f"{what}: {r.status} (exit {r.rc}): {failed}")
    assert counters, f"{what}: ansible-runner reported no stats"
    return counters
