"""site.yml from the built and installed collection (issue 5, point 7).

scripts/galaxy-install-test.sh builds the collection with `ansible-galaxy collection build`,
installs the tarball into a temporary collections path and runs `pool.ops.site` from there,
with nothing of the working tree on the collections path, against the converged lab. The
installed copy carries the same kmod/ and tools/ sources, so the run must change nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

testinfra_hosts = ["node1"]  # one run, for the whole lab

ROOT = Path(__file__).resolve().parents[3]
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def test_site_from_the_installed_collection_changes_nothing() -> None:
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("not run by molecule (MOLECULE_INVENTORY_FILE is unset)")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    done = subprocess.run(
        [str(ROOT / "scripts" / "galaxy-install-test.sh"), "-i", inventory],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, f"galaxy-install-test failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    recaps = {m[0]: [int(x) for x in m[1:]] for m in RECAP.findall(done.stdout)}
    assert set(recaps) == {"node1", "node2"}, f"recaps: {recaps}"
    for node, (ok, changed, unreachable, failed) in recaps.items():
        assert ok > 0 and unreachable == 0 and failed == 0, f"{node}: {recaps[node]}"
        assert changed == 0, f"{node}: the installed collection changed {changed} things on a converged lab"
