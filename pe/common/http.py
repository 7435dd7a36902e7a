"""Request helpers shared by the worker's HTTP endpoints: bounded bodies, bearer tokens,
and the limits of the worker's HTTP server."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from config import Settings

__all__ = [
    "LIMITS",
    "MIN_BODY_RATE",
    "SECURITY_HEADERS",
    "HttpError",
    "HttpLimits",
    "OperatorAccess",
    "TokenAccess",
    "bearer",
    "check_bearer",
    "is_loopback",
    "limits",
    "read_body",
    "ready_or_503",
    "require_json",
    "static_asset",
]

#: Sent with every response of a worker's HTTP server (pipelines.web adds them to
#: those that do not set their own).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def ready_or_503(ready: asyncio.Event, timeout_s: float, what: str) -> None:
    """Wait up to ``timeout_s`` for ``ready`` (a log read to its end by a starting
    worker), else refuse the call with 503: an answer from half a log is wrong."""
    try:
        await asyncio.wait_for(asyncio.shield(ready.wait()), timeout_s)
    except TimeoutError:
        raise HttpError(503, f"this worker is still reading {what}: try again shortly") from None


def static_asset(package: str, name: str, content_type: str) -> web.Response:
    """A page or asset shipped in ``package``'s ``static`` folder, with the security
    headers, revalidated at each load (a new version shows at once)."""
    body = resources.files(package).joinpath("static", name).read_bytes()
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


#: Bytes a second a request body must arrive at, on average, once the read timeout has
#: passed: a big body on a slow link gets the time it needs, a trickle does not.
MIN_BODY_RATE = 64 * 1024


@dataclass(frozen=True)
class HttpLimits:
    """How long the worker's HTTP server waits for its clients, and how many
    connections one client address may hold."""

    #: For a request's head on a new connection, and for its body (plus the time
    #: the body needs at MIN_BODY_RATE).
    read_timeout_s: float = 30.0
    #: For a client to take what an event stream sends it.
    write_timeout_s: float = 30.0
    connections_per_client: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            read_timeout_s=settings.http_read_timeout_s,
            write_timeout_s=settings.http_write_timeout_s,
            connections_per_client=settings.http_connections_per_client,
        )


#: The server's limits, in its application (pipelines.web); the defaults elsewhere.
LIMITS = web.AppKey("limits", HttpLimits)
_DEFAULT_LIMITS = HttpLimits()


def limits(request: web.Request) -> HttpLimits:
    return request.config_dict.get(LIMITS, _DEFAULT_LIMITS)


class HttpError(Exception):
    """A request refused with an HTTP status and a message for the caller."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **fields: Any
    ) -> None:
        """``fields`` go into the answer's body beside ``error`` (None ones left out):
        ``details``, ``reason`` (pe.common.openapi.ErrorBody), or an endpoint's own."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.fields = {name: value for name, value in fields.items() if value is not None}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body; 413 past ``limit`` bytes, checked before and while reading
    (a chunked body has no length up front); 408 when it arrives too slowly."""
    if (request.content_length or 0) > limit:
        raise HttpError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    timeout_s = limits(request).read_timeout_s
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                chunk = await request.content.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body larger than {limit} bytes")
            deadline += len(chunk) / MIN_BODY_RATE
    except TimeoutError:
        msg = (
            f"request body too slow: send it within {timeout_s:g} s plus a second "
            f"per {MIN_BODY_RATE // 1024} KiB"
        )
        raise HttpError(408, msg) from None
    return b"".join(chunks)


def require_json(request: web.Request) -> None:
    """415 unless the body is declared JSON: a page of another site can send a form or
    ``text/plain`` without the browser asking the server first, never JSON."""
    if request.content_type != "application/json":
        raise HttpError(415, "send the body as JSON, with Content-Type: application/json")


def bearer(request: web.Request) -> str:
    """The ``Authorization: Bearer`` token; 401 when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(401, "missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


def check_bearer(request: web.Request, expected: str, name: str) -> None:
    """401 unless the request's bearer token is ``expected`` (its ``name`` says which)."""
    if not hmac.compare_digest(bearer(request).encode(), expected.encode()):
        raise HttpError(401, f"wrong {name}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is loopback."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OperatorAccess:
    """Who may call the operator endpoints (the jobs API and the crowd's
    ``/api/v1/operator`` calls): one rule for all of them.

    With ``operator_token``, whoever sends it as the bearer token. Without, anyone
    who reaches a server that listens on loopback only: people on that machine, who
    can reach its broker and write jobs there too (pages of other sites are kept out
    by the server's Host and Origin rules, pipelines.hosts). On a server that
    listens beyond loopback, nobody.
    """

    token: str | None
    loopback_only: bool  #: the HTTP server listens on a loopback address only

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorAccess:
        token = settings.operator_token
        return cls(
            token.get_secret_value() if token is not None else None,
            is_loopback(settings.http_host),
        )

    scheme: ClassVar[str] = "operatorToken"
    refusals: ClassVar[tuple[int, ...]] = (401, 403)

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.loopback_only

    def check(self, request: web.Request) -> str:
        if self.token is not None:
            check_bearer(request, self.token, "operator token")
        elif not self.loopback_only:
            raise HttpError(
                403,
                "operator endpoints are disabled on a server that listens beyond loopback "
                "without a token: set operator_token (CROWDSTREAM_OPERATOR_TOKEN)",
            )
        return "operator"


@dataclass(frozen=True)
class TokenAccess:
    """Whoever sends ``token`` as the bearer token, or an ``operator`` (the console
    reads what consumers read with the operator's credential); anyone when ``token``
    is None."""

    token: str | None
    name: str  #: what the token is called in a refusal
    security: str  #: its OpenAPI security scheme
    operator: OperatorAccess | None = None

    @property
    def scheme(self) -> str | None:
        return self.security if self.token is not None else None

    @property
    def refusals(self) -> tuple[int, ...]:
        return (401,) if self.token is not None else ()

    def check(self, request: web.Request) -> str:
        if self.token is None:
            return ""
        try:
            check_bearer(request, self.token, self.name)
        except HttpError:
            if self.operator is None or not self.operator.enabled:
                raise
            try:
                return self.operator.check(request)
            except HttpError:
                raise HttpError(401, f"wrong {self.name} (or operator token)") from None
        return ""
