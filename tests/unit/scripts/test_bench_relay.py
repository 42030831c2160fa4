"""The relay benchmark: CPU figures (percent of a core per VM, host CPU seconds per MiB) and the
equal-share CPU caps (where the CPU controller is, the quota)."""

from __future__ import annotations

import bench_relay
import pytest

BEFORE = {"node1": 10.0, "node2": 20.0, "node3": 30.0, "host_total": 100.0, "host_busy": 40.0}
AFTER = {"node1": 14.0, "node2": 22.0, "node3": 34.0, "host_total": 120.0, "host_busy": 50.0}


def test_cpu_used_is_percent_of_a_core_per_vm_and_host_busy_over_all_cores():
    assert bench_relay.cpu_used(BEFORE, AFTER, 10.0) == {"node1": 40.0, "node2": 20.0, "node3": 40.0, "host_busy": 50.0}


def test_cpu_per_mib_is_each_vms_seconds_over_the_mib_moved_and_their_sum():
    # 10 s of the three QEMUs' CPU for 20 MiB: half a second per MiB in all
    assert bench_relay.vm_cpu_per_mib(BEFORE, AFTER, 20 << 20) == {"node1": 0.2, "node2": 0.1, "node3": 0.2, "all": 0.5}


V1_MOUNTS = """tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nsdelegate 0 0
"""
V2_MOUNTS = """proc /proc proc rw,nosuid 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
"""


def test_the_cpu_controller_is_found_on_a_v1_hierarchy_before_the_unified_one():
    # systemd's hybrid layout: the controllers on v1, an empty unified tree beside them
    pid_cgroups = "12:cpuset:/\n4:cpu,cpuacct:/user.slice/lab\n0::/user.slice/lab\n"
    assert bench_relay.cpu_controller(V1_MOUNTS, pid_cgroups) == (
        "v1",
        bench_relay.Path("/sys/fs/cgroup/cpu,cpuacct"),
        "/user.slice/lab",
    )


def test_the_cpu_controller_is_the_unified_tree_on_v2():
    assert bench_relay.cpu_controller(V2_MOUNTS, "0::/system.slice/ci.service\n") == (
        "v2",
        bench_relay.Path("/sys/fs/cgroup"),
        "/system.slice/ci.service",
    )


def test_no_cpu_controller_is_a_cap_error_not_a_failed_bench():
    with pytest.raises(bench_relay.CapError, match="no CPU cgroup controller"):
        bench_relay.cpu_controller("proc /proc proc rw 0 0\n", "0::/\n")


def test_each_vm_gets_an_equal_part_of_three_quarters_of_the_host_cores():
    assert bench_relay.cpu_quota_us(2, 3) == 50_000  # half a core: 50 ms of each 100 ms period
    assert bench_relay.cpu_quota_us(4, 2) == 150_000  # a core and a half: a VM with 2 vCPUs may use it


def test_equal_share_alone_where_it_cannot_be_capped_fails_with_a_message(monkeypatch, tmp_path, capsys):
    class Node:
        pid = 1

    class FakeLab:
        def __init__(self) -> None:
            self.nodes = {"node1": Node(), "node2": Node(), "node3": Node()}

    def refuse(*_args):
        raise bench_relay.CapError("the host has no CPU cgroup controller mounted")

    monkeypatch.setattr(bench_relay, "Lab", FakeLab)
    monkeypatch.setattr(bench_relay, "relayed_path", lambda lab: "relay node2")
    monkeypatch.setattr(bench_relay, "equal_cpu_shares", refuse)
    output = tmp_path / "relay.json"
    assert bench_relay.main(["--mode", "equal-share", "--output", str(output)]) == 1
    assert "nothing measured" in capsys.readouterr().err
    assert not output.exists()
