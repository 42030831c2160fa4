#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kmod_package
short_description: Build the POOL kernel module once per kernel release and package it, signed with the fleet key
version_added: 0.2.0
description:
  - Runs on a build host (the controller is fine when it has the kernel headers). For each kernel release in
    O(kernels) it builds the module source with DKMS, in a private DKMS tree that leaves the host's own
    C(/var/lib/dkms) and C(/usr/src) alone, signs the result with the fleet's module signing key and packs it
    into a Debian binary package C(<name>-modules-<kernel>_<version>_<arch>.deb) in O(dest).
  - I(version) is the source's content version, C(<VERSION>+<12 hex digits of a SHA-256 over the source files>),
    the same that P(pool.ops.kmod#module) gives a node-local DKMS build of the same tree.
  - The package installs C(/lib/modules/<kernel>/updates/<name>.ko) and runs C(depmod) for that kernel. Its
    control file says what is inside without unpacking it (C(Pool-Module), C(Pool-Kernel), C(Pool-Signer),
    C(Pool-Sig-Key), C(Pool-Srcversion)); nodes install it with P(pool.ops.kmod#module) and O(pool.ops.kmod#module:packages),
    which checks the installed module's signature against the fleet certificate.
  - A package that exists for this version and kernel, signed with the current certificate, is kept; a second
    run with the same source changes nothing and builds nothing. Older packages of the same kernels beyond
    O(keep) are removed. A failed build leaves O(dest) as it was.
  - The fleet key never leaves the build host. RV(certificate) returns its certificate (public) for the nodes.
  - When O(remote_src=false) (the default) the action plugin packs the source files on the controller and
    copies them to the build host.
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: Reports the packages that would be built, without building them.
  diff_mode:
    support: none
    description: The result lists the packages built and removed.
  platform:
    support: full
    platforms: posix
    description: Debian 12 and 13 build hosts with dkms, dpkg-dev's dpkg-deb, kmod, openssl and the kernel headers.
options:
  name:
    description:
      - Name of the kernel module and of its DKMS package (C(PACKAGE_NAME) in C(dkms.conf) must match).
    type: str
    default: pool
  src:
    description:
      - The module source tree, on the controller unless O(remote_src=true); see O(pool.ops.kmod#module:src).
    type: path
    required: true
  remote_src:
    description:
      - Whether O(src) is already on the build host (a folder or a tar archive).
    type: bool
    default: false
  kernels:
    description:
      - Exact kernel releases to build for, such as C(6.1.0-27-amd64); usually the releases the target nodes
        run (the P(pool.ops.kmod#role) role collects them from the nodes' facts).
    type: list
    elements: str
    required: true
  install_headers:
    description:
      - Install the missing C(linux-headers-<release>) packages on the build host with apt (needs root)
        instead of failing (into O(buildroot) when it is set).
    type: bool
    default: false
  buildroot:
    description:
      - Path on the build host of a Debian root filesystem (made with C(mmdebstrap) or C(debootstrap)) of the
        Debian release the O(kernels) come from, holding C(dkms), C(build-essential), C(openssl) and the
        headers of those kernels. The builds and their signing run in it through C(chroot), so that one build
        host serves several releases, each built with its own release's compiler (a Debian 12 host building for
        Debian 13's 6.12 kernels, for example), as Debian's own build daemons do.
      - The private key is copied into a private temporary folder of the build root while signing and removed
        with it. The packages, the key and its certificate stay outside it.
      - Needs root (C(become)). Without it the build host's own system builds.
    type: path
  dest:
    description:
      - Folder on the build host where the packages are written (created, mode 0755).
      - Without it, C(~/.cache/pool-ops/packages) of the user the module runs as.
    type: path
  keep:
    description:
      - How many package versions to keep per kernel in O(dest), the current one included.
    type: int
    default: 2
  signing_key:
    description:
      - Path on the build host of the fleet's private key (PEM). Requires O(signing_cert).
      - Without O(signing_key) and O(signing_key_content) the module uses, and creates when missing, a key in
        O(signing_dir) on the build host.
    type: path
  signing_cert:
    description:
      - Path on the build host of the X.509 certificate (PEM or DER) of O(signing_key).
    type: path
  signing_key_content:
    description:
      - The fleet's private key (PEM) as text, for example from Ansible Vault. It is written to a private
        temporary file only while signing. Requires O(signing_cert_content).
    type: str
  signing_cert_content:
    description:
      - The certificate (PEM) of O(signing_key_content); kept in C(<signing_dir>/<name>-signing.crt).
    type: str
  signing_dir:
    description:
      - Folder (mode 0700) of the created fleet key C(<name>-signing.key) (mode 0600) and its certificate.
      - Without it, C(~/.local/share/pool-ops/signing) of the user the module runs as.
    type: path
  signing_cn:
    description:
      - Subject common name of a key created here.
    type: str
    default: pool.ops fleet module signing
notes:
  - Needs no root unless O(install_headers=true) or O(buildroot) is set; the DKMS tree is private to the run.
  - With several build hosts (or build roots), give them all the same fleet key (O(signing_key) or
    O(signing_key_content)), since the nodes check every package against one certificate.
  - C(dkms) itself may sign the build with its own key first (C(/var/lib/dkms/mok.key) when it runs as root);
    that signature is replaced by the fleet key's.
seealso:
  - module: pool.ops.kmod
requirements:
  - dkms
  - dpkg-deb
  - kmod (modinfo)
  - openssl
"""

EXAMPLES = r"""
- name: Build pool.ko for the kernels the nodes run, on the controller, with a fleet key made there
  pool.ops.kmod_package:
    src: "{{ playbook_dir }}/../kmod"
    kernels: "{{ groups['pool_nodes'] | map('extract', hostvars, ['ansible_facts', 'kernel']) | unique }}"
  delegate_to: localhost
  run_once: true
  register: pool_packages

- name: Build for Debian 13 nodes on a Debian 12 build host, in a Debian 13 build root
  pool.ops.kmod_package:
    src: "{{ playbook_dir }}/../kmod"
    kernels: [6.12.57+deb13-amd64]
    buildroot: /srv/buildroots/trixie
    dest: /srv/pool/packages
  delegate_to: builder1
  become: true
  run_once: true

- name: Build on a build host with the fleet key from Ansible Vault
  pool.ops.kmod_package:
    src: "{{ playbook_dir }}/../kmod"
    kernels: [6.1.0-27-amd64, 6.12.38+deb13-amd64]
    install_headers: true
    dest: /srv/pool/packages
    signing_key_content: "{{ vault_pool_fleet_key }}"
    signing_cert_content: "{{ pool_fleet_cert }}"
  delegate_to: builder1
  become: true
  run_once: true
"""

RETURN = r"""
version:
  description: The content version of the source, C(<VERSION>+<12 hex>).
  returned: always
  type: str
  sample: 0.1.0+3f2a9c0d41be
packages:
  description: One package per kernel of O(kernels), on the build host.
  returned: always
  type: list
  elements: dict
  contains:
    kernel:
      description: The kernel release the package is for.
      type: str
      sample: 6.1.0-27-amd64
    package:
      description: The Debian package name.
      type: str
      sample: pool-modules-6.1.0-27-amd64
    version:
      description: The package version (the module's content version).
      type: str
      sample: 0.1.0+3f2a9c0d41be
    path:
      description: Path of the package file on the build host.
      type: str
      sample: /root/.cache/pool-ops/packages/pool-modules-6.1.0-27-amd64_0.1.0+3f2a9c0d41be_amd64.deb
built:
  description: Kernels a package was built for in this run (empty when every package was there).
  returned: always
  type: list
  elements: str
  sample: [6.1.0-27-amd64]
build_seconds:
  description: Wall-clock seconds each build took, by kernel.
  returned: always
  type: dict
  sample: {"6.1.0-27-amd64": 5.2}
removed:
  description: Older package files removed from O(dest) (beyond O(keep)).
  returned: always
  type: list
  elements: str
  sample: []
certificate:
  description: The fleet certificate (PEM) the modules are signed with, for the nodes to check against.
  returned: unless the key is still to be created in check mode
  type: str
signing_cert:
  description: Path on the build host of that certificate.
  returned: always
  type: str
  sample: /root/.local/share/pool-ops/signing/pool-signing.crt
signer:
  description: The signer name C(modinfo) reports for the packaged modules (the certificate's common name).
  returned: unless the key is still to be created in check mode
  type: str
  sample: pool.ops fleet module signing
sig_key:
  description: The key id C(modinfo) reports (the certificate's serial number).
  returned: unless the key is still to be created in check mode
  type: str
buildroot:
  description: The build root the builds ran in (empty when the build host's own system built).
  returned: always
  type: str
  sample: /srv/buildroots/trixie
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
"""

import os
import pwd
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils import dkms, modpkg
from ansible_collections.pool.ops.plugins.module_utils.common import (
    CommandError,
    atomic_write,
    last_line,
    read_file,
)
from ansible_collections.pool.ops.plugins.module_utils.kmod_host import COMPRESSIONS, KmodError, KmodHost

# Under the home folder of the user the module runs as.
DEFAULT_DEST = ".cache/pool-ops/packages"
DEFAULT_SIGNING_DIR = ".local/share/pool-ops/signing"
# Package file times: fixed, so the same module signed with the same key packs the same way.
EPOCH = 315532800


class Builder(KmodHost):
    def __init__(self, module):
        super(Builder, self).__init__(module)
        self.result = {
            "version": None,
            "packages": [],
            "built": [],
            "build_seconds": {},
            "removed": [],
            "buildroot": "",
        }

    def kernels(self):
        wanted = []
        for item in self.p["kernels"]:
            k = item.strip()
            try:
                modpkg.check_kernel(k)
            except modpkg.PackageError as exc:
                raise KmodError(
                    "kernels: %s (give exact releases; 'running' and 'all' mean nothing on a build host)" % exc
                ) from exc
            if k not in wanted:
                wanted.append(k)
        if not wanted:
            raise KmodError("kernels is empty: give the kernel releases the nodes run")
        return wanted

    def package_ok(self, path, facts):
        """True when ``path`` is our package, signed with the certificate of ``facts``."""
        if facts is None or not os.path.isfile(path):
            return False
        rc, out, _err = self.cmd([self.dpkg_deb, "--field", path], check=False)
        if rc != 0:
            return False
        fields = modpkg.parse_fields(out)
        return dkms.signature_ok(fields.get("Pool-Signer"), fields.get("Pool-Sig-Key"), facts)

    def build(self, version, rendered, kernel, key, cert, facts, dest_path):
        work = self.tmpdir()
        tree, srcroot = os.path.join(work, "dkms"), os.path.join(work, "src")
        srcdir = os.path.join(srcroot, "%s-%s" % (self.name, version))
        for rel, data in rendered.items():
            path = os.path.join(srcdir, *rel.split("/"))
            if not os.path.isdir(os.path.dirname(path)):
                os.makedirs(os.path.dirname(path))
            with open(path, "wb") as f:
                f.write(data)
        os.makedirs(tree)
        private = ["--dkmstree", self.root_path(tree), "--sourcetree", self.root_path(srcroot)]
        self.dkms(["add", "-m", self.name, "-v", version, *private], fix="check %s/dkms.conf" % self.p["src"])
        rc, out, err = self.dkms(["build", "-m", self.name, "-v", version, "-k", kernel, *private], check=False)
        if rc != 0:
            log = os.path.join(tree, self.name, version, "build", "make.log")
            raise KmodError(
                "dkms build of %s/%s for %s failed (exit %d): %s: fix the source; no package was "
                "written"
                % (
                    self.name,
                    version,
                    kernel,
                    rc,
                    dkms.build_failure(read_file(log)) or last_line(err) or last_line(out),
                )
            )
        base = os.path.join(tree, self.name, version, kernel, self.arch, "module", self.name)
        built = next((base + s for s, _k in COMPRESSIONS if os.path.exists(base + s)), None)
        if built is None:
            raise KmodError(
                "dkms built %s/%s for %s but %s.ko* is missing: check BUILT_MODULE_NAME in dkms.conf"
                % (self.name, version, kernel, base)
            )
        self.sign_module(built, kernel, key, cert, facts)
        suffix = built[len(base) :]
        stage = os.path.join(work, "stage")
        target = os.path.join(stage, modpkg.module_path(self.name, kernel)[: -len(".ko")] + suffix)
        os.makedirs(os.path.dirname(target))
        shutil.copyfile(built, target)
        os.chmod(target, 0o644)
        control = modpkg.render_control(
            self.name,
            kernel,
            version,
            self.deb_arch,
            self.modinfo(target, "signer"),
            self.modinfo(target, "sig_key"),
            self.modinfo(target, "srcversion"),
            (os.path.getsize(target) + 1023) // 1024,
        )
        debian = os.path.join(stage, "DEBIAN")
        os.makedirs(debian)
        atomic_write(os.path.join(debian, "control"), control, 0o644)
        for script in ("postinst", "postrm"):
            atomic_write(os.path.join(debian, script), modpkg.render_maintainer_script(kernel), 0o755)
        for root, dirs, files in os.walk(stage):
            for n in dirs + files:
                os.utime(os.path.join(root, n), (EPOCH, EPOCH))
        tmp_deb = os.path.join(os.path.dirname(dest_path), ".%s.tmp" % os.path.basename(dest_path))
        try:
            self.cmd(
                [self.dpkg_deb, "--root-owner-group", "-Zxz", "--build", stage, tmp_deb],
                what="dpkg-deb --build %s" % os.path.basename(dest_path),
                env={"SOURCE_DATE_EPOCH": str(EPOCH)},
            )
            os.chmod(tmp_deb, 0o644)
            os.rename(tmp_deb, dest_path)
        finally:
            if os.path.exists(tmp_deb):
                os.unlink(tmp_deb)

    def prune(self, dest, kernel, keep_path):
        """Remove this kernel's older package files beyond ``keep``, oldest first."""
        prefix = modpkg.package_name(self.name, kernel) + "_"
        others = [
            os.path.join(dest, n)
            for n in os.listdir(dest)
            if n.startswith(prefix) and n.endswith(".deb") and os.path.join(dest, n) != keep_path
        ]
        others.sort(key=lambda path: os.stat(path).st_mtime, reverse=True)
        for path in others[max(0, self.p["keep"] - 1) :]:
            self.act("remove %s" % path)
            self.result["removed"].append(path)
            if not self.check:
                os.unlink(path)

    def enter_root(self, path):
        """Build in the build root ``path`` from now on."""
        root = os.path.realpath(path)
        if not os.path.isdir(root):
            raise KmodError("buildroot %s is not a folder: make it with mmdebstrap or debootstrap" % path)
        if root == "/":
            return
        if not os.path.isfile(os.path.join(root, "etc", "debian_version")):
            raise KmodError("buildroot %s holds no Debian system (etc/debian_version is missing)" % path)
        if os.geteuid() != 0:
            raise KmodError("buildroot %s needs root to enter it with chroot: run the task with become" % path)
        self.chroot_bin = self.need_bin("chroot", "coreutils")
        self.root = root
        self.result["buildroot"] = root

    def run(self):
        p = self.p
        if p["keep"] < 1:
            raise KmodError("keep must be at least 1 (the current package)")
        self.modinfo_bin = self.need_bin("modinfo", "kmod")
        if p["buildroot"]:
            self.enter_root(p["buildroot"])
        self.dkms_bin = self.root_bin("dkms", "dkms") if self.root else self.need_bin("dkms", "dkms")
        self.dpkg_deb = self.need_bin("dpkg-deb", "dpkg")
        _rc, out, _err = self.cmd(
            [self.need_bin("dpkg", "dpkg"), "--print-architecture"], what="dpkg --print-architecture"
        )
        self.deb_arch = out.strip()
        version, rendered = self.load_source()
        try:
            modpkg.check_version(version)
        except modpkg.PackageError as exc:
            raise KmodError(str(exc)) from exc
        self.result["version"] = version
        kernels = self.kernels()
        self.ensure_headers(kernels)
        key, cert, facts = self.signing_material()
        self.result["signing_cert"] = cert
        if facts is not None:
            self.result["certificate"] = read_file(cert)
            self.result["signer"] = dkms.expected_signers(facts)[0]
            self.result["sig_key"] = facts["serial"]

        dest = p["dest"]
        if not os.path.isdir(dest):
            self.act("create %s" % dest)
            if not self.check:
                os.makedirs(dest, 0o755)
        for k in kernels:
            path = os.path.join(dest, modpkg.file_name(self.name, k, version, self.deb_arch))
            if not self.package_ok(path, facts):
                self.act("build %s/%s for %s and pack %s" % (self.name, version, k, os.path.basename(path)))
                self.result["built"].append(k)
                if not self.check:
                    started = time.time()
                    self.build(version, rendered, k, key, cert, facts, path)
                    self.result["build_seconds"][k] = round(time.time() - started, 1)
            self.result["packages"].append(
                {"kernel": k, "package": modpkg.package_name(self.name, k), "version": version, "path": path}
            )
            if os.path.isdir(dest):
                self.prune(dest, k, path)
        return dict(self.result, changed=self.changed, actions=self.actions)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="pool"),
            src=dict(type="path", required=True),
            remote_src=dict(type="bool", default=False),
            kernels=dict(type="list", elements="str", required=True),
            install_headers=dict(type="bool", default=False),
            buildroot=dict(type="path"),
            dest=dict(type="path"),
            keep=dict(type="int", default=2),
            signing_key=dict(type="path"),
            signing_cert=dict(type="path"),
            signing_key_content=dict(type="str", no_log=True),
            signing_cert_content=dict(type="str"),
            signing_dir=dict(type="path"),
            signing_cn=dict(type="str", default="pool.ops fleet module signing"),
        ),
        required_together=[
            ["signing_key", "signing_cert"],
            ["signing_key_content", "signing_cert_content"],
        ],
        mutually_exclusive=[
            ["signing_key", "signing_key_content"],
            ["signing_cert", "signing_cert_content"],
        ],
        supports_check_mode=True,
    )
    for key, default in (("dest", DEFAULT_DEST), ("signing_dir", DEFAULT_SIGNING_DIR)):
        if not module.params[key]:
            module.params[key] = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, default)
    builder = Builder(module)
    try:
        result = builder.run()
    except (KmodError, CommandError, dkms.SourceError, modpkg.PackageError) as exc:
        module.fail_json(msg=str(exc), actions=builder.actions, changed=builder.changed)
    except OSError as exc:
        module.fail_json(
            msg="%s: check permissions and free space on the build host" % exc,
            actions=builder.actions,
            changed=builder.changed,
        )
    finally:
        builder.cleanup()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
