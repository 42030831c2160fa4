"""pool_vault in the shared lab (docs/vault.md): node2 serves (role pool.ops.vault, from the lab
inventory's pool_vaults group); node1 is enrolled read-write, node3 read-only under "shared".
Both reach node2 directly. Every client opens a session of its own to node2."""

from __future__ import annotations

import json
import shlex
import time
import uuid

import pytest
from test_transport import FULL_SIZES, Node, _bg, _node

testinfra_hosts = ["node1"]

VAULT = "/usr/local/sbin/pool_vault"
ROOT = "/var/lib/pool-vault/files"
STAGING = "/var/lib/pool-vault/staging"
WORK = "/root/vault-test"
EXIT_PERMISSION, EXIT_CONFLICT = 4, 6
BIG_MIB = 200 if FULL_SIZES else 64  # issue 14's 200 MiB with POOL_TEST_FULL=1


class VaultLab:
    def __init__(self, n1: Node, n2: Node, n3: Node) -> None:
        self.n1, self.n2, self.n3 = n1, n2, n3
        self.run_id = uuid.uuid4().hex[:8]

    def client(self, node: Node, args: str, timeout: int = 900):
        return node.run(f"{VAULT} --json {args} --vault node2", timeout)

    def ok(self, node: Node, args: str, timeout: int = 900) -> dict:
        r = self.client(node, args, timeout)
        assert r.rc == 0, f"{node.name}: pool_vault {args} failed ({r.rc}): {r.stdout[-800:]} {r.stderr[-800:]}"
        return json.loads(r.stdout.strip().splitlines()[-1])

    def refused(self, node: Node, args: str, exit_code: int, code: str) -> dict:
        r = self.client(node, args)
        doc = json.loads(r.stdout.strip().splitlines()[-1])
        assert r.rc == exit_code and doc["error"].get("code") == code, f"{node.name}: {args}: {r.rc} {doc}"
        return doc

    def make_file(self, node: Node, name: str, mib: int) -> str:
        """A file of random bytes on node; its SHA-256."""
        node.ok(f"mkdir -p {WORK} && head -c {mib}M /dev/urandom > {WORK}/{name}")
        return sha256(node, f"{WORK}/{name}")


def sha256(node: Node, path: str) -> str:
    return node.ok(f"sha256sum {shlex.quote(path)}").split()[0]


@pytest.fixture(scope="module")
def vault(host) -> VaultLab:
    inv = host.backend.ansible_inventory
    n1, n2, n3 = (_node(inv, n) for n in ("node1", "node2", "node3"))
    for n in (n1, n2, n3):
        n.key = n.poolctl("identity", "show")["public_key"]
    assert n2.run("systemctl is-active pool-vault").stdout.strip() == "active"
    v = VaultLab(n1, n2, n3)
    deadline = time.monotonic() + 120
    for n in (n1, n3):  # the server attaches new sessions within half a second; poold's may be rekeying
        while (r := v.client(n, "status", 60)).rc != 0:
            assert time.monotonic() < deadline, f"{n.name} cannot reach the vault: {r.stdout} {r.stderr}"
            time.sleep(3)
    return v


def test_roles_and_enrolment_as_the_inventory_says(vault: VaultLab) -> None:
    assert vault.ok(vault.n1, "status")["peer"] == {"name": "node1", "scope": "read-write", "prefix": ""}
    assert vault.ok(vault.n3, "status")["peer"] == {"name": "node3", "scope": "read", "prefix": "shared"}
    acl = json.loads(vault.n2.ok(f"{VAULT} --json peers"))
    assert {p["name"]: p["key"] for p in acl["peers"]} == {"node1": vault.n1.key, "node3": vault.n3.key}
    # hardened as documented
    exposure = vault.n2.ok("systemd-analyze security pool-vault --no-pager | tail -1")
    print(f"\nsystemd-analyze security pool-vault: {exposure.strip()}")


def test_push_and_pull_a_big_file(vault: VaultLab) -> None:
    n1, n2 = vault.n1, vault.n2
    path = f"big/{vault.run_id}.bin"
    digest = vault.make_file(n1, "big", BIG_MIB)
    t0 = time.monotonic()
    done = vault.ok(n1, f"push {WORK}/big {path}", 1800)
    push_s = time.monotonic() - t0
    assert (done["sha256"], done["size"], done["version"]) == (digest, BIG_MIB << 20, 1)
    assert sha256(n2, f"{ROOT}/{path}") == digest
    t0 = time.monotonic()
    got = vault.ok(n1, f"pull {path} {WORK}/back", 1800)
    pull_s = time.monotonic() - t0
    assert got["sha256"] == digest and sha256(n1, f"{WORK}/back") == digest
    print(
        f"\n{BIG_MIB} MiB: push {push_s:.0f} s ({BIG_MIB / push_s:.1f} MiB/s),"
        f" pull {pull_s:.0f} s ({BIG_MIB / pull_s:.1f} MiB/s)"
    )


def test_read_only_peer_under_its_prefix(vault: VaultLab) -> None:
    n1, n3 = vault.n1, vault.n3
    inside, outside = f"shared/{vault.run_id}/doc", f"private/{vault.run_id}/doc"
    digest = vault.make_file(n1, "doc", 1)
    vault.ok(n1, f"push {WORK}/doc {inside}")
    vault.ok(n1, f"push {WORK}/doc {outside}")
    n3.ok(f"mkdir -p {WORK}")
    assert vault.ok(n3, f"pull {inside} {WORK}/doc")["sha256"] == digest
    assert sha256(n3, f"{WORK}/doc") == digest
    vault.refused(n3, f"pull {outside} {WORK}/nope", EXIT_PERMISSION, "denied")
    vault.refused(n3, f"stat {outside}", EXIT_PERMISSION, "denied")
    vault.refused(n3, f"push {WORK}/doc shared/{vault.run_id}/mine", EXIT_PERMISSION, "denied")
    vault.refused(n3, f"delete {inside} --force", EXIT_PERMISSION, "denied")
    listed = [e["path"] for e in vault.ok(n3, "list")["entries"]]
    assert inside in listed and all(p.startswith("shared/") for p in listed)
    assert n3.run(f"test -e {WORK}/nope").rc != 0


def test_conflict_is_refused_and_the_old_version_stays_reachable(vault: VaultLab) -> None:
    n1 = vault.n1
    path = f"conf/{vault.run_id}.txt"
    n1.ok(f"mkdir -p {WORK} && echo one > {WORK}/v1 && echo two > {WORK}/v2 && echo three > {WORK}/v3")
    v1 = vault.ok(n1, f"push {WORK}/v1 {path}")["sha256"]
    vault.ok(n1, f"push {WORK}/v2 {path} --base {v1}")
    vault.refused(n1, f"push {WORK}/v3 {path} --base {v1}", EXIT_CONFLICT, "conflict")  # someone else's v2 is there
    vault.refused(n1, f"push {WORK}/v3 {path}", EXIT_CONFLICT, "conflict")  # "new", but it exists
    assert vault.ok(n1, f"pull {path} {WORK}/old --version 1")["version"] == 1
    assert n1.ok(f"cat {WORK}/old").strip() == "one"
    assert [v["version"] for v in vault.ok(n1, f"history {path}")["versions"]] == [2, 1]


def test_server_killed_mid_push_leaves_no_partial_file_and_the_push_resumes(vault: VaultLab) -> None:
    n1, n2 = vault.n1, vault.n2
    path = f"kill/{vault.run_id}.bin"
    digest = vault.make_file(n1, "killme", 64)
    push = _bg(vault.client, n1, f"push {WORK}/killme {path} --timeout 60", 600)
    deadline = time.monotonic() + 300
    while int(n2.ok(f"du -sb {STAGING} | cut -f1")) < 8 << 20:  # some blocks are in
        assert time.monotonic() < deadline and not push.done(), "the push never got going"
        time.sleep(1)
    n2.ok("systemctl kill -s KILL pool-vault")
    r = push.result()
    print(f"\nclient after the kill: exit {r.rc}: {r.stderr.strip()[-300:]}")
    assert r.rc != 0
    assert n2.run(f"test -e {ROOT}/{path}").rc != 0
    assert not n2.ok(f"find {ROOT} -name '*.tmp' -o -name '*part*'").strip()
    n2.ok("for i in $(seq 60); do systemctl is-active -q pool-vault && exit 0; sleep 1; done; exit 1")
    done = vault.ok(n1, f"push {WORK}/killme {path}", 900)
    assert done["resumed_from_block"] > 0, done
    assert done["sha256"] == digest and sha256(n2, f"{ROOT}/{path}") == digest


def test_twenty_clients_at_once_one_stalled(vault: VaultLab) -> None:
    n1 = vault.n1
    small, stalled = f"many/{vault.run_id}/small", f"many/{vault.run_id}/large"
    d_small = vault.make_file(n1, "small", 2)
    vault.make_file(n1, "large", 32)
    vault.ok(n1, f"push {WORK}/small {small}")
    vault.ok(n1, f"push {WORK}/large {stalled}", 900)
    # one client stops reading (SIGSTOP) in the middle of a 32 MiB pull; 19 others pull beside it
    n1.ok(f"{VAULT} pull {stalled} {WORK}/stalled --vault node2 >/dev/null 2>&1 & echo $! > {WORK}/stalled.pid")
    n1.ok(f"sleep 3; kill -STOP $(cat {WORK}/stalled.pid)")
    script = (
        f"for i in $(seq 19); do ({VAULT} --json pull {small} {WORK}/p$i --vault node2 > {WORK}/p$i.out 2>&1;"
        f" echo $? > {WORK}/p$i.rc) & sleep 0.3; done; wait"
    )
    t0 = time.monotonic()
    n1.ok(script, 900)
    elapsed = time.monotonic() - t0
    try:
        codes = [int(n1.ok(f"cat {WORK}/p{i}.rc")) for i in range(1, 20)]
        assert codes == [0] * 19, [n1.ok(f"cat {WORK}/p{i}.out") for i, c in enumerate(codes, 1) if c]
        assert {sha256(n1, f"{WORK}/p{i}") for i in range(1, 20)} == {d_small}
        assert n1.run(f"kill -0 $(cat {WORK}/stalled.pid)").rc == 0, "the stalled client is still there"
        print(f"\n19 pulls beside a stalled one: {elapsed:.0f} s")
    finally:
        n1.run(f"kill -CONT $(cat {WORK}/stalled.pid); kill $(cat {WORK}/stalled.pid)")


def test_never_enrolled_and_revoked_peers_are_refused(vault: VaultLab) -> None:
    n1, n2, n3 = vault.n1, vault.n2, vault.n3
    path = f"shared/{vault.run_id}/slow.bin"
    vault.make_file(n1, "slow", 32)
    vault.ok(n1, f"push {WORK}/slow {path}", 900)
    acl = n2.ok("cat /etc/pool/vault-acl.json")
    try:
        # node3 in the middle of a pull that it reads slowly (SIGSTOP), when it is revoked
        n3.ok(
            f"mkdir -p {WORK}; ({VAULT} --json pull {path} {WORK}/slow --vault node2 > {WORK}/slow.out 2>&1;"
            f" echo $? > {WORK}/slow.rc) > /dev/null 2>&1 & echo $! > {WORK}/slow.pid"
        )
        n3.ok(f"sleep 3; kill -STOP $(pgrep -P $(cat {WORK}/slow.pid))")  # the pool_vault under the subshell
        doc = json.loads(n2.ok(f"{VAULT} --json revoke node3"))
        assert doc["changed"] and doc["peers"] == ["node1"]
        time.sleep(3)  # the server follows the file (it checks every half second)
        n3.ok(f"kill -CONT $(pgrep -P $(cat {WORK}/slow.pid)) || true")
        n3.ok(f"for i in $(seq 120); do test -s {WORK}/slow.rc && exit 0; sleep 1; done; exit 1", 200)
        rc = int(n3.ok(f"cat {WORK}/slow.rc"))
        print(f"\nthe revoked pull: exit {rc}: {n3.ok(f'cat {WORK}/slow.out').strip()[-300:]}")
        assert rc != 0 and n3.run(f"test -e {WORK}/slow").rc != 0
        # and from then on: the key is not in the ACL, as if never enrolled
        vault.refused(n3, "status", EXIT_PERMISSION, "not_enrolled")
        vault.refused(n3, f"pull {path} {WORK}/slow", EXIT_PERMISSION, "not_enrolled")
        deadline = time.monotonic() + 30  # the server writes its status file every 5 s
        while True:
            refusals = json.loads(n2.ok("cat /run/pool-vault/status.json"))["refusals"]
            if refusals.get("not_enrolled", 0) >= 2 and refusals.get("revoked", 0) >= 1:
                break
            assert time.monotonic() < deadline, f"refusals not counted: {refusals}"
            time.sleep(2)
    finally:
        n2.ok(
            f"echo {shlex.quote(acl)} > /etc/pool/vault-acl.json.new && mv /etc/pool/vault-acl.json.new /etc/pool/vault-acl.json"
        )
    deadline = time.monotonic() + 30
    while vault.client(n3, "status", 60).rc != 0:
        assert time.monotonic() < deadline, "node3 not served again after its enrolment came back"
        time.sleep(1)
