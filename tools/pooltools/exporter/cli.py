"""pool_exporter: serve pool.ko's metrics to Prometheus (pool_exporter(8), docs/exporter.md).

The command line; the HTTP side is pooltools.exporter.server, imported once the arguments are
good so that a node without prometheus_client gets a message naming Debian's package.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pooltools import __version__
from pooltools.common.cli import Parser, UsageError
from pooltools.kernel.device import DEVICE_PATH, EXIT_FAILURE, Device

PROG = "pool_exporter"
DEFAULT_LISTEN = "127.0.0.1:9254"
# The services' status files (pooltools.exporter.services reads them; kept here so that the
# arguments parse without prometheus_client).
VAULT_STATUS = Path("/run/pool-vault/status.json")
RELAY_STATUS = Path("/run/pool-relay/status.json")


def listen_arg(text: str) -> tuple[str, int]:
    """'ADDRESS:PORT' or '[IPv6]:PORT' -> (address, port)."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)") from None
    if not sep or not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1-65535")
    return host, number


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Serve pool.ko's state as Prometheus metrics on /metrics, its health on /health.")
    p.add_argument("--listen", type=listen_arg, default=listen_arg(DEFAULT_LISTEN), metavar="ADDRESS:PORT",
                   help=f"where to serve (default {DEFAULT_LISTEN}; IPv6 as [ADDRESS]:PORT)")  # fmt: skip
    p.add_argument("--device", default=DEVICE_PATH, help=f"pool.ko's device (default {DEVICE_PATH})")
    p.add_argument("--vault-status", type=Path, default=VAULT_STATUS, metavar="FILE",
                   help=f"pool_vault's status file (default {VAULT_STATUS})")  # fmt: skip
    p.add_argument("--relay-status", type=Path, default=RELAY_STATUS, metavar="FILE",
                   help=f"pool_relay's status file (default {RELAY_STATUS})")  # fmt: skip
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def main(argv: Sequence[str] | None = None, device_factory: Callable[[], Any] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    factory = device_factory or (lambda: Device(args.device))
    try:
        from pooltools.exporter.server import make_server
        from pooltools.exporter.services import ServicesCollector
    except ModuleNotFoundError as exc:
        if exc.name != "prometheus_client":
            raise
        print(f"{PROG}: needs the 'prometheus_client' package (Debian: python3-prometheus-client)", file=sys.stderr)
        return EXIT_FAILURE
    try:
        server = make_server(args.listen, factory, ServicesCollector(args.vault_status, args.relay_status))
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{PROG}: serving /metrics and /health on {args.listen[0]}:{args.listen[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
