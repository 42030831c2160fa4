"""pool_bridge in the shared lab (issue 17, point 4; docs/bridge.md): node1 reaches a web server
on node2's loopback through the bridge pair the inventory sets up (node2 offers "web" on
127.0.0.1:8080 to node1, node1 forwards 127.0.0.1:8081 to it). 50 HTTP clients at once get
their own files, byte for byte, while a client that asked for a big file and reads nothing
holds up none of them; when it reads at last, it gets all of it."""

from __future__ import annotations

import json
import shlex

import pytest
import testinfra

testinfra_hosts = ["node1"]

WEB_DIR = "/var/tmp/pool-test-web"
WEB_UNIT = "pool-test-web"
WEB_PORT, BRIDGE_PORT = 8080, 8081
CLIENTS = 50
BIG = 32 << 20

# On node1: a client that asks for /big and reads nothing, then CLIENTS clients at once, then the
# stalled one reads. Prints one JSON document.
CLIENTS_SCRIPT = r"""
import hashlib, json, socket, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, clients, big = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# (no SO_RCVBUF games: a 4 KiB window on loopback crawls at a few KB/s once it reads; the
# socket buffers the kernel gives it hold a few MiB, far less than BIG)
stalled = socket.create_connection(("127.0.0.1", port), timeout=120)
stalled.sendall(b"GET /big HTTP/1.0\r\nHost: node2\r\n\r\n")
time.sleep(2)  # the server starts sending; nobody reads
def fetch(i):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/f{i}", timeout=120) as r:
        return hashlib.sha256(r.read()).hexdigest()
start = time.monotonic()
with ThreadPoolExecutor(clients) as pool:
    digests = list(pool.map(fetch, range(clients)))
seconds = time.monotonic() - start
got = bytearray()
while chunk := stalled.recv(1 << 20):
    got += chunk
body = bytes(got).split(b"\r\n\r\n", 1)[1]
print(json.dumps({"digests": digests, "seconds": round(seconds, 2), "stalled_body": len(body),
                  "stalled_sha256": hashlib.sha256(body).hexdigest()}))
"""


@pytest.fixture(scope="module")
def web(host):
    """A web server on node2's loopback with CLIENTS small files and a big one; their SHA-256."""
    node2 = testinfra.get_host("ansible://node2", ansible_inventory=host.backend.ansible_inventory)
    setup = f"""set -e
systemctl stop {WEB_UNIT} 2>/dev/null || true
rm -rf {WEB_DIR}; mkdir -p {WEB_DIR}; cd {WEB_DIR}
for i in $(seq 0 {CLIENTS - 1}); do head -c $((65536 + i * 4099)) /dev/urandom > f$i; done
head -c {BIG} /dev/urandom > big
systemd-run --unit={WEB_UNIT} --collect --property=WorkingDirectory={WEB_DIR} \
  python3 -m http.server {WEB_PORT} --bind 127.0.0.1 >/dev/null
for _ in $(seq 50); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", {WEB_PORT}), 1)' \
  2>/dev/null && break; sleep 0.2; done
sha256sum big $(seq -f 'f%g' 0 {CLIENTS - 1})
"""
    done = node2.run(f"bash -c {shlex.quote(setup)}")
    assert done.rc == 0, done.stderr
    digests = {name: digest for digest, name in (line.split() for line in done.stdout.splitlines())}
    try:
        yield node2, digests
    finally:
        node2.run(f"systemctl stop {WEB_UNIT}; rm -rf {WEB_DIR}")


def test_both_sides_run_where_the_inventory_says(host, web):
    node2, _ = web
    assert node2.service("pool-bridge-server").is_running
    assert host.service("pool-bridge-client").is_running
    assert not host.service("pool-bridge-server").is_enabled, "node1 offers no service: its server side is off"


def test_fifty_clients_at_once_and_a_stalled_one_through_the_bridge(host, web):
    node2, digests = web
    sessions_before = host.check_output("/usr/local/sbin/poolctl --json sessions")
    out = host.check_output(f"timeout 600 python3 -c {shlex.quote(CLIENTS_SCRIPT)} {BRIDGE_PORT} {CLIENTS} {BIG}")
    doc = json.loads(out.strip().splitlines()[-1])
    print(f"\n{CLIENTS} HTTP clients through pool_bridge in {doc['seconds']} s, one stalled on {BIG >> 20} MiB")
    assert doc["digests"] == [digests[f"f{i}"] for i in range(CLIENTS)], "a client got someone else's bytes"
    assert (doc["stalled_body"], doc["stalled_sha256"]) == (BIG, digests["big"])
    # the streams rode on the session poold holds with node2: it is the same session as before
    key2 = json.loads(node2.check_output("/usr/local/sbin/poolctl --json identity show"))["public_key"]

    def with_node2(doc: str) -> set[tuple[int, int]]:
        return {(s["index"], s["established_ns"]) for s in json.loads(doc)["sessions"]
                if s["peer_public_key"] == key2 and s["state"] in ("established", "rekeying")}  # fmt: skip

    before, after = (
        with_node2(sessions_before),
        with_node2(host.check_output("/usr/local/sbin/poolctl --json sessions")),
    )
    assert before and before <= after, f"sessions with node2 before {before}, after {after}"


def test_a_second_client_for_the_same_peer_refuses_to_start(host, web):
    """Two tcp2pool processes for one peer would take each other's answers off the channel."""
    run = host.run("timeout 30 /usr/local/sbin/pool_bridge tcp2pool --forward 127.0.0.1:8099=node2/web")
    assert run.rc == 1 and "another pool_bridge holds it" in run.stderr, (run.rc, run.stderr)


def test_a_peer_not_allowed_is_refused(host, web):
    """node3 trusts node2 and holds a session with it, but node2 lets only node1 open streams."""
    node3 = testinfra.get_host("ansible://node3", ansible_inventory=host.backend.ansible_inventory)
    script = f"""set -e
systemd-run --unit=pool-test-bridge --collect /usr/local/sbin/pool_bridge tcp2pool \
  --forward 127.0.0.1:{BRIDGE_PORT}=node2/web >/dev/null
for _ in $(seq 50); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", {BRIDGE_PORT}), 1)' \
  2>/dev/null && break; sleep 0.2; done
python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", {BRIDGE_PORT}), 60); \
s.sendall(b"GET /f0 HTTP/1.0\\r\\n\\r\\n"); print(len(s.recv(100)))'
sleep 1
journalctl -u pool-test-bridge -o cat --no-pager
"""
    try:
        out = node3.check_output(f"bash -c {shlex.quote(script)}")
    finally:
        node3.run("systemctl stop pool-test-bridge; systemctl reset-failed pool-test-bridge 2>/dev/null")
    first, _, log = out.partition("\n")
    assert first == "0", f"node3 got {first} bytes from node2's web server: {out}"
    assert "refused: this peer is not allowed to open streams here" in log, log
