"""JSON documents (docs/poolctl-json.md) and human tables for kernel objects."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pooltools.kernel import uapi
from pooltools.kernel.journal import ZERO_KEY, Entry, code_name, type_name
from pooltools.kernel.netaddr import format_endpoint
from pooltools.protocol.address import format_address
from pooltools.protocol.keys import encode_key


def key_or_none(raw: bytes) -> str | None:
    raw = bytes(raw)
    return None if raw == ZERO_KEY else encode_key(raw)


def identity_doc(ident: uapi.PoolIdentity) -> dict[str, object]:
    is_set = bool(ident.flags & uapi.POOL_IDENTITY_SET)
    return {
        "set": is_set,
        "public_key": encode_key(bytes(ident.public_key)) if is_set else None,
        "address": format_address(bytes(ident.address)) if is_set else None,
        "org_id": ident.org_id,
        "segment_id": ident.segment_id,
    }


def peer_doc(p: uapi.PoolPeer) -> dict[str, object]:
    return {
        "name": p.name.decode(errors="replace"),
        "public_key": encode_key(bytes(p.public_key)),
        "address": format_address(bytes(p.address)) if bytes(p.address) != bytes(32) else None,
        "endpoint": format_endpoint(bytes(p.endpoint_addr), p.endpoint_port),
        "active_sessions": p.active_sessions,
        "last_handshake_ns": p.last_handshake_ns,
        "handshakes": p.handshakes,
        "auth_failures": p.auth_failures,
    }


def telemetry_doc(t: uapi.PoolTelemetry) -> dict[str, int]:
    return {
        "rtt_ns": t.rtt_ns,
        "jitter_ns": t.jitter_ns,
        "loss_rate_ppm": t.loss_rate_ppm,
        "throughput_bps": t.throughput_bps,
        "mtu": t.mtu,
        "queue_depth": t.queue_depth,
        "rekey_count": t.rekey_count,
        "uptime_ns": t.uptime_ns,
        "config_version": t.config_version,
    }


def state_name(s: int) -> str:
    try:
        return uapi.SessionState(s).name.lower()
    except ValueError:
        return f"state{s}"


def role_name(r: int) -> str:
    return {uapi.POOL_ROLE_INITIATOR: "initiator", uapi.POOL_ROLE_RESPONDER: "responder"}.get(r, f"role{r}")


def session_doc(s: uapi.PoolSessionInfo, names: dict[bytes, str]) -> dict[str, object]:
    key = bytes(s.peer_public_key)
    return {
        "index": s.index,
        "state": state_name(s.state),
        "role": role_name(s.role),
        "channel": s.channel,
        "session_id": bytes(s.session_id).hex(),
        "peer_public_key": encode_key(key),
        "peer_name": names.get(key),
        "peer_endpoint": format_endpoint(bytes(s.peer_addr), s.peer_port),
        "local_port": s.local_port,
        "epoch": s.epoch,
        "established_ns": s.established_ns,
        "bytes_sent": s.bytes_sent,
        "bytes_recv": s.bytes_recv,
        "packets_sent": s.packets_sent,
        "packets_recv": s.packets_recv,
        "heartbeats_sent": s.heartbeats_sent,
        "heartbeats_recv": s.heartbeats_recv,
        "dropped": s.dropped,
        "rx_queue": s.rx_queue,
        "fds": s.fds,
        "telemetry": {"local": telemetry_doc(s.local), "peer": telemetry_doc(s.peer)},
    }


def entry_doc(e: Entry) -> dict[str, object]:
    return {
        "seq": e.seq,
        "timestamp_ns": e.timestamp_ns,
        "type": type_name(e.type),
        "type_code": e.type,
        "code": e.code,
        "code_name": code_name(e.code),
        "config_version": e.config_version,
        "peer_public_key": key_or_none(e.peer_public_key),
        "prev_hash": e.prev_hash.hex(),
        "hash": e.hash.hex(),
        "detail": e.detail.decode(errors="backslashreplace"),
    }


def config_doc(c: uapi.PoolConfig) -> dict[str, object]:
    return {
        "version": c.version,
        "tentative": bool(c.flags & uapi.POOL_CONFIG_TENTATIVE),
        "has_prev": bool(c.flags & uapi.POOL_CONFIG_HAS_PREV),
        "hash": bytes(c.hash).hex(),
        "prev_version": c.prev_version,
        "prev_hash": bytes(c.prev_hash).hex(),
        "deadline_ns": c.deadline_ns,
        "heartbeat_seconds": c.heartbeat_seconds,
        "rekey_seconds": c.rekey_seconds,
        "rekey_packets": c.rekey_packets,
        "puzzle_difficulty": c.puzzle_difficulty,
        "max_sessions": c.max_sessions,
        "peer_count": c.peer_count,
    }


# ---- human output


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(r[i], int) for r in rows) and bool(rows) for i in range(len(headers))]
    out = []
    for r in cells:
        parts = [c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def ago(ns: int) -> str:
    if not ns:
        return "never"
    secs = max(0, time.time() - ns / 1e9)
    if secs < 120:
        return f"{secs:.0f}s ago"
    if secs < 7200:
        return f"{secs / 60:.0f}m ago"
    if secs < 172800:
        return f"{secs / 3600:.0f}h ago"
    return f"{secs / 86400:.0f}d ago"


def iso(ns: int) -> str:
    if not ns:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}Z"


def duration(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f}us"
    if ns < 10_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.0f}s"


def human_bytes(n: int) -> str:
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.0f}{unit}" if unit == "B" else f"{v:.1f}{unit}"
        v /= 1024
    return f"{n}B"
