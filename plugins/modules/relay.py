#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: relay
short_description: Set a node's POOL relay enrolments, relaying and limits, and report its scores
version_added: 0.2.0
description:
  - Brings the enrolment file of C(pool_relay) on the node (docs/relay.md section 7) to the state given, with
    C(pool_relay enroll), C(revoke) and C(config), which write the file atomically and raise its version.
    The running relay follows the file; a revoked peer's relayed connections end at once.
  - Returns the running relay's figures for every enrolled peer (bytes contributed and consumed, score, tier)
    when C(pool_relay) runs on the node.
  - It neither installs nor starts the relay (role pool.ops.relay does), and it does not add peers to pool.ko's
    trust store.
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: Reads the enrolments and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: The enrolment document (relaying, limits, peers) before and after.
options:
  relay:
    description:
      - Whether this node relays for its enrolled peers. A node that only uses relays, or is only reached through
        them, leaves it off.
    type: bool
    default: false
  peers:
    description:
      - The peers enrolled with this node's relay. Both ends of a relayed session must be enrolled with the relay.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A name for the peer (1 to 64 printable characters, no spaces), unique among the peers.
        type: str
        required: true
      key:
        description: The peer's static public key, base64 (44 characters), as C(poolctl) prints it.
        type: str
        required: true
      accept:
        description: The peer may relay connections to this node (this node lists it as one of its relays).
        type: bool
        default: false
  exclusive:
    description:
      - Revoke the enrolled peers that O(peers) does not list.
    type: bool
    default: true
  limits:
    description:
      - Caps that apply whatever a peer's score. Options left out keep their value.
    type: dict
    suboptions:
      peer_bytes_per_second:
        description: Bytes per second one peer's relayed connections may use together (1024 to 10^11).
        type: int
      total_bytes_per_second:
        description: Bytes per second the relay carries in all; not below O(limits.peer_bytes_per_second).
        type: int
      connections:
        description: Relayed connections at once (1 to 65536).
        type: int
  enrolments_path:
    description: The relay's enrolment file on the node.
    type: path
    default: /etc/pool/relay.json
  status_file:
    description: The running relay's status file, read for the figures returned in RV(peers).
    type: path
    default: /run/pool-relay/status.json
  pool_relay_path:
    description:
      - Path of C(pool_relay). By default it is searched in E(PATH), C(/usr/local/sbin) and C(/opt/pool/bin).
    type: path
requirements:
  - The POOL tools (C(pool_relay)) on the node (role pool.ops.node).
seealso:
  - module: pool.ops.vault_peer
notes:
  - Runs on the node whose relay it configures. No private key takes part.
"""

EXAMPLES = r"""
- name: Let node2 relay between node1 and node3
  pool.ops.relay:
    relay: true
    peers:
      - name: node1
        key: "{{ hostvars['node1'].pool_node_public_key }}"
      - name: node3
        key: "{{ hostvars['node3'].pool_node_public_key }}"
    limits:
      peer_bytes_per_second: 12500000

- name: On node3, accept connections relayed by node2
  pool.ops.relay:
    peers:
      - name: node2
        key: "{{ hostvars['node2'].pool_node_public_key }}"
        accept: true
"""

RETURN = r"""
version:
  description: The enrolment file's version after the task (what it would be, in check mode).
  returned: always
  type: int
  sample: 3
relay:
  description: Whether the node relays after the task.
  returned: always
  type: bool
  sample: true
limits:
  description: The limits after the task.
  returned: always
  type: dict
  sample: {"peer_bytes_per_second": 12500000, "total_bytes_per_second": 50000000, "connections": 256}
peers:
  description:
    - The enrolled peers after the task, each with the running relay's own figures when it runs
      (C(contributed), C(consumed), C(score), C(tier), C(channel)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "node1", "key": "AQEB...", "accept": false, "score": 0.98, "tier": "light"}]
running:
  description: Whether a running relay's status was found.
  returned: always
  type: bool
  sample: true
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils.poolctl import (
    PoolctlError,
    require_tool,
    run_json,
)


def desired(current, params):
    """The enrolment document (relay, limits, peers) the task asks for, from the current one."""
    peers = [{"name": p["name"], "key": p["key"], "accept": p["accept"]} for p in params["peers"]]
    if not params["exclusive"]:
        listed = set(p["key"] for p in peers) | set(p["name"] for p in peers)
        peers += [p for p in current["peers"] if p["key"] not in listed and p["name"] not in listed]
    limits = dict((k, v) for k, v in (params["limits"] or {}).items() if v is not None)
    return {"relay": params["relay"], "limits": limits, "peers": peers}


def ensure(module, params, tool):
    files = ["--enrolments", params["enrolments_path"], "--status-file", params["status_file"]]
    current = run_json(module, tool, [*files, "apply", "--check"], data="{}")["before"]
    wanted = json.dumps(desired(current, params))
    doc = run_json(module, tool, files + ["apply"] + (["--check"] if module.check_mode else []), data=wanted)
    listed = run_json(module, tool, [*files, "peers"])
    figures = dict((p["key"], p) for p in listed["peers"])
    after = doc["after"]
    result = {
        "changed": bool(doc["changed"]),
        "version": doc["version"],
        "relay": after["relay"],
        "limits": after["limits"],
        "peers": [dict(figures.get(p["key"], {}), **p) for p in after["peers"]],
        "running": any("tier" in p for p in listed["peers"]) or _running(module, tool, files),
    }
    if doc["changed"]:
        result["diff"] = {"before": _shown(doc["before"]), "after": _shown(after)}
    return result


def _shown(doc):
    return {"relay": doc["relay"], "limits": doc["limits"], "peers": sorted(doc["peers"], key=lambda p: p["name"])}


def _running(module, tool, files):
    try:
        run_json(module, tool, [*files, "status"])
    except PoolctlError:
        return False
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            relay=dict(type="bool", default=False),
            peers=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    key=dict(type="str", required=True, no_log=False),  # a public key
                    accept=dict(type="bool", default=False),
                ),
            ),
            exclusive=dict(type="bool", default=True),
            limits=dict(
                type="dict",
                options=dict(
                    peer_bytes_per_second=dict(type="int"),
                    total_bytes_per_second=dict(type="int"),
                    connections=dict(type="int"),
                ),
            ),
            enrolments_path=dict(type="path", default="/etc/pool/relay.json"),
            status_file=dict(type="path", default="/run/pool-relay/status.json"),
            pool_relay_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    names = [p["name"] for p in module.params["peers"]]
    keys = [p["key"] for p in module.params["peers"]]
    if len(set(names)) != len(names) or len(set(keys)) != len(keys):
        module.fail_json(msg="peers: every name and every key may appear once")
    tool = require_tool(module, "pool_relay")
    try:
        module.exit_json(**ensure(module, module.params, tool))
    except PoolctlError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc, stderr=exc.stderr)


if __name__ == "__main__":
    main()
