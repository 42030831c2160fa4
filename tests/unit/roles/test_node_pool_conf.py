"""roles/node/templates/pool.conf.j2 renders what poold's parser accepts, with the right trust store."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
from ansible_collections.pool.ops.plugins.filter.endpoint import endpoint_at
from pooltools.config import conf

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "roles" / "node" / "templates" / "pool.conf.j2"
TRUST_STORE = REPO / "roles" / "node" / "templates" / "trust-store.json.j2"

KEYS = {
    "node1": "ULP6WKStdy3o/tbMmLZiL5mbnczKEMPpBf6TUxDtP0k=",
    "node2": "0vWu1N4p0Tz3yvq7c2pp8E3v6l0w6I+3P1nF0M4x3Ds=",
    "node3": "q1Zk9B8sYvPSe5J1G4ZtLh0uE3vWxY2bC7dA6fR9mNo=",
}


def render(me: str, peers: list[str], extra: list[dict] | None = None, **overrides) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "\n".join("# " + line for line in str(text).splitlines())
    env.filters["bool"] = bool
    env.filters["pool.ops.endpoint_at"] = endpoint_at
    env.filters["extract"] = lambda item, container, attr=None: container[item][attr] if attr else container[item]
    env.filters["combine"] = lambda a, b: {**a, **b}
    env.filters["to_json"] = json.dumps
    hostvars = {
        name: {
            "pool_node_name": name,
            "pool_node_public_key": KEYS[name],
            "pool_node_endpoint": f"10.253.0.{10 + int(name[-1])}:9253" if name != "node3" else "[fd53:253::13]:9253",
        }
        for name in KEYS
    }
    values = {
        "ansible_managed": "Ansible managed",
        "pool_node_peer_group": "pool_nodes",
        "pool_node_private_key_file": "/etc/pool/private.key",
        "pool_node_listen": True,
        "pool_node_port": 9253,
        "pool_node_org_id": 0,
        "pool_node_segment_id": 0,
        "pool_node_state_dir": "/var/lib/pool",
        "pool_node_extra_peers": extra or [],
        "pool_node_peer_addresses": {},
        "__pool_node_peer_hosts": peers,
        "pool_node_relayed_peers": {},
        "__pool_node_relayed_hosts": [],
        "hostvars": hostvars,
        "inventory_hostname": me,
    }
    values.update(overrides)
    # as the role does: the trust store first (tasks/trust_store.yml), then pool.conf from it
    values["pool_node_trust_store"] = json.loads(env.from_string(TRUST_STORE.read_text()).render(**values))
    return env.from_string(TEMPLATE.read_text()).render(**values)


def test_trust_store_is_the_other_members():
    parsed = conf.parse(render("node1", ["node3", "node2"]), "pool.conf")
    assert sorted(p.name for p in parsed.peers) == ["node2", "node3"]
    assert parsed.node.port == 9253
    assert parsed.node.listen is True
    assert str(parsed.node.private_key_file) == "/etc/pool/private.key"


def test_sorted_and_stable():
    assert render("node1", ["node3", "node2"]) == render("node1", ["node2", "node3"])


def test_extra_peer_without_endpoint():
    text = render("node1", ["node2"], extra=[{"name": "partner", "public_key": KEYS["node3"]}])
    parsed = conf.parse(text, "pool.conf")
    assert sorted(p.name for p in parsed.peers) == ["node2", "partner"]
    assert next(p for p in parsed.peers if p.name == "partner").endpoint is None


def test_no_peers():
    parsed = conf.parse(render("node1", []), "pool.conf")
    assert parsed.peers == [] or list(parsed.peers) == []


def test_listen_false():
    parsed = conf.parse(render("node1", [], pool_node_listen=False), "pool.conf")
    assert parsed.node.listen is False


@pytest.mark.parametrize("port", [0, 70000])
def test_bad_port_rejected_by_poold_parser(port):
    with pytest.raises(conf.ConfError):
        conf.parse(render("node1", [], pool_node_port=port), "pool.conf")


def test_peer_address_override_keeps_the_peers_port():
    """pool_node_peer_addresses: this node reaches a peer at another address (the lab's shared link)."""
    text = render(
        "node2", ["node1", "node3"], pool_node_peer_addresses={"node3": "10.253.1.13", "node1": "fd53:253::11"}
    )
    endpoints = {p.name: str(p.endpoint) for p in conf.parse(text, "pool.conf").peers}
    assert endpoints == {"node1": "[fd53:253::11]:9253", "node3": "10.253.1.13:9253"}
    assert "# Trust store: node1, node3 of the inventory group pool_nodes." in text


def test_without_an_override_the_peers_own_endpoint():
    text = render("node1", ["node2", "node3"], pool_node_peer_addresses={"node3": ""})
    endpoints = {p.name: str(p.endpoint) for p in conf.parse(text, "pool.conf").peers}
    assert endpoints == {"node2": "10.253.0.12:9253", "node3": "[fd53:253::13]:9253"}


def test_relayed_peers_name_their_relays():
    relayed = {"node3": ["node2"], "node2": ["node3"]}
    text = render("node1", ["node2"], pool_node_relayed_peers=relayed, __pool_node_relayed_hosts=["node3"])
    parsed = {p.name: p for p in conf.parse(text, "pool.conf").peers}
    assert parsed["node3"].relays == ("node2",) and parsed["node3"].endpoint is None
    assert parsed["node2"].relays == ("node3",) and parsed["node2"].endpoint is not None
