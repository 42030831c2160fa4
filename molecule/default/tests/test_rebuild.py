"""pool.ops.kmod rebuilds pool.ko when its source changes, and only then (issue 5, point 6).

On node1 only: site.yml's kmod part is run again with the unchanged source (nothing built on the
build host, nothing changed on the node), then with a copy of kmod/ that differs by one comment
line (the build host packs a new version, signed with the fleet key; node1 installs and loads
it). The rebuilt module differs from the rolled-out one by that comment only, so the transport
tests that follow run on it unchanged in behaviour.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from playbook_run import lab_inventory, run

testinfra_hosts = ["node1"]

ROOT = Path(__file__).resolve().parents[3]
SITE = ROOT / "playbooks" / "site.yml"


def run_kmod_part(src: Path | None) -> dict[str, int]:
    """site.yml's kmod part on node1; returns node1's counters (ok, changed, failed, ...)."""
    args = ["--tags", "kmod", "--limit", "node1"]
    if src is not None:
        args += ["-e", shlex.quote(json.dumps({"pool_kmod_src": str(src)}))]
    counters = run(SITE, lab_inventory(), args, "site.yml --tags kmod --limit node1")
    assert "node1" in counters, f"no stats for node1: {counters}"
    return counters["node1"]


def module_facts(host) -> dict[str, str]:
    version = host.check_output("cat /sys/module/pool/version")
    srcversion = host.check_output("cat /sys/module/pool/srcversion")
    ko = host.check_output("modinfo -n pool -k $(uname -r)")
    package = host.check_output("dpkg-query -W -f '${Version}' pool-modules-$(uname -r)")
    return {"version": version, "srcversion": srcversion, "file": ko, "package": package}


def test_rebuild_only_when_the_source_changes(host, tmp_path: Path) -> None:
    before = module_facts(host)

    same = run_kmod_part(None)
    assert same["changed"] == 0, f"an unchanged source changed something: {same}"
    assert module_facts(host) == before, "an unchanged source rebuilt or reloaded pool.ko"

    changed_src = tmp_path / "kmod"
    shutil.copytree(ROOT / "kmod", changed_src, ignore=shutil.ignore_patterns("*.o", "*.ko", ".*.cmd", "*.mod*"))
    with (changed_src / "main.c").open("a") as f:
        f.write("/* rebuild test: a source change */\n")
    rebuilt = run_kmod_part(changed_src)
    after = module_facts(host)
    assert rebuilt["changed"] > 0, f"a changed source was not rebuilt: {rebuilt}"
    assert after["version"] != before["version"], "the loaded version did not change"
    assert after["package"] == after["version"], f"the installed package is not the loaded version: {after}"
    assert after["file"].endswith("/updates/pool.ko"), f"pool.ko is not the package's file: {after}"
    signer = host.check_output("modinfo -F signer pool")
    assert signer == "pool.ops fleet module signing", f"the rebuilt module is signed by {signer!r}"
    assert host.service("poold").is_running, "poold did not come back after the reload"
