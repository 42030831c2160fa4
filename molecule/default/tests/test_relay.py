"""pool_relay in the shared lab (docs/relay.md): node1 and node3 share no link and reach each other
through node2 (the lab inventory's pool_relays group: node2 relays for both, each accepts it, and
each names node2 as the relay of the other in pool.conf)."""

from __future__ import annotations

import json
import shlex
import time

import pytest
from lab_queries import exporter_samples, one
from test_transport import Node, _bg, _node

testinfra_hosts = ["node1"]

RELAY = "/usr/local/sbin/pool_relay"
VAULT = "/usr/local/sbin/pool_vault"
POOL_TEST = "/usr/local/sbin/pool_test"
MiB = 1 << 20

# Runs on node2: every frame of the relay port for S seconds (AF_PACKET, nothing to install);
# prints the bytes seen and how often NEEDLE (hex) occurs in them.
CAPTURE = r"""
import socket, struct, sys, time
needle, seconds = bytes.fromhex(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
s.settimeout(0.5)
seen, end = bytearray(), time.monotonic() + seconds
while time.monotonic() < end:
    try:
        frame = s.recv(65536)
    except socket.timeout:
        continue
    if b"\x24\x27" in frame[:80]:  # port 9255 in a TCP header, near enough for a filter
        seen += frame
print(len(seen), seen.count(needle))
"""


class RelayLab:
    def __init__(self, n1: Node, n2: Node, n3: Node) -> None:
        self.n1, self.n2, self.n3 = n1, n2, n3

    def status(self, node: Node) -> dict:
        return json.loads(node.ok(f"{RELAY} --json status"))

    def relayed(self, a: Node, b: Node, timeout: float = 180) -> dict:
        """a's live session with b, which must run through node2."""
        deadline = time.monotonic() + timeout
        while True:
            live = [s for s in a.live_with(b.key) if s.get("path") == "relay node2"]
            if live:
                return live[0]
            assert time.monotonic() < deadline, f"{a.name}: no session with {b.name} through node2: {a.sessions()}"
            time.sleep(2)

    def source(self, timeout: float = 180) -> tuple[Node, Node]:
        """(the node whose door started the relayed connection, the other). A session poolctl
        lists may be the one a relay restart just cut, so this waits for the relay's own word."""
        deadline = time.monotonic() + timeout
        while True:
            for a, b in ((self.n1, self.n3), (self.n3, self.n1)):
                r = a.run(f"{RELAY} --json status")  # fails while a restarted relay starts up
                if r.rc == 0 and any(c["role"] == "source" for c in json.loads(r.stdout)["carried"]):
                    return a, b
            if time.monotonic() > deadline:
                shown = [n.run(f"{RELAY} --json status").stdout for n in (self.n1, self.n3)]
                pytest.fail(f"no relayed connection on node1 or node3: {shown}")
            time.sleep(2)

    def figures(self, node: Node, peer: Node) -> dict:
        return next(p for p in self.status(node)["peers"] if p["key"] == peer.key)

    def bulk(self, sender: Node, receiver: Node, nbytes: int) -> dict:
        """pool_test over the relayed session: receiver serves, sender sends nbytes."""
        srv = _bg(receiver.run, f"{POOL_TEST} server --peer {sender.name} --once --timeout 300", 600)
        time.sleep(2)
        r = sender.run(f"{POOL_TEST} client --peer {receiver.name} --bytes {nbytes} --json --timeout 300", 600)
        s = srv.result()
        assert r.rc == 0 and s.rc == 0, f"{sender.name} -> {receiver.name}: {r.stdout} {r.stderr} {s.stderr}"
        return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def relay(host) -> RelayLab:
    inv = host.backend.ansible_inventory
    n1, n2, n3 = (_node(inv, n) for n in ("node1", "node2", "node3"))
    for n in (n1, n2, n3):
        n.key = n.poolctl("identity", "show")["public_key"]
        n.py = f"PYTHONPATH={n.ok('ls -d /opt/pool/lib/python3*/site-packages').split()[0]} python3"
        assert n.run("systemctl is-active pool-relay").stdout.strip() == "active", n.name
    lab = RelayLab(n1, n2, n3)
    lab.relayed(n1, n3)
    lab.relayed(n3, n1)
    return lab


def carried_bytes(node: Node) -> float:
    found = exporter_samples(node.ok, node.ipv4)
    assert one(found, "pool_relay_up") == 1
    return sum(v for labels, v in found.get("pool_relay_carried_bytes_total", []) if labels["role"] == "relay")


def test_a_relayed_session_carries_100_mib_and_everyone_counts_it(relay: RelayLab) -> None:
    src, dst = relay.source()
    n2 = relay.n2
    before = (relay.figures(n2, src)["consumed"], relay.figures(src, n2)["contributed"])
    exported_before = carried_bytes(n2)
    doc = relay.bulk(src, dst, 100 * MiB)
    assert doc["sha256_ok"], doc
    print(f"\n{src.name} -> {dst.name} through node2: 100 MiB in {doc['seconds']} s, {doc['throughput_mbit_s']} Mbit/s")
    time.sleep(6)  # the status files are rewritten every 5 s
    relay_saw = relay.figures(n2, src)["consumed"] - before[0]
    source_saw = relay.figures(src, n2)["contributed"] - before[1]
    print(f"node2 counts {relay_saw} bytes consumed by {src.name}; {src.name} counts {source_saw} contributed by node2")
    assert relay_saw >= 100 * MiB and source_saw >= 100 * MiB
    assert abs(relay_saw - source_saw) <= relay_saw // 100  # the same bytes, seen from both ends
    # pool_exporter on node2 counts the same bytes (pool_relay_carried_bytes_total, docs/exporter.md)
    exported = carried_bytes(n2) - exported_before
    print(f"node2's exporter: pool_relay_carried_bytes_total{{role=relay}} rose by {exported:.0f}")
    assert exported >= 100 * MiB, f"the exporter counts {exported} relayed bytes for a 100 MiB transfer"
    # the relay scores the consumer below the start, the source scores the relay above it
    assert relay.figures(n2, src)["score"] < 1 < relay.figures(src, n2)["score"]
    for a, b in ((relay.n1, relay.n3), (relay.n3, relay.n1)):
        assert relay.relayed(a, b)["path"] == "relay node2"
    exposure = n2.ok("systemd-analyze security pool-relay --no-pager | tail -1")
    print(f"systemd-analyze security pool-relay: {exposure.strip()}")


def test_signed_statements_agree_with_each_nodes_own_figures(relay: RelayLab) -> None:
    """Every minute each node signs what it observed of each peer (docs/relay.md 6a): node1 and
    node3 hold node2's statement about them, node2 holds theirs about it, each verified, and
    each says what its observer's own ledger says (the scores within 1%: time moves on)."""
    n2 = relay.n2
    pairs = [(n2, relay.n1), (n2, relay.n3), (relay.n1, n2), (relay.n3, n2)]  # (observer, subject)
    # A statement made during the previous test's transfer says less than its observer's ledger
    # does now: compare only statements made after this test began (each node signs every minute).
    began = {n.name: int(n.ok("date +%s")) for n in (relay.n1, n2, relay.n3)}
    deadline = time.monotonic() + 150
    while True:
        held = {}
        for observer, subject in pairs:
            row = next(p for p in relay.status(subject)["peers"] if p["key"] == observer.key)
            held[(observer.name, subject.name)] = row["statement_about_this_node"]
        fresh = all(st and st["at"] > began[observer] for (observer, _subject), st in held.items())
        if fresh or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert fresh, f"no statement made after the test began, after 150 s: {held}"
    for observer, subject in pairs:
        st = held[(observer.name, subject.name)]
        assert st["observer"] == observer.name
        own = relay.figures(observer, subject)
        print(f"{observer.name} about {subject.name}: signed score {st['score']}, its own {own['score']}")
        assert st["score"] == pytest.approx(own["score"], rel=0.01), (st, own)
    assert relay.status(n2)["signing_key"] == next(
        p["signing_key"] for p in relay.status(relay.n1)["peers"] if p["key"] == n2.key
    )


def test_the_relay_sees_only_ciphertext(relay: RelayLab) -> None:
    src, dst = relay.source()
    # 32 bytes of what pool_test sends (its pattern), which must not cross node2 in clear
    needle = src.ok(
        f"{src.py} -c 'from pooltools.testing.pool_test import pattern; print(next(pattern(1 << 20, 65519))[4096:4128].hex())'"
    ).strip()
    capture = _bg(relay.n2.run, f"python3 -c {shlex.quote(CAPTURE)} {needle} 40", 120)
    time.sleep(3)
    doc = relay.bulk(src, dst, 8 * MiB)
    seen, count = map(int, capture.result().stdout.split())
    assert doc["sha256_ok"]
    assert seen >= 8 * MiB, f"the capture saw {seen} bytes of the relay port"
    assert count == 0, f"the plaintext pattern crossed node2 {count} times"


def test_stopping_the_relay_ends_the_session_and_a_restart_brings_it_back(relay: RelayLab) -> None:
    src, dst = relay.source()
    n2 = relay.n2
    consumed = relay.figures(n2, src)["consumed"]
    n2.ok("systemctl stop pool-relay")
    try:
        deadline = time.monotonic() + 60
        while any(s.get("path") == "relay node2" for s in src.live_with(dst.key)):
            assert time.monotonic() < deadline, f"{src.name} still has a relayed session 60 s after the relay stopped"
            time.sleep(2)
        r = src.run(f"{POOL_TEST} client --peer {dst.name} --bytes 1024 --json --timeout 10", 60)
        assert r.rc != 0 and "no established session" in r.stderr, (r.rc, r.stdout, r.stderr)
    finally:
        n2.ok("systemctl start pool-relay")
    relay.relayed(src, dst)
    # the ledger survived the restart
    assert relay.figures(n2, src)["consumed"] >= consumed


def test_a_vault_on_node1_serves_node3_through_node2(relay: RelayLab) -> None:
    """A vault served by node1 (a transient unit with its own folder and ACL) serves node3 over
    the session poold holds through node2 (pool_vault --attach): push, stat, pull, same bytes."""
    n1, n3 = relay.n1, relay.n3
    work, unit = "/root/relay-vault", "pool-vault-relaytest"
    n1.ok(f"rm -rf {work} && mkdir -p {work}")
    n1.ok(f"{VAULT} enroll {n3.key} --name node3 --scope read-write --acl {work}/acl.json")
    n1.ok(
        f"systemd-run --unit {unit} --collect --property=Type=notify {VAULT} serve --dir {work}/vault"
        f" --acl {work}/acl.json --status-file {work}/status.json"
    )
    try:
        assert relay.relayed(n3, n1)["path"] == "relay node2"
        n3.ok(f"rm -rf {work} && mkdir -p {work} && head -c {16 * MiB} /dev/urandom > {work}/blob")
        want = n3.ok(f"sha256sum {work}/blob").split()[0]
        vault = f"{VAULT} --json"
        pushed = n3.json(f"{vault} push {work}/blob relayed/blob --vault node1 --attach", 600)
        assert pushed["sha256"] == want, pushed
        assert n3.json(f"{vault} stat relayed/blob --vault node1 --attach")["sha256"] == want
        n3.ok(f"{vault} pull relayed/blob {work}/back --vault node1 --attach", 600)
        assert n3.ok(f"sha256sum {work}/back").split()[0] == want
        assert n1.ok(f"sha256sum {work}/vault/files/relayed/blob").split()[0] == want
    finally:
        n1.run(f"systemctl stop {unit}")
        n1.run(f"rm -rf {work}")
        n3.run(f"rm -rf {work}")


FLIP_DROPIN = "/run/systemd/system/pool-relay.service.d/flip.conf"


def test_a_byte_the_relay_alters_ends_the_session_at_both_ends(relay: RelayLab) -> None:
    """node2 inverts the byte at 2 MiB of every stream it forwards towards the destination
    (pool_relay's --flip-at fault, in a runtime drop-in): the destination refuses the altered
    packet and ends the session (docs/protocol.md section 4), the source learns it, and the
    transfer fails at both ends instead of arriving with a hole."""
    n2 = relay.n2
    unit_start = n2.ok("grep '^ExecStart=' /etc/systemd/system/pool-relay.service").strip()
    n2.ok(
        f"mkdir -p {FLIP_DROPIN.rsplit('/', 1)[0]} && printf '[Service]\\nExecStart=\\n%s --flip-at {2 * MiB}\\n' "
        f"{shlex.quote(unit_start)} > {FLIP_DROPIN} && systemctl daemon-reload && systemctl restart pool-relay"
    )
    try:
        src, dst = relay.source()
        relay.relayed(src, dst)
        marks = {n.name: n.journal_next() for n in (src, dst)}
        srv = _bg(dst.run, f"{POOL_TEST} server --peer {src.name} --once --timeout 120", 300)
        time.sleep(2)
        r = src.run(f"{POOL_TEST} client --peer {dst.name} --bytes {16 * MiB} --json --timeout 120", 300)
        s = srv.result()
        print(f"\nclient: {r.rc} {r.stderr.strip()[-300:]}\nserver: {s.rc} {s.stderr.strip()[-300:]}")
        assert r.rc != 0 and s.rc != 0, "a transfer through an altering relay succeeded"
        refused = [
            e
            for e in dst.journal_from(marks[dst.name])
            if e["peer_public_key"] == src.key and e["detail"].startswith("transport:")
        ]
        assert refused, f"{dst.name} journaled no refused packet from {src.name}"
        print(f"{dst.name}: {refused[0]['code_name']}: {refused[0]['detail']}")
        ended = [
            e
            for e in src.journal_from(marks[src.name])
            if e["peer_public_key"] == dst.key and e["type"] == "disconnect"
        ]
        assert ended, f"{src.name} journaled no end of its session with {dst.name}"
        print(f"{src.name}: session ended: {ended[0]['code_name']}")
        if refused[0]["code_name"] != "malformed":  # a refusal with a wire code travels in CLOSE
            assert ended[0]["code_name"] == refused[0]["code_name"], (ended[0], refused[0])
    finally:
        n2.ok(f"rm -f {FLIP_DROPIN} && systemctl daemon-reload && systemctl restart pool-relay")
    relay.relayed(relay.n1, relay.n3)
    relay.relayed(relay.n3, relay.n1)
    assert not relay.n3.kernel_problems() and not relay.n1.kernel_problems()


def test_a_relay_the_destination_does_not_accept_is_refused(relay: RelayLab) -> None:
    src, dst = relay.source()
    n2 = relay.n2
    dst.ok(f"{RELAY} enroll node2 {n2.key}")  # no --accept
    try:
        since = src.ok("date '+%Y-%m-%d %H:%M:%S'").strip()
        for s in dst.live_with(src.key):
            dst.poolctl("close", str(s["index"]))
        # The source's retry goes through the relay and is refused there: wait for that refusal
        # (poold retries within seconds), then no session may have come back.
        deadline = time.monotonic() + 60
        while True:
            log = src.ok(f"journalctl -u pool-relay --since '{since}' --no-pager")
            if "not_accepted" in log or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert "not_accepted" in log, log[-2000:]
        assert not src.live_with(dst.key) and not dst.live_with(src.key), "a relay nobody accepts carried a session"
    finally:
        dst.ok(f"{RELAY} enroll node2 {n2.key} --accept")
    relay.relayed(src, dst)
