"""pool.ko builds warning-free (W=1) with each Debian release's own compiler and headers: the
lab's build roots of the releases the controller is not (scripts/build-kmod.sh builds against
the controller's own headers in the kmod stage; here trixie's 6.12 with its gcc 14 on a
Debian 12 controller)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

testinfra_hosts = ["node1"]  # for the inventory's variables; the builds run on the controller

ROOT = Path(__file__).resolve().parents[3]


def test_each_other_release_builds_warning_free_in_its_build_root(host) -> None:
    builders = host.backend.get_variables()["pool_kmod_builders"]
    mine = platform.freedesktop_os_release().get("VERSION_CODENAME", "")
    others = {release: b["buildroot"] for release, b in builders.items() if release != mine}
    for release, buildroot in sorted(others.items()):
        done = subprocess.run(
            [*([] if os.geteuid() == 0 else ["sudo", "-n"]), "bash", str(ROOT / "scripts" / "build-kmod.sh"), "--root", buildroot],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{release}: {done.stdout}{done.stderr}"
        assert done.stdout.startswith("ok "), f"{release}: {done.stdout}"
