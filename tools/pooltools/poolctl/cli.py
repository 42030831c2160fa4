"""poolctl: the command line door to pool.ko (see tools/man/poolctl.8, docs/poolctl-json.md)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.common import keyfile
from pooltools.common.cli import Parser, UsageError, parse_key
from pooltools.kernel import journal as jr
from pooltools.kernel import uapi, views
from pooltools.kernel.device import (
    DEVICE_PATH,
    EXIT_FAILURE,
    EXIT_NO_MODULE,
    EXIT_NOT_FOUND,
    EXIT_VERIFY,
    Device,
    PoolError,
    live_sessions,
    resolve_peer,
)
from pooltools.kernel.netaddr import format_endpoint, parse_endpoint
from pooltools.protocol.address import format_address, pool_address
from pooltools.protocol.keys import encode_key
from pooltools.protocol.x25519 import BackendMissing
from pooltools.protocol.x25519 import public_key as x25519_public

PROG = "poolctl"
MAX_CHANNEL = 255  # pool.ko carries channels 0-255
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}")


DeviceFactory = Callable[[], Any]  # returns a Device or a FakeDevice


# ---- helpers


def _names(dev: Any) -> dict[bytes, str]:
    return {bytes(p.public_key): p.name.decode(errors="replace") for p in dev.peers()}


def _session_for(dev: Any, args: argparse.Namespace) -> Any:
    """ATTACH to the session named by --index or --peer."""
    if args.index is not None:
        return dev.attach(args.index)
    peer = resolve_peer(dev, args.peer)
    live = live_sessions(dev, bytes(peer.public_key))
    if not live:
        raise PoolError(
            f"peer {args.peer}", "no established session (is poold running? poolctl sessions)", EXIT_NOT_FOUND
        )
    return dev.attach(live[0])


def _u64(text: str) -> int:
    v = int(text, 0)
    if not 0 <= v < 2**64:
        raise argparse.ArgumentTypeError("must be between 0 and 2^64-1")
    return v


def _port(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError("must be 0-65535")
    return v


def _channel(text: str) -> int:
    if text == "any":
        return uapi.POOL_CHANNEL_ANY
    v = int(text, 0)
    if not 0 <= v <= MAX_CHANNEL:
        raise argparse.ArgumentTypeError(f"must be 0-{MAX_CHANNEL} or 'any'")
    return v


def _seconds(text: str) -> float:
    v = float(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, doc: dict[str, Any], human: str | Callable[[], str]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(doc, sort_keys=False) + "\n")
        else:
            text = human() if callable(human) else human
            if text:
                sys.stdout.write(text + "\n")
        sys.stdout.flush()


# ---- commands (each returns an exit status)


def cmd_identity_generate(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    path = Path(args.key_file)
    pub = keyfile.generate(path, force=args.force)
    addr = format_address(pool_address(pub, args.org_id, args.segment_id))
    doc = {
        "key_file": str(path),
        "created": True,
        "public_key": encode_key(pub),
        "address": addr,
        "org_id": args.org_id,
        "segment_id": args.segment_id,
    }
    out.emit(doc, f"key file:   {path} (mode 0600)\npublic key: {doc['public_key']}\naddress:    {addr}")
    return 0


def _identity_human(doc: dict[str, Any]) -> str:
    if not doc["set"]:
        return "identity:   not set (poolctl identity load)"
    lines = [
        f"public key: {doc['public_key']}",
        f"address:    {doc['address']}",
        f"org id:     {doc['org_id']}",
        f"segment id: {doc['segment_id']}",
    ]
    if doc.get("key_file"):
        lines.insert(0, f"key file:   {doc['key_file']}")
    return "\n".join(lines)


def cmd_identity_show(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    if args.key_file:
        private = keyfile.read_private(Path(args.key_file))
        pub = x25519_public(private)
        doc: dict[str, Any] = {
            "source": "file",
            "key_file": args.key_file,
            "set": True,
            "public_key": encode_key(pub),
            "address": format_address(pool_address(pub, args.org_id, args.segment_id)),
            "org_id": args.org_id,
            "segment_id": args.segment_id,
        }
    else:
        with dev_factory() as dev:
            doc = {"source": "kernel", **views.identity_doc(dev.get_identity())}
    out.emit(doc, lambda: _identity_human(doc))
    return 0


def cmd_identity_load(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    private = keyfile.read_private(Path(args.key_file))
    pub = x25519_public(private)
    with dev_factory() as dev:
        cur = dev.get_identity()
        same = (
            bool(cur.flags & uapi.POOL_IDENTITY_SET)
            and bytes(cur.public_key) == pub
            and cur.org_id == args.org_id
            and cur.segment_id == args.segment_id
        )
        ident = cur if same else dev.set_identity(private, args.org_id, args.segment_id)
        doc = {"changed": not same, "key_file": args.key_file, **views.identity_doc(ident)}
    out.emit(doc, lambda: ("loaded\n" if not same else "unchanged\n") + _identity_human(doc))
    return 0


def cmd_peers_add(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    what = f"add peer {args.name}"
    if not NAME_RE.fullmatch(args.name):
        raise UsageError(what, "name must be 1-31 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)")
    key = parse_key(args.public_key, what)
    ep = None
    if args.endpoint:
        try:
            ep = parse_endpoint(args.endpoint)
        except ValueError as exc:
            raise UsageError(what, str(exc)) from None
    with dev_factory() as dev:
        if bytes(dev.get_identity().public_key) == key:
            raise UsageError(what, "that is this node's own public key")
        for p in dev.peers():
            pname = p.name.decode(errors="replace")
            if bytes(p.public_key) == key:
                same_ep = ep is None or (bytes(p.endpoint_addr), p.endpoint_port) == (ep.addr, ep.port)
                if args.exist_ok and pname == args.name and same_ep:
                    doc = {"changed": False, "peer": views.peer_doc(p)}
                    out.emit(doc, f"peer {args.name} already trusted (unchanged)")
                    return 0
                raise PoolError(what, f"peer already trusted (as '{pname}')", 6)
            if pname == args.name:
                raise PoolError(what, f"name already used by peer {encode_key(bytes(p.public_key))}", 6)
        peer = dev.peer_add(key, args.name, ep.addr if ep else bytes(16), ep.port if ep else 0)
        added = next((p for p in dev.peers() if bytes(p.public_key) == key), peer)
    doc = {"changed": True, "peer": views.peer_doc(added)}
    out.emit(doc, f"peer {args.name} added: {doc['peer']['address']}")
    return 0


def cmd_peers_remove(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        try:
            peer = resolve_peer(dev, args.peer)
        except PoolError as exc:
            if args.missing_ok and exc.exit_code == EXIT_NOT_FOUND:
                out.emit({"changed": False, "public_key": None}, f"peer {args.peer} not trusted (unchanged)")
                return 0
            raise
        key = bytes(peer.public_key)
        dev.peer_del(key)
    out.emit({"changed": True, "public_key": encode_key(key)}, f"peer {args.peer} removed")
    return 0


def cmd_peers_list(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        peers = [views.peer_doc(p) for p in dev.peers()]

    def human() -> str:
        if not peers:
            return "no peers (poolctl peers add NAME KEY)"
        rows = [
            (
                p["name"],
                p["public_key"],
                p["endpoint"],
                p["active_sessions"],
                views.ago(p["last_handshake_ns"]),
                p["auth_failures"],
            )
            for p in peers
        ]
        return views.table(("NAME", "PUBLIC KEY", "ENDPOINT", "SESSIONS", "HANDSHAKE", "AUTH FAIL"), rows)

    out.emit({"peers": peers}, human)
    return 0


def cmd_listen(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        before = dev.stats()
        dev.listen(args.port)
        after = dev.stats()
    port = after.get("listen_port") or args.port
    changed = not (before.get("listening") and before.get("listen_port") == port)
    out.emit({"changed": bool(changed), "listening": True, "port": port}, f"listening on port {port}")
    return 0


def cmd_stop(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        before = dev.stats()
        dev.stop()
    changed = bool(before.get("listening"))
    out.emit({"changed": changed, "listening": False}, "listener stopped" if changed else "not listening")
    return 0


def cmd_connect(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    what = f"connect to {args.peer}"
    with dev_factory() as dev:
        peer = resolve_peer(dev, args.peer)
        if args.endpoint:
            try:
                ep = parse_endpoint(args.endpoint, default_port=0)
                addr, port = ep.addr, ep.port
            except ValueError as exc:
                raise UsageError(what, str(exc)) from None
        elif peer.endpoint_port:
            addr, port = bytes(peer.endpoint_addr), peer.endpoint_port
        else:
            raise UsageError(what, "peer has no endpoint in the trust store: give ENDPOINT")
        sess = dev.connect(bytes(peer.public_key), addr, port, args.channel, int(args.timeout * 1000))
        try:
            name = peer.name.decode(errors="replace")
            doc = {
                "index": sess.index,
                "peer_public_key": encode_key(bytes(peer.public_key)),
                "peer_name": name,
                "endpoint": format_endpoint(addr, port or uapi.POOL_DEFAULT_PORT),
                "held_seconds": args.hold,
            }
            hold = "until Ctrl-C" if args.hold is None else f"for {args.hold:g} s"
            out.emit(doc, f"session {sess.index} established with {name}; holding it {hold}")
            _hold(sess, args.hold)
        finally:
            sess.close()
    return 0


def _hold(sess: Any, seconds: float | None) -> None:
    """Keep the session fd open: the session closes with its last fd."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    old = signal.signal(signal.SIGTERM, on_signal)
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stop:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            step = 1.0 if left is None else min(1.0, left)
            if sess.fileno() >= 0:
                p = select.poll()
                p.register(sess.fileno(), select.POLLHUP | select.POLLERR)
                if p.poll(int(step * 1000)):
                    print(f"{PROG}: session {sess.index} closed by the peer", file=sys.stderr)
                    return
            else:
                time.sleep(step)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, old)


def cmd_close(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        dev.close_session(args.index, args.code)
    out.emit({"changed": True, "index": args.index}, f"session {args.index} closed")
    return 0


RELAY_STATUS = "/run/pool-relay/status.json"


def _relayed_paths(path: Path) -> dict[tuple[str, int], str]:
    """(role, port) -> relay name of the connections the local pool_relay carries: a session
    through the door has pool.ko's local port there; one delivered by the relay port, its peer port."""
    try:
        doc = json.loads(path.read_text())
        return {(c["role"], int(c["local_port"])): str(c["via"]) for c in doc["carried"] if c.get("via")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no relay running here, or a status being replaced: every session is direct


def cmd_sessions(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        names = _names(dev)
        infos = dev.sessions()
    relayed = _relayed_paths(Path(os.environ.get("POOL_RELAY_STATUS", RELAY_STATUS)))
    sessions = []
    for info in infos:
        s = views.session_doc(info, names)
        via = relayed.get(("source", info.local_port)) or relayed.get(("destination", info.peer_port))
        s["path"] = f"relay {via}" if via else "direct"
        sessions.append(s)

    def human() -> str:
        if not sessions:
            return "no sessions"
        rows = [
            (
                s["index"],
                s["peer_name"] or s["peer_public_key"][:12] + "...",
                s["peer_endpoint"] if s["path"] == "direct" else f"via {s['path'].removeprefix('relay ')}",
                s["state"],
                s["role"],
                views.human_bytes(s["bytes_sent"]),
                views.human_bytes(s["bytes_recv"]),
                views.duration(s["telemetry"]["local"]["rtt_ns"]),
                s["epoch"],
                s["fds"],
            )
            for s in sessions
        ]
        return views.table(("IDX", "PEER", "ENDPOINT", "STATE", "ROLE", "SENT", "RECV", "RTT", "EPOCH", "FDS"), rows)

    out.emit({"sessions": sessions}, human)
    return 0


def cmd_telemetry(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        names = _names(dev)
        infos = dev.sessions()
    if args.index is not None:
        infos = [s for s in infos if s.index == args.index]
        if not infos:
            raise PoolError(f"session {args.index}", "no such session", EXIT_NOT_FOUND)
    items = [
        {
            "index": s.index,
            "peer_public_key": encode_key(bytes(s.peer_public_key)),
            "peer_name": names.get(bytes(s.peer_public_key)),
            "local": views.telemetry_doc(s.local),
            "peer": views.telemetry_doc(s.peer),
        }
        for s in infos
    ]

    def human() -> str:
        if not items:
            return "no sessions"
        rows = []
        for it in items:
            for side in ("local", "peer"):
                t = it[side]
                rows.append(
                    (
                        it["index"],
                        it["peer_name"] or it["peer_public_key"][:12] + "...",
                        side,
                        views.duration(t["rtt_ns"]),
                        views.duration(t["jitter_ns"]),
                        t["loss_rate_ppm"],
                        t["throughput_bps"],
                        t["mtu"],
                        t["queue_depth"],
                        t["rekey_count"],
                        views.duration(t["uptime_ns"]),
                    )
                )
        return views.table(
            ("IDX", "PEER", "SIDE", "RTT", "JITTER", "LOSS PPM", "BPS", "MTU", "QUEUE", "REKEYS", "UPTIME"), rows
        )

    out.emit({"sessions": items}, human)
    return 0


def cmd_stats(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        stats = dev.stats()
    width = max((len(k) for k in stats), default=0)
    out.emit({"stats": stats}, lambda: "\n".join(f"{k.ljust(width)}  {v:>12}" for k, v in stats.items()))
    return 0


def cmd_journal_show(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        chunk = dev.journal_read(args.from_seq)
    entries = chunk.entries[-args.limit :] if args.limit else chunk.entries
    doc = {
        "first_seq": chunk.first_seq,
        "next_seq": chunk.next_seq,
        "head_hash": chunk.head_hash.hex(),
        "entries": [views.entry_doc(e) for e in entries],
    }

    def human() -> str:
        rows = [
            (
                e.seq,
                views.iso(e.timestamp_ns),
                jr.type_name(e.type),
                jr.code_name(e.code) if e.code else "",
                (views.key_or_none(e.peer_public_key) or "")[:12],
                e.detail.decode(errors="backslashreplace"),
                e.hash.hex()[:16],
            )
            for e in entries
        ]
        return views.table(("SEQ", "TIME (UTC)", "TYPE", "CODE", "PEER", "DETAIL", "HASH"), rows)

    out.emit(doc, human)
    return 0


def cmd_journal_verify(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    if args.file:
        # several files: poold's rotated journal, oldest first, verified as one chain
        entries: list[jr.Entry] = []
        for name in args.file:
            if not Path(name).exists():
                raise PoolError(f"journal file {name}", "does not exist", EXIT_NOT_FOUND)
            try:
                more, _size = jr.read_file(Path(name))
            except jr.JournalFileError as exc:
                raise PoolError("journal verify", str(exc), EXIT_VERIFY) from None
            entries += more
        res = jr.verify(entries, allow_restart=True)
        source = ", ".join(args.file)
    else:
        with dev_factory() as dev:
            chunk = dev.journal_read(0)
        res = jr.verify(chunk.entries)
        if res.ok and chunk.entries and res.head_hash != chunk.head_hash:
            res.problems.append("the kernel's head hash differs from the newest entry's hash")
        source = "kernel"
    doc = {
        "ok": res.ok,
        "source": source,
        "checked": res.checked,
        "first_seq": res.first_seq,
        "last_seq": res.last_seq,
        "head_hash": res.head_hash.hex() if res.head_hash else None,
        "segments": res.segments,
        "problems": res.problems,
    }
    if res.ok:
        out.emit(
            doc, f"journal ok: {res.checked} entries (seq {res.first_seq}..{res.last_seq}), head {doc['head_hash']}"
        )
        return 0
    out.emit(doc, "\n".join(["journal BROKEN:", *(f"  {p}" for p in res.problems)]))
    print(f"{PROG}: journal verify: {len(res.problems)} problem(s): {res.problems[0]}", file=sys.stderr)
    return EXIT_VERIFY


def cmd_send(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    data = sys.stdin.buffer.read(uapi.POOL_MAX_MESSAGE + 1) if args.message == "-" else args.message.encode()
    if len(data) > uapi.POOL_MAX_MESSAGE:
        raise UsageError("send", f"message longer than {uapi.POOL_MAX_MESSAGE} bytes")
    with dev_factory() as dev:
        sess = _session_for(dev, args)
        try:
            sess.send(data, args.channel)
        finally:
            sess.close()
    out.emit(
        {"index": sess.index, "channel": args.channel, "bytes": len(data)},
        f"sent {len(data)} bytes on session {sess.index} channel {args.channel}",
    )
    return 0


def cmd_recv(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        sess = _session_for(dev, args)
        try:
            got = sess.recv(args.channel, args.timeout)
        finally:
            sess.close()
    if got is None:
        out.emit({"index": sess.index, "channel": None, "bytes": 0, "data": None, "closed": True}, "")
        print(f"{PROG}: receive on session {sess.index}: session closed by the peer", file=sys.stderr)
        return 10
    channel, data = got
    doc = {
        "index": sess.index,
        "channel": channel,
        "bytes": len(data),
        "data": base64.b64encode(data).decode(),
        "closed": False,
    }
    if out.as_json:
        out.emit(doc, "")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _module_version() -> str | None:
    try:
        return Path("/sys/module/pool/version").read_text().strip() or None
    except OSError:
        return None


def cmd_status(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    try:
        dev = dev_factory()
    except PoolError as exc:
        if exc.exit_code == EXIT_NO_MODULE:
            out.emit({"module_loaded": False, "module_version": None, "device": args.device}, "")
            print(f"{PROG}: {exc}", file=sys.stderr)
            return EXIT_NO_MODULE
        raise
    with dev:
        ident = views.identity_doc(dev.get_identity())
        stats = dev.stats()
        peers = dev.peers()
        sessions = dev.sessions()
        chunk = dev.journal_read(2**63)
        cfg = dev.config_get()
    established = sum(1 for s in sessions if s.state in (uapi.SessionState.ESTABLISHED, uapi.SessionState.REKEYING))
    doc = {
        "module_loaded": True,
        "module_version": _module_version(),
        "device": args.device,
        "identity": ident,
        "listening": bool(stats.get("listening")),
        "listen_port": stats.get("listen_port", 0),
        "peers": len(peers),
        "sessions": len(sessions),
        "sessions_established": established,
        "journal": {"first_seq": chunk.first_seq, "next_seq": chunk.next_seq, "head_hash": chunk.head_hash.hex()},
        "config": {"version": cfg.version, "tentative": bool(cfg.flags & uapi.POOL_CONFIG_TENTATIVE)},
    }

    def human() -> str:
        return "\n".join(
            [
                f"module:     loaded (version {doc['module_version'] or 'unknown'})",
                f"identity:   {ident['public_key'] or 'not set'}",
                f"address:    {ident['address'] or '-'}",
                f"listening:  {'port ' + str(doc['listen_port']) if doc['listening'] else 'no'}",
                f"peers:      {len(peers)}",
                f"sessions:   {len(sessions)} ({established} established)",
                f"journal:    next seq {chunk.next_seq}, head {chunk.head_hash.hex()[:16]}",
                f"config:     version {cfg.version}{' (tentative)' if doc['config']['tentative'] else ''}",
            ]
        )

    out.emit(doc, human)
    return 0


def cmd_config_show(args: argparse.Namespace, out: Output, dev_factory: DeviceFactory) -> int:
    with dev_factory() as dev:
        doc = views.config_doc(dev.config_get())
    width = max(len(k) for k in doc)
    out.emit(doc, lambda: "\n".join(f"{k.ljust(width)}  {v}" for k, v in doc.items()))
    return 0


# ---- parser


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document (docs/poolctl-json.md)"
    )

    p = Parser(prog=PROG, description="Control pool.ko, the POOL/1 secure transport.", parents=[common])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--device", default=os.environ.get("POOL_DEVICE", DEVICE_PATH), help="control device (default /dev/pool)"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def add(parent: Any, name: str, func: Callable[..., int], help_: str) -> Parser:
        sp = parent.add_parser(name, help=help_, description=help_, parents=[common])
        sp.set_defaults(func=func)
        return sp

    def key_opts(sp: Parser) -> None:
        sp.add_argument("--key-file", default=keyfile.DEFAULT_KEY_FILE, help="private key file (default %(default)s)")

    def id_opts(sp: Parser) -> None:
        sp.add_argument("--org-id", type=_u64, default=0, help="organisation id of the address (default 0)")
        sp.add_argument("--segment-id", type=_u64, default=0, help="segment id of the address (default 0)")

    ident = sub.add_parser("identity", help="the node's key pair and POOL address", parents=[common])
    isub = ident.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    isub.required = True
    sp = add(isub, "generate", cmd_identity_generate, "create a private key file on this node (mode 0600)")
    key_opts(sp)
    id_opts(sp)
    sp.add_argument("--force", action="store_true", help="replace an existing key file")
    sp = add(isub, "show", cmd_identity_show, "show the public key and address (the kernel's, or a key file's)")
    sp.add_argument("--key-file", help="show this key file's identity instead of the kernel's")
    id_opts(sp)
    sp = add(isub, "load", cmd_identity_load, "load the private key into pool.ko (SET_IDENTITY)")
    key_opts(sp)
    id_opts(sp)

    peers = sub.add_parser("peers", help="the trust store", parents=[common])
    psub = peers.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    peers.set_defaults(func=cmd_peers_list)  # `poolctl peers` lists, as `wg show` shows
    sp = add(psub, "add", cmd_peers_add, "trust a peer's public key")
    sp.add_argument("name", help="peer name (1-31 of A-Z a-z 0-9 . _ -)")
    sp.add_argument("public_key", help="peer's public key, base64")
    sp.add_argument("--endpoint", help="address:port to connect to ([v6]:port)")
    sp.add_argument(
        "--exist-ok", action="store_true", help="succeed (changed=false) if the same peer is already trusted"
    )
    sp = add(psub, "remove", cmd_peers_remove, "remove a peer (closes its sessions)")
    sp.add_argument("peer", help="peer name or public key")
    sp.add_argument("--missing-ok", action="store_true", help="succeed (changed=false) if the peer is not trusted")
    add(psub, "list", cmd_peers_list, "list trusted peers")

    sp = add(sub, "listen", cmd_listen, "start the node's listener")
    sp.add_argument("--port", type=_port, default=0, help="TCP port (default: module parameter port)")
    add(sub, "stop", cmd_stop, "stop the node's listener (sessions stay)")

    sp = add(sub, "connect", cmd_connect, "diagnostic: open a session and hold it (it closes when poolctl exits)")
    sp.add_argument("--peer", required=True, help="peer name or public key (must be trusted)")
    sp.add_argument("endpoint", nargs="?", help="address[:port] (default: the peer's endpoint)")
    sp.add_argument("--channel", type=_channel, default=0, help="default channel of the session fd")
    sp.add_argument("--timeout", type=_seconds, default=10.0, help="handshake timeout in seconds (default 10)")
    sp.add_argument(
        "--hold",
        type=_seconds,
        default=None,
        help="seconds to hold the session (default: until Ctrl-C; 0: close at once)",
    )

    sp = add(sub, "close", cmd_close, "close a session by index (authenticated CLOSE)")
    sp.add_argument("index", type=int)
    sp.add_argument("--code", type=lambda t: int(t, 0), default=0, help="CLOSE code (default 0)")

    add(sub, "sessions", cmd_sessions, "list sessions")
    sp = add(sub, "telemetry", cmd_telemetry, "heartbeat telemetry per session (local and peer)")
    sp.add_argument("index", type=int, nargs="?")
    add(sub, "stats", cmd_stats, "module counters")

    jp = sub.add_parser("journal", help="the module's hash-chained journal", parents=[common])
    jsub = jp.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    jp.set_defaults(func=cmd_journal_show, from_seq=0, limit=0)  # `poolctl journal` shows it whole
    sp = add(jsub, "show", cmd_journal_show, "print journal entries (oldest first)")
    sp.add_argument("--from", dest="from_seq", type=_u64, default=0, help="first seq to show")
    sp.add_argument("--limit", "--last", dest="limit", type=int, default=0, help="only the newest N entries")
    sp = add(jsub, "verify", cmd_journal_verify, "verify the SHA-256 chain (docs/protocol.md section 6)")
    sp.add_argument(
        "--file",
        action="append",
        help="verify a journal persisted by poold instead of the kernel's; repeat it for the rotated "
        "files, oldest first (journal.jsonl.2 --file journal.jsonl.1 --file journal.jsonl), which must chain on",
    )

    for name, func, help_ in (
        ("send", cmd_send, "diagnostic: send one message on a session (ATTACH)"),
        ("recv", cmd_recv, "diagnostic: receive one message from a session (ATTACH)"),
    ):
        sp = add(sub, name, func, help_)
        who = sp.add_mutually_exclusive_group(required=True)
        who.add_argument("--peer", help="the peer's established session (name or public key)")
        who.add_argument("--index", type=int, help="session index")
        if name == "send":
            sp.add_argument("--channel", type=_channel, default=0, help="channel (default 0)")
            sp.add_argument("message", help="the message, or - to read it from stdin")
        else:
            sp.add_argument(
                "--channel", type=_channel, default=uapi.POOL_CHANNEL_ANY, help="only this channel (default any)"
            )
            sp.add_argument("--timeout", type=_seconds, default=None, help="seconds to wait (default: forever)")

    add(sub, "status", cmd_status, "module, identity, listener, peers, sessions, journal head")
    cp = sub.add_parser("config", help="versioned configuration", parents=[common])
    csub = cp.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    csub.required = True
    add(csub, "show", cmd_config_show, "show the active configuration version (CONFIG_GET)")
    from pooltools.config import versions as poolctl_config  # apply, confirm, rollback, history, diff (issue 6)

    poolctl_config.register(csub, add)
    return p


def main(argv: Sequence[str] | None = None, device_factory: DeviceFactory | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    out = Output(as_json)
    try:
        args = build_parser().parse_args(argv)
        as_json = out.as_json = bool(getattr(args, "json", False))
        factory = device_factory or (lambda: Device(args.device))
        return args.func(args, out, factory)
    except PoolError as exc:
        return _fail(out, exc.what, exc.why, exc.exit_code)
    except BackendMissing as exc:
        return _fail(out, "python3-cryptography", str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail(out, "interrupted", "Ctrl-C", EXIT_FAILURE)
    except BrokenPipeError:
        return EXIT_FAILURE
    except OSError as exc:
        return _fail(out, exc.filename or "I/O", exc.strerror or str(exc), EXIT_FAILURE)


def _fail(out: Output, what: str, why: str, code: int) -> int:
    if out.as_json:
        sys.stdout.write(json.dumps({"error": {"what": what, "why": why, "exit_code": code}}) + "\n")
        sys.stdout.flush()
    print(f"{PROG}: {what}: {why}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
