"""site.yml from the built and installed collection (issue 5, point 7).

scripts/galaxy-install-test.sh builds the collection with `ansible-galaxy collection build`,
installs the tarball into a temporary collections path and runs `pool.ops.site` from there,
with nothing of the working tree on the collections path, against the converged lab. The
installed copy carries the same kmod/ and tools/ sources, so the run must change nothing.
"""

from __future__ import annotations

from pathlib import Path

from playbook_run import lab_inventory, run

testinfra_hosts = ["node1"]  # one run, for the whole lab

ROOT = Path(__file__).resolve().parents[3]


def test_site_from_the_installed_collection_changes_nothing() -> None:
    _out, recaps = run(
        # All nodes in one batch, as converge.yml rolls out.
        [str(ROOT / "scripts" / "galaxy-install-test.sh"), "-i", lab_inventory(), "-e", "pool_serial=100%"],
        "galaxy-install-test (site.yml from the installed collection)",
    )
    assert set(recaps) == {"node1", "node2", "node3"}, f"recaps: {recaps}"
    for node, counts in recaps.items():
        assert counts["ok"] > 0 and counts["unreachable"] == 0 and counts["failed"] == 0, f"{node}: {counts}"
        assert counts["changed"] == 0, (
            f"{node}: the installed collection changed {counts['changed']} things on a converged lab"
        )
