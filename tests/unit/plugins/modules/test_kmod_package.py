"""Unit tests for pool.ops.kmod_package with faked commands: kernels, reuse of a package, pruning."""

from __future__ import annotations

import os
import re

import pytest
from ansible_collections.pool.ops.plugins.module_utils import dkms, kmod_host
from ansible_collections.pool.ops.plugins.modules import kmod_package

FACTS = dkms.parse_openssl_x509(
    "subject=\n    commonName                = pool.ops fleet module signing\n"
    "issuer=\n    commonName                = pool.ops fleet module signing\nserial=0A1B2C\n"
)


class FakeModule:
    def __init__(self, params=None, answers=None):
        self.params = dict(
            name="pool",
            src="/src.tar",
            remote_src=True,
            kernels=["6.1.0-9-amd64"],
            install_headers=False,
            buildroot=None,
            dest="/nonexistent",
            keep=2,
            signing_key=None,
            signing_cert=None,
            signing_key_content=None,
            signing_cert_content=None,
            signing_dir="/nonexistent",
            signing_cn="pool.ops fleet module signing",
        )
        self.params.update(params or {})
        self.check_mode = False
        self._diff = False
        self.answers = answers or {}
        self.calls = []

    def run_command(self, argv, data=None, environ_update=None):
        self.calls.append(list(argv))
        key = " ".join(argv)
        for prefix, answer in self.answers.items():
            if key.startswith(prefix):
                return answer
        return 0, "", ""

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/bin/" + name

    def warn(self, msg):
        pass


def builder(params=None, answers=None):
    module = FakeModule(params, answers)
    return module, kmod_package.Builder(module)


@pytest.mark.parametrize("kernel", ["running", "all", "../6.1", ""])
def test_kernels_must_be_exact_releases(kernel):
    _module, b = builder({"kernels": [kernel]})
    with pytest.raises(kmod_host.KmodError, match="kernels"):
        b.kernels()


def test_kernels_keep_their_order_without_duplicates():
    _module, b = builder({"kernels": ["6.12.1-amd64", " 6.1.0-9-amd64", "6.12.1-amd64"]})
    assert b.kernels() == ["6.12.1-amd64", "6.1.0-9-amd64"]


def test_a_package_is_reused_only_when_signed_by_the_current_certificate(tmp_path):
    deb = tmp_path / "pool-modules-6.1.0-9-amd64_0.1.0+abc_amd64.deb"
    deb.write_bytes(b"!<arch>")
    fields = "Package: pool-modules-6.1.0-9-amd64\nPool-Signer: pool.ops fleet module signing\nPool-Sig-Key: {}\n"
    for sig_key, ok in (("0A:1B:2C", True), ("FF:EE", False)):
        _module, b = builder(answers={f"/usr/bin/dpkg-deb --field {deb}": (0, fields.format(sig_key), "")})
        b.dpkg_deb = "/usr/bin/dpkg-deb"
        assert b.package_ok(str(deb), FACTS) is ok
    _module, b = builder()
    b.dpkg_deb = "/usr/bin/dpkg-deb"
    assert not b.package_ok(str(tmp_path / "missing.deb"), FACTS)
    assert not b.package_ok(str(deb), None)  # check mode before the key exists


def test_prune_keeps_the_newest_versions_of_that_kernel_only(tmp_path):
    names = [f"pool-modules-6.1.0-9-amd64_0.1.0+{v}_amd64.deb" for v in ("a", "b", "c")]
    other = tmp_path / "pool-modules-6.12.1-amd64_0.1.0+a_amd64.deb"
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    other.write_bytes(b"x")
    _module, b = builder({"keep": 2})
    current = str(tmp_path / names[2])
    b.prune(str(tmp_path), "6.1.0-9-amd64", current)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names[1], names[2], other.name])
    assert b.result["removed"] == [str(tmp_path / names[0])]


def test_keep_below_one_is_refused():
    _module, b = builder({"keep": 0})
    with pytest.raises(kmod_host.KmodError, match=re.escape("keep must be at least 1")):
        b.run()


def make_root(tmp_path):
    """A build root with a headers tree reached the way Debian's are: /lib/modules/K/build an
    absolute link to /usr/src/linux-headers-K, /lib a link to usr/lib (merged /usr)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/debian_version").write_text("13.2\n")
    (root / "usr/lib/modules/6.12.1-amd64").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    headers = root / "usr/src/linux-headers-6.12.1-amd64"
    headers.mkdir(parents=True)
    (headers / "Makefile").write_text("# headers\n")
    (root / "usr/lib/modules/6.12.1-amd64/build").symlink_to("/usr/src/linux-headers-6.12.1-amd64")
    kbuild = root / "usr/lib/linux-kbuild-6.12/scripts"
    kbuild.mkdir(parents=True)
    (kbuild / "sign-file").write_text("#!/bin/sh\n")
    (kbuild / "sign-file").chmod(0o755)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/dkms").write_text("#!/bin/sh\n")
    (root / "usr/sbin/dkms").chmod(0o755)
    (root / "tmp").mkdir()
    return root


def test_a_build_root_resolves_links_inside_itself_never_the_host(tmp_path):
    root = make_root(tmp_path)
    _module, b = builder()
    b.root, b.chroot_bin = str(root), "/usr/sbin/chroot"
    assert b.has_headers("6.12.1-amd64")
    assert not b.has_headers("6.1.0-9-amd64")
    assert b.resolve("/lib/modules/6.12.1-amd64/build/Makefile") == str(
        root / "usr/src/linux-headers-6.12.1-amd64/Makefile"
    )
    (root / "usr/src/escape").symlink_to("../../../../..")
    assert b.resolve("/usr/src/escape/etc") == str(root) + "/etc"  # ".." stops at the root
    assert b.root_bin("dkms", "dkms") == "/usr/sbin/dkms"
    with pytest.raises(kmod_host.KmodError, match="gcc not found in the build root"):
        b.root_bin("gcc", "build-essential")
    assert b.sign_file_for("6.12.1-amd64") == "/usr/lib/linux-kbuild-6.12/scripts/sign-file"


def test_a_build_root_runs_dkms_and_sign_file_inside_it(tmp_path):
    root = make_root(tmp_path)
    module, b = builder()
    b.root, b.chroot_bin, b.dkms_bin = str(root), "/usr/sbin/chroot", "/usr/sbin/dkms"
    work = b.tmpdir()
    assert work.startswith(str(root / "tmp") + "/")
    assert b.root_path(work) == "/tmp/" + os.path.basename(work)
    with pytest.raises(kmod_host.KmodError, match="outside the build root"):
        b.root_path(str(tmp_path))
    b.dkms(["build", "-m", "pool"])
    assert module.calls[-1] == ["/usr/sbin/chroot", str(root), "/usr/sbin/dkms", "build", "-m", "pool"]
    b.cleanup()
    assert not os.path.exists(work)


def test_a_build_root_must_be_a_debian_tree_entered_as_root(tmp_path, monkeypatch):
    _module, b = builder()
    with pytest.raises(kmod_host.KmodError, match="is not a folder"):
        b.enter_root(str(tmp_path / "missing"))
    with pytest.raises(kmod_host.KmodError, match="holds no Debian system"):
        b.enter_root(str(tmp_path))
    root = make_root(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(kmod_host.KmodError, match="needs root"):
        b.enter_root(str(root))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    b.enter_root(str(root) + "/")
    assert b.root == str(root) and b.result["buildroot"] == str(root)


def test_without_a_build_root_paths_and_commands_are_the_hosts():
    module, b = builder()
    assert b.resolve("/lib/modules/x/build") == "/lib/modules/x/build"
    assert b.root_path("/tmp/x") == "/tmp/x" and b.host_path("/tmp/x") == "/tmp/x"
    b.dkms_bin = "/usr/sbin/dkms"
    b.dkms(["status"])
    assert module.calls[-1] == ["/usr/sbin/dkms", "status"]
