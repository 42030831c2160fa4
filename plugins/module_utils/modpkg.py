# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The binary module package: one Debian package per (module version, kernel release).

pool.ops.kmod_package writes it on a builder, pool.ops.kmod installs it on a node. Pure
functions, no side effects:

- the package name ``<name>-modules-<kernel>`` (dkms mkbmdeb's naming) and file name;
- the control file, with fields of our own that say what is inside without unpacking it:
  ``Pool-Module`` (the module name), ``Pool-Kernel`` (the kernel release it loads into),
  ``Pool-Signer`` and ``Pool-Sig-Key`` (what ``modinfo -F signer`` / ``sig_key`` report for
  the packed module), ``Pool-Srcversion``;
- the maintainer scripts, which only run ``depmod`` for that kernel;
- parsing ``dpkg-deb --field`` and ``dpkg-query`` output.

The module file is installed as ``/lib/modules/<kernel>/updates/<name>.ko``, beside (never
under) ``updates/dkms``, where node-local DKMS installs; pool.ops.kmod keeps one of the two.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MAINTAINER = "POOL operations team <pool-ops@localhost>"
# dpkg's rules for a package name and an upstream version (Debian Policy 5.6.1, 5.6.12).
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION_RE = re.compile(r"^[0-9][A-Za-z0-9.+~-]*$")
_KERNEL_RE = re.compile(r"^[0-9][A-Za-z0-9._+~-]*$")


class PackageError(ValueError):
    """A package that cannot be made or read, phrased for the operator."""


def package_name(name, kernel):
    pkg = "%s-modules-%s" % (name, kernel)
    if not _PACKAGE_RE.match(pkg):
        raise PackageError(
            "%r is not a valid Debian package name (module %r, kernel %r): Debian allows lower-case "
            "letters, digits, '+', '-' and '.'" % (pkg, name, kernel)
        )
    return pkg


def check_version(version):
    if not _VERSION_RE.match(version or ""):
        raise PackageError(
            "module version %r is not a Debian version: the VERSION file must start with a digit" % version
        )
    return version


def check_kernel(kernel):
    if not _KERNEL_RE.match(kernel or ""):
        raise PackageError("%r is not a kernel release like 6.1.0-27-amd64" % kernel)
    return kernel


def file_name(name, kernel, version, arch):
    return "%s_%s_%s.deb" % (package_name(name, kernel), check_version(version), arch)


def module_path(name, kernel):
    """Where the package installs the module, relative to the root."""
    return "lib/modules/%s/updates/%s.ko" % (check_kernel(kernel), name)


def _one_line(value):
    return " ".join(str(value).split())


def render_control(name, kernel, version, arch, signer, sig_key, srcversion, installed_kib):
    fields = [
        ("Package", package_name(name, kernel)),
        ("Version", check_version(version)),
        ("Architecture", arch),
        ("Maintainer", MAINTAINER),
        ("Section", "kernel"),
        ("Priority", "optional"),
        ("Installed-Size", str(installed_kib)),
        ("Pool-Module", name),
        ("Pool-Kernel", check_kernel(kernel)),
        ("Pool-Signer", _one_line(signer)),
        ("Pool-Sig-Key", _one_line(sig_key)),
        ("Pool-Srcversion", _one_line(srcversion)),
        ("Description", "%s kernel module %s for Linux %s" % (name, version, kernel)),
    ]
    body = "".join("%s: %s\n" % (k, v) for k, v in fields if v != "")
    return body + (
        " Built once on a build host and signed there with the fleet's module signing key\n"
        " (pool.ops.kmod_package); installed on nodes by pool.ops.kmod.\n"
    )


def render_maintainer_script(kernel):
    """postinst and postrm: refresh the kernel's module index; nothing else."""
    return (
        "#!/bin/sh\nset -e\n"
        "if [ -d /lib/modules/%s ] && command -v depmod >/dev/null 2>&1; then\n"
        "\tdepmod -a %s\nfi\n" % (check_kernel(kernel), kernel)
    )


def parse_fields(text):
    """``dpkg-deb --field`` (a control stanza) -> {field: value}; continuation lines dropped."""
    fields = {}
    for line in text.splitlines():
        if not line or line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def describe(fields, path):
    """The fields pool.ops.kmod needs from a package file, checked."""
    missing = [f for f in ("Package", "Version", "Pool-Module", "Pool-Kernel") if not fields.get(f)]
    if missing:
        raise PackageError(
            "%s is not a package made by pool.ops.kmod_package (no %s field): build it with that "
            "module" % (path, ", ".join(missing))
        )
    if fields["Package"] != package_name(fields["Pool-Module"], fields["Pool-Kernel"]):
        raise PackageError(
            "%s: package %s does not match its module %s and kernel %s"
            % (path, fields["Package"], fields["Pool-Module"], fields["Pool-Kernel"])
        )
    return {
        "package": fields["Package"],
        "version": check_version(fields["Version"]),
        "module": fields["Pool-Module"],
        "kernel": check_kernel(fields["Pool-Kernel"]),
        "signer": fields.get("Pool-Signer", ""),
        "sig_key": fields.get("Pool-Sig-Key", ""),
        "path": path,
    }


def parse_query(text):
    """``dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`` -> {package: version} of
    the packages installed (status ``ii``; half-installed ones count too, so they get replaced)."""
    installed = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        pkg, version, status = parts
        if status[1:2] in ("i", "U", "F", "H", "W", "t"):
            installed[pkg] = version
    return installed
