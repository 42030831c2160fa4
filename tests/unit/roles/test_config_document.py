"""roles/config/templates/pool-config.json.j2: the trust store of a configuration version."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from ansible_collections.pool.ops.plugins.filter.endpoint import endpoint_at

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "roles" / "config" / "templates" / "pool-config.json.j2"

HOSTVARS = {
    "node1": {"pool_node_name": "node1", "pool_node_public_key": "K1", "pool_node_endpoint": "10.253.0.11:9253"},
    "node2": {"pool_node_name": "node2", "pool_node_public_key": "K2", "pool_node_endpoint": "10.253.0.12:9300"},
    "node3": {"pool_node_name": "node3", "pool_node_public_key": "K3", "pool_node_endpoint": "10.253.1.13:9253"},
}


def render(me: str, peers: list[str], addresses: dict[str, str]) -> dict:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["difference"] = lambda a, b: [x for x in a if x not in b]
    env.filters["to_json"] = json.dumps
    env.filters["pool.ops.endpoint_at"] = endpoint_at
    text = env.from_string(TEMPLATE.read_text()).render(
        inventory_hostname=me,
        hostvars=HOSTVARS,
        pool_config_peers=peers,
        pool_config_peer_addresses=addresses,
        pool_config_extra_peers=[],
        pool_config_heartbeat_seconds=5,
        pool_config_rekey_seconds=3600,
        pool_config_rekey_packets=1 << 30,
        pool_config_puzzle_difficulty=16,
        pool_config_max_sessions=256,
    )
    return json.loads(text)


def test_trust_store_is_the_listed_peers_at_their_addresses():
    doc = render("node3", ["node2"], {"node2": "10.253.1.12"})
    # node2's port (9300) is kept; the address is the one on the link node3 shares with it.
    assert doc["peers"] == [{"name": "node2", "public_key": "K2", "endpoint": "10.253.1.12:9300"}]


def test_ipv6_override_and_own_endpoint():
    doc = render("node2", ["node1", "node3", "node2"], {"node1": "fd53:253::11"})
    assert [(p["name"], p["endpoint"]) for p in doc["peers"]] == [
        ("node1", "[fd53:253::11]:9253"),
        ("node3", "10.253.1.13:9253"),
    ]
