"""The binary module package's names, control file and dpkg output parsing (pool.ops.kmod_package)."""

from __future__ import annotations

import pytest
from ansible_collections.pool.ops.plugins.module_utils import modpkg

KERNEL = "6.12.117+deb12-amd64"


def test_names_follow_dkms_mkbmdeb():
    assert modpkg.package_name("pool", KERNEL) == "pool-modules-6.12.117+deb12-amd64"
    assert modpkg.file_name("pool", "6.1.0-27-amd64", "0.1.0+3f2a9c0d41be", "amd64") == (
        "pool-modules-6.1.0-27-amd64_0.1.0+3f2a9c0d41be_amd64.deb"
    )
    assert modpkg.module_path("pool", KERNEL) == f"lib/modules/{KERNEL}/updates/pool.ko"


@pytest.mark.parametrize("name", ["Pool", "po_ol"])
def test_names_dpkg_refuses_are_refused(name):
    with pytest.raises(modpkg.PackageError, match="not a valid Debian package name"):
        modpkg.package_name(name, KERNEL)


@pytest.mark.parametrize("version", ["v1.0", "", "1.0 beta"])
def test_versions_dpkg_refuses_are_refused(version):
    with pytest.raises(modpkg.PackageError, match="VERSION file must start with a digit"):
        modpkg.check_version(version)


def test_kernel_release_with_a_slash_is_refused():
    with pytest.raises(modpkg.PackageError, match="not a kernel release"):
        modpkg.module_path("pool", "../../etc")


def test_control_round_trip():
    text = modpkg.render_control(
        "pool", KERNEL, "0.1.0+ab", "amd64", "pool.ops fleet\nmodule signing", "0A:1B", "ADD5EE", 263
    )
    fields = modpkg.parse_fields(text)
    assert fields["Package"] == "pool-modules-" + KERNEL
    assert fields["Pool-Signer"] == "pool.ops fleet module signing"  # one line, whatever the CN held
    info = modpkg.describe(fields, "/x.deb")
    assert (info["module"], info["kernel"], info["version"], info["sig_key"]) == ("pool", KERNEL, "0.1.0+ab", "0A:1B")


def test_describe_refuses_foreign_and_inconsistent_packages():
    with pytest.raises(modpkg.PackageError, match="no Pool-Module, Pool-Kernel field"):
        modpkg.describe({"Package": "hello", "Version": "1.0"}, "/hello.deb")
    fields = modpkg.parse_fields(modpkg.render_control("pool", KERNEL, "1.0", "amd64", "s", "k", "v", 1))
    fields["Pool-Kernel"] = "6.1.0-27-amd64"
    with pytest.raises(modpkg.PackageError, match="does not match its module"):
        modpkg.describe(fields, "/x.deb")


def test_maintainer_script_runs_depmod_for_its_kernel_only():
    script = modpkg.render_maintainer_script(KERNEL)
    assert script.startswith("#!/bin/sh\nset -e\n")
    assert f"depmod -a {KERNEL}\n" in script


def test_parse_query_keeps_installed_and_half_installed_packages():
    out = (
        "pool-modules-6.1.0-27-amd64\t0.1.0+aa\tii \n"
        "pool-modules-6.1.0-26-amd64\t0.1.0+bb\trc \n"  # removed, config files left: not installed
        "pool-modules-6.12.1-amd64\t0.1.0+cc\tiU \n"
        "garbage line\n"
    )
    assert modpkg.parse_query(out) == {
        "pool-modules-6.1.0-27-amd64": "0.1.0+aa",
        "pool-modules-6.12.1-amd64": "0.1.0+cc",
    }
