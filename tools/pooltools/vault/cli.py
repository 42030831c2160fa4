"""pool_vault: a file vault over POOL sessions (docs/vault.md).

    pool_vault serve [--dir D] [--acl F] [--keep N] [--max-file-size S] ...
    pool_vault enroll KEY --name N --scope read|read-write [--prefix P]
    pool_vault revoke KEY|NAME
    pool_vault peers
    pool_vault push LOCAL [PATH] --vault PEER [--base new|SHA256 | --force]
    pool_vault pull PATH [LOCAL] --vault PEER [--version V]
    pool_vault list [PREFIX] | stat PATH | history PATH | status  --vault PEER
    pool_vault delete PATH --vault PEER (--base SHA256 | --force)

The client opens a session of its own to the vault node (CONNECT; the vault's endpoint from
the trust store or --endpoint), or with --attach uses the one poold holds. Every command
prints JSON with --json. Exit status: 0 done, 2 bad arguments or path, 4 not enrolled,
revoked or denied, 5 not found, 6 conflict, 7 timeout, 8 busy, 9 a hash did not match,
10 the vault cannot be reached or ended the session, 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.common import sdnotify
from pooltools.common.cli import emit, fail, locked_beside, positive_arg, size_arg
from pooltools.common.link import LinkClosed, LinkTimeout, SessionLink
from pooltools.common.sessions import poold_sessions_with
from pooltools.kernel.device import (
    DEVICE_PATH,
    EXIT_BUSY,
    EXIT_EXISTS,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EXIT_VERIFY,
    Device,
    PoolError,
    live_sessions,
    peer_endpoint,
    resolve_peer,
)
from pooltools.vault import acl as aclmod
from pooltools.vault import wire
from pooltools.vault.client import RemoteError, TransferError, VaultClient
from pooltools.vault.server import Limits, Server, Vault
from pooltools.vault.store import Store

PROG = "pool_vault"
DEFAULT_DIR = Path("/var/lib/pool-vault")
DEFAULT_STATUS = Path("/run/pool-vault/status.json")
LOCK_DIR = Path("/run/lock")

EXIT_FOR_ERROR = {
    "bad_request": EXIT_FAILURE,
    "bad_path": EXIT_USAGE,
    "too_large": EXIT_USAGE,
    "unknown_op": EXIT_USAGE,
    "unsupported_format": EXIT_USAGE,
    "not_enrolled": EXIT_PERMISSION,
    "revoked": EXIT_PERMISSION,
    "denied": EXIT_PERMISSION,
    "not_found": EXIT_NOT_FOUND,
    "conflict": EXIT_EXISTS,
    "busy": EXIT_BUSY,
    "bad_block": EXIT_VERIFY,
    "bad_hash": EXIT_VERIFY,
}


class CliError(Exception):
    def __init__(self, what: str, why: str, exit_code: int) -> None:
        super().__init__(f"{what}: {why}")
        self.what, self.why, self.exit_code = what, why, exit_code


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def _block_size(text: str) -> int:
    value = size_arg(text)
    if not wire.BLOCK_SIZE_MIN <= value <= wire.BLOCK_SIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be {wire.BLOCK_SIZE_MIN} to {wire.BLOCK_SIZE_MAX} bytes")
    return value


def _base(text: str) -> str:
    if text != "new" and not wire.is_sha256(text):
        raise argparse.ArgumentTypeError('must be "new" or a SHA-256 (64 lower-case hexadecimal digits)')
    return text


# ---- output


# ---- the ACL, on the vault node


def _change(args: argparse.Namespace, change: Callable[[aclmod.Acl], tuple[aclmod.Acl, aclmod.Grant | None]]) -> int:
    """Apply change to the ACL under its lock (with --check, only say what it would do, and
    touch nothing: not even the lock file)."""
    with contextlib.nullcontext() if args.check else locked_beside(args.acl):
        acl = aclmod.load(args.acl)
        new, who = change(acl)
        if new is not acl and not args.check:
            aclmod.save(args.acl, new)
    key = who.key if who else None
    before = next((g for g in acl.peers if g.key == key), None)
    after = next((g for g in new.peers if g.key == key), None)
    doc = {
        "changed": new is not acl,
        "check": args.check,
        "acl_version": new.version,
        "before": before.__dict__ if before else None,
        "after": after.__dict__ if after else None,
        "peers": sorted(g.name for g in new.peers),
    }
    verb = "would change" if args.check and doc["changed"] else "changed" if doc["changed"] else "unchanged"
    g = after or before
    what = f"{g.name} ({g.scope}{', under ' + g.prefix if g.prefix else ''})" if g else "no such peer"
    emit(args, doc, f"{verb}: {what}, ACL version {new.version}")
    return 0


def cmd_enroll(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    g = aclmod.grant(args.key, args.name, args.scope, args.prefix)
    return _change(args, lambda acl: (aclmod.enrolled(acl, g), g))


def cmd_revoke(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    def revoke(acl: aclmod.Acl) -> tuple[aclmod.Acl, aclmod.Grant | None]:
        who = next((g for g in acl.peers if args.peer in (g.key, g.name)), None)
        return aclmod.revoked(acl, args.peer), who

    return _change(args, revoke)


def cmd_peers(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    acl = aclmod.load(args.acl)
    doc = acl.document()
    lines = [f"{g.name}\t{g.scope}\t{g.prefix or '-'}\t{g.key}" for g in acl.peers]
    emit(args, doc, "\n".join(lines) if lines else f"no peers enrolled (ACL version {acl.version})")
    return 0


# ---- the server


def cmd_serve(args: argparse.Namespace, factory: Callable[[], Any]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    store = Store(args.dir, args.keep, args.max_file_size)
    limits = Limits(args.max_transfers_per_peer, args.idle_timeout)
    vault = Vault(store, aclmod.load(args.acl), limits)
    server = Server(vault, args.acl, factory, args.status_file)
    signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
    signal.signal(signal.SIGINT, lambda *_: server.stop.set())
    signal.signal(signal.SIGHUP, lambda *_: server.reload_requested.set())
    logging.getLogger(PROG).info(
        "serving %s to %d enrolled peers (ACL %s version %d)",
        store.root,
        len(vault.acl.peers),
        args.acl,
        vault.acl.version,
    )
    server.run(ready=lambda: sdnotify.notify("READY=1", f"STATUS=serving {store.root}"))
    sdnotify.notify("STOPPING=1")
    return 0


# ---- the client


def _link(args: argparse.Namespace, factory: Callable[[], Any]) -> SessionLink:

    if not args.vault:
        raise CliError("vault", "name the vault node: --vault PEER (or POOL_VAULT)", EXIT_USAGE)
    dev = factory()
    peer = resolve_peer(dev, args.vault)
    key = bytes(peer.public_key)
    if args.attach:
        # poold's session with the vault node; without poold (a test bench), the oldest one
        live = [index for index, _established in poold_sessions_with(dev, key)] or live_sessions(dev, key)
        if not live:
            raise CliError(f"vault {args.vault}", "no established session (is poold running?)", EXIT_NOT_FOUND)
        session = dev.attach(live[0])
        # one conversation per session: other clients of this session wait here
        lock = os.open(LOCK_DIR / f"pool-vault-session-{live[0]}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        fcntl.flock(lock, fcntl.LOCK_EX)
        return SessionLink(session, wire.CHANNEL)
    target = peer_endpoint(peer, args.endpoint)
    if target is None:
        raise CliError(f"vault {args.vault}", "the trust store has no endpoint for it: give --endpoint", EXIT_USAGE)
    return SessionLink(_connect(dev, key, *target, min(args.timeout, 60)), wire.CHANNEL)


# A listener admits a few half-open handshakes per source address (docs/protocol.md) and resets
# the others: many clients starting at once on one node meet that cap, and try again.
CONNECT_RETRY_ERRNOS = (errno.ECONNRESET, errno.EAGAIN)


def _connect(dev: Any, key: bytes, addr: bytes, port: int, budget: float) -> Any:
    deadline = time.monotonic() + budget
    delay = 0.2
    while True:
        left = deadline - time.monotonic()
        try:
            return dev.connect(key, addr, port, wire.CHANNEL, int(max(left, 1) * 1000))
        except PoolError as exc:
            if exc.errno not in CONNECT_RETRY_ERRNOS or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 2.0)


def _client(args: argparse.Namespace, factory: Callable[[], Any]) -> VaultClient:
    return VaultClient(_link(args, factory), args.timeout)


def cmd_push(args: argparse.Namespace, factory: Callable[[], Any]) -> int:
    local = Path(args.local)
    if not local.is_file():
        raise CliError(str(local), "not a regular file", EXIT_USAGE)
    remote = args.path or local.name
    c = _client(args, factory)
    doc = c.push(local, remote, args.base, args.force, args.block_size)
    emit(
        args,
        doc,
        f"pushed {local} as {remote}: version {doc['version']}, sha256 {doc['sha256']}"
        + (f" (resumed at block {doc['resumed_from_block']})" if doc["resumed_from_block"] else ""),
    )
    return 0


def cmd_pull(args: argparse.Namespace, factory: Callable[[], Any]) -> int:
    name = args.path.rsplit("/", 1)[-1]
    dest = Path(args.local or name)
    if dest.is_dir():
        dest = dest / name
    c = _client(args, factory)
    doc = c.pull(args.path, dest, args.version, args.block_size)
    doc = {k: v for k, v in doc.items() if k != "ok"} | {"local": str(dest)}
    emit(
        args, doc, f"pulled {args.path} version {doc['version']} to {dest}: {doc['size']} bytes, sha256 {doc['sha256']}"
    )
    return 0


def cmd_list(args: argparse.Namespace, factory: Callable[[], Any]) -> int:
    entries = list(_client(args, factory).list(args.prefix))
    lines = [f"{e['size']:>12}  v{e['version']:<4} {e['sha256'][:16]}  {e['path']}" for e in entries]
    emit(args, {"entries": entries}, "\n".join(lines) if lines else "(no files)")
    return 0


def _one(op: str) -> Callable[[argparse.Namespace, Callable[[], Any]], int]:
    def run(args: argparse.Namespace, factory: Callable[[], Any]) -> int:
        c = _client(args, factory)
        if op == "stat":
            doc = c.stat(args.path)
            human = f"{doc['path']}: {doc['size']} bytes, version {doc['version']}, sha256 {doc['sha256']}"
        elif op == "history":
            doc = c.history(args.path)
            human = "\n".join(
                f"v{v['version']}  " + ("deleted" if v["deleted"] else f"{v['size']} bytes  {v['sha256']}")
                for v in doc["versions"]
            )
        elif op == "delete":
            if not args.force and not args.base:
                raise CliError("delete", "name the version it removes (--base SHA256) or give --force", EXIT_USAGE)
            doc = c.delete(args.path, args.base, args.force)
            human = f"deleted {args.path} (version {doc['version']})"
        else:
            doc = c.status()
            p = doc["peer"]
            human = f"vault {doc['version']}: you are {p['name']} ({p['scope']}{', under ' + p['prefix'] if p['prefix'] else ''})"
        doc.pop("ok", None)
        emit(args, doc, human)
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="A file vault over POOL sessions (docs/vault.md).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--device", default=os.environ.get("POOL_DEVICE", DEVICE_PATH), help="control device")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def acl_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--acl", type=Path, default=aclmod.DEFAULT_PATH, help=f"ACL file (default {aclmod.DEFAULT_PATH})"
        )

    sp = sub.add_parser("serve", help="serve the vault to the enrolled peers")
    acl_arg(sp)
    sp.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"vault folder (default {DEFAULT_DIR}; files/ is the root)"
    )
    sp.add_argument("--keep", type=positive_arg, default=5, help="versions kept per file, the current one included (5)")
    sp.add_argument("--max-file-size", type=size_arg, default=4 << 30, help="largest file a push may store (4G)")
    sp.add_argument(
        "--max-transfers-per-peer", type=positive_arg, default=32, help="open pushes and pulls per peer (32)"
    )
    sp.add_argument("--idle-timeout", type=_seconds, default=120.0, help="seconds a transfer may stall (120)")
    sp.add_argument(
        "--status-file", type=Path, default=DEFAULT_STATUS, help=f"counters for the exporter ({DEFAULT_STATUS})"
    )
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("enroll", help="let a peer use this node's vault")
    acl_arg(sp)
    sp.add_argument("key", help="the peer's public key (base64)")
    sp.add_argument("--name", required=True, help="a name for the peer")
    sp.add_argument("--scope", required=True, choices=aclmod.SCOPES)
    sp.add_argument("--prefix", default="", help="the only part of the vault the peer reaches")
    sp.add_argument("--check", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=cmd_enroll)
    sp = sub.add_parser("revoke", help="remove a peer from the ACL (its conversations end)")
    acl_arg(sp)
    sp.add_argument("peer", help="the peer's public key or name")
    sp.add_argument("--check", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=cmd_revoke)
    sp = sub.add_parser("peers", help="list the enrolled peers")
    acl_arg(sp)
    sp.set_defaults(func=cmd_peers)

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--vault", default=os.environ.get("POOL_VAULT"), help="the vault node: trusted peer name or key"
        )
        sp.add_argument("--endpoint", help="ADDR:PORT of the vault node (default: its trust-store endpoint)")
        sp.add_argument("--attach", action="store_true", help="use the session poold holds instead of a new one")
        sp.add_argument("--timeout", type=_seconds, default=60.0, help="seconds to wait for the vault (60)")
        return sp

    sp = client("push", "store a file in the vault")
    sp.add_argument("local")
    sp.add_argument("path", nargs="?", help="vault path (default: the file's name)")
    sp.add_argument("--base", type=_base, default="new", help='the SHA-256 this push replaces, or "new" (default)')
    sp.add_argument("--force", action="store_true", help="replace whatever the vault has")
    sp.add_argument("--block-size", type=_block_size, default=wire.BLOCK_SIZE_MAX)
    sp.set_defaults(func=cmd_push)
    sp = client("pull", "fetch a file from the vault")
    sp.add_argument("path")
    sp.add_argument("local", nargs="?", help="where to write it (default: its name, here)")
    sp.add_argument("--version", type=positive_arg, help="a kept version (pool_vault history)")
    sp.add_argument("--block-size", type=_block_size, default=wire.BLOCK_SIZE_MAX)
    sp.set_defaults(func=cmd_pull)
    sp = client("list", "list files")
    sp.add_argument("prefix", nargs="?", default="")
    sp.set_defaults(func=cmd_list)
    for op, help_ in (("stat", "one file's current version"), ("history", "a file's kept versions")):
        sp = client(op, help_)
        sp.add_argument("path")
        sp.set_defaults(func=_one(op))
    sp = client("delete", "delete a file (its versions stay in history)")
    sp.add_argument("path")
    sp.add_argument("--base", type=_base, help="the SHA-256 of the version it deletes")
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(func=_one("delete"))
    sp = client("status", "what the vault allows this node")
    sp.set_defaults(func=_one("status"))
    return p


def main(argv: list[str] | None = None, device_factory: Callable[[], Any] | None = None) -> int:
    args = build_parser().parse_args(argv)
    factory = device_factory or (lambda: Device(args.device))
    try:
        return args.func(args, factory)
    except CliError as exc:
        return _fail(args, exc.what, exc.why, exc.exit_code)
    except RemoteError as exc:
        return _fail(
            args, f"vault refused ({exc.code})", exc.detail, EXIT_FOR_ERROR.get(exc.code, EXIT_FAILURE), exc.code
        )
    except TransferError as exc:
        return _fail(args, "transfer failed", str(exc), EXIT_UNREACHABLE)
    except LinkTimeout as exc:
        return _fail(args, "timeout", str(exc), EXIT_TIMEOUT)
    except LinkClosed as exc:
        return _fail(args, "session ended", str(exc), EXIT_UNREACHABLE)
    except aclmod.AclError as exc:
        return _fail(args, "ACL", str(exc), EXIT_USAGE)
    except PoolError as exc:
        return _fail(args, exc.what, exc.why, exc.exit_code)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", "Ctrl-C", EXIT_FAILURE)
    except OSError as exc:
        return _fail(args, exc.filename or "I/O", exc.strerror or str(exc), EXIT_FAILURE)


def _fail(args: argparse.Namespace, what: str, why: str, code: int, error: str | None = None) -> int:
    return fail(PROG, args, what, why, code, error)


if __name__ == "__main__":
    sys.exit(main())
