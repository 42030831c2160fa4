"""The node's private key file: base64 of 32 bytes and a newline, mode 0600, owned by the reader."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pooltools.common.fsutil import atomic_write
from pooltools.kernel.device import EXIT_EXISTS, EXIT_NOT_FOUND, EXIT_PERMISSION, EXIT_USAGE, PoolError
from pooltools.protocol import x25519
from pooltools.protocol.keys import decode_key, encode_key

DEFAULT_KEY_FILE = "/etc/pool/private.key"


def generate(path: Path, force: bool = False) -> bytes:
    """Create a new private key at path (0600 before any byte is written); returns the public key."""
    what = f"generate {path}"
    if not path.parent.is_dir():
        raise PoolError(what, f"folder {path.parent} does not exist", EXIT_NOT_FOUND)
    if path.exists() and not force:
        raise PoolError(what, "key file exists (use --force to replace it)", EXIT_EXISTS)
    private = x25519.generate_private()
    try:
        atomic_write(path, (encode_key(private) + "\n").encode(), mode=0o600, overwrite=force)
    except FileExistsError:
        raise PoolError(what, "key file exists (use --force to replace it)", EXIT_EXISTS) from None
    except PermissionError:
        raise PoolError(what, "permission denied", EXIT_PERMISSION) from None
    return x25519.public_key(private)


def read_private(path: Path, owner: int | None = None) -> bytes:
    """Read a private key file, refusing one that others could read or write or that someone else owns.

    owner: the uid the file must belong to (default: this process's effective uid).
    """
    what = f"key file {path}"
    owner = os.geteuid() if owner is None else owner
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise PoolError(what, "does not exist (poolctl identity generate)", EXIT_NOT_FOUND) from None
    except PermissionError:
        raise PoolError(what, "permission denied", EXIT_PERMISSION) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PoolError(what, "is a symbolic link (refused: point at the file itself)", EXIT_PERMISSION) from None
        raise PoolError(what, exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PoolError(what, "not a regular file", EXIT_USAGE)
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise PoolError(
                what, f"mode {mode:04o} is too open: must be 0600 or stricter (chmod 600 {path})", EXIT_PERMISSION
            )
        if st.st_uid != owner:
            raise PoolError(
                what, f"owned by uid {st.st_uid}, must be owned by uid {owner} (chown {owner} {path})", EXIT_PERMISSION
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PoolError(what, "not a base64 key (non-ASCII bytes)", EXIT_USAGE) from None
    try:
        key = decode_key(text)
    except ValueError as exc:
        raise PoolError(what, str(exc), EXIT_USAGE) from None
    return key
