"""Verify the lab: both VMs up, the private link on IPv4 and IPv6, headers for the running kernel."""

import pytest

testinfra_hosts = ["pool_nodes"]


def peers(host):
    me = host.backend.get_variables()
    return [
        (name, host.backend.ansible_runner.get_variables(name))
        for name in me["groups"]["pool_nodes"]
        if name != me["inventory_hostname"]
    ]


def test_vm_is_up_as_itself(host):
    me = host.backend.get_variables()
    assert host.check_output("hostname") == me["inventory_hostname"]
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == "bookworm"
    assert host.service("ssh").is_running
    assert host.service("pool-lab-setup").is_running  # oneshot, RemainAfterExit


def test_private_addresses(host):
    me = host.backend.get_variables()
    iface = host.interface(me["pool_lab_interface"])
    assert iface.exists
    assert me["pool_lab_ipv4"] in iface.addresses
    assert me["pool_lab_ipv6"] in iface.addresses


def test_there_are_peers(host):
    assert peers(host), "the lab needs at least two nodes"


@pytest.mark.parametrize("family,key", [("-4", "pool_lab_ipv4"), ("-6", "pool_lab_ipv6")])
def test_peers_reachable_over_private_link(host, family, key):
    me = host.backend.get_variables()
    for name, hv in peers(host):
        cmd = host.run("ping %s -c 2 -W 3 -I %s %s", family, me["pool_lab_interface"], hv[key])
        assert cmd.rc == 0, f"{me['inventory_hostname']} cannot reach {name} at {hv[key]}: {cmd.stdout}{cmd.stderr}"


def test_headers_for_running_kernel(host):
    release = host.check_output("uname -r")
    build = host.file(f"/lib/modules/{release}/build")
    assert build.exists, f"no headers for {release}"
    assert host.file(f"/lib/modules/{release}/build/Makefile").exists
    assert host.exists("dkms")
