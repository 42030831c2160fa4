"""sd_notify(3) over $NOTIFY_SOCKET with the standard library (no python-systemd)."""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str, env: dict[str, str] | None = None) -> bool:
    """Send "READY=1", "STATUS=..." etc. Returns False when not run by systemd (no socket)."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall("\n".join(fields).encode())
    except OSError:
        return False
    return True


def reloading() -> tuple[str, str]:
    """RELOADING=1 with the MONOTONIC_USEC that systemd >= 253 expects next to it."""
    return "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
