"""Verify the lab: every VM up as itself, its links as topology.json declares them, its
neighbours reachable on IPv4 and IPv6, no path at all to a node it shares no link with, the
Debian release topology.json gives it (the shared lab mixes bookworm and trixie), and no
compiler, DKMS or kernel headers: pool.ko comes as a package built on the controller."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

testinfra_hosts = ["pool_nodes"]

TOPOLOGY = json.loads((Path(__file__).resolve().parents[2] / "lab" / "topology.json").read_text())


def me(host) -> dict:
    return host.backend.get_variables()


def lab_nodes(host) -> dict[str, dict]:
    """Every node of the lab with its inventory variables."""
    return {name: host.backend.ansible_runner.get_variables(name) for name in me(host)["groups"]["pool_nodes"]}


def test_vm_is_up_as_itself(host):
    assert host.check_output("hostname") == me(host)["inventory_hostname"]
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == me(host)["pool_lab_release"]
    assert host.service("ssh").is_running
    assert host.service("pool-lab-setup").is_running  # oneshot, RemainAfterExit


def test_links_and_neighbours_are_the_topologys(host):
    name = me(host)["inventory_hostname"]
    declared = {link: spec for link, spec in TOPOLOGY["links"].items() if name in spec["nodes"]}
    present = set(lab_nodes(host))
    declared = {link: spec for link, spec in declared.items() if len(present & set(spec["nodes"])) >= 2}
    assert set(me(host)["pool_lab_links"]) == set(declared)
    expected = {n for spec in declared.values() for n in spec["nodes"] if n != name and n in present}
    assert set(me(host)["pool_lab_neighbours"]) == expected
    assert sorted(me(host)["pool_node_peers"]) == sorted(expected)


def test_addresses_on_each_link(host):
    for link, spec in me(host)["pool_lab_links"].items():
        iface = host.interface(spec["interface"])
        assert iface.exists, f"no interface {spec['interface']} for link {link}"
        assert spec["ipv4"] in iface.addresses
        assert spec["ipv6"] in iface.addresses


@pytest.mark.parametrize("family,key", [("-4", "ipv4"), ("-6", "ipv6")])
def test_neighbours_reachable_over_their_link(host, family, key):
    for name, n in me(host)["pool_lab_neighbours"].items():
        cmd = host.run("ping %s -c 2 -W 3 -I %s %s", family, n["interface"], n[key])
        assert cmd.rc == 0, (
            f"{me(host)['inventory_hostname']} cannot reach {name} at {n[key]}: {cmd.stdout}{cmd.stderr}"
        )


def test_no_path_to_a_node_without_a_shared_link(host):
    """node1 and node3 share no link: neither ping nor TCP reaches any address of the other."""
    name = me(host)["inventory_hostname"]
    strangers = {
        other: v
        for other, v in lab_nodes(host).items()
        if other != name and other not in me(host)["pool_lab_neighbours"]
    }
    for other, v in strangers.items():
        for link in v["pool_lab_links"].values():
            for family, addr in (("-4", link["ipv4"]), ("-6", link["ipv6"])):
                ping = host.run("ping %s -c 1 -W 2 %s", family, addr)
                assert ping.rc != 0, f"{name} pings {other} at {addr}: {ping.stdout}"
                # sshd listens on every address of the other node: a connect that fails is no path.
                tcp = host.run(f"nc {family} -z -w 3 {shlex.quote(addr)} 22")
                assert tcp.rc != 0, f"{name} opens TCP to {other} at {addr} port 22"
    # The lab's ranges are routed nowhere but the node's own links (not out of the user-mode NIC).
    for family, net in (("-4", TOPOLOGY["unreachable"]["ipv4"]), ("-6", TOPOLOGY["unreachable"]["ipv6"])):
        assert f"unreachable {net}" in host.check_output(f"ip {family} route show {net}")


def test_runs_the_release_the_topology_gives_it(host):
    name = me(host)["inventory_hostname"]
    wanted = TOPOLOGY["nodes"][name].get("release", "bookworm")
    assert me(host)["pool_lab_release"] in (wanted, "bookworm")  # bookworm for all under the debug kernel
    codename = host.check_output(". /etc/os-release && echo $VERSION_CODENAME")
    assert codename == me(host)["pool_lab_release"]


def test_the_lab_mixes_debian_releases(host):
    releases = {v["pool_lab_release"] for v in lab_nodes(host).values()}
    if releases == {"bookworm"} and any(v.get("release") for v in TOPOLOGY["nodes"].values()):
        pytest.skip("every node runs bookworm (POOL_LAB_RELEASE or the debug kernel)")
    assert releases == {"bookworm", "trixie"}


@pytest.mark.parametrize("package", ["gcc", "make", "dkms", "build-essential"])
def test_no_toolchain_on_the_node(host, package):
    """The fleet way: the node installs a signed package; it cannot build a kernel module itself."""
    assert host.run(f"dpkg -s {package}").rc != 0, f"{package} is installed"


def test_no_kernel_headers_on_the_node(host):
    release = host.check_output("uname -r")
    assert not host.file(f"/lib/modules/{release}/build").exists
    assert host.run("dpkg-query -W 'linux-headers-*' 2>/dev/null | grep -q .").rc != 0


def test_slab_checking_is_on(host):
    cmdline = host.file("/proc/cmdline").content_string.split()
    assert "slub_debug=FZPU" in cmdline
    assert "init_on_free=1" in cmdline
