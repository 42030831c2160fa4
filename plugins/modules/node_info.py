#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_info
short_description: Facts about POOL (pool.ko, identity, peers, sessions) on a node
version_added: 0.2.0
description:
  - Reports whether the pool.ko kernel module is loaded and which build it is (version, srcversion, signer),
    read from C(/sys/module/pool) and C(modinfo).
  - When the module is loaded and C(poolctl) is installed, also reports the node identity (public key and POOL
    address), the trust store, the sessions with their telemetry, the active configuration version, the listener
    and the head of the change journal, all read through C(poolctl --json).
  - Works on nodes without POOL; the result then says C(loaded=false) with empty fields.
  - Changes nothing.
  - Called C(pool.ops.info) before 0.2.0; that name still works, with a deprecation warning, until 1.0.0.
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Reports no changes.
options:
  gather:
    description:
      - The parts to read through C(poolctl). C(module) facts (sysfs and modinfo) are always gathered.
    type: list
    elements: str
    choices: [identity, peers, sessions, config, journal, stats]
    default: [identity, peers, sessions, config, journal, stats]
  poolctl_path:
    description:
      - Path of C(poolctl). By default it is searched in E(PATH), C(/usr/local/sbin) and C(/opt/pool/bin).
    type: path
  ignore_errors_from_poolctl:
    description:
      - When V(true), a failing C(poolctl) command is reported in RV(errors) instead of failing the task.
    type: bool
    default: false
requirements:
  - The POOL tools (C(poolctl)) on the node for anything beyond the kernel module facts.
notes:
  - Runs as root to read C(/dev/pool) (mode 0600).
seealso:
  - module: pool.ops.identity
"""

EXAMPLES = r"""
- name: Read the POOL facts of every node
  pool.ops.node_info:
  register: pool_info

- name: Show the sessions of this node
  ansible.builtin.debug:
    var: pool_info.sessions

- name: Wait until the listener is up
  pool.ops.node_info:
    gather: [stats]
  register: pool_info
  until: pool_info.listening
  retries: 10
  delay: 3

- name: Only the kernel module (works before the tools are installed)
  pool.ops.node_info:
    gather: []
  register: pool_kmod
"""

RETURN = r"""
loaded:
  description: Whether pool.ko is loaded (C(/sys/module/pool) exists).
  returned: always
  type: bool
  sample: true
poolctl:
  description: Path of the poolctl used, or null when it is not installed.
  returned: always
  type: str
  sample: /usr/local/sbin/poolctl
module:
  description: The kernel module, from sysfs (loaded build) and modinfo (the file the running kernel would load).
  returned: always
  type: dict
  contains:
    loaded:
      description: Same as RV(loaded).
      type: bool
    version:
      description: MODULE_VERSION of the loaded module, null when not loaded.
      type: str
      sample: 0.1.0+3f2a9c1b7d4e
    srcversion:
      description: srcversion of the loaded module.
      type: str
      sample: 5E1C3A0B9F1D2C3B4A5F6E7
    taint:
      description: Taint flags of the loaded module (C(E) means unsigned with enforcement off, C(O) out-of-tree).
      type: str
      sample: O
    parameters:
      description: Module parameters of the loaded module (numbers as integers).
      type: dict
      sample: {"port": 9253, "heartbeat_seconds": 5}
    filename:
      description: Path of pool.ko for the running kernel per modinfo.
      type: str
      sample: /lib/modules/6.1.0-28-amd64/updates/dkms/pool.ko
    signer:
      description: Signer of that file (subject CN of the signing certificate), null when unsigned.
      type: str
      sample: POOL module signing key
    sig_key:
      description: Key identifier of the signature.
      type: str
    installed_version:
      description: Version of that file.
      type: str
    installed_srcversion:
      description: srcversion of that file.
      type: str
    device:
      description: C(/dev/pool) path, octal mode, uid and gid; null when absent.
      type: dict
      sample: {"path": "/dev/pool", "mode": "0600", "uid": 0, "gid": 0}
identity:
  description: The node identity loaded in the kernel (public key and address; never the private key).
  returned: when loaded and identity is gathered
  type: dict
  sample: {"public_key": "q1Zk...=", "address": "00000000:00000000:...", "org_id": 0, "segment_id": 0, "set": true}
public_key:
  description: The node's public key (base64), null when no identity is set or unknown.
  returned: always
  type: str
address:
  description: The node's POOL address, null when unknown.
  returned: always
  type: str
peers:
  description: The trust store, as poolctl reports it (public_key, name, endpoint, counters).
  returned: always
  type: list
  elements: dict
sessions:
  description: The sessions with their state and telemetry, as poolctl reports them.
  returned: always
  type: list
  elements: dict
config:
  description: The active configuration (version, hash, tentative, previous version), as poolctl reports it.
  returned: when loaded and config is gathered
  type: dict
config_version:
  description: The active configuration version, null when unknown.
  returned: always
  type: int
journal_head:
  description: Hash (hex) of the newest journal entry, null when unknown.
  returned: always
  type: str
journal_next_seq:
  description: Sequence number the next journal entry will get, null when unknown.
  returned: always
  type: int
stats:
  description: Node-wide counters, as poolctl reports them.
  returned: when loaded and stats is gathered
  type: dict
listening:
  description: Whether the listener is up (from stats), null when unknown.
  returned: always
  type: bool
listen_port:
  description: The port the listener uses, null when unknown.
  returned: always
  type: int
errors:
  description: Errors of poolctl commands when O(ignore_errors_from_poolctl=true), by part.
  returned: always
  type: dict
  sample: {}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils.poolctl import (
    PoolctlError,
    find_poolctl,
    kernel_module_facts,
    run_json,
)

PARTS = ["identity", "peers", "sessions", "config", "journal", "stats"]

# poolctl subcommands per part (docs/poolctl-json.md)
COMMANDS = {
    "identity": ["identity", "show"],
    "peers": ["peers", "list"],
    "sessions": ["sessions"],
    "config": ["config", "show"],
    "journal": ["journal", "show", "--last", "1"],
    "stats": ["stats"],
}


def _as_list(doc, key):
    """poolctl prints lists either bare or as {key: [...]}."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get(key), list):
        return doc[key]
    return []


def _first(doc, *keys):
    if not isinstance(doc, dict):
        return None
    for key in keys:
        if doc.get(key) is not None:
            return doc[key]
    return None


def summarize(result, part, doc):
    """Fold one poolctl document into the module result."""
    if part == "identity":
        ident = doc.get("identity", doc) if isinstance(doc, dict) else {}
        result["identity"] = ident
        is_set = ident.get("set", bool(ident.get("public_key")))
        result["public_key"] = ident.get("public_key") if is_set else None
        result["address"] = ident.get("address") if is_set else None
    elif part == "peers":
        result["peers"] = _as_list(doc, "peers")
    elif part == "sessions":
        result["sessions"] = _as_list(doc, "sessions")
    elif part == "config":
        config = doc.get("config", doc) if isinstance(doc, dict) else {}
        result["config"] = config
        result["config_version"] = _first(config, "version", "config_version")
    elif part == "journal":
        result["journal_head"] = _first(doc, "head_hash", "head")
        result["journal_next_seq"] = _first(doc, "next_seq")
        entries = _as_list(doc, "entries")
        if result["journal_head"] is None and entries:
            result["journal_head"] = entries[-1].get("hash")
        if result["journal_next_seq"] is None and entries and entries[-1].get("seq") is not None:
            result["journal_next_seq"] = entries[-1]["seq"] + 1
    elif part == "stats":
        stats = doc.get("stats", doc) if isinstance(doc, dict) else {}
        result["stats"] = stats
        listening = _first(stats, "listening")
        result["listening"] = None if listening is None else bool(listening)
        result["listen_port"] = _first(stats, "listen_port")


def gather(module, params):
    kmod = kernel_module_facts(module)
    result = {
        "changed": False,
        "loaded": kmod["loaded"],
        "module": kmod,
        "poolctl": None,
        "public_key": None,
        "address": None,
        "peers": [],
        "sessions": [],
        "config_version": None,
        "journal_head": None,
        "journal_next_seq": None,
        "listening": None,
        "listen_port": None,
        "errors": {},
    }
    try:
        poolctl = find_poolctl(module, params["poolctl_path"])
    except PoolctlError as exc:
        module.fail_json(msg=str(exc), **result)
    result["poolctl"] = poolctl
    if not kmod["loaded"] or not poolctl:
        return result
    for part in PARTS:
        if part not in params["gather"]:
            continue
        try:
            doc = run_json(module, poolctl, COMMANDS[part])
        except PoolctlError as exc:
            if not params["ignore_errors_from_poolctl"]:
                module.fail_json(msg=str(exc), rc=exc.rc, stdout=exc.stdout, stderr=exc.stderr, **result)
            result["errors"][part] = str(exc)
            continue
        summarize(result, part, doc)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type="list", elements="str", choices=PARTS, default=list(PARTS)),
            poolctl_path=dict(type="path"),
            ignore_errors_from_poolctl=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**gather(module, module.params))


if __name__ == "__main__":
    main()
