# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec of pool.ops.config and the checks of its configuration document.

Shared by the module (on the node) and its action plugin, which validates the same spec on the
controller, so that a wrong type, a missing field or a value pool.ko refuses fails before
anything reaches a node, with the field named. The ranges are pool.ko's (docs/protocol.md
section 7); tests/unit checks that they match the tools' copy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

RANGES = {
    "heartbeat_seconds": (1, 3600),
    "rekey_seconds": (5, 2**31),
    "rekey_packets": (1, 2**32 - 1),
    "puzzle_difficulty": (0, 20),
    "max_sessions": (1, 65536),
}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}\Z")
KEY_RE = re.compile(r"[A-Za-z0-9+/]{43}=\Z")
MAX_CONFIRM_SECONDS = 86400

PEER_OPTIONS = dict(
    name=dict(type="str", required=True),
    public_key=dict(type="str", required=True, no_log=False),
    endpoint=dict(type="str"),
    relays=dict(type="list", elements="str"),
)
DOCUMENT_OPTIONS = dict(
    heartbeat_seconds=dict(type="int"),
    rekey_seconds=dict(type="int", no_log=False),
    rekey_packets=dict(type="int", no_log=False),
    puzzle_difficulty=dict(type="int"),
    max_sessions=dict(type="int"),
    peers=dict(type="list", elements="dict", options=PEER_OPTIONS),
)
ARGUMENT_SPEC = dict(
    config=dict(type="dict", options=DOCUMENT_OPTIONS),
    confirm_within=dict(type="int", default=60),
    health_timeout=dict(type="int", default=30),
    health_peers=dict(type="bool", default=True),
    health_command=dict(type="str"),
    rollback=dict(type="bool", default=False),
    rollback_to=dict(type="int"),
    state_dir=dict(type="path"),
    poolctl_path=dict(type="path"),
)
MUTUALLY_EXCLUSIVE = [("config", "rollback_to")]
REQUIRED_IF = [("rollback", False, ("config", "rollback_to"), True)]


def document(config):
    """The document poolctl reads: the validated options without the ones left out."""
    doc = dict((k, v) for k, v in config.items() if v is not None and k != "peers")
    if config.get("peers") is not None:
        doc["peers"] = [dict((k, v) for k, v in peer.items() if v is not None) for peer in config["peers"]]
    return doc


def problems(params):
    """What is wrong with validated module parameters, each naming its field; empty when nothing is."""
    found = []
    if params["rollback"] and (params["config"] is not None or params["rollback_to"] is not None):
        found.append("rollback=true takes neither config nor rollback_to: use one of the three")
    if not 0 <= params["confirm_within"] <= MAX_CONFIRM_SECONDS:
        found.append("confirm_within must be 0-86400 seconds (pool.ko's limit), got %d" % params["confirm_within"])
    if params["health_timeout"] < 0:
        found.append("health_timeout must be >= 0, got %d" % params["health_timeout"])
    if (
        params["config"] is not None
        and params["confirm_within"]
        and params["health_timeout"] >= params["confirm_within"]
    ):
        found.append(
            "health_timeout (%d s) must be shorter than confirm_within (%d s): otherwise pool.ko rolls back "
            "before the checks end" % (params["health_timeout"], params["confirm_within"])
        )
    if params["rollback_to"] is not None and params["rollback_to"] < 1:
        found.append("rollback_to must be a stored version number (1 or more), got %d" % params["rollback_to"])
    if params["config"] is not None:
        found.extend(document_problems(params["config"]))
    return found


def document_problems(config):
    found = []
    for key, (low, high) in sorted(RANGES.items()):
        value = config.get(key)
        if value is not None and not low <= value <= high:
            found.append("config.%s: %d is out of range (%d-%d)" % (key, value, low, high))
    names, keys = {}, {}
    for i, peer in enumerate(config.get("peers") or []):
        where = "config.peers[%d]" % i
        if not NAME_RE.match(peer["name"]):
            found.append(
                "%s.name: %r is not a name (letters, digits, '.', '_', '-'; at most 31)" % (where, peer["name"])
            )
        if not KEY_RE.match(peer["public_key"]):
            found.append("%s.public_key: not a base64 X25519 key (44 characters)" % where)
        if peer["name"] in names:
            found.append("%s.name: %r is also config.peers[%d]" % (where, peer["name"], names[peer["name"]]))
        if peer["public_key"] in keys:
            found.append("%s.public_key: the key of config.peers[%d] too" % (where, keys[peer["public_key"]]))
        names.setdefault(peer["name"], i)
        keys.setdefault(peer["public_key"], i)
    for i, peer in enumerate(config.get("peers") or []):
        for relay in peer.get("relays") or []:
            if relay not in names or relay == peer["name"]:
                found.append("config.peers[%d].relays: %r is no other peer of the document" % (i, relay))
    return found
