"""The worker's HTTP server: what every response carries, whichever PE serves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from pe.common.http import SECURITY_HEADERS, HttpError, HttpLimits, read_body
from pipelines.proxies import TrustedProxies
from pipelines.web import WebServer


async def _items(request: web.Request) -> web.Response:
    return web.json_response({"accepted": 1}, status=202)


async def test_every_response_has_the_security_headers_and_no_versions() -> None:
    server = WebServer(
        "127.0.0.1",
        0,
        [],
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


async def _whoami(request: web.Request) -> web.Response:
    """The client address every per-client limit keys on."""
    return web.json_response(request.remote)


async def _upload(request: web.Request) -> web.Response:
    try:
        body = await read_body(request, 1024)
    except HttpError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    return web.json_response({"size": len(body)})


@asynccontextmanager
async def _serving(
    limits: HttpLimits | None = None,
    host: str = "127.0.0.1",
    allowed_hosts: frozenset[str] = frozenset(),
    proxies: str = "",
) -> AsyncIterator[WebServer]:
    server = WebServer(
        host,
        0,
        [],
        [web.post("/upload", _upload), web.get("/whoami", _whoami)],
        CollectorRegistry(),
        lambda: {"ready": True},
        limits=limits,
        allowed_hosts=allowed_hosts,
        proxies=TrustedProxies.parse(proxies),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _health(port: int, source: str = "127.0.0.1") -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status


async def _closed(reader: asyncio.StreamReader, within_s: float) -> bool:
    """Whether the server closes the connection within ``within_s`` (what it sends
    before is read and dropped)."""
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def _trickle(port: int, within_s: float) -> bool:
    """Slowloris: a request head sent one byte every half second; whether the server
    closed the connection within ``within_s``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    try:
        for byte in head:
            writer.write(bytes([byte]))
            if await _closed(reader, min(0.5, end - loop.time())):
                return True
            if loop.time() >= end:
                return False
    finally:
        writer.close()
    return False


async def test_clients_that_send_a_request_head_slowly_are_disconnected() -> None:
    async with _serving(HttpLimits(read_timeout_s=1.0)) as server:
        closed = await asyncio.gather(*(_trickle(server.port, 8.0) for _ in range(10)))
        assert closed == [True] * 10
        assert await _health(server.port) == 200  # the server still answers


async def test_a_body_that_arrives_too_slowly_gets_408() -> None:
    async with _serving(HttpLimits(read_timeout_s=1.0)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")

        async def trickle() -> None:
            for _ in range(100):
                writer.write(b"x")
                await asyncio.sleep(0.3)

        sending = asyncio.create_task(trickle())
        try:
            async with asyncio.timeout(8.0):
                status_line = await reader.readline()
        finally:
            sending.cancel()
            writer.close()
        assert status_line.startswith(b"HTTP/1.1 408 ")


async def test_one_client_address_holds_a_bounded_number_of_connections() -> None:
    async with _serving(HttpLimits(connections_per_client=3)) as server:
        port = server.port
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 429 ") and b"too many connections" in answer
        assert await _health(port, source="127.0.0.2") == 200  # another address meanwhile
        held.pop()[1].close()
        await asyncio.sleep(0.1)
        assert await _health(port) == 200  # a closed connection frees its place
        for _, held_writer in held:
            held_writer.close()


async def _call(port: int, method: str, path: str, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, f"http://127.0.0.1:{port}{path}", data=b"{}", headers=headers) as r,
    ):
        return r.status


async def test_a_loopback_server_answers_to_addresses_localhost_and_allowed_names_only() -> None:
    """A page of another site whose name resolves to the worker (DNS rebinding)
    reads nothing."""
    async with _serving(allowed_hosts=frozenset({"crowd.example"})) as server:
        port = server.port
        for host, status in [
            ("evil.example", 421),
            (f"evil.example:{port}", 421),
            ("127.0.0.1", 200),
            (f"localhost:{port}", 200),
            (f"[::1]:{port}", 200),
            ("10.1.2.3:8000", 200),  # an address: a health check, Prometheus
            ("crowd.example", 200),
            (f"CROWD.example:{port}", 200),
        ]:
            assert await _call(port, "GET", "/healthz", {"Host": host}) == status, host
    async with _serving() as server:  # loopback names only
        assert await _call(server.port, "GET", "/healthz", {"Host": "crowd.example"}) == 421


async def test_a_server_listening_beyond_loopback_answers_any_name_unless_told() -> None:
    async with _serving(host="0.0.0.0") as server:  # noqa: S104
        assert await _call(server.port, "GET", "/healthz", {"Host": "any.example"}) == 200
    async with _serving(host="0.0.0.0", allowed_hosts=frozenset({"crowd.example"})) as server:  # noqa: S104
        assert await _call(server.port, "GET", "/healthz", {"Host": "any.example"}) == 421
        assert await _call(server.port, "GET", "/healthz", {"Host": "crowd.example"}) == 200


async def test_requests_from_pages_of_other_sites_are_refused() -> None:
    async with _serving(allowed_hosts=frozenset({"crowd.example"})) as server:
        port = server.port
        for origin, status in [
            ("https://evil.example", 403),
            ("null", 403),  # a sandboxed page
            (f"http://localhost:{port}", 403),  # another name than the request's Host
            (f"http://127.0.0.1:{port + 1}", 403),  # another port, another site
            (f"http://127.0.0.1:{port}", 200),  # this server's own page
            ("https://crowd.example", 200),  # an allowed name, behind a proxy
        ]:
            headers = {"Origin": origin, "Host": f"127.0.0.1:{port}"}
            assert await _call(port, "POST", "/upload", headers) == status, origin
        assert await _call(port, "POST", "/upload", {}) == 200  # no Origin: not a browser


async def _whoami_from(port: int, source: str, headers: dict[str, str]) -> str:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"http://127.0.0.1:{port}/whoami", headers=headers) as response,
    ):
        return str(await response.json())


async def test_behind_a_trusted_proxy_the_client_is_the_one_it_names_and_nobody_else_can() -> None:
    async with _serving(HttpLimits(connections_per_client=2), proxies="127.0.0.1") as server:
        port = server.port
        forwarded = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
        assert await _whoami_from(port, "127.0.0.1", forwarded) == "203.0.113.7"
        rfc = {"Forwarded": 'for="[2001:db8::1]:4711";proto=https', **forwarded}
        assert await _whoami_from(port, "127.0.0.1", rfc) == "2001:db8::1"
        # Another peer writing the header is not believed.
        assert await _whoami_from(port, "127.0.0.2", forwarded) == "127.0.0.2"
        # The proxy carries many people's connections: no cap on it.
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        assert await _health(port) == 200
        for _, writer in held:
            writer.close()


def test_the_client_is_the_right_most_address_no_trusted_proxy_added() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8, 192.0.2.1")
    client = proxies.client
    assert client("198.51.100.1", [], ["203.0.113.7"]) == "198.51.100.1"  # not a proxy
    assert client("10.1.2.3", [], ["203.0.113.7, 10.9.9.9"]) == "203.0.113.7"
    # Left of the first untrusted address the chain may be made up.
    assert client("10.1.2.3", [], ["6.6.6.6", "203.0.113.7"]) == "203.0.113.7"
    assert client("192.0.2.1", ["192.0.2.60:8080"], ["203.0.113.7"]) == "192.0.2.60"
    assert client("10.1.2.3", [], ["10.0.0.5, 10.0.0.6"]) == "10.0.0.5"  # all proxies
    assert client("10.1.2.3", ["unknown"], []) == "10.1.2.3"  # names nobody
    assert client("10.1.2.3", [], []) == "10.1.2.3"
    assert not TrustedProxies.parse("").trusts("127.0.0.1")
    with pytest.raises(ValueError, match="'proxy.example' is not an address or network"):
        TrustedProxies.parse("10.0.0.1, proxy.example")
