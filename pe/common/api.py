"""The worker's HTTP API, declared once.

Every endpoint of every PE (the collector's ``POST /items``, the crowd, the jobs, the
results) is an :class:`Endpoint`: its path, who may call it (:class:`Access`), the
models of its body, query and answer. :func:`api_routes` builds the aiohttp routes
and the one OpenAPI document (``/api/v1/openapi.json``, pe.common.openapi) from the
same declarations, so every endpoint checks, refuses and documents the same way:
errors are ``{"error": ..., "details": [...]}`` with a 4xx, bodies are read within
their limit and their time, queries are validated, unknown parameters refused.

Kept rather than a library: aiohttp-pydantic validates and documents class-based
views, but has no access rules, bounded body reads or rate limits, and answers errors
as a bare list; FastAPI would add a second server stack (Starlette and an ASGI
server) beside the aiohttp one Faust brings, without the per-client connection caps
of pipelines.connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from pe.common.http import SECURITY_HEADERS, HttpError, read_body, require_json
from pe.common.openapi import openapi_document
from pe.common.ratelimit import RateLimiter

__all__ = [
    "OPEN",
    "OPENAPI_PATH",
    "Access",
    "Body",
    "Call",
    "Endpoint",
    "Limited",
    "api_routes",
    "refusal",
]

OPENAPI_PATH = "/api/v1/openapi.json"


class Access(Protocol):
    """Who may call an endpoint."""

    @property
    def scheme(self) -> str | None:
        """The OpenAPI security scheme (a bearer token) it checks; None when open."""

    @property
    def refusals(self) -> tuple[int, ...]:
        """The statuses :meth:`check` refuses with."""

    def check(self, request: web.Request) -> str:
        """The caller (a worker id, ``operator``, or empty), else HttpError."""


class _Open:
    scheme = None
    refusals = ()

    def check(self, request: web.Request) -> str:
        return ""


#: Anyone.
OPEN: Access = _Open()


def address(request: web.Request) -> str:
    return request.remote or "unknown"


def retry_after(limiter: RateLimiter, key: str) -> None:
    """429 with ``Retry-After`` once ``key`` has used up its requests."""
    wait = limiter.check(key)
    if wait > 0:
        headers = {"Retry-After": str(max(int(wait + 0.999), 1))}
        raise HttpError(429, "too many requests: slow down", headers)


@dataclass(frozen=True)
class Limited:
    """``inner``'s rule, after a per-client-address rate limit."""

    inner: Access
    limiter: RateLimiter

    @property
    def scheme(self) -> str | None:
        return self.inner.scheme

    @property
    def refusals(self) -> tuple[int, ...]:
        return (*self.inner.refusals, 429)

    def check(self, request: web.Request) -> str:
        retry_after(self.limiter, address(request))
        return self.inner.check(request)


@dataclass(frozen=True)
class Body:
    """What an endpoint reads from its request body, at most ``limit`` bytes."""

    model: type[BaseModel] | None  #: None: the bytes, for the endpoint to parse
    limit: int
    #: Media types it takes; a model's body must be declared ``application/json``.
    media: tuple[str, ...] = ("application/json",)


@dataclass
class Call:
    """One request, checked: its caller, and its body and query as their models."""

    request: web.Request
    caller: str = ""
    body: Any = None
    query: Any = None


Result = BaseModel | web.StreamResponse | None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    operation: str  #: the OpenAPI operationId
    summary: str
    run: Callable[[Call], Awaitable[Result]]
    access: Access = OPEN
    body: Body | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()  #: statuses ``run`` refuses with
    stream: bool = False  #: answers with server-sent events
    tag: str = ""  #: the OpenAPI tag that groups it

    @property
    def responses(self) -> tuple[int, ...]:
        """Every status this endpoint can answer with."""
        codes = {self.status, *self.access.refusals, *self.errors}
        if self.body is not None:
            codes |= {400, 408, 413}
            if self.body.model is not None:
                codes |= {415, 422}
        if self.query is not None:
            codes.add(400)
        return tuple(sorted(codes))


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def refusal(exc: HttpError) -> web.Response:
    """The answer to a refused request: its status, ``{"error", ...}`` and headers."""
    return _json(exc.status, {"error": exc.message, **exc.fields}, exc.headers)


def _details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"]}
        for error in exc.errors()[:20]
    ]


def _message(exc: ValidationError, whole: str) -> str:
    """The first errors, each after its field (``whole`` names a model-wide one)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or whole
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


async def _body(spec: Body, request: web.Request) -> Any:
    if spec.model is None:
        return await read_body(request, spec.limit)
    require_json(request)
    raw = await read_body(request, spec.limit)
    try:
        return spec.model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "json_invalid":
                raise HttpError(400, f"invalid JSON: {error['ctx']['error']}") from None
        raise HttpError(422, _message(exc, "body"), details=_details(exc)) from None


def _query(model: type[BaseModel], request: web.Request) -> BaseModel:
    params = request.query
    unknown = set(params) - set(model.model_fields)
    if unknown:
        names = ", ".join(sorted(unknown))
        known = ", ".join(model.model_fields) or "none"
        raise HttpError(400, f"unknown parameter(s): {names}; known: {known}")
    try:
        return model.model_validate({name: params.getone(name) for name in params})
    except ValidationError as exc:
        raise HttpError(400, _message(exc, "query"), details=_details(exc)) from None


def _handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            call = Call(request, endpoint.access.check(request))
            if endpoint.body is not None:
                call.body = await _body(endpoint.body, request)
            if endpoint.query is not None:
                call.query = _query(endpoint.query, request)
            result = await endpoint.run(call)
        except HttpError as exc:
            return refusal(exc)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=endpoint.status, headers=SECURITY_HEADERS)
        return _json(endpoint.status, result.model_dump(mode="json"))

    return handle


def api_routes(endpoints: Sequence[Endpoint]) -> list[web.RouteDef]:
    """The endpoints' routes, and their OpenAPI document at ``OPENAPI_PATH``."""
    document = orjson.dumps(openapi_document(endpoints))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    routes = [web.route(e.method, e.path, _handler(e)) for e in endpoints]
    return [*routes, web.get(OPENAPI_PATH, openapi)]
