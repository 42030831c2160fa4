#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kmod
short_description: Build, sign, install and load the POOL kernel module with DKMS
version_added: 0.1.0
description:
  - Ships a kernel module source tree (by default the collection's C(kmod/)) to
    C(/usr/src/<name>-<version>), where I(version) is C(<VERSION>+<12 hex digits of a SHA-256 over the source
    files' paths and contents>), with C(PACKAGE_VERSION) in C(dkms.conf) rewritten to it.
  - Runs C(dkms add), C(dkms build) and C(dkms install) for the running kernel and optionally for every
    installed kernel that has headers, and removes the older versions of the module it installed itself.
  - Signs the built module with the kernel's C(sign-file) (SHA-256) using a key and certificate given as
    paths on the node, given as content, or created on the node; then checks the signature itself
    (C(modinfo -F signer) must name the certificate and C(modinfo -F sig_key) its serial), because dkms
    only warns when signing fails.
  - Loads the module with parameters (persisted in C(/etc/modprobe.d/<name>.conf), autoloaded through
    C(/etc/modules-load.d/<name>.conf)) and reloads it when the installed version or srcversion differs
    from the loaded one or the parameters changed, stopping the C(poold) service first so that its
    sessions drain, and starting it again afterwards.
  - Reports the Secure Boot state (C(mokutil --sb-state)) and optionally imports the signing certificate
    into the MOK list (C(mokutil --import)), idempotently through C(mokutil --test-key).
  - A second run with the same source changes nothing and rebuilds nothing. A failed build leaves the
    previous version installed and loaded, and removes the half-added new version.
  - Every change is reported, including a corrected mode or owner of a file it wrote (the configuration files,
    the signing certificate and key) and a signing folder tightened to 0700.
  - When O(remote_src=false) (the default) the action plugin packs the source files on the controller
    into a tar archive, copies it to the node's temporary directory and hands it to the module.
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: Reports what would change (source version, builds, files, load) without doing it.
  diff_mode:
    support: full
    description:
      - Shows C(/etc/modprobe.d), C(/etc/modules-load.d) content, corrected modes and owners, and the version changes.
  platform:
    support: full
    platforms: posix
    description: Debian 12 (bookworm) and derivatives with dkms and kmod.
options:
  name:
    description:
      - Name of the kernel module, of its DKMS package (C(PACKAGE_NAME) in C(dkms.conf) must match) and
        of the files in C(/etc/modprobe.d) and C(/etc/modules-load.d).
    type: str
    default: pool
  state:
    description:
      - V(present) builds, signs and installs the module for the selected kernels and writes the
        C(modprobe.d) options, but does not load it.
      - V(loaded) also loads it (and reloads it when needed) in the running kernel.
      - V(absent) unloads it, removes every DKMS version of it, the sources it shipped, its binary packages
        and its C(modprobe.d)/C(modules-load.d) files. The signing key and certificate stay.
    type: str
    choices: [present, loaded, absent]
    default: present
  src:
    description:
      - The module source tree (with C(VERSION), C(dkms.conf), C(Kbuild)/C(Makefile) and sources).
      - On the controller unless O(remote_src=true); then on the node, a folder or a tar archive.
      - Hidden files and build outputs (C(*.o), C(*.ko), C(*.mod.c), C(Module.symvers), ...) are ignored.
      - O(src) or O(packages) is required unless O(state=absent).
    type: path
  packages:
    description:
      - Install the module from binary packages made on a build host by P(pool.ops.kmod_package#module), one per
        kernel (paths on the node), instead of building it here; the node needs no dkms, compiler or headers.
      - Each package's signer (its C(Pool-Signer)/C(Pool-Sig-Key) fields, then the installed file's
        C(modinfo)) must match the fleet certificate, given as O(signing_cert) or O(signing_cert_content);
        a signing key is refused here. With O(state=loaded) one of them must be for the running kernel.
      - A package whose version is installed already is not installed again. DKMS versions of the module that
        this module installed for the same kernels are removed (they would shadow the package's file); an
        unmanaged DKMS version is an error. Without O(packages), a DKMS build removes the packages instead.
      - Mutually exclusive with O(src).
    type: list
    elements: path
    version_added: 0.2.0
  remote_src:
    description:
      - Whether O(src) is already on the node.
    type: bool
    default: false
  kernels:
    description:
      - Kernels to build and install for. V(running) is the running kernel, V(all) every installed
        kernel that has headers (kernels without headers are skipped with a warning), anything else an
        exact kernel release such as C(6.1.0-27-amd64).
      - The running kernel is always included when O(state=loaded).
    type: list
    elements: str
    default: [running]
  install_headers:
    description:
      - Install the missing C(linux-headers-<release>) packages with apt instead of failing.
    type: bool
    default: false
  params:
    description:
      - Module parameters written as one C(options <name> key=value ...) line to
        C(/etc/modprobe.d/<name>.conf). Booleans become C(1)/C(0), lists comma-separated.
      - A change reloads a loaded module so that the new values apply.
    type: dict
    default: {}
  autoload:
    description:
      - Load the module at boot through C(/etc/modules-load.d/<name>.conf); V(false) removes that file.
    type: bool
    default: true
  sign:
    description:
      - Sign the module and check the signature. V(false) leaves whatever dkms did (not recommended).
    type: bool
    default: true
  signing_key:
    description:
      - Path on the node of the private key (PEM) that signs the module. Requires O(signing_cert).
      - Without O(signing_key) and O(signing_key_content) the module uses, and creates when missing, a
        key in O(signing_dir) that never leaves the node.
    type: path
  signing_cert:
    description:
      - Path on the node of the X.509 certificate (PEM or DER) of O(signing_key); with O(packages), the fleet
        certificate the packages must be signed with.
    type: path
  signing_key_content:
    description:
      - The private key (PEM) as text, for example from Ansible Vault. It is written to a private
        temporary file only while signing and removed afterwards. Requires O(signing_cert_content).
    type: str
  signing_cert_content:
    description:
      - The certificate (PEM) of O(signing_key_content) as text; it is kept in
        C(<signing_dir>/<name>-signing.crt) so that C(mokutil) and later runs can use it.
      - With O(packages), the fleet certificate alone, kept in C(<signing_dir>/<name>-fleet.crt).
    type: str
  signing_dir:
    description:
      - Folder (mode 0700) holding the created key C(<name>-signing.key) (mode 0600) and its certificate
        C(<name>-signing.crt) and C(<name>-signing.der).
    type: path
    default: /var/lib/pool/signing
  signing_cn:
    description:
      - Subject common name of a key created on the node. Defaults to C(pool.ops module signing (<hostname>)).
    type: str
  enroll_mok:
    description:
      - Import the signing certificate into the MOK list with C(mokutil --import) unless
        C(mokutil --test-key) says it is enrolled or already pending. The import completes at the next
        boot in the MOK manager, which asks for O(mok_password); RV(reboot_required) tells.
      - Where EFI variables are not supported (RV(sb_state=unsupported)) nothing is imported.
    type: bool
    default: false
  mok_password:
    description:
      - One-time password the MOK manager asks for at the next boot. Required with O(enroll_mok=true).
    type: str
  service:
    description:
      - systemd service holding sessions over the module. When it is active it is stopped before the
        module is reloaded or removed (so that its sessions drain) and, on reload, started again.
    type: str
    default: poold
  remove_stale:
    description:
      - Remove older DKMS versions of the module that this module installed (they carry a
        C(.pool-ops-managed) marker in C(/usr/src)) from the selected kernels, and their sources once no
        kernel uses them.
    type: bool
    default: true
notes:
  - Needs root. Requires C(dkms), C(kmod), C(openssl) and the kernel headers on the node; the role
    P(pool.ops.kmod#role) installs them.
  - dkms may sign the module with its own key (C(/var/lib/dkms/mok.key)); that signature is replaced.
  - When C(dkms autoinstall) builds the module for a newly installed kernel it is signed with dkms' own
    key; run the role again (with O(kernels=all)) to sign it with the collection's key.
seealso:
  - name: DKMS
    description: Dynamic Kernel Module Support.
    link: https://github.com/dkms-project/dkms
requirements:
  - dkms
  - kmod
  - openssl
  - mokutil (optional, for Secure Boot)
"""

EXAMPLES = r"""
- name: Build, sign and load pool.ko from the collection's source with a key made on the node
  pool.ops.kmod:
    src: "{{ playbook_dir }}/../kmod"
    state: loaded
    params:
      port: 9253
      heartbeat_seconds: 10

- name: Build for every installed kernel with headers, installing missing headers
  pool.ops.kmod:
    src: /srv/pool/kmod
    remote_src: true
    kernels: all
    install_headers: true
    state: present

- name: Sign with a key from Ansible Vault and enrol its certificate for Secure Boot
  pool.ops.kmod:
    src: "{{ pool_kmod_src }}"
    state: loaded
    signing_key_content: "{{ vault_pool_signing_key }}"
    signing_cert_content: "{{ pool_signing_cert }}"
    enroll_mok: true
    mok_password: "{{ vault_pool_mok_password }}"
  register: pool_kmod

- name: Install and load the package a build host made with pool.ops.kmod_package
  pool.ops.kmod:
    packages: [/var/lib/pool/packages/pool-modules-6.1.0-27-amd64_0.1.0+3f2a9c0d41be_amd64.deb]
    signing_cert_content: "{{ pool_packages.certificate }}"
    state: loaded

- name: Remove the module, its DKMS versions, its packages and its configuration
  pool.ops.kmod:
    state: absent
"""

RETURN = r"""
version:
  description: The content version of the source, C(<VERSION>+<12 hex>); null when O(state=absent).
  returned: always
  type: str
  sample: 0.1.0+3f2a9c0d41be
srcversion:
  description: C(modinfo -F srcversion) of the module installed for the running kernel.
  returned: when installed for the running kernel
  type: str
  sample: 8C2D1E3D4F5A6B7C8D9E0F1
signer:
  description: C(modinfo -F signer) of the module installed for the running kernel.
  returned: when installed for the running kernel
  type: str
  sample: pool.ops module signing (node1)
signing_cert:
  description: Path on the node of the certificate the module is signed with (PEM).
  returned: when O(sign=true) and O(state) is not V(absent)
  type: str
  sample: /var/lib/pool/signing/pool-signing.crt
kernels:
  description: Kernels the current version is installed for (after the run).
  returned: always
  type: list
  elements: str
  sample: [6.1.0-27-amd64]
built:
  description: Kernels the module was built for during this run (empty when nothing was rebuilt).
  returned: always
  type: list
  elements: str
  sample: []
build_seconds:
  description: Wall-clock seconds each C(dkms build) of this run took, by kernel.
  returned: always
  type: dict
  sample: {"6.1.0-27-amd64": 41.3}
loaded:
  description: Whether the module is loaded in the running kernel after the run.
  returned: always
  type: bool
  sample: true
loaded_version:
  description: Version of the loaded module (C(/sys/module/<name>/version)).
  returned: when loaded
  type: str
  sample: 0.1.0+3f2a9c0d41be
reloaded:
  description: Whether the module was unloaded and loaded again during this run.
  returned: always
  type: bool
  sample: false
removed_versions:
  description: Older DKMS versions removed from the selected kernels during this run.
  returned: always
  type: list
  elements: str
  sample: [0.1.0+0a1b2c3d4e5f]
sb_state:
  description: >-
    Secure Boot state from C(mokutil --sb-state): V(enabled), V(disabled), V(unsupported) (no EFI
    variables, for example a VM booted without UEFI) or V(unknown) (mokutil missing or unexpected output).
  returned: always
  type: str
  sample: unsupported
mok_enrolled:
  description: >-
    Whether the certificate is in the MOK list (C(mokutil --test-key)); null when that cannot be told.
  returned: when O(enroll_mok=true)
  type: bool
  sample: false
reboot_required:
  description: True when a MOK enrolment request is pending and a reboot (with console access) completes it.
  returned: always
  type: bool
  sample: false
packages:
  description: With O(packages), the package names, one per kernel.
  returned: always
  type: list
  elements: str
  sample: [pool-modules-6.1.0-27-amd64]
installed:
  description: Packages installed (or replaced) during this run.
  returned: always
  type: list
  elements: str
  sample: []
removed_packages:
  description: Binary packages of the module removed during this run (a DKMS build or O(state=absent) replaced them).
  returned: always
  type: list
  elements: str
  sample: []
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["ship source 0.1.0+3f2a9c0d41be", "build 6.1.0-27-amd64", "load pool"]
"""

import glob
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils import dkms, modpkg
from ansible_collections.pool.ops.plugins.module_utils.common import CommandError, atomic_write, last_line, read_file
from ansible_collections.pool.ops.plugins.module_utils.kmod_host import (
    DKMS_TREE,
    MODPROBE_D,
    MODULES_LOAD_D,
    USR_SRC,
    KmodError,
    KmodHost,
)


class Kmod(KmodHost):
    def __init__(self, module):
        super(Kmod, self).__init__(module)
        self.result.update(packages=[], installed=[], removed_packages=[])

    def present(self):
        p = self.p
        for key, cert in (("signing_key", "signing_cert"), ("signing_key_content", "signing_cert_content")):
            if bool(p[key]) != bool(p[cert]):
                raise KmodError("%s and %s go together: give both or neither" % (key, cert))
        self.modinfo_bin = self.need_bin("modinfo", "kmod")
        self.modprobe_bin = self.need_bin("modprobe", "kmod")
        self.dkms_bin = self.need_bin("dkms", "dkms")
        version, rendered = self.load_source()
        self.result["version"] = version
        kernels = self.target_kernels()
        self.ensure_headers(kernels)

        key = cert = facts = None
        if p["sign"]:
            key, cert, facts = self.signing_material()
            self.result["signing_cert"] = cert

        entries = self.dkms_status()
        before_installed = {k: dkms.installed_versions(entries, k) for k in kernels}
        ship = not self.tree_matches(version, rendered)
        added = any(e.version == version for e in entries)
        if ship and added:
            # The tree under /usr/src is not what this version must hold: start this version afresh.
            entries = [e for e in entries if e.version != version]
        todo = [
            k
            for k in kernels
            if not (dkms.status_state(entries, version, k) == "installed" and self.installed_ok(version, k, facts))
        ]
        versions_before = "".join("%s: %s\n" % (k, ", ".join(before_installed[k]) or "-") for k in kernels)
        versions_after = "".join("%s: %s\n" % (k, version) for k in kernels)
        if self.m._diff and versions_before != versions_after:
            self.diff.append(
                {
                    "before_header": "%s DKMS versions" % self.name,
                    "after_header": "%s DKMS versions" % self.name,
                    "before": versions_before,
                    "after": versions_after,
                }
            )

        new_version = False
        try:
            if ship:
                self.act("ship source %s to %s" % (version, self.src_dir(version)))
                if added:
                    self.act("dkms remove %s/%s (source changed under it)" % (self.name, version))
                    if not self.check:
                        self.dkms(["remove", "-m", self.name, "-v", version, "--all"], check=False)
                    added = False
                if not self.check:
                    self.ship_source(version, rendered)
                new_version = True
            if not added:
                self.act("dkms add %s/%s" % (self.name, version))
                if not self.check:
                    self.dkms(["add", "-m", self.name, "-v", version], fix="check %s/dkms.conf" % self.src_dir(version))
                new_version = True
            # Build and sign everything first: the old version stays installed until all builds worked.
            for k in todo:
                state = dkms.status_state(entries, version, k)
                if state not in ("built", "installed"):
                    self.act("build %s for %s" % (version, k))
                    self.result["built"].append(k)
                    if not self.check:
                        started = time.time()
                        self.build(version, k)
                        self.result["build_seconds"][k] = round(time.time() - started, 1)
                if p["sign"]:
                    self.act("sign %s for %s" % (version, k))
                    if not self.check:
                        self.sign_module(self.built_module(version, k), k, key, cert, facts)
        except (KmodError, CommandError, dkms.SourceError, OSError):
            if new_version and not self.check:
                self.dkms(["remove", "-m", self.name, "-v", version, "--all"], check=False)
                shutil.rmtree(self.src_dir(version), ignore_errors=True)
            raise

        # A binary package of the module for these kernels would hold the file DKMS installs beside.
        self.remove_packages(kernels)

        # Switch kernels over to the new version, one at a time, rolling back on failure.
        for k in todo:
            old = [v for v in before_installed[k] if v != version]
            self.act("install %s for %s" % (version, k))
            if self.check:
                continue
            for v in old:
                self.dkms(["uninstall", "-m", self.name, "-v", v, "-k", k], check=False)
            try:
                self.dkms(
                    ["install", "--force", "-m", self.name, "-v", version, "-k", k],
                    fix="the previous version was put back",
                )
                if not self.installed_ok(version, k, facts):
                    raise KmodError(
                        "dkms installed %s/%s for %s but the installed file is not that version signed by "
                        "%s: check DEST_MODULE_LOCATION in dkms.conf" % (self.name, version, k, cert)
                    )
                self.cmd([self.need_bin("depmod", "kmod"), "-a", k], what="depmod -a %s" % k)
            except (KmodError, CommandError):
                for v in old:
                    self.dkms(["install", "--force", "-m", self.name, "-v", v, "-k", k], check=False)
                raise

        params_changed = self.write_load_config()

        if p["state"] == "loaded":
            self.load(version, params_changed, before_installed.get(self.running, []))

        if p["remove_stale"]:
            self.remove_stale(version, kernels, entries)

        # Every target kernel now has this version (or the run failed above), plus
        # the other kernels that already had it; no second `dkms status` (slow) needed.
        elsewhere = [
            e.kernel
            for e in entries
            if e.version == version and e.kernel and e.kernel not in kernels and e.state.startswith("installed")
        ]
        self.result["kernels"] = sorted(set(kernels) | set(elsewhere))
        path = self.installed_module(self.running)
        if path:
            self.result["srcversion"] = self.modinfo(path, "srcversion")
            self.result["signer"] = self.modinfo(path, "signer")
        self.secure_boot(cert, facts)

    def write_load_config(self):
        """modprobe.d options and the modules-load.d entry; True when the options changed."""
        params_changed = self.write_file(
            os.path.join(MODPROBE_D, "%s.conf" % self.name), dkms.render_modprobe_conf(self.name, self.p["params"])
        )
        load_path = os.path.join(MODULES_LOAD_D, "%s.conf" % self.name)
        if self.p["autoload"]:
            self.write_file(load_path, dkms.render_modules_load(self.name))
        else:
            self.drop_file(load_path)
        return params_changed

    def build(self, version, kernel):
        rc, out, err = self.dkms(["build", "-m", self.name, "-v", version, "-k", kernel], check=False)
        if rc == 0:
            return
        log = os.path.join(DKMS_TREE, self.name, version, "build", "make.log")
        why = dkms.build_failure(read_file(log)) or last_line(err) or last_line(out)
        raise KmodError(
            "dkms build of %s/%s for %s failed (exit %d): %s: fix the source (full log: %s); the "
            "previous version stays installed" % (self.name, version, kernel, rc, why, log)
        )

    def load(self, version, params_changed, old_running):
        loaded = self.is_loaded()
        path = self.installed_module(self.running) if not self.check else None
        want_version = version
        want_src = self.modinfo(path, "srcversion") if path else None
        if loaded:
            live_version, live_src = self.sys_attr("version"), self.sys_attr("srcversion")
            reasons = []
            if live_version != want_version:
                reasons.append("version %s -> %s" % (live_version, want_version))
            if want_src and live_src != want_src:
                reasons.append("srcversion %s -> %s" % (live_src, want_src))
            if params_changed:
                reasons.append("parameters changed")
            if self.m._diff and (live_version != want_version):
                self.diff.append(
                    {
                        "before_header": "loaded %s" % self.name,
                        "after_header": "loaded %s" % self.name,
                        "before": "version %s srcversion %s\n" % (live_version, live_src),
                        "after": "version %s srcversion %s\n" % (want_version, want_src or "(new)"),
                    }
                )
            if reasons:
                self.act("reload %s (%s)" % (self.name, "; ".join(reasons)))
                self.result["reloaded"] = True
                if not self.check:
                    self.reload(old_running, version)
        else:
            self.act("load %s" % self.name)
            if not self.check:
                self.modprobe()
        if not self.check:
            self.result["loaded"] = self.is_loaded()
            self.result["loaded_version"] = self.sys_attr("version")
        else:
            self.result["loaded"] = True
            self.result["loaded_version"] = version

    def reload(self, old_versions, version):
        was_active = self.service_active()
        if was_active:
            self.actions.append("stop %s" % self.p["service"])
            self.systemctl("stop")
        try:
            self.modprobe(remove=True)
            try:
                self.modprobe()
            except KmodError:
                # Put the previous version back and load it, then report.
                for v in old_versions:
                    if v != version:
                        self.dkms(["uninstall", "-m", self.name, "-v", version, "-k", self.running], check=False)
                        self.dkms(["install", "--force", "-m", self.name, "-v", v, "-k", self.running], check=False)
                self.cmd([self.modprobe_bin, self.name], check=False)
                raise
        finally:
            if was_active:
                self.actions.append("start %s" % self.p["service"])
                self.cmd([self.m.get_bin_path("systemctl", required=True), "start", self.p["service"]], check=False)

    def remove_stale(self, version, kernels, entries):
        """Remove managed versions other than ``version``; ``entries`` is the status read at the start."""
        for v in dkms.status_versions(entries):
            if v == version:
                continue
            if not self.managed(v):
                self.m.warn(
                    "%s/%s is not managed by pool.ops.kmod (no %s marker): left in place"
                    % (self.name, v, dkms.MANAGED_MARKER)
                )
                continue
            others = [e for e in entries if e.version == v and e.kernel and e.kernel not in kernels]
            self.act("dkms remove %s/%s" % (self.name, v))
            self.result["removed_versions"].append(v)
            if self.check:
                continue
            if others:
                for k in kernels:
                    self.dkms(["remove", "-m", self.name, "-v", v, "-k", k], check=False)
            else:
                self.dkms(["remove", "-m", self.name, "-v", v, "--all"], check=False)
                shutil.rmtree(self.src_dir(v), ignore_errors=True)

    def absent(self):
        self.dkms_bin = self.m.get_bin_path("dkms", opt_dirs=["/usr/sbin", "/sbin"])
        modprobe = self.m.get_bin_path("modprobe", opt_dirs=["/usr/sbin", "/sbin"])
        self.modprobe_bin = modprobe
        if self.is_loaded():
            self.act("unload %s" % self.name)
            if not self.check:
                if self.service_active():
                    self.actions.append("stop %s" % self.p["service"])
                    self.systemctl("stop")
                self.modprobe(remove=True)
        self.drop_file(os.path.join(MODPROBE_D, "%s.conf" % self.name))
        self.drop_file(os.path.join(MODULES_LOAD_D, "%s.conf" % self.name))
        self.remove_packages()
        versions = dkms.status_versions(self.dkms_status()) if self.dkms_bin else []
        for v in versions:
            self.act("dkms remove %s/%s" % (self.name, v))
            self.result["removed_versions"].append(v)
            if not self.check:
                self.dkms(["remove", "-m", self.name, "-v", v, "--all"])
        for path in sorted(glob.glob(os.path.join(USR_SRC, "%s-*" % self.name))):
            if os.path.exists(os.path.join(path, dkms.MANAGED_MARKER)):
                self.act("remove %s" % path)
                if not self.check:
                    shutil.rmtree(path)
        self.secure_boot(None, None)

    # ---------------------------------------------------------------- packages (built on a build host)
    def dpkg_installed(self):
        """{package: version} of this module's binary packages installed on the node."""
        query = self.m.get_bin_path("dpkg-query")
        if not query:
            return {}
        _rc, out, _err = self.cmd(
            [query, "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", "%s-modules-*" % self.name],
            check=False,
        )
        return modpkg.parse_query(out)

    def remove_packages(self, kernels=None):
        """Remove this module's binary packages (of ``kernels``, or all): DKMS takes over."""
        for pkg in sorted(self.dpkg_installed()):
            kernel = pkg[len("%s-modules-" % self.name) :]
            if kernels is not None and kernel not in kernels:
                continue
            self.act("remove package %s" % pkg)
            self.result["removed_packages"].append(pkg)
            if not self.check:
                self.cmd(
                    [self.need_bin("dpkg", "dpkg"), "--purge", pkg],
                    what="dpkg --purge %s" % pkg,
                    env={"DEBIAN_FRONTEND": "noninteractive"},
                )

    def fleet_certificate(self):
        """(cert path, facts) of the certificate the packages must be signed with."""
        p = self.p
        if p["signing_key"] or p["signing_key_content"]:
            raise KmodError(
                "packages are signed on the build host (pool.ops.kmod_package): give the fleet "
                "certificate (signing_cert or signing_cert_content), never its key, to a node"
            )
        if p["signing_cert"]:
            if not os.path.isfile(p["signing_cert"]):
                raise KmodError("signing_cert %s does not exist on the node: fix signing_cert" % p["signing_cert"])
            return p["signing_cert"], self.openssl_facts(p["signing_cert"])
        if not p["signing_cert_content"]:
            raise KmodError(
                "packages need the fleet certificate to check the module's signature against: give "
                "signing_cert_content (pool.ops.kmod_package returns it as certificate), or sign: false"
            )
        content = p["signing_cert_content"].strip() + "\n"
        cert = os.path.join(p["signing_dir"], "%s-fleet.crt" % self.name)
        self.ensure_signing_dir(p["signing_dir"])
        if read_file(cert) != content:
            self.act("write %s" % cert)
            if self.check:
                probe = os.path.join(self.tmpdir(), "fleet.crt")
                atomic_write(probe, content, 0o644)
                return cert, self.openssl_facts(probe)
            atomic_write(cert, content, 0o644)
        return cert, self.openssl_facts(cert)

    def read_packages(self):
        dpkg_deb = self.need_bin("dpkg-deb", "dpkg")
        found = {}
        for path in self.p["packages"]:
            if not os.path.isfile(path):
                raise KmodError(
                    "package %s does not exist on the node: copy it there first (the pool.ops.kmod role does)" % path
                )
            rc, out, err = self.cmd([dpkg_deb, "--field", path], check=False)
            if rc != 0:
                raise KmodError(
                    "%s is not a Debian package (%s): give the files pool.ops.kmod_package wrote"
                    % (path, last_line(err) or last_line(out))
                )
            info = modpkg.describe(modpkg.parse_fields(out), path)
            if info["module"] != self.name:
                raise KmodError(
                    "package %s holds module %s, not %s: fix packages or name" % (path, info["module"], self.name)
                )
            if info["kernel"] in found:
                raise KmodError(
                    "packages %s and %s are both for kernel %s: give one per kernel"
                    % (found[info["kernel"]]["path"], path, info["kernel"])
                )
            found[info["kernel"]] = info
        return found

    def present_packages(self):
        p = self.p
        self.modinfo_bin = self.need_bin("modinfo", "kmod")
        self.modprobe_bin = self.need_bin("modprobe", "kmod")
        self.dkms_bin = self.m.get_bin_path("dkms", opt_dirs=["/usr/sbin", "/sbin"])
        packages = self.read_packages()
        if p["state"] == "loaded" and self.running not in packages:
            raise KmodError(
                "no package among packages is for the running kernel %s (they are for %s): build one "
                "with pool.ops.kmod_package kernels: [%s]" % (self.running, ", ".join(sorted(packages)), self.running)
            )
        cert = facts = None
        if p["sign"]:
            cert, facts = self.fleet_certificate()
            self.result["signing_cert"] = cert
            for info in packages.values():
                if not dkms.signature_ok(info["signer"], info["sig_key"], facts):
                    raise KmodError(
                        "package %s is signed by %r key %s, not by the fleet certificate %s: build it "
                        "again with the fleet key" % (info["path"], info["signer"], info["sig_key"], cert)
                    )
        kernels = sorted(packages)
        self.result["version"] = (packages.get(self.running) or packages[kernels[0]])["version"]
        self.result["packages"] = [packages[k]["package"] for k in kernels]
        installed = self.dpkg_installed()

        # A DKMS build of the module for these kernels would shadow the package's file.
        if self.dkms_bin:
            entries = self.dkms_status()
            for v in dkms.status_versions(entries):
                on = [e.kernel for e in entries if e.version == v and e.kernel in kernels]
                if not on:
                    continue
                if not self.managed(v):
                    raise KmodError(
                        "DKMS has %s/%s (not installed by pool.ops.kmod) for %s, which would shadow the "
                        "package: remove it (dkms remove %s/%s --all)" % (self.name, v, ", ".join(on), self.name, v)
                    )
                self.act("dkms remove %s/%s (the package replaces it)" % (self.name, v))
                self.result["removed_versions"].append(v)
                if not self.check:
                    for k in on:
                        self.dkms(["remove", "-m", self.name, "-v", v, "-k", k], check=False)
                    if not [e for e in entries if e.version == v and e.kernel and e.kernel not in kernels]:
                        self.dkms(["remove", "-m", self.name, "-v", v, "--all"], check=False)
                        shutil.rmtree(self.src_dir(v), ignore_errors=True)

        before = "".join(
            "%s: %s\n" % (info["package"], installed.get(info["package"], "-"))
            for info in (packages[k] for k in kernels)
        )
        after = "".join("%s: %s\n" % (packages[k]["package"], packages[k]["version"]) for k in kernels)
        if self.m._diff and before != after:
            self.diff.append(
                {
                    "before_header": "%s packages" % self.name,
                    "after_header": "%s packages" % self.name,
                    "before": before,
                    "after": after,
                }
            )
        dpkg = self.need_bin("dpkg", "dpkg")
        for k in kernels:
            info = packages[k]
            if installed.get(info["package"]) == info["version"] and self.installed_ok(info["version"], k, facts):
                continue
            self.act("install %s %s" % (info["package"], info["version"]))
            self.result["installed"].append(info["package"])
            if self.check:
                continue
            self.cmd(
                [dpkg, "--install", info["path"]],
                what="dpkg --install %s" % info["path"],
                env={"DEBIAN_FRONTEND": "noninteractive"},
            )
            if not self.installed_ok(info["version"], k, facts):
                raise KmodError(
                    "installed %s but modinfo does not find %s %s signed by %s for %s: check for other "
                    "copies of %s.ko (modinfo -k %s %s)"
                    % (info["package"], self.name, info["version"], cert, k, self.name, k, self.name)
                )

        params_changed = self.write_load_config()
        if p["state"] == "loaded":
            # No DKMS version to fall back to: a package that does not load is reported, not undone.
            self.load(packages[self.running]["version"], params_changed, [])
        self.result["kernels"] = kernels
        path = self.installed_module(self.running)
        if path:
            self.result["srcversion"] = self.modinfo(path, "srcversion")
            self.result["signer"] = self.modinfo(path, "signer")
        self.secure_boot(cert, facts)

    def run(self):
        if self.p["state"] == "absent":
            self.absent()
        elif self.p["packages"]:
            self.present_packages()
        else:
            self.present()
        self.result["loaded"] = self.result["loaded"] if self.p["state"] == "loaded" else self.is_loaded()
        return dict(self.result, changed=self.changed, actions=self.actions, diff=self.diff)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="pool"),
            state=dict(type="str", default="present", choices=["present", "loaded", "absent"]),
            src=dict(type="path"),
            packages=dict(type="list", elements="path"),
            remote_src=dict(type="bool", default=False),
            kernels=dict(type="list", elements="str", default=["running"]),
            install_headers=dict(type="bool", default=False),
            params=dict(type="dict", default={}),
            autoload=dict(type="bool", default=True),
            sign=dict(type="bool", default=True),
            signing_key=dict(type="path"),
            signing_cert=dict(type="path"),
            signing_key_content=dict(type="str", no_log=True),
            signing_cert_content=dict(type="str"),
            signing_dir=dict(type="path", default="/var/lib/pool/signing"),
            signing_cn=dict(type="str"),
            enroll_mok=dict(type="bool", default=False),
            mok_password=dict(type="str", no_log=True),
            service=dict(type="str", default="poold"),
            remove_stale=dict(type="bool", default=True),
        ),
        required_if=[
            ("state", "present", ["src", "packages"], True),
            ("state", "loaded", ["src", "packages"], True),
            ("enroll_mok", True, ["mok_password"]),
        ],
        mutually_exclusive=[
            ["src", "packages"],
            ["signing_key", "signing_key_content"],
            ["signing_cert", "signing_cert_content"],
        ],
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="pool.ops.kmod needs root: set become: true")
    kmod = Kmod(module)
    try:
        result = kmod.run()
    except (KmodError, CommandError, dkms.SourceError) as exc:
        module.fail_json(
            msg=str(exc),
            actions=kmod.actions,
            changed=kmod.changed,
            **{k: v for k, v in kmod.result.items() if k in ("version", "built", "sb_state")},
        )
    except OSError as exc:
        module.fail_json(
            msg="%s: check permissions and free space on the node" % exc, actions=kmod.actions, changed=kmod.changed
        )
    finally:
        kmod.cleanup()
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
