"""pool_exporter's HTTP side: GET /metrics answers the metrics in Prometheus' text format, read
from the device on every scrape, or HTTP 500 naming why pool.ko could not be read; GET /health
answers "ok", or the same reason with 500. Nothing else is served.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pooltools import __version__
from pooltools.exporter.cli import PROG
from pooltools.exporter.metrics import PoolCollector
from pooltools.exporter.services import ServicesCollector
from pooltools.kernel.device import PoolError

TEXT = "text/plain; charset=utf-8"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, health: Callable[[], None]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.health = health
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = f"{PROG}/{__version__}"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/metrics", "/health"):
            self.answer(HTTPStatus.NOT_FOUND, b"not found: use /metrics or /health\n")
            return
        try:
            if path == "/metrics":
                body, content_type = generate_latest(self.server.registry), CONTENT_TYPE_LATEST
            else:
                self.server.health()
                body, content_type = b"ok\n", TEXT
        except PoolError as exc:
            self.answer(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot read pool.ko: {exc}\n".encode())
            return
        self.answer(HTTPStatus.OK, body, content_type)

    def answer(self, status: HTTPStatus, body: bytes, content_type: str = TEXT) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Scrapes every few seconds would flood the journal; errors are in the answers.
        return


def make_server(
    listen: tuple[str, int], device_factory: Callable[[], Any], services: ServicesCollector | None = None
) -> Server:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(device_factory))
    registry.register(services or ServicesCollector())

    def health() -> None:
        with device_factory() as dev:
            dev.stats()

    return Server(listen, registry, health)
