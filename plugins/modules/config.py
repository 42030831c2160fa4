#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: config
short_description: Apply a POOL configuration version with commit-confirmed rollback driven by health checks
version_added: 0.1.0
description:
  - Applies a configuration version to pool.ko (tunables and the whole trust store, see docs/protocol.md
    section 7) through C(poolctl config apply) as a tentative version, runs health checks, and confirms the
    version only when they pass. When a check fails the module rolls the version back and fails saying what
    failed; if the module itself is cut off, pool.ko restores the previous version by itself at the deadline
    (O(confirm_within)).
  - The default health check waits until every peer of the new configuration has an established session
    (read with C(poolctl --json sessions)) within O(health_timeout); O(health_command) adds a command of the
    user's that must exit 0 within the same time.
  - Idempotent. When the document's canonical hash is the active version's, nothing is applied and
    C(changed) is false. A version that an earlier run left tentative with the same content is checked and
    confirmed.
  - O(rollback=true) restores the previous version (the kernel's rollback); O(rollback_to) applies a stored
    version's content as a new, confirmed version. Neither runs health checks.
  - Values out of the ranges pool.ko accepts are refused before anything changes, with a message naming
    the key.
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: Validates the document and reports the change and the version it would get; changes nothing.
  diff_mode:
    support: full
    description: The canonical pretty form (sorted keys, 2-space indent) of the active version and of the new one.
  platform:
    support: full
    platforms: posix
    description: Runs on the POOL node, Linux with pool.ko loaded.
options:
  config:
    description:
      - The configuration document (docs/protocol.md section 7). A key left out takes pool.ko's default.
      - The controller checks it before anything reaches the node (the action plugin validates the same
        specification), so a wrong type, a missing field or a value pool.ko refuses fails naming the field.
      - A template can be rendered into it with the C(ansible.builtin.template) lookup and the C(from_json)
        filter; the role C(pool.ops.config) does this (its variable C(pool_config_src)).
      - Mutually exclusive with O(rollback_to); O(rollback=true) takes no O(config).
    type: dict
    suboptions:
      heartbeat_seconds:
        description: Seconds between heartbeats on every session, 1-3600 (pool.ko's default 5).
        type: int
      rekey_seconds:
        description: Seconds after which a session rekeys, 5-2147483648 (default 3600).
        type: int
      rekey_packets:
        description: Packets after which a session rekeys, 1-4294967295 (default 1073741824).
        type: int
      puzzle_difficulty:
        description: Leading zero bits of the handshake puzzle asked of unknown initiators, 0-20 (default 16).
        type: int
      max_sessions:
        description: Sessions pool.ko holds at most, 1-65536 (default 256).
        type: int
      peers:
        description: The whole trust store; a peer left out is no longer trusted. Left out, no peer is trusted.
        type: list
        elements: dict
        suboptions:
          name:
            description: The peer's name on this node (letters, digits, C(.), C(_), C(-); at most 31 characters).
            type: str
            required: true
          public_key:
            description: The peer's static public key (base64, 44 characters).
            type: str
            required: true
          endpoint:
            description: Where the peer listens, C(a.b.c.d:port) or C([v6]:port); left out, this node only accepts.
            type: str
          relays:
            description:
              - Names of other peers of the document, tried in order through pool_relay when the endpoint fails.
            type: list
            elements: str
  confirm_within:
    description:
      - Seconds pool.ko waits for the confirmation before it restores the previous version by itself. Must be
        longer than O(health_timeout). V(0) applies the version confirmed at once (a failing health check then
        still rolls it back, but nothing does if the module is cut off).
    type: int
    default: 60
  health_timeout:
    description:
      - Seconds the health checks may take in total.
    type: int
    default: 30
  health_peers:
    description:
      - When V(true), every peer of the new configuration must have an established session within
        O(health_timeout).
    type: bool
    default: true
  health_command:
    description:
      - A command run with C(/bin/sh -c) on the node after the peer check; it must exit 0 before
        O(health_timeout) ends. It is retried every second until then.
    type: str
  rollback:
    description:
      - V(true) restores the version pool.ko kept before the active one (C(poolctl config rollback)). Always a
        change; fails when pool.ko keeps no previous version (use O(rollback_to)).
    type: bool
    default: false
  rollback_to:
    description:
      - Applies the content of this stored version (C(poolctl config history)) as a new version, confirmed at
        once. No change when that content is already active.
    type: int
  state_dir:
    description:
      - Where C(poolctl) keeps the versions (C(state_dir/config)). By default C(poolctl) uses C(state_dir) of
        C(/etc/pool/pool.conf), else C(/var/lib/pool).
    type: path
  poolctl_path:
    description:
      - Path of C(poolctl). By default it is searched in E(PATH), C(/usr/local/sbin) and C(/opt/pool/bin).
    type: path
requirements:
  - The POOL tools (C(poolctl)) and a loaded pool.ko on the node; C(poold) running for sessions to come back.
notes:
  - pool.ko keeps up to 8 earlier versions; each O(rollback=true) goes one further back, down to version 0
    (the module's load-time parameters), and fails when none is left.
  - The health check reads sessions of this node only. Peers that change their keys must be rolled out on
    both sides (for example with C(serial) and the same O(confirm_within)).
seealso:
  - module: pool.ops.node_info
"""

EXAMPLES = r"""
- name: Apply a configuration, confirm it when every peer is back within 30 s
  pool.ops.config:
    config:
      heartbeat_seconds: 5
      rekey_seconds: 3600
      puzzle_difficulty: 16
      max_sessions: 256
      peers:
        - name: node2
          public_key: 0vWu1N4p0Tz3yvq7c2pp8E3v6l0w6I+3P1nF0M4x3Ds=
          endpoint: 10.253.0.12:9253
    confirm_within: 60
    health_timeout: 30
    health_command: ping -c 1 -W 2 10.253.0.12
  register: pool_config

- name: Show the version now active
  ansible.builtin.debug:
    msg: "version {{ pool_config.version }} ({{ pool_config.hash }}), was {{ pool_config.previous_version }}"

- name: Roll back to the previous version (ad hoc)
  pool.ops.config:
    rollback: true

- name: Apply the content of stored version 3 again
  pool.ops.config:
    rollback_to: 3
"""

RETURN = r"""
version:
  description: The active version after the task (in check mode, the version the change would get).
  returned: always
  type: int
  sample: 7
hash:
  description: SHA-256 (hex) of the active version's canonical form (in check mode, of the new document).
  returned: always
  type: str
  sample: 72e3a9e587c31e2a7fa4fbfc484688efeb5fceb1d1f18cd882691125941d3524
previous_version:
  description: The version active before the task (0 when pool.ko ran its load-time parameters).
  returned: always
  type: int
  sample: 6
tentative:
  description: Whether the active version still awaits confirmation (false after a successful run).
  returned: always
  type: bool
  sample: false
rolled_back:
  description: Whether the task rolled a version back (O(rollback), or a failed health check).
  returned: always
  type: bool
  sample: false
seconds_to_confirm:
  description: Seconds from the apply to the confirmation (health checks included); for benchmarks.
  returned: when a version was applied and confirmed
  type: float
  sample: 2.35
health:
  description: What the health checks found; empty when none ran.
  returned: always
  type: dict
  contains:
    peers_missing:
      description: Names of the peers without an established session when the checks ended.
      type: list
      elements: str
      sample: []
    command_rc:
      description: Exit status of O(health_command)'s last run, null when it did not run.
      type: int
      sample: 0
    seconds:
      description: How long the checks took.
      type: float
      sample: 2.1
    session_states:
      description:
        - For each peer the checks waited for, the states of its sessions at the last look (empty list
          when it had none), from C(poolctl sessions); tells a peer never reached from a handshake that
          did not finish.
      type: dict
      sample: {"node2": ["established"]}
  sample: {"peers_missing": [], "command_rc": null, "seconds": 2.1, "session_states": {"node2": ["established"]}}
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils.config_doc import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_IF,
    document,
    problems,
)
from ansible_collections.pool.ops.plugins.module_utils.poolctl import (
    PoolctlError,
    require_tool,
    run_json,
)

EXIT_BUSY = 8  # poolctl: the version is no longer the active one (docs/poolctl-json.md)
LIVE = ("established", "rekeying")


def pretty(doc):
    return "" if doc is None else json.dumps(doc, sort_keys=True, indent=2) + "\n"


class Config(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.result = {
            "changed": False,
            "version": 0,
            "hash": "",
            "previous_version": 0,
            "tentative": False,
            "rolled_back": False,
            "health": {},
        }
        self.poolctl = require_tool(module, "poolctl", **self.result)

    def fail(self, msg, **extra):
        self.result.update(extra)
        if not self.result["hash"] and self.poolctl:
            self.current()
        self.module.fail_json(msg=msg, **self.result)

    def current(self):
        """The active version into the result, for a failure before anything was read (bad input)."""
        try:
            doc = run_json(self.module, self.poolctl, ["config", "show"])
        except PoolctlError:
            return
        self.result["version"] = doc.get("version", 0)
        self.result["hash"] = doc.get("hash", "")
        self.result["previous_version"] = doc.get("prev_version", 0)
        self.result["tentative"] = doc.get("tentative", False)

    def run(self, args, data=None):
        if self.params["state_dir"] and args[0] == "config" and args[1] != "show":
            args = [*args, "--state-dir", self.params["state_dir"]]
        try:
            return run_json(self.module, self.poolctl, args, data=data)
        except PoolctlError as exc:
            self.fail(str(exc), rc=exc.rc, stderr=exc.stderr)

    def run_rc(self, args):
        """(rc, doc or None) without failing: for confirm/rollback races with the kernel's deadline."""
        if self.params["state_dir"]:
            args = [*args, "--state-dir", self.params["state_dir"]]
        try:
            return 0, run_json(self.module, self.poolctl, args)
        except PoolctlError as exc:
            return exc.rc, exc

    def take(self, doc):
        for key in ("version", "hash", "previous_version", "tentative"):
            if key in doc:
                self.result[key] = doc[key]

    def diff(self, doc):
        if doc.get("changed"):
            before = doc.get("before")
            self.result["diff"] = {
                "before": pretty(before),
                "after": pretty(doc.get("after")),
                "before_header": "version %s" % doc.get("previous_version"),
                "after_header": "version %s" % doc.get("version"),
            }

    # ---- health checks
    def health(self, cfg):
        """None when healthy, else a message saying what failed."""
        p = self.params
        start = time.monotonic()
        deadline = start + p["health_timeout"]
        want = dict((peer["public_key"], peer["name"]) for peer in cfg.get("peers", [])) if p["health_peers"] else {}
        missing = sorted(want.values())
        seen = {}  # peer name -> the states of its sessions at the last look, for the failure message
        rc = None
        while True:
            if want:
                doc = self.run(["sessions"])
                sessions = doc.get("sessions", [])
                up = set(s.get("peer_public_key") for s in sessions if s.get("state") in LIVE)
                missing = sorted(name for key, name in want.items() if key not in up)
                seen = dict(
                    (name, sorted(set(s.get("state") for s in sessions if s.get("peer_public_key") == key)))
                    for key, name in want.items()
                )
            if not missing and p["health_command"]:
                rc, _out, _err = self.module.run_command(["/bin/sh", "-c", p["health_command"]])
            if not missing and rc in (None, 0):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(1)
        self.result["health"] = {
            "peers_missing": missing,
            "command_rc": rc,
            "seconds": round(time.monotonic() - start, 1),
            "session_states": seen,
        }
        problems = []
        if missing:
            problems.append(
                "no established session within %d s with peer(s) %s"
                % (
                    p["health_timeout"],
                    ", ".join(
                        "%s (%s)" % (name, "sessions: " + "/".join(seen[name]) if seen.get(name) else "no session")
                        for name in missing
                    ),
                )
            )
        elif rc not in (None, 0):
            problems.append("health_command exited %d (still failing after %d s)" % (rc, p["health_timeout"]))
        return "; ".join(problems) or None

    # ---- actions
    def apply(self):
        p = self.params
        data = json.dumps(document(p["config"]))
        window = ["--confirm-within", str(p["confirm_within"])]
        dry = self.run(["config", "apply", "-", "--dry-run", *window], data=data)
        self.take(dry)
        self.diff(dry)
        pending = not dry["changed"] and dry.get("tentative")
        if not dry["changed"] and not pending:
            return
        self.result["changed"] = True
        if self.module.check_mode:
            return
        started = time.monotonic()
        if pending:
            version = dry["version"]
        else:
            doc = self.run(["config", "apply", "-", *window], data=data)
            self.take(doc)
            version = doc["version"]
        problem = self.health(dry["after"])
        if problem is None:
            rc, doc = self.run_rc(["config", "confirm", "--version", str(version)])
            if rc == 0:
                self.take(doc)
                self.result["tentative"] = False
                self.result["seconds_to_confirm"] = round(time.monotonic() - started, 2)
                return
            if rc == EXIT_BUSY:
                self.refresh()
                self.fail(
                    "version %d passed the health checks but pool.ko had already rolled it back at its "
                    "deadline: raise confirm_within above health_timeout (%d s)" % (version, p["health_timeout"]),
                    rolled_back=True,
                )
            self.fail(
                "confirming version %d failed: %s: it stays tentative and pool.ko restores the previous version "
                "at its deadline" % (version, doc),
                rc=rc,
            )
        rc, doc = self.run_rc(["config", "rollback", "--version", str(version)])
        if rc not in (0, EXIT_BUSY):
            self.fail(
                "health check of version %d failed (%s) and the rollback failed too: %s" % (version, problem, doc),
                rc=rc,
            )
        self.refresh()
        self.fail(
            "health check of version %d failed: %s: rolled back to version %d"
            % (version, problem, self.result["version"]),
            rolled_back=True,
        )

    def refresh(self):
        doc = self.run(["config", "show"])
        self.result["version"] = doc.get("version", 0)
        self.result["hash"] = doc.get("hash", "")
        self.result["tentative"] = doc.get("tentative", False)

    def rollback(self):
        args = ["config", "rollback"]
        if self.params["rollback_to"] is not None:
            args += ["--to", str(self.params["rollback_to"])]
        dry = self.run([*args, "--dry-run"])
        self.take(dry)
        self.diff(dry)
        if not dry["changed"]:
            return
        self.result["changed"] = True
        self.result["rolled_back"] = True
        if self.module.check_mode:
            return
        self.take(self.run(args))


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_if=REQUIRED_IF,
        supports_check_mode=True,
    )
    found = problems(module.params)
    if found:
        module.fail_json(msg="; ".join(found), problems=found)
    cfg = Config(module)
    if module.params["config"] is not None:
        cfg.apply()
    else:
        cfg.rollback()
    module.exit_json(**cfg.result)


if __name__ == "__main__":
    main()
