"""The vault's ACL file (docs/vault.md section 6): versioned JSON, replaced atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pooltools.common.fsutil import atomic_write
from pooltools.protocol.keys import decode_key, encode_key
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
        text = encode_key(key)
        return next((g for g in self.peers if g.key == text), None)

    def document(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": self.version, "peers": [asdict(g) for g in self.peers]}


def grant(key: str, name: str, scope: str, prefix: str = "") -> Grant:
    """A checked enrolment; AclError naming what is wrong."""
    try:
        raw = decode_key(key)
    except ValueError as exc:
        raise AclError(f"peer key {key!r}: {exc}") from None
    if scope not in SCOPES:
        raise AclError(f"scope {scope!r}: it must be one of {', '.join(SCOPES)}")
    if not name or len(name) > 64 or any(c.isspace() or not c.isprintable() for c in name):
        raise AclError(f"name {name!r}: 1 to 64 printable characters without spaces")
    try:
        paths.check(prefix, "prefix", allow_empty=True)
    except VaultError as exc:
        raise AclError(exc.detail) from None
    return Grant(encode_key(raw), name, scope, prefix)


def parse(text: bytes | str, source: str = "ACL") -> Acl:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AclError(f"{source}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AclError(f'{source}: not a format-{FORMAT} vault ACL (no "format": {FORMAT})')
    version, peers = doc.get("version"), doc.get("peers")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise AclError(f'{source}: "version" must be a whole number')
    if not isinstance(peers, list):
        raise AclError(f'{source}: "peers" must be a list')
    grants: list[Grant] = []
    for i, p in enumerate(peers):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("key", "name", "scope")):
            raise AclError(f"{source}: peers[{i}] needs the strings key, name and scope")
        try:
            g = grant(p["key"], p["name"], p["scope"], p.get("prefix", ""))
        except AclError as exc:
            raise AclError(f"{source}: peers[{i}]: {exc}") from None
        if any(o.key == g.key for o in grants):
            raise AclError(f"{source}: peers[{i}]: key {g.key} is enrolled twice")
        if any(o.name == g.name for o in grants):
            raise AclError(f"{source}: peers[{i}]: name {g.name!r} is used twice")
        grants.append(g)
    return Acl(version, tuple(grants))


def load(path: Path) -> Acl:
    """The ACL at path; an empty one (version 0) if there is no file."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        return Acl()
    except OSError as exc:
        raise AclError(f"{path}: {exc.strerror}") from None
    return parse(text, str(path))


def save(path: Path, acl: Acl) -> None:
    atomic_write(Path(path), (json.dumps(acl.document(), indent=2) + "\n").encode(), mode=0o640)


def enrolled(acl: Acl, g: Grant) -> Acl:
    """acl with g enrolled (replacing the same key's grant); the same object if nothing changes."""
    if g in acl.peers:
        return acl
    others = tuple(p for p in acl.peers if p.key != g.key)
    if any(p.name == g.name for p in others):
        raise AclError(f"name {g.name!r} is already enrolled for another key")
    return Acl(acl.version + 1, (*others, g))


def revoked(acl: Acl, who: str) -> Acl:
    """acl without the peer named who (a key or a name); the same object if it is not enrolled."""
    keep = tuple(p for p in acl.peers if who not in (p.key, p.name))
    return acl if len(keep) == len(acl.peers) else Acl(acl.version + 1, keep)
