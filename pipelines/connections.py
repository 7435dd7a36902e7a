"""The connections of a worker's HTTP server: a cap per client address, and a deadline
for a new connection's first request.

aiohttp bounds the wait for a request after a response (``keepalive_timeout``), but
its releases up to 3.14.3 (crowdstream takes 3.9 on) wait forever for a connection's
first request, and none caps connections per client: ten clients sending one byte
every few seconds (slowloris) held their sockets for good. aiohttp offers no hook at
accept time, so the server's protocol factory is wrapped: each connection is handed
to aiohttp's protocol unless its client already holds ``per_client`` open, and closed
when its first request has not started within the deadline (:func:`request_started`
marks it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import cast

import orjson
from aiohttp import web

__all__ = ["ClientConnections", "request_started"]


def _refusal(per_client: int) -> bytes:
    body = orjson.dumps({"error": f"too many connections from your address (at most {per_client})"})
    head = (
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class ClientConnections:
    """The protocol factory of the listening socket: one :class:`_Connection` per
    accepted connection, around the protocol ``server`` makes."""

    def __init__(
        self,
        server: Callable[[], asyncio.Protocol],
        per_client: int,
        first_request_s: float,
        uncapped: Callable[[str], bool] = lambda _: False,
    ) -> None:
        """``uncapped(address)``: whether a client may hold any number of connections
        (a trusted reverse proxy carries many people's)."""
        self.server = server
        self.uncapped = uncapped
        self.per_client = per_client
        self.first_request_s = first_request_s
        self.refusal = _refusal(per_client)
        #: Open connections per client address.
        self.open: Counter[str] = Counter()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)


class _Connection(asyncio.Protocol):
    def __init__(self, owner: ClientConnections) -> None:
        self._owner = owner
        self._inner: asyncio.Protocol | None = None
        self._client = ""
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self._owner
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "local"
        if owner.open[client] >= owner.per_client and not owner.uncapped(client):
            cast(asyncio.WriteTransport, transport).write(owner.refusal)
            transport.close()
            return
        owner.open[client] += 1
        self._client = client
        self._deadline = asyncio.get_running_loop().call_later(
            owner.first_request_s, transport.close
        )
        self._inner = owner.server()
        self._inner.connection_made(transport)

    def started(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return  # refused: never counted
        self.started()
        owner = self._owner
        owner.open[self._client] -= 1
        if owner.open[self._client] <= 0:
            del owner.open[self._client]
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def request_started(request: web.Request) -> None:
    """The connection of ``request`` has sent a request head: its deadline is over
    (from now on aiohttp's keep-alive timeout bounds the wait between requests)."""
    transport = request.transport
    connection = transport.get_protocol() if transport is not None else None
    if isinstance(connection, _Connection):
        connection.started()
