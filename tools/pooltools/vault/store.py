"""The vault's storage (docs/vault.md section 8).

    DIR/files/     the vault root: only complete, verified files, replaced atomically
    DIR/versions/  per path (named by the SHA-256 of the path): meta.json and kept versions v<N>
    DIR/staging/   pushes in progress: <id>.part (the data) and <id>.blocks (block digests)

All three are on one filesystem, so a verified staging file is renamed into the root. The
visible file of the current version is its content; when a push or delete replaces it, it is
hard-linked into its versions folder first, so the root never lacks it for an instant.
A change made behind the vault's back (or a crash between the rename and the metadata
write) is noticed by size, mtime and inode and recorded as a version of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pooltools.common.fsutil import atomic_write, fsync_dir
from pooltools.vault import paths
from pooltools.vault.wire import Err, VaultError, block_length, blocks_of

META_FORMAT = 1
READ_CHUNK = 1 << 20
FILE_MODE = 0o640
DIR_MODE = 0o750


@dataclass
class Version:
    version: int
    time: float
    deleted: bool = False
    sha256: str = ""
    size: int = 0
    peer: str = ""  # who stored it: an enrolled peer's name, or "" for a change made on the node

    def public(self) -> dict[str, Any]:
        if self.deleted:
            return {"version": self.version, "time": self.time, "deleted": True}
        return {"version": self.version, "sha256": self.sha256, "size": self.size, "time": self.time, "deleted": False}


@dataclass
class Meta:
    path: str
    next_version: int = 1
    versions: list[Version] = field(default_factory=list)  # newest first
    signature: list[int] = field(default_factory=list)  # [size, mtime_ns, ino] of the visible file

    @property
    def current(self) -> Version | None:
        return self.versions[0] if self.versions and not self.versions[0].deleted else None


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def sha256_file(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(READ_CHUNK):
        h.update(chunk)
    return h.hexdigest()


class Store:
    def __init__(self, directory: Path, keep_versions: int = 5, max_file_size: int = 4 << 30) -> None:
        if keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        self.dir = Path(directory)
        self.root = self.dir / "files"
        self.versions_dir = self.dir / "versions"
        self.staging = self.dir / "staging"
        self.keep_versions = keep_versions
        self.max_file_size = max_file_size
        for d in (self.dir, self.root, self.versions_dir, self.staging):
            d.mkdir(mode=DIR_MODE, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ---- per-path metadata

    @contextlib.contextmanager
    def locked(self, path: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            yield

    def _vdir(self, path: str) -> Path:
        return self.versions_dir / hashlib.sha256(path.encode()).hexdigest()

    def _load_meta(self, path: str) -> Meta:
        try:
            doc = json.loads((self._vdir(path) / "meta.json").read_bytes())
        except FileNotFoundError:
            return Meta(path)
        except (OSError, ValueError) as exc:
            raise VaultError(Err.IO_ERROR, f"metadata of {path!r} unreadable: {exc}") from None
        return Meta(
            doc["path"],
            doc["next_version"],
            [Version(**v) for v in doc["versions"]],
            doc.get("signature", []),
        )

    def _save_meta(self, meta: Meta) -> None:
        vdir = self._vdir(meta.path)
        if not vdir.is_dir():
            vdir.mkdir(mode=DIR_MODE)
            fsync_dir(self.versions_dir)
        doc = {
            "format": META_FORMAT,
            "path": meta.path,
            "next_version": meta.next_version,
            "versions": [v.__dict__ for v in meta.versions],
            "signature": meta.signature,
        }
        atomic_write(vdir / "meta.json", json.dumps(doc, indent=1).encode(), mode=FILE_MODE)

    def _state(self, path: str) -> tuple[Meta, Path]:
        """The path's metadata, reconciled with the visible file (caller holds the path's lock)."""
        visible = paths.resolve(self.root, path)
        meta = self._load_meta(path)
        try:
            st = visible.stat()
        except FileNotFoundError:
            st = None
        if st is None:
            if meta.current is not None:  # removed on the node
                self._add(meta, Version(meta.next_version, time.time(), deleted=True))
                meta.signature = []
                self._save_meta(meta)
            return meta, visible
        if meta.current is not None and meta.signature == _signature(st):
            return meta, visible
        with open(visible, "rb") as f:  # changed on the node, or a crash before the metadata write
            digest = sha256_file(f)
            st = os.fstat(f.fileno())
        self._add(meta, Version(meta.next_version, time.time(), sha256=digest, size=st.st_size))
        meta.signature = _signature(st)
        self._save_meta(meta)
        return meta, visible

    def _add(self, meta: Meta, v: Version) -> None:
        meta.versions.insert(0, v)
        meta.next_version = v.version + 1
        for old in meta.versions[self.keep_versions :]:
            with contextlib.suppress(FileNotFoundError):
                (self._vdir(meta.path) / f"v{old.version}").unlink()
        del meta.versions[self.keep_versions :]

    def _keep_current(self, meta: Meta, visible: Path) -> None:
        """Hard-link the visible file as its version's copy before it is replaced or removed."""
        cur = meta.current
        if cur is None:
            return
        vdir = self._vdir(meta.path)
        vdir.mkdir(mode=DIR_MODE, exist_ok=True)
        kept = vdir / f"v{cur.version}"
        with contextlib.suppress(FileExistsError):
            os.link(visible, kept)
        fsync_dir(vdir)

    # ---- requests

    def stat(self, path: str) -> dict[str, Any]:
        with self.locked(path):
            meta, _visible = self._state(path)
        cur = meta.current
        if cur is None:
            raise VaultError(Err.NOT_FOUND, f"no file {path!r}")
        return {"path": path, "size": cur.size, "sha256": cur.sha256, "version": cur.version, "time": cur.time}

    def history(self, path: str) -> list[dict[str, Any]]:
        with self.locked(path):
            meta, _visible = self._state(path)
        if not meta.versions:
            raise VaultError(Err.NOT_FOUND, f"the vault keeps nothing for {path!r}")
        return [v.public() for v in meta.versions]

    def walk(self, prefix: str, after: str) -> Iterator[str]:
        """Paths of the visible files under prefix, after `after`, in byte order of their UTF-8."""
        names: list[str] = []
        top = self.root / prefix if prefix else self.root
        if prefix and top.is_file():
            names.append(prefix)
        elif top.is_dir() and not top.is_symlink():
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
                rel = os.path.relpath(dirpath, self.root)
                for name in filenames:
                    names.append(name if rel == "." else f"{rel}/{name}")
        for p in sorted(names, key=lambda n: n.encode("utf-8", "surrogateescape")):
            if p.encode("utf-8", "surrogateescape") > after.encode("utf-8", "surrogateescape"):
                yield p

    @contextlib.contextmanager
    def open_version(self, path: str, version: int | None) -> Iterator[tuple[BinaryIO, Version]]:
        """The content of a version (default: the current one), open for reading."""
        with self.locked(path):
            meta, visible = self._state(path)
            if version is None or (meta.current and meta.current.version == version):
                v = meta.current
                if v is None:
                    raise VaultError(Err.NOT_FOUND, f"no file {path!r}")
                source = visible
            else:
                v = next((x for x in meta.versions if x.version == version and not x.deleted), None)
                if v is None:
                    raise VaultError(Err.NOT_FOUND, f"{path!r} has no kept version {version}")
                source = self._vdir(path) / f"v{version}"
            try:
                f = open(source, "rb")  # noqa: SIM115 - handed to the caller, closed below
            except OSError as exc:
                raise VaultError(Err.IO_ERROR, f"cannot open version {v.version} of {path!r}: {exc.strerror}") from None
        with f:
            yield f, v

    def check_base(self, meta: Meta, base: str, force: bool) -> None:
        cur = meta.current
        if force:
            return
        if base == "new" and cur is not None:
            raise VaultError(Err.CONFLICT, f"{meta.path!r} exists (version {cur.version}, sha256 {cur.sha256})")
        if base != "new" and (cur is None or cur.sha256 != base):
            now = f"version {cur.version}, sha256 {cur.sha256}" if cur else "no file"
            raise VaultError(Err.CONFLICT, f"{meta.path!r} changed: the vault has {now}, not {base}")

    def expect_base(self, path: str, base: str, force: bool) -> None:
        with self.locked(path):
            meta, _visible = self._state(path)
            self.check_base(meta, base, force)

    def delete(self, path: str, base: str, force: bool, peer: str) -> int:
        with self.locked(path):
            meta, visible = self._state(path)
            if meta.current is None:
                raise VaultError(Err.NOT_FOUND, f"no file {path!r}")
            self.check_base(meta, base, force)
            self._keep_current(meta, visible)
            visible.unlink()
            fsync_dir(visible.parent)
            self._add(meta, Version(meta.next_version, time.time(), deleted=True, peer=peer))
            meta.signature = []
            self._save_meta(meta)
            return meta.versions[0].version

    # ---- pushes

    def check_size(self, size: int) -> None:
        if size > self.max_file_size:
            raise VaultError(Err.TOO_LARGE, f"{size} bytes is over the vault's limit of {self.max_file_size}")

    def begin_push(self, peer_key: bytes, path: str, size: int, sha256: str, base: str, block_size: int) -> Upload:
        self.check_size(size)
        ident = hashlib.sha256(json.dumps([peer_key.hex(), path, size, sha256, base, block_size]).encode()).hexdigest()
        return Upload(self, ident, path, size, sha256, base, block_size)

    def commit(self, up: Upload, force: bool, peer: str) -> int:
        """Store a complete, verified upload as the path's new current version; its number."""
        with self.locked(up.path):
            meta, visible = self._state(up.path)
            self.check_base(meta, up.base, force)
            self._makedirs(visible.parent)
            self._keep_current(meta, visible)
            os.rename(up.part, visible)
            fsync_dir(visible.parent)
            st = visible.stat()
            self._add(meta, Version(meta.next_version, time.time(), sha256=up.sha256, size=up.size, peer=peer))
            meta.signature = _signature(st)
            self._save_meta(meta)
            up.finished()
            return meta.versions[0].version

    def _makedirs(self, d: Path) -> None:
        missing = []
        while not d.exists():
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            m.mkdir(mode=DIR_MODE)
            fsync_dir(m.parent)

    def expire_staging(self, max_age: float) -> int:
        """Remove pushes untouched for max_age seconds; how many."""
        now, n = time.time(), 0
        for p in self.staging.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_mtime > max_age:
                    p.unlink()
                    p.with_suffix(".blocks").unlink(missing_ok=True)
                    n += 1
        return n


class Upload:
    """One push's staging file and its record of verified blocks. Held under an exclusive
    lock, so the same push resumed from two sessions at once is refused (busy)."""

    def __init__(self, store: Store, ident: str, path: str, size: int, sha256: str, base: str, block_size: int) -> None:
        self.store, self.path, self.size, self.sha256, self.base = store, path, size, sha256, base
        self.block_size = block_size
        self.blocks = blocks_of(size, block_size)
        self.part = store.staging / f"{ident}.part"
        self.record = store.staging / f"{ident}.blocks"
        self._hash = hashlib.sha256()
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise VaultError(Err.BUSY, f"the same push of {path!r} is running in another session") from None
        self.rec = open(self.record, "ab+")  # noqa: SIM115 - closed in close()
        self.have = self._verified_prefix()

    def _verified_prefix(self) -> int:
        """Leading blocks whose data still hashes to the digest recorded when they were verified."""
        self.rec.seek(0)
        digests = self.rec.read()
        n = 0
        for i in range(min(len(digests) // 32, self.blocks)):
            length = block_length(self.size, self.block_size, i)
            data = os.pread(self.fd, length, i * self.block_size)
            if len(data) != length or hashlib.sha256(data).digest() != digests[32 * i : 32 * i + 32]:
                break
            self._hash.update(data)
            n += 1
        os.ftruncate(self.fd, n * self.block_size)
        self.rec.truncate(32 * n)
        self.rec.seek(0, os.SEEK_END)
        return n

    def write_block(self, index: int, digest: bytes, data: bytes) -> None:
        """Block index, checked (index, length, SHA-256) before any byte is written."""
        if index != self.have:
            raise VaultError(Err.BAD_BLOCK, f"block {index} arrived where block {self.have} was due")
        if index >= self.blocks:
            raise VaultError(Err.BAD_BLOCK, f"block {index}: the file has only {self.blocks} blocks")
        want = block_length(self.size, self.block_size, index)
        if len(data) != want:
            raise VaultError(Err.BAD_BLOCK, f"block {index} has {len(data)} bytes, not {want}")
        if hashlib.sha256(data).digest() != digest:
            raise VaultError(Err.BAD_BLOCK, f"block {index}: its data does not match its SHA-256")
        try:
            os.pwrite(self.fd, data, index * self.block_size)
            self.rec.write(digest)
            self.rec.flush()
        except OSError as exc:
            raise VaultError(Err.IO_ERROR, f"cannot write block {index}: {exc.strerror}") from None
        self._hash.update(data)
        self.have += 1

    @property
    def complete(self) -> bool:
        return self.have == self.blocks

    def seal(self) -> None:
        """All blocks in: the whole file's SHA-256, then the data on disk (before the rename)."""
        if self._hash.hexdigest() != self.sha256:
            self.discard()
            raise VaultError(Err.BAD_HASH, f"the file's SHA-256 is {self._hash.hexdigest()}, not {self.sha256}")
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise VaultError(Err.IO_ERROR, f"cannot store {self.path!r}: {exc.strerror}") from None

    def finished(self) -> None:
        self.record.unlink(missing_ok=True)
        self.close()

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.rec.close()
