"""Issue 5 point 7: build, install into a temporary path, syntax-check pool.ops.site from there.

The real run of the installed site.yml against the lab is
`scripts/galaxy-install-test.sh -i <lab inventory>` (see molecule/default).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "galaxy-install-test.sh"


@pytest.mark.skipif(
    shutil.which("ansible-galaxy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    is None,
    reason="ansible-galaxy not installed",
)
def test_build_install_and_syntax_check_from_installed_collection():
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passes --syntax-check" in proc.stdout
