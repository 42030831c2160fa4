"""Lab-side driver for molecule/default/tests/test_transport.py.

Copied to the lab VMs and run as root there, with the pooltools package the
node role installed in /opt/pool on the path (PYTHONPATH=<venv site-packages>).
Everything prints one JSON document on stdout.

    probe CASE HOST PORT --peer-key B64 --key FILE [--claim B64]
        One hostile handshake against pool.ko at HOST:PORT, over a raw TCP
        socket (needs `cryptography`). CASE:
          unknown    a full, valid handshake from a key the target does not trust
          wrongkey   RESPONSE claims the trusted static key --claim, proof made
                     with the key in --key (which is not --claim's private key)
          replay     a valid handshake (--key trusted), its TCP connection reset,
                     then its INIT and RESPONSE replayed byte for byte from the
                     same source address and port (so the puzzle seed matches)
          stale      an INIT whose timestamp is 120 s old
          badpuzzle  a RESPONSE whose puzzle solution is wrong
    config-set [--rekey-seconds N] [--puzzle-difficulty N] [--heartbeat-seconds N]
               [--confirm-ms MS] [--add-peer B64] [--drop-peer B64]
        CONFIG_APPLY of the active configuration with these tunables changed and
        the trust store unchanged; tentative (the kernel rolls it back by itself
        after MS) unless --confirm-ms 0.
    config-restore
        CONFIG_ROLLBACK of the active version while it has a previous one.
    seq-send --peer B64 --channel C --seconds S [--size N] [--nonce X]
    seq-recv --peer B64 --channel C --timeout T --nonce X [--stall S]
        Sequence-numbered messages over the established session with the peer
        (ATTACH); the receiver checks none is lost, duplicated or reordered.
        --stall: hold the session S seconds without reading first (a stalled reader).
    cycles HOST --peer B64 --count N [--port P]
        N CONNECT + close cycles to the peer (sessions of the kernel on both sides).
    efault HOST --peer B64 [--port P]
        ATTACH to the established session with the peer, then CONNECT to it at HOST, each with
        its argument in read-only memory: pool.ko must answer EFAULT (it cannot write the
        results back) and leave no descriptor in this process, nor the session CONNECT made.
    slow-writer HOST --peer B64
        A session of its own to the peer; a thread writes a message from memory that faults
        until this process resolves it (userfaultfd), and meanwhile a tentative CONFIG_APPLY
        (announced on every session) must complete; then the fault is resolved, the write
        completes and the version is rolled back.
    peer-del-strict
        PEER_DEL of a temporarily trusted key with a reserved field set, then with a name set:
        both refused (EINVAL) with the peer still trusted; then the plain PEER_DEL removes it.
    half-open HOST PORT --seconds S
        Opens a TCP connection, sends a valid-looking INIT prefix only, and holds it until the
        peer closes it or S seconds pass; reports which and when.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import ipaddress
import json
import os
import socket
import struct
import sys
import time
from typing import Any


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


def key_arg(text: str) -> bytes:
    from pooltools.protocol.keys import decode_key

    return decode_key(text)


def read_key_file(path: str) -> bytes:
    from pooltools.protocol.keys import decode_key

    with open(path, "rb") as fh:
        data = fh.read()
    return data if len(data) == 32 else decode_key(data.decode().strip())


def mapped(addr: str) -> bytes:
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return ipaddress.IPv6Address("::ffff:" + addr).packed
    return ip.packed


# ---- hostile handshakes ------------------------------------------------------


class Conn:
    def __init__(self, host: str, port: int, local_port: int = 0, timeout: float = 15.0) -> None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if local_port:
            self.sock.bind(("", local_port))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.local_port = self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read_packet(self) -> tuple[str, Any, bytes]:
        """('packet', hdr, payload) | ('eof', None, b'') | ('reset'|'timeout', None, b'')."""
        from pooltools.protocol.wire import HEADER_LEN, Header

        try:
            raw = self._exact(HEADER_LEN)
            if raw is None:
                return "eof", None, b""
            hdr = Header.decode(raw)
            body = self._exact(hdr.payload_len) if hdr.payload_len else b""
            if body is None:
                return "eof", None, b""
            return "packet", hdr, body
        except ConnectionResetError:
            return "reset", None, b""
        except TimeoutError:
            return "timeout", None, b""

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0): no TIME_WAIT, so the source port is free at once."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def outcome(conn: Conn) -> dict[str, Any]:
    """What the responder did after our last packet: ACK, a handshake CLOSE, or a closed connection."""
    from pooltools.protocol.wire import PacketType, decode_close

    kind, hdr, body = conn.read_packet()
    if kind != "packet":
        return {"outcome": kind}
    t = PacketType(hdr.type).name
    if t == "CLOSE":
        return {"outcome": "close", "close_code": decode_close(body)}
    return {"outcome": t.lower()}


def handshake_to_challenge(conn: Conn, ini: Any) -> tuple[bytes, Any]:
    init = ini.create_init()
    conn.send(init)
    kind, hdr, body = conn.read_packet()
    if kind != "packet":
        raise SystemExit(f"probe: no CHALLENGE after INIT: {kind}")
    return init, ini.on_challenge(hdr, body)


def cmd_probe(a: argparse.Namespace) -> int:
    from pooltools.protocol import noise

    peer = key_arg(a.peer_key)
    secret = read_key_file(a.key)
    doc: dict[str, Any] = {"case": a.case, "target": f"{a.host}:{a.port}"}
    t0 = time.monotonic()
    if a.case == "stale":
        ts = time.time_ns() - 120 * 10**9
        ini = noise.Initiator(secret, peer, clock=lambda: ts)
        conn = Conn(a.host, a.port)
        conn.send(ini.create_init())
        doc.update(outcome(conn))
        conn.close()
    elif a.case in ("unknown", "wrongkey", "badpuzzle"):
        ini = noise.Initiator(secret, peer)
        if a.case == "wrongkey":
            ini.S = key_arg(a.claim)  # claims a trusted identity it has no private key for
        conn = Conn(a.host, a.port)
        _challenge_hdr, ch = handshake_to_challenge(conn, ini)
        doc["difficulty"] = ch.difficulty
        if a.case == "badpuzzle":
            if ch.difficulty == 0:
                raise SystemExit("probe: difficulty 0: every solution is right, no wrong one to send")
            bad = next(s for s in range(1 << 20) if not noise.puzzle_ok(ch.seed, s, ch.difficulty))
            conn.send(ini.create_response(bad))
        else:
            conn.send(ini.create_response())
        doc.update(outcome(conn))
        conn.close()
    elif a.case == "replay":
        ini = noise.Initiator(secret, peer)
        conn = Conn(a.host, a.port)
        init, ch = handshake_to_challenge(conn, ini)
        response = ini.create_response()
        conn.send(response)
        first = outcome(conn)
        doc["original"] = first
        port = conn.local_port
        conn.reset()
        if first["outcome"] != "ack":
            raise SystemExit(f"probe: the original handshake did not complete: {first}")
        time.sleep(a.pause)
        conn = Conn(a.host, a.port, local_port=port)
        conn.send(init)
        kind, _hdr, body = conn.read_packet()
        if kind != "packet":
            raise SystemExit(f"probe: replayed INIT got no CHALLENGE: {kind}")
        from pooltools.protocol import wire

        ch2 = wire.Challenge.decode(body)
        doc["same_seed"] = ch2.seed == ch.seed
        doc["same_source_port"] = conn.local_port == port
        conn.send(response)
        doc.update(outcome(conn))
        conn.close()
    else:
        raise SystemExit(f"probe: unknown case {a.case}")
    doc["seconds"] = round(time.monotonic() - t0, 3)
    emit(doc)
    return 0


def cmd_half_open(a: argparse.Namespace) -> int:
    conn = Conn(a.host, a.port)
    conn.send(b"\x10\x00\x00\x00")  # the first 4 bytes of an INIT header, nothing more
    emit({"half_open": f"{a.host}:{a.port}", "local_port": conn.local_port})
    started = time.monotonic()
    # The peer may close it (pool.ko's half-open timeout, or rmmod): nothing to hold then.
    outcome = "held"
    while (left := a.seconds - (time.monotonic() - started)) > 0:
        conn.sock.settimeout(left)
        try:
            if not conn.sock.recv(4096):
                outcome = "eof"
                break
        except TimeoutError:
            break
        except OSError:
            outcome = "reset"
            break
    emit({"half_open_end": outcome, "after_s": round(time.monotonic() - started, 1)})
    conn.close()
    return 0


# ---- configuration (CONFIG_APPLY / CONFIG_ROLLBACK) --------------------------


def apply_tunables(
    dev: Any, confirm_ms: int, add_peer: bytes = b"", drop_peer: bytes = b"", **tunables: int | None
) -> Any:
    """CONFIG_APPLY of the active configuration with `tunables` changed (None: unchanged) and the
    trust store as it is, plus add_peer (named "ktest-extra") and minus drop_peer; returns the
    configuration that is active afterwards."""
    from pooltools.kernel import uapi

    cur = dev.config_get()
    peers = [p for p in dev.peers() if bytes(p.public_key) != drop_peer]
    if add_peer:
        peers.append(uapi.PoolPeer(name=b"ktest-extra"))
        ctypes.memmove(peers[-1].public_key, add_peer, 32)
    arr = (uapi.PoolPeer * max(1, len(peers)))()
    for i, p in enumerate(peers):
        q = uapi.PoolPeer()
        ctypes.memmove(q.public_key, p.public_key, 32)
        q.name = bytes(p.name).split(b"\0")[0]
        ctypes.memmove(q.endpoint_addr, p.endpoint_addr, 16)
        q.endpoint_port = p.endpoint_port
        arr[i] = q
    c = uapi.PoolConfig()
    c.version = cur.version + 1
    digest = hashlib.sha256(f"transport-test {c.version} {time.time_ns()}".encode()).digest()
    ctypes.memmove(c.hash, digest, 32)
    c.confirm_within_ms = confirm_ms
    for name in ("heartbeat_seconds", "rekey_seconds", "rekey_packets", "puzzle_difficulty", "max_sessions"):
        value = tunables.get(name)
        setattr(c, name, value if value is not None else getattr(cur, name))
    c.peers_ptr = ctypes.addressof(arr)
    c.peer_count = len(peers)
    dev._io(uapi.POOL_IOC_CONFIG_APPLY, c, "apply configuration")
    return dev.config_get()


def cmd_config_set(a: argparse.Namespace) -> int:
    from pooltools.kernel import uapi
    from pooltools.kernel.device import Device

    with Device() as dev:
        new = apply_tunables(
            dev,
            a.confirm_ms,
            add_peer=base64.b64decode(a.add_peer) if a.add_peer else b"",
            drop_peer=base64.b64decode(a.drop_peer) if a.drop_peer else b"",
            heartbeat_seconds=a.heartbeat_seconds,
            rekey_seconds=a.rekey_seconds,
            puzzle_difficulty=a.puzzle_difficulty,
        )
    emit(
        {
            "version": new.version,
            "prev_version": new.prev_version,
            "tentative": bool(new.flags & uapi.POOL_CONFIG_TENTATIVE),
            "rekey_seconds": new.rekey_seconds,
            "puzzle_difficulty": new.puzzle_difficulty,
            "heartbeat_seconds": new.heartbeat_seconds,
            "peer_count": new.peer_count,
        }
    )
    return 0


def cmd_config_restore(a: argparse.Namespace) -> int:
    from pooltools.kernel import uapi
    from pooltools.kernel.device import Device

    with Device() as dev:
        cur = dev.config_get()
        restored = False
        if cur.flags & uapi.POOL_CONFIG_HAS_PREV:
            dev._io(uapi.POOL_IOC_CONFIG_ROLLBACK, uapi.PoolConfigRef(version=cur.version), "roll back")
            restored = True
        new = dev.config_get()
    emit(
        {
            "restored": restored,
            "version": new.version,
            "rekey_seconds": new.rekey_seconds,
            "puzzle_difficulty": new.puzzle_difficulty,
            "heartbeat_seconds": new.heartbeat_seconds,
            "peer_count": new.peer_count,
        }
    )
    return 0


# ---- sequence-numbered traffic -----------------------------------------------

SEQ = struct.Struct(">8sQ")  # nonce, counter


def attach_peer(dev: Any, key: bytes, timeout: float = 60.0) -> Any:
    from pooltools.kernel import uapi

    deadline = time.monotonic() + timeout
    live = (uapi.SessionState.ESTABLISHED, uapi.SessionState.REKEYING)
    while True:
        idx = [s.index for s in dev.sessions() if bytes(s.peer_public_key) == key and s.state in live]
        if idx:
            return dev.attach(min(idx))
        if time.monotonic() > deadline:
            raise SystemExit("no established session with the peer")
        time.sleep(0.5)


def cmd_seq_send(a: argparse.Namespace) -> int:
    from pooltools.kernel.device import Device

    nonce = a.nonce.encode()[:8].ljust(8, b"\0")
    pad = os.urandom(max(0, a.size - SEQ.size))
    with Device() as dev:
        sess = attach_peer(dev, key_arg(a.peer))
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < a.seconds:
            sess.send(SEQ.pack(nonce, n) + pad, a.channel)
            n += 1
            if a.interval:
                time.sleep(a.interval)
        sess.send(b"END" + nonce + struct.pack(">Q", n), a.channel)
        sess.close()
    emit({"sent": n, "seconds": round(time.monotonic() - t0, 3), "session": sess.index})
    return 0


def cmd_seq_recv(a: argparse.Namespace) -> int:
    from pooltools.kernel.device import Device

    nonce = a.nonce.encode()[:8].ljust(8, b"\0")
    expect = 0
    got = dups = gaps = reorder = foreign = 0
    first_problem = None
    total = None
    with Device() as dev:
        sess = attach_peer(dev, key_arg(a.peer))
        time.sleep(a.stall)
        deadline = time.monotonic() + a.timeout
        seen_max = -1
        while total is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = sess.recv(a.channel, min(left, 30.0))
            except Exception as exc:  # PoolError on timeout
                if time.monotonic() >= deadline:
                    break
                if "within" in str(exc):
                    continue
                raise
            if item is None:
                first_problem = first_problem or f"session closed after {got} messages"
                break
            data = item[1]
            if data.startswith(b"END" + nonce):
                total = struct.unpack(">Q", data[11:19])[0]
                break
            if len(data) < SEQ.size or data[:8] != nonce:
                foreign += 1
                continue
            (_nonce_part, n) = SEQ.unpack(data[: SEQ.size])
            got += 1
            if n == expect:
                expect += 1
            elif n < expect:
                dups += 1 if n <= seen_max else 0
                reorder += 0 if n <= seen_max else 1
                first_problem = first_problem or f"got {n} after {expect - 1}"
            else:
                gaps += n - expect
                first_problem = first_problem or f"got {n}, expected {expect}"
                expect = n + 1
            seen_max = max(seen_max, n)
        sess.close()
    ok = total is not None and got == total and expect == total and not (dups or gaps or reorder)
    emit(
        {
            "ok": ok,
            "received": got,
            "sent": total,
            "missing": gaps,
            "duplicates": dups,
            "reordered": reorder,
            "foreign": foreign,
            "first_problem": first_problem,
            "session": sess.index,
        }
    )
    return 0 if ok else 1


# ---- connect/close cycles ----------------------------------------------------


def cmd_cycles(a: argparse.Namespace) -> int:
    from pooltools.kernel.device import Device, PoolError

    key = key_arg(a.peer)
    addr = mapped(a.host)
    fails: dict[str, int] = {}
    ok = most_fds = 0
    t0 = time.monotonic()
    with Device() as dev:
        for _packet in range(a.count):
            try:
                s = dev.connect(key, addr, a.port, 0, 10000)
            except PoolError as exc:
                fails[exc.why] = fails.get(exc.why, 0) + 1
                time.sleep(0.2)
                continue
            if a.hold:  # long enough for the node's services to see it, would they take it
                until = time.monotonic() + a.hold
                while time.monotonic() < until:
                    mine = [i for i in dev.sessions() if i.index == s.index]
                    most_fds = max([most_fds, *(i.fds for i in mine)])
                    time.sleep(0.5)
            s.close()
            ok += 1
    emit({"cycles": ok, "failures": fails, "most_fds": most_fds, "seconds": round(time.monotonic() - t0, 3)})
    return 0


# ---- results that cannot be copied back -------------------------------------------


def read_only_copy(struct_obj: ctypes.Structure) -> tuple[Any, int]:
    """The structure's bytes in a page of their own, made read-only; (keep-alive, address)."""
    import mmap

    page = mmap.mmap(-1, mmap.PAGESIZE)
    page.write(bytes(struct_obj))
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ) != 0:
        raise OSError(ctypes.get_errno(), "mprotect")
    return page, addr


def ioctl_outcome(fd: int, req: int, addr: int) -> str:
    """ "ok", or the errno's name, of an ioctl whose argument is at `addr` (libc's ioctl, not
    fcntl.ioctl: an address does not fit the C int that one passes)."""
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    libc.ioctl.restype = ctypes.c_int
    if libc.ioctl(fd, ctypes.c_ulong(req), ctypes.c_void_p(addr)) == 0:
        return "ok"
    err = ctypes.get_errno()
    return errno.errorcode.get(err, str(err))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def cmd_efault(a: argparse.Namespace) -> int:
    from pooltools.kernel import uapi
    from pooltools.kernel.device import Device

    key = key_arg(a.peer)
    doc: dict[str, Any] = {}
    with Device() as dev:
        idx = [s.index for s in dev.sessions() if bytes(s.peer_public_key) == key]
        if not idx:
            raise SystemExit("no session with the peer to attach to")
        cases = {
            "attach": (uapi.POOL_IOC_ATTACH, uapi.PoolAttach(index=min(idx), fd_flags=os.O_CLOEXEC)),
            "connect": (
                uapi.POOL_IOC_CONNECT,
                uapi.PoolConnect(port=a.port, timeout_ms=10000, fd_flags=os.O_CLOEXEC),
            ),
        }
        conn = cases["connect"][1]
        ctypes.memmove(conn.addr, mapped(a.host), 16)
        ctypes.memmove(conn.peer_public_key, key, uapi.POOL_KEY_LEN)
        for name, (req, arg) in cases.items():
            sessions_before = {s.index for s in dev.sessions()}
            fds_before = open_fds()
            _page, addr = read_only_copy(arg)
            result = ioctl_outcome(dev.fd, req, addr)
            # A session CONNECT made and could not hand over is closed; give it time to go.
            deadline = time.monotonic() + 15
            new_sessions = {s.index for s in dev.sessions()} - sessions_before
            while new_sessions and time.monotonic() < deadline:
                time.sleep(0.5)
                new_sessions = {s.index for s in dev.sessions()} - sessions_before
            doc[name] = {
                "result": result,
                "new_fds": sorted(open_fds() - fds_before),
                "new_sessions": sorted(new_sessions),
            }
    emit(doc)
    return 0


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (0xAA << 8) | nr  # userfaultfd's ioctls


class UserFault:
    """Anonymous memory whose first touch waits until resolve() (userfaultfd, missing mode)."""

    def __init__(self, size: int) -> None:
        import fcntl
        import mmap

        self.size = size
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        self.fd = libc.syscall(323, os.O_CLOEXEC)  # __NR_userfaultfd on x86_64
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "userfaultfd")
        fcntl.ioctl(self.fd, _iowr(0x3F, 24), (ctypes.c_uint64 * 3)(0xAA, 0, 0))  # UFFDIO_API
        self.region = mmap.mmap(-1, size)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.region))
        fcntl.ioctl(self.fd, _iowr(0x00, 32), (ctypes.c_uint64 * 4)(self.addr, size, 1, 0))  # REGISTER

    def resolve(self) -> None:
        import fcntl

        fcntl.ioctl(self.fd, _iowr(0x04, 32), (ctypes.c_uint64 * 4)(self.addr, self.size, 0, 0))  # ZEROPAGE


def cmd_slow_writer(a: argparse.Namespace) -> int:
    import mmap
    import threading

    from pooltools.kernel import uapi
    from pooltools.kernel.device import Device

    key = key_arg(a.peer)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    libc.write.restype = ctypes.c_ssize_t
    doc: dict[str, Any] = {}
    with Device() as dev:
        sess = dev.connect(key, mapped(a.host), 0, 0, 10000)
        fault = UserFault(mmap.PAGESIZE)
        wrote: list[int] = []
        writer = threading.Thread(target=lambda: wrote.append(libc.write(sess.fd, fault.addr, 1000)), daemon=True)
        writer.start()
        time.sleep(1)
        doc["writer_blocked"] = writer.is_alive()
        applied: list[Any] = []
        t0 = time.monotonic()
        config = threading.Thread(target=lambda: applied.append(apply_tunables(dev, 60000)), daemon=True)
        config.start()
        config.join(10)
        doc["config_apply_seconds"] = round(time.monotonic() - t0, 3) if applied else None
        doc["writer_blocked_during_apply"] = writer.is_alive()
        fault.resolve()
        writer.join(10)
        config.join(30)
        doc["written"] = wrote[0] if wrote else None
        if applied:
            dev._io(uapi.POOL_IOC_CONFIG_ROLLBACK, uapi.PoolConfigRef(version=applied[0].version), "roll back")
        doc["tentative_after"] = bool(dev.config_get().flags & uapi.POOL_CONFIG_TENTATIVE)
        sess.close()
    emit(doc)
    return 0


def cmd_peer_del_strict(_a: argparse.Namespace) -> int:
    from pooltools.kernel import uapi
    from pooltools.kernel.device import Device, make_peer
    from pooltools.protocol.x25519 import public_key

    key = public_key(os.urandom(32))
    doc: dict[str, Any] = {}
    with Device() as dev:

        def trusted() -> bool:
            return any(bytes(p.public_key) == key for p in dev.peers())

        dev.peer_add(key, "ktest-peer-del")
        try:
            for name, field, value in (("flags", "flags", 1), ("name", "name", b"x")):
                peer = make_peer(key)
                setattr(peer, field, value)
                result = ioctl_outcome(dev.fd, uapi.POOL_IOC_PEER_DEL, ctypes.addressof(peer))
                doc[name] = {"result": result, "still_trusted": trusted()}
        finally:
            if trusted():
                dev.peer_del(key)
        doc["removed"] = not trusted()
    emit(doc)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="transport_probe.py")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("probe")
    p.add_argument("case", choices=["unknown", "wrongkey", "replay", "stale", "badpuzzle"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--peer-key", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--claim")
    p.add_argument("--pause", type=float, default=1.0, help="replay: seconds between original and replay")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("half-open")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--seconds", type=float, default=60)
    p.set_defaults(func=cmd_half_open)

    p = sub.add_parser("config-set")
    p.add_argument("--rekey-seconds", type=int)
    p.add_argument("--puzzle-difficulty", type=int)
    p.add_argument("--heartbeat-seconds", type=int)
    p.add_argument("--confirm-ms", type=int, default=600000)
    p.add_argument("--add-peer", help="a public key (base64) the new version trusts too")
    p.add_argument("--drop-peer", help="a public key (base64) the new version no longer trusts")
    p.set_defaults(func=cmd_config_set)

    p = sub.add_parser("config-restore")
    p.set_defaults(func=cmd_config_restore)

    p = sub.add_parser("seq-send")
    p.add_argument("--peer", required=True)
    p.add_argument("--channel", type=int, default=9)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--nonce", required=True)
    p.set_defaults(func=cmd_seq_send)

    p = sub.add_parser("seq-recv")
    p.add_argument("--peer", required=True)
    p.add_argument("--channel", type=int, default=9)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--nonce", required=True)
    p.add_argument("--stall", type=float, default=0.0)
    p.set_defaults(func=cmd_seq_recv)

    p = sub.add_parser("cycles")
    p.add_argument("host")
    p.add_argument("--peer", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--hold", type=float, default=0.0, help="seconds each session stays open")
    p.set_defaults(func=cmd_cycles)
    p = sub.add_parser("slow-writer")
    p.add_argument("host")
    p.add_argument("--peer", required=True)
    p.set_defaults(func=cmd_slow_writer)
    p = sub.add_parser("peer-del-strict")
    p.set_defaults(func=cmd_peer_del_strict)
    p = sub.add_parser("efault")
    p.add_argument("host")
    p.add_argument("--peer", required=True)
    p.add_argument("--port", type=int, default=0)
    p.set_defaults(func=cmd_efault)

    a = ap.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
