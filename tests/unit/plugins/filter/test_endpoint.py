"""The filter pool.ops.endpoint_at: a node's endpoint at the address a peer reaches it on."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.pool.ops.plugins.filter.endpoint import FilterModule, endpoint_at


@pytest.mark.parametrize(
    ("endpoint", "address", "expected"),
    [
        ("192.0.2.13:9253", "10.253.1.13", "10.253.1.13:9253"),
        ("node3.example:9300", "fd53:253:1::13", "[fd53:253:1::13]:9300"),
        ("[2001:db8::1]:9253", "10.0.0.1", "10.0.0.1:9253"),
        ("[2001:db8::1]:9253", "[fd00::2]", "[fd00::2]:9253"),
        ("node2:9253", "", "node2:9253"),
        ("node2:9253", None, "node2:9253"),
        ("node2:9253", "node2.lab-b", "node2.lab-b:9253"),
    ],
)
def test_endpoint_at(endpoint, address, expected):
    assert endpoint_at(endpoint, address) == expected


@pytest.mark.parametrize("endpoint", ["node2", "node2:", ":9253", "node2:port", "node2:0", "node2:65536", ""])
def test_endpoint_without_a_valid_port_is_refused(endpoint):
    with pytest.raises(AnsibleFilterError, match="not an endpoint HOST:PORT"):
        endpoint_at(endpoint, "10.0.0.1")


@pytest.mark.parametrize("address", ["10.0.0.1 x", "[]", "fd00::[1]"])
def test_address_with_spaces_or_brackets_is_refused(address):
    with pytest.raises(AnsibleFilterError, match="not a host name or address"):
        endpoint_at("node2:9253", address)


def test_registered_under_its_name():
    assert FilterModule().filters()["endpoint_at"] is endpoint_at
