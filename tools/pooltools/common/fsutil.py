"""Atomic file writes: temporary file in the same folder, fsync, rename, fsync of the folder."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write data to path atomically.

    The temporary file is created with `mode` (O_EXCL, umask notwithstanding:
    fchmod before any byte is written), so a secret is never readable by others,
    not even for an instant. overwrite=False fails with FileExistsError if path
    exists (checked again at the rename with a hard link, which cannot replace).
    """
    path = Path(path)
    d = path.parent if str(path.parent) else Path(".")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists")
    tmp = d / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError if someone created it meanwhile
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(d)


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced (to notice a new ACL without reading it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
