"""The client side of docs/vault.md: requests, and pushes and pulls that verify every block."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pooltools.common.fsutil import fsync_dir
from pooltools.common.link import Link, LinkTimeout
from pooltools.vault import wire
from pooltools.vault.store import sha256_file
from pooltools.vault.wire import Kind, VaultError

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class RemoteError(Exception):
    """The vault refused a request: its error code (docs/vault.md section 3) and detail."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


class TransferError(Exception):
    """The conversation broke: the session ended, a timeout, or a message the format forbids."""


class VaultClient:
    def __init__(self, link: Link, timeout: float = 60.0) -> None:
        self.link, self.timeout = link, timeout

    def _next(self, timeout: float | None = None) -> wire.Message:
        try:
            msg = self.link.recv(self.timeout if timeout is None else timeout)
        except LinkTimeout:
            raise TransferError(f"the vault answered nothing within {self.timeout:g} s") from None
        if msg is None:
            raise TransferError("the vault ended the session")
        return self._decode(msg)

    @staticmethod
    def _decode(msg: bytes) -> wire.Message:
        try:
            return wire.decode(msg)
        except VaultError as exc:
            raise TransferError(f"the vault sent a malformed message: {exc.detail}") from None

    def _reply(self, timeout: float | None = None) -> dict[str, Any]:
        m = self._next(timeout)
        if m.kind != Kind.REPLY:
            raise TransferError(f"the vault sent a {m.kind.name} where a REPLY was due")
        return self._checked(m.header)

    @staticmethod
    def _checked(header: dict[str, Any]) -> dict[str, Any]:
        if header.get("ok") is True:
            return header
        raise RemoteError(str(header.get("error", "unknown")), str(header.get("detail", "")))

    def request(self, op: str, **members: Any) -> dict[str, Any]:
        self.link.send(wire.request(op, **members), self.timeout)
        return self._reply()

    # ---- requests with one reply

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def stat(self, path: str) -> dict[str, Any]:
        return self.request("stat", path=path)

    def history(self, path: str) -> dict[str, Any]:
        return self.request("history", path=path)

    def delete(self, path: str, base: str | None, force: bool = False) -> dict[str, Any]:
        members: dict[str, Any] = {"path": path, "force": force}
        if base:
            members["base"] = base
        return self.request("delete", **members)

    def list(self, prefix: str = "") -> Iterator[dict[str, Any]]:
        after = ""
        while True:
            page = self.request("list", prefix=prefix, after=after)
            yield from page["entries"]
            if not page.get("more") or not page["entries"]:
                return
            after = page["entries"][-1]["path"]

    # ---- transfers

    def push(
        self,
        local: Path,
        path: str,
        base: str = "new",
        force: bool = False,
        block_size: int = wire.BLOCK_SIZE_MAX,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Send local as path; the vault's final reply. Resumes from the blocks the vault holds."""
        with open(local, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest = sha256_file(f)
            start = self.request(
                "push", path=path, size=size, sha256=digest, base=base, block_size=block_size, force=force
            )
            have = start.get("have")
            count = wire.blocks_of(size, block_size)
            if not isinstance(have, int) or not 0 <= have <= count:
                raise TransferError(f"the vault offered to resume at block {have!r} of {count}")
            f.seek(have * block_size)
            for i in range(have, count):
                data = f.read(wire.block_length(size, block_size, i))
                self._refused_meanwhile()
                self.link.send(wire.block(i, data), self.timeout)
                if progress:
                    progress(i * block_size + len(data), size)
        # the vault checks the whole file and syncs it to disk before it answers
        done = self._reply(max(self.timeout, 60.0 + size / (20 << 20)))
        done["resumed_from_block"] = have
        return done

    def _refused_meanwhile(self) -> None:
        """A REPLY during a push is a refusal (docs/vault.md): stop sending at once."""
        try:
            msg = self.link.recv(0)
        except LinkTimeout:
            return
        if msg is None:
            raise TransferError("the vault ended the session during the push")
        m = self._decode(msg)
        self._checked(m.header)
        raise TransferError("the vault replied in the middle of the push")

    def pull(
        self,
        path: str,
        dest: Path,
        version: int | None = None,
        block_size: int = wire.BLOCK_SIZE_MAX,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Fetch path into dest: written beside it, checked block by block and whole, then
        renamed into place, so dest is never a partial file."""
        members: dict[str, Any] = {"path": path, "block_size": block_size}
        if version is not None:
            members["version"] = version
        head = self.request("pull", **members)
        size, digest, count = head["size"], head["sha256"], head["blocks"]
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.pool-vault-part")
        h = hashlib.sha256()
        with _removed_unless_kept(tmp) as keep, open(tmp, "xb") as out:
            for i in range(count):
                m = self._next()
                if m.kind == Kind.REPLY:
                    self._checked(m.header)
                    raise TransferError(f"the vault ended the pull at block {i} of {count}")
                want = wire.block_length(size, block_size, i)
                if m.kind != Kind.BLOCK or m.index != i or len(m.payload) != want or not m.block_ok():
                    raise TransferError(f"block {i} of {path!r} arrived damaged or out of order")
                out.write(m.payload)
                h.update(m.payload)
                if progress:
                    progress(i * block_size + want, size)
            self._reply()
            if h.hexdigest() != digest:
                raise TransferError(f"{path!r} arrived with SHA-256 {h.hexdigest()}, not {digest}")
            out.flush()
            os.fsync(out.fileno())
            os.replace(tmp, dest)
            keep()
        fsync_dir(dest.parent if str(dest.parent) else Path("."))
        return head


@contextlib.contextmanager
def _removed_unless_kept(path: Path) -> Iterator[Callable[[], None]]:
    kept = False

    def keep() -> None:
        nonlocal kept
        kept = True

    try:
        yield keep
    finally:
        if not kept:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
