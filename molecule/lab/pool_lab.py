#!/usr/bin/env python3
"""The POOL QEMU lab: Debian bookworm VMs on this host, standard library only.

    pool_lab.py image                 build (or reuse) the cached base image
    pool_lab.py up [--count N]        boot the first N nodes of topology.json (default all),
                                      wait for SSH, write the inventory
    pool_lab.py down                  stop the VMs and remove their runtime state
    pool_lab.py status [--json]       what runs
    pool_lab.py inventory [--inventory PATH]   (re)write the inventory of a running lab
    pool_lab.py reset NODE            power-cycle one VM (QEMU system_reset), wait for SSH

State lives under ${XDG_CACHE_HOME:-~/.cache}/pool-lab/: images/<recipe sha256>/ and
run/$POOL_LAB_NAME/ (default name "lab"). The nodes, their private links and firmware are
declared once in topology.json beside this file. POOL_LAB_FIRMWARE=bios|uefi overrides every
node's firmware (uefi: OVMF, Debian package ovmf). See molecule/lab/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CUSTOMIZE = HERE / "customize.sh"
DEFAULT_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"
TOPOLOGY = HERE / "topology.json"

# Bump when the build procedure itself (not the package list or script) changes.
# 2: the nodes' toolchain moved to a build root beside the disk (strip_toolchain).
RECIPE_VERSION = 2
# The Debian releases a lab node can run (topology.json's "release", or POOL_LAB_RELEASE for
# every node): each has an image of its own, built from the same package list and script.
RELEASES = ("bookworm", "trixie")
DEFAULT_RELEASE = "bookworm"
# The host's release, whose apt sources name the mirrors the images are built from.
HOST_SUITE = "bookworm"


def release_suites(release: str) -> tuple[str, str, str, str]:
    """The release, its updates and security suites, and its backports (a newer kernel for the
    kernel-upgrade test; nothing comes from there unless asked for)."""
    return (release, f"{release}-updates", f"{release}-security", f"{release}-backports")


PACKAGES = (
    "linux-image-amd64",
    "linux-headers-amd64",
    "dkms",
    "build-essential",
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-apt",
    "kmod",
    "iproute2",
    "systemd-sysv",
    "udev",
    "dbus",
    "initramfs-tools",
    "zstd",
    "mokutil",
    "openssl",
    "wireguard-tools",
    "iperf3",
    "iputils-ping",
    "procps",
    "ca-certificates",
    "netcat-openbsd",
    "rsync",
    "curl",
    "less",
    "strace",
    "tcpdump",
    "jq",
    # The transport tests' reference peer and probes (pooltools.testing.refpeer) use it for AEAD and
    # X25519; installing it in every test run would cost minutes of dpkg under emulation.
    "python3-cryptography",
    # The lab boots its kernels directly (no bootloader): playbooks/kernel_upgrade.yml reboots
    # into a new kernel with kexec (pool_upgrade_kexec in the inventory).
    "kexec-tools",
)
DISK_SIZE = "8G"

SSH_USER = "root"
# Slab checking on every lab kernel: a use-after-free or overflow hits a poisoned object or a
# red zone and is reported (molecule's verify fails on such a report) instead of passing silently.
SLAB_CHECKS = "slub_debug=FZPU init_on_free=1"

# Debian package providing each host tool, for the one-line "missing" error.
TOOL_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


# UEFI firmware (POOL_LAB_FIRMWARE=uefi): OVMF from Debian's ovmf package. The code is
# shared read-only; each node gets a writable copy of the variable store in its run dir.
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
FIRMWARES = ("bios", "uefi")


class LabError(Exception):
    """A failure to report as one line (plus optional detail) and exit 1."""

    def __init__(self, msg: str, detail: str = "") -> None:
        super().__init__(msg)
        self.detail = detail


# ---------------------------------------------------------------- paths


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pool-lab"


def lab_name() -> str:
    name = os.environ.get("POOL_LAB_NAME", "lab") or "lab"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name) or name.startswith("."):
        raise LabError(f"bad POOL_LAB_NAME {name!r}: use letters, digits, '-', '_', '.' (max 40)")
    return name


def run_dir(name: str | None = None) -> Path:
    return cache_root() / "run" / (name or lab_name())


def firmware_override() -> str:
    """POOL_LAB_FIRMWARE: bios (SeaBIOS) or uefi (OVMF, no Secure Boot keys) for every node;
    unset or empty: each node's firmware from topology.json (bios unless it says uefi)."""
    fw = os.environ.get("POOL_LAB_FIRMWARE", "")
    if fw and fw not in FIRMWARES:
        raise LabError(f"bad POOL_LAB_FIRMWARE {fw!r}: use {' or '.join(FIRMWARES)}")
    return fw


def node_releases(topo: Topology) -> dict[str, str]:
    """Each node's Debian release: POOL_LAB_RELEASE for all, else topology.json's; bookworm for
    all under POOL_LAB_KERNEL=debug, whose kernel is built from bookworm's source."""
    release = release_override() or (DEFAULT_RELEASE if lab_kernel() == "debug" else "")
    return {n: release or topo.release_of(n) for n in topo.nodes}


def release_override() -> str:
    """POOL_LAB_RELEASE: the Debian release of every node; unset or empty: each node's from
    topology.json (bookworm unless it says otherwise)."""
    release = os.environ.get("POOL_LAB_RELEASE", "")
    if release and release not in RELEASES:
        raise LabError(f"bad POOL_LAB_RELEASE {release!r}: use one of {', '.join(RELEASES)}")
    return release


def need_ovmf() -> None:
    """A one-line error naming the ovmf package when the UEFI firmware files are missing."""
    missing = [f for f in (OVMF_CODE, OVMF_VARS) if not os.path.isfile(f)]
    if missing:
        raise LabError(
            f"POOL_LAB_FIRMWARE=uefi needs {', '.join(missing)}: install the Debian package ovmf (apt-get install ovmf)"
        )


def efivars_path(n: Node) -> str:
    """The node's writable UEFI variable store, next to its overlay in the run dir."""
    return str(Path(n.overlay).with_name(f"{n.name}.efivars.fd"))


def need(tool: str) -> str:
    """Path of a host tool, or a one-line error naming the Debian package."""
    path = shutil.which(tool)
    if path is None:
        # /usr/sbin is not always on a user's PATH.
        for d in ("/usr/sbin", "/sbin"):
            if os.access(f"{d}/{tool}", os.X_OK):
                return f"{d}/{tool}"
        pkg = TOOL_PACKAGES.get(tool, tool)
        raise LabError(f"{tool} not found: install the Debian package {pkg} (apt-get install {pkg})")
    return path


def atomic_write(path: Path, data: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ---------------------------------------------------------------- topology


@dataclass(frozen=True)
class LinkSpec:
    name: str
    interface: str
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    """topology.json: the nodes (in order), the private links joining them, and the ranges
    that every node routes nowhere (so only a shared link reaches another node)."""

    nodes: tuple[str, ...]
    firmware: dict[str, str]
    links: tuple[LinkSpec, ...]
    unreachable4: ipaddress.IPv4Network
    unreachable6: ipaddress.IPv6Network
    release: dict[str, str] = field(default_factory=dict)  # node -> Debian release (default bookworm)

    def subset(self, count: int) -> Topology:
        """The first `count` nodes and the links that still join two of them."""
        if not 1 <= count <= len(self.nodes):
            raise LabError(
                f"bad --count {count}: topology.json declares {len(self.nodes)} nodes, use 1..{len(self.nodes)}"
            )
        names = self.nodes[:count]
        links = []
        for link in self.links:
            members = tuple(n for n in link.nodes if n in names)
            if len(members) >= 2:
                links.append(LinkSpec(link.name, link.interface, link.ipv4, link.ipv6, members))
        return Topology(
            names,
            {n: self.firmware[n] for n in names},
            tuple(links),
            self.unreachable4,
            self.unreachable6,
            {n: self.release_of(n) for n in names},
        )

    def release_of(self, node: str) -> str:
        return self.release.get(node, DEFAULT_RELEASE)

    def host_number(self, node: str) -> int:
        return 10 + self.nodes.index(node) + 1

    def ipv4(self, link: LinkSpec, node: str) -> str:
        return str(link.ipv4[self.host_number(node)])

    def ipv6(self, link: LinkSpec, node: str) -> str:
        # The same digits as the IPv4 host part (node2: .12 and ::12), easier to read side by side.
        return str(link.ipv6[int(str(self.host_number(node)), 16)])

    def links_of(self, node: str) -> list[LinkSpec]:
        return [link for link in self.links if node in link.nodes]


def load_topology(path: Path = TOPOLOGY) -> Topology:
    """Read and check topology.json; any mistake is one line naming the file and the field."""

    def bad(what: str) -> LabError:
        return LabError(f"{path}: {what}")

    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise bad(f"cannot read: {e.strerror}") from None
    except ValueError as e:
        raise bad(f"not JSON: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict) or not raw["nodes"]:
        raise bad("'nodes' must be an object naming at least one node")
    nodes = tuple(raw["nodes"])
    firmware: dict[str, str] = {}
    release: dict[str, str] = {}
    for name, spec in raw["nodes"].items():
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise bad(f"node name {name!r}: use lower-case letters, digits and '-'")
        if not isinstance(spec, dict) or set(spec) - {"firmware", "release"}:
            raise bad(f"nodes.{name}: only 'firmware' and 'release' may be set")
        firmware[name] = spec.get("firmware", "bios")
        if firmware[name] not in FIRMWARES:
            raise bad(f"nodes.{name}.firmware {firmware[name]!r}: use {' or '.join(FIRMWARES)}")
        release[name] = spec.get("release", DEFAULT_RELEASE)
        if release[name] not in RELEASES:
            raise bad(f"nodes.{name}.release {release[name]!r}: use one of {', '.join(RELEASES)}")
    try:
        unreachable4 = ipaddress.IPv4Network(raw["unreachable"]["ipv4"])
        unreachable6 = ipaddress.IPv6Network(raw["unreachable"]["ipv6"])
    except (KeyError, TypeError, ValueError) as e:
        raise bad(f"'unreachable' needs an IPv4 and an IPv6 network ({e})") from None
    links = []
    interfaces: set[str] = set()
    for name, spec in (raw.get("links") or {}).items():
        try:
            link = LinkSpec(
                name,
                spec["interface"],
                ipaddress.IPv4Network(spec["ipv4"]),
                ipaddress.IPv6Network(spec["ipv6"]),
                tuple(spec["nodes"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"links.{name}: needs interface, ipv4, ipv6 and nodes ({e})") from None
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,14}", link.interface) or link.interface in interfaces:
            raise bad(f"links.{name}.interface {link.interface!r}: a distinct name of at most 15 characters")
        interfaces.add(link.interface)
        unknown = [n for n in link.nodes if n not in nodes]
        if unknown or len(set(link.nodes)) != len(link.nodes) or len(link.nodes) < 2:
            raise bad(f"links.{name}.nodes {list(link.nodes)}: at least two distinct declared nodes")
        if not (link.ipv4.subnet_of(unreachable4) and link.ipv6.subnet_of(unreachable6)):
            raise bad(f"links.{name}: its networks must lie inside 'unreachable'")
        if link.ipv4.num_addresses < 10 + len(nodes) + 2:
            raise bad(f"links.{name}.ipv4 {link.ipv4} is too small for {len(nodes)} nodes")
        links.append(link)
    return Topology(nodes, firmware, tuple(links), unreachable4, unreachable6, release)


# ---------------------------------------------------------------- image


def recipe_hash(packages: Iterable[str], script: str, release: str = DEFAULT_RELEASE) -> str:
    """sha256 over everything that defines the image's content."""
    recipe = {
        "version": RECIPE_VERSION,
        "suites": list(release_suites(release)),
        "packages": sorted(set(packages)),
        "script": script,
        "disk": DISK_SIZE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


# POOL_LAB_KERNEL=debug: the image runs the debug kernel `make debug-kernel` built
# (scripts/build-debug-kernel.sh: KASAN, lockdep, kmemleak) instead of Debian's.
KERNELS = ("debian", "debug")
DEBIAN_KERNEL_PACKAGES = ("linux-image-amd64", "linux-headers-amd64")


def lab_kernel() -> str:
    kernel = os.environ.get("POOL_LAB_KERNEL", "debian") or "debian"
    if kernel not in KERNELS:
        raise LabError(f"bad POOL_LAB_KERNEL {kernel!r}: use one of {', '.join(KERNELS)}")
    return kernel


def debug_kernel_debs() -> list[str]:
    """The newest debug kernel build's image and headers packages (absolute paths)."""
    builds = sorted(
        (p.parent for p in (cache_root() / "debug-kernel").glob("*/manifest.json")),
        key=lambda d: (d / "manifest.json").stat().st_mtime,
    )
    if not builds:
        raise LabError("POOL_LAB_KERNEL=debug, but no debug kernel is built: run `make debug-kernel` first")
    debs = sorted(str(p) for p in builds[-1].glob("linux-*.deb"))
    if len(debs) != 2:
        raise LabError(f"debug kernel build {builds[-1]} holds {len(debs)} packages, expected image and headers")
    return debs


def image_packages() -> list[str]:
    if lab_kernel() == "debian":
        return list(PACKAGES)
    return [p for p in PACKAGES if p not in DEBIAN_KERNEL_PACKAGES] + debug_kernel_debs()


def current_recipe_hash(release: str = DEFAULT_RELEASE) -> str:
    return recipe_hash(image_packages(), CUSTOMIZE.read_text(), release)


def image_dir(digest: str | None = None, release: str = DEFAULT_RELEASE) -> Path:
    return cache_root() / "images" / (digest or current_recipe_hash(release))


def parse_sources(texts: Iterable[str]) -> dict[str, str]:
    """Debian and security mirror URIs from apt sources (one-line or deb822)."""
    found: dict[str, str] = {}

    def note(uri: str, suites: list[str]) -> None:
        uri = uri.rstrip("/")
        for s in suites:
            if s == f"{HOST_SUITE}-security" or s.startswith(f"{HOST_SUITE}/updates"):
                found.setdefault("security", uri)
            elif s in (HOST_SUITE, f"{HOST_SUITE}-updates"):
                found.setdefault("debian", uri)

    for text in texts:
        if re.search(r"^\s*URIs:", text, re.M | re.I):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                    if m:
                        fields[m.group(1).lower()] = m.group(2).strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    note(uri, fields.get("suites", "").split())
        else:
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    note(line[1], [line[2]])
    return found


def host_mirrors() -> tuple[str, str]:
    """The host's apt mirrors for bookworm (and security), with Debian's defaults."""
    override = os.environ.get("POOL_LAB_MIRROR")
    sec_override = os.environ.get("POOL_LAB_SECURITY_MIRROR")
    texts = []
    paths = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        paths += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for p in paths:
        with contextlib.suppress(OSError):
            texts.append(p.read_text())
    found = parse_sources(texts)
    debian = override or found.get("debian", "http://deb.debian.org/debian")
    security = sec_override or found.get("security", "http://deb.debian.org/debian-security")
    return debian, security


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def image_ready(d: Path) -> bool:
    return (
        all((d / n).is_file() for n in ("disk.qcow2", "vmlinuz", "initrd.img", "manifest.json"))
        and (d / "buildroot" / "etc" / "debian_version").is_file()
    )


# What a node needs only to build kernel modules: the image's tree keeps none of it (nodes install
# pool.ko as a package built elsewhere, the fleet way); the build root beside the disk keeps all.
TOOLCHAIN = re.compile(r"^(build-essential|dkms|make|(gcc|g\+\+|cpp)(-[0-9]+)?|linux-(headers|kbuild)-.+)$")


def strip_toolchain(root: Path, log: Path) -> list[str]:
    """Purge the compiler, DKMS and the kernel headers from the tree ``root`` (with what only they
    needed); returns the packages purged."""
    chroot = [need("chroot"), str(root)]
    listed = subprocess.run(
        [*chroot, "dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True, text=True, check=True
    ).stdout.split()
    doomed = sorted(p for p in listed if TOOLCHAIN.match(p))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = root / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    try:
        with open(log, "a") as lf:
            rc = subprocess.run(
                [*chroot, "apt-get", "purge", "-y", "--autoremove", *doomed],
                stdout=lf,
                stderr=subprocess.STDOUT,
                env=env,
            ).returncode
    finally:
        subprocess.run(["umount", str(proc)], check=False)
    if rc != 0:
        raise LabError(f"purging the toolchain from the image failed (exit {rc})", tail(log, 30))
    left = subprocess.run([*chroot, "dpkg", "-s", "gcc"], capture_output=True).returncode
    if left == 0:
        raise LabError("the image still has gcc after the toolchain was purged", tail(log, 30))
    return doomed


def build_image(force: bool = False, quiet: bool = False, release: str = DEFAULT_RELEASE) -> Path:
    """Build the base image of a Debian release unless the one for the current recipe is cached."""
    if release not in RELEASES:
        raise LabError(f"bad release {release!r}: use one of {', '.join(RELEASES)}")
    if release != DEFAULT_RELEASE and lab_kernel() == "debug":
        raise LabError(f"POOL_LAB_KERNEL=debug is {DEFAULT_RELEASE}'s kernel: it cannot boot a {release} image")
    digest = current_recipe_hash(release)
    final = image_dir(digest)
    packages = image_packages()
    if image_ready(final) and not force:
        return final
    mmdebstrap = need("mmdebstrap")
    mkfs = need("mkfs.ext4")
    qemu_img = need("qemu-img")
    if os.geteuid() != 0:
        # mmdebstrap --mode=root: build as root through sudo, into this user's cache.
        sudo = shutil.which("sudo")
        if sudo is None:
            raise LabError("building the lab image needs root (mmdebstrap --mode=root): run `image` as root")
        print("pool_lab: building the image as root through sudo", file=sys.stderr)
        cmd = [
            sudo,
            "env",
            f"XDG_CACHE_HOME={cache_root().parent}",
            f"POOL_LAB_KERNEL={lab_kernel()}",
            sys.executable,
            str(Path(__file__).resolve()),
        ]
        argv = [*cmd, "image", "--release", release, *(["--force"] if force else [])]
        if subprocess.run(argv).returncode != 0 or not image_ready(final):
            raise LabError("building the lab image through sudo failed (see above)")
        return final
    with locked(final.parent / f".{digest}.lock"):
        if image_ready(final) and not force:
            return final  # another process built it meanwhile
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{digest[:12]}-", dir=final.parent))
        try:
            root = work / "root"
            debian, security = host_mirrors()
            suite, updates, security_suite, backports = release_suites(release)
            mirrors = [
                f"deb {debian} {suite} main",
                f"deb {debian} {updates} main",
                f"deb {security} {security_suite} main",
                f"deb {debian} {backports} main",
            ]
            cmd = [
                mmdebstrap,
                "--mode=root",
                "--variant=apt",
                "--format=directory",
                "--include=" + ",".join(p for p in packages if not p.startswith("/")),
                # local .deb files (the debug kernel): installed with dpkg inside the tree
                # before the lab's own customisation, which then sees their kernel
                *(f"--customize-hook=copy-in {p} /tmp" for p in packages if p.startswith("/")),
                *(
                    [
                        '--customize-hook=chroot "$1" sh -c "dpkg -i /tmp/*.deb && rm -f /tmp/*.deb"',
                    ]
                    if any(p.startswith("/") for p in packages)
                    else []
                ),
                '--aptopt=Acquire::Check-Valid-Until "false"',
                '--aptopt=APT::Install-Recommends "false"',
                f"--customize-hook=copy-in {CUSTOMIZE} /tmp",
                f'--customize-hook=chroot "$1" sh /tmp/{CUSTOMIZE.name}',
                f'--customize-hook=rm -f "$1/tmp/{CUSTOMIZE.name}"',
                suite,
                str(root),
                *mirrors,
            ]
            log = work / "mmdebstrap.log"
            if not quiet:
                print(f"pool_lab: building image {digest[:12]} (mmdebstrap, log {log})", file=sys.stderr)
            with open(log, "w") as lf:
                rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise LabError(f"mmdebstrap failed (exit {rc})", tail(log, 30))
            kvers = sorted(p.name for p in (root / "lib/modules").iterdir())
            if len(kvers) != 1:
                raise LabError(f"image has {len(kvers)} kernels ({kvers}), expected one")
            kver = kvers[0]
            # The build root: the tree as mmdebstrap made it, the headers of exactly this kernel
            # included; then the disk's tree loses the toolchain.
            subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(work / "buildroot")], check=True)
            purged = strip_toolchain(root, log)
            shutil.copy2(root / "boot" / f"vmlinuz-{kver}", work / "vmlinuz")
            shutil.copy2(root / "boot" / f"initrd.img-{kver}", work / "initrd.img")
            raw = work / "disk.raw"
            subprocess.run(
                [mkfs, "-q", "-F", "-L", "poolroot", "-d", str(root), str(raw), DISK_SIZE],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            shutil.rmtree(root)
            subprocess.run(
                [qemu_img, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
                check=True,
            )
            raw.unlink()
            manifest = {
                "recipe": digest,
                "release": release,
                "kernel": kver,
                "packages": packages,
                "purged_into_buildroot": purged,
                "mirrors": mirrors,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(time.monotonic() - t0, 1),
            }
            atomic_write(work / "manifest.json", json.dumps(manifest, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.chmod(work, 0o755)
            os.rename(work, final)
        except subprocess.CalledProcessError as e:
            raise LabError(f"image build step failed: {' '.join(map(str, e.cmd))} (exit {e.returncode})") from e
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        if not quiet:
            print(
                f"pool_lab: image {digest[:12]} built in {manifest['build_seconds']} s (kernel {kver})",
                file=sys.stderr,
            )
    return final


# ---------------------------------------------------------------- helpers


def tail(path: Path, n: int = 50) -> str:
    """Last n lines of a (console) log, tolerant of binary garbage."""
    try:
        data = path.read_bytes()
    except OSError:
        return f"(no console log at {path})"
    lines = data.decode("utf-8", "replace").replace("\r", "").splitlines()
    if not lines:
        return f"({path} is empty: the guest has not printed anything yet)"
    return "\n".join(lines[-n:])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = 0, avoid: Iterable[int] = (), host: str = "127.0.0.1") -> int:
    """The preferred port if it can be bound, else a free one the kernel picks."""
    avoid = set(avoid)
    if preferred and preferred not in avoid and port_free(preferred, host):
        return preferred
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise LabError("no free TCP port on 127.0.0.1")


def mcast_group(name: str) -> str:
    """A multicast group and port per lab and link (name "lab:link"), so that no two share a segment."""
    h = hashlib.sha256(f"{os.getuid()}:{name}".encode()).digest()
    return f"239.253.{h[0]}.{h[1] or 1}:{20000 + int.from_bytes(h[2:4], 'big') % 20000}"


def kvm_works(kernel: Path, qemu: str, timeout: float = 15.0) -> bool:
    """True only if a KVM guest really runs: boot the kernel to its root-fs panic."""
    if os.environ.get("POOL_LAB_ACCEL") in ("tcg", "kvm"):
        return os.environ["POOL_LAB_ACCEL"] == "kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="pool-lab-kvm-") as td:
        log = Path(td) / "serial.log"
        cmd = [
            qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1 root=/dev/pool-lab-none",
            "-serial", f"file:{log}",
        ]  # fmt: skip
        try:
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return False
        text = log.read_text(errors="replace") if log.exists() else ""
        return rc == 0 and "Kernel panic" in text


# ---------------------------------------------------------------- state


@dataclass
class Node:
    index: int
    name: str
    port: int
    umac: str
    overlay: str
    console: str
    pidfile: str
    monitor: str
    firmware: str = "bios"
    release: str = DEFAULT_RELEASE
    image: str = ""  # the image folder its overlay and kernel come from
    kernel: str = ""
    # One entry per private link, in topology order: link, interface, mac, ipv4, ipv6, prefix4, prefix6.
    links: list[dict] = field(default_factory=list)
    # The nodes sharing a link with this one: name -> link, interface, ipv4, ipv6 (their address there).
    neighbours: dict[str, dict] = field(default_factory=dict)
    pid: int = 0
    host: str = "127.0.0.1"  # where SSH answers: QEMU's forward on the loopback, or a Vagrant VM's address
    # The controller as the node reaches it, and where a service on the controller listens for
    # that: QEMU's user-mode network maps its gateway, 10.0.2.2, to the controller's loopback; on
    # Vagrant it is the controller's address on the node's libvirt network.
    controller_address: str = "10.0.2.2"
    controller_listen: str = "127.0.0.1"

    @property
    def ipv4(self) -> str:
        """The address on the node's first link (empty on a node without links)."""
        return self.links[0]["ipv4"] if self.links else ""

    @property
    def ipv6(self) -> str:
        return self.links[0]["ipv6"] if self.links else ""


@dataclass
class State:
    name: str
    count: int
    accel: str
    image: str
    kernel: str
    mcast: dict[str, str]  # link -> multicast group:port of its QEMU socket network
    inventory: str = ""
    ready: bool = False  # every VM answered SSH
    firmware: str = ""  # POOL_LAB_FIRMWARE when the lab was booted ("": each node's from topology.json)
    nodes: list[Node] = field(default_factory=list)
    provider: str = "qemu"  # or "vagrant" (molecule/lab/vagrant_lab.py)

    @classmethod
    def load(cls, rd: Path) -> State | None:
        try:
            raw = json.loads((rd / "state.json").read_text())
            raw["nodes"] = [Node(**n) for n in raw.get("nodes", [])]
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            # Missing, or written by an older pool_lab.py: `down` still finds the lab's qemu
            # processes by their run dir.
            return None

    def save(self, rd: Path) -> None:
        atomic_write(rd / "state.json", json.dumps(asdict(self), indent=2) + "\n")


def make_node(rd: Path, topo: Topology, name: str, port: int, firmware: str = "", release: str = "") -> Node:
    """A node of the topology: its NIC on each of its links, and its neighbours' addresses there."""
    i = topo.nodes.index(name) + 1
    host = topo.host_number(name)
    links = []
    neighbours: dict[str, dict] = {}
    for li, link in enumerate(topo.links):
        if name not in link.nodes:
            continue
        links.append(
            {
                "link": link.name,
                "interface": link.interface,
                "mac": f"52:54:00:fd:{li + 1:02x}:{host:02x}",
                "ipv4": topo.ipv4(link, name),
                "ipv6": topo.ipv6(link, name),
                "prefix4": link.ipv4.prefixlen,
                "prefix6": link.ipv6.prefixlen,
            }
        )
        for other in link.nodes:
            if other != name and other not in neighbours:
                neighbours[other] = {
                    "link": link.name,
                    "interface": link.interface,
                    "ipv4": topo.ipv4(link, other),
                    "ipv6": topo.ipv6(link, other),
                }
    return Node(
        index=i,
        name=name,
        port=port,
        umac=f"52:54:00:00:00:{i:02x}",
        overlay=str(rd / f"{name}.qcow2"),
        console=str(rd / f"{name}.console.log"),
        pidfile=str(rd / f"{name}.pid"),
        monitor=str(rd / f"{name}.monitor"),
        firmware=firmware or topo.firmware[name],
        release=release or topo.release_of(name),
        links=links,
        neighbours=neighbours,
    )


def lab_processes(rd: Path) -> list[int]:
    """Pids of qemu processes started for this lab (found by their run dir in argv)."""
    marker = str(rd) + "/"
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and any(marker.encode() in a for a in argv):
            pids.append(int(p.name))
    return pids


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------- inventory


def q(s: object) -> str:
    """A YAML scalar: JSON strings are valid YAML."""
    return json.dumps(s) if isinstance(s, str) else str(s)


LAB_RELAY = "node2"
LAB_RELAYED = ("node1", "node3")
LAB_EXPORTER_PORT = 9254
LAB_VAULT = "node2"
LAB_BRIDGE_SERVER, LAB_BRIDGE_CLIENT = "node2", "node1"
LAB_WEB_PORT, LAB_BRIDGE_PORT = 8080, 8081
LAB_VAULT_PEERS = [
    {"name": "node1", "scope": "read-write"},
    {"name": "node3", "scope": "read", "prefix": "shared"},
]


def render_inventory(st: State, rd: Path) -> str:
    key = rd / "id_ed25519"
    known = rd / "known_hosts"
    ssh_args = (
        f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
        "-o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPersist=60s"
    )
    lines = [
        f"# Generated by molecule/lab/pool_lab.py for lab {st.name!r}; rewritten by every `up`.",
        "all:",
        "  children:",
        "    pool_nodes:",
        "      hosts:",
    ]
    for n in st.nodes:
        links = {lk["link"]: {k: lk[k] for k in ("interface", "ipv4", "ipv6")} for lk in n.links}
        lines += [
            f"        {n.name}:",
            f"          ansible_host: {q(n.host)}",
            f"          ansible_port: {n.port}",
            f"          ansible_user: {SSH_USER}",
            f"          ansible_ssh_private_key_file: {q(str(key))}",
            f"          ansible_ssh_common_args: {q(ssh_args)}",
            "          ansible_python_interpreter: /usr/bin/python3",
            # The address on the node's first link: where its peers reach it by default.
            f"          pool_lab_ipv4: {q(n.ipv4)}",
            f"          pool_lab_ipv6: {q(n.ipv6)}",
            f"          pool_lab_interface: {q(n.links[0]['interface'] if n.links else '')}",
            f"          pool_lab_firmware: {q(n.firmware)}",
            f"          pool_lab_release: {q(n.release)}",
            f"          pool_lab_links: {json.dumps(links)}",
            f"          pool_lab_neighbours: {json.dumps(n.neighbours)}",
            f"          pool_lab_controller_address: {q(n.controller_address)}",
            f"          pool_lab_controller_listen: {q(n.controller_listen)}",
            # Each node trusts and connects to the nodes it shares a link with, at their
            # address on that link (role pool.ops.node and pool.ops.config).
            f"          pool_node_peers: {json.dumps(sorted(n.neighbours))}",
            f"          pool_node_peer_addresses: {json.dumps({p: v['ipv4'] for p, v in n.neighbours.items()})}",
        ]
    # The shared lab's vault (role pool.ops.vault, docs/vault.md): node2 serves, both others
    # reach it directly; node1 reads and writes, node3 reads what is under shared/.
    names = {n.name for n in st.nodes}
    grants = [g for g in LAB_VAULT_PEERS if g["name"] in names]
    if LAB_VAULT in names and grants:
        lines += ["    pool_vaults:", "      hosts:", f"        {LAB_VAULT}:", "          pool_vault_peers:"]
        lines += [f"            - {json.dumps(g)}" for g in grants]
    # The shared lab's relay (role pool.ops.relay, docs/relay.md): node1 and node3 have no link
    # in common and reach each other through node2, which relays for both; each accepts node2.
    if {LAB_RELAY, *LAB_RELAYED} <= names:
        a, c = LAB_RELAYED
        lines += ["    pool_relays:", "      hosts:"]
        for host, far in ((a, c), (c, a)):
            lines += [
                f"        {host}:",
                f"          pool_node_relayed_peers: {json.dumps({far: [LAB_RELAY]})}",
                f"          pool_relay_peers: {json.dumps([{'name': LAB_RELAY, 'accept': True}])}",
            ]
        lines += [
            f"        {LAB_RELAY}:",
            "          pool_relay_enabled: true",
            f"          pool_relay_peers: {json.dumps([{'name': a}, {'name': c}])}",
        ]
    # The shared lab's TCP bridge (role pool.ops.bridge, docs/bridge.md): node2 offers "web"
    # (a server molecule/default/tests/test_bridge.py starts on 127.0.0.1:8080) to node1, which
    # forwards 127.0.0.1:8081 to it.
    if {LAB_BRIDGE_SERVER, LAB_BRIDGE_CLIENT} <= names:
        lines += [
            "    pool_bridges:",
            "      hosts:",
            f"        {LAB_BRIDGE_SERVER}:",
            f"          pool_bridge_services: {json.dumps([{'name': 'web', 'connect': f'127.0.0.1:{LAB_WEB_PORT}'}])}",
            f"          pool_bridge_allow: {json.dumps([LAB_BRIDGE_CLIENT])}",
            f"        {LAB_BRIDGE_CLIENT}:",
            f"          pool_bridge_forwards: {json.dumps([{'listen': f'127.0.0.1:{LAB_BRIDGE_PORT}', 'peer': LAB_BRIDGE_SERVER, 'service': 'web'}])}",
        ]
    # Every node serves its metrics on its first link's address, where a Prometheus on the
    # lab's links scrapes it (role pool.ops.exporter, docs/exporter.md).
    lines += ["    pool_exporters:", "      hosts:", *[f"        {n.name}:" for n in st.nodes]]
    lines += ["      vars:", f"        pool_exporter_listen: {q('{{ pool_lab_ipv4 }}:' + str(LAB_EXPORTER_PORT))}"]
    lines += [
        "  vars:",
        f"    pool_lab_name: {q(st.name)}",
        f"    pool_lab_run_dir: {q(str(rd))}",
        # The lab's fleet signing key and module packages (role pool.ops.kmod builds on the
        # controller): in the lab's own folder, not in the user's home where a fleet's would be.
        f"    pool_kmod_builder_signing_dir: {q(str(rd / 'fleet-signing'))}",
        f"    pool_kmod_builder_package_dir: {q(str(rd / 'packages'))}",
        # Each release's kernels build on the controller in the build root made with its image
        # (the image's own headers and compiler), which needs root: the nodes have no compiler.
        f"    pool_kmod_builders: {json.dumps(lab_builders(st))}",
        # Direct kernel boot: a reboot into a new kernel goes through kexec (kernel_upgrade.yml).
        "    pool_upgrade_kexec: true",
    ]
    return "\n".join(lines) + "\n"


def lab_builders(st: State) -> dict[str, dict[str, Any]]:
    """pool_kmod_builders of a lab: per release its nodes run, the controller in that image's build root."""
    return {
        n.release: {"host": "localhost", "become": os.geteuid() != 0, "buildroot": str(Path(n.image) / "buildroot")}
        for n in sorted(st.nodes, key=lambda n: n.release)
    }


# ---------------------------------------------------------------- ssh


def ssh_base(rd: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    return [
        need("ssh"), "-i", str(rd / "id_ed25519"), "-p", str(port),
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={rd / 'known_hosts'}", "-o", "StrictHostKeyChecking=accept-new",
        "-o", "LogLevel=ERROR", f"{SSH_USER}@{host}",
    ]  # fmt: skip


def ssh_node(name: str, command: list[str]) -> int:
    """`pool_lab.py ssh NODE CMD...`: CMD on the VM as root (a shell without one)."""
    rd = run_dir()
    st = State.load(rd)
    if st is None:
        raise LabError(f"lab {lab_name()!r} is not up: run up first")
    found = [n for n in st.nodes if n.name == name]
    if not found:
        raise LabError(f"lab {lab_name()!r} has no node {name!r} ({', '.join(n.name for n in st.nodes)})")
    if command[:1] == ["--"]:
        command = command[1:]
    return subprocess.run([*ssh_base(rd, found[0].port, found[0].host), *command]).returncode


def ssh_answers(rd: Path, node: Node) -> bool:
    try:
        r = subprocess.run(
            [*ssh_base(rd, node.port, node.host), "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def wait_for_ssh(
    nodes: list[Node],
    timeout: float,
    answers: Callable[[Node], bool],
    alive: Callable[[Node], bool],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until every node answers SSH; on timeout or death, fail with its console tail."""
    deadline = clock() + timeout
    pending = list(nodes)
    while pending:
        for n in list(pending):
            if not alive(n):
                raise LabError(
                    f"{n.name}: qemu exited before SSH answered; last 50 lines of {n.console}:",
                    tail(Path(n.console), 50),
                )
            if answers(n):
                pending.remove(n)
        if not pending:
            return
        if clock() >= deadline:
            n = pending[0]
            raise LabError(
                f"{n.name}: no SSH answer on {n.host}:{n.port} within {timeout:.0f} s; last 50 lines of {n.console}:",
                tail(Path(n.console), 50),
            )
        sleep(2)


# ---------------------------------------------------------------- up / down


def ensure_key(rd: Path) -> str:
    key = rd / "id_ed25519"
    if not (key.exists() and key.with_suffix(".pub").exists()):
        for p in (key, key.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        subprocess.run(
            [need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", f"pool-lab-{rd.name}", "-f", str(key)],
            check=True,
        )
    return key.with_suffix(".pub").read_text().strip()


# The CPU model under TCG (no KVM). "max" is the default.
# Without KVM: every feature QEMU can emulate, except those it emulates slowly. TCG runs
# `rep movsb`/`rep stosb` one byte per iteration, so with ERMS/FSRM the kernel's page clearing
# and user copies (and glibc's large memcpy) crawl: at boot with init_on_free=1 a VM spent 42 s
# clearing its free memory, long enough for a soft-lockup report. AVX/AVX2 instructions go
# through helpers: ChaCha20-Poly1305 ran at 19 MB/s with them and 62 MB/s without (openssl
# speed in a lab VM; /dev/zero to /dev/null 3.4 times faster without ERMS).
TCG_CPU = "max,-erms,-fsrm,-avx,-avx2,-avx512f,-avx512vl,-avx512bw"


def kernel_command_line(n: Node, pubkey: str, topo: Topology, mgmt: str = "") -> str:
    """The kernel's command line: the node's settings for pool-lab-setup (customize.sh), which
    configures the shared image at boot. mgmt="dhcp": the management NIC asks DHCP for its address
    (Vagrant's libvirt network) instead of taking QEMU user-mode networking's fixed one."""
    # Only the neighbours go into /etc/hosts: a node without a shared link has no address to name.
    hosts = ",".join(f"{m}={v['ipv4']}={v['ipv6']}" for m, v in n.neighbours.items())
    links = ",".join(
        f"{lk['interface']}={lk['mac']}={lk['ipv4']}/{lk['prefix4']}={lk['ipv6']}/{lk['prefix6']}" for lk in n.links
    )
    return " ".join(
        [
            "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 panic=10",
            SLAB_CHECKS,
            f"pool_lab.hostname={n.name}",
            f"pool_lab.umac={n.umac}",
            f"pool_lab.links={links}",
            f"pool_lab.unreachable={topo.unreachable4}={topo.unreachable6}",
            f"pool_lab.hosts={hosts}",
            "pool_lab.key=" + base64.b64encode(pubkey.encode()).decode(),
            *([f"pool_lab.mgmt={mgmt}"] if mgmt else []),
        ]
    )


def qemu_command(
    qemu: str, st: State, n: Node, img: Path, pubkey: str, memory: int, cpus: int, topo: Topology
) -> list[str]:
    append = kernel_command_line(n, pubkey, topo)
    tcg_cpu = os.environ.get("POOL_LAB_TCG_CPU", TCG_CPU)
    # Direct kernel boot stays: under OVMF, -kernel/-initrd/-append reach the firmware
    # through fw_cfg and it starts the kernel's EFI stub.
    firmware = (
        [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={efivars_path(n)}",
        ]
        if n.firmware == "uefi"
        else []
    )  # fmt: skip
    accel = ["-accel", "kvm", "-cpu", "host"] if st.accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", tcg_cpu]
    private = []
    for j, lk in enumerate(n.links):
        private += [
            "-netdev", f"socket,id=p{j},mcast={st.mcast[lk['link']]},localaddr=127.0.0.1",
            "-device", f"virtio-net-pci,netdev=p{j},mac={lk['mac']}",
        ]  # fmt: skip
    return [
        qemu, "-name", f"pool-lab-{st.name}-{n.name}", "-machine", "q35", *accel, *firmware,
        "-m", str(memory), "-smp", str(cpus),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.img"), "-append", append,
        "-drive", f"file={n.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-netdev", f"user,id=u0,hostfwd=tcp:127.0.0.1:{n.port}-:22",
        "-device", f"virtio-net-pci,netdev=u0,mac={n.umac}",
        *private,
        "-device", "virtio-rng-pci",
        "-serial", f"file:{n.console}",
        "-qmp", f"unix:{n.monitor},server=on,wait=off",
        "-pidfile", n.pidfile, "-daemonize",
    ]  # fmt: skip


def up(count: int | None, memory: int, cpus: int, timeout: float, inventory: Path, port_base: int = 0) -> State:
    full = load_topology()
    topo = full.subset(len(full.nodes) if count is None else count)
    count = len(topo.nodes)
    name = lab_name()
    rd = run_dir(name)
    qemu = need("qemu-system-x86_64")
    qemu_img = need("qemu-img")
    need("ssh")
    firmware = firmware_override()
    if "uefi" in ([firmware] if firmware else topo.firmware.values()):
        need_ovmf()
    releases = node_releases(topo)
    old = State.load(rd)
    if (
        old
        and old.count == count
        and old.firmware == firmware
        and all(n.release == releases[n.name] for n in old.nodes)
        and old.nodes
        and all(pid_alive(n.pid) for n in old.nodes)
        and all(ssh_answers(rd, n) for n in old.nodes)
    ):
        write_inventory(old, rd, inventory)
        print(f"pool_lab: lab {name!r} already up ({count} VMs)", file=sys.stderr)
        return old
    down(quiet=True)
    # One image per release the nodes run; the default release's first, as before.
    images = {r: build_image(release=r) for r in sorted(set(releases.values()), key=lambda r: r != DEFAULT_RELEASE)}
    kernels = {r: json.loads((d / "manifest.json").read_text())["kernel"] for r, d in images.items()}
    img = images[releases[topo.nodes[0]]]
    rd.mkdir(parents=True, exist_ok=True)
    os.chmod(rd, 0o700)
    pubkey = ensure_key(rd)
    with contextlib.suppress(FileNotFoundError):
        (rd / "known_hosts").unlink()
    accel = "kvm" if kvm_works(img / "vmlinuz", qemu) else "tcg"
    st = State(
        name=name,
        count=count,
        accel=accel,
        image=str(img),
        kernel=kernels[releases[topo.nodes[0]]],
        mcast={link.name: mcast_group(f"{name}:{link.name}") for link in topo.links},
        inventory=str(inventory),
        firmware=firmware,
    )
    used: list[int] = []
    for i, node_name in enumerate(topo.nodes, 1):
        port = free_port(port_base + i if port_base else 0, used)
        used.append(port)
        n = make_node(rd, topo, node_name, port, firmware, releases[node_name])
        n.image, n.kernel = str(images[n.release]), kernels[n.release]
        st.nodes.append(n)
    st.save(rd)
    t0 = time.monotonic()
    try:
        for n in st.nodes:
            subprocess.run(
                [
                    qemu_img,
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "qcow2",
                    "-b",
                    str(Path(n.image) / "disk.qcow2"),
                    n.overlay,
                ],
                check=True,
            )
            if n.firmware == "uefi":
                shutil.copyfile(OVMF_VARS, efivars_path(n))
            with contextlib.suppress(FileNotFoundError):
                Path(n.console).unlink()
            for attempt in range(5):
                r = subprocess.run(
                    qemu_command(qemu, st, n, Path(n.image), pubkey, memory, cpus, topo),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                )
                if r.returncode == 0:
                    break
                msg = (r.stderr or r.stdout).strip().splitlines()
                if attempt < 4 and any("hostfwd" in m or "forwarding rule" in m for m in msg):
                    # The port was taken between our check and qemu's bind: pick another.
                    n.port = free_port(0, used)
                    used.append(n.port)
                    continue
                raise LabError(f"{n.name}: qemu failed to start: {msg[-1] if msg else f'exit {r.returncode}'}")
            n.pid = int(Path(n.pidfile).read_text().strip())
            st.save(rd)
        print(
            f"pool_lab: {count} VMs started ({accel}), waiting for SSH "
            f"(ports {', '.join(str(n.port) for n in st.nodes)})",
            file=sys.stderr,
        )
        wait_for_ssh(st.nodes, timeout, lambda n: ssh_answers(rd, n), lambda n: pid_alive(n.pid))
    except BaseException:
        # A failed or interrupted up leaves nothing running behind.
        with contextlib.suppress(Exception):
            down(quiet=True)
        raise
    st.ready = True
    write_inventory(st, rd, inventory)
    st.save(rd)
    print(
        f"pool_lab: lab {name!r} up: {count} VMs answer SSH after {time.monotonic() - t0:.0f} s; inventory {inventory}",
        file=sys.stderr,
    )
    return st


def write_inventory(st: State, rd: Path, inventory: Path) -> None:
    atomic_write(inventory, render_inventory(st, rd))
    if str(inventory) != st.inventory:
        st.inventory = str(inventory)
        st.save(rd)


def kill_all(pids: Iterable[int], grace: float = 5.0) -> None:
    pids = [p for p in set(pids) if pid_alive(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for p in pids:
        if pid_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    # Give init a moment to reap the (daemonized) processes, so pgrep is clean.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)


def down(quiet: bool = False) -> None:
    """Stop every qemu of this lab and remove overlays, sockets, pid files, state."""
    name = lab_name()
    rd = run_dir(name)
    if not rd.exists():
        return
    st = State.load(rd)
    if st is not None and st.provider == "vagrant":
        import vagrant_lab  # the Vagrant lab builds on this module: imported only when needed

        vagrant_lab.down(quiet)
        return
    pids = set(lab_processes(rd))
    for pf in rd.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pf.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace") if pid_alive(pid) else ""
            if str(rd) + "/" in cmdline:
                pids.add(pid)
    kill_all(pids)
    left = [p for p in lab_processes(rd) if pid_alive(p)]
    if left:
        raise LabError(f"lab {name!r}: qemu processes {left} survived SIGKILL")
    forget(rd, st)
    if not quiet:
        print(f"pool_lab: lab {name!r} down", file=sys.stderr)


def forget(rd: Path, st: State | None) -> None:
    """Remove a stopped lab's runtime files, and its inventory when the lab wrote it."""
    for pattern in ("*.qcow2", "*.efivars.fd", "*.pid", "*.monitor", "state.json", "known_hosts", ".*.tmp*"):
        for p in rd.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    if st and st.inventory:
        inv = Path(st.inventory)
        with contextlib.suppress(OSError):
            if inv.read_text().startswith("# Generated by molecule/lab/pool_lab.py"):
                inv.unlink()


# ---------------------------------------------------------------- reset


def connect_unix(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def qmp_command(
    path: str,
    command: str,
    arguments: dict[str, Any] | None = None,
    timeout: float = 10.0,
    connect: Callable[[str, float], socket.socket] = connect_unix,
) -> Any:
    """Run one command on a VM's QMP socket (QEMU's machine interface); return its "return" value.

    QMP speaks JSON, one message per line: a greeting, then capabilities negotiation, then
    commands, each answered by a reply with the command's id. Events may come between them and
    are skipped. An "error" reply raises LabError with QEMU's description.
    """
    try:
        s = connect(path, timeout)
    except OSError as e:
        raise LabError(f"cannot connect to QEMU's QMP socket {path}: {e.strerror or e}") from None
    buf = b""

    def message() -> dict[str, Any]:
        nonlocal buf
        while b"\n" not in buf:
            try:
                chunk = s.recv(4096)
            except OSError as e:  # socket.timeout is an OSError
                raise LabError(f"QMP {path}: no answer ({e.strerror or e})") from None
            if not chunk:
                raise LabError(f"QMP {path}: QEMU closed the connection")
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        try:
            doc = json.loads(line)
        except ValueError:
            raise LabError(f"QMP {path}: not JSON: {line[:80]!r}") from None
        if not isinstance(doc, dict):
            raise LabError(f"QMP {path}: not a QMP message: {line[:80]!r}")
        return doc

    def execute(name: str, args: dict[str, Any] | None, ident: str) -> Any:
        s.sendall(json.dumps({"execute": name, "arguments": args or {}, "id": ident}).encode() + b"\n")
        while True:
            doc = message()
            if doc.get("id") != ident:
                continue  # an event, or an answer to nothing of ours
            if "error" in doc:
                err = doc["error"]
                raise LabError(f"QMP {path}: {name}: {err.get('desc', err) if isinstance(err, dict) else err}")
            if "return" not in doc:
                raise LabError(f"QMP {path}: {name}: a reply without a return value: {doc}")
            return doc["return"]

    try:
        if "QMP" not in message():
            raise LabError(f"QMP {path}: no QMP greeting (is it the HMP monitor?)")
        execute("qmp_capabilities", None, "capabilities")
        return execute(command, arguments, "command")
    finally:
        s.close()


def reset(node_name: str, timeout: float) -> Node:
    """Power-cycle one VM with QEMU's system_reset (no shutdown inside the guest), wait for SSH."""
    name = lab_name()
    rd = run_dir(name)
    st = State.load(rd)
    if st is None or not st.nodes:
        raise LabError(f"lab {name!r} is not up: run up first")
    by_name = {n.name: n for n in st.nodes}
    n = by_name.get(node_name)
    if n is None:
        raise LabError(f"lab {name!r} has no VM {node_name!r} (it has {', '.join(by_name)})")
    if not pid_alive(n.pid):
        raise LabError(f"{n.name}: qemu (pid {n.pid}) is not running: run down, then up")
    t0 = time.monotonic()
    qmp_command(n.monitor, "system_reset")
    print(f"pool_lab: {n.name} reset, waiting for SSH on 127.0.0.1:{n.port}", file=sys.stderr)
    # The reset happens in qemu's main loop before it forwards any new connection, so the
    # first SSH answer below comes from the rebooted guest.
    wait_for_ssh([n], timeout, lambda m: ssh_answers(rd, m), lambda m: pid_alive(m.pid))
    print(f"pool_lab: {n.name} answers SSH {time.monotonic() - t0:.0f} s after the reset", file=sys.stderr)
    return n


def status(as_json: bool) -> int:
    name = lab_name()
    rd = run_dir(name)
    st = State.load(rd)
    stray = [p for p in lab_processes(rd)] if rd.exists() else []
    if st is None:
        out = {"name": name, "up": False, "nodes": [], "stray_pids": stray}
    else:
        nodes = [
            {"name": n.name, "pid": n.pid, "running": pid_alive(n.pid), "ssh_port": n.port,
             "ssh_host": n.host, "ipv4": n.ipv4, "ipv6": n.ipv6, "firmware": n.firmware, "release": n.release,
             "kernel": n.kernel or st.kernel, "console": n.console,
             "links": n.links, "neighbours": n.neighbours}
            for n in st.nodes
        ]  # fmt: skip
        known = {n.pid for n in st.nodes}
        out = {
            "name": name,
            "up": st.ready and bool(nodes) and all(n["running"] for n in nodes),
            "ready": st.ready,
            "accel": st.accel,
            "provider": st.provider,
            "firmware": st.firmware or "per node (topology.json)",
            "kernel": st.kernel,
            "image": st.image,
            "inventory": st.inventory,
            "nodes": nodes,
            "stray_pids": [p for p in stray if p not in known],
            # The same nodes in the format of molecule's instance_config.yml.
            "molecule_instances": [
                {
                    "instance": n.name,
                    "address": n.host,
                    "port": n.port,
                    "user": SSH_USER,
                    "identity_file": str(rd / "id_ed25519"),
                }
                for n in st.nodes
            ],
        }
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        if st is None:
            print(f"lab {name!r}: down")
        else:
            word = "up" if out["up"] else "not ready (up did not finish)" if not st.ready else "partly down"
            print(f"lab {name!r}: {word} ({out['accel']}, {out['firmware']}, kernel {out['kernel']})")
            for n in out["nodes"]:
                state = "running" if n["running"] else "stopped"
                addrs = " ".join(f"{lk['interface']} {lk['ipv4']} {lk['ipv6']}" for lk in n["links"])
                print(
                    f"  {n['name']}: {state} pid {n['pid']} ssh {n['ssh_host']}:{n['ssh_port']} {n['release']}"
                    f" {n['kernel']} {n['firmware']} {addrs}"
                )
            print(f"  inventory: {out['inventory']}")
        if out["stray_pids"]:
            print(f"  stray qemu pids: {out['stray_pids']} (run down)")
    return 0 if out["up"] else 3


# ---------------------------------------------------------------- cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pool_lab.py", description="The POOL QEMU lab.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("image", help="build the base image unless cached")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument(
        "--release",
        choices=RELEASES,
        default=os.environ.get("POOL_LAB_RELEASE") or DEFAULT_RELEASE,
        help="the Debian release (default: POOL_LAB_RELEASE, else %(default)s)",
    )
    p.add_argument("--print", action="store_true", help="only print the image directory (no build)")
    p = sub.add_parser("up", help="boot the VMs and write the inventory")
    add_up_options(p)
    p.add_argument("--ssh-port-base", type=int, default=0, help="try ports BASE+i first (default: any free)")
    sub.add_parser("down", help="stop the VMs and remove runtime state")
    p = sub.add_parser("status", help="what runs (exit 0 when up, 3 when not)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("inventory", help="rewrite the inventory of the running lab")
    p.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)
    p = sub.add_parser("reset", help="power-cycle one VM (QEMU system_reset) and wait until it answers SSH")
    p.add_argument("node", help="the VM's name (node1..nodeN)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("POOL_LAB_TIMEOUT", "900")))
    p = sub.add_parser("ssh", help="run a command on one VM as root; its exit status is this one's")
    p.add_argument("node", help="the VM's name (node1..nodeN)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command (none: a shell)")
    args = ap.parse_args(argv)

    def command() -> int:
        if args.cmd == "image":
            if args.print:
                print(image_dir(release=args.release))
            else:
                print(build_image(force=args.force, release=args.release))
        elif args.cmd == "up":
            up(args.count, args.memory, args.cpus, args.timeout, args.inventory.resolve(), args.ssh_port_base)
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            return status(args.json)
        elif args.cmd == "inventory":
            rd = run_dir()
            st = State.load(rd)
            if st is None:
                raise LabError(f"lab {lab_name()!r} is not up: run up first")
            write_inventory(st, rd, args.inventory.resolve())
            print(args.inventory.resolve())
        elif args.cmd == "reset":
            reset(args.node, args.timeout)
        elif args.cmd == "ssh":
            return ssh_node(args.node, args.command)
        return 0

    return run_command("pool_lab", command)


def add_up_options(p: argparse.ArgumentParser) -> None:
    """The options of `up` that the QEMU and the Vagrant lab share."""
    p.add_argument(
        "--count",
        type=int,
        default=int(os.environ["POOL_LAB_COUNT"]) if os.environ.get("POOL_LAB_COUNT") else None,
        help="boot the first N nodes of topology.json and the links among them (default: all)",
    )
    p.add_argument("--memory", type=int, default=int(os.environ.get("POOL_LAB_MEMORY", "2048")), help="MiB per VM")
    p.add_argument("--cpus", type=int, default=int(os.environ.get("POOL_LAB_CPUS", "2")), help="vCPUs per VM")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("POOL_LAB_TIMEOUT", "900")))
    p.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a CLI command: a LabError is one line (and its detail) and exit 1, Ctrl-C exit 130;
    SIGTERM (a CI timeout, molecule interrupted) cleans up as Ctrl-C does."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return command()
    except LabError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        if e.detail:
            print(e.detail, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
