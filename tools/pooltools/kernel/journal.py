"""The journal hash chain (docs/protocol.md section 6) and its persisted form.

    hash = SHA-256(prev_hash || be64(seq) || be64(timestamp_ns) || be16(type) || be16(code)
                   || be32(config_version) || peer_public_key[32] || detail up to its first NUL)

The persisted journal (poold, state_dir/journal.jsonl) is append-only, one JSON
object per line, each entry exactly as the kernel reported it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pooltools.kernel import uapi

ZERO_HASH = bytes(32)
ZERO_KEY = bytes(32)


def entry_hash(
    prev_hash: bytes,
    seq: int,
    timestamp_ns: int,
    type_: int,
    code: int,
    config_version: int,
    peer_public_key: bytes,
    detail: bytes,
) -> bytes:
    """SHA-256 of one entry as chained by pool.ko."""
    nul = detail.find(b"\0")
    if nul >= 0:
        detail = detail[:nul]
    h = hashlib.sha256()
    h.update(prev_hash)
    h.update(struct.pack(">QQHHI", seq, timestamp_ns, type_, code, config_version))
    h.update(peer_public_key)
    h.update(detail)
    return h.digest()


@dataclass(frozen=True)
class Entry:
    seq: int
    timestamp_ns: int
    type: int
    code: int
    config_version: int
    peer_public_key: bytes
    prev_hash: bytes
    hash: bytes
    detail: bytes

    @classmethod
    def from_struct(cls, e: uapi.PoolJournalEntry) -> Entry:
        return cls(
            seq=e.seq,
            timestamp_ns=e.timestamp_ns,
            type=e.type,
            code=e.code,
            config_version=e.config_version,
            peer_public_key=bytes(e.peer_public_key),
            prev_hash=bytes(e.prev_hash),
            hash=bytes(e.hash),
            detail=e.detail,  # c_char array: bytes up to the first NUL
        )

    def computed_hash(self) -> bytes:
        return entry_hash(
            self.prev_hash,
            self.seq,
            self.timestamp_ns,
            self.type,
            self.code,
            self.config_version,
            self.peer_public_key,
            self.detail,
        )

    def to_record(self) -> dict[str, object]:
        """The persisted (and poolctl --json) form of the raw fields."""
        return {
            "seq": self.seq,
            "timestamp_ns": self.timestamp_ns,
            "type": self.type,
            "code": self.code,
            "config_version": self.config_version,
            "peer_public_key": self.peer_public_key.hex(),
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
            "detail_hex": self.detail.hex(),
        }

    @classmethod
    def from_record(cls, r: dict[str, object]) -> Entry:
        def _hex(name: str, length: int | None) -> bytes:
            v = r[name]
            if not isinstance(v, str):
                raise ValueError(f"{name} is not a hex string")
            b = bytes.fromhex(v)
            if length is not None and len(b) != length:
                raise ValueError(f"{name} must be {length} bytes")
            return b

        def _int(name: str) -> int:
            v = r[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} is not a non-negative integer")
            return v

        return cls(
            seq=_int("seq"),
            timestamp_ns=_int("timestamp_ns"),
            type=_int("type"),
            code=_int("code"),
            config_version=_int("config_version"),
            peer_public_key=_hex("peer_public_key", 32),
            prev_hash=_hex("prev_hash", 32),
            hash=_hex("hash", 32),
            detail=_hex("detail_hex", None),
        )


def type_name(t: int) -> str:
    try:
        return uapi.JournalType(t).name.lower()
    except ValueError:
        return f"type{t}"


def code_name(c: int) -> str:
    try:
        return uapi.ErrorCode(c).name.lower()
    except ValueError:
        return f"code{c:#x}"


@dataclass
class VerifyResult:
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: bytes | None = None
    segments: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(entries: Iterable[Entry], allow_restart: bool = False) -> VerifyResult:
    """Check every entry's hash and its link to the previous one.

    The first entry is taken as the anchor (older ones may have left the
    kernel's ring); a GENESIS entry with seq 0 must have a zero prev_hash.
    allow_restart: a GENESIS entry with seq 0 and a zero prev_hash may start a
    new segment (a persisted journal across a module load that was not seeded).
    """
    res = VerifyResult()
    prev: Entry | None = None
    for e in entries:
        res.checked += 1
        if e.computed_hash() != e.hash:
            res.problems.append(f"seq {e.seq}: hash does not match the entry's contents")
        fresh = e.type == uapi.JournalType.GENESIS and e.seq == 0 and e.prev_hash == ZERO_HASH
        if prev is None:
            res.segments = 1
            res.first_seq = e.seq
            if e.type == uapi.JournalType.GENESIS and e.seq == 0 and e.prev_hash != ZERO_HASH:
                res.problems.append("seq 0: genesis entry with a non-zero prev_hash")
        elif allow_restart and fresh:
            res.segments += 1
        else:
            if e.seq != prev.seq + 1:
                res.problems.append(f"seq {e.seq}: follows seq {prev.seq} (entries missing or reordered)")
            if e.prev_hash != prev.hash:
                res.problems.append(f"seq {e.seq}: prev_hash does not match the hash of seq {prev.seq}")
        prev = e
    if prev is not None:
        res.last_seq = prev.seq
        res.head_hash = prev.hash
    return res


# ---- persisted journal -------------------------------------------------------


class JournalFileError(Exception):
    pass


def read_file(path: Path) -> tuple[list[Entry], int]:
    """Entries of a persisted journal and the byte length of its valid part.

    A last line without its newline (a crash while appending) is ignored, so
    the caller can truncate it; any other unreadable line raises JournalFileError.
    """
    entries: list[Entry] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    good = 0
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break  # torn last line
        lineno += 1
        line = data[pos:end]
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            entries.append(Entry.from_record(rec))
        except (ValueError, KeyError) as exc:
            raise JournalFileError(f"{path}:{lineno}: unreadable journal entry: {exc}") from None
        pos = end + 1
        good = pos
    return entries, good


# A persisted journal is rotated by size: an unauthenticated sender can make pool.ko journal
# (rate-limited there, but steadily), and a node's disk must not fill with it.
MAX_BYTES = 4 << 20  # journal.jsonl grows to about this before it is rotated
KEEP_ROTATED = 8  # journal.jsonl.1 (newest) .. .8 (oldest) are kept


class JournalFile:
    """The persisted journal: journal.jsonl holds the newest entries, journal.jsonl.1 ..
    .KEEP_ROTATED the older ones, newest first. An append that would take journal.jsonl past
    max_bytes first rotates it, so the chain runs on unbroken from the last entry of .1 into
    the first of the new file (each file verifies on its own from its first entry, and the
    files concatenated oldest first verify as one chain). Each append is fsynced; only the
    newest entry is kept in memory."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP_ROTATED) -> None:
        if max_bytes < 4096 or keep < 1:
            raise ValueError("journal: max_bytes must be at least 4096 and keep at least 1")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.head: Entry | None = None

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def load(self) -> list[Entry]:
        """The current file's entries (a torn last line is cut off); the head is the newest
        entry of the current file, or of journal.jsonl.1 when the current one is empty."""
        entries, good = read_file(self.path)
        if self.path.exists() and self.path.stat().st_size != good:
            with open(self.path, "r+b") as f:  # drop a torn last line
                f.truncate(good)
                os.fsync(f.fileno())
        self.head = entries[-1] if entries else None
        if self.head is None and self.rotated(1).exists():
            older, _good = read_file(self.rotated(1))
            self.head = older[-1] if older else None
        return entries

    def _rotate(self) -> None:
        """journal.jsonl -> .1 -> .2 ...; the oldest beyond keep is deleted."""
        self.rotated(self.keep).unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            if self.rotated(n).exists():
                os.replace(self.rotated(n), self.rotated(n + 1))
        os.replace(self.path, self.rotated(1))
        _fsync_dir(self.path.parent)

    def append(self, new: list[Entry]) -> None:
        if not new:
            return
        payload = b"".join(json.dumps(e.to_record(), sort_keys=True).encode() + b"\n" for e in new)
        with contextlib.suppress(FileNotFoundError):
            size = self.path.stat().st_size
            if size and size + len(payload) > self.max_bytes:
                self._rotate()
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no half-written line for the next append to follow
                raise
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)
        self.head = new[-1]

    def rotate_aside(self, suffix: str) -> Path:
        """Move an unusable journal out of the way (kept for inspection)."""
        dest = self.path.with_name(f"{self.path.name}.{suffix}")
        os.replace(self.path, dest)
        _fsync_dir(self.path.parent)
        self.head = None
        return dest


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
