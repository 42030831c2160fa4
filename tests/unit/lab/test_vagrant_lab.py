"""The Vagrant lab's logic that needs no VM: box versions, what it reads from Vagrant, the kernel
command line, the inventory of a Vagrant-booted lab, and down; vagrant and virsh are stand-ins."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pool_lab
import pytest
import vagrant_lab


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """vagrant and virsh stand-ins on PATH: each logs its arguments (and VAGRANT_CWD) and prints
    what tests put in <tool>.out."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("vagrant", "virsh"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\necho "$VAGRANT_CWD $*" >>"{tmp_path}/{tool}.calls"\n'
            f'[ ! -f "{tmp_path}/{tool}.out" ] || cat "{tmp_path}/{tool}.out"\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("POOL_LAB_NAME", "unitv")
    monkeypatch.setattr(vagrant_lab, "LIBVIRT_DIR", tmp_path / "libvirt")
    return tmp_path


def calls(tmp: Path, tool: str) -> list[str]:
    path = tmp / f"{tool}.calls"
    return path.read_text().splitlines() if path.exists() else []


def test_box_versions_follow_the_image_and_are_what_vagrant_accepts():
    a, b = "15a0c84b20c91d5e" + "0" * 48, "38f97a9d6e786f08" + "0" * 48
    assert re.fullmatch(r"1\.\d+\.\d+", vagrant_lab.box_version(a))
    assert vagrant_lab.box_version(a) == vagrant_lab.box_version(a)
    assert vagrant_lab.box_version(a) != vagrant_lab.box_version(b)
    assert vagrant_lab.box_version(a).endswith(f".{int('15a0c84', 16)}")


def test_listed_boxes_reads_vagrants_machine_readable_list(fake_tools):
    (fake_tools / "vagrant.out").write_text(
        "1700000000,,ui,info,pool-lab/bookworm (libvirt\\, 1.2.3)\n"
        "1700000000,,box-name,pool-lab/bookworm\n"
        "1700000000,,box-provider,libvirt\n"
        "1700000000,,box-version,1.2.3\n"
        "1700000000,,box-name,debian/bookworm64\n"
        "1700000000,,box-provider,virtualbox\n"
        "1700000000,,box-version,12.20240503.1\n"
    )
    assert vagrant_lab.listed_boxes() == {
        ("pool-lab/bookworm", "libvirt", "1.2.3"),
        ("debian/bookworm64", "virtualbox", "12.20240503.1"),
    }


def test_ssh_hosts_reads_each_nodes_address_from_ssh_config(fake_tools):
    (fake_tools / "vagrant.out").write_text(
        "Host node1\n  HostName 192.168.253.101\n  User root\n  Port 22\n\n"
        "Host node2\n  HostName 192.168.253.102\n  User root\n  Port 22\n"
    )
    rd = pool_lab.run_dir()
    assert vagrant_lab.ssh_hosts(rd) == {"node1": "192.168.253.101", "node2": "192.168.253.102"}
    assert calls(fake_tools, "vagrant") == [f"{rd / 'vagrant'} ssh-config"]


def test_a_failing_vagrant_is_one_error_with_its_last_lines(fake_tools):
    script = fake_tools / "bin" / "vagrant"
    script.write_text("#!/bin/sh\necho 'There are errors in the configuration'\necho '* no box' >&2\nexit 1\n")
    with pytest.raises(pool_lab.LabError, match=r"vagrant up failed \(exit 1\)") as e:
        vagrant_lab.run_vagrant(pool_lab.run_dir(), ["up"])
    assert "* no box" in e.value.detail


def test_the_kernel_command_line_asks_for_dhcp_only_on_vagrant(tmp_path):
    topo = pool_lab.load_topology()
    node = pool_lab.make_node(tmp_path, topo, "node2", 22)
    qemu = pool_lab.kernel_command_line(node, "ssh-ed25519 AAAA lab", topo)
    vagrant = pool_lab.kernel_command_line(node, "ssh-ed25519 AAAA lab", topo, mgmt="dhcp")
    assert "pool_lab.mgmt" not in qemu
    assert vagrant == qemu + " pool_lab.mgmt=dhcp"
    assert "pool_lab.links=lab-a=52:54:00:fd:01:0c=10.253.0.12/24=fd53:253::12/64," in qemu


def test_a_vagrant_lab_inventory_names_each_nodes_own_address(tmp_path):
    yaml = pytest.importorskip("yaml")
    rd = tmp_path / "run"
    topo = pool_lab.load_topology()
    st = pool_lab.State(name="v", count=3, accel="tcg", image="/img", kernel="k", mcast={}, provider="vagrant")
    management = list(vagrant_lab.MANAGEMENT_RANGE.subnets(new_prefix=28))
    for i, name in enumerate(topo.nodes, 1):
        n = pool_lab.make_node(rd, topo, name, 22)
        n.host, n.image = f"192.168.253.{100 + i}", f"/img/{n.release}"
        n.controller_address = n.controller_listen = vagrant_lab.controller_address(management[n.index])
        st.nodes.append(n)
    hosts = yaml.safe_load(pool_lab.render_inventory(st, rd))["all"]["children"]["pool_nodes"]["hosts"]
    assert {h: (v["ansible_host"], v["ansible_port"]) for h, v in hosts.items()} == {
        "node1": ("192.168.253.101", 22),
        "node2": ("192.168.253.102", 22),
        "node3": ("192.168.253.103", 22),
    }
    assert pool_lab.ssh_base(rd, 22, "192.168.253.102")[-1] == "root@192.168.253.102"
    # the controller as node2 reaches it (and listens for it): on node2's own /28, its router
    assert (hosts["node2"]["pool_lab_controller_address"], hosts["node2"]["pool_lab_controller_listen"]) == (
        "192.168.253.33",
        "192.168.253.33",
    )


def test_down_of_a_vagrant_lab_destroys_it_and_forgets_it(fake_tools, capsys):
    rd = pool_lab.run_dir()
    vd = rd / "vagrant"
    vd.mkdir(parents=True)
    (vd / "spec.json").write_text(json.dumps({"nodes": []}))
    inventory = fake_tools / "hosts.yml"
    inventory.write_text("# Generated by molecule/lab/pool_lab.py for lab 'unitv'\n")
    pool_lab.State(
        name="unitv",
        count=1,
        accel="tcg",
        image="/img",
        kernel="k",
        mcast={},
        inventory=str(inventory),
        provider="vagrant",
    ).save(rd)
    pool_lab.down()  # the QEMU lab's down hands a Vagrant lab over
    assert f"{vd} destroy --force" in calls(fake_tools, "vagrant")
    assert not (rd / "state.json").exists()
    assert not vd.exists()
    assert not inventory.exists()
    assert "vagrant_lab: lab 'unitv' down" in capsys.readouterr().err
