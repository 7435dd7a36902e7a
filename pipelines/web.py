"""The worker's HTTP server: PE routes (``POST /items``), ``/metrics``, ``/healthz``.

Faust's own web server stays off: its ``/table`` endpoints would serve table data.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pe.common.http import SECURITY_HEADERS

__all__ = ["WebServer", "check_port_free"]

log = logging.getLogger(__name__)


def check_port_free(host: str, port: int) -> None:
    """Raise ValueError with advice if ``host:port`` cannot be bound now."""
    if port == 0:
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc})"
            msg = f"HTTP port {port} on {host} {why}: choose another with --http-port"
            raise ValueError(msg) from None


async def _harden(request: web.Request, response: web.StreamResponse) -> None:
    """Every response: the security headers (unless it set its own), and a Server
    header that names no versions."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = "crowdstream"


class WebServer(Service):
    """Serves the routes until the worker stops."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: list[web.RouteDef],
        registry: CollectorRegistry,
        health: Callable[[], dict[str, Any]],
        closing: list[Callable[[], None]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._closing = closing or []
        self.host = host
        self.port = port
        self._registry = registry
        self._health = health
        self._app = web.Application(client_max_size=64 * 1024 * 1024)
        self._app.on_response_prepare.append(_harden)
        self._app.add_routes(
            [*routes, web.get("/metrics", self._metrics), web.get("/healthz", self._healthz)]
        )
        self._runner = web.AppRunner(self._app, access_log=None)

    async def on_start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])  # the real port when 0 was asked
        log.info("HTTP on http://%s:%d (metrics at /metrics)", self.host, self.port)

    async def on_stop(self) -> None:
        # Long-lived responses (task streams) end first, or cleanup waits for them.
        for close in self._closing:
            close()
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        state = self._health()
        return web.json_response(state, status=200 if state["ready"] else 503)
