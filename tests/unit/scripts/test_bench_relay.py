"""The relay benchmark's CPU figures: percent of a core per VM, and host CPU seconds per MiB."""

from __future__ import annotations

import bench_relay

BEFORE = {"node1": 10.0, "node2": 20.0, "node3": 30.0, "host_total": 100.0, "host_busy": 40.0}
AFTER = {"node1": 14.0, "node2": 22.0, "node3": 34.0, "host_total": 120.0, "host_busy": 50.0}


def test_cpu_used_is_percent_of_a_core_per_vm_and_host_busy_over_all_cores():
    assert bench_relay.cpu_used(BEFORE, AFTER, 10.0) == {"node1": 40.0, "node2": 20.0, "node3": 40.0, "host_busy": 50.0}


def test_cpu_per_mib_is_each_vms_seconds_over_the_mib_moved_and_their_sum():
    # 10 s of the three QEMUs' CPU for 20 MiB: half a second per MiB in all
    assert bench_relay.vm_cpu_per_mib(BEFORE, AFTER, 20 << 20) == {"node1": 0.2, "node2": 0.1, "node3": 0.2, "all": 0.5}
