#!/usr/bin/env python3
"""Configuration rollout benchmark: apply-to-confirmed time, and automatic rollback punctuality.

On a lab with playbooks/site.yml rolled out (poold holding a session between node1 and node2):
- good changes: a new version (heartbeat_seconds toggled) applied tentatively on both nodes at
  once, then confirmed on each node as soon as its session to the other is established again;
  it reports, per node, the seconds from apply to confirmed;
- automatic rollbacks: a version applied with a deadline and never confirmed; pool.ko rolls back
  by itself, and the distance between the deadline pool.ko reported at apply and the time of its
  ROLLBACK journal entry is reported (both read off the node's own clock).
Figures are printed and written as JSON; the first round is the baseline of the others.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BenchError, Lab

NODES = ("node1", "node2")


def poolctl(lab: Lab, node: str, *args: str, stdin: str | None = None) -> dict[str, Any]:
    cmd = "poolctl --json " + " ".join(shlex.quote(a) for a in args)
    if stdin is not None:
        cmd = f"printf %s {shlex.quote(stdin)} | {cmd}"
    return json.loads(lab.ssh(node, cmd, timeout=120))


def active_document(lab: Lab, node: str) -> dict[str, Any]:
    """The node's running configuration as a document (docs/protocol.md section 7)."""
    show = poolctl(lab, node, "config", "show")
    peers = poolctl(lab, node, "peers", "list")["peers"]
    doc = {
        k: show[k] for k in ("heartbeat_seconds", "rekey_seconds", "rekey_packets", "puzzle_difficulty", "max_sessions")
    }
    doc["peers"] = [{"name": p["name"], "public_key": p["public_key"], "endpoint": p["endpoint"]} for p in peers]
    return doc


def established_with(lab: Lab, node: str, other_key: str) -> bool:
    sessions = poolctl(lab, node, "sessions")["sessions"]
    return any(s["peer_public_key"] == other_key and s["state"] == "established" for s in sessions)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def apply_and_confirm(lab: Lab, node: str, doc: dict[str, Any], other_key: str, window: int) -> float:
    """Seconds from the start of `config apply` to a successful `config confirm` on node."""
    start = time.monotonic()
    applied = poolctl(lab, node, "config", "apply", "-", "--confirm-within", str(window), stdin=json.dumps(doc))
    wait_for(lambda: established_with(lab, node, other_key), window, f"{node}'s session after apply")
    poolctl(lab, node, "config", "confirm", "--version", str(applied["version"]))
    return time.monotonic() - start


def rollback_lateness(lab: Lab, node: str, doc: dict[str, Any], deadline_s: int) -> float:
    """Apply tentatively, never confirm; milliseconds between pool.ko's deadline and its ROLLBACK entry."""
    nxt = poolctl(lab, node, "journal", "show", "--last", "1")["next_seq"]
    applied = poolctl(lab, node, "config", "apply", "-", "--confirm-within", str(deadline_s), stdin=json.dumps(doc))
    if not applied["tentative"] or not applied["deadline_ns"]:
        raise BenchError(f"{node}: version {applied['version']} was not applied tentatively: {applied}")

    def rolled_back() -> bool:
        return poolctl(lab, node, "config", "show")["version"] != applied["version"]

    wait_for(rolled_back, deadline_s + 30, f"{node}'s automatic rollback of version {applied['version']}")
    entries = poolctl(lab, node, "journal", "show", "--from", str(nxt))["entries"]
    # the node's own ROLLBACK, not the other node's announced one (journaled under its key)
    rollbacks = [e for e in entries if e["type"] == "rollback" and e["peer_public_key"] is None]
    if not rollbacks:
        raise BenchError(f"{node}: no ROLLBACK entry in the journal after seq {nxt}")
    return (rollbacks[0]["timestamp_ns"] - applied["deadline_ns"]) / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="good changes and rollbacks each (default 3)")
    ap.add_argument("--window", type=int, default=60, help="confirm-within of the good changes, s (default 60)")
    ap.add_argument("--deadline", type=int, default=10, help="deadline of the unconfirmed versions, s (default 10)")
    ap.add_argument("--output", type=Path, default=Path(".cache/bench/config.json"))
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.window < 5 or args.deadline < 1:
        ap.error("--rounds must be >= 1, --window >= 5 and --deadline >= 1")
    try:
        lab = Lab()
        keys = {n: poolctl(lab, n, "identity", "show")["public_key"] for n in NODES}
        other = {"node1": keys["node2"], "node2": keys["node1"]}
        for n in NODES:
            if not established_with(lab, n, other[n]):
                raise BenchError(f"{n} has no established session to the other node: is site.yml rolled out?")
        confirm_s: dict[str, list[float]] = {n: [] for n in NODES}
        late_ms: dict[str, list[float]] = {n: [] for n in NODES}
        with ThreadPoolExecutor(len(NODES)) as pool:
            for r in range(args.rounds):
                docs = {n: active_document(lab, n) for n in NODES}
                for d in docs.values():
                    d["heartbeat_seconds"] = 6 if d["heartbeat_seconds"] == 5 else 5
                futs = {n: pool.submit(apply_and_confirm, lab, n, docs[n], other[n], args.window) for n in NODES}
                for n, f in futs.items():
                    confirm_s[n].append(f.result())
                for d in docs.values():
                    d["puzzle_difficulty"] = 17 if d["puzzle_difficulty"] != 17 else 16
                futs = {n: pool.submit(rollback_lateness, lab, n, docs[n], args.deadline) for n in NODES}
                for n, f in futs.items():
                    late_ms[n].append(f.result())
                print(
                    f"round {r + 1}: confirmed "
                    + ", ".join(f"{n} {confirm_s[n][-1]:.2f} s" for n in NODES)
                    + "; rollback after deadline "
                    + ", ".join(f"{n} {late_ms[n][-1]:+.0f} ms" for n in NODES)
                )
    except BenchError as exc:
        print(f"bench_config: {exc}", file=sys.stderr)
        return 1
    print(
        f"\n{'node':<6} {'apply->confirmed s':>19} {'median':>7} {'ratio to round 1':>17} "
        f"{'rollback late ms':>17} {'max':>6}"
    )
    for n in NODES:
        c, late = confirm_s[n], late_ms[n]
        print(
            f"{n:<6} {' '.join(f'{x:.2f}' for x in c):>19} {statistics.median(c):>7.2f} "
            f"{statistics.median(c) / c[0]:>17.2f} {statistics.median(late):>17.0f} {max(late):>6.0f}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "apply_to_confirmed_s": confirm_s,
                "rollback_late_ms": late_ms,
                "deadline_s": args.deadline,
                "window_s": args.window,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
