"""Endpoints as the UAPI carries them: 16-byte IPv6 (IPv4 as ::ffff:a.b.c.d) and a port."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_V6 = re.compile(r"\[([^\]]+)\]:(\d+)")
_V4 = re.compile(r"([^:\[\]]+):(\d+)")


@dataclass(frozen=True)
class Endpoint:
    addr: bytes  # 16 bytes
    port: int

    def __str__(self) -> str:
        return format_endpoint(self.addr, self.port) or ""


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """'10.0.0.1:9253', '[fd00::1]:9253' (or a bare address with default_port); ValueError if bad."""
    t = text.strip()
    m = _V6.fullmatch(t) or _V4.fullmatch(t)
    if m:
        host, port = m.group(1), int(m.group(2))
        if not 1 <= port <= 65535:
            raise ValueError(f"endpoint {text!r}: port must be 1-65535")
    elif default_port is not None:
        host, port = t.strip("[]"), default_port  # may be 0: the module's default port
    else:
        raise ValueError(f"endpoint {text!r} is not address:port (IPv6 as [addr]:port)")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"endpoint {text!r}: {host!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv4Address):
        raw = ipaddress.IPv6Address("::ffff:" + str(ip)).packed
    else:
        if ip.scope_id:
            raise ValueError(f"endpoint {text!r}: scoped (link-local) addresses are not supported here")
        raw = ip.packed
    return Endpoint(raw, port)


def format_endpoint(addr: bytes, port: int) -> str | None:
    """Text form, or None when port is 0 (no endpoint)."""
    if not port:
        return None
    ip = ipaddress.IPv6Address(bytes(addr))
    if ip.ipv4_mapped is not None:
        return f"{ip.ipv4_mapped}:{port}"
    return f"[{ip}]:{port}"


def format_addr(addr: bytes) -> str:
    ip = ipaddress.IPv6Address(bytes(addr))
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
