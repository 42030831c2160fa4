"""/etc/pool/pool.conf, the node's configuration read by poold (format: docs/pool.conf.md).

INI-like, WireGuard style: `#` comments, `key = value`, sections `[node]` and
`[peer NAME]`. Every error names the file, the line and the key:
"pool.conf:7: unknown key 'prot' in [node] (did you mean 'port'?)".
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pooltools.kernel.netaddr import Endpoint, parse_endpoint
from pooltools.protocol.keys import decode_key

DEFAULT_PATH = "/etc/pool/pool.conf"
DEFAULT_STATE_DIR = "/var/lib/pool"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}")
_SECTION = re.compile(r"\[\s*([A-Za-z]+)(?:\s+(\S+))?\s*\]")
_U64_MAX = 2**64 - 1
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

NODE_KEYS = ("private_key_file", "listen", "port", "org_id", "segment_id", "state_dir")
PEER_KEYS = ("public_key", "endpoint", "relays")


class ConfError(ValueError):
    """A pool.conf error: str() is "<file>:<line>: <message>"."""

    def __init__(self, filename: str, line: int | None, message: str, key: str | None = None) -> None:
        self.filename = filename
        self.line = line
        self.key = key
        self.message = message
        super().__init__(f"{filename}:{line}: {message}" if line else f"{filename}: {message}")


# pool_relay's door (docs/relay.md section 1): poold connects here to reach a peer through its
# relays; only the loopback, so that nothing else can use this node's relays as its own.
RELAY_DOOR = parse_endpoint("127.0.0.1:9256")


@dataclass
class NodeConf:
    private_key_file: Path
    listen: bool = True
    port: int = 0  # 0: the module parameter `port`
    org_id: int = 0
    segment_id: int = 0
    state_dir: Path = Path(DEFAULT_STATE_DIR)


@dataclass
class PeerConf:
    name: str
    public_key: bytes
    endpoint: Endpoint | None = None
    line: int = 0
    relays: tuple[str, ...] = ()  # names of other peers to reach this one through (docs/relay.md)


@dataclass
class PoolConf:
    path: str
    node: NodeConf
    peers: list[PeerConf] = field(default_factory=list)

    def peer_by_key(self) -> dict[bytes, PeerConf]:
        return {p.public_key: p for p in self.peers}


def _unknown(filename: str, line: int, key: str, section: str, allowed: tuple[str, ...]) -> ConfError:
    hint = difflib.get_close_matches(key, allowed, n=1)
    extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(allowed)})"
    return ConfError(filename, line, f"unknown key '{key}' in {section}{extra}", key)


def _int(filename: str, line: int, key: str, value: str, lo: int, hi: int) -> int:
    try:
        v = int(value, 10)
    except ValueError:
        raise ConfError(filename, line, f"{key} = {value!r} is not an integer", key) from None
    if not lo <= v <= hi:
        raise ConfError(filename, line, f"{key} = {v} is out of range ({lo}-{hi})", key)
    return v


def _path(filename: str, line: int, key: str, value: str) -> Path:
    if not value.startswith("/"):
        raise ConfError(filename, line, f"{key} = {value!r} must be an absolute path", key)
    return Path(value)


def parse(text: str, filename: str = "pool.conf") -> PoolConf:
    """Parse pool.conf text; raises ConfError on the first problem."""
    node_vals: dict[str, tuple[str, int]] = {}
    node_line: int | None = None
    peers: list[tuple[str, int, dict[str, tuple[str, int]]]] = []
    current: dict[str, tuple[str, int]] | None = None
    section = ""
    seen_peer_names: dict[str, int] = {}

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            m = _SECTION.fullmatch(line)
            if not m:
                raise ConfError(filename, lineno, f"malformed section header {line!r} (expected [node] or [peer NAME])")
            kind, name = m.group(1), m.group(2)
            if kind == "node" and name is None:
                if node_line is not None:
                    raise ConfError(filename, lineno, f"duplicate [node] section (first at line {node_line})")
                node_line = lineno
                current, section = node_vals, "[node]"
            elif kind == "peer" and name is not None:
                if not NAME_RE.fullmatch(name):
                    raise ConfError(
                        filename, lineno, f"peer name {name!r} must be 1-31 characters of A-Z a-z 0-9 . _ -"
                    )
                if name in seen_peer_names:
                    raise ConfError(
                        filename, lineno, f"duplicate peer '{name}' (first at line {seen_peer_names[name]})"
                    )
                seen_peer_names[name] = lineno
                current, section = {}, f"[peer {name}]"
                peers.append((name, lineno, current))
            else:
                raise ConfError(filename, lineno, f"unknown section {line!r} (expected [node] or [peer NAME])")
            continue
        if "=" not in line:
            raise ConfError(filename, lineno, f"expected 'key = value', got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        if current is None:
            raise ConfError(filename, lineno, f"key '{key}' outside a section (start with [node])", key)
        allowed = NODE_KEYS if current is node_vals else PEER_KEYS
        if key not in allowed:
            raise _unknown(filename, lineno, key, section, allowed)
        if key in current:
            raise ConfError(
                filename, lineno, f"duplicate key '{key}' in {section} (first at line {current[key][1]})", key
            )
        if not value:
            raise ConfError(filename, lineno, f"key '{key}' in {section} has no value", key)
        current[key] = (value, lineno)

    if node_line is None:
        raise ConfError(filename, None, "missing [node] section")
    node = _node(filename, node_line, node_vals)
    out: list[PeerConf] = []
    seen_keys: dict[bytes, str] = {}
    for name, lineno, vals in peers:
        p = _peer(filename, name, lineno, vals)
        if p.public_key in seen_keys:
            kl = vals["public_key"][1]
            raise ConfError(
                filename,
                kl,
                f"duplicate public key: peer '{name}' has the key of peer '{seen_keys[p.public_key]}'",
                "public_key",
            )
        seen_keys[p.public_key] = name
        out.append(p)
    names = {p.name for p in out}
    for p, (_name, _line, vals) in zip(out, peers, strict=True):
        for relay in p.relays:
            if relay == p.name or relay not in names:
                why = "is the peer itself" if relay == p.name else "is no [peer] section of this file"
                raise ConfError(filename, vals["relays"][1], f"relays of peer '{p.name}': '{relay}' {why}", "relays")
    return PoolConf(filename, node, out)


def _node(filename: str, section_line: int, vals: dict[str, tuple[str, int]]) -> NodeConf:
    if "private_key_file" not in vals:
        raise ConfError(filename, section_line, "[node] lacks the required key 'private_key_file'", "private_key_file")
    v, ln = vals["private_key_file"]
    node = NodeConf(private_key_file=_path(filename, ln, "private_key_file", v))
    if "listen" in vals:
        v, ln = vals["listen"]
        if v.lower() in _TRUE:
            node.listen = True
        elif v.lower() in _FALSE:
            node.listen = False
        else:
            raise ConfError(filename, ln, f"listen = {v!r} is not a boolean (true or false)", "listen")
    if "port" in vals:
        v, ln = vals["port"]
        node.port = _int(filename, ln, "port", v, 1, 65535)
    for key in ("org_id", "segment_id"):
        if key in vals:
            v, ln = vals[key]
            setattr(node, key, _int(filename, ln, key, v, 0, _U64_MAX))
    if "state_dir" in vals:
        v, ln = vals["state_dir"]
        node.state_dir = _path(filename, ln, "state_dir", v)
    return node


def _peer(filename: str, name: str, section_line: int, vals: dict[str, tuple[str, int]]) -> PeerConf:
    if "public_key" not in vals:
        raise ConfError(filename, section_line, f"[peer {name}] lacks the required key 'public_key'", "public_key")
    v, ln = vals["public_key"]
    try:
        key = decode_key(v)
    except ValueError as exc:
        raise ConfError(filename, ln, f"public_key of peer '{name}': {exc}", "public_key") from None
    peer = PeerConf(name=name, public_key=key, line=section_line)
    if "endpoint" in vals:
        v, ln = vals["endpoint"]
        try:
            peer.endpoint = parse_endpoint(v)
        except ValueError as exc:
            raise ConfError(filename, ln, f"endpoint of peer '{name}': {exc}", "endpoint") from None
    if "relays" in vals:
        v, ln = vals["relays"]
        relays = tuple(r.strip() for r in v.split(","))
        if not all(relays) or len(set(relays)) != len(relays):
            raise ConfError(filename, ln, f"relays of peer '{name}': a comma-separated list of peer names", "relays")
        peer.relays = relays
    return peer


def load(path: str | Path = DEFAULT_PATH) -> PoolConf:
    """Read and parse a pool.conf file; ConfError (no line) if it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfError(str(p), None, "does not exist") from None
    except PermissionError:
        raise ConfError(str(p), None, "permission denied") from None
    except UnicodeDecodeError:
        raise ConfError(str(p), None, "is not UTF-8 text") from None
    return parse(text, str(p))
