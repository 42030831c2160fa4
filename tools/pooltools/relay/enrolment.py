"""The relay's enrolment file (docs/relay.md section 7): versioned JSON, replaced atomically."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pooltools.common import peerfile
from pooltools.common.peerfile import whole

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
        return peerfile.lookup(self.peers, key)

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
    key = peerfile.checked_key(key, EnrolmentError)
    peerfile.check_name(name, EnrolmentError)
    return Peer(key, name, bool(accept))


def parse_limits(doc: Any, source: str) -> Limits:
    if not isinstance(doc, dict):
        raise EnrolmentError(f'{source}: "limits" must be an object')
    unknown = sorted(set(doc) - set(LIMIT_RANGES))
    if unknown:
        raise EnrolmentError(f'{source}: "limits" has unknown members {", ".join(unknown)}')
    values = {}
    for name, (lo, hi) in LIMIT_RANGES.items():
        if name in doc:
            if not whole(doc[name]) or not lo <= doc[name] <= hi:
                raise EnrolmentError(f'{source}: limits "{name}" must be a whole number from {lo} to {hi}')
            values[name] = doc[name]
    limits = Limits(**values)
    if limits.peer_bytes_per_second > limits.total_bytes_per_second:
        raise EnrolmentError(f"{source}: limits: peer_bytes_per_second is above total_bytes_per_second")
    return limits


def parse(text: bytes | str, source: str = "relay enrolments") -> Enrolment:
    doc = peerfile.parse_document(text, source, "relay enrolment file", FORMAT, EnrolmentError)
    relay = doc.get("relay", False)
    if not isinstance(relay, bool):
        raise EnrolmentError(f'{source}: "relay" must be true or false')

    def make(p: dict[str, Any]) -> Peer:
        if not isinstance(p.get("accept", False), bool):
            raise EnrolmentError('"accept" must be true or false')
        return peer(p["key"], p["name"], p.get("accept", False))

    peers = peerfile.parse_peers(doc["peers"], source, ("key", "name"), make, EnrolmentError)
    return Enrolment(doc["version"], relay, parse_limits(doc.get("limits", {}), source), peers)


def load(path: Path) -> Enrolment:
    """The enrolments at path; an empty set (version 0, not relaying) if there is no file."""
    text = peerfile.read(path, EnrolmentError)
    return Enrolment() if text is None else parse(text, str(path))


def save(path: Path, enrolment: Enrolment) -> None:
    peerfile.save(path, enrolment.document())


def enrolled(current: Enrolment, p: Peer) -> Enrolment:
    """current with p enrolled (replacing the same key's entry); the same object if nothing changes."""
    peers = peerfile.with_entry(current.peers, p, EnrolmentError)
    return current if peers is None else replace(current, version=current.version + 1, peers=peers)


def revoked(current: Enrolment, who: str) -> Enrolment:
    """current without the peer who (a key or a name); the same object if it is not enrolled."""
    peers = peerfile.without(current.peers, who)
    return current if peers is None else replace(current, version=current.version + 1, peers=peers)


def configured(current: Enrolment, relay: bool | None = None, limits: Limits | None = None) -> Enrolment:
    """current with relaying switched and limits set; the same object if nothing changes."""
    new = replace(
        current,
        relay=current.relay if relay is None else relay,
        limits=current.limits if limits is None else limits,
    )
    return current if new == current else replace(new, version=current.version + 1)
