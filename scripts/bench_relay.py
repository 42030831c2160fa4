#!/usr/bin/env python3
"""Relay benchmark: throughput node1 -> node3 through node2's relay as a ratio to a direct session
node1 -> node2, and the round trip each adds, all in the same run (docs/relay.md).

- direct: pool_test bulk and ping over the session poold holds between node1 and node2;
- relayed: the same over the session poold holds between node1 and node3, which runs through
  node2 (the lab's pool_relays group);
rounds alternate the two so that a change in the shared host's load lands on both.
Figures are printed and written as JSON, with the host CPU each VM's QEMU used during each
transfer and how busy the host was: under emulation the three VMs share the host's cores, and the
relayed path keeps three of them busy where the direct one keeps two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BenchError, Lab


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


def relayed_path(lab: Lab) -> str:
    out = json.loads(lab.ssh("node1", "poolctl --json sessions"))
    key3 = json.loads(lab.ssh("node3", "poolctl --json identity show"))["public_key"]
    paths = [s["path"] for s in out["sessions"] if s["peer_public_key"] == key3 and s["state"] == "established"]
    if not paths or paths[0] != "relay node2":
        raise BenchError(f"node1 has no session with node3 through node2 (paths {paths}): is the relay rolled out?")
    return paths[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=64 << 20, help="transfer size (default 64 MiB)")
    ap.add_argument("--pings", type=int, default=200, help="round trips per ping run (default 200)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of direct and relayed (default 2)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--output", type=Path, default=Path(".cache/bench/relay.json"))
    args = ap.parse_args(argv)
    try:
        lab = Lab()
        relayed_path(lab)
        rounds = []
        for _ in range(args.rounds):
            r: dict[str, Any] = {}
            for name, peer in (("direct", "node2"), ("relayed", "node3")):
                before, t0 = cpu_snapshot(lab), time.monotonic()
                doc = over_held_session(lab, "node1", peer, f"--bytes {args.bytes} --pings {args.pings}", args.timeout)
                after, seconds = cpu_snapshot(lab), time.monotonic() - t0
                cpu = cpu_used(before, after, seconds)
                if not doc["bulk"]["sha256_ok"]:
                    raise BenchError(f"{name}: SHA-256 mismatch: {doc['bulk']}")
                r[name] = {
                    "mbit_s": doc["bulk"]["throughput_mbit_s"],
                    "rtt_ms": doc["ping"]["rtt_us"]["p50"] / 1000,
                    "cpu_percent": cpu,
                    "vm_cpu_s_per_mib": vm_cpu_per_mib(before, after, args.bytes),
                }
            r["ratio"] = round(r["relayed"]["mbit_s"] / r["direct"]["mbit_s"], 3)
            r["extra_rtt_ms"] = round(r["relayed"]["rtt_ms"] - r["direct"]["rtt_ms"], 3)
            rounds.append(r)
    except (BenchError, KeyError, ValueError) as exc:
        print(f"bench_relay: {exc}", file=sys.stderr)
        return 1
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
            print(f"  round {i} {name:<8} {vms}; host busy {use['host_busy']:.0f}% of {os.cpu_count()} cores")
    print("host CPU seconds per MiB moved (all VMs; the relay node's share):")
    for i, r in enumerate(rounds, 1):
        d, rl = r["direct"]["vm_cpu_s_per_mib"], r["relayed"]["vm_cpu_s_per_mib"]
        print(
            f"  round {i}: direct {d['all']:.3f}, relayed {rl['all']:.3f} (node2 {rl.get('node2', 0):.3f});"
            f" where the host's cores are the limit, relayed / direct can reach {d['all'] / rl['all']:.2f}"
        )
    figures = {
        "bytes": args.bytes,
        "rounds": rounds,
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "extra_rtt_ms_median": statistics.median(r["extra_rtt_ms"] for r in rounds),
        "goal_ratio": 0.8,
    }
    print(f"relayed / direct throughput, median: {figures['ratio_median']:.2f} (goal at least 0.8)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"bench_relay: figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
