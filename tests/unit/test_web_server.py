"""The worker's HTTP server: what every response carries, whichever PE serves it."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from pe.common.http import SECURITY_HEADERS
from pipelines.web import WebServer


async def _items(request: web.Request) -> web.Response:
    return web.json_response({"accepted": 1}, status=202)


async def test_every_response_has_the_security_headers_and_no_versions() -> None:
    server = WebServer(
        "127.0.0.1",
        0,
        [web.post("/items", _items)],
        CollectorRegistry(),
        lambda: {"ready": True},
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as client:
            base = f"http://127.0.0.1:{server.port}"
            for method, path in [
                ("GET", "/metrics"),
                ("GET", "/healthz"),
                ("POST", "/items"),
                ("GET", "/no-such-page"),  # errors too
            ]:
                async with client.request(method, base + path) as response:
                    for name, value in SECURITY_HEADERS.items():
                        assert response.headers.get(name) == value, (path, name)
                    assert response.headers["Server"] == "crowdstream", path
    finally:
        await server.stop()
