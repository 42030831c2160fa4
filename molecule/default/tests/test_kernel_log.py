"""No node's kernel log (every boot) holds an oops, a warning, or a KASAN or slab report
(molecule/lab/kernel_log.py). conftest.py runs these tests after every other test of the
scenario, so that they see what the others did to pool.ko."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import kernel_log

testinfra_hosts = ["pool_nodes"]


@pytest.mark.kernel_log
def test_no_kernel_reports_since_the_first_boot(host):
    log = host.check_output(kernel_log.READ_COMMAND)
    assert log, "empty kernel log"
    found = kernel_log.problems(log)
    assert not found, f"{len(found)} kernel report line(s):\n" + "\n".join(found[:40])
