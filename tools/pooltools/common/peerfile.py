"""Versioned peer files: the vault's ACL (docs/vault.md section 6) and the relay's enrolments
(docs/relay.md section 7).

Both are JSON objects with a "format" number, a "version" that grows by one with every change,
and "peers", each with a key (base64, as poolctl prints it) and a name, both unique. A file is
read whole or refused with a message naming the problem, and replaced atomically. Each service
adds its own members and checks through the `make` callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pooltools.common.fsutil import atomic_write
from pooltools.protocol.keys import decode_key, encode_key

MAX_NAME = 64


class Entry(Protocol):
    @property
    def key(self) -> str:
        """The peer's public key (base64)."""

    @property
    def name(self) -> str:
        """The peer's name."""


E = TypeVar("E", bound=Entry)
Error = Callable[[str], ValueError]


def whole(value: Any) -> bool:
    """An int that is not a bool (JSON's true is not a number)."""
    return isinstance(value, int) and not isinstance(value, bool)


def checked_key(key: str, error: Error) -> str:
    """key in its canonical base64 form; error naming what is wrong with it."""
    try:
        return encode_key(decode_key(key))
    except ValueError as exc:
        raise error(f"peer key {key!r}: {exc}") from None


def check_name(name: str, error: Error) -> None:
    if not name or len(name) > MAX_NAME or any(c.isspace() or not c.isprintable() for c in name):
        raise error(f"name {name!r}: 1 to {MAX_NAME} printable characters without spaces")


def format_object(text: bytes | str, source: str, what: str, fmt: int, error: Error) -> dict[str, Any]:
    """The JSON object in text, which says it is in format fmt of what; error otherwise."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise error(f"{source}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f'{source}: not a format-{fmt} {what} (no "format": {fmt})')
    return doc


def parse_document(text: bytes | str, source: str, what: str, fmt: int, error: Error) -> dict[str, Any]:
    """The JSON object, checked for its format, a whole version and a list of peers."""
    doc = format_object(text, source, what, fmt, error)
    version = doc.get("version")
    if not whole(version) or version < 0:
        raise error(f'{source}: "version" must be a whole number')
    if not isinstance(doc.get("peers"), list):
        raise error(f'{source}: "peers" must be a list')
    return doc


def parse_peers(
    peers: list[Any], source: str, strings: tuple[str, ...], make: Callable[[dict[str, Any]], E], error: Error
) -> tuple[E, ...]:
    """Each entry made by make (which raises error), every key and name used once."""
    entries: list[E] = []
    for i, p in enumerate(peers):
        where = f"{source}: peers[{i}]"
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in strings):
            raise error(f"{where} needs the strings {', '.join(strings[:-1])} and {strings[-1]}")
        try:
            e = make(p)
        except ValueError as exc:
            raise error(f"{where}: {exc}") from None
        if any(o.key == e.key for o in entries):
            raise error(f"{where}: key {e.key} is enrolled twice")
        if any(o.name == e.name for o in entries):
            raise error(f"{where}: name {e.name!r} is used twice")
        entries.append(e)
    return tuple(entries)


def read(path: Path, error: Error) -> bytes | None:
    """The file's bytes, or None when there is no file."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{path}: {exc.strerror}") from None


def save(path: Path, document: dict[str, Any], indent: int | None = 2) -> None:
    """The document as the file's whole content, atomically (readable by root and the group)."""
    atomic_write(Path(path), (json.dumps(document, indent=indent) + "\n").encode(), mode=0o640)


def lookup(peers: tuple[E, ...], key: bytes) -> E | None:
    text = encode_key(key)
    return next((p for p in peers if p.key == text), None)


def with_entry(peers: tuple[E, ...], entry: E, error: Error) -> tuple[E, ...] | None:
    """peers with entry (replacing the same key's); None when it is there already."""
    if entry in peers:
        return None
    others = tuple(o for o in peers if o.key != entry.key)
    if any(o.name == entry.name for o in others):
        raise error(f"name {entry.name!r} is already enrolled for another key")
    return (*others, entry)


def without(peers: tuple[E, ...], who: str) -> tuple[E, ...] | None:
    """peers without who (a key or a name); None when it is not there."""
    keep = tuple(p for p in peers if who not in (p.key, p.name))
    return None if len(keep) == len(peers) else keep
