#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: identity
short_description: Make the POOL identity key of a node, on the node
version_added: 0.1.0
description:
  - Makes sure the node has a POOL identity, an X25519 private key in O(path), created on the node with
    C(poolctl identity generate) (mode 0600, owner root, written atomically). The private key never leaves the
    node and is never returned.
  - Returns the public key and the POOL address, read with C(poolctl identity show --key-file) (the kernel is
    not needed), so that a play can
    gather every node's public key as a fact and fill each node's trust store.
  - An existing key is kept; its mode and owner are corrected to 0600 root:root if they drifted.
  - It does not load the key into pool.ko; C(poold) does that from C(/etc/pool/pool.conf).
author:
  - POOL operations team (@pool-ops)
attributes:
  check_mode:
    support: full
    description: In check mode a missing key is reported as a change and the public key is null.
  diff_mode:
    support: full
    description: The diff shows the key file appearing, going or its mode changing, never its content.
options:
  path:
    description:
      - Path of the private key file on the node.
    type: path
    default: /etc/pool/private.key
  state:
    description:
      - V(present) makes the key if it is missing.
      - V(regenerated) always makes a new key (rotation). Every peer must then learn the new public key; sessions
        made with the old key close when poold loads the new one.
      - V(absent) removes the key file (a node leaving the fleet). A running poold keeps the key it loaded until it
        restarts; remove the node from its peers' trust stores too. The file is unlinked, not overwritten (on
        journaling filesystems and SSDs overwriting would not erase it either).
    type: str
    choices: [present, regenerated, absent]
    default: present
  org_id:
    description:
      - Organisation id used to derive the POOL address that is returned.
    type: int
    default: 0
  segment_id:
    description:
      - Segment id used to derive the POOL address that is returned.
    type: int
    default: 0
  poolctl_path:
    description:
      - Path of C(poolctl). By default it is searched in E(PATH), C(/usr/local/sbin) and C(/opt/pool/bin).
    type: path
requirements:
  - The POOL tools (C(poolctl)) on the node; pool.ko need not be loaded.
seealso:
  - module: pool.ops.node_info
"""

EXAMPLES = r"""
- name: Make the node identity key on the node
  pool.ops.identity:
  register: pool_identity

- name: Publish the public key to the other plays and hosts
  ansible.builtin.set_fact:
    pool_node_public_key: "{{ pool_identity.public_key }}"

- name: Rotate the identity key
  pool.ops.identity:
    path: /etc/pool/private.key
    state: regenerated

- name: Remove the identity of a node leaving the fleet
  pool.ops.identity:
    state: absent
"""

RETURN = r"""
public_key:
  description:
    - The node's public key (base64, 44 characters); null in check mode when the key does not exist yet, and with
      O(state=absent).
  returned: always
  type: str
  sample: 3y1bEa4ZkL4I0mZ0x9u5q6v2Q4iCzH3q7ZtBv6eVw1E=
address:
  description: The node's POOL address for O(org_id) and O(segment_id); null when the public key is.
  returned: always
  type: str
  sample: "00000000:00000000:1b2c3d4e:5f607182:93a4b5c6:d7e8f901:12233445:56677889"
path:
  description: Path of the private key file.
  returned: always
  type: str
  sample: /etc/pool/private.key
created:
  description: Whether a new key was made (or would be, in check mode).
  returned: always
  type: bool
  sample: false
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pool.ops.plugins.module_utils.common import correct_attributes
from ansible_collections.pool.ops.plugins.module_utils.poolctl import (
    PoolctlError,
    require_tool,
    run_json,
)

KEY_MODE = 0o600


def id_args(org_id, segment_id):
    return ["--org-id", str(org_id), "--segment-id", str(segment_id)]


def generate_cmd(path, org_id, segment_id, force):
    return ["identity", "generate", "--key-file", path, *id_args(org_id, segment_id), *(["--force"] if force else [])]


def show_cmd(path, org_id, segment_id):
    return ["identity", "show", "--key-file", path, *id_args(org_id, segment_id)]


def _text(doc, key):
    if isinstance(doc, dict):
        ident = doc.get("identity", doc)
        if isinstance(ident, dict) and ident.get(key):
            return ident[key]
    return None


def fix_attributes(module, path, diff):
    """Mode 0600 and owner root:root on an existing key; returns whether it changed."""
    drifts = correct_attributes(path, KEY_MODE, (0, 0), module.check_mode)
    for what, before, after in drifts:
        diff["before"][what] = before
        diff["after"][what] = after
        if what == "mode":
            module.warn(
                "%s had mode %s: set to 0600 (the key may have been readable by others: consider "
                "state=regenerated)" % (path, before)
            )
    return bool(drifts)


def remove(module, params):
    """state=absent: unlink the key file (and make that durable); the tools are not needed."""
    path = params["path"]
    result = {"changed": False, "created": False, "path": path, "public_key": None, "address": None}
    if not os.path.lexists(path):
        return result
    if os.path.islink(path) or not os.path.isfile(path):
        module.fail_json(msg="%s exists and is not a regular file: it is not a key this module made" % path, **result)
    result["changed"] = True
    result["diff"] = {"before": {"path": path, "state": "present"}, "after": {"path": path, "state": "absent"}}
    if not module.check_mode:
        os.unlink(path)
        parent = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(parent)
        finally:
            os.close(parent)
    return result


def ensure(module, params):
    path = params["path"]
    result = {"changed": False, "created": False, "path": path, "public_key": None, "address": None}
    diff = {"before": {"path": path}, "after": {"path": path}}
    poolctl = require_tool(module, "poolctl", **result)

    exists = os.path.exists(path)
    if exists and not os.path.isfile(path):
        module.fail_json(msg="%s exists and is not a regular file: remove it or choose another path" % path, **result)
    diff["before"]["state"] = "present" if exists else "absent"
    diff["after"]["state"] = "present"

    if not exists or params["state"] == "regenerated":
        result["changed"] = result["created"] = True
        if exists:
            diff["before"]["key"] = "<old private key>"
            diff["after"]["key"] = "<new private key>"
        if module.check_mode:
            result["diff"] = diff
            return result
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            module.fail_json(msg="directory %s does not exist: create it (mode 0700) first" % parent, **result)
        cmd = generate_cmd(path, params["org_id"], params["segment_id"], force=exists)
    else:
        if fix_attributes(module, path, diff):
            result["changed"] = True
        cmd = show_cmd(path, params["org_id"], params["segment_id"])
    try:
        doc = run_json(module, poolctl, cmd)
    except PoolctlError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc, stderr=exc.stderr, **result)
    result["public_key"] = _text(doc, "public_key")
    result["address"] = _text(doc, "address")
    if not result["public_key"]:
        module.fail_json(
            msg="poolctl %s printed no public_key for %s: upgrade the POOL tools" % (cmd[1], path), **result
        )
    if result["changed"]:
        result["diff"] = diff
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/pool/private.key"),
            state=dict(type="str", choices=["present", "regenerated", "absent"], default="present"),
            org_id=dict(type="int", default=0),
            segment_id=dict(type="int", default=0),
            poolctl_path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    for name in ("org_id", "segment_id"):
        if not 0 <= module.params[name] < 2**64:
            module.fail_json(msg="%s must be between 0 and 2^64-1, got %d" % (name, module.params[name]))
    if module.params["state"] == "absent":
        module.exit_json(**remove(module, module.params))
    module.exit_json(**ensure(module, module.params))


if __name__ == "__main__":
    main()
