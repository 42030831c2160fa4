#!/usr/bin/env python3
"""Benchmarks between the two lab VMs, as ratios to baselines measured in the same run.

For bulk throughput and small-message round trips it runs pool_test three ways between node1
and node2 over the lab's private link: plain TCP (the baseline), WireGuard (a reference secure
transport, set up by this script on both VMs) and a POOL session (held by poold, reached with
ATTACH). It prints the figures and each one's ratio to plain TCP, and writes them as JSON.

The lab must be up with playbooks/site.yml rolled out (scripts/bench.sh does both).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "molecule" / "lab"))
import pool_lab

TCP_PORT = 9300
WG_PORT = 51820
WG_NET = "10.254.0."


class BenchError(Exception):
    pass


class Lab:
    """Runs commands on the lab's VMs over SSH."""

    def __init__(self) -> None:
        self.rd = pool_lab.run_dir()
        state = pool_lab.State.load(self.rd)
        if state is None or len(state.nodes) < 2:
            raise BenchError(
                f"no lab with node1 and node2 is up (lab {pool_lab.lab_name()!r}): run `make lab-up` first"
            )
        self.nodes = {n.name: n for n in state.nodes}

    def ssh(self, node: str, command: str, timeout: float = 600) -> str:
        argv = [*pool_lab.ssh_base(self.rd, self.nodes[node].port, self.nodes[node].host), command]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{node}: `{command}` did not finish within {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise BenchError(f"{node}: `{command}` failed ({done.returncode}): {done.stderr.strip()[-400:]}")
        return done.stdout

    def background(self, node: str, command: str) -> subprocess.Popen[str]:
        argv = [*pool_lab.ssh_base(self.rd, self.nodes[node].port, self.nodes[node].host), command]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def served(lab: Lab, server_cmd: str, client_cmd: str, timeout: float) -> dict[str, Any]:
    """Runs a pool_test server on node2 and a bench client on node1; returns the client's JSON."""
    server = lab.background("node2", server_cmd)
    try:
        time.sleep(2)  # the server attaches or binds; the client retries nothing
        if server.poll() is not None:
            raise BenchError(f"node2: `{server_cmd}` exited early: {server.stderr.read().strip()[-400:]}")
        return json.loads(lab.ssh("node1", client_cmd, timeout=timeout))
    finally:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wireguard_up(lab: Lab) -> None:
    """A WireGuard tunnel wg-bench between the VMs over the private link (idempotent)."""
    keys = {}
    for node in ("node1", "node2"):
        keys[node] = lab.ssh(node, "umask 077; wg genkey | tee /run/wg-bench.key | wg pubkey").strip()
    for i, (node, peer) in enumerate((("node1", "node2"), ("node2", "node1")), start=1):
        peer_ip = lab.nodes[peer].ipv4
        lab.ssh(
            node,
            "set -e; ip link del wg-bench 2>/dev/null || true; "
            "ip link add wg-bench type wireguard; "
            f"wg set wg-bench private-key /run/wg-bench.key listen-port {WG_PORT} "
            f"peer {shlex.quote(keys[peer])} allowed-ips {WG_NET}{3 - i}/32 endpoint {peer_ip}:{WG_PORT}; "
            f"ip addr add {WG_NET}{i}/24 dev wg-bench; ip link set wg-bench up",
        )


def wireguard_down(lab: Lab) -> None:
    for node in ("node1", "node2"):
        lab.ssh(node, "ip link del wg-bench 2>/dev/null; rm -f /run/wg-bench.key; true")


def measure(lab: Lab, transport: str, volume: str, pings: int, timeout: float) -> dict[str, Any]:
    common = f"--json --bytes {volume} --pings {pings} --timeout {int(timeout)}"
    if transport == "tcp":
        ip = lab.nodes["node2"].ipv4
        return served(
            lab,
            f"pool_test server --tcp {ip}:{TCP_PORT} --once --json",
            f"pool_test bench --tcp {ip}:{TCP_PORT} {common}",
            timeout,
        )
    if transport == "wireguard":
        ip = f"{WG_NET}2"
        return served(
            lab,
            f"pool_test server --tcp {ip}:{TCP_PORT} --once --json",
            f"pool_test bench --tcp {ip}:{TCP_PORT} {common}",
            timeout,
        )
    return served(
        lab,
        "pool_test server --peer node1 --once --json",
        f"pool_test bench --peer node2 {common}",
        timeout,
    )


def report(results: dict[str, dict[str, Any]]) -> str:
    base = results["tcp"]
    lines = [
        f"{'transport':<10} {'Mbit/s':>10} {'ratio':>6} {'rtt p50 us':>11} {'p99 us':>9} {'ratio p50':>9}",
    ]
    for name, res in results.items():
        thr = res["bulk"]["throughput_mbit_s"]
        p50 = res["ping"]["rtt_us"]["p50"]
        p99 = res["ping"]["rtt_us"]["p99"]
        lines.append(
            f"{name:<10} {thr:>10.1f} {thr / base['bulk']['throughput_mbit_s']:>6.2f} "
            f"{p50:>11.1f} {p99:>9.1f} {p50 / base['ping']['rtt_us']['p50']:>9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", default="256m", help="bulk volume per transport (default 256m)")
    ap.add_argument("--pings", type=int, default=500, help="round trips per transport (default 500)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per measurement (default 900)")
    ap.add_argument("--no-wireguard", action="store_true", help="skip the WireGuard comparison")
    ap.add_argument("--output", type=Path, default=Path(".cache/bench/results.json"))
    args = ap.parse_args(argv)
    try:
        lab = Lab()
        results: dict[str, dict[str, Any]] = {}
        for transport in ("tcp", "pool"):
            results[transport] = measure(lab, transport, args.bytes, args.pings, args.timeout)
        if not args.no_wireguard:
            wireguard_up(lab)
            try:
                results["wireguard"] = measure(lab, "wireguard", args.bytes, args.pings, args.timeout)
            finally:
                wireguard_down(lab)
    except (BenchError, pool_lab.LabError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    for name, res in results.items():
        if not res["bulk"]["sha256_ok"]:
            print(f"bench: {name}: the far end's SHA-256 differs from what was sent", file=sys.stderr)
            return 1
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
