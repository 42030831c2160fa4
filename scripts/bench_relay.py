#!/usr/bin/env python3
"""Relay benchmark: throughput node1 -> node3 through node2's relay as a ratio to a direct session
node1 -> node2, and the round trip each adds, all in the same run (docs/relay.md).

- direct: pool_test bulk and ping over the session poold holds between node1 and node2;
- relayed: the same over the session poold holds between node1 and node3, which runs through
  node2 (the lab's pool_relays group);
rounds alternate the two so that a change in the shared host's load lands on both.
Figures are printed and written as JSON, with the host CPU each VM's QEMU used during each
transfer and how busy the host was.

It measures twice. Under emulation the three VMs share the host's cores, so on a small host the
relayed path, which keeps three VMs busy where the direct one keeps two, is also measured against
a third machine's CPU that a fleet would not share. The `equal-share` measurement gives each VM a
fixed equal part of the host's cores (a CPU cgroup quota on its QEMU; together three quarters of
the cores, the rest left to the host), as if each node were a machine of its own with that
capacity; the `shared-host` one leaves them as they are. The goal applies to the first, and both
are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BenchError, Lab, pool_lab


def over_held_session(lab: Lab, client: str, server: str, args: str, timeout: float) -> dict[str, Any]:
    """pool_test bench ARGS on `client` against a pool_test server on `server`, both attached to
    the session poold holds between them."""
    srv = lab.background(server, f"pool_test server --peer {client} --once --timeout {int(timeout)}")
    try:
        time.sleep(2)
        if srv.poll() is not None:
            raise BenchError(f"{server}: pool_test server exited early: {srv.stderr.read().strip()[-400:]}")
        out = lab.ssh(client, f"pool_test bench --peer {server} {args} --json --timeout {int(timeout)}", timeout)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def cpu_snapshot(lab: Lab) -> dict[str, float]:
    """CPU seconds each VM's QEMU has used, and the host's busy and total CPU seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    snap = {}
    for name, node in lab.nodes.items():
        fields = Path(f"/proc/{node.pid}/stat").read_text().rsplit(")", 1)[1].split()
        snap[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    snap["host_total"] = sum(cpu) / tick
    snap["host_busy"] = (sum(cpu) - cpu[3] - cpu[4]) / tick  # all but idle and iowait
    return snap


def cpu_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Percent of one host core each VM used, and the host's busy percent over all its cores."""
    use = {
        name: round(100 * (after[name] - before[name]) / seconds, 1) for name in before if not name.startswith("host")
    }
    span = after["host_total"] - before["host_total"]
    use["host_busy"] = round(100 * (after["host_busy"] - before["host_busy"]) / span, 1) if span else 0.0
    return use


def vm_cpu_per_mib(before: dict[str, float], after: dict[str, float], size: int) -> dict[str, float]:
    """Host CPU seconds each VM's QEMU used per MiB moved, and their sum ("all"): what a
    transfer costs the host's cores whatever their number. The window includes the pings."""
    per = {name: (after[name] - before[name]) / (size / (1 << 20)) for name in before if not name.startswith("host")}
    return {**{name: round(v, 4) for name, v in per.items()}, "all": round(sum(per.values()), 4)}


CFS_PERIOD_US = 100_000
MODES = ("equal-share", "shared-host")


class CapError(BenchError):
    """The VMs' CPU cannot be capped here (no CPU cgroup controller, no permission)."""


def cpu_controller(mounts: str, pid_cgroups: str) -> tuple[str, Path, str]:
    """Where the CPU controller is and the process's group in it: ("v2", the unified mount,
    its path) or ("v1", the cpu hierarchy's mount, its path). mounts is /proc/self/mounts,
    pid_cgroups /proc/PID/cgroup."""
    for line in mounts.splitlines():
        _source, target, kind, options, *_ = line.split()
        if kind == "cgroup" and "cpu" in options.split(","):
            for entry in pid_cgroups.splitlines():
                _id, controllers, path = entry.split(":", 2)
                if "cpu" in controllers.split(","):
                    return "v1", Path(target), path
    for line in mounts.splitlines():
        _source, target, kind, *_ = line.split()
        if kind == "cgroup2":
            for entry in pid_cgroups.splitlines():
                if entry.startswith("0::"):
                    return "v2", Path(target), entry[3:]
    raise CapError("the host has no CPU cgroup controller mounted")


# Of the host's cores, what the equal-share VMs get between them. The rest is the host's: its
# network stack carries the lab links between the QEMUs, and ssh and this script run there; with
# nothing left, the VMs contend for the cores again instead of each getting its share.
VMS_PART_OF_HOST = 0.75


def cpu_quota_us(cores: float, vms: int) -> int:
    """Each VM's CPU time per CFS period: an equal part of three quarters of `cores` host cores."""
    return int(CFS_PERIOD_US * VMS_PART_OF_HOST * cores / vms)


@contextlib.contextmanager
def equal_cpu_shares(pids: dict[str, int], cores: float, tag: str) -> Iterator[int]:
    """Each QEMU in a CPU cgroup of its own, capped at its equal part (cpu_quota_us) while the
    block runs (yields the quota); put back where it was after, whatever happened."""
    quota = cpu_quota_us(cores, len(pids))
    moved: list[tuple[int, Path, Path]] = []
    try:
        try:
            _cap(pids, quota, tag, moved)
        except OSError as exc:
            raise CapError(f"cannot cap the VMs' CPU with a cgroup: {exc}") from exc
        yield quota
    finally:
        for pid, group, home in reversed(moved):
            with contextlib.suppress(OSError):  # the VM may be gone
                (home / "cgroup.procs").write_text(str(pid))
            with contextlib.suppress(OSError):
                group.rmdir()


def _cap(pids: dict[str, int], quota: int, tag: str, moved: list[tuple[int, Path, Path]]) -> None:
    mounts = Path("/proc/self/mounts").read_text()
    for name, pid in pids.items():
        version, mount, home = cpu_controller(mounts, Path(f"/proc/{pid}/cgroup").read_text())
        group = mount / f"pool-bench-{tag}-{name}"
        group.mkdir(exist_ok=True)
        moved.append((pid, group, mount / home.lstrip("/")))
        if version == "v2":
            if "cpu" not in (mount / "cgroup.subtree_control").read_text().split():
                (mount / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))


def relayed_path(lab: Lab) -> str:
    out = json.loads(lab.ssh("node1", "poolctl --json sessions"))
    key3 = json.loads(lab.ssh("node3", "poolctl --json identity show"))["public_key"]
    paths = [s["path"] for s in out["sessions"] if s["peer_public_key"] == key3 and s["state"] == "established"]
    if not paths or paths[0] != "relay node2":
        raise BenchError(f"node1 has no session with node3 through node2 (paths {paths}): is the relay rolled out?")
    return paths[0]


def measure(lab: Lab, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rounds of a direct and a relayed transfer, each with its CPU figures."""
    rounds = []
    for _ in range(args.rounds):
        r: dict[str, Any] = {}
        for name, peer in (("direct", "node2"), ("relayed", "node3")):
            before, t0 = cpu_snapshot(lab), time.monotonic()
            doc = over_held_session(lab, "node1", peer, f"--bytes {args.bytes} --pings {args.pings}", args.timeout)
            after, seconds = cpu_snapshot(lab), time.monotonic() - t0
            if not doc["bulk"]["sha256_ok"]:
                raise BenchError(f"{name}: SHA-256 mismatch: {doc['bulk']}")
            r[name] = {
                "mbit_s": doc["bulk"]["throughput_mbit_s"],
                "rtt_ms": doc["ping"]["rtt_us"]["p50"] / 1000,
                "cpu_percent": cpu_used(before, after, seconds),
                "vm_cpu_s_per_mib": vm_cpu_per_mib(before, after, args.bytes),
            }
        r["ratio"] = round(r["relayed"]["mbit_s"] / r["direct"]["mbit_s"], 3)
        r["extra_rtt_ms"] = round(r["relayed"]["rtt_ms"] - r["direct"]["rtt_ms"], 3)
        rounds.append(r)
    return rounds


def report(mode: str, result: dict[str, Any], cores: int) -> None:
    rounds = result["rounds"]
    print(f"{mode}:")
    print(f"{'round':<6} {'direct Mbit/s':>14} {'relayed Mbit/s':>15} {'ratio':>6} {'extra RTT ms':>13}")
    for i, r in enumerate(rounds, 1):
        print(
            f"{i:<6} {r['direct']['mbit_s']:>14.1f} {r['relayed']['mbit_s']:>15.1f} {r['ratio']:>6.2f}"
            f" {r['extra_rtt_ms']:>13.2f}"
        )
    print("host CPU while each ran (percent of one core per VM; host busy over all cores):")
    for i, r in enumerate(rounds, 1):
        for name in ("direct", "relayed"):
            use = r[name]["cpu_percent"]
            vms = ", ".join(f"{n} {v:.0f}%" for n, v in use.items() if n != "host_busy")
            print(f"  round {i} {name:<8} {vms}; host busy {use['host_busy']:.0f}% of {cores} cores")
    print("host CPU seconds per MiB moved (all VMs; the relay node's share):")
    for i, r in enumerate(rounds, 1):
        d, rl = r["direct"]["vm_cpu_s_per_mib"], r["relayed"]["vm_cpu_s_per_mib"]
        print(
            f"  round {i}: direct {d['all']:.3f}, relayed {rl['all']:.3f} (node2 {rl.get('node2', 0):.3f});"
            f" where the host's cores are the limit, relayed / direct can reach {d['all'] / rl['all']:.2f}"
        )
    print(f"{mode}: relayed / direct throughput, median {result['ratio_median']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=64 << 20, help="transfer size (default 64 MiB)")
    ap.add_argument("--pings", type=int, default=200, help="round trips per ping run (default 200)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of direct and relayed per mode (default 2)")
    ap.add_argument("--mode", choices=[*MODES, "both"], default="both", help="which measurement (default both)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--output", type=Path, default=Path(".cache/bench/relay.json"))
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    figures: dict[str, Any] = {"bytes": args.bytes, "host_cores": cores, "goal_ratio": 0.8, "modes": {}}
    try:
        lab = Lab()
        relayed_path(lab)
        for mode in MODES if args.mode == "both" else (args.mode,):
            result: dict[str, Any] = {}
            if mode == "equal-share":
                pids = {name: node.pid for name, node in lab.nodes.items()}
                try:
                    with equal_cpu_shares(pids, cores, pool_lab.lab_name()) as quota:
                        result["vm_cores"] = round(quota / CFS_PERIOD_US, 3)
                        print(f"{mode}: each VM capped at {result['vm_cores']} of the host's {cores} cores")
                        result["rounds"] = measure(lab, args)
                except CapError as exc:
                    print(f"{mode}: not measured: {exc}")
                    figures["modes"][mode] = {"unavailable": str(exc)}
                    continue
            else:
                result["rounds"] = measure(lab, args)
            result["ratio_median"] = statistics.median(r["ratio"] for r in result["rounds"])
            result["extra_rtt_ms_median"] = statistics.median(r["extra_rtt_ms"] for r in result["rounds"])
            figures["modes"][mode] = result
            report(mode, result, cores)
    except (BenchError, KeyError, ValueError) as exc:
        print(f"bench_relay: {exc}", file=sys.stderr)
        return 1
    measured = [m for m in MODES if "ratio_median" in figures["modes"].get(m, {})]
    if not measured:
        print(f"bench_relay: nothing measured ({args.mode} only, and it was not available)", file=sys.stderr)
        return 1
    figures["ratio_mode"] = measured[0]
    figures["ratio_median"] = figures["modes"][measured[0]]["ratio_median"]
    figures["extra_rtt_ms_median"] = figures["modes"][measured[0]]["extra_rtt_ms_median"]
    print(
        f"relayed / direct throughput, median ({figures['ratio_mode']}): {figures['ratio_median']:.2f}"
        f" (goal at least 0.8); extra round trip {figures['extra_rtt_ms_median']:.1f} ms"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"bench_relay: figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
