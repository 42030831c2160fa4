# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What pool.ops.kmod (on a node) and pool.ops.kmod_package (on a builder) share on the host
they run on: commands, kernels and headers, the module source, signing with a key and
certificate and checking the signature, loading and reloading, Secure Boot.

:class:`KmodHost` holds the module's parameters and result; each module subclasses it with
its states. Parameters a module does not have read as absent (``self.p.get``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import gzip
import lzma
import os
import re
import shutil
import socket
import stat
import tempfile

from ansible_collections.pool.ops.plugins.module_utils import dkms
from ansible_collections.pool.ops.plugins.module_utils.common import (
    atomic_write,
    correct_attributes,
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
    return "kernel headers for %s missing: install %s (or set install_headers: true)" % (
        kernel,
        headers_package(kernel),
    )


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
        % (
            what,
            signer or "",
            sig_key or "",
            " or ".join(repr(n) for n in dkms.expected_signers(facts)),
            facts.get("serial"),
        )
    )


class KmodHost:
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
            "version": None,
            "kernels": [],
            "built": [],
            "build_seconds": {},
            "loaded": False,
            "reloaded": False,
            "removed_versions": [],
            "sb_state": "unknown",
            "reboot_required": False,
        }
        self.tmpdirs = []
        self.dkms_bin = None
        # A build root (a Debian tree of another release, entered with chroot) that builds and
        # signing run in; empty: this host's own system.
        self.root = ""
        self.chroot_bin = None

    # ---------------------------------------------------------------- helpers
    def act(self, text):
        self.actions.append(text)
        self.changed = True

    def cmd(self, argv, what=None, fix=None, check=True, data=None, env=None):
        return run(self.m, argv, what=what, fix=fix, check=check, data=data, env=env)

    def tmpdir(self):
        # Inside the build root when there is one, so that commands run in it see the files too.
        path = tempfile.mkdtemp(prefix="pool-kmod-", dir=self.host_path("/tmp") if self.root else None)
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
        return self.cmd(
            self.in_root([self.dkms_bin, *args]), what=what or "dkms " + " ".join(args), fix=fix, check=check
        )

    # ---------------------------------------------------------------- build root
    def host_path(self, path):
        """The path here of ``path`` as the build root sees it (itself without a build root)."""
        return self.root + path if self.root else path

    def root_path(self, path):
        """The path in the build root of ``path`` here, which lies under it."""
        if not self.root:
            return path
        rel = os.path.relpath(path, self.root)
        if rel == ".." or rel.startswith("../"):
            raise KmodError("%s is outside the build root %s" % (path, self.root))
        return "/" + rel if rel != "." else "/"

    def in_root(self, argv):
        """``argv`` run inside the build root (unchanged without one)."""
        return [self.chroot_bin, self.root, *argv] if self.root else list(argv)

    def resolve(self, path):
        """The path here that ``path`` (as the build root sees it) ends at, its symbolic links
        followed inside the build root, never above it; ``path`` itself without a build root."""
        if not self.root:
            return path
        todo = [c for c in path.split("/") if c]
        done = []
        hops = 0
        while todo:
            c = todo.pop(0)
            if c == ".":
                continue
            if c == "..":
                if done:
                    done.pop()
                continue
            here = self.root + "/" + "/".join([*done, c])
            if os.path.islink(here):
                hops += 1
                if hops > 40:
                    raise KmodError("too many symbolic links in %s in the build root %s" % (path, self.root))
                target = os.readlink(here)
                if target.startswith("/"):
                    done = []
                todo = [x for x in target.split("/") if x] + todo
            else:
                done.append(c)
        return self.root + "/" + "/".join(done)

    def root_bin(self, name, package):
        """Path inside the build root of a program there, or an error naming the package."""
        for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            path = d + "/" + name
            if os.access(self.resolve(path), os.X_OK):
                return path
        raise KmodError(
            "%s not found in the build root %s: install the %s package into it" % (name, self.root, package)
        )

    def dkms_status(self):
        _rc, out, _err = self.dkms(["status", "-m", self.name], check=False)
        return dkms.parse_status(out, self.name)

    def note_attribute(self, path, what, before, after):
        """Report (action, diff) an attribute of a file this module owns going from before to after."""
        if self.m._diff:
            header = "%s (%s)" % (path, what)
            self.diff.append(
                {"before_header": header, "after_header": header, "before": before + "\n", "after": after + "\n"}
            )
        self.act("set the %s of %s to %s (was %s)" % (what, path, after, before))

    def fix_attributes(self, path, mode):
        """Mode and owner (the module's user) of a file this module wrote: corrected and reported
        when they drifted; returns whether they did."""
        drifts = correct_attributes(path, mode, (os.geteuid(), os.getegid()), self.check)
        for what, before, after in drifts:
            self.note_attribute(path, what, before, after)
        return bool(drifts)

    def write_file(self, path, content, mode=0o644):
        """Write a small config file if its content differs, or correct its mode and owner if those
        drifted; diff and changed."""
        before = read_file(path)
        if before == content:
            return self.fix_attributes(path, mode)
        if self.m._diff:
            self.diff.append({"before_header": path, "after_header": path, "before": before or "", "after": content})
        if not self.check:
            atomic_write(path, content, mode)
        self.act("write %s" % path)
        return True

    def drop_file(self, path):
        before = read_file(path)
        if before is None:
            return False
        if self.m._diff:
            self.diff.append(
                {"before_header": path, "after_header": "%s (absent)" % path, "before": before, "after": ""}
            )
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

    def has_headers(self, kernel):
        return os.path.exists(self.resolve("/lib/modules/%s/build/Makefile" % kernel))

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
                        self.m.warn(
                            "kernel %s has no headers (%s): skipped; install %s to build for it"
                            % (k, "/lib/modules/%s/build" % k, headers_package(k))
                        )
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
        apt = self.root_bin("apt-get", "apt") if self.root else self.need_bin("apt-get", "apt")
        if self.root and os.path.isfile("/etc/resolv.conf"):
            # apt in the build root resolves the mirrors' names as this host does.
            resolv = os.path.join(self.root, "etc", "resolv.conf")
            if os.path.islink(resolv):
                os.unlink(resolv)
            atomic_write(resolv, read_file("/etc/resolv.conf", binary=True), 0o644)
        argv = self.in_root([apt, "install", "-y", "--no-install-recommends", *packages])
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        rc, _out, _err = run(self.m, argv, check=False, env=env)
        if rc != 0:  # stale or missing package lists: update once, then try again
            run(
                self.m,
                self.in_root([apt, "update"]),
                what="apt-get update",
                env=env,
                fix="check the apt sources (/etc/apt/sources.list*) and the network",
            )
            run(
                self.m,
                argv,
                what="apt-get install %s" % " ".join(packages),
                env=env,
                fix="check that the packages exist for this kernel in the apt sources",
            )
        for k in missing:
            if not self.has_headers(k):
                raise KmodError(
                    "%s installed but /lib/modules/%s/build is still missing: check the package"
                    % (headers_package(k), k)
                )

    # ---------------------------------------------------------------- source
    def load_source(self):
        src = self.p["src"]
        if not self.p["remote_src"]:
            raise KmodError(
                "src %s must be handed over by the pool.ops.kmod action plugin: call the module by its "
                "FQCN pool.ops.kmod, or set remote_src: true for a path on the node" % src
            )
        if os.path.isdir(src):
            contents = dkms.read_tree(src)
        elif os.path.isfile(src):
            try:
                contents = dkms.read_tar(src)
            except (OSError, EOFError, ValueError) as exc:
                if isinstance(exc, dkms.SourceError):
                    raise
                raise KmodError(
                    "src %s is neither a folder nor a readable tar archive (%s): fix src" % (src, exc)
                ) from exc
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
            rc, out, _err = self.cmd(
                [
                    openssl,
                    "x509",
                    "-inform",
                    form,
                    "-in",
                    cert,
                    "-noout",
                    "-subject",
                    "-issuer",
                    "-serial",
                    "-nameopt",
                    "multiline,utf8",
                ],
                check=False,
            )
            if rc == 0:
                facts = dkms.parse_openssl_x509(out)
                if facts["serial"] and (facts["subject_cn"] or facts["issuer_cn"]):
                    return facts
                raise KmodError(
                    "certificate %s has no common name: create one with a CN (modinfo names the signer by it)" % cert
                )
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
            else:
                self.fix_attributes(cert, 0o644)
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
            return key, cert, self.openssl_facts(cert)
        self.ensure_signing_dir(sdir)
        self.fix_attributes(key, 0o600)
        self.fix_attributes(cert, 0o644)
        if not os.path.isfile(der) and not self.check:
            self.cmd(
                [self.need_bin("openssl", "openssl"), "x509", "-in", cert, "-outform", "DER", "-out", der],
                what="openssl x509 -outform DER",
            )
        return key, cert, self.openssl_facts(cert)

    def ensure_signing_dir(self, sdir):
        if os.path.isdir(sdir):
            have = stat.S_IMODE(os.stat(sdir).st_mode)
            if have & 0o077:  # only ever tightened: others must not reach the key
                self.note_attribute(sdir, "mode", "%04o" % have, "%04o" % (have & 0o700))
                if not self.check:
                    os.chmod(sdir, have & 0o700)
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
        atomic_write(
            cnf,
            "\n".join(
                [
                    "[ req ]",
                    "distinguished_name = dn",
                    "prompt = no",
                    "string_mask = utf8only",
                    "x509_extensions = ext",
                    "[ dn ]",
                    "CN = %s" % cn.replace("\n", " "),
                    "[ ext ]",
                    "basicConstraints = critical,CA:FALSE",
                    "keyUsage = digitalSignature",
                    "extendedKeyUsage = codeSigning",
                    "subjectKeyIdentifier = hash",
                    "authorityKeyIdentifier = keyid",
                    "",
                ]
            ),
            0o600,
        )
        tkey, tcert, tder = (os.path.join(tmp, n) for n in ("k.pem", "c.pem", "c.der"))
        old = os.umask(0o077)
        try:
            self.cmd(
                [
                    openssl,
                    "req",
                    "-new",
                    "-x509",
                    "-config",
                    cnf,
                    "-newkey",
                    "rsa:3072",
                    "-sha256",
                    "-nodes",
                    "-days",
                    "36500",
                    "-keyout",
                    tkey,
                    "-out",
                    tcert,
                ],
                what="openssl req (create signing key)",
            )
        finally:
            os.umask(old)
        self.cmd([openssl, "x509", "-in", tcert, "-outform", "DER", "-out", tder], what="openssl x509 -outform DER")
        atomic_write(key, read_file(tkey, binary=True), 0o600)
        atomic_write(der, read_file(tder, binary=True), 0o644)
        atomic_write(cert, read_file(tcert, binary=True), 0o644)

    def sign_file_for(self, kernel):
        mm = ".".join(kernel.split(".")[:2])
        candidates = [
            "/lib/modules/%s/build/scripts/sign-file" % kernel,
            "/usr/src/linux-headers-%s/scripts/sign-file" % kernel,
            "/usr/lib/linux-kbuild-%s/scripts/sign-file" % mm,
        ]
        for pattern in (
            "/usr/lib/linux-kbuild-%s*/scripts/sign-file" % mm,
            "/usr/lib/linux-kbuild-*/scripts/sign-file",
        ):
            found = glob.glob(self.host_path(pattern))
            candidates += sorted((self.root_path(f) for f in found), reverse=True)
        for path in candidates:
            if os.access(self.resolve(path), os.X_OK):
                return path
        raise KmodError(
            "sign-file not found for kernel %s: install %s (it brings linux-kbuild's sign-file)"
            % (kernel, headers_package(kernel))
        )

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
            raise KmodError(
                "dkms compressed %s with zstd, which this module cannot sign: set "
                "compress_zstd_opts off or use xz compression in /etc/dkms/framework.conf" % path
            )
        tmp = self.tmpdir()
        plain = os.path.join(tmp, "%s.ko" % self.name)
        atomic_write(plain, dkms.strip_signature(raw), 0o644)
        if self.root:  # sign-file runs in the build root: the key visits its private folder
            inner_key, inner_cert = os.path.join(tmp, "signing.key"), os.path.join(tmp, "signing.crt")
            atomic_write(inner_key, read_file(key, binary=True), 0o600)
            atomic_write(inner_cert, read_file(cert, binary=True), 0o644)
            key, cert = inner_key, inner_cert
        self.cmd(
            self.in_root(
                [self.sign_file_for(kernel), "sha256", self.root_path(key), self.root_path(cert), self.root_path(plain)]
            ),
            what="sign-file %s" % path,
            fix="check the signing key and certificate (%s)" % cert,
        )
        check_signature(self.modinfo(plain, "signer"), self.modinfo(plain, "sig_key"), facts, plain)
        data = read_file(plain, binary=True)
        if comp == "xz":
            data = lzma.compress(
                data, check=lzma.CHECK_CRC32, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]
            )
        elif comp == "gz":
            data = gzip.compress(data)
        atomic_write(path, data, 0o644)

    def built_module(self, version, kernel):
        base = os.path.join(DKMS_TREE, self.name, version, kernel, self.arch, "module", self.name)
        for suffix, _kind in COMPRESSIONS:
            if os.path.exists(base + suffix):
                return base + suffix
        raise KmodError(
            "dkms built %s/%s for %s but %s.ko* is missing: check BUILT_MODULE_NAME in dkms.conf"
            % (self.name, version, kernel, base)
        )

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
            os.path.exists("/sys/module/%s/initstate" % self.name)
            or os.path.exists("/sys/module/%s/refcnt" % self.name)
        )

    def service_active(self):
        systemctl = self.m.get_bin_path("systemctl")
        if not systemctl or not self.p["service"]:
            return False
        rc, _out, _err = self.cmd([systemctl, "is-active", "--quiet", self.p["service"]], check=False)
        return rc == 0

    def systemctl(self, verb):
        self.cmd(
            [self.m.get_bin_path("systemctl", required=True), verb, self.p["service"]],
            what="systemctl %s %s" % (verb, self.p["service"]),
        )

    def modprobe(self, remove=False):
        argv = [self.modprobe_bin] + (["-r"] if remove else []) + [self.name]
        rc, out, err = self.cmd(argv, check=False)
        if rc == 0:
            return
        why = last_line(err) or last_line(out)
        if remove:
            raise KmodError(
                "modprobe -r %s failed: %s: stop what holds it (lsmod | grep %s; poolctl sessions)"
                % (self.name, why, self.name)
            )
        if "key was rejected" in why.lower() or "required key not available" in why.lower():
            raise KmodError(
                "modprobe %s failed: %s: Secure Boot rejects the signing key: enrol it with "
                "enroll_mok: true and mok_password, then reboot and confirm in the MOK manager" % (self.name, why)
            )
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
            rc, _out, _err = self.cmd(
                [self.need_bin("openssl", "openssl"), "x509", "-in", cert, "-outform", "DER", "-out", der], check=False
            )
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
            raise KmodError(
                "mokutil --test-key %s gave no answer (%s): check mokutil and EFI variables"
                % (der, last_line(err) or last_line(out))
            )
        self.act("import %s into the MOK list" % der)
        self.result["reboot_required"] = True
        if self.check:
            return
        password = self.p["mok_password"]
        self.cmd(
            [mokutil, "--import", der],
            data="%s\n%s\n" % (password, password),
            what="mokutil --import %s" % der,
            fix="check Secure Boot firmware support, or import by hand: mokutil --import %s" % der,
        )
