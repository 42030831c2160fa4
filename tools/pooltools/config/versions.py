"""`poolctl config apply|confirm|rollback|history|diff`: versioned configuration (issue 6).

pooltools.poolctl.cli registers these with register(); `config show` is poolctl's own.
Documents, canonical form and store: pooltools.config.store and docs/protocol.md
section 7; the --json documents: docs/poolctl-json.md ("poolctl config").

restore_at_boot() is poold's hook: a freshly loaded pool.ko (configuration
version 0) gets the last confirmed version back, with no deadline (or, when that
one's file fails its checks, the confirmed one before it).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pooltools.config import conf
from pooltools.config.store import (
    MAX_CONFIRM_SECONDS,
    ConfigInvalid,
    Corrupted,
    NotStored,
    Routes,
    Store,
    StoreError,
    Version,
    canonical,
    config_hash,
    parse,
    relay_routes,
    unified_diff,
    validate,
)
from pooltools.kernel import uapi, views
from pooltools.kernel.device import (
    EXIT_BUSY,
    EXIT_FAILURE,
    EXIT_NO_MODULE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    EXIT_VERIFY,
    PoolError,
    make_peer,
)
from pooltools.kernel.netaddr import parse_endpoint
from pooltools.protocol.keys import decode_key

DeviceFactory = Callable[[], Any]
_DIGITS = re.compile(r"[0-9]+")


# ---- helpers shared with poold


def state_dir(args: argparse.Namespace) -> Path:
    """--state-dir, else $POOL_STATE_DIR, else pool.conf's state_dir (if readable), else /var/lib/pool."""
    if getattr(args, "state_dir", None):
        return Path(args.state_dir)
    if os.environ.get("POOL_STATE_DIR"):
        return Path(os.environ["POOL_STATE_DIR"])
    path = getattr(args, "conf", None) or conf.DEFAULT_PATH
    try:
        return conf.load(path).node.state_dir
    except conf.ConfError as exc:
        if getattr(args, "conf", None):
            raise PoolError("read pool.conf", str(exc), EXIT_USAGE) from None
        return Path(conf.DEFAULT_STATE_DIR)


def kernel_struct(version: int, cfg: dict[str, Any], confirm_within_ms: int) -> tuple[uapi.PoolConfig, list]:
    """struct pool_config and the struct pool_peer list for a validated document."""
    c = uapi.PoolConfig(
        version=version,
        confirm_within_ms=confirm_within_ms,
        heartbeat_seconds=cfg["heartbeat_seconds"],
        rekey_seconds=cfg["rekey_seconds"],
        rekey_packets=cfg["rekey_packets"],
        puzzle_difficulty=cfg["puzzle_difficulty"],
        max_sessions=cfg["max_sessions"],
    )
    ctypes.memmove(c.hash, config_hash(cfg), uapi.POOL_HASH_LEN)
    peers = []
    for p in cfg["peers"]:
        ep = parse_endpoint(p["endpoint"]) if p["endpoint"] else None
        peers.append(
            make_peer(decode_key(p["public_key"]), p["name"], ep.addr if ep else bytes(16), ep.port if ep else 0)
        )
    return c, peers


def _store_error(what: str, exc: StoreError) -> PoolError:
    if isinstance(exc, Corrupted):
        return PoolError(what, str(exc), EXIT_VERIFY)
    if isinstance(exc, NotStored):
        return PoolError(what, str(exc), EXIT_NOT_FOUND)
    return PoolError(what, str(exc), EXIT_FAILURE)


def _own_key(dev: Any) -> bytes | None:
    ident = dev.get_identity()
    return bytes(ident.public_key) if ident.flags & uapi.POOL_IDENTITY_SET else None


def _active(store: Store, cur: uapi.PoolConfig) -> Version | None:
    """The stored version the kernel runs (same number and hash), or None (version 0, or not stored)."""
    if cur.version == 0:
        return None
    return store.find_hash(bytes(cur.hash), cur.version)


class VersionRelays:
    """The relays named by the configuration version pool.ko runs (peer key -> (name, key)
    pairs), read from the store once per version: poold and pool_relay ask every pass."""

    def __init__(self, state_dir: str | Path, log: logging.Logger) -> None:
        self.store, self.log = Store(state_dir), log
        self.seen: tuple[int, bytes] | None = None
        self.routes: Routes = {}

    def follow(self, cur: uapi.PoolConfig) -> None:
        """routes for the version cur says pool.ko runs (the store is read when it changed)."""
        ref = (cur.version, bytes(cur.hash))
        if ref != self.seen:
            self.seen, self.routes = ref, {}
            if cur.version:
                try:
                    active = _active(self.store, cur)
                except (StoreError, OSError) as exc:
                    active = None
                    self.log.warning("configuration version %d: relays not read: %s", cur.version, exc)
                if active is not None:
                    self.routes = relay_routes(active.config)


def apply_version(
    dev: Any, store: Store, cfg: dict[str, Any], confirm_within_ms: int, origin: str, cur: uapi.PoolConfig
) -> tuple[Version, uapi.PoolConfig]:
    """Store cfg as the next version and CONFIG_APPLY it; the stored file is removed if pool.ko refuses."""
    with store.locked():
        version = max(store.latest(), cur.version) + 1
        rec = store.write(version, cfg, origin)
        c, peers = kernel_struct(version, cfg, confirm_within_ms)
        try:
            dev.config_apply(c, peers)
        except BaseException:
            store.remove(version)
            raise
        if confirm_within_ms == 0:
            store.set_confirmed(version, rec.hash)
    return rec, dev.config_get()


def restore_at_boot(dev: Any, state_dir_path: Path, log: logging.Logger) -> int | None:
    """poold's hook: if pool.ko runs version 0 (freshly loaded), apply the last confirmed version.

    The confirmed pointer's versions are tried newest first: one that cannot be
    used (its file fails the hash check, is missing, or pool.ko refuses it) is
    logged with the reason and the confirmed one before it is tried. Version 0 in
    the pointer (an operator rolled back past the first version) means there is
    nothing to restore. Returns the version applied, or None. Never raises except
    for a missing module: problems are logged (the node then keeps the module's
    load-time parameters and pool.conf's trust store).
    """
    try:
        cur = dev.config_get()
        if cur.version != 0:
            return None
        store = Store(state_dir_path)
        chain = store.confirmed_chain()
        own = _own_key(dev)
    except StoreError as exc:
        log.error("configuration not restored: %s", exc)
        return None
    except PoolError as exc:
        if exc.exit_code == EXIT_NO_MODULE:
            raise
        log.error("configuration not restored: %s", exc)
        return None
    skipped: list[int] = []
    for version, digest in chain:
        if version == 0:
            if skipped:
                log.error(
                    "no configuration version restored: the confirmed state before version(s) %s is version 0 "
                    "(pool.ko's load-time parameters and pool.conf's peers)",
                    ", ".join(map(str, skipped)),
                )
            else:
                log.info(
                    "last confirmed configuration is version 0 (rolled back past the first version): nothing to restore"
                )
            return None
        try:
            rec = store.checked(version, digest)
            cfg = validate(rec.config, own)
            c, peers = kernel_struct(rec.version, cfg, 0)
            dev.config_apply(c, peers)
        except (StoreError, ConfigInvalid) as exc:
            log.error("configuration version %d (confirmed) not restored: %s", version, exc)
            skipped.append(version)
            continue
        except PoolError as exc:
            if exc.exit_code == EXIT_NO_MODULE:
                raise
            log.error("configuration version %d (confirmed) not restored: %s", version, exc)
            skipped.append(version)
            continue
        if skipped:
            log.warning(
                "configuration version %d restored instead (confirmed before version(s) %s, which cannot be used; "
                "hash %s)",
                rec.version,
                ", ".join(map(str, skipped)),
                rec.hash.hex()[:16],
            )
        else:
            log.info("configuration version %d restored (last confirmed, hash %s)", rec.version, rec.hash.hex()[:16])
        return rec.version
    if skipped:
        log.error(
            "no confirmed configuration version could be restored (tried %s): pool.ko keeps its load-time "
            "parameters and pool.conf's peers",
            ", ".join(map(str, skipped)),
        )
    return None


def _read_doc(path: str) -> dict[str, Any]:
    what = f"read {path}"
    try:
        text = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise PoolError(what, "no such file", EXIT_NOT_FOUND) from None
    except OSError as exc:
        raise PoolError(what, exc.strerror or str(exc), EXIT_FAILURE) from None
    try:
        return parse(text, "stdin" if path == "-" else path)
    except ConfigInvalid as exc:
        raise PoolError(f"config {'stdin' if path == '-' else path}", str(exc), EXIT_USAGE) from None


def _confirm_ms(seconds: float) -> int:
    return round(seconds * 1000)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= v <= MAX_CONFIRM_SECONDS:
        raise argparse.ArgumentTypeError(f"must be 0-{MAX_CONFIRM_SECONDS} seconds (pool.ko's limit: 24 h)")
    return v


def _count(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative (0: all)")
    return v


def _version(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number") from None
    if not 1 <= v <= 2**32 - 1:
        raise argparse.ArgumentTypeError("must be 1-4294967295")
    return v


def _result(
    changed: bool,
    cur: uapi.PoolConfig,
    after: uapi.PoolConfig | None,
    before_cfg: dict[str, Any] | None,
    after_cfg: dict[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    a = after or cur
    doc = {
        "changed": changed,
        "version": a.version,
        "hash": bytes(a.hash).hex(),
        "previous_version": cur.version if changed else a.prev_version,
        "previous_hash": bytes(cur.hash).hex() if changed else bytes(a.prev_hash).hex(),
        "tentative": bool(a.flags & uapi.POOL_CONFIG_TENTATIVE),
        "deadline_ns": a.deadline_ns,
        "before": before_cfg,
        "after": after_cfg,
    }
    doc.update(extra)
    return doc


def _human(doc: dict[str, Any]) -> str:
    if doc.get("dry_run"):
        head = "would apply" if doc["changed"] else "unchanged"
    else:
        head = "applied" if doc["changed"] else "unchanged"
    line = f"{head}: version {doc['version']} (hash {doc['hash'][:16]}), previous {doc['previous_version']}"
    if doc["tentative"]:
        line += ", tentative: poolctl config confirm before the deadline, or it rolls back"
    return line


# ---- commands


def cmd_apply(args: argparse.Namespace, out: Any, dev_factory: DeviceFactory) -> int:
    cfg = _read_doc(args.file)
    store = Store(state_dir(args))
    ms = _confirm_ms(args.confirm_within)
    with dev_factory() as dev:
        try:
            cfg = validate(cfg, _own_key(dev))
        except ConfigInvalid as exc:
            raise PoolError(f"config {args.file}", str(exc), EXIT_USAGE) from None
        cur = dev.config_get()
        digest = config_hash(cfg)
        try:
            before = _active(store, cur)
        except StoreError as exc:
            raise _store_error("config apply", exc) from None
        before_cfg = before.config if before else None
        if cur.version and bytes(cur.hash) == digest:
            doc = _result(False, cur, None, before_cfg, cfg, dry_run=args.dry_run)
            out.emit(doc, lambda: _human(doc))
            return 0
        if cur.flags & uapi.POOL_CONFIG_TENTATIVE:
            raise PoolError(
                "config apply",
                f"version {cur.version} awaits confirmation: poolctl config confirm or config rollback first",
                EXIT_BUSY,
            )
        if args.dry_run:
            would = uapi.PoolConfig(version=max(store.latest(), cur.version) + 1)
            ctypes.memmove(would.hash, digest, 32)
            if ms:
                would.flags = uapi.POOL_CONFIG_TENTATIVE
            doc = _result(True, cur, would, before_cfg, cfg, dry_run=True)
            out.emit(doc, lambda: _human(doc))
            return 0
        try:
            _rec, after = apply_version(dev, store, cfg, ms, "apply", cur)
        except StoreError as exc:
            raise _store_error("config apply", exc) from None
    doc = _result(True, cur, after, before_cfg, cfg, dry_run=False)
    out.emit(doc, lambda: _human(doc))
    return 0


def cmd_confirm(args: argparse.Namespace, out: Any, dev_factory: DeviceFactory) -> int:
    store = Store(state_dir(args))
    with dev_factory() as dev:
        cur = dev.config_get()
        version = args.version or cur.version
        if version == 0:
            raise PoolError("config confirm", "no configuration version applied (poolctl config apply)", EXIT_NOT_FOUND)
        dev.config_confirm(version)
        after = dev.config_get()
    changed = bool(cur.flags & uapi.POOL_CONFIG_TENTATIVE)
    try:
        with store.locked():
            pointer = store.set_confirmed(after.version, bytes(after.hash))
    except StoreError as exc:
        raise _store_error(f"config confirm: version {version} confirmed in pool.ko but not recorded", exc) from None
    doc = {
        "changed": changed or pointer,
        "version": after.version,
        "hash": bytes(after.hash).hex(),
        "confirmed": True,
    }
    out.emit(doc, f"version {after.version} confirmed" + ("" if changed else " (it was not tentative)"))
    return 0


def cmd_rollback(args: argparse.Namespace, out: Any, dev_factory: DeviceFactory) -> int:
    store = Store(state_dir(args))
    with dev_factory() as dev:
        cur = dev.config_get()
        try:
            before = _active(store, cur)
        except StoreError as exc:
            raise _store_error("config rollback", exc) from None
        before_cfg = before.config if before else None
        if args.to is None:
            if args.version and args.version != cur.version:
                raise PoolError(
                    f"config rollback of version {args.version}",
                    f"the active version is {cur.version} (rolled back already?)",
                    EXIT_BUSY,
                )
            if not cur.flags & uapi.POOL_CONFIG_HAS_PREV:
                raise PoolError(
                    "config rollback",
                    f"pool.ko keeps no version before {cur.version}: roll back to a stored one with --to N "
                    "(poolctl config history)",
                    EXIT_NOT_FOUND,
                )
            prev_rec = store.find_hash(bytes(cur.prev_hash), cur.prev_version) if cur.prev_version else None
            prev_cfg = prev_rec.config if prev_rec else None
            if args.dry_run:
                would = uapi.PoolConfig(version=cur.prev_version)
                ctypes.memmove(would.hash, bytes(cur.prev_hash), 32)
                doc = _result(True, cur, would, before_cfg, prev_cfg, dry_run=True, rolled_back_from=cur.version)
                out.emit(doc, lambda: _human(doc))
                return 0
            dev.config_rollback(cur.version)
            after = dev.config_get()
            try:
                with store.locked():
                    if after.version == 0:  # past the first version: no version is the confirmed state now
                        store.set_confirmed(0, bytes(32))
                    elif store.find_hash(bytes(after.hash), after.version):
                        store.set_confirmed(after.version, bytes(after.hash))
            except StoreError as exc:
                raise _store_error("config rollback: rolled back in pool.ko but not recorded", exc) from None
            doc = _result(True, cur, after, before_cfg, prev_cfg, dry_run=False, rolled_back_from=cur.version)
            out.emit(doc, lambda: f"rolled back from version {cur.version} to {after.version}")
            return 0
        # --to N: apply that stored version's content as a new version
        try:
            rec = store.read(args.to)
        except StoreError as exc:
            raise _store_error(f"config rollback --to {args.to}", exc) from None
        try:
            cfg = validate(rec.config, _own_key(dev))
        except ConfigInvalid as exc:
            raise PoolError(f"config rollback --to {args.to}", str(exc), EXIT_USAGE) from None
        if cur.version and bytes(cur.hash) == rec.hash:
            doc = _result(False, cur, None, before_cfg, cfg, dry_run=args.dry_run, rolled_back_to=args.to)
            out.emit(doc, lambda: _human(doc))
            return 0
        ms = _confirm_ms(args.confirm_within)
        if args.dry_run:
            would = uapi.PoolConfig(version=max(store.latest(), cur.version) + 1)
            ctypes.memmove(would.hash, rec.hash, 32)
            doc = _result(True, cur, would, before_cfg, cfg, dry_run=True, rolled_back_to=args.to)
            out.emit(doc, lambda: _human(doc))
            return 0
        try:
            _new, after = apply_version(dev, store, cfg, ms, f"rollback to {args.to}", cur)
        except StoreError as exc:
            raise _store_error(f"config rollback --to {args.to}", exc) from None
    doc = _result(True, cur, after, before_cfg, cfg, dry_run=False, rolled_back_to=args.to)
    out.emit(doc, lambda: f"version {after.version} applied with the content of version {args.to}")
    return 0


def cmd_history(args: argparse.Namespace, out: Any, dev_factory: DeviceFactory) -> int:
    sd = state_dir(args)
    store = Store(sd)
    cur = None
    try:
        with dev_factory() as dev:
            cur = dev.config_get()
    except PoolError as exc:
        if exc.exit_code != EXIT_NO_MODULE:
            raise
    try:
        ref = store.confirmed_ref()
        numbers = store.versions()
    except StoreError as exc:
        raise _store_error("config history", exc) from None
    items: list[dict[str, Any]] = []
    for n in numbers[-args.limit :] if args.limit else numbers:
        item: dict[str, Any]
        try:
            item = store.read(n).summary()
            item["error"] = None
        except StoreError as exc:
            item = {"version": n, "hash": None, "created_ns": 0, "origin": None, "peers": None, "error": str(exc)}
        item["active"] = bool(cur is not None and cur.version == n and item["hash"] == bytes(cur.hash).hex())
        item["confirmed"] = bool(ref is not None and ref[0] == n)
        items.append(item)
    doc = {
        "state_dir": str(sd),
        "module_loaded": cur is not None,
        "active_version": cur.version if cur is not None else None,
        "active_hash": bytes(cur.hash).hex() if cur is not None else None,
        "tentative": bool(cur.flags & uapi.POOL_CONFIG_TENTATIVE) if cur is not None else None,
        "confirmed_version": ref[0] if ref else None,
        "versions": items,
    }

    def human() -> str:
        if not items:
            return f"no stored versions in {store.dir}"
        rows = [
            (
                i["version"],
                views.iso(i["created_ns"]) if i["created_ns"] else "-",
                (i["hash"] or "CORRUPTED")[:16],
                i["peers"],
                i["origin"],
                ("active" if i["active"] else "") + (" confirmed" if i["confirmed"] else ""),
            )
            for i in items
        ]
        return views.table(("VERSION", "CREATED (UTC)", "HASH", "PEERS", "ORIGIN", "STATE"), rows)

    out.emit(doc, human)
    bad = [i for i in items if i["error"]]
    if bad:
        print(f"poolctl: config history: {bad[0]['error']}", file=sys.stderr)
        return EXIT_VERIFY
    return 0


def _ref_key(ref: str) -> tuple[str, object]:
    """What a diff argument names, for spotting A == B: ('version', N), ('active', None) or ('file', path)."""
    if ref == "active":
        return ("active", None)
    if _DIGITS.fullmatch(ref):
        return ("version", int(ref))
    if ref == "-":
        return ("file", "-")
    return ("file", str(Path(ref).resolve()))


def _resolve(ref: str, store: Store, dev_factory: DeviceFactory) -> tuple[str, dict[str, Any] | None]:
    """A version number, 'active' (the kernel's) or a document file."""
    what = f"config diff {ref}"
    try:
        if ref == "active":
            with dev_factory() as dev:
                cur = dev.config_get()
            rec = _active(store, cur)
            if cur.version and rec is None:
                raise PoolError("config diff", f"active version {cur.version} is not in the store", EXIT_NOT_FOUND)
            return (f"version {rec.version} (active)" if rec else "version 0 (active)"), rec.config if rec else None
        if _DIGITS.fullmatch(ref):
            n = int(ref)
            if not 1 <= n <= 2**32 - 1:
                raise PoolError(what, "stored versions are 1-4294967295 (version 0 has no document)", EXIT_USAGE)
            rec = store.read(n)
            return f"version {rec.version}", rec.config
    except StoreError as exc:
        raise _store_error(what, exc) from None
    if ref != "-" and not Path(ref).exists():
        raise PoolError(
            what, f"{ref!r} is not a version number (poolctl config history), 'active' or a document file", EXIT_USAGE
        )
    return ref, _read_doc(ref)


def cmd_diff(args: argparse.Namespace, out: Any, dev_factory: DeviceFactory) -> int:
    if _ref_key(args.a) == _ref_key(args.b):
        raise PoolError("config diff", f"both sides are {args.b!r}: name two different versions or files", EXIT_USAGE)
    store = Store(state_dir(args))
    a_label, a = _resolve(args.a, store, dev_factory)
    b_label, b = _resolve(args.b, store, dev_factory)
    text = unified_diff(a, b, a_label, b_label)
    identical = (canonical(a) if a else b"") == (canonical(b) if b else b"")
    doc = {"a": a_label, "b": b_label, "identical": identical, "diff": text}
    out.emit(doc, lambda: text.rstrip("\n") if text else f"{a_label} and {b_label} are identical")
    return 0


# ---- parser


def register(csub: Any, add: Callable[..., Any]) -> None:
    """Add the subcommands to poolctl's `config` subparsers (add: poolctl's helper)."""

    def store_opts(sp: Any) -> None:
        sp.add_argument(
            "--state-dir",
            help="where versions are stored (default: $POOL_STATE_DIR, pool.conf's state_dir, /var/lib/pool)",
        )
        sp.add_argument("--conf", help=f"pool.conf to read state_dir from (default {conf.DEFAULT_PATH})")

    sp = add(csub, "apply", cmd_apply, "apply a configuration document (JSON) as a new version")
    sp.add_argument("file", help="the document (docs/protocol.md section 7), or - for stdin")
    sp.add_argument(
        "--confirm-within",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="tentative: pool.ko rolls back by itself unless confirmed within SECONDS (default 0: confirmed now)",
    )
    sp.add_argument("--dry-run", action="store_true", help="validate and show what would change; change nothing")
    store_opts(sp)

    sp = add(csub, "confirm", cmd_confirm, "confirm the active (tentative) version")
    sp.add_argument("--version", type=_version, help="fail unless this is the active version")
    store_opts(sp)

    sp = add(csub, "rollback", cmd_rollback, "restore the previous version, or a stored one as a new version (--to)")
    sp.add_argument("--to", type=_version, metavar="VERSION", help="apply this stored version's content as new")
    sp.add_argument("--version", type=_version, help="fail unless this is the active version (guard)")
    sp.add_argument(
        "--confirm-within",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="with --to: tentative for SECONDS (default 0: confirmed now)",
    )
    sp.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    store_opts(sp)

    sp = add(csub, "history", cmd_history, "stored versions (newest last), active and confirmed marked")
    sp.add_argument("--limit", type=_count, default=0, metavar="N", help="only the newest N (default 0: all)")
    store_opts(sp)

    sp = add(csub, "diff", cmd_diff, "unified diff of two versions' canonical forms")
    sp.add_argument("a", help="version number, 'active' or a document file")
    sp.add_argument("b", help="version number, 'active' or a document file")
    store_opts(sp)
