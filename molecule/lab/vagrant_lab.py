#!/usr/bin/env python3
"""The POOL lab on Vagrant with the libvirt provider: the same topology, images and inventory as
pool_lab.py's QEMU lab, for teams that develop with Vagrant.

  vagrant_lab.py box [--release R]   make a Vagrant box of the lab's image of each release the
                                     topology uses (or of R) and add it to the local Vagrant
  vagrant_lab.py up [--inventory P]  boot topology.json's nodes with `vagrant up`, wait for SSH,
                                     write the same inventory as pool_lab.py up
  vagrant_lab.py down                `vagrant destroy`, and the lab's runtime files
  vagrant_lab.py libvirtd            start libvirtd unless it answers (also done by box and up)

A box is the lab image's disk (ext4 on the whole disk, no boot loader), its kernel and initrd,
which the box's Vagrantfile boots directly, and metadata. Its version is derived from the image's
cache key (the recipe hash), so a changed recipe makes a new box version and an unchanged one adds
nothing. The node's settings travel on the kernel command line as in the QEMU lab (pool-lab-setup
in customize.sh applies them), with `pool_lab.mgmt=dhcp`: the management NIC takes its address
from libvirt's DHCP, where Vagrant looks for it. pool_lab.py's status, ssh and down work on a
Vagrant lab too; reset (QEMU's monitor) does not.

Standard library only, like pool_lab.py. Needs vagrant, vagrant-libvirt and libvirt (Debian 12:
vagrant, vagrant-libvirt, libvirt-daemon-system), and root for libvirt's system instance.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import ipaddress
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pool_lab as lab

VAGRANTFILE = lab.HERE / "Vagrantfile"
LIBVIRT_URI = "qemu:///system"
# What the VMs' QEMU opens itself (kernels, initrds, UEFI variable stores, consoles): under
# libvirt's own tree, which its unprivileged qemu user can reach (a home folder may not be).
LIBVIRT_DIR = Path(os.environ.get("POOL_LAB_LIBVIRT_DIR", "/var/lib/libvirt/pool-lab"))
# The management networks: libvirt NAT and DHCP, away from the lab's own ranges (topology.json).
# Each node has one of its own (a /28 of this range), as each VM of the QEMU lab has its own
# user-mode network: libvirt forwards no new connection between two of its NAT networks, so the
# management side gives node1 no path to node3 either.
MANAGEMENT_RANGE = ipaddress.IPv4Network(os.environ.get("POOL_LAB_VAGRANT_NETWORK", "192.168.253.0/24"))
# Vagrant's well-known key pair: a box booted outside the lab (no key on its command line) takes
# this public key, and Vagrant logs in with the private one by default.
VAGRANT_INSECURE_PUB = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")
DEFAULT_MGMT_MAC = "52:54:00:00:00:01"
LabError = lab.LabError

BOX_VAGRANTFILE = """\
# Defaults of the POOL lab box {name} {version} (image {digest}): root over SSH with Vagrant's
# insecure key, the box's kernel booted directly, the management NIC on DHCP. A Vagrantfile of
# your own overrides any of these; molecule/lab/Vagrantfile does for the lab.
Vagrant.configure("2") do |config|
  config.ssh.username = "root"
  config.ssh.insert_key = false
  config.ssh.sudo_command = "%c"  # root already, and the image has no sudo
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.kernel = "{kernel}"
    lv.initrd = "{initrd}"
    lv.cmd_line = "{cmd_line}"
    lv.management_network_mac = "{mac}"
    lv.disk_bus = "virtio"
    lv.machine_type = "q35"
  end
end
"""


def controller_address(management: ipaddress.IPv4Network) -> str:
    """The controller's address on a node's management network: vagrant-libvirt gives the host
    the network's first address (the DHCP router the node's default route goes through)."""
    return str(next(management.hosts()))


def box_name(release: str) -> str:
    return f"pool-lab/{release}"


def box_version(digest: str) -> str:
    """The box version of an image: Vagrant wants X.Y.Z numbers, so the image's cache key (its
    first 28 bits) and what the box adds to it (its Vagrantfile's defaults, 16 bits)."""
    wrapping = hashlib.sha256((BOX_VAGRANTFILE + default_cmd_line()).encode()).hexdigest()
    return f"1.{int(wrapping[:4], 16)}.{int(digest[:7], 16)}"


def vagrant_dir(rd: Path) -> Path:
    return rd / "vagrant"


def vagrant_env(rd: Path) -> dict[str, str]:
    vd = vagrant_dir(rd)
    return {
        **os.environ,
        "VAGRANT_CWD": str(vd),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "POOL_LAB_VAGRANT_SPEC": str(vd / "spec.json"),
        "LIBVIRT_DEFAULT_URI": LIBVIRT_URI,
    }


def libvirt_answers() -> bool:
    return (
        subprocess.run(
            [lab.need("virsh"), "-c", LIBVIRT_URI, "version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def ensure_libvirtd(timeout: float = 30.0) -> None:
    """libvirt's system instance answers, or is started: by systemd where it runs, else directly
    (a container or a CI machine without systemd)."""
    if libvirt_answers():
        return
    if os.geteuid() != 0:
        raise LabError("libvirtd does not answer on qemu:///system: start it (systemctl start libvirtd) or run as root")
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "start", "virtlogd.service", "libvirtd.service"], check=False)
    else:
        for daemon in ("virtlogd", "libvirtd"):
            subprocess.run([lab.need(daemon), "--daemon"], check=False)
    deadline = time.monotonic() + timeout
    while not libvirt_answers():
        if time.monotonic() > deadline:
            raise LabError(f"libvirtd started but does not answer on {LIBVIRT_URI} within {timeout:.0f} s")
        time.sleep(0.5)


def listed_boxes() -> set[tuple[str, str, str]]:
    """(name, provider, version) of every box the local Vagrant has."""
    out = subprocess.run(
        [lab.need("vagrant"), "box", "list", "--machine-readable"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise LabError("vagrant box list failed", out.stderr.strip())
    boxes, current = set(), {}
    for line in out.stdout.splitlines():
        fields = line.split(",", 3)
        if len(fields) < 4:
            continue
        kind, value = fields[2], fields[3]
        if kind == "box-name":
            current = {"name": value}
        elif kind == "box-provider":
            current["provider"] = value
        elif kind == "box-version":
            current["version"] = value
            boxes.add((current.get("name", ""), current.get("provider", ""), value))
    return boxes


def boot_files(img: Path) -> Path:
    """The image's kernel and initrd, copied where libvirt's QEMU may read them."""
    boot = LIBVIRT_DIR / "boot" / img.name[:16]
    if all((boot / f).is_file() for f in ("vmlinuz", "initrd.img")):
        return boot
    boot.mkdir(parents=True, exist_ok=True)
    for f in ("vmlinuz", "initrd.img"):
        tmp = boot / f".{f}.tmp"
        shutil.copyfile(img / f, tmp)
        tmp.chmod(0o644)
        tmp.rename(boot / f)
    return boot


def default_cmd_line() -> str:
    parts = [
        "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 panic=10",
        "pool_lab.hostname=pool-lab",
        f"pool_lab.umac={DEFAULT_MGMT_MAC}",
        "pool_lab.mgmt=dhcp",
    ]
    if VAGRANT_INSECURE_PUB.is_file():
        parts.append("pool_lab.key=" + base64.b64encode(VAGRANT_INSECURE_PUB.read_bytes().strip()).decode())
    return " ".join(parts)


class Box(NamedTuple):
    name: str
    version: str
    boot: Path  # the kernel and initrd, where libvirt's QEMU reads them
    image: Path  # the lab image it was made of


def make_box(release: str, quiet: bool = False) -> Box:
    """The box of `release`'s current image in the local Vagrant (the image built if need be)."""
    img = lab.build_image(release=release, quiet=quiet)
    digest = img.name
    name, version = box_name(release), box_version(digest)
    boot = boot_files(img)
    listed = listed_boxes()
    if (name, "libvirt", version) in listed:
        prune(name, version, listed)
        return Box(name, version, boot, img)
    t0 = time.monotonic()
    work_root = lab.cache_root() / "vagrant"
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".box-", dir=work_root) as tmp:
        work = Path(tmp)
        info = json.loads(
            subprocess.run(
                [lab.need("qemu-img"), "info", "--output=json", str(img / "disk.qcow2")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        (work / "metadata.json").write_text(
            json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": math.ceil(info["virtual-size"] / 2**30)}
            )
        )
        (work / "Vagrantfile").write_text(
            BOX_VAGRANTFILE.format(
                name=name,
                version=version,
                digest=digest,
                kernel=boot / "vmlinuz",
                initrd=boot / "initrd.img",
                cmd_line=default_cmd_line(),
                mac=DEFAULT_MGMT_MAC,
            )
        )
        box = work / f"{name.replace('/', '-')}-{version}.box"
        # Uncompressed: the qcow2 disk is already compact, and gzip would cost a minute a box.
        with tarfile.open(box, "w") as tar:
            tar.add(work / "metadata.json", "metadata.json")
            tar.add(work / "Vagrantfile", "Vagrantfile")
            tar.add(img / "disk.qcow2", "box.img")
        digest_of_box = hashlib.sha256()
        with open(box, "rb") as f:
            while chunk := f.read(1 << 20):
                digest_of_box.update(chunk)
        # A catalog, so that the box is added under its version (a plain .box has none).
        catalog = work / "catalog.json"
        catalog.write_text(
            json.dumps(
                {
                    "name": name,
                    "description": f"POOL lab image {digest} (Debian {release})",
                    "versions": [
                        {
                            "version": version,
                            "providers": [
                                {
                                    "name": "libvirt",
                                    "url": box.as_uri(),
                                    "checksum_type": "sha256",
                                    "checksum": digest_of_box.hexdigest(),
                                }
                            ],
                        }
                    ],
                },
                indent=2,
            )
        )
        added = subprocess.run(
            [lab.need("vagrant"), "box", "add", "--provider", "libvirt", catalog.as_uri()],
            capture_output=True,
            text=True,
            check=False,
        )
        if added.returncode != 0:
            raise LabError(f"vagrant box add {name} {version} failed", (added.stderr or added.stdout).strip())
    if not quiet:
        print(f"vagrant_lab: box {name} {version} added ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    prune(name, version, listed)
    return Box(name, version, boot, img)


def prune(name: str, keep: str, listed: set[tuple[str, str, str]]) -> None:
    """Remove the other versions of box `name` (older images or box defaults): from Vagrant, and
    the copy vagrant-libvirt uploaded into libvirt's storage pool."""
    for box, provider, version in listed:
        if box != name or provider != "libvirt" or version == keep:
            continue
        subprocess.run(
            [lab.need("vagrant"), "box", "remove", "--force", "--provider", "libvirt", "--box-version", version, box],
            capture_output=True,
            check=False,
        )
        volume = f"{box.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_{version}_box.img"
        subprocess.run(
            [lab.need("virsh"), "-c", LIBVIRT_URI, "vol-delete", "--pool", "default", volume],
            capture_output=True,
            check=False,
        )


def run_vagrant(rd: Path, args: list[str], log: Path | None = None, timeout: float | None = None) -> str:
    """vagrant ARGS in the lab's Vagrant folder; its output (also into `log`); LabError on failure."""
    cmd = [lab.need("vagrant"), *args]
    with open(log, "a") if log else contextlib.nullcontext() as lf:
        r = subprocess.run(
            cmd, env=vagrant_env(rd), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if lf:
            lf.write(f"$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    if r.returncode != 0:
        detail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-30:])
        raise LabError(f"vagrant {' '.join(args)} failed (exit {r.returncode})", detail)
    return r.stdout


def ssh_hosts(rd: Path) -> dict[str, str]:
    """Node -> the address Vagrant reaches it at (from `vagrant ssh-config`)."""
    hosts, current = {}, ""
    for line in run_vagrant(rd, ["ssh-config"]).splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "Host":
            current = words[1]
        elif len(words) == 2 and words[0] == "HostName" and current:
            hosts[current] = words[1]
    return hosts


def qemu_pid(domain: str) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip())
    return 0


def up(count: int | None, memory: int, cpus: int, timeout: float, inventory: Path) -> lab.State:
    full = lab.load_topology()
    topo = full.subset(len(full.nodes) if count is None else count)
    count = len(topo.nodes)
    name = lab.lab_name()
    rd = lab.run_dir(name)
    lab.need("vagrant")
    ensure_libvirtd()
    firmware = lab.firmware_override()
    if "uefi" in ([firmware] if firmware else topo.firmware.values()):
        lab.need_ovmf()
    releases = lab.node_releases(topo)
    old = lab.State.load(rd)
    if (
        old
        and old.provider == "vagrant"
        and old.ready
        and old.count == count
        and all(n.release == releases[n.name] for n in old.nodes)
        and all(lab.ssh_answers(rd, n) for n in old.nodes)
    ):
        lab.write_inventory(old, rd, inventory)
        print(f"vagrant_lab: lab {name!r} already up ({count} VMs)", file=sys.stderr)
        return old
    lab.down(quiet=True)  # whatever ran under this name, QEMU or Vagrant
    made = {r: make_box(r) for r in sorted(set(releases.values()))}
    images = {r: box.image for r, box in made.items()}
    kernels = {r: json.loads((d / "manifest.json").read_text())["kernel"] for r, d in images.items()}
    rd.mkdir(parents=True, exist_ok=True)
    os.chmod(rd, 0o700)
    pubkey = lab.ensure_key(rd)
    with contextlib.suppress(FileNotFoundError):
        (rd / "known_hosts").unlink()
    files = LIBVIRT_DIR / "run" / name
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir(parents=True)
    first = images[releases[topo.nodes[0]]]
    accel = "kvm" if lab.kvm_works(first / "vmlinuz", lab.need("qemu-system-x86_64")) else "tcg"
    st = lab.State(
        name=name,
        count=count,
        accel=accel,
        image=str(first),
        kernel=kernels[releases[topo.nodes[0]]],
        mcast={},
        inventory=str(inventory),
        firmware=firmware,
        provider="vagrant",
    )
    prefix = f"pool-lab-{name}-"
    spec_nodes = []
    management = list(MANAGEMENT_RANGE.subnets(new_prefix=28))
    if len(topo.nodes) >= len(management):
        raise LabError(f"POOL_LAB_VAGRANT_NETWORK {MANAGEMENT_RANGE} has room for {len(management) - 1} nodes")
    for node_name in topo.nodes:
        n = lab.make_node(rd, topo, node_name, 22, firmware, releases[node_name])
        n.image, n.kernel = str(images[n.release]), kernels[n.release]
        n.controller_address = n.controller_listen = controller_address(management[n.index])
        n.console = str(files / f"{node_name}.console.log")
        box, version, boot, _ = made[n.release]
        nvram = ""
        if n.firmware == "uefi":
            nvram = str(files / f"{node_name}.efivars.fd")
            shutil.copyfile(lab.OVMF_VARS, nvram)
        spec_nodes.append(
            {
                "name": node_name,
                "box": box,
                "box_version": version,
                "kernel": str(boot / "vmlinuz"),
                "initrd": str(boot / "initrd.img"),
                "cmd_line": lab.kernel_command_line(n, pubkey, topo, mgmt="dhcp"),
                "umac": n.umac,
                "management_network": f"{prefix}mgmt{n.index}",
                "management_network_address": str(management[n.index]),
                "firmware": n.firmware,
                "nvram": nvram,
                "console": n.console,
                "links": [{"network": f"{prefix}{lk['link']}", "mac": lk["mac"]} for lk in n.links],
            }
        )
        st.nodes.append(n)
    spec = {
        "prefix": prefix,
        "driver": "kvm" if accel == "kvm" else "qemu",
        "memory": memory,
        "cpus": cpus,
        "boot_timeout": int(timeout),
        "tcg_cpu": os.environ.get("POOL_LAB_TCG_CPU", lab.TCG_CPU),
        "ovmf_code": lab.OVMF_CODE,
        "private_key": str(rd / "id_ed25519"),
        "nodes": spec_nodes,
    }
    vd = vagrant_dir(rd)
    vd.mkdir(exist_ok=True)
    lab.atomic_write(vd / "spec.json", json.dumps(spec, indent=2) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (vd / "Vagrantfile").unlink()
    (vd / "Vagrantfile").symlink_to(VAGRANTFILE)
    st.save(rd)
    t0 = time.monotonic()
    try:
        print(f"vagrant_lab: vagrant up ({accel}, {count} VMs; log {vd / 'vagrant.log'})", file=sys.stderr)
        run_vagrant(rd, ["up", "--provider", "libvirt", "--no-provision"], vd / "vagrant.log", timeout=timeout + 600)
        hosts = ssh_hosts(rd)
        for n in st.nodes:
            if n.name not in hosts:
                raise LabError(f"{n.name}: vagrant ssh-config names no address for it")
            n.host, n.pid = hosts[n.name], qemu_pid(prefix + n.name)
        st.save(rd)
        lab.wait_for_ssh(st.nodes, timeout, lambda n: lab.ssh_answers(rd, n), lambda n: lab.pid_alive(n.pid))
    except BaseException:
        with contextlib.suppress(Exception):
            down(quiet=True)
        raise
    st.ready = True
    lab.write_inventory(st, rd, inventory)
    st.save(rd)
    print(
        f"vagrant_lab: lab {name!r} up on Vagrant: {count} VMs answer SSH after {time.monotonic() - t0:.0f} s;"
        f" inventory {inventory}",
        file=sys.stderr,
    )
    return st


def down(quiet: bool = False) -> None:
    """vagrant destroy the lab's VMs (and the networks Vagrant made), then its runtime files."""
    name = lab.lab_name()
    rd = lab.run_dir(name)
    st = lab.State.load(rd)
    vd = vagrant_dir(rd)
    if (vd / "spec.json").is_file():
        ensure_libvirtd()
        run_vagrant(rd, ["destroy", "--force"], vd / "vagrant.log", timeout=600)
    lab.forget(rd, st)
    shutil.rmtree(vd, ignore_errors=True)
    shutil.rmtree(LIBVIRT_DIR / "run" / name, ignore_errors=True)
    if not quiet:
        print(f"vagrant_lab: lab {name!r} down", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vagrant_lab.py", description="The POOL lab on Vagrant (libvirt).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("box", help="add the lab's images to the local Vagrant as boxes (idempotent)")
    p.add_argument("--release", choices=lab.RELEASES, action="append", help="this release only (repeatable)")
    p = sub.add_parser("up", help="boot the lab's nodes with vagrant up and write the inventory")
    lab.add_up_options(p)
    sub.add_parser("down", help="vagrant destroy the lab and remove its runtime files")
    sub.add_parser("libvirtd", help="start libvirtd unless it answers")
    args = ap.parse_args(argv)

    def command() -> int:
        if args.cmd == "box":
            releases = args.release or sorted(set(lab.node_releases(lab.load_topology()).values()))
            ensure_libvirtd()
            for r in releases:
                box = make_box(r)
                print(f"{box.name} {box.version}")
        elif args.cmd == "up":
            up(args.count, args.memory, args.cpus, args.timeout, args.inventory.resolve())
        elif args.cmd == "down":
            down()
        elif args.cmd == "libvirtd":
            ensure_libvirtd()
        return 0

    return lab.run_command("vagrant_lab", command)


if __name__ == "__main__":
    sys.exit(main())
