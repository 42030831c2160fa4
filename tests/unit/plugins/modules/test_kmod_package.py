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
