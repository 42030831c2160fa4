"""Vault paths (docs/vault.md section 5): checked as strings, then resolved inside the root."""

from __future__ import annotations

import os
from pathlib import Path

from pooltools.vault.wire import Err, VaultError

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def check(path: str, what: str = "path", allow_empty: bool = False) -> str:
    """path if it is a valid vault path (or "" when allow_empty); VaultError(BAD_PATH) naming the fault."""
    if not isinstance(path, str):
        raise VaultError(Err.BAD_REQUEST, f"'{what}' must be a string")
    if path == "" and allow_empty:
        return path
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise VaultError(Err.BAD_PATH, f"{what} has no UTF-8 form (a lone surrogate)") from None
    if not 1 <= len(raw) <= MAX_PATH_BYTES:
        raise VaultError(Err.BAD_PATH, f"{what} of {len(raw)} bytes: it must have 1 to {MAX_PATH_BYTES}")
    if "\0" in path:
        raise VaultError(Err.BAD_PATH, f"{what} contains a NUL character")
    if path.startswith("/"):
        raise VaultError(Err.BAD_PATH, f"{what} {path!r} is absolute: vault paths are relative to the vault root")
    for name in path.split("/"):
        if name == "":
            raise VaultError(Err.BAD_PATH, f"{what} {path!r} has an empty component (a trailing or doubled '/')")
        if name in (".", ".."):
            raise VaultError(Err.BAD_PATH, f"{what} {path!r} has a '{name}' component")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise VaultError(
                Err.BAD_PATH, f"{what} has a component of {len(name.encode())} bytes; the limit is {MAX_NAME_BYTES}"
            )
    return path


def under(path: str, prefix: str) -> bool:
    """path is prefix itself or below it, component-wise ("docs" holds "docs/a", not "docs2/a")."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


def resolve(root: Path, path: str) -> Path:
    """root/path with every existing component checked: a symbolic link leading out of the root,
    or a component that should be a folder but is a file, is refused (BAD_PATH)."""
    check(path)
    real_root = Path(os.path.realpath(root))
    current = real_root
    names = path.split("/")
    for i, name in enumerate(names):
        candidate = current / name
        if not os.path.lexists(candidate):
            return candidate.joinpath(*names[i + 1 :])
        if os.path.islink(candidate):
            candidate = Path(os.path.realpath(candidate))
            if candidate != real_root and real_root not in candidate.parents:
                where = "/".join(names[: i + 1])
                raise VaultError(Err.BAD_PATH, f"{path!r}: {where} is a link leading out of the vault root")
            if not os.path.lexists(candidate):
                return candidate.joinpath(*names[i + 1 :])
        if i < len(names) - 1 and not os.path.isdir(candidate):
            raise VaultError(Err.BAD_PATH, f"{path!r}: {'/'.join(names[: i + 1])} is a file, not a folder")
        if i == len(names) - 1 and os.path.isdir(candidate):
            raise VaultError(Err.BAD_PATH, f"{path!r} is a folder, not a file")
        current = candidate
    return current
