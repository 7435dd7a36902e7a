"""The worker's HTTP server: the PEs' API (``POST /items``, the crowd, jobs and results
endpoints, and their OpenAPI document: pe.common.api), their pages, ``/metrics``,
``/healthz``.

Faust's own web server stays off: its ``/table`` endpoints would serve table data.
Connections are capped per client and must start a request in time
(pipelines.connections); bodies and event streams have their own timeouts
(pe.common.http.HttpLimits); requests must name this server and come from no other
site's page (pipelines.hosts).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pe.common.api import Endpoint, api_routes, refusal
from pe.common.http import LIMITS, SECURITY_HEADERS, HttpError, HttpLimits
from pipelines.connections import ClientConnections, request_started
from pipelines.hosts import HostRules
from pipelines.proxies import TrustedProxies

__all__ = ["WebServer", "check_port_free"]

log = logging.getLogger(__name__)

#: Idle time after a response before aiohttp closes a kept-alive connection (a request
#: begun but not finished by then included). Longer than the 60 s a proxy's pool
#: commonly keeps an idle connection, so a proxy never reuses one that is closing.
KEEPALIVE_S = 75.0
#: Connections the kernel queues before the server accepts them (it caps this at
#: net.core.somaxconn). aiohttp's 128 overflowed with a few hundred crowd workers
#: behind a proxy that opens a connection per request: each dropped SYN is retried
#: after a second, a second added to that request (bench/crowd_load.py).
LISTEN_BACKLOG = 2048


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


def _checks(rules: HostRules, proxies: TrustedProxies) -> Middleware:
    """Before every handler: the connection has started a request; Host and Origin
    are this server's; behind a trusted proxy, the request's ``remote`` is the client
    the proxy names (pipelines.proxies), for every per-client limit."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_started(request)
        try:
            rules.check(request.headers.get("Host"), request.headers.get("Origin"))
        except HttpError as exc:
            return refusal(exc)
        if proxies.networks:
            client = proxies.client(
                request.remote,
                [str(element["for"]) for element in request.forwarded if "for" in element],
                request.headers.getall("X-Forwarded-For", []),
            )
            if client is not None and client != request.remote:
                request = request.clone(remote=client)
        return await handler(request)

    return check


class WebServer(Service):
    """Serves the routes until the worker stops."""

    def __init__(
        self,
        host: str,
        port: int,
        endpoints: list[Endpoint],
        routes: list[web.RouteDef],
        registry: CollectorRegistry,
        health: Callable[[], dict[str, Any]],
        closing: list[Callable[[], None]] | None = None,
        limits: HttpLimits | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
        proxies: TrustedProxies | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._closing = closing or []
        self.host = host
        self.port = port
        self._registry = registry
        self._health = health
        self._limits = limits or HttpLimits()
        rules = HostRules.create(host, allowed_hosts)
        self._proxies = proxies or TrustedProxies()
        self._app = web.Application(
            client_max_size=64 * 1024 * 1024, middlewares=[_checks(rules, self._proxies)]
        )
        self._app[LIMITS] = self._limits
        self._app.on_response_prepare.append(_harden)
        self._app.add_routes(
            [
                *api_routes(endpoints),
                *routes,
                web.get("/metrics", self._metrics),
                web.get("/healthz", self._healthz),
            ]
        )
        self._runner = web.AppRunner(self._app, access_log=None, keepalive_timeout=KEEPALIVE_S)
        self._listener: asyncio.Server | None = None

    async def on_start(self) -> None:
        await self._runner.setup()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the HTTP runner has no server after its setup")
        connections = ClientConnections(
            server,
            self._limits.connections_per_client,
            self._limits.read_timeout_s,
            self._proxies.trusts,
        )
        # Listening here rather than through a TCPSite: its protocol factory is fixed.
        self._listener = await asyncio.get_running_loop().create_server(
            connections, self.host, self.port, backlog=LISTEN_BACKLOG
        )
        for sock in self._listener.sockets:
            self.port = int(sock.getsockname()[1])  # the real port when 0 was asked
        log.info("HTTP on http://%s:%d (metrics at /metrics)", self.host, self.port)

    async def on_stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
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
