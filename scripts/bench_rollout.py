#!/usr/bin/env python3
"""Rollout benchmark: the fleet pipeline against node-local DKMS, on fresh lab nodes.

Each mode gets a lab booted from the cached images (the boot is not timed), then
playbooks/site.yml rolls POOL out onto it:
- dkms: every node installs the compiler and its kernel's headers and builds pool.ko itself
  (pool_kmod_mode=dkms); this is the baseline;
- package (the default): pool.ko is built once per kernel release on the build hosts of
  pool_kmod_builders, signed with the fleet key and installed on the nodes as a package.
For each it reports the rollout's seconds and the builds it made (every kernel a kmod or
kmod_package task says it built), against the kernel releases the nodes run. On the package
lab it then runs site.yml again (a no-op: it must change nothing) against a one-task playbook
on the same hosts (scripts/bench_one_task.yml), the cost of Ansible's start and connections.
The package lab is left up and rolled out, for the benchmarks that follow (scripts/bench.sh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "molecule" / "lab"))
import pool_lab

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "playbooks" / "site.yml"
ONE_TASK = ROOT / "scripts" / "bench_one_task.yml"
BUILD_ACTIONS = {"pool.ops.kmod": "node", "pool.ops.kmod_package": "build host"}
MODES = ("dkms", "package")


class BenchError(Exception):
    pass


def builds(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every kernel a pool.ops.kmod or pool.ops.kmod_package task built, and where.

    A looped task reports once per item and once more with every item under 'results': only
    the runner_on_ok events are read, with their items, so that no build counts twice.
    """
    found = []
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data", {})
        where = BUILD_ACTIONS.get(data.get("task_action", ""))
        if where is None:
            continue
        res = data.get("res", {})
        for result in res.get("results", [res]):
            if result.get("skipped"):
                continue
            for kernel in result.get("built", []):
                found.append({"kernel": kernel, "host": data.get("host", "?"), "where": where})
    return found


def changed_tasks(events: list[dict[str, Any]]) -> list[str]:
    """'task on host' for every task that reported a change."""
    return [
        f"{e['event_data'].get('task', '?')} on {e['event_data'].get('host', '?')}"
        for e in events
        if e.get("event") == "runner_on_ok" and e.get("event_data", {}).get("res", {}).get("changed")
    ]


def run_playbook(playbook: Path, inventory: Path, extra: list[str], what: str) -> tuple[float, list[dict[str, Any]]]:
    """Run playbook with ansible-runner; return its wall-clock seconds and its events."""
    with tempfile.TemporaryDirectory(prefix="pool-bench.") as private:
        start = time.monotonic()
        r = ansible_runner.run(
            private_data_dir=private,
            playbook=str(playbook),
            # absolute: ansible-runner runs in its private folder
            inventory=str(inventory.resolve()),
            cmdline=" ".join(extra),
            envvars={"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
            quiet=True,
        )
        seconds = time.monotonic() - start
        events = list(r.events)
    if r.status != "successful" or r.rc != 0:
        failed = [
            f"{e['event_data'].get('task', '?')} on {e['event_data'].get('host', '?')}: "
            f"{e['event_data'].get('res', {}).get('msg', '')}"
            for e in events
            if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
            and not e["event_data"].get("ignore_errors")
        ]
        raise BenchError(f"{what}: {r.status} (exit {r.rc}): {failed}")
    if any(e.get("event") == "playbook_on_no_hosts_matched" for e in events):
        raise BenchError(f"{what}: no hosts matched in {inventory}")
    return seconds, events


def lab(*args: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "molecule" / "lab" / "pool_lab.py"), *args], check=False)
    if done.returncode != 0:
        raise BenchError(f"pool_lab.py {' '.join(args)} failed ({done.returncode})")


def running_kernels(inventory: Path) -> dict[str, str]:
    """Each node's running kernel release."""
    _, events = run_playbook(ONE_TASK, inventory, [], "reading the kernels")
    kernels = {}
    for e in events:
        data = e.get("event_data", {})
        if e.get("event") == "runner_on_ok" and data.get("task_action") == "ansible.builtin.command":
            kernels[data["host"]] = data["res"]["stdout"].strip()
    if not kernels:
        raise BenchError(f"{ONE_TASK.name} reported no node's kernel")
    return kernels


def rollout(mode: str, inventory: Path) -> dict[str, Any]:
    """Boot a fresh lab and roll site.yml out onto it in mode; the lab stays up."""
    lab("down")
    lab("up", "--inventory", str(inventory))
    kernels = running_kernels(inventory)
    seconds, events = run_playbook(SITE, inventory, ["-e", f"pool_kmod_mode={mode}"], f"site.yml ({mode})")
    return {"mode": mode, "seconds": round(seconds, 1), "kernels": kernels, "builds": builds(events)}


def no_op(inventory: Path, runs: int) -> dict[str, Any]:
    """site.yml again on the rolled-out package lab, against the one-task playbook."""
    site, baseline = [], []
    for _ in range(runs):
        seconds, events = run_playbook(ONE_TASK, inventory, [], "the one-task playbook")
        baseline.append(seconds)
        seconds, events = run_playbook(SITE, inventory, [], "the no-op site.yml")
        changed = changed_tasks(events)
        if changed:
            raise BenchError(f"the re-run of site.yml changed something: {changed}")
        site.append(seconds)
    return {"site_seconds": round(min(site), 1), "one_task_seconds": round(min(baseline), 1), "runs": runs}


def report(results: dict[str, Any]) -> str:
    dkms, package, noop = results["dkms"], results["package"], results["no_op"]
    releases = sorted(set(package["kernels"].values()))
    lines = [
        f"rollout of site.yml onto {len(package['kernels'])} fresh nodes, {len(releases)} kernel releases "
        f"({', '.join(releases)})",
        f"{'':34} {'seconds':>8} {'builds':>7} {'ratio':>7}",
    ]
    for name, res in (("node-local DKMS (baseline)", dkms), ("build host + package", package)):
        ratio = res["seconds"] / dkms["seconds"]
        lines.append(f"  {name:32} {res['seconds']:8.1f} {len(res['builds']):7d} {ratio:7.2f}")
    for name, res in (("node-local DKMS", dkms), ("build host + package", package)):
        where = (
            ", ".join(
                f"{b['kernel']} on {b['host']}" if b["where"] == "node" else f"{b['kernel']} on the build host"
                for b in res["builds"]
            )
            or "none"
        )
        lines.append(f"  builds, {name}: {where}")
    lines.append(f"  builds per kernel release, build host: {len(package['builds']) / len(releases):.2f} (expected 1)")
    lines += [
        f"{'':34} {'seconds':>8} {'':7} {'ratio':>7}",
        f"  {'one-task playbook (baseline)':32} {noop['one_task_seconds']:8.1f} {'':7} {1:7.2f}",
        f"  {'site.yml again, nothing changed':32} {noop['site_seconds']:8.1f} {'':7} "
        f"{noop['site_seconds'] / noop['one_task_seconds']:7.2f}",
        f"  (each the fastest of {noop['runs']} runs)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", type=Path, default=Path(".cache/bench/hosts.yml"))
    ap.add_argument("--runs", type=int, default=3, help="no-op and one-task runs; the fastest counts (default 3)")
    ap.add_argument("--output", type=Path, default=Path(".cache/bench/rollout.json"))
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs is {args.runs}: give 1 or more")
    try:
        if pool_lab.State.load(pool_lab.run_dir()) is not None:
            raise BenchError(
                f"lab {pool_lab.lab_name()!r} is up: this benchmark boots fresh nodes; take it down or name another "
                "lab (POOL_BENCH_LAB)"
            )
        results: dict[str, Any] = {mode: rollout(mode, args.inventory) for mode in MODES}
        results["no_op"] = no_op(args.inventory, args.runs)
    except (BenchError, pool_lab.LabError) as exc:
        print(f"bench_rollout: {exc}", file=sys.stderr)
        return 1
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench_rollout: figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
