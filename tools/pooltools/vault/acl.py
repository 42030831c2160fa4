"""The vault's ACL file (docs/vault.md section 6): versioned JSON, replaced atomically."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pooltools.common import peerfile
from pooltools.vault import paths
from pooltools.vault.wire import VaultError

DEFAULT_PATH = Path("/etc/pool/vault-acl.json")
FORMAT = 1
SCOPES = ("read", "read-write")


class AclError(ValueError):
    """The ACL file or an enrolment is not valid; the message names the problem."""


@dataclass(frozen=True)
class Grant:
    key: str  # base64, as poolctl prints it
    name: str
    scope: str
    prefix: str = ""

    @property
    def writes(self) -> bool:
        return self.scope == "read-write"


@dataclass
class Acl:
    version: int = 0
    peers: tuple[Grant, ...] = ()

    def lookup(self, key: bytes) -> Grant | None:
        return peerfile.lookup(self.peers, key)

    def document(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": self.version, "peers": [asdict(g) for g in self.peers]}


def grant(key: str, name: str, scope: str, prefix: str = "") -> Grant:
    """A checked enrolment; AclError naming what is wrong."""
    key = peerfile.checked_key(key, AclError)
    if scope not in SCOPES:
        raise AclError(f"scope {scope!r}: it must be one of {', '.join(SCOPES)}")
    peerfile.check_name(name, AclError)
    try:
        paths.check(prefix, "prefix", allow_empty=True)
    except VaultError as exc:
        raise AclError(exc.detail) from None
    return Grant(key, name, scope, prefix)


def parse(text: bytes | str, source: str = "ACL") -> Acl:
    doc = peerfile.parse_document(text, source, "vault ACL", FORMAT, AclError)

    def make(p: dict[str, Any]) -> Grant:
        return grant(p["key"], p["name"], p["scope"], p.get("prefix", ""))

    return Acl(doc["version"], peerfile.parse_peers(doc["peers"], source, ("key", "name", "scope"), make, AclError))


def load(path: Path) -> Acl:
    """The ACL at path; an empty one (version 0) if there is no file."""
    text = peerfile.read(path, AclError)
    return Acl() if text is None else parse(text, str(path))


def save(path: Path, acl: Acl) -> None:
    peerfile.save(path, acl.document())


def enrolled(acl: Acl, g: Grant) -> Acl:
    """acl with g enrolled (replacing the same key's grant); the same object if nothing changes."""
    peers = peerfile.with_entry(acl.peers, g, AclError)
    return acl if peers is None else Acl(acl.version + 1, peers)


def revoked(acl: Acl, who: str) -> Acl:
    """acl without the peer named who (a key or a name); the same object if it is not enrolled."""
    peers = peerfile.without(acl.peers, who)
    return acl if peers is None else Acl(acl.version + 1, peers)
