"""pool_exporter on every lab node (role pool.ops.exporter, docs/exporter.md): /health answers,
the metrics agree with what poolctl and /sys say, and a session's byte counters rise with the
traffic sent on it. Scraped from the node itself, at the address Prometheus would use."""

from __future__ import annotations

import base64
import json
import uuid

import testinfra
from lab_queries import exporter_samples, exporter_url, http_get, one, poolctl

testinfra_hosts = ["pool_nodes"]

TEST_CHANNEL = 243  # a channel (0-255) nothing else uses


def address(host) -> str:
    return host.backend.get_variables()["pool_lab_ipv4"]


def samples(host):
    return exporter_samples(host.check_output, address(host))


def test_health_answers_ok(host):
    status, body = http_get(
        host.check_output, exporter_url(address(host), "/health")
    )  # check_output drops the final newline
    assert (status, body) == (200, "ok")
    assert host.service("pool-exporter").is_enabled


def test_metrics_agree_with_poolctl_and_sys(host):
    found = samples(host)
    version = host.file("/sys/module/pool/version").content_string.strip()
    assert one(found, "pool_module_info", version=version) == 1
    assert one(found, "pool_module_selftest_passed") == 1
    assert one(found, "pool_listening") == 1
    own = poolctl(host.check_output, "identity", "show")["public_key"]
    assert one(found, "pool_node_info", public_key=own) == 1
    for peer in poolctl(host.check_output, "peers", "list")["peers"]:
        assert one(found, "pool_peer_info", public_key=peer["public_key"], name=peer["name"]) == 1
    live = [s for s in poolctl(host.check_output, "sessions")["sessions"] if s["state"] in ("established", "rekeying")]
    scraped = one(found, "pool_sessions", state="established") + one(found, "pool_sessions", state="rekeying")
    assert scraped == len(live), f"{scraped} live sessions scraped, poolctl lists {live}"
    config = poolctl(host.check_output, "config", "show")
    assert one(found, "pool_config_version") == config["version"]
    assert one(found, "pool_config_tentative") == int(config["tentative"])
    assert one(found, "pool_journal_entries") > 0


def test_session_byte_counters_rise_with_traffic(host):
    me = host.backend.get_variables()["inventory_hostname"]
    peer = host.backend.get_variables()["pool_node_peers"][0]
    key = next(p["public_key"] for p in poolctl(host.check_output, "peers", "list")["peers"] if p["name"] == peer)

    def sent() -> float:
        return sum(v for lab, v in samples(host).get("pool_session_sent_bytes_total", []) if lab["public_key"] == key)

    before = sent()
    message = f"exporter-{me}-{uuid.uuid4().hex}" * 64
    poolctl(host.check_output, "send", "--peer", peer, "--channel", str(TEST_CHANNEL), message)
    after = sent()
    assert after >= before + len(message), f"sent bytes to {peer}: {before} then {after} after {len(message)} bytes"
    # the peer takes the message, so that nothing stays queued on the test channel
    other = testinfra.get_host(f"ansible://{peer}", ansible_inventory=host.backend.ansible_inventory)
    got = poolctl(other.check_output, "recv", "--peer", me, "--channel", str(TEST_CHANNEL), "--timeout", "15")
    assert base64.b64decode(got["data"]) == message.encode()


def test_vault_and_relay_counters_where_they_run(host):
    """The services' series exist exactly where the inventory runs them, fresh, and agree with
    the services' own status (pool_vault on the lab's vault node, pool_relay on the relays)."""
    groups = host.backend.get_variables()["groups"]
    me = host.backend.get_variables()["inventory_hostname"]
    found = samples(host)
    if me in groups.get("pool_vaults", []):
        assert one(found, "pool_vault_up") == 1
        acl = json.loads(host.check_output("/usr/local/sbin/pool_vault --json peers"))
        assert one(found, "pool_vault_acl_version") == acl["version"]
        assert one(found, "pool_vault_enrolled_peers") == len(acl["peers"])
    else:
        assert "pool_vault_up" not in found, "a vault's series on a node that runs none"
    if me in groups.get("pool_relays", []):
        assert one(found, "pool_relay_up") == 1
        status = json.loads(host.check_output("/usr/local/sbin/pool_relay --json status"))
        assert one(found, "pool_relay_enabled") == int(status["relay"])
        assert one(found, "pool_relay_connections_limit") == status["limits"]["connections"]
        for peer in status["peers"]:
            assert one(found, "pool_relay_peer_channel_up", public_key=peer["key"]) in (0, 1)
    else:
        assert "pool_relay_up" not in found, "a relay's series on a node that runs none"
