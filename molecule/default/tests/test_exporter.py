"""pool_exporter on every lab node (role pool.ops.exporter, docs/exporter.md): /health answers,
the metrics agree with what poolctl and /sys say, and a session's byte counters rise with the
traffic sent on it. Scraped from the node itself, at the address Prometheus would use."""

from __future__ import annotations

import base64
import json
import shlex
import uuid

import testinfra
from prometheus_client.parser import text_string_to_metric_families

testinfra_hosts = ["pool_nodes"]

POOLCTL = "/usr/local/sbin/poolctl"
TEST_CHANNEL = 243  # a channel (0-255) nothing else uses
PORT = 9254

FETCH = """import sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=20)
    status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
print(status)
sys.stdout.write(body.decode())
"""


def get(host, path: str) -> tuple[int, str]:
    address = host.backend.get_variables()["pool_lab_ipv4"]
    out = host.check_output(f"python3 -c {shlex.quote(FETCH)} http://{address}:{PORT}{path}")
    status, _, body = out.partition("\n")
    return int(status), body


def samples(host) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, body = get(host, "/metrics")
    assert status == 200, body
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body + "\n"):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def one(found: dict, metric: str, **labels: str) -> float:
    values = [v for lab, v in found.get(metric, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(values) == 1, f"{metric}{labels}: {found.get(metric)}"
    return values[0]


def poolctl(host, *args: str) -> dict:
    return json.loads(host.check_output(" ".join([POOLCTL, "--json", *map(shlex.quote, args)])))


def test_health_answers_ok(host):
    status, body = get(host, "/health")  # check_output drops the final newline
    assert (status, body) == (200, "ok")
    assert host.service("pool-exporter").is_enabled


def test_metrics_agree_with_poolctl_and_sys(host):
    found = samples(host)
    version = host.file("/sys/module/pool/version").content_string.strip()
    assert one(found, "pool_module_info", version=version) == 1
    assert one(found, "pool_module_selftest_passed") == 1
    assert one(found, "pool_listening") == 1
    own = poolctl(host, "identity", "show")["public_key"]
    assert one(found, "pool_node_info", public_key=own) == 1
    for peer in poolctl(host, "peers", "list")["peers"]:
        assert one(found, "pool_peer_info", public_key=peer["public_key"], name=peer["name"]) == 1
    live = [s for s in poolctl(host, "sessions")["sessions"] if s["state"] in ("established", "rekeying")]
    scraped = one(found, "pool_sessions", state="established") + one(found, "pool_sessions", state="rekeying")
    assert scraped == len(live), f"{scraped} live sessions scraped, poolctl lists {live}"
    config = poolctl(host, "config", "show")
    assert one(found, "pool_config_version") == config["version"]
    assert one(found, "pool_config_tentative") == int(config["tentative"])
    assert one(found, "pool_journal_entries") > 0


def test_session_byte_counters_rise_with_traffic(host):
    me = host.backend.get_variables()["inventory_hostname"]
    peer = host.backend.get_variables()["pool_node_peers"][0]
    key = next(p["public_key"] for p in poolctl(host, "peers", "list")["peers"] if p["name"] == peer)

    def sent() -> float:
        return sum(v for lab, v in samples(host).get("pool_session_sent_bytes_total", []) if lab["public_key"] == key)

    before = sent()
    message = f"exporter-{me}-{uuid.uuid4().hex}" * 64
    poolctl(host, "send", "--peer", peer, "--channel", str(TEST_CHANNEL), message)
    after = sent()
    assert after >= before + len(message), f"sent bytes to {peer}: {before} then {after} after {len(message)} bytes"
    # the peer takes the message, so that nothing stays queued on the test channel
    other = testinfra.get_host(f"ansible://{peer}", ansible_inventory=host.backend.ansible_inventory)
    got = poolctl(other, "recv", "--peer", me, "--channel", str(TEST_CHANNEL), "--timeout", "15")
    assert base64.b64decode(got["data"]) == message.encode()
