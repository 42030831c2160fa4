# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ``poolctl --json`` on a node and parse what it prints.

``poolctl`` is the one userspace door to pool.ko (docs/poolctl-json.md is its
JSON contract). Modules call :func:`find_poolctl` once, then :func:`run_json`
for each command; every failure becomes a :class:`PoolctlError` whose message
is one line naming the command, the cause and, where known, the fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.pool.ops.plugins.module_utils.common import C_LOCALE, CommandError, last_line, read_file

# Where the node role installs the tools, then the usual places.
POOLCTL_DIRS = ["/usr/local/sbin", "/opt/pool/bin", "/usr/sbin", "/sbin"]

SYS_MODULE = "/sys/module/pool"
DEV_POOL = "/dev/pool"


class PoolctlError(CommandError):
    """A poolctl command failed; str() is one line for ``fail_json(msg=...)``."""


def find_tool(module, name, path=None):
    """Absolute path of a POOL tool (poolctl, pool_vault, ...), or None when it is not installed.

    ``path`` (the modules' ``<tool>_path`` option) wins when given; it must
    then exist and be executable, otherwise PoolctlError says so.
    """
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise PoolctlError(
            "%s_path %s is not an executable file: install the POOL tools "
            "(role pool.ops.node) or fix %s_path" % (name, path, name)
        )
    return module.get_bin_path(name, required=False, opt_dirs=POOLCTL_DIRS)


def require_tool(module, name, **result):
    """Absolute path of the POOL tool ``name`` (the module's ``<name>_path`` option wins when
    given), or fail_json, with ``result``, saying what is missing and how to install it."""
    try:
        tool = find_tool(module, name, module.params.get(name + "_path"))
    except PoolctlError as exc:
        module.fail_json(msg=str(exc), **result)
    if not tool:
        module.fail_json(msg="%s not found: install the POOL tools first (role pool.ops.node)" % name, **result)
    return tool


def find_poolctl(module, path=None):
    """Absolute path of poolctl, or None when it is not installed (see find_tool)."""
    return find_tool(module, "poolctl", path)


def run_json(module, poolctl, args, data=None):
    """Run ``poolctl --json ARGS`` (or another POOL tool's) and return the parsed JSON document.

    Raises PoolctlError with the tool's own one-line error (stderr) when it
    exits non-zero, and a clear message when stdout is not one JSON document.
    """
    cmd = [poolctl, "--json", *args]
    rc, out, err = module.run_command(cmd, data=data, binary_data=data is not None, environ_update=dict(C_LOCALE))
    what = "%s --json %s" % (os.path.basename(poolctl), " ".join(args))
    if rc != 0:
        why = last_line(err) or last_line(out) or "no error message"
        raise PoolctlError("%s failed (exit %d): %s" % (what, rc, why), rc=rc, stdout=out, stderr=err)
    try:
        doc = json.loads(out)
    except ValueError as exc:
        raise PoolctlError(
            "%s printed no valid JSON (%s): upgrade the POOL tools on this node" % (what, exc),
            rc=rc,
            stdout=out,
            stderr=err,
        ) from None
    return doc


def read_text(path):
    """Contents of a small sysfs/procfs file, stripped, or None if unreadable."""
    text = read_file(path)
    return None if text is None else text.strip()


def kernel_module_facts(module):
    """What the kernel and modinfo say about pool.ko, without poolctl.

    Returns a dict: loaded, version, srcversion, taint, parameters (loaded
    module) and, from ``modinfo`` for the running kernel, filename, signer,
    sig_key, installed_version, installed_srcversion.
    """
    facts = {
        "loaded": os.path.isdir(SYS_MODULE),
        "version": None,
        "srcversion": None,
        "taint": None,
        "parameters": {},
        "filename": None,
        "signer": None,
        "sig_key": None,
        "installed_version": None,
        "installed_srcversion": None,
        "device": None,
    }
    if facts["loaded"]:
        facts["version"] = read_text(os.path.join(SYS_MODULE, "version"))
        facts["srcversion"] = read_text(os.path.join(SYS_MODULE, "srcversion"))
        facts["taint"] = read_text(os.path.join(SYS_MODULE, "taint"))
        pdir = os.path.join(SYS_MODULE, "parameters")
        if os.path.isdir(pdir):
            for name in sorted(os.listdir(pdir)):
                value = read_text(os.path.join(pdir, name))
                if value is not None:
                    facts["parameters"][name] = int(value) if value.lstrip("-").isdigit() else value
    if os.path.exists(DEV_POOL):
        st = os.stat(DEV_POOL)
        facts["device"] = {"path": DEV_POOL, "mode": "%04o" % (st.st_mode & 0o7777), "uid": st.st_uid, "gid": st.st_gid}
    modinfo = module.get_bin_path("modinfo", required=False, opt_dirs=["/sbin", "/usr/sbin"])
    if modinfo:
        fields = {
            "filename": "filename",
            "signer": "signer",
            "sig_key": "sig_key",
            "installed_version": "version",
            "installed_srcversion": "srcversion",
        }
        rc, out, _err = module.run_command([modinfo, "pool"], environ_update=dict(C_LOCALE))
        if rc == 0:
            parsed = parse_modinfo(out)
            for key, field in fields.items():
                facts[key] = parsed.get(field)
    return facts


def parse_modinfo(text):
    """``modinfo`` output (``field: value`` lines) as a dict of first values."""
    result = {}
    last = None
    for line in text.splitlines():
        if ":" in line and not line.startswith((" ", "\t")):
            key, value = line.split(":", 1)
            key = key.strip()
            last = key
            if key not in result:
                result[key] = value.strip()
        elif last and line.startswith(("\t", " ")) and last in ("sig_key", "signature"):
            # continuation lines of long hex fields
            result[last] = result[last] + line.strip()
    return result
