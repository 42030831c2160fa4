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
    description: Shows C(/etc/modprobe.d), C(/etc/modules-load.d) content and the version changes.
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
      - V(absent) unloads it, removes every DKMS version of it, the sources it shipped and its
        C(modprobe.d)/C(modules-load.d) files. The signing key and certificate stay.
    type: str
    choices: [present, loaded, absent]
    default: present
  src:
    description:
      - The module source tree (with C(VERSION), C(dkms.conf), C(Kbuild)/C(Makefile) and sources).
      - On the controller unless O(remote_src=true); then on the node, a folder or a tar archive.
      - Hidden files and build outputs (C(*.o), C(*.ko), C(*.mod.c), C(Module.symvers), ...) are ignored.
      - Required unless O(state=absent).
    type: path
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
      - Path on the node of the X.509 certificate (PEM or DER) of O(signing_key).
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
  no_log: false

- name: Remove the module, its DKMS versions and its configuration
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
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["ship source 0.1.0+3f2a9c0d41be", "build 6.1.0-27-amd64", "load pool"]
"""

import glob
import gzip
import lzma
import os
import re
import shutil
import socket
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils import dkms
from ansible_collections.pool.ops.plugins.module_utils.common import (
    CommandError,
    atomic_write,
    last_line,
    read_file,
    remove_file,
    run,
)

USR_SRC = "/usr/src"
DKMS_TREE = "/var/lib/dkms"
MODPROBE_D = "/etc/modprobe.d"
MODULES_LOAD_D = "/etc/modules-load.d"
COMPRESSIONS = ((".ko.xz", "xz"), (".ko.zst", "zst"), (".ko.gz", "gz"), (".ko", None))


class KmodError(Exception):
    """A failure already phrased for the operator (cause and fix)."""


def headers_package(kernel):
    return "linux-headers-%s" % kernel


def missing_headers_message(kernel):
    return ("kernel headers for %s missing: install %s (or set install_headers: true)"
            % (kernel, headers_package(kernel)))


def parse_sb_state(rc, out, err):
    """Map ``mokutil --sb-state`` output to enabled/disabled/unsupported/unknown."""
    text = ("%s\n%s" % (out, err)).lower()
    if "not supported" in text or "doesn't support" in text:
        return "unsupported"
    if "secureboot enabled" in text:
        return "enabled"
    if "secureboot disabled" in text:
        return "disabled"
    return "unknown"


def parse_test_key(out, err):
    """``mokutil --test-key`` -> (enrolled, pending); None for enrolled when unknown."""
    text = ("%s\n%s" % (out, err)).lower()
    if "already in the enrollment request" in text:
        return False, True
    if "already enrolled" in text:
        return True, False
    if "not enrolled" in text:
        return False, False
    return None, False


def check_signature(signer, sig_key, facts, what):
    """Raise KmodError unless modinfo's signer/sig_key name the certificate."""
    if dkms.signature_ok(signer, sig_key, facts):
        return
    raise KmodError(
        "signature check failed for %s: modinfo reports signer %r key %r, expected %s serial %s: "
        "check that the signing key and certificate belong together"
        % (what, signer or "", sig_key or "", " or ".join(repr(n) for n in dkms.expected_signers(facts)),
           facts.get("serial")))


class Kmod:
    def __init__(self, module):
        self.m = module
        self.p = module.params
        self.name = self.p["name"]
        self.check = module.check_mode
        self.running = os.uname()[2]
        self.arch = os.uname()[4]
        self.changed = False
        self.actions = []
        self.diff = []
        self.result = {
            "version": None, "kernels": [], "built": [], "build_seconds": {}, "loaded": False, "reloaded": False,
            "removed_versions": [], "sb_state": "unknown", "reboot_required": False,
        }
        self.tmpdirs = []
        self.dkms_bin = None

    # ---------------------------------------------------------------- helpers
    def act(self, text):
        self.actions.append(text)
        self.changed = True

    def cmd(self, argv, what=None, fix=None, check=True, data=None):
        return run(self.m, argv, what=what, fix=fix, check=check, data=data)

    def tmpdir(self):
        path = tempfile.mkdtemp(prefix="pool-kmod-")
        os.chmod(path, 0o700)
        self.tmpdirs.append(path)
        return path

    def cleanup(self):
        for path in self.tmpdirs:
            shutil.rmtree(path, ignore_errors=True)

    def need_bin(self, name, package):
        path = self.m.get_bin_path(name, opt_dirs=["/usr/sbin", "/sbin"])
        if not path:
            raise KmodError("%s not found: install the %s package (the pool.ops.kmod role does)" % (name, package))
        return path

    def dkms(self, args, what=None, fix=None, check=True):
        return self.cmd([self.dkms_bin, *args], what=what or "dkms " + " ".join(args), fix=fix, check=check)

    def dkms_status(self):
        _rc, out, _err = self.dkms(["status", "-m", self.name], check=False)
        return dkms.parse_status(out, self.name)

    def write_file(self, path, content, mode=0o644):
        """Write a small config file if its content differs; diff and changed."""
        before = read_file(path)
        if before == content:
            return False
        if self.m._diff:
            self.diff.append({"before_header": path, "after_header": path,
                              "before": before or "", "after": content})
        if not self.check:
            atomic_write(path, content, mode)
        self.act("write %s" % path)
        return True

    def drop_file(self, path):
        before = read_file(path)
        if before is None:
            return False
        if self.m._diff:
            self.diff.append({"before_header": path, "after_header": "%s (absent)" % path,
                              "before": before, "after": ""})
        if not self.check:
            remove_file(path)
        self.act("remove %s" % path)
        return True

    # ---------------------------------------------------------------- kernels
    def installed_kernels(self):
        kernels = []
        for path in sorted(glob.glob("/lib/modules/*")):
            k = os.path.basename(path)
            if os.path.isdir(os.path.join(path, "kernel")) or os.path.exists("/boot/vmlinuz-%s" % k):
                kernels.append(k)
        return kernels

    @staticmethod
    def has_headers(kernel):
        return os.path.exists("/lib/modules/%s/build/Makefile" % kernel)

    def target_kernels(self):
        wanted = []
        for item in self.p["kernels"]:
            item = item.strip()
            if item == "running":
                names = [self.running]
            elif item == "all":
                names = []
                for k in self.installed_kernels():
                    if self.has_headers(k) or k == self.running:
                        names.append(k)
                    else:
                        self.m.warn("kernel %s has no headers (%s): skipped; install %s to build for it"
                                    % (k, "/lib/modules/%s/build" % k, headers_package(k)))
            elif re.match(r"^[0-9][A-Za-z0-9._+~-]*$", item):
                names = [item]
            else:
                raise KmodError("kernels: %r is neither running, all nor a kernel release like 6.1.0-27-amd64" % item)
            for k in names:
                if k not in wanted:
                    wanted.append(k)
        if self.p["state"] == "loaded" and self.running not in wanted:
            wanted.insert(0, self.running)
        for k in wanted:
            if k != self.running and not os.path.isdir("/lib/modules/%s" % k):
                raise KmodError("kernel %s is not installed (/lib/modules/%s missing): fix kernels" % (k, k))
        return wanted

    def ensure_headers(self, kernels):
        missing = [k for k in kernels if not self.has_headers(k)]
        if not missing:
            return
        if not self.p["install_headers"]:
            raise KmodError(missing_headers_message(missing[0]))
        packages = [headers_package(k) for k in missing]
        self.act("install %s" % " ".join(packages))
        if self.check:
            return
        apt = self.need_bin("apt-get", "apt")
        argv = [apt, "install", "-y", "--no-install-recommends", *packages]
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        rc, _out, _err = run(self.m, argv, check=False, env=env)
        if rc != 0:  # stale or missing package lists: update once, then try again
            run(self.m, [apt, "update"], what="apt-get update", env=env,
                fix="check the apt sources (/etc/apt/sources.list*) and the network")
            run(self.m, argv, what="apt-get install %s" % " ".join(packages), env=env,
                fix="check that the packages exist for this kernel in the apt sources")
        for k in missing:
            if not self.has_headers(k):
                raise KmodError("%s installed but /lib/modules/%s/build is still missing: check the package"
                                % (headers_package(k), k))

    # ---------------------------------------------------------------- source
    def load_source(self):
        src = self.p["src"]
        if not self.p["remote_src"]:
            raise KmodError("src %s must be handed over by the pool.ops.kmod action plugin: call the module by its "
                            "FQCN pool.ops.kmod, or set remote_src: true for a path on the node" % src)
        if os.path.isdir(src):
            contents = dkms.read_tree(src)
        elif os.path.isfile(src):
            try:
                contents = dkms.read_tar(src)
            except (OSError, EOFError, ValueError) as exc:
                if isinstance(exc, dkms.SourceError):
                    raise
                raise KmodError("src %s is neither a folder nor a readable tar archive (%s): fix src" % (src, exc)) from exc
        else:
            raise KmodError("src %s does not exist on the node: fix src or set remote_src: false" % src)
        if not contents:
            raise KmodError("src %s holds no source files: point src at the kmod/ folder" % src)
        return dkms.prepare_tree(contents, self.name)

    def src_dir(self, version):
        return os.path.join(USR_SRC, "%s-%s" % (self.name, version))

    def tree_matches(self, version, rendered):
        path = self.src_dir(version)
        if not os.path.isdir(path):
            return False
        try:
            current = dkms.read_tree(path)
        except OSError:
            return False
        return current == rendered

    def ship_source(self, version, rendered):
        """Write /usr/src/<name>-<version> atomically (temporary folder, rename)."""
        dest = self.src_dir(version)
        tmp = tempfile.mkdtemp(prefix=".%s-%s." % (self.name, version), dir=USR_SRC)
        try:
            for rel, data in rendered.items():
                path = os.path.join(tmp, *rel.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            with open(os.path.join(tmp, dkms.MANAGED_MARKER), "w") as f:
                f.write("Shipped by pool.ops.kmod; removed by it when stale.\n")
            os.chmod(tmp, 0o755)
            if os.path.lexists(dest):
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def managed(self, version):
        return os.path.exists(os.path.join(self.src_dir(version), dkms.MANAGED_MARKER))

    # ---------------------------------------------------------------- signing
    def openssl_facts(self, cert):
        openssl = self.need_bin("openssl", "openssl")
        for form in ("PEM", "DER"):
            rc, out, _err = self.cmd([openssl, "x509", "-inform", form, "-in", cert, "-noout", "-subject", "-issuer",
                                      "-serial", "-nameopt", "multiline,utf8"], check=False)
            if rc == 0:
                facts = dkms.parse_openssl_x509(out)
                if facts["serial"] and (facts["subject_cn"] or facts["issuer_cn"]):
                    return facts
                raise KmodError("certificate %s has no common name: create one with a CN (modinfo names the "
                                "signer by it)" % cert)
        raise KmodError("%s is not an X.509 certificate (PEM or DER): fix signing_cert" % cert)

    def signing_material(self):
        """(key path or None in check mode, cert path, cert facts or None)."""
        p = self.p
        sdir = p["signing_dir"]
        base = os.path.join(sdir, "%s-signing" % self.name)
        if p["signing_key"]:
            for path, opt in ((p["signing_key"], "signing_key"), (p["signing_cert"], "signing_cert")):
                if not os.path.isfile(path):
                    raise KmodError("%s %s does not exist on the node: fix %s" % (opt, path, opt))
            return p["signing_key"], p["signing_cert"], self.openssl_facts(p["signing_cert"])
        if p["signing_key_content"]:
            cert = base + ".crt"
            content = p["signing_cert_content"].strip() + "\n"
            self.ensure_signing_dir(sdir)
            if read_file(cert) != content:
                self.act("write %s" % cert)
                if self.check:
                    return None, cert, None
                atomic_write(cert, content, 0o644)
            key_text = p["signing_key_content"].strip() + "\n"
            key = os.path.join(self.tmpdir(), "signing.key")
            if not self.check:
                atomic_write(key, key_text, 0o600)
            return key, cert, self.openssl_facts(cert)
        key, cert, der = base + ".key", base + ".crt", base + ".der"
        if not (os.path.isfile(key) and os.path.isfile(cert)):
            self.ensure_signing_dir(sdir)
            self.act("create signing key %s" % key)
            if self.check:
                return None, cert, None
            self.create_key(key, cert, der)
        elif not os.path.isfile(der) and not self.check:
            self.cmd([self.need_bin("openssl", "openssl"), "x509", "-in", cert, "-outform", "DER", "-out", der],
                     what="openssl x509 -outform DER")
        return key, cert, self.openssl_facts(cert)

    def ensure_signing_dir(self, sdir):
        if os.path.isdir(sdir):
            if os.stat(sdir).st_mode & 0o077 and not self.check:
                os.chmod(sdir, 0o700)
            return
        self.act("create %s" % sdir)
        if not self.check:
            os.makedirs(sdir, 0o700)
            os.chmod(sdir, 0o700)

    def create_key(self, key, cert, der):
        openssl = self.need_bin("openssl", "openssl")
        cn = self.p["signing_cn"] or "pool.ops module signing (%s)" % socket.gethostname()
        tmp = self.tmpdir()
        cnf = os.path.join(tmp, "req.cnf")
        atomic_write(cnf, "\n".join([
            "[ req ]", "distinguished_name = dn", "prompt = no", "string_mask = utf8only",
            "x509_extensions = ext", "[ dn ]", "CN = %s" % cn.replace("\n", " "), "[ ext ]",
            "basicConstraints = critical,CA:FALSE", "keyUsage = digitalSignature",
            "extendedKeyUsage = codeSigning", "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid", ""]), 0o600)
        tkey, tcert, tder = (os.path.join(tmp, n) for n in ("k.pem", "c.pem", "c.der"))
        old = os.umask(0o077)
        try:
            self.cmd([openssl, "req", "-new", "-x509", "-config", cnf, "-newkey", "rsa:3072", "-sha256", "-nodes",
                      "-days", "36500", "-keyout", tkey, "-out", tcert], what="openssl req (create signing key)")
        finally:
            os.umask(old)
        self.cmd([openssl, "x509", "-in", tcert, "-outform", "DER", "-out", tder], what="openssl x509 -outform DER")
        atomic_write(key, read_file(tkey, binary=True), 0o600)
        atomic_write(der, read_file(tder, binary=True), 0o644)
        atomic_write(cert, read_file(tcert, binary=True), 0o644)

    def sign_file_for(self, kernel):
        mm = ".".join(kernel.split(".")[:2])
        candidates = ["/lib/modules/%s/build/scripts/sign-file" % kernel,
                      "/usr/src/linux-headers-%s/scripts/sign-file" % kernel,
                      "/usr/lib/linux-kbuild-%s/scripts/sign-file" % mm]
        candidates += sorted(glob.glob("/usr/lib/linux-kbuild-%s*/scripts/sign-file" % mm), reverse=True)
        candidates += sorted(glob.glob("/usr/lib/linux-kbuild-*/scripts/sign-file"), reverse=True)
        for path in candidates:
            if os.access(path, os.X_OK):
                return path
        raise KmodError("sign-file not found for kernel %s: install %s (it brings linux-kbuild's sign-file)"
                        % (kernel, headers_package(kernel)))

    def modinfo(self, path, field):
        _rc, out, _err = self.cmd([self.modinfo_bin, "-F", field, path], check=False)
        return out.strip()

    def sign_module(self, path, kernel, key, cert, facts):
        """Replace any signature of the module file ``path`` with ours; verify."""
        comp = None
        for suffix, kind in COMPRESSIONS:
            if path.endswith(suffix):
                comp = kind
                break
        raw = read_file(path, binary=True)
        if raw is None:
            raise KmodError("built module %s is missing: run dkms build again" % path)
        if comp == "xz":
            raw = lzma.decompress(raw)
        elif comp == "gz":
            raw = gzip.decompress(raw)
        elif comp == "zst":
            raise KmodError("dkms compressed %s with zstd, which this module cannot sign: set "
                            "compress_zstd_opts off or use xz compression in /etc/dkms/framework.conf" % path)
        tmp = self.tmpdir()
        plain = os.path.join(tmp, "%s.ko" % self.name)
        atomic_write(plain, dkms.strip_signature(raw), 0o644)
        self.cmd([self.sign_file_for(kernel), "sha256", key, cert, plain], what="sign-file %s" % path,
                 fix="check the signing key and certificate (%s)" % cert)
        check_signature(self.modinfo(plain, "signer"), self.modinfo(plain, "sig_key"), facts, plain)
        data = read_file(plain, binary=True)
        if comp == "xz":
            data = lzma.compress(data, check=lzma.CHECK_CRC32,
                                 filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}])
        elif comp == "gz":
            data = gzip.compress(data)
        atomic_write(path, data, 0o644)

    def built_module(self, version, kernel):
        base = os.path.join(DKMS_TREE, self.name, version, kernel, self.arch, "module", self.name)
        for suffix, _kind in COMPRESSIONS:
            if os.path.exists(base + suffix):
                return base + suffix
        raise KmodError("dkms built %s/%s for %s but %s.ko* is missing: check BUILT_MODULE_NAME in dkms.conf"
                        % (self.name, version, kernel, base))

    def installed_module(self, kernel):
        """Path of the module dkms installed for kernel (updates/dkms or DEST_MODULE_LOCATION)."""
        for folder in ("updates/dkms", "updates", "extra", "kernel/extra"):
            for suffix, _kind in COMPRESSIONS:
                path = "/lib/modules/%s/%s/%s%s" % (kernel, folder, self.name, suffix)
                if os.path.exists(path):
                    return path
        return None

    def installed_ok(self, version, kernel, facts):
        """True when the installed module for kernel is this version and, if signing, signed by us."""
        path = self.installed_module(kernel)
        if not path or self.modinfo(path, "version") != version:
            return False
        if not self.p["sign"]:
            return True
        if facts is None:
            return False
        return dkms.signature_ok(self.modinfo(path, "signer"), self.modinfo(path, "sig_key"), facts)

    # ---------------------------------------------------------------- load
    def sys_attr(self, attr):
        value = read_file("/sys/module/%s/%s" % (self.name, attr))
        return value.strip() if value is not None else None

    def is_loaded(self):
        return os.path.isdir("/sys/module/%s" % self.name) and (
            os.path.exists("/sys/module/%s/initstate" % self.name) or os.path.exists("/sys/module/%s/refcnt" % self.name))

    def service_active(self):
        systemctl = self.m.get_bin_path("systemctl")
        if not systemctl or not self.p["service"]:
            return False
        rc, _out, _err = self.cmd([systemctl, "is-active", "--quiet", self.p["service"]], check=False)
        return rc == 0

    def systemctl(self, verb):
        self.cmd([self.m.get_bin_path("systemctl", required=True), verb, self.p["service"]],
                 what="systemctl %s %s" % (verb, self.p["service"]))

    def modprobe(self, remove=False):
        argv = [self.modprobe_bin] + (["-r"] if remove else []) + [self.name]
        rc, out, err = self.cmd(argv, check=False)
        if rc == 0:
            return
        why = last_line(err) or last_line(out)
        if remove:
            raise KmodError("modprobe -r %s failed: %s: stop what holds it (lsmod | grep %s; poolctl sessions)"
                            % (self.name, why, self.name))
        if "key was rejected" in why.lower() or "required key not available" in why.lower():
            raise KmodError("modprobe %s failed: %s: Secure Boot rejects the signing key: enrol it with "
                            "enroll_mok: true and mok_password, then reboot and confirm in the MOK manager"
                            % (self.name, why))
        raise KmodError("modprobe %s failed: %s: see dmesg for the module's own message" % (self.name, why))

    # ---------------------------------------------------------------- secure boot
    def secure_boot(self, cert, facts):
        mokutil = self.m.get_bin_path("mokutil", opt_dirs=["/usr/sbin", "/sbin"])
        if not mokutil:
            self.result["sb_state"] = "unknown"
            if self.p["enroll_mok"]:
                raise KmodError("mokutil not found: install the mokutil package to enrol the certificate")
            return
        rc, out, err = self.cmd([mokutil, "--sb-state"], check=False)
        state = parse_sb_state(rc, out, err)
        self.result["sb_state"] = state
        if not self.p["enroll_mok"] or self.p["state"] == "absent":
            return
        self.result["mok_enrolled"] = None
        if state == "unsupported":
            self.m.warn("EFI variables are not supported on this system (no UEFI): MOK enrolment skipped")
            return
        if cert is None or facts is None:  # check mode before the key exists
            self.act("import %s into the MOK list" % (cert or "the signing certificate"))
            self.result["reboot_required"] = True
            return
        der = os.path.splitext(cert)[0] + ".der"
        if self.p["signing_key"] or not os.path.isfile(der):
            der = os.path.join(self.tmpdir(), "cert.der")
            rc, _out, _err = self.cmd([self.need_bin("openssl", "openssl"), "x509", "-in", cert, "-outform", "DER",
                                       "-out", der], check=False)
            if rc != 0:
                der = cert  # not PEM: already DER
        _rc, out, err = self.cmd([mokutil, "--test-key", der], check=False)
        enrolled, pending = parse_test_key(out, err)
        self.result["mok_enrolled"] = enrolled
        if enrolled:
            return
        if pending:
            self.result["reboot_required"] = True
            return
        if enrolled is None:
            raise KmodError("mokutil --test-key %s gave no answer (%s): check mokutil and EFI variables"
                            % (der, last_line(err) or last_line(out)))
        self.act("import %s into the MOK list" % der)
        self.result["reboot_required"] = True
        if self.check:
            return
        password = self.p["mok_password"]
        self.cmd([mokutil, "--import", der], data="%s\n%s\n" % (password, password),
                 what="mokutil --import %s" % der,
                 fix="check Secure Boot firmware support, or import by hand: mokutil --import %s" % der)

    # ---------------------------------------------------------------- states
    def present(self):
        p = self.p
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
        todo = [k for k in kernels
                if not (dkms.status_state(entries, version, k) == "installed" and self.installed_ok(version, k, facts))]
        versions_before = "".join("%s: %s\n" % (k, ", ".join(before_installed[k]) or "-") for k in kernels)
        versions_after = "".join("%s: %s\n" % (k, version) for k in kernels)
        if self.m._diff and versions_before != versions_after:
            self.diff.append({"before_header": "%s DKMS versions" % self.name,
                              "after_header": "%s DKMS versions" % self.name,
                              "before": versions_before, "after": versions_after})

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
                    self.dkms(["add", "-m", self.name, "-v", version],
                              fix="check %s/dkms.conf" % self.src_dir(version))
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

        # Switch kernels over to the new version, one at a time, rolling back on failure.
        for k in todo:
            old = [v for v in before_installed[k] if v != version]
            self.act("install %s for %s" % (version, k))
            if self.check:
                continue
            for v in old:
                self.dkms(["uninstall", "-m", self.name, "-v", v, "-k", k], check=False)
            try:
                self.dkms(["install", "--force", "-m", self.name, "-v", version, "-k", k],
                          fix="the previous version was put back")
                if not self.installed_ok(version, k, facts):
                    raise KmodError("dkms installed %s/%s for %s but the installed file is not that version signed by "
                                    "%s: check DEST_MODULE_LOCATION in dkms.conf"
                                    % (self.name, version, k, cert))
                self.cmd([self.need_bin("depmod", "kmod"), "-a", k], what="depmod -a %s" % k)
            except (KmodError, CommandError):
                for v in old:
                    self.dkms(["install", "--force", "-m", self.name, "-v", v, "-k", k], check=False)
                raise

        params_changed = self.write_file(os.path.join(MODPROBE_D, "%s.conf" % self.name),
                                         dkms.render_modprobe_conf(self.name, p["params"]))
        load_path = os.path.join(MODULES_LOAD_D, "%s.conf" % self.name)
        if p["autoload"]:
            self.write_file(load_path, dkms.render_modules_load(self.name))
        else:
            self.drop_file(load_path)

        if p["state"] == "loaded":
            self.load(version, params_changed, before_installed.get(self.running, []))

        if p["remove_stale"]:
            self.remove_stale(version, kernels, entries)

        # Every target kernel now has this version (or the run failed above), plus
        # the other kernels that already had it; no second `dkms status` (slow) needed.
        elsewhere = [e.kernel for e in entries if e.version == version and e.kernel and e.kernel not in kernels
                     and e.state.startswith("installed")]
        self.result["kernels"] = sorted(set(kernels) | set(elsewhere))
        path = self.installed_module(self.running)
        if path:
            self.result["srcversion"] = self.modinfo(path, "srcversion")
            self.result["signer"] = self.modinfo(path, "signer")
        self.secure_boot(cert, facts)

    def build(self, version, kernel):
        rc, out, err = self.dkms(["build", "-m", self.name, "-v", version, "-k", kernel], check=False)
        if rc == 0:
            return
        log = os.path.join(DKMS_TREE, self.name, version, "build", "make.log")
        tail = [line for line in (read_file(log) or "").splitlines() if line.strip()][-3:]
        why = " | ".join(tail) or last_line(err) or last_line(out)
        raise KmodError("dkms build of %s/%s for %s failed (exit %d): %s: fix the source (full log: %s); the "
                        "previous version stays installed" % (self.name, version, kernel, rc, why, log))

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
                self.diff.append({"before_header": "loaded %s" % self.name, "after_header": "loaded %s" % self.name,
                                  "before": "version %s srcversion %s\n" % (live_version, live_src),
                                  "after": "version %s srcversion %s\n" % (want_version, want_src or "(new)")})
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
                self.m.warn("%s/%s is not managed by pool.ops.kmod (no %s marker): left in place"
                            % (self.name, v, dkms.MANAGED_MARKER))
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

    def run(self):
        if self.p["state"] == "absent":
            self.absent()
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
            ("state", "present", ["src"]),
            ("state", "loaded", ["src"]),
            ("enroll_mok", True, ["mok_password"]),
        ],
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
    if os.geteuid() != 0:
        module.fail_json(msg="pool.ops.kmod needs root: set become: true")
    kmod = Kmod(module)
    try:
        result = kmod.run()
    except (KmodError, CommandError, dkms.SourceError) as exc:
        module.fail_json(msg=str(exc), actions=kmod.actions, changed=kmod.changed, **{
            k: v for k, v in kmod.result.items() if k in ("version", "built", "sb_state")})
    except OSError as exc:
        module.fail_json(msg="%s: check permissions and free space on the node" % exc, actions=kmod.actions,
                         changed=kmod.changed)
    finally:
        kmod.cleanup()
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
