"""The relay's enrolment file (docs/relay.md section 7): versioned JSON, replaced atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pooltools.common.fsutil import atomic_write
from pooltools.protocol.keys import decode_key, encode_key

DEFAULT_PATH = Path("/etc/pool/relay.json")
FORMAT = 1
LIMIT_RANGES = {
    "peer_bytes_per_second": (1024, 10**11),
    "total_bytes_per_second": (1024, 10**11),
    "connections": (1, 65536),
}


class EnrolmentError(ValueError):
    """The enrolment file or an enrolment is not valid; the message names the problem."""


@dataclass(frozen=True)
class Peer:
    key: str  # base64, as poolctl prints it
    name: str
    accept: bool = False  # this peer may relay to us


@dataclass(frozen=True)
class Limits:
    peer_bytes_per_second: int = 12_500_000  # 100 Mbit/s
    total_bytes_per_second: int = 50_000_000  # 400 Mbit/s
    connections: int = 256


@dataclass(frozen=True)
class Enrolment:
    version: int = 0
    relay: bool = False  # this node relays for others
    limits: Limits = field(default_factory=Limits)
    peers: tuple[Peer, ...] = ()

    def lookup(self, key: bytes) -> Peer | None:
        text = encode_key(key)
        return next((p for p in self.peers if p.key == text), None)

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "relay": self.relay,
            "limits": asdict(self.limits),
            "peers": [asdict(p) for p in self.peers],
        }


def peer(key: str, name: str, accept: bool = False) -> Peer:
    """A checked enrolment; EnrolmentError naming what is wrong."""
    try:
        raw = decode_key(key)
    except ValueError as exc:
        raise EnrolmentError(f"peer key {key!r}: {exc}") from None
    if not name or len(name) > 64 or any(c.isspace() or not c.isprintable() for c in name):
        raise EnrolmentError(f"name {name!r}: 1 to 64 printable characters without spaces")
    return Peer(encode_key(raw), name, bool(accept))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_limits(doc: Any, source: str) -> Limits:
    if not isinstance(doc, dict):
        raise EnrolmentError(f'{source}: "limits" must be an object')
    unknown = sorted(set(doc) - set(LIMIT_RANGES))
    if unknown:
        raise EnrolmentError(f'{source}: "limits" has unknown members {", ".join(unknown)}')
    values = {}
    for name, (lo, hi) in LIMIT_RANGES.items():
        if name in doc:
            if not _whole(doc[name]) or not lo <= doc[name] <= hi:
                raise EnrolmentError(f'{source}: limits "{name}" must be a whole number from {lo} to {hi}')
            values[name] = doc[name]
    limits = Limits(**values)
    if limits.peer_bytes_per_second > limits.total_bytes_per_second:
        raise EnrolmentError(f"{source}: limits: peer_bytes_per_second is above total_bytes_per_second")
    return limits


def parse(text: bytes | str, source: str = "relay enrolments") -> Enrolment:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise EnrolmentError(f"{source}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EnrolmentError(f'{source}: not a format-{FORMAT} relay enrolment file (no "format": {FORMAT})')
    version, relay, peers = doc.get("version"), doc.get("relay", False), doc.get("peers")
    if not _whole(version) or version < 0:
        raise EnrolmentError(f'{source}: "version" must be a whole number')
    if not isinstance(relay, bool):
        raise EnrolmentError(f'{source}: "relay" must be true or false')
    if not isinstance(peers, list):
        raise EnrolmentError(f'{source}: "peers" must be a list')
    entries: list[Peer] = []
    for i, p in enumerate(peers):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("key", "name")):
            raise EnrolmentError(f"{source}: peers[{i}] needs the strings key and name")
        if not isinstance(p.get("accept", False), bool):
            raise EnrolmentError(f'{source}: peers[{i}]: "accept" must be true or false')
        try:
            e = peer(p["key"], p["name"], p.get("accept", False))
        except EnrolmentError as exc:
            raise EnrolmentError(f"{source}: peers[{i}]: {exc}") from None
        _check_unique(entries, e, f"{source}: peers[{i}]")
        entries.append(e)
    return Enrolment(version, relay, parse_limits(doc.get("limits", {}), source), tuple(entries))


def _check_unique(entries: list[Peer] | tuple[Peer, ...], e: Peer, where: str) -> None:
    if any(o.key == e.key for o in entries):
        raise EnrolmentError(f"{where}: key {e.key} is enrolled twice")
    if any(o.name == e.name for o in entries):
        raise EnrolmentError(f"{where}: name {e.name!r} is used twice")


def load(path: Path) -> Enrolment:
    """The enrolments at path; an empty set (version 0, not relaying) if there is no file."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        return Enrolment()
    except OSError as exc:
        raise EnrolmentError(f"{path}: {exc.strerror}") from None
    return parse(text, str(path))


def save(path: Path, enrolment: Enrolment) -> None:
    atomic_write(Path(path), (json.dumps(enrolment.document(), indent=2) + "\n").encode(), mode=0o640)


def enrolled(current: Enrolment, p: Peer) -> Enrolment:
    """current with p enrolled (replacing the same key's entry); the same object if nothing changes."""
    if p in current.peers:
        return current
    others = tuple(o for o in current.peers if o.key != p.key)
    if any(o.name == p.name for o in others):
        raise EnrolmentError(f"name {p.name!r} is already enrolled for another key")
    return replace(current, version=current.version + 1, peers=(*others, p))


def revoked(current: Enrolment, who: str) -> Enrolment:
    """current without the peer who (a key or a name); the same object if it is not enrolled."""
    keep = tuple(p for p in current.peers if who not in (p.key, p.name))
    return current if len(keep) == len(current.peers) else replace(current, version=current.version + 1, peers=keep)


def configured(current: Enrolment, relay: bool | None = None, limits: Limits | None = None) -> Enrolment:
    """current with relaying switched and limits set; the same object if nothing changes."""
    new = replace(
        current,
        relay=current.relay if relay is None else relay,
        limits=current.limits if limits is None else limits,
    )
    return current if new == current else replace(new, version=current.version + 1)
