"""Verify the POOL rollout on the lab (issue 5, point 6).

Every node: pool.ko loaded and signed by the collection's signing key (the key
pool.ops.kmod made on the node), /dev/pool mode 0600, poold active, a trust
store of exactly its peers' public keys (the nodes it shares a
link with), an established session to each
of them with heartbeats both ways, and a message round trip through poolctl.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
import testinfra
from lab_queries import poolctl

testinfra_hosts = ["pool_nodes"]

SIGNING_CERT = "/var/lib/pool/signing/pool-fleet.crt"  # the fleet certificate (package mode)
TEST_CHANNEL = 242  # a channel (0-255) nothing else uses


def others(host) -> list[tuple[str, testinfra.host.Host]]:
    """The node's peers: the nodes it shares a link with (the lab inventory's pool_node_peers)."""
    me = host.backend.get_variables()
    inventory = host.backend.ansible_inventory
    return [
        (name, testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)) for name in me["pool_node_peers"]
    ]


def own_key(host) -> str:
    return poolctl(host.check_output, "identity", "show")["public_key"]


def test_module_loaded_and_signed_by_the_fleet_key(host):
    assert host.file("/sys/module/pool").is_directory, "pool.ko is not loaded"
    signer = host.check_output("modinfo -F signer pool")
    subject = host.check_output(f"openssl x509 -in {SIGNING_CERT} -noout -subject -nameopt multiline")
    cn = next(line.split("=", 1)[1].strip() for line in subject.splitlines() if "commonName" in line)
    assert signer == cn, f"pool.ko is signed by {signer!r}, the fleet key is {cn!r}"
    serial = host.check_output(f"openssl x509 -in {SIGNING_CERT} -noout -serial").split("=", 1)[1]
    sig_key = host.check_output("modinfo -F sig_key pool").replace(":", "")
    assert sig_key.lstrip("0").upper() == serial.lstrip("0").upper(), f"key id {sig_key} is not the fleet's {serial}"
    # built on the build host, installed from its package: no DKMS build on the node
    ko = host.check_output("modinfo -n pool -k $(uname -r)")
    assert host.run(f"dpkg -S {ko}").stdout.startswith("pool-modules-"), f"{ko} belongs to no pool-modules package"
    assert "pool" not in host.run("dkms status pool 2>/dev/null || true").stdout
    # the loaded build is the installed one
    assert host.file("/sys/module/pool/srcversion").content_string.strip() == host.check_output(
        "modinfo -F srcversion pool"
    )
    # an appended PKCS#7 signature (the kernel still taints with E: the node's
    # key is not in its keyring until enrolled as a MOK; the signer check above
    # is what ties the module to the collection's key)
    assert host.check_output("modinfo -F sig_id pool") == "PKCS#7"


def test_one_package_per_kernel_release_signed_by_the_one_fleet_key(host):
    """The build host built each kernel release the nodes run once (the mixed lab: two), and
    every node installed the package of its own kernel, of the same source version."""
    me = host.backend.get_variables()
    inventory = host.backend.ansible_inventory
    nodes = {n: testinfra.get_host(f"ansible://{n}", ansible_inventory=inventory) for n in me["groups"]["pool_nodes"]}
    installed = {
        n: h.check_output("dpkg-query -W -f '${Package} ${Version}\\n' 'pool-modules-*'").splitlines()
        for n, h in nodes.items()
    }
    kernels = {n: h.check_output("uname -r") for n, h in nodes.items()}
    for n, lines in installed.items():
        assert lines == [f"pool-modules-{kernels[n]} {lines[0].split()[1]}"], f"{n}: {lines}"
    versions = {lines[0].split()[1] for lines in installed.values()}
    assert len(versions) == 1, f"the nodes run different builds: {installed}"
    version = versions.pop()
    built = [p.name for p in Path(me["pool_kmod_builder_package_dir"]).glob(f"pool-modules-*_{version}_*.deb")]
    for kernel in set(kernels.values()):
        mine = [name for name in built if name.startswith(f"pool-modules-{kernel}_")]
        assert len(mine) == 1, f"packages of {version} for {kernel} on the build host: {mine}"
    if len({h.check_output(". /etc/os-release && echo $VERSION_CODENAME") for h in nodes.values()}) > 1:
        assert len(set(kernels.values())) >= 2, f"a mixed fleet runs one kernel: {kernels}"
    fleet = {h.check_output(f"openssl x509 -in {SIGNING_CERT} -noout -fingerprint -sha256") for h in nodes.values()}
    assert len(fleet) == 1, f"the nodes hold different fleet certificates: {fleet}"


def test_device_mode(host):
    dev = host.file("/dev/pool")
    assert host.check_output("stat -c %F /dev/pool") == "character special file"
    assert dev.mode == 0o600
    assert dev.user == "root"


@pytest.mark.parametrize("name", ["status", "sessions", "telemetry", "peers", "journal"])
def test_procfs_is_root_only(host, name):
    """/proc/pool holds the trust store, peer addresses and the journal: as private as /dev/pool."""
    path = f"/proc/pool/{name}"
    assert host.file(path).mode == 0o400, f"{path} has mode {host.file(path).mode:o}"
    denied = host.run(f"setpriv --reuid=nobody --regid=nogroup --clear-groups cat {path}")
    assert denied.rc != 0 and "Permission denied" in denied.stderr, f"nobody read {path}: {denied.stdout[:200]}"


def test_poold_active(host):
    poold = host.service("poold")
    assert poold.is_running
    assert poold.is_enabled
    assert host.file("/etc/pool/private.key").mode == 0o600


def test_listener_up(host):
    stats = poolctl(host.check_output, "stats")["stats"]
    assert stats["listening"] == 1
    assert stats["listen_port"] == 9253


def test_trusts_exactly_its_peers(host):
    """Its neighbours, and the peers it reaches through relays (pool_node_relayed_peers)."""
    inventory = host.backend.ansible_inventory
    relayed = [
        testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)
        for name in host.backend.get_variables().get("pool_node_relayed_peers", {})
    ]
    expected = sorted(own_key(other) for other in [*(o for _name, o in others(host)), *relayed])
    trusted = sorted(p["public_key"] for p in poolctl(host.check_output, "peers", "list")["peers"])
    assert trusted == expected
    assert own_key(host) not in trusted


def _established(host, peer_key: str) -> list[dict]:
    return [
        s
        for s in poolctl(host.check_output, "sessions")["sessions"]
        if s["peer_public_key"] == peer_key and s["state"] in ("established", "rekeying")
    ]


def test_established_sessions_with_heartbeats(host):
    for name, other in others(host):
        key = own_key(other)
        deadline = time.monotonic() + 90
        while True:
            sessions = _established(host, key)
            if sessions and sessions[0]["heartbeats_recv"] > 0 and sessions[0]["heartbeats_sent"] > 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"no established session with heartbeats to {name}: {sessions}")
            time.sleep(3)
        assert len(sessions) == 1, f"more than one session to {name}: {sessions}"


def _recv(host, peer: str, timeout: int = 15) -> bytes:
    doc = poolctl(host.check_output, "recv", "--peer", peer, "--channel", str(TEST_CHANNEL), "--timeout", str(timeout))
    assert not doc.get("closed"), f"session to {peer} closed while waiting for a message"
    return base64.b64decode(doc["data"])


def test_message_round_trip_through_poolctl(host):
    me = host.backend.get_variables()["inventory_hostname"]
    for name, other in others(host):
        ping = f"ping-{uuid.uuid4().hex}"
        poolctl(host.check_output, "send", "--peer", name, "--channel", str(TEST_CHANNEL), ping)
        assert _recv(other, me) == ping.encode()
        pong = f"pong-{uuid.uuid4().hex}"
        poolctl(other.check_output, "send", "--peer", me, "--channel", str(TEST_CHANNEL), pong)
        assert _recv(host, name) == pong.encode()


def test_one_fleet_key_signs_every_node(host):
    """Package mode: the module of every node is signed by the same key (one MOK for the fleet)."""
    mine = host.check_output("modinfo -F sig_key pool")
    for name, peer in others(host):
        theirs = peer.check_output("modinfo -F sig_key pool")
        assert theirs == mine, f"{name}'s pool.ko is signed by key {theirs}, this node's by {mine}"
