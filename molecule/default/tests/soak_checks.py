"""`make soak` (scripts/soak.sh): sessions of any length, on a lab rolled out with site.yml.

Not collected by `make test` (the file name does not match test_*.py); soak.sh names it.
One run, two loads at once, with `rekey_seconds` at its minimum (5) on node1 and node2:

- POOL_SOAK_BYTES (default 16 GiB) over one node1-initiated session, node1 -> node2, with
  SHA-256 compared at node2. The ring's free-running 32-bit counters wrap every 4 GiB, so
  16 GiB crosses the wrap four times. node1's link toward node2 is held to POOL_SOAK_RATE
  (tc tbf, default 26mbit, below what the sender manages under emulation), so the path is
  slower than the sender and pool.ko's ring stays full behind the TCP socket. node1's send
  queue toward node2 is sampled every 15 s (`ss`, the session's TCP socket) to show it did.
- sequence-numbered messages both ways over the node pair's poold session for
  POOL_SOAK_REKEY_MINUTES (default 30): none lost, duplicated or reordered across the
  rekeys every 5 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
import uuid

# lab is the module fixture test_soak takes: imported to be found, not called
from test_transport import (  # noqa: F401  # pylint: disable=unused-import
    POOL_TEST,
    PORT,
    PROBE,
    Lab,
    _bg,
    _new_session_index,
    lab,
    server_name,
    tunables,
)

testinfra_hosts = ["node1"]  # one run: the test drives node1 and node2 itself
SOAK_BYTES = int(os.environ.get("POOL_SOAK_BYTES", str(16 << 30)))
REKEY_MINUTES = float(os.environ.get("POOL_SOAK_REKEY_MINUTES", "30"))
SAMPLE_SECONDS = 15
# 26 Mbit/s = 3.25 MB/s: 16 GiB in about 90 minutes; the sender manages about 4.5 MB/s
RATE = os.environ.get("POOL_SOAK_RATE", "26mbit")


@contextlib.contextmanager
def rate_limited(node, peer_ip: str, rate: str):
    """node's egress toward peer_ip held to rate (tc tbf on the interface the route uses)."""
    route = node.run(f"ip -o route get {peer_ip}").stdout.split()
    dev = route[route.index("dev") + 1]
    node.ok(f"tc qdisc replace dev {dev} root tbf rate {rate} burst 64kb latency 200ms")
    try:
        yield dev
    finally:
        node.run(f"tc qdisc del dev {dev} root")


def _send_queue(node, peer_ip: str) -> int:
    """Bytes in the send queue of node's TCP connections to peer_ip:PORT or from it (the largest)."""
    out = node.run(f"ss -tnH state established dst {peer_ip}").stdout
    best = 0
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4 and (cols[2].endswith(f":{PORT}") or cols[3].endswith(f":{PORT}")):
            best = max(best, int(cols[1]))
    return best


def test_soak(lab: Lab) -> None:  # noqa: F811 - the fixture imported above
    n1, n2 = lab.n1, lab.n2
    seconds = int(REKEY_MINUTES * 60)
    nonce = uuid.uuid4().hex[:7]
    epochs_before = {n.name: n.live_with(p.key)[0]["epoch"] for n, p in ((n1, n2), (n2, n1))}
    with (
        tunables([n1, n2], rekey_seconds=5, confirm_ms=4 * 3600 * 1000),
        rate_limited(n1, n2.ipv4, RATE),
    ):
        t0 = time.monotonic()
        # 1. the stream of sequence numbers, both ways, over the poold session
        recv2 = _bg(
            n2.run,
            f"{n2.py} {PROBE} seq-recv --peer {n1.key} --channel 9 --timeout {seconds + 600} --nonce {nonce}a",
            seconds + 900,
        )
        recv1 = _bg(
            n1.run,
            f"{n1.py} {PROBE} seq-recv --peer {n2.key} --channel 10 --timeout {seconds + 600} --nonce {nonce}b",
            seconds + 900,
        )
        time.sleep(2)
        send1 = _bg(
            n1.json,
            f"{n1.py} {PROBE} seq-send --peer {n2.key} --channel 9 --seconds {seconds} --interval 0.01 --nonce {nonce}a",
            seconds + 900,
        )
        send2 = _bg(
            n2.json,
            f"{n2.py} {PROBE} seq-send --peer {n1.key} --channel 10 --seconds {seconds} --interval 0.01 --nonce {nonce}b",
            seconds + 900,
        )
        # 2. the bulk session
        before = {s["index"] for s in n2.sessions()}
        bulk = _bg(
            n1.json,
            f"{POOL_TEST} client --connect {server_name(n1, n2)} --endpoint {n2.ipv4}:{PORT}"
            f" --bytes {SOAK_BYTES} --json --timeout 600",
            6 * 3600,
        )
        idx = _new_session_index(n2, n1, before)
        server = _bg(n2.run, f"{POOL_TEST} server --index {idx} --once --timeout 600", 6 * 3600)
        queue = []
        while not (bulk.done() and send1.done() and send2.done()):
            time.sleep(SAMPLE_SECONDS)
            if not bulk.done():
                queue.append(_send_queue(n1, n2.ipv4))
        res, srv = bulk.result(), server.result()
        sent1, sent2 = send1.result(), send2.result()
        r2, r1 = recv2.result(), recv1.result()
        epochs_after = {n.name: n.live_with(p.key)[0]["epoch"] for n, p in ((n1, n2), (n2, n1))}
    elapsed = time.monotonic() - t0
    d2 = json.loads(r2.stdout.strip().splitlines()[-1])
    d1 = json.loads(r1.stdout.strip().splitlines()[-1])
    figures = {
        "bulk_bytes": SOAK_BYTES,
        "path_rate": RATE,
        "bulk_seconds": res.get("seconds"),
        "bulk_mbit_s": res.get("throughput_mbit_s"),
        "sha256_ok": res.get("sha256_ok"),
        "send_queue_samples": len(queue),
        "send_queue_median": statistics.median(queue) if queue else None,
        "send_queue_min": min(queue) if queue else None,
        "send_queue_max": max(queue) if queue else None,
        "stream_node1_to_node2": d2,
        "stream_node2_to_node1": d1,
        "rekeys": {k: epochs_after[k] - epochs_before[k] for k in epochs_after},
        "elapsed_s": round(elapsed),
    }
    print("\nsoak figures: " + json.dumps(figures, sort_keys=True))
    assert srv.rc == 0, f"pool_test server: {srv.stderr}"
    assert res["sha256_ok"] and res["server_bytes"] == SOAK_BYTES, f"bulk: {res}"
    assert SOAK_BYTES < 4 << 30 or res["server_bytes"] > 4 << 30  # crossed the ring's counter wrap
    # the path was the bottleneck: the send queue stayed backed up, so the ring stayed full
    assert figures["send_queue_median"] and figures["send_queue_median"] >= 64 << 10, figures
    assert d2["ok"] and d2["sent"] == sent1["sent"], f"node1->node2 stream: {d2}"
    assert d1["ok"] and d1["sent"] == sent2["sent"], f"node2->node1 stream: {d1}"
    for name, n in figures["rekeys"].items():
        # one rekey per 5 s at least half the time, under load and emulation
        assert n >= seconds / 10, f"{name}: only {n} rekeys in {seconds} s with rekey_seconds 5"
