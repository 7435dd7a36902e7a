"""Server-sent event streams for the worker's HTTP endpoints (crowd tasks, results).

Kept rather than aiohttp-sse: a stream here must drop a client that takes nothing
for the write timeout (else it holds a stream slot for good) and call back on each
ping (a web worker's heartbeat); aiohttp-sse pings from a task of its own with no
hook and writes without a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pe.common.http import limits

__all__ = ["Event", "event_stream"]

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies must not hold events back
}


@dataclass(frozen=True)
class Event:
    name: str
    data: Any
    id: str | None = None  #: sent as the event id, so a client can resume after it

    def encode(self) -> bytes:
        head = b""
        # An id with a line break would end the field early: such events go without one.
        if self.id is not None and not any(c in self.id for c in "\r\n\0"):
            head = b"id: %s\n" % self.id.encode()
        return head + b"event: %s\ndata: %s\n\n" % (self.name.encode(), orjson.dumps(self.data))


async def event_stream(
    request: web.Request,
    next_event: Callable[[], Awaitable[Event | None]],
    *,
    ping_s: float,
    on_ping: Callable[[], None] | None = None,
    ends: tuple[type[BaseException], ...] = (),
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send events from ``next_event`` until it gives ``None`` or the client leaves.

    A comment line every ``ping_s`` idle seconds keeps proxies from closing the
    connection (and calls ``on_ping``); an exception in ``ends`` ends the stream. A
    client that takes nothing for the server's write timeout while sends wait is
    dropped: it would hold its connection, and a stream slot, for good.
    """
    caught: tuple[type[BaseException], ...] = (ConnectionError, *ends)
    response = web.StreamResponse(headers={**(headers or {}), **SSE_HEADERS})
    await response.prepare(request)
    write_s = limits(request).write_timeout_s

    async def send(data: bytes) -> None:
        # A write waits only when the connection's buffers are full.
        async with asyncio.timeout(write_s):
            await response.write(data)

    try:
        await send(b"retry: 2000\n\n")
        while True:
            try:
                event = await asyncio.wait_for(next_event(), timeout=ping_s)
            except TimeoutError:
                await send(b": ping\n\n")
                if on_ping is not None:
                    on_ping()
                continue
            if event is None:
                break
            await send(event.encode())
    except caught:
        pass  # the client went away, or the source ended the stream
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()  # what is queued for it will never be read
    return response
