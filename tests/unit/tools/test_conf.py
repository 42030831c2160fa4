"""pool.conf parser: the documented format and one clear error per bad input."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from pooltools.config import conf

K1 = base64.b64encode(bytes(range(1, 33))).decode()
K2 = base64.b64encode(bytes(range(2, 34))).decode()

GOOD = f"""
# comment
[node]
private_key_file = /etc/pool/private.key   # required
listen = false
port = 9300
org_id = 7
segment_id = 9
state_dir = /var/lib/pool-test

[peer node2]
public_key = {K1}
endpoint = 10.253.0.12:9253

[peer node3]
public_key={K2}
endpoint = [fd53:253::13]:9253
"""


def test_good_file() -> None:
    c = conf.parse(GOOD, "pool.conf")
    assert c.node.private_key_file == Path("/etc/pool/private.key")
    assert (c.node.listen, c.node.port, c.node.org_id, c.node.segment_id) == (False, 9300, 7, 9)
    assert c.node.state_dir == Path("/var/lib/pool-test")
    assert [p.name for p in c.peers] == ["node2", "node3"]
    assert c.peers[0].public_key == bytes(range(1, 33))
    assert str(c.peers[0].endpoint) == "10.253.0.12:9253"
    assert str(c.peers[1].endpoint) == "[fd53:253::13]:9253"


def test_defaults() -> None:
    c = conf.parse("[node]\nprivate_key_file=/k\n")
    assert (c.node.listen, c.node.port, c.node.org_id, c.node.segment_id) == (True, 0, 0, 0)
    assert c.node.state_dir == Path("/var/lib/pool")
    assert c.peers == []


BAD = [
    ("[node]\nprivate_key_file=/k\nprot = 9253\n", "pool.conf:3: unknown key 'prot' in [node] (did you mean 'port'?)"),
    ("[node]\nprivate_key_file=/k\nport=1\nport=2\n", "pool.conf:4: duplicate key 'port' in [node] (first at line 3)"),
    (
        f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={K1}\n[peer a]\npublic_key={K2}\n",
        "pool.conf:5: duplicate peer 'a' (first at line 3)",
    ),
    (
        f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={K1}\n[peer b]\npublic_key={K1}\n",
        "pool.conf:6: duplicate public key: peer 'b' has the key of peer 'a'",
    ),
    (
        "[node]\nprivate_key_file=/k\n[peer a]\npublic_key=not*base64*at*all*not*base64*at*all*xxxxxxxx\n",
        "pool.conf:4: public_key of peer 'a': key is not valid base64",
    ),
    (
        "[node]\nprivate_key_file=/k\n[peer a]\npublic_key=AAAA\n",
        "pool.conf:4: public_key of peer 'a': key must be 44 base64 characters",
    ),
    (
        f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={K1}\nendpoint=10.0.0.1\n",
        "pool.conf:5: endpoint of peer 'a': endpoint '10.0.0.1' is not address:port",
    ),
    (
        f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={K1}\nendpoint=host.example:9253\n",
        "pool.conf:5: endpoint of peer 'a':",
    ),
    (
        f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={K1}\nendpoint=10.0.0.1:0\n",
        "pool.conf:5: endpoint of peer 'a': endpoint '10.0.0.1:0': port must be 1-65535",
    ),
    ("[node]\nprivate_key_file=/k\nport=70000\n", "pool.conf:3: port = 70000 is out of range (1-65535)"),
    ("[node]\nprivate_key_file=/k\nlisten=maybe\n", "pool.conf:3: listen = 'maybe' is not a boolean"),
    ("[node]\nprivate_key_file=relative\n", "pool.conf:2: private_key_file = 'relative' must be an absolute path"),
    ("[node]\nport=1\n", "pool.conf:1: [node] lacks the required key 'private_key_file'"),
    ("[peer a]\npublic_key=x\n[node]\nprivate_key_file=/k\n", "pool.conf:2: public_key of peer 'a'"),
    (f"[peer a]\npublic_key={K1}\n", "pool.conf: missing [node] section"),
    ("port = 1\n", "pool.conf:1: key 'port' outside a section"),
    ("[nodes]\n", "pool.conf:1: unknown section '[nodes]'"),
    ("[node\n", "pool.conf:1: malformed section header"),
    ("[node]\nprivate_key_file\n", "pool.conf:2: expected 'key = value'"),
    ("[node]\nprivate_key_file=\n", "pool.conf:2: key 'private_key_file' in [node] has no value"),
    ("[node]\nprivate_key_file=/k\n[node]\n", "pool.conf:3: duplicate [node] section (first at line 1)"),
    ("[node]\nprivate_key_file=/k\n[peer bad/name]\n", "pool.conf:3: peer name 'bad/name'"),
    (
        f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={K1}\nport=1\n",
        "pool.conf:5: unknown key 'port' in [peer a]",
    ),
    ("[node]\nprivate_key_file=/k\norg_id=-1\n", "pool.conf:3: org_id = -1 is out of range"),
    ("[node]\nprivate_key_file=/k\nsegment_id=abc\n", "pool.conf:3: segment_id = 'abc' is not an integer"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_input_names_line_and_key(text: str, message: str) -> None:
    with pytest.raises(conf.ConfError) as exc:
        conf.parse(text, "pool.conf")
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_all_zero_key_rejected() -> None:
    zero = base64.b64encode(bytes(32)).decode()
    with pytest.raises(conf.ConfError, match="key is all zero"):
        conf.parse(f"[node]\nprivate_key_file=/k\n[peer a]\npublic_key={zero}\n")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(conf.ConfError, match="does not exist"):
        conf.load(tmp_path / "pool.conf")


def test_load_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "pool.conf"
    p.write_text("[node]\nprivate_key_file=/k\nprot=1\n")
    with pytest.raises(conf.ConfError) as exc:
        conf.load(p)
    assert str(exc.value).startswith(f"{p}:3: unknown key 'prot' in [node]")
    assert exc.value.key == "prot" and exc.value.line == 3


def test_relays_name_other_peers_in_order() -> None:
    text = BASE_RELAYS.format(relays="relays = node2, node4")
    c = conf.parse(text, "pool.conf")
    assert {p.name: p.relays for p in c.peers}["node3"] == ("node2", "node4")


@pytest.mark.parametrize(
    ("relays", "message"),
    [
        ("relays = node9", "relays of peer 'node3': 'node9' is no [peer] section of this file"),
        ("relays = node3", "'node3' is the peer itself"),
        ("relays = node2,,node4", "a comma-separated list of peer names"),
        ("relays = node2, node2", "a comma-separated list of peer names"),
    ],
)
def test_bad_relays_are_refused_with_their_line(relays: str, message: str) -> None:
    with pytest.raises(conf.ConfError, match=re.escape(message)) as info:
        conf.parse(BASE_RELAYS.format(relays=relays), "pool.conf")
    assert "pool.conf:" in str(info.value)


BASE_RELAYS = """
[node]
private_key_file = /etc/pool/private.key

[peer node2]
public_key = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=
endpoint = 10.0.0.2:9253

[peer node4]
public_key = BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ=

[peer node3]
public_key = AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=
{relays}
"""
