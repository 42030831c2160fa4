"""pool_relay: reach peers through other nodes, and relay for them (docs/relay.md, pool_relay(8))."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.common import sdnotify
from pooltools.common.cli import emit, fail, locked_beside, positive_arg, size_arg
from pooltools.config import conf
from pooltools.kernel.device import (
    DEVICE_PATH,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    Device,
    PoolError,
)
from pooltools.kernel.netaddr import format_addr
from pooltools.protocol.x25519 import BackendMissing
from pooltools.relay import control
from pooltools.relay import enrolment as en
from pooltools.relay.daemon import RelayDaemon
from pooltools.relay.ledger import DEFAULT_PATH as DEFAULT_LEDGER
from pooltools.relay.ledger import LedgerError

PROG = "pool_relay"
DEFAULT_STATUS = Path("/run/pool-relay/status.json")
DEFAULT_PID = Path("/run/pool-relay/pid")


class CliError(Exception):
    def __init__(self, what: str, why: str, exit_code: int) -> None:
        super().__init__(f"{what}: {why}")
        self.what, self.why, self.exit_code = what, why, exit_code


# ---- enrolments


def _change(
    args: argparse.Namespace, change: Callable[[en.Enrolment], en.Enrolment], who: str | None, whole: bool = False
) -> int:
    """Apply change to the enrolment file under its lock (--check: say what it would do, touch nothing)."""
    with contextlib.nullcontext() if args.check else locked_beside(args.enrolments):
        current = en.load(args.enrolments)
        new = change(current)
        if new is not current and not args.check:
            en.save(args.enrolments, new)

    def entry(e: en.Enrolment) -> dict[str, Any] | None:
        p = next((p for p in e.peers if who in (p.key, p.name)), None)
        return p.__dict__ if p else None

    changed = new is not current
    doc = {
        "changed": changed,
        "check": args.check,
        "version": new.version,
        "relay": new.relay,
        "limits": new.document()["limits"],
        "before": current.document() if whole else entry(current) if who else None,
        "after": new.document() if whole else entry(new) if who else None,
        "peers": sorted(p.name for p in new.peers),
    }
    verb = "would change" if args.check and changed else "changed" if changed else "unchanged"
    emit(args, doc, f"{verb}: enrolments version {new.version}, relaying {'on' if new.relay else 'off'}")
    return 0


def cmd_enroll(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    p = en.peer(args.key, args.name, args.accept)
    return _change(args, lambda e: en.enrolled(e, p), p.key)


def cmd_revoke(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    return _change(args, lambda e: en.revoked(e, args.peer), args.peer)


def cmd_config(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    def change(e: en.Enrolment) -> en.Enrolment:
        given = {
            "peer_bytes_per_second": args.peer_rate,
            "total_bytes_per_second": args.total_rate,
            "connections": args.connections,
        }
        limits = en.parse_limits(e.document()["limits"] | {k: v for k, v in given.items() if v is not None}, "limits")
        relay = None if args.relay is None else args.relay == "on"
        return en.configured(e, relay, limits)

    return _change(args, change, None)


def cmd_peers(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    e = en.load(args.enrolments)
    status = _read_status(args.status_file, required=False)
    figures = {p["key"]: p for p in status.get("peers", [])} if status else {}
    rows = []
    for p in e.peers:
        f = figures.get(p.key, {})
        rows.append(
            {
                **p.__dict__,
                **{
                    k: f[k]
                    for k in (
                        "contributed",
                        "consumed",
                        "score",
                        "tier",
                        "channel",
                        "signing_key",
                        "statement_about_this_node",
                        "statements",
                    )
                    if k in f
                },
            }
        )
    lines = [
        f"{r['name']}\t{'accepts-relay' if r['accept'] else '-'}\t{r.get('tier', '?')}\t"
        f"score {r.get('score', '?')}\tcontributed {r.get('contributed', '?')}\tconsumed {r.get('consumed', '?')}"
        for r in rows
    ]
    doc = {"version": e.version, "relay": e.relay, "peers": rows}
    emit(args, doc, "\n".join(lines) if lines else f"no peers enrolled (version {e.version})")
    return 0


def cmd_apply(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    """Replace relaying, limits and peers at once with the document on standard input (one
    version, all or nothing): {"relay": bool, "limits": {...}, "peers": [{name, key, accept}]}."""
    try:
        given = json.loads(sys.stdin.read())
    except ValueError as exc:
        raise CliError("standard input", f"not JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(given, dict) or set(given) - {"relay", "limits", "peers"}:
        raise CliError("standard input", 'a JSON object of "relay", "limits" and "peers"', EXIT_USAGE)

    def change(e: en.Enrolment) -> en.Enrolment:
        doc = {
            "format": en.FORMAT,
            "version": e.version,
            "relay": given.get("relay", e.relay),
            "limits": e.document()["limits"] | (given.get("limits") or {}),
            "peers": given.get("peers", e.document()["peers"]),
        }
        wanted = en.parse(json.dumps(doc), "standard input")
        return e if wanted == e else dataclasses.replace(wanted, version=e.version + 1)

    return _change(args, change, None, whole=True)


# ---- the running relay


def _read_status(path: Path, required: bool = True) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if not required:
            return None
        raise CliError(
            str(path), "no status: is pool_relay running (systemctl status pool-relay)?", EXIT_NOT_FOUND
        ) from None
    except (OSError, ValueError) as exc:
        raise CliError(str(path), f"unreadable status: {exc}", EXIT_FAILURE) from None


def cmd_status(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    doc = _read_status(args.status_file)
    assert doc is not None
    lines = [
        f"relaying {'on' if doc['relay'] else 'off'}, enrolments version {doc['enrolment_version']},"
        f" relay port {doc['relay_port']}, {len(doc['carried'])} relayed connections"
    ]
    lines += [
        f"  {c['role']}: {', '.join(c['peers'])}{' via ' + c['via'] if c['via'] else ''}:"
        f" {c['bytes_forward']} / {c['bytes_backward']} bytes"
        for c in doc["carried"]
    ]
    emit(args, doc, "\n".join(lines))
    return 0


def cmd_start(args: argparse.Namespace, factory: Callable[[], Any]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    daemon = RelayDaemon(factory, args.enrolments, args.ledger, args.conf, args.status_file, args.flip_at)
    if args.pid_file:
        args.pid_file.parent.mkdir(parents=True, exist_ok=True)
        args.pid_file.write_text(f"{os.getpid()}\n")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def hup() -> None:
            daemon.reload_requested = True

        loop.add_signal_handler(signal.SIGHUP, hup)
        sdnotify.notify("READY=1", f"STATUS=relaying {'on' if daemon.enrolment.relay else 'off'}")
        await daemon.run((args.listen, args.port), (format_addr(conf.RELAY_DOOR.addr), conf.RELAY_DOOR.port), stop)

    try:
        asyncio.run(main())
    finally:
        sdnotify.notify("STOPPING=1")
        if args.pid_file:
            with contextlib.suppress(OSError):
                args.pid_file.unlink()
    return 0


def cmd_stop(args: argparse.Namespace, _factory: Callable[[], Any]) -> int:
    try:
        pid = int(args.pid_file.read_text().strip())
    except (OSError, ValueError):
        raise CliError(str(args.pid_file), "no running pool_relay (no pid file)", EXIT_NOT_FOUND) from None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise CliError(f"pid {pid}", "no such process (a stale pid file)", EXIT_NOT_FOUND) from None
    emit(args, {"stopped": pid}, f"asked pool_relay (pid {pid}) to stop")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Reach peers through other nodes (docs/relay.md).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--device", default=os.environ.get("POOL_DEVICE", DEVICE_PATH), help="control device")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--enrolments", type=Path, default=en.DEFAULT_PATH, help=f"enrolment file (default {en.DEFAULT_PATH})"
    )
    p.add_argument(
        "--status-file", type=Path, default=DEFAULT_STATUS, help=f"the running relay's status ({DEFAULT_STATUS})"
    )
    p.add_argument("--pid-file", type=Path, default=DEFAULT_PID, help=f"the running relay's pid ({DEFAULT_PID})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("start", help="run the relay (the systemd unit's command)")
    sp.add_argument("--conf", type=Path, default=Path(conf.DEFAULT_PATH), help="pool.conf, for the peers' relays")
    sp.add_argument("--ledger", type=Path, default=DEFAULT_LEDGER, help=f"the counters ({DEFAULT_LEDGER})")
    sp.add_argument("--listen", default=None, help="address of the relay port (default: every address, IPv4 and IPv6)")
    sp.add_argument("--port", type=int, default=control.PORT, help=f"relay port ({control.PORT})")
    sp.add_argument("--flip-at", type=int, help=argparse.SUPPRESS)  # a fault for tests: see docs/relay.md
    sp.set_defaults(func=cmd_start)
    sp = sub.add_parser("stop", help="stop the running relay")
    sp.set_defaults(func=cmd_stop)
    sp = sub.add_parser("status", help="the running relay's state")
    sp.set_defaults(func=cmd_status)
    sp = sub.add_parser("peers", help="the enrolled peers, with scores when the relay runs")
    sp.set_defaults(func=cmd_peers)

    sp = sub.add_parser("enroll", help="let a peer relay through this node (and, with --accept, to it)")
    sp.add_argument("name", help="a name for the peer")
    sp.add_argument("key", help="the peer's public key (base64)")
    sp.add_argument("--accept", action="store_true", help="the peer may relay connections to this node")
    sp.add_argument("--check", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=cmd_enroll)
    sp = sub.add_parser("revoke", help="remove a peer (what it takes part in ends)")
    sp.add_argument("peer", help="the peer's public key or name")
    sp.add_argument("--check", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=cmd_revoke)
    sp = sub.add_parser("apply", help="set relaying, limits and peers at once from a JSON document on stdin")
    sp.add_argument("--check", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=cmd_apply)
    sp = sub.add_parser("config", help="switch relaying and set the limits")
    sp.add_argument("--relay", choices=("on", "off"), help="relay for the enrolled peers")
    sp.add_argument("--peer-rate", type=size_arg, help="bytes per second one peer may use (K, M, G)")
    sp.add_argument("--total-rate", type=size_arg, help="bytes per second the relay carries in all")
    sp.add_argument("--connections", type=positive_arg, help="relayed connections at once")
    sp.add_argument("--check", action="store_true", help="say what would change, change nothing")
    sp.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None, device_factory: Callable[[], Any] | None = None) -> int:
    args = build_parser().parse_args(argv)
    factory = device_factory or (lambda: Device(args.device))
    try:
        return args.func(args, factory)
    except CliError as exc:
        return fail(PROG, args, exc.what, exc.why, exc.exit_code)
    except (en.EnrolmentError, LedgerError, conf.ConfError) as exc:
        return fail(PROG, args, "configuration", str(exc), EXIT_USAGE)
    except PoolError as exc:
        return fail(PROG, args, exc.what, exc.why, exc.exit_code)
    except BackendMissing as exc:
        return fail(PROG, args, "python3-cryptography", str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return fail(PROG, args, "interrupted", "Ctrl-C", EXIT_FAILURE)
    except OSError as exc:
        return fail(PROG, args, exc.filename or "I/O", exc.strerror or str(exc), EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
