"""pool.ops.config's document checks (plugins/module_utils/config_doc.py)."""

from __future__ import annotations

import pytest
from ansible_collections.pool.ops.plugins.module_utils import config_doc
from pooltools.config import store

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="


def params(**config: object) -> dict:
    base = {k: v.get("default") for k, v in config_doc.ARGUMENT_SPEC.items()}
    peers = config.pop("peers", None)
    doc = dict.fromkeys(config_doc.DOCUMENT_OPTIONS)
    doc.update(config)
    if peers is not None:
        doc["peers"] = [dict(dict.fromkeys(config_doc.PEER_OPTIONS), **p) for p in peers]
    base["config"] = doc
    return base


def test_the_ranges_are_pool_kos() -> None:
    assert config_doc.RANGES == store.RANGES
    assert config_doc.MAX_CONFIRM_SECONDS == store.MAX_CONFIRM_SECONDS


def test_left_out_keys_stay_out_of_the_document() -> None:
    peers = [
        {"name": "n2", "public_key": KEY_A, "relays": ["n3"]},
        {"name": "n3", "public_key": KEY_B, "endpoint": "10.0.0.3:9253"},
    ]
    p = params(heartbeat_seconds=7, peers=peers)
    assert config_doc.document(p["config"]) == {
        "heartbeat_seconds": 7,
        "peers": [
            {"name": "n2", "public_key": KEY_A, "relays": ["n3"]},
            {"name": "n3", "public_key": KEY_B, "endpoint": "10.0.0.3:9253"},
        ],
    }
    assert config_doc.document(params(max_sessions=4)["config"]) == {"max_sessions": 4}
    assert config_doc.problems(p) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"heartbeat_seconds": 0}, "config.heartbeat_seconds: 0 is out of range (1-3600)"),
        ({"rekey_seconds": 4}, "config.rekey_seconds: 4 is out of range (5-2147483648)"),
        ({"puzzle_difficulty": 21}, "config.puzzle_difficulty: 21 is out of range (0-20)"),
        ({"max_sessions": 65537}, "config.max_sessions: 65537 is out of range (1-65536)"),
        ({"peers": [{"name": "-x", "public_key": KEY_A}]}, "config.peers[0].name: '-x' is not a name"),
        ({"peers": [{"name": "n2", "public_key": "short"}]}, "config.peers[0].public_key: not a base64 X25519 key"),
        (
            {"peers": [{"name": "n2", "public_key": KEY_A}, {"name": "n2", "public_key": KEY_B}]},
            "config.peers[1].name: 'n2' is also config.peers[0]",
        ),
        (
            {"peers": [{"name": "n2", "public_key": KEY_A}, {"name": "n3", "public_key": KEY_A}]},
            "config.peers[1].public_key: the key of config.peers[0] too",
        ),
        (
            {"peers": [{"name": "n2", "public_key": KEY_A, "relays": ["n9"]}]},
            "config.peers[0].relays: 'n9' is no other peer of the document",
        ),
        (
            {"peers": [{"name": "n2", "public_key": KEY_A, "relays": ["n2"]}]},
            "config.peers[0].relays: 'n2' is no other peer of the document",
        ),
    ],
)
def test_each_problem_names_its_field(config: dict, message: str) -> None:
    found = config_doc.problems(params(**config))
    assert len(found) == 1 and found[0].startswith(message), found


def test_module_level_checks() -> None:
    p = params(heartbeat_seconds=5)
    p.update(confirm_within=30, health_timeout=30)
    assert config_doc.problems(p) == [
        "health_timeout (30 s) must be shorter than confirm_within (30 s): otherwise pool.ko rolls back "
        "before the checks end"
    ]
    p = params()
    p.update(config=None, rollback=True, rollback_to=2)
    assert config_doc.problems(p)[0].startswith("rollback=true takes neither config nor rollback_to")
