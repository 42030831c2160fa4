#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vault_peer
short_description: Enroll a peer in a node's POOL vault, or revoke it
version_added: 0.2.0
description:
  - Manages one peer in the ACL of the C(pool_vault) server on the vault node (docs/vault.md section 6), with
    C(pool_vault enroll) and C(pool_vault revoke), which write the ACL file atomically and raise its version.
  - The running server follows the file. An enrolment takes effect at the peer's next request, and a revocation ends
    the peer's open vault conversations at once.
  - It does not add the peer to pool.ko's trust store; the peer must also be a trusted POOL peer of the vault node
    (playbook C(pool.ops.enroll) does both, in order).
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: Reads the ACL and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: The peer's entry (name, scope, prefix) before and after.
options:
  key:
    description:
      - The peer's static public key, base64 (44 characters), as C(poolctl) prints it.
      - Required with O(state=present). With O(state=absent), O(key) or O(name) names the peer.
    type: str
  name:
    description:
      - A name for the peer in the ACL (1 to 64 printable characters, no spaces), unique in the ACL.
    type: str
  scope:
    description:
      - V(read) allows stat, list, history and pull; V(read-write) also push and delete.
    type: str
    choices: [read, read-write]
    default: read
  prefix:
    description:
      - The only part of the vault the peer reaches (a vault path; V(docs) allows C(docs/a), not C(docs2/a)).
        Empty for the whole vault.
    type: str
    default: ""
  state:
    description:
      - V(present) enrolls the peer (or updates its name, scope or prefix); V(absent) revokes it.
    type: str
    choices: [present, absent]
    default: present
  acl_path:
    description:
      - The vault's ACL file on the node.
    type: path
    default: /etc/pool/vault-acl.json
  pool_vault_path:
    description:
      - Path of C(pool_vault). By default it is searched in E(PATH), C(/usr/local/sbin) and C(/opt/pool/bin).
    type: path
requirements:
  - The POOL tools (C(pool_vault)) on the vault node (role pool.ops.node or pool.ops.vault).
seealso:
  - module: pool.ops.config
notes:
  - Runs on the vault node. The peer's private key never takes part.
"""

EXAMPLES = r"""
- name: Let node1 read and write the whole vault
  pool.ops.vault_peer:
    key: "{{ hostvars['node1'].pool_node_public_key }}"
    name: node1
    scope: read-write

- name: Let node3 read what is under shared/
  pool.ops.vault_peer:
    key: "{{ hostvars['node3'].pool_node_public_key }}"
    name: node3
    scope: read
    prefix: shared

- name: Revoke node3
  pool.ops.vault_peer:
    name: node3
    state: absent
"""

RETURN = r"""
peer:
  description: The peer's ACL entry after the task; null when it is not enrolled.
  returned: always
  type: dict
  sample: {"key": "3y1bEa4ZkL4I0mZ0x9u5q6v2Q4iCzH3q7ZtBv6eVw1E=", "name": "node1", "scope": "read-write", "prefix": ""}
acl_version:
  description: The ACL's version after the task (what it would be, in check mode).
  returned: always
  type: int
  sample: 4
peers:
  description: The names of all enrolled peers after the task.
  returned: always
  type: list
  elements: str
  sample: [node1, node3]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils.poolctl import (
    PoolctlError,
    require_tool,
    run_json,
)


def ensure(module, params, tool):
    if params["state"] == "present":
        cmd = [
            "enroll",
            params["key"],
            "--name",
            params["name"],
            "--scope",
            params["scope"],
            "--prefix",
            params["prefix"],
        ]
    else:
        cmd = ["revoke", params["key"] or params["name"]]
    cmd += ["--acl", params["acl_path"]]
    if module.check_mode:
        cmd.append("--check")
    doc = run_json(module, tool, cmd)
    result = {
        "changed": bool(doc.get("changed")),
        "peer": doc.get("after"),
        "acl_version": doc.get("acl_version"),
        "peers": doc.get("peers", []),
    }
    if result["changed"]:
        result["diff"] = {"before": doc.get("before") or {}, "after": doc.get("after") or {}}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            key=dict(type="str", no_log=False),  # a public key
            name=dict(type="str"),
            scope=dict(type="str", choices=["read", "read-write"], default="read"),
            prefix=dict(type="str", default=""),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            acl_path=dict(type="path", default="/etc/pool/vault-acl.json"),
            pool_vault_path=dict(type="path"),
        ),
        required_if=[("state", "present", ("key", "name"))],
        required_one_of=[("key", "name")],
        supports_check_mode=True,
    )
    tool = require_tool(module, "pool_vault")
    try:
        module.exit_json(**ensure(module, module.params, tool))
    except PoolctlError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc, stderr=exc.stderr)


if __name__ == "__main__":
    main()
