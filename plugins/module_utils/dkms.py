# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DKMS helpers for pool.ops.kmod: pure functions, no side effects on the host.

- which files of a module source tree count (:func:`source_files`) and the
  content hash over their paths and contents (:func:`source_hash`);
- the version "<VERSION>+<12 hex of that hash>" (:func:`compute_version`) and
  dkms.conf with PACKAGE_VERSION rewritten to it (:func:`render_dkms_conf`);
- ``dkms status`` parsing (:func:`parse_status`), for dkms 2 and 3 formats;
- modprobe.d / modules-load.d rendering;
- appended module signatures (:func:`strip_signature`) and the certificate
  facts ``modinfo`` reports (:func:`parse_openssl_x509`, :func:`serial_matches`).

The action plugin (controller) and the module (node) both use
:func:`source_files`, so the tree shipped is exactly the tree hashed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import io
import os
import re
import struct
import tarfile

HASH_LEN = 12
MANAGED_MARKER = ".pool-ops-managed"

# Build outputs and editor/VCS litter never count as source.
_EXCLUDED_NAMES = frozenset(["Module.symvers", "modules.order", "Module.markers", "__pycache__"])
_EXCLUDED_SUFFIXES = (
    ".o",
    ".ko",
    ".ko.xz",
    ".ko.zst",
    ".ko.gz",
    ".mod",
    ".mod.c",
    ".mod.o",
    ".cmd",
    ".a",
    ".dwo",
    ".pyc",
    ".orig",
    ".rej",
    ".swp",
    "~",
)

_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._~-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# "pool/0.1.0+abc, 6.1.0-27-amd64, x86_64: installed (WARNING! ...)"   dkms 3
# "pool, 0.1.0, 6.1.0-27-amd64, x86_64: installed"                      dkms 2
# "pool/0.1.0+abc: added"
_STATUS_RE = re.compile(
    r"^(?P<name>[^/,:\s]+)(?:/|,\s*)(?P<version>[^,:\s]+)"
    r"(?:,\s*(?P<kernel>[^,:\s]+),\s*(?P<arch>[^,:\s]+))?"
    r":\s*(?P<state>added|built|installed-weak|installed|broken)(?P<note>.*)$"
)

SIG_MAGIC = b"~Module signature appended~\n"
_SIG_INFO = struct.Struct(">BBBBB3xI")  # struct module_signature, 12 bytes


class SourceError(ValueError):
    """The module source tree is unusable; str() says why and what to fix."""


def _excluded(name):
    if name.startswith(".") or name in _EXCLUDED_NAMES:
        return True
    return name.endswith(_EXCLUDED_SUFFIXES)


def source_files(root):
    """Sorted relative POSIX paths of the source files under ``root``.

    Hidden files and folders, build outputs and editor litter are left out.
    Symbolic links to files count by their content; links to folders are not
    followed.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _excluded(d))
        rel = os.path.relpath(folder, root)
        for name in files:
            if _excluded(name):
                continue
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            found.append(name if rel == "." else "/".join([*rel.split(os.sep), name]))
    return sorted(found)


def hash_contents(contents):
    """SHA-256 (hex) over ``{relpath: bytes}``: each path, then its length and bytes.

    Length-prefixing makes the encoding unambiguous: moving bytes from one file
    to another, or renaming a file, always changes the hash.
    """
    h = hashlib.sha256()
    for rel in sorted(contents):
        data = contents[rel]
        path = rel.encode("utf-8")
        h.update(struct.pack(">Q", len(path)))
        h.update(path)
        h.update(struct.pack(">Q", len(data)))
        h.update(data)
    return h.hexdigest()


def read_tree(root, files=None):
    """``{relpath: bytes}`` for the source files under ``root``."""
    if files is None:
        files = source_files(root)
    contents = {}
    for rel in files:
        with open(os.path.join(root, *rel.split("/")), "rb") as f:
            contents[rel] = f.read()
    return contents


def source_hash(root, files=None):
    """Hex SHA-256 over the source files' paths and contents under ``root``."""
    return hash_contents(read_tree(root, files))


def read_base_version(contents):
    """The VERSION file's text from ``{relpath: bytes}``; SourceError if missing or bad."""
    raw = contents.get("VERSION")
    if raw is None:
        raise SourceError("VERSION file missing from the module source: add one holding e.g. 0.1.0")
    text = raw.decode("utf-8", "replace").strip()
    if not _VERSION_RE.match(text):
        raise SourceError("VERSION holds %r, not a version like 0.1.0: fix the VERSION file" % text)
    return text


def compute_version(base, digest):
    """``<base>+<first 12 hex digits of digest>``."""
    return "%s+%s" % (base, digest[:HASH_LEN])


def conf_value(text, key):
    """The value of ``KEY=...`` (quotes removed) in a dkms.conf text, or None."""
    m = re.search(r"^\s*%s\s*=\s*(.*?)\s*$" % re.escape(key), text, re.MULTILINE)
    if not m:
        return None
    value = m.group(1)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def render_dkms_conf(text, version):
    """dkms.conf ``text`` with PACKAGE_VERSION set to ``version``."""
    new, count = re.subn(
        r"^(\s*)PACKAGE_VERSION\s*=.*$",
        lambda m: '%sPACKAGE_VERSION="%s"' % (m.group(1), version),
        text,
        flags=re.MULTILINE,
    )
    if count != 1:
        raise SourceError("dkms.conf has %d PACKAGE_VERSION lines, expected exactly one: fix kmod/dkms.conf" % count)
    return new


def validate_name(name):
    if not _NAME_RE.match(name or ""):
        raise SourceError("module name %r is not valid: use letters, digits, _ and -" % name)


def prepare_tree(contents, name):
    """Check a source tree and compute what ships to /usr/src.

    Returns ``(version, rendered)`` where ``rendered`` is ``{relpath: bytes}``
    with dkms.conf's PACKAGE_VERSION rewritten to the content version.
    """
    validate_name(name)
    conf = contents.get("dkms.conf")
    if conf is None:
        raise SourceError("dkms.conf missing from the module source: add it (see docs/module-kmod.md)")
    conf_text = conf.decode("utf-8", "replace")
    package = conf_value(conf_text, "PACKAGE_NAME")
    if package != name:
        raise SourceError(
            "dkms.conf says PACKAGE_NAME=%r but the module name is %r: set name: %s or fix dkms.conf"
            % (package, name, package)
        )
    version = compute_version(read_base_version(contents), hash_contents(contents))
    rendered = dict(contents)
    rendered["dkms.conf"] = render_dkms_conf(conf_text, version).encode("utf-8")
    return version, rendered


class StatusEntry:
    """One line of ``dkms status``."""

    def __init__(self, name, version, kernel, arch, state, note=""):
        self.name = name
        self.version = version
        self.kernel = kernel
        self.arch = arch
        self.state = state
        self.note = note

    def __repr__(self):
        return "StatusEntry(%r, %r, %r, %r, %r)" % (self.name, self.version, self.kernel, self.arch, self.state)

    def __eq__(self, other):
        return isinstance(other, StatusEntry) and repr(self) == repr(other)


def build_failure(make_log, limit=3):
    """Why a DKMS build failed, from its make.log: the compiler's first error lines (what a
    person fixes), else the log's last lines; empty for an empty log."""
    lines = [line.strip() for line in (make_log or "").splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line or ": fatal error: " in line]
    return " | ".join((errors or lines[-limit:])[:limit])


def parse_status(output, name=None):
    """Entries of ``dkms status`` output (dkms 2 or 3 format), optionally for one module name."""
    entries = []
    for line in (output or "").splitlines():
        m = _STATUS_RE.match(line.strip())
        if not m:
            continue
        if name is not None and m.group("name") != name:
            continue
        entries.append(
            StatusEntry(
                m.group("name"),
                m.group("version"),
                m.group("kernel"),
                m.group("arch"),
                m.group("state"),
                m.group("note").strip(),
            )
        )
    return entries


def status_versions(entries):
    """Every version the entries mention, in order of first appearance."""
    seen = []
    for e in entries:
        if e.version not in seen:
            seen.append(e.version)
    return seen


def status_state(entries, version, kernel):
    """``added``/``built``/``installed`` for version on kernel, ``added`` if only added, or None."""
    state = None
    for e in entries:
        if e.version != version:
            continue
        if e.kernel is None:
            state = state or "added"
        elif e.kernel == kernel:
            return "installed" if e.state.startswith("installed") else e.state
    return state


def installed_versions(entries, kernel):
    """Versions installed on ``kernel``."""
    return [e.version for e in entries if e.kernel == kernel and e.state.startswith("installed")]


def render_param(value):
    """A module parameter value as modprobe.d wants it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(render_param(v) for v in value)
    text = str(value)
    if not text or any(c.isspace() for c in text) or "#" in text:
        raise SourceError(
            "module parameter value %r is empty or holds spaces or '#': modprobe.d cannot express it" % text
        )
    return text


def render_modprobe_conf(name, params):
    """Text of /etc/modprobe.d/<name>.conf for ``params`` (sorted, one options line)."""
    lines = ["# Managed by Ansible (pool.ops.kmod): options for %s.ko; changes here are overwritten." % name]
    if params:
        parts = []
        for key in sorted(params):
            if not _PARAM_NAME_RE.match(key):
                raise SourceError("module parameter name %r is not valid: use letters, digits and _" % key)
            parts.append("%s=%s" % (key, render_param(params[key])))
        lines.append("options %s %s" % (name, " ".join(parts)))
    return "\n".join(lines) + "\n"


def render_modules_load(name):
    """Text of /etc/modules-load.d/<name>.conf."""
    return "# Managed by Ansible (pool.ops.kmod): load %s.ko at boot.\n%s\n" % (name, name)


def strip_signature(data):
    """Module bytes without any appended signature (all of them, if several)."""
    while data.endswith(SIG_MAGIC):
        end = len(data) - len(SIG_MAGIC)
        if end < _SIG_INFO.size:
            raise ValueError("truncated module signature")
        _algo, _hash, _id_type, signer_len, key_id_len, sig_len = _SIG_INFO.unpack(data[end - _SIG_INFO.size : end])
        total = _SIG_INFO.size + sig_len + signer_len + key_id_len
        if total > end:
            raise ValueError("module signature length exceeds the module")
        data = data[: end - total]
    return data


def is_signed(data):
    return data.endswith(SIG_MAGIC)


def parse_openssl_x509(text):
    """Subject CN, issuer CN and serial (hex) from
    ``openssl x509 -noout -subject -issuer -serial -nameopt multiline,utf8``."""
    facts = {"subject_cn": None, "issuer_cn": None, "serial": None}
    section = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith("subject="):
            section = "subject_cn"
            rest = line[len("subject=") :].strip()
        elif line.startswith("issuer="):
            section = "issuer_cn"
            rest = line[len("issuer=") :].strip()
        elif line.startswith("serial="):
            facts["serial"] = line[len("serial=") :].strip().lower()
            section = None
            continue
        else:
            rest = line
        m = re.match(r"^(?:commonName|CN)\s*=\s*(.*)$", rest)
        if m and section and facts[section] is None:
            facts[section] = m.group(1).strip()
    return facts


def normalize_serial(text):
    """Serial or modinfo sig_key ("1A:2B:..") as lower-case hex without colons or leading zeros."""
    return re.sub(r"[^0-9a-f]", "", (text or "").lower()).lstrip("0") or "0"


def serial_matches(sig_key, serial):
    return bool(sig_key) and bool(serial) and normalize_serial(sig_key) == normalize_serial(serial)


def expected_signers(facts):
    """Names ``modinfo -F signer`` may print for a certificate: kmod reports the
    issuer's CN, which is the subject's for the self-signed certificates used here."""
    names = []
    for key in ("subject_cn", "issuer_cn"):
        if facts.get(key) and facts[key] not in names:
            names.append(facts[key])
    return names


def signature_ok(signer, sig_key, facts):
    """True when modinfo's signer and sig_key name this certificate."""
    return bool(signer) and signer in expected_signers(facts) and serial_matches(sig_key, facts.get("serial"))


def write_tar(contents, fileobj):
    """Write ``{relpath: bytes}`` as a deterministic tar to ``fileobj``."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(contents):
            data = contents[rel]
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))


def read_tar(path):
    """``{relpath: bytes}`` from a tar written by :func:`write_tar`; only regular
    files with safe relative paths are accepted (SourceError otherwise)."""
    contents = {}
    with tarfile.open(path, mode="r:*") as tar:
        for member in tar:
            if member.isdir():
                continue
            rel = member.name
            parts = rel.split("/")
            if not member.isfile() or rel.startswith("/") or ".." in parts or "" in parts:
                raise SourceError("source archive %s holds an unsafe entry %r: ship plain files only" % (path, rel))
            f = tar.extractfile(member)
            contents[rel] = f.read() if f is not None else b""
    return contents
