"""Key rotation as an operation (issue 17, point 5): playbooks/rotate_identity.yml gives node2 a
new static key in the shared lab. node1's and node3's sessions with node2 come back on the new
key, node1 and node3 still meet through node2's relay, nobody trusts the old key any more, and
the nodes' pool.conf and the relays' enrolments name the new key. The lab is then put back on
version 0 (pool.conf's trust store, now with the new key) for the scenarios after this one.

It changes node2's identity for good, so it runs after every other test but the kernel log
checks (conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from lab_queries import lab_nodes, poolctl
from playbook_run import lab_inventory, run

testinfra_hosts = ["node2"]

ROOT = Path(__file__).resolve().parents[3]
ROTATE = ROOT / "playbooks" / "rotate_identity.yml"
# The later scenarios on the shared lab start from version 0: this puts every node back there,
# on pool.conf's peers, which the rotation rewrote with the new key.
BACK_TO_VERSION_0 = ROOT / "molecule" / "rollback" / "cleanup.yml"
BOUND = 240  # seconds every session has to be back after the playbook ends


def live_keys(node) -> set[str]:
    return {s["peer_public_key"] for s in poolctl(node.check_output, "sessions")["sessions"]
            if s["state"] in ("established", "rekeying")}  # fmt: skip


@pytest.mark.rotation
def test_rotating_node2_brings_every_session_back_on_the_new_key(host):
    nodes = lab_nodes(host)
    key = {name: poolctl(n.check_output, "identity", "show")["public_key"] for name, n in nodes.items()}
    try:
        rotate_and_check(nodes, key)
    finally:
        run(BACK_TO_VERSION_0, lab_inventory(), [], "molecule/rollback/cleanup.yml after the rotation")
    # at version 0 the nodes run pool.conf's trust store: the new key there too
    for name in ("node1", "node3"):
        assert poolctl(nodes[name].check_output, "config", "show")["version"] == 0
        assert new_key(nodes) in live_keys(nodes[name])
    # and the relays route node1 <-> node3 through node2 by the key it has now: pool_relay
    # follows the pool.conf the rotation rewrote (with the old key, a relayed session that
    # ends later can never be made again)
    deadline = time.monotonic() + 60
    while True:
        routed = {name: relay_keys(nodes[name]) for name in ("node1", "node3")}
        if not any(key["node2"] in keys for keys in routed.values()) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not any(key["node2"] in keys for keys in routed.values()), f"relays still name node2's old key: {routed}"


def relay_keys(node) -> set[str]:
    """The keys pool_relay's status names: its enrolled peers and the relays its routes use."""
    return {p["key"] for p in json.loads(node.check_output("/usr/local/sbin/pool_relay --json status"))["peers"]}


def new_key(nodes) -> str:
    return poolctl(nodes["node2"].check_output, "identity", "show")["public_key"]


def rotate_and_check(nodes, key: dict[str, str]) -> None:
    old = key["node2"]
    started = time.monotonic()
    counters = run(ROTATE, lab_inventory(), ["-e", "pool_rotate_node=node2"], "rotate_identity.yml node2")
    took = time.monotonic() - started
    new = new_key(nodes)
    assert new != old, "node2 kept its key"
    assert nodes["node2"].run("test -e /etc/pool/private.key.old -o -e /etc/pool/private.key.next").rc == 1
    # every node's sessions are back: node1 and node3 with node2 on the new key, and with each
    # other through node2's relay
    deadline = time.monotonic() + BOUND
    want = {"node1": {new, key["node3"]}, "node2": {key["node1"], key["node3"]}, "node3": {new, key["node1"]}}
    while True:
        have = {name: live_keys(n) for name, n in nodes.items()}
        if all(want[n] <= have[n] for n in want) or time.monotonic() > deadline:
            break
        time.sleep(5)
    back = time.monotonic() - started
    print(f"\nrotate_identity.yml: {took:.0f} s; every session back {back - took:.0f} s after it ended; {counters}")
    assert all(want[n] <= have[n] for n in want), f"sessions missing after {BOUND} s: want {want}, have {have}"
    for name in ("node1", "node3"):
        trusted = {p["name"]: p["public_key"] for p in poolctl(nodes[name].check_output, "peers", "list")["peers"]}
        assert trusted.get("node2") == new and old not in trusted.values(), f"{name} trusts {trusted}"
        assert not any(n.endswith(".next") for n in trusted), f"{name} kept the transitional entry: {trusted}"
        config = poolctl(nodes[name].check_output, "config", "show")
        assert not config["tentative"], f"{name}: version {config['version']} left tentative"
        conf = nodes[name].file("/etc/pool/pool.conf").content_string
        assert new in conf and old not in conf, f"{name}: pool.conf still names the old key"
        relay = json.loads(nodes[name].check_output("/usr/local/sbin/pool_relay --json peers"))
        assert {p["name"]: p["key"] for p in relay["peers"]}.get("node2") == new, f"{name}: relay enrolment {relay}"
