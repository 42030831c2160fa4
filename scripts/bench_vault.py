#!/usr/bin/env python3
"""Vault benchmark: pool_vault push and pull throughput as ratios to a raw POOL session's, all
measured in the same run between node1 and node2 (node2 is the lab's vault), and the time to
enroll one peer end to end with playbooks/enroll.yml.

- raw: pool_test's bulk transfer (SHA-256 checked at the far end) over a session node1 opens
  to node2 (CONNECT), as the vault client does;
- push / pull: `pool_vault push` and `pool_vault pull` of a file of the same size, timed on
  node1 from start to exit (the client's hashing, the server's fsync and rename included);
- enroll: node3 is made a stranger to node2 (each side's trust store without the other, as a
  confirmed configuration version, and node3 revoked from the ACL), then enroll.yml enrolls it
  again; the wall-clock time of that playbook run.
Figures are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BenchError, Lab
from bench_config import active_document, poolctl

REPO = Path(__file__).resolve().parents[1]
WORK = "/root/vault-bench"


def timed(lab: Lab, node: str, command: str, timeout: float) -> tuple[float, dict[str, Any]]:
    """Seconds command took on node (its own clock) and the last line of its output, as JSON."""
    out = lab.ssh(
        node,
        f"s=$(date +%s%N); out=$({command}); rc=$?; e=$(date +%s%N); "
        'echo "$out" | tail -1; echo $(( (e - s) / 1000000 )); exit $rc',
        timeout=timeout,
    ).splitlines()
    return int(out[-1]) / 1000, json.loads(out[-2])


def raw_session(lab: Lab, size: int, timeout: float) -> float:
    """MiB/s of pool_test bulk over a new node1 -> node2 session, served by pool_test on node2."""
    before = {s["index"] for s in poolctl(lab, "node2", "sessions")["sessions"]}
    client = lab.background("node1", f"pool_test client --connect node2 --bytes {size} --json --timeout {int(timeout)}")
    deadline = time.monotonic() + 60
    while True:
        new = [s["index"] for s in poolctl(lab, "node2", "sessions")["sessions"] if s["index"] not in before]
        if new:
            break
        if time.monotonic() > deadline:
            client.kill()
            raise BenchError("node1's pool_test session never reached node2")
        time.sleep(0.3)
    lab.ssh("node2", f"pool_test server --index {max(new)} --once --timeout {int(timeout)}", timeout=timeout)
    out, err = client.communicate(timeout=timeout)
    if client.returncode:
        raise BenchError(f"pool_test client failed: {err.strip()[-400:]}")
    doc = json.loads(out.strip().splitlines()[-1])
    if not doc.get("sha256_ok"):
        raise BenchError(f"raw session: the far end's SHA-256 differs: {doc}")
    return size / (1 << 20) / doc["seconds"]


def vault_transfers(lab: Lab, size: int, timeout: float, run_id: str) -> tuple[float, float]:
    lab.ssh("node1", f"mkdir -p {WORK} && head -c {size} /dev/urandom > {WORK}/data")
    path = f"bench/{run_id}.bin"
    push_s, push = timed(lab, "node1", f"pool_vault --json push {WORK}/data {path} --vault node2", timeout)
    pull_s, pull = timed(lab, "node1", f"pool_vault --json pull {path} {WORK}/back --vault node2", timeout)
    if (
        push["sha256"] != pull["sha256"]
        or lab.ssh("node1", f"cmp {WORK}/data {WORK}/back && echo same").strip() != "same"
    ):
        raise BenchError("the pulled file differs from the pushed one")
    lab.ssh("node1", f"pool_vault delete {path} --force --vault node2 >/dev/null")
    lab.ssh("node1", f"rm -rf {WORK}")
    return size / (1 << 20) / push_s, size / (1 << 20) / pull_s


def enroll_time(lab: Lab, inventory: Path) -> float:
    """node3 made a stranger to node2, then enrolled again with playbooks/enroll.yml: seconds."""
    keys = {n: poolctl(lab, n, "identity", "show")["public_key"] for n in ("node2", "node3")}
    for node, other in (("node2", "node3"), ("node3", "node2")):
        doc = active_document(lab, node)
        doc["peers"] = [p for p in doc["peers"] if p["public_key"] != keys[other]]
        poolctl(lab, node, "config", "apply", "-", stdin=json.dumps(doc))
    lab.ssh("node2", "pool_vault revoke node3 >/dev/null")
    start = time.monotonic()
    done = subprocess.run(
        [
            "ansible-playbook", "-i", str(inventory), str(REPO / "playbooks" / "enroll.yml"),
            "-e", "pool_enroll_peer=node3", "-e", "pool_enroll_vault=node2",
            "-e", "pool_enroll_scope=read", "-e", "pool_enroll_prefix=shared",
        ],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    if done.returncode:
        raise BenchError(f"enroll.yml failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=128 << 20, help="transfer size (default 128 MiB)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of raw, push and pull (default 2)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument(
        "--inventory", type=Path, default=Path(os.environ.get("POOL_BENCH_INVENTORY", ".cache/bench/hosts.yml"))
    )
    ap.add_argument("--no-enroll", action="store_true", help="skip the enrolment measurement")
    ap.add_argument("--output", type=Path, default=Path(".cache/bench/vault.json"))
    args = ap.parse_args(argv)
    figures: dict[str, Any] = {"bytes": args.bytes, "rounds": []}
    try:
        lab = Lab()
        run_id = f"{os.getpid()}-{int(time.time())}"
        for i in range(args.rounds):
            raw = raw_session(lab, args.bytes, args.timeout)
            push, pull = vault_transfers(lab, args.bytes, args.timeout, f"{run_id}-{i}")
            figures["rounds"].append({"raw_mib_s": raw, "push_mib_s": push, "pull_mib_s": pull})
        if not args.no_enroll:
            figures["enroll_seconds"] = enroll_time(lab, args.inventory)
    except (BenchError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"bench_vault: {exc}", file=sys.stderr)
        return 1
    print(f"{'round':<6} {'raw MiB/s':>10} {'push MiB/s':>11} {'ratio':>6} {'pull MiB/s':>11} {'ratio':>6}")
    for i, r in enumerate(figures["rounds"], 1):
        print(
            f"{i:<6} {r['raw_mib_s']:>10.2f} {r['push_mib_s']:>11.2f} {r['push_mib_s'] / r['raw_mib_s']:>6.2f}"
            f" {r['pull_mib_s']:>11.2f} {r['pull_mib_s'] / r['raw_mib_s']:>6.2f}"
        )
    if "enroll_seconds" in figures:
        print(f"enroll one peer end to end (playbooks/enroll.yml): {figures['enroll_seconds']:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"bench_vault: figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
