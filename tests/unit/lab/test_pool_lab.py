"""The lab's logic that needs no VM: ports, recipe hash, inventory, errors, SSH wait."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pool_lab
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("POOL_LAB_NAME", "unit")
    return tmp_path


def test_free_port_skips_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port = pool_lab.free_port(preferred=taken)
        assert port != taken
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # really free


def test_free_port_keeps_a_free_preferred_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert pool_lab.free_port(preferred=port) == port


def test_free_port_avoids_ports_already_handed_out():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert pool_lab.free_port(preferred=port, avoid=[port]) != port


def test_recipe_hash_follows_the_recipe():
    base = pool_lab.recipe_hash(["a", "b"], "echo hi\n")
    assert base == pool_lab.recipe_hash(["b", "a"], "echo hi\n")  # order does not matter
    assert base != pool_lab.recipe_hash(["a", "b", "c"], "echo hi\n")
    assert base != pool_lab.recipe_hash(["a", "b"], "echo hi there\n")
    assert len(base) == 64


def test_each_release_has_an_image_of_its_own(cache):
    bookworm = pool_lab.current_recipe_hash()
    assert pool_lab.current_recipe_hash("bookworm") == bookworm
    assert pool_lab.current_recipe_hash("trixie") != bookworm
    assert pool_lab.image_dir(release="trixie").name == pool_lab.current_recipe_hash("trixie")
    assert pool_lab.release_suites("trixie") == ("trixie", "trixie-updates", "trixie-security", "trixie-backports")


def test_a_release_is_chosen_per_node_or_for_all(tmp_path, monkeypatch):
    topo = json.loads(pool_lab.TOPOLOGY.read_text())
    topo["nodes"]["node3"]["release"] = "trixie"
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(topo))
    t = pool_lab.load_topology(path)
    assert [t.release_of(n) for n in t.nodes] == ["bookworm", "bookworm", "trixie"]
    assert t.subset(2).release == {"node1": "bookworm", "node2": "bookworm"}
    assert pool_lab.make_node(tmp_path, t, "node3", 40003).release == "trixie"
    assert pool_lab.make_node(tmp_path, t, "node3", 40003, release="bookworm").release == "bookworm"
    monkeypatch.setenv("POOL_LAB_RELEASE", "trixie")
    assert pool_lab.release_override() == "trixie"
    monkeypatch.setenv("POOL_LAB_RELEASE", "sid")
    with pytest.raises(pool_lab.LabError, match="bad POOL_LAB_RELEASE 'sid'"):
        pool_lab.release_override()


def test_the_shared_lab_mixes_releases_except_under_the_debug_kernel(monkeypatch):
    topo = pool_lab.load_topology()
    monkeypatch.delenv("POOL_LAB_RELEASE", raising=False)
    monkeypatch.delenv("POOL_LAB_KERNEL", raising=False)
    assert pool_lab.node_releases(topo) == {"node1": "bookworm", "node2": "bookworm", "node3": "trixie"}
    monkeypatch.setenv("POOL_LAB_KERNEL", "debug")
    assert set(pool_lab.node_releases(topo).values()) == {"bookworm"}
    monkeypatch.setenv("POOL_LAB_KERNEL", "debian")
    monkeypatch.setenv("POOL_LAB_RELEASE", "trixie")
    assert set(pool_lab.node_releases(topo).values()) == {"trixie"}


@pytest.mark.parametrize(
    ("package", "toolchain"),
    [
        ("gcc", True), ("gcc-12", True), ("g++-14", True), ("cpp-12", True), ("make", True), ("dkms", True),
        ("build-essential", True), ("linux-headers-6.1.0-27-amd64", True), ("linux-kbuild-6.12", True),
        ("linux-image-6.1.0-27-amd64", False), ("libgcc-s1", False), ("gcc-12-base", False),
        ("python3", False), ("kmod", False), ("openssl", False),
    ],
)  # fmt: skip
def test_the_nodes_lose_only_the_toolchain(package, toolchain):
    assert bool(pool_lab.TOOLCHAIN.match(package)) is toolchain


def test_the_debug_kernel_boots_only_its_own_release(cache, monkeypatch):
    monkeypatch.setenv("POOL_LAB_KERNEL", "debug")
    with pytest.raises(pool_lab.LabError, match="cannot boot a trixie image"):
        pool_lab.build_image(release="trixie")
    with pytest.raises(pool_lab.LabError, match="bad release"):
        pool_lab.build_image(release="sid")


def test_current_recipe_includes_the_customize_script():
    assert pool_lab.current_recipe_hash() == pool_lab.recipe_hash(pool_lab.PACKAGES, pool_lab.CUSTOMIZE.read_text())


def test_image_dir_is_keyed_by_recipe(cache):
    d = pool_lab.image_dir()
    assert d.parent == cache / "pool-lab" / "images"
    assert d.name == pool_lab.current_recipe_hash()


def test_missing_tool_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(pool_lab.shutil, "which", lambda tool: None)
    monkeypatch.setattr(pool_lab.os, "access", lambda path, mode: False)
    with pytest.raises(pool_lab.LabError) as e:
        pool_lab.need("qemu-system-x86_64")
    assert "install the Debian package qemu-system-x86" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(pool_lab.LabError, match="Debian package mmdebstrap"):
        pool_lab.need("mmdebstrap")


def test_cli_reports_missing_qemu_in_one_line(cache, monkeypatch, capsys):
    monkeypatch.setattr(pool_lab.shutil, "which", lambda tool: None)
    monkeypatch.setattr(pool_lab.os, "access", lambda path, mode: False)
    assert pool_lab.main(["up"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pool_lab: qemu-system-x86_64 not found: install the Debian package qemu-system-x86 "
        "(apt-get install qemu-system-x86)"
    ]


def test_bad_lab_name_is_refused(monkeypatch):
    monkeypatch.setenv("POOL_LAB_NAME", "../etc")
    with pytest.raises(pool_lab.LabError, match="bad POOL_LAB_NAME"):
        pool_lab.lab_name()


def test_parse_sources_deb822_and_one_line():
    deb822 = (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security/\n"
        "Suites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://other.example/x\n"
        "Suites: nodistro\nComponents: main\n"
    )
    assert pool_lab.parse_sources([deb822]) == {
        "debian": "http://mirror.example/debian",
        "security": "http://mirror.example/debian-security",
    }
    one_line = "deb [arch=amd64] http://m.example/debian bookworm main\n# deb http://x bookworm main\n"
    assert pool_lab.parse_sources([one_line]) == {"debian": "http://m.example/debian"}


def make_state(rd: Path, count: int = 3, firmware: str = "") -> pool_lab.State:
    topo = pool_lab.load_topology().subset(count)
    st = pool_lab.State(
        name="unit", count=count, accel="tcg", image="/img", kernel="6.1.0-0-amd64",
        mcast={link.name: pool_lab.mcast_group(f"unit:{link.name}") for link in topo.links}, firmware=firmware,
    )  # fmt: skip
    st.nodes = [pool_lab.make_node(rd, topo, name, 40000 + i, firmware) for i, name in enumerate(topo.nodes, 1)]
    for n in st.nodes:
        n.image = f"/img/{n.release}"
    return st


def test_inventory_rendering(tmp_path):
    yaml = pytest.importorskip("yaml")
    rd = tmp_path / "run"
    inv = yaml.safe_load(pool_lab.render_inventory(make_state(rd, 3), rd))
    hosts = inv["all"]["children"]["pool_nodes"]["hosts"]
    assert list(hosts) == ["node1", "node2", "node3"]
    n2 = hosts["node2"]
    assert n2["ansible_host"] == "127.0.0.1"
    assert n2["ansible_port"] == 40002
    assert n2["ansible_user"] == "root"
    assert n2["ansible_ssh_private_key_file"] == str(rd / "id_ed25519")
    assert f"UserKnownHostsFile={rd / 'known_hosts'}" in n2["ansible_ssh_common_args"]
    assert n2["pool_lab_ipv4"] == "10.253.0.12"
    assert n2["pool_lab_release"] == "bookworm"
    # QEMU's user-mode network: the controller's loopback is 10.0.2.2 from the node
    assert (n2["pool_lab_controller_address"], n2["pool_lab_controller_listen"]) == ("10.0.2.2", "127.0.0.1")
    assert n2["pool_lab_ipv6"] == "fd53:253::12"
    assert n2["pool_lab_links"] == {
        "a": {"interface": "lab-a", "ipv4": "10.253.0.12", "ipv6": "fd53:253::12"},
        "b": {"interface": "lab-b", "ipv4": "10.253.1.12", "ipv6": "fd53:253:1::12"},
    }
    assert inv["all"]["vars"]["pool_lab_name"] == "unit"
    assert inv["all"]["vars"]["pool_kmod_builder_signing_dir"] == str(rd / "fleet-signing")
    # each release builds on the controller, in the build root of its image
    builders = inv["all"]["vars"]["pool_kmod_builders"]
    become = os.geteuid() != 0
    assert builders == {
        "bookworm": {"host": "localhost", "become": become, "buildroot": "/img/bookworm/buildroot"},
        "trixie": {"host": "localhost", "become": become, "buildroot": "/img/trixie/buildroot"},
    }
    # node1 and node3 reach each other through node2's relay, and accept it
    relays = inv["all"]["children"]["pool_relays"]["hosts"]
    assert relays["node2"] == {"pool_relay_enabled": True, "pool_relay_peers": [{"name": "node1"}, {"name": "node3"}]}
    assert relays["node1"]["pool_node_relayed_peers"] == {"node3": ["node2"]}
    assert relays["node3"]["pool_relay_peers"] == [{"name": "node2", "accept": True}]
    # every node serves its metrics on its first link's address
    exporters = inv["all"]["children"]["pool_exporters"]
    assert sorted(exporters["hosts"]) == sorted(inv["all"]["children"]["pool_nodes"]["hosts"])
    assert exporters["vars"] == {"pool_exporter_listen": "{{ pool_lab_ipv4 }}:9254"}


def test_the_default_topology_is_a_line_of_three(tmp_path):
    """node1 - node2 - node3 on links a and b: node1 and node3 share no link."""
    yaml = pytest.importorskip("yaml")
    rd = tmp_path / "run"
    hosts = yaml.safe_load(pool_lab.render_inventory(make_state(rd), rd))["all"]["children"]["pool_nodes"]["hosts"]
    assert {h: v["pool_node_peers"] for h, v in hosts.items()} == {
        "node1": ["node2"],
        "node2": ["node1", "node3"],
        "node3": ["node2"],
    }
    # Each endpoint is the peer's address on the link the two share.
    assert hosts["node1"]["pool_node_peer_addresses"] == {"node2": "10.253.0.12"}
    assert hosts["node3"]["pool_node_peer_addresses"] == {"node2": "10.253.1.12"}
    assert hosts["node2"]["pool_node_peer_addresses"] == {"node1": "10.253.0.11", "node3": "10.253.1.13"}
    assert hosts["node3"]["pool_lab_ipv4"] == "10.253.1.13"
    assert hosts["node3"]["pool_lab_interface"] == "lab-b"
    assert hosts["node3"]["pool_lab_neighbours"] == {
        "node2": {"link": "b", "interface": "lab-b", "ipv4": "10.253.1.12", "ipv6": "fd53:253:1::12"}
    }
    assert [h["pool_lab_firmware"] for h in hosts.values()] == ["uefi", "bios", "uefi"]


def test_count_two_is_the_pair_on_link_a(tmp_path):
    st = make_state(tmp_path, 2)
    assert [n.name for n in st.nodes] == ["node1", "node2"]
    assert list(st.mcast) == ["a"]
    assert [[lk["interface"] for lk in n.links] for n in st.nodes] == [["lab-a"], ["lab-a"]]
    assert st.nodes[1].neighbours == {
        "node1": {"link": "a", "interface": "lab-a", "ipv4": "10.253.0.11", "ipv6": "fd53:253::11"}
    }


def test_count_beyond_the_topology_is_refused():
    with pytest.raises(pool_lab.LabError, match=r"^bad --count 4: topology.json declares 3 nodes, use 1..3$"):
        pool_lab.load_topology().subset(4)
    with pytest.raises(pool_lab.LabError, match="bad --count 0"):
        pool_lab.load_topology().subset(0)


def test_qemu_gets_one_nic_per_link_on_the_links_own_segment(tmp_path):
    st = make_state(tmp_path)
    topo = pool_lab.load_topology()
    cmds = {n.name: pool_lab.qemu_command("qemu", st, n, Path("/img"), "K", 2048, 2, topo) for n in st.nodes}

    def segments(cmd):
        return [a.split("mcast=")[1].split(",")[0] for a in cmd if a.startswith("socket,")]

    assert segments(cmds["node1"]) == [st.mcast["a"]]
    assert segments(cmds["node2"]) == [st.mcast["a"], st.mcast["b"]]
    assert segments(cmds["node3"]) == [st.mcast["b"]]
    append = cmds["node2"][cmds["node2"].index("-append") + 1]
    assert {"slub_debug=FZPU", "init_on_free=1"} <= set(append.split())
    assert (
        "pool_lab.links=lab-a=52:54:00:fd:01:0c=10.253.0.12/24=fd53:253::12/64,"
        "lab-b=52:54:00:fd:02:0c=10.253.1.12/24=fd53:253:1::12/64"
    ) in append.split()
    assert "pool_lab.unreachable=10.253.0.0/16=fd53:253::/32" in append.split()
    # /etc/hosts of node1 names only node2: node3 has no address node1 could reach.
    a1 = cmds["node1"][cmds["node1"].index("-append") + 1]
    assert "pool_lab.hosts=node2=10.253.0.12=fd53:253::12" in a1.split()


def test_nodes_get_distinct_addresses_and_macs(tmp_path):
    st = make_state(tmp_path)
    for attr in ("umac", "overlay", "console", "pidfile", "monitor", "port"):
        values = [getattr(n, attr) for n in st.nodes]
        assert len(set(values)) == len(values), attr
    for key in ("mac", "ipv4", "ipv6"):
        values = [lk[key] for n in st.nodes for lk in n.links]
        assert len(set(values)) == len(values), key


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda t: t["links"]["b"].update(nodes=["node2", "node9"]), "links.b.nodes"),
        (lambda t: t["links"]["b"].update(ipv4="192.168.1.0/24"), "inside 'unreachable'"),
        (lambda t: t["links"]["b"].update(interface="lab-a"), "links.b.interface"),
        (lambda t: t["nodes"]["node3"].update(firmware="coreboot"), "nodes.node3.firmware"),
        (lambda t: t["nodes"]["node3"].update(release="buster"), "nodes.node3.release 'buster'"),
        (lambda t: t["nodes"]["node3"].update(kernel="6.12"), "only 'firmware' and 'release' may be set"),
        (lambda t: t.pop("unreachable"), "'unreachable'"),
    ],
)
def test_a_bad_topology_is_refused_naming_the_field(tmp_path, change, message):
    import json

    topo = json.loads(pool_lab.TOPOLOGY.read_text())
    change(topo)
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(topo))
    with pytest.raises(pool_lab.LabError) as e:
        pool_lab.load_topology(path)
    assert message in str(e.value)
    assert str(e.value).startswith(f"{path}: ")


def test_mcast_group_differs_per_lab():
    assert pool_lab.mcast_group("a") != pool_lab.mcast_group("b")
    assert pool_lab.mcast_group("a") == pool_lab.mcast_group("a")
    assert pool_lab.mcast_group("a").startswith("239.")


def test_ssh_timeout_fails_with_the_console_tail(tmp_path):
    node = pool_lab.make_node(tmp_path, pool_lab.load_topology(), "node1", 40001)
    Path(node.console).write_text("".join(f"console line {i}\r\n" for i in range(120)))
    now = [0.0]

    def sleep(s):
        now[0] += s

    with pytest.raises(pool_lab.LabError) as e:
        pool_lab.wait_for_ssh(
            [node], timeout=30, answers=lambda n: False, alive=lambda n: True, clock=lambda: now[0], sleep=sleep
        )
    assert "node1: no SSH answer on 127.0.0.1:40001 within 30 s" in str(e.value)
    lines = e.value.detail.splitlines()
    assert len(lines) == 50
    assert lines[0] == "console line 70"
    assert lines[-1] == "console line 119"


def test_dead_qemu_fails_at_once_with_the_console_tail(tmp_path):
    node = pool_lab.make_node(tmp_path, pool_lab.load_topology(), "node2", 40002)
    Path(node.console).write_text("Kernel panic - not syncing\n")
    with pytest.raises(pool_lab.LabError, match="node2: qemu exited") as e:
        pool_lab.wait_for_ssh([node], timeout=300, answers=lambda n: False, alive=lambda n: False)
    assert "Kernel panic" in e.value.detail


def test_wait_for_ssh_returns_when_all_answer(tmp_path):
    nodes = [pool_lab.make_node(tmp_path, pool_lab.load_topology(), f"node{i}", 40000 + i) for i in (1, 2)]
    calls = {"node1": 0, "node2": 0}

    def answers(n):
        calls[n.name] += 1
        return calls[n.name] >= (1 if n.name == "node1" else 3)

    pool_lab.wait_for_ssh(nodes, 60, answers, lambda n: True, clock=lambda: 0.0, sleep=lambda s: None)
    assert calls == {"node1": 1, "node2": 3}


def test_down_without_a_lab_is_a_no_op(cache, capsys):
    pool_lab.down()
    pool_lab.down()
    assert not (cache / "pool-lab" / "run" / "unit").exists()


def test_down_removes_runtime_state_but_keeps_logs(cache):
    rd = pool_lab.run_dir()
    rd.mkdir(parents=True)
    st = make_state(rd)
    inv = cache / "hosts.yml"
    inv.write_text(pool_lab.render_inventory(st, rd))
    st.inventory = str(inv)
    st.save(rd)
    for n in st.nodes:
        Path(n.overlay).write_text("x")
        Path(n.pidfile).write_text("999999999\n")  # no such process
        Path(n.console).write_text("log")
        Path(n.monitor).write_text("")
    pool_lab.down(quiet=True)
    left = sorted(p.name for p in rd.iterdir())
    assert left == ["node1.console.log", "node2.console.log", "node3.console.log"]
    assert not inv.exists()


def test_status_of_a_lab_that_is_down(cache, capsys):
    assert pool_lab.main(["status", "--json"]) == 3
    assert '"up": false' in capsys.readouterr().out


# ---- reset: QMP, with a fake QMP socket

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}}, "capabilities": ["oob"]}}


class FakeQMP:
    """A connected QMP socket: answers arrive in small chunks, with an event in between; what is
    sent is kept. replies maps a command to its "return" value or to an error description."""

    def __init__(self, replies: dict[str, object], greeting: object = GREETING, chunk: int = 7) -> None:
        self.replies = replies
        self.pending = b"" if greeting is None else json.dumps(greeting).encode() + b"\r\n"
        self.sent: list[dict] = []
        self.closed = False
        self.chunk = chunk

    def recv(self, n: int) -> bytes:
        data, self.pending = self.pending[: min(n, self.chunk)], self.pending[min(n, self.chunk) :]
        return data

    def sendall(self, data: bytes) -> None:
        msg = json.loads(data)
        self.sent.append(msg)
        event = {"event": "RESET", "data": {"guest": False}, "timestamp": {"seconds": 1, "microseconds": 2}}
        if msg["execute"] == "qmp_capabilities":
            reply = {"return": {}, "id": msg["id"]}
        elif msg["execute"] in self.replies and not isinstance(self.replies[msg["execute"]], Exception):
            reply = {"return": self.replies[msg["execute"]], "id": msg["id"]}
        else:
            desc = str(self.replies.get(msg["execute"], f"The command {msg['execute']} has not been found"))
            reply = {"error": {"class": "CommandNotFound", "desc": desc}, "id": msg["id"]}
        self.pending += json.dumps(event).encode() + b"\r\n" + json.dumps(reply).encode() + b"\r\n"

    def close(self) -> None:
        self.closed = True


def test_qmp_negotiates_then_runs_the_command():
    fake = FakeQMP({"query-status": {"status": "running", "running": True}})
    connected = []

    def connect(path, timeout):
        connected.append((path, timeout))
        return fake

    assert pool_lab.qmp_command("/run/node1.monitor", "query-status", timeout=3, connect=connect) == {
        "status": "running",
        "running": True,
    }
    assert [m["execute"] for m in fake.sent] == ["qmp_capabilities", "query-status"]
    assert fake.closed and connected == [("/run/node1.monitor", 3)]


def test_qmp_system_reset_returns_nothing():
    fake = FakeQMP({"system_reset": {}})
    assert pool_lab.qmp_command("/m", "system_reset", connect=lambda p, t: fake) == {}
    assert fake.sent[-1] == {"execute": "system_reset", "arguments": {}, "id": "command"}


def test_qmp_error_is_qemus_description():
    fake = FakeQMP({})
    with pytest.raises(pool_lab.LabError, match=r"^QMP /m: system_rest: The command system_rest has not been found$"):
        pool_lab.qmp_command("/m", "system_rest", connect=lambda p, t: fake)
    assert fake.closed


def test_qmp_closed_before_the_greeting():
    fake = FakeQMP({}, greeting=None)
    with pytest.raises(pool_lab.LabError, match="QEMU closed the connection"):
        pool_lab.qmp_command("/m", "system_reset", connect=lambda p, t: fake)
    assert fake.sent == []  # nothing sent before QEMU said it speaks QMP


def test_qmp_refuses_a_socket_that_is_not_qmp():
    fake = FakeQMP({}, greeting={"hello": 1})
    with pytest.raises(pool_lab.LabError, match="no QMP greeting"):
        pool_lab.qmp_command("/m", "system_reset", connect=lambda p, t: fake)


def test_qmp_socket_missing(tmp_path):
    with pytest.raises(pool_lab.LabError, match=r"cannot connect to QEMU's QMP socket .*node1\.monitor"):
        pool_lab.qmp_command(str(tmp_path / "node1.monitor"), "system_reset", timeout=1)


def up_lab(rd: Path) -> pool_lab.State:
    rd.mkdir(parents=True)
    st = make_state(rd)
    for n in st.nodes:
        n.pid = 4242 + n.index
    st.ready = True
    st.save(rd)
    return st


def test_cli_reset_resets_the_named_node_and_waits_for_ssh(cache, monkeypatch, capsys):
    st = up_lab(pool_lab.run_dir())
    calls = []
    monkeypatch.setattr(pool_lab, "pid_alive", lambda pid: True)
    monkeypatch.setattr(pool_lab, "qmp_command", lambda path, cmd: calls.append(("qmp", path, cmd)) or {})

    def wait(nodes, timeout, answers, alive):
        calls.append(("wait", [n.name for n in nodes], timeout))

    monkeypatch.setattr(pool_lab, "wait_for_ssh", wait)
    assert pool_lab.main(["reset", "node2", "--timeout", "120"]) == 0
    assert calls == [("qmp", st.nodes[1].monitor, "system_reset"), ("wait", ["node2"], 120.0)]
    assert "node2 answers SSH" in capsys.readouterr().err


def test_cli_reset_unknown_node(cache, monkeypatch, capsys):
    up_lab(pool_lab.run_dir())
    monkeypatch.setattr(pool_lab, "qmp_command", lambda *a: pytest.fail("QMP used"))
    assert pool_lab.main(["reset", "node9"]) == 1
    assert capsys.readouterr().err.strip() == "pool_lab: lab 'unit' has no VM 'node9' (it has node1, node2, node3)"


def test_cli_reset_without_a_lab(cache, capsys):
    assert pool_lab.main(["reset", "node1"]) == 1
    assert capsys.readouterr().err.strip() == "pool_lab: lab 'unit' is not up: run up first"


def test_cli_reset_of_a_stopped_vm(cache, monkeypatch, capsys):
    up_lab(pool_lab.run_dir())
    monkeypatch.setattr(pool_lab, "pid_alive", lambda pid: False)
    monkeypatch.setattr(pool_lab, "qmp_command", lambda *a: pytest.fail("QMP used"))
    assert pool_lab.main(["reset", "node1"]) == 1
    assert "node1: qemu (pid 4243) is not running" in capsys.readouterr().err


def test_cli_reset_needs_a_node_name(capsys):
    with pytest.raises(SystemExit) as e:
        pool_lab.main(["reset"])
    assert e.value.code == 2
    assert "the following arguments are required: node" in capsys.readouterr().err


# ---------------------------------------------------------------- firmware (POOL_LAB_FIRMWARE)


def pflash_drives(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "-drive" and cmd[i + 1].startswith("if=pflash")]


def test_firmware_comes_from_the_topology_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("POOL_LAB_FIRMWARE", raising=False)
    assert pool_lab.firmware_override() == ""
    st = make_state(tmp_path)
    assert [n.firmware for n in st.nodes] == ["uefi", "bios", "uefi"]
    topo = pool_lab.load_topology()
    cmd = pool_lab.qemu_command("qemu", st, st.nodes[1], Path("/img"), "ssh-ed25519 K", 2048, 2, topo)
    assert pflash_drives(cmd) == []
    assert cmd[cmd.index("-kernel") + 1] == "/img/vmlinuz"
    cmd = pool_lab.qemu_command("qemu", st, st.nodes[2], Path("/img"), "ssh-ed25519 K", 2048, 2, topo)
    assert len(pflash_drives(cmd)) == 2
    assert [n.firmware for n in make_state(tmp_path, firmware="bios").nodes] == ["bios"] * 3


def test_uefi_adds_read_only_code_and_a_per_node_variable_store(tmp_path):
    st = make_state(tmp_path, firmware="uefi")
    topo = pool_lab.load_topology()
    cmds = [pool_lab.qemu_command("qemu", st, n, Path("/img"), "ssh-ed25519 K", 2048, 2, topo) for n in st.nodes]
    assert pflash_drives(cmds[0]) == [
        "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
        f"if=pflash,format=raw,unit=1,file={tmp_path / 'node1.efivars.fd'}",
    ]
    assert pflash_drives(cmds[1])[1] == f"if=pflash,format=raw,unit=1,file={tmp_path / 'node2.efivars.fd'}"
    for cmd in cmds:
        # Direct kernel boot stays (OVMF reads -kernel/-initrd/-append through fw_cfg).
        assert cmd[cmd.index("-kernel") + 1] == "/img/vmlinuz"
        assert cmd[cmd.index("-initrd") + 1] == "/img/initrd.img"
        assert "root=/dev/vda" in cmd[cmd.index("-append") + 1]


def test_bad_firmware_is_refused(monkeypatch):
    monkeypatch.setenv("POOL_LAB_FIRMWARE", "coreboot")
    with pytest.raises(pool_lab.LabError, match=r"^bad POOL_LAB_FIRMWARE 'coreboot': use bios or uefi$"):
        pool_lab.firmware_override()


def test_missing_ovmf_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(pool_lab, "OVMF_CODE", str(tmp_path / "OVMF_CODE_4M.fd"))
    (tmp_path / "OVMF_VARS_4M.fd").write_text("")
    monkeypatch.setattr(pool_lab, "OVMF_VARS", str(tmp_path / "OVMF_VARS_4M.fd"))
    with pytest.raises(pool_lab.LabError) as e:
        pool_lab.need_ovmf()
    assert str(e.value) == (
        f"POOL_LAB_FIRMWARE=uefi needs {tmp_path / 'OVMF_CODE_4M.fd'}: "
        "install the Debian package ovmf (apt-get install ovmf)"
    )


def test_cli_up_with_uefi_and_no_ovmf_fails_in_one_line_before_starting(cache, monkeypatch, capsys):
    monkeypatch.setenv("POOL_LAB_FIRMWARE", "uefi")
    monkeypatch.setattr(pool_lab, "need", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(pool_lab, "OVMF_CODE", str(cache / "none" / "OVMF_CODE_4M.fd"))
    monkeypatch.setattr(pool_lab, "OVMF_VARS", str(cache / "none" / "OVMF_VARS_4M.fd"))
    monkeypatch.setattr(pool_lab, "build_image", lambda *a, **k: pytest.fail("must fail before the image"))
    assert pool_lab.main(["up", "--count", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("pool_lab: POOL_LAB_FIRMWARE=uefi needs ")
    assert err[0].endswith("install the Debian package ovmf (apt-get install ovmf)")
    assert not (cache / "pool-lab" / "run" / "unit").exists()


def test_down_removes_the_variable_stores(cache):
    rd = pool_lab.run_dir()
    rd.mkdir(parents=True)
    st = make_state(rd, 2, firmware="uefi")
    st.save(rd)
    for n in st.nodes:
        Path(pool_lab.efivars_path(n)).write_bytes(b"\0")
        Path(n.console).write_text("log")
    pool_lab.down(quiet=True)
    assert sorted(p.name for p in rd.iterdir()) == ["node1.console.log", "node2.console.log"]
    assert pool_lab.State.load(rd) is None


def test_molecule_platforms_are_the_topologys_nodes():
    """.config/molecule/config.yml names molecule's platforms; topology.json declares the nodes."""
    yaml = pytest.importorskip("yaml")
    base = yaml.safe_load((pool_lab.REPO / ".config" / "molecule" / "config.yml").read_text())
    assert [p["name"] for p in base["platforms"]] == list(pool_lab.load_topology().nodes)
    assert all(p["groups"] == ["pool_nodes"] for p in base["platforms"])
    assert base["shared_state"] is True
