"""Request helpers shared by the worker's HTTP endpoints: bounded bodies, bearer tokens."""

from __future__ import annotations

from aiohttp import web

__all__ = ["SECURITY_HEADERS", "HttpError", "bearer", "read_body"]

#: Sent with every response of a worker's HTTP server (pipelines.web adds them to
#: those that do not set their own).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class HttpError(Exception):
    """A request refused with an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body; 413 past ``limit`` bytes, checked before and while reading
    (a chunked body has no length up front)."""
    if (request.content_length or 0) > limit:
        raise HttpError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
    return b"".join(chunks)


def bearer(request: web.Request) -> str:
    """The ``Authorization: Bearer`` token; 401 when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(401, "missing bearer token (Authorization: Bearer <token>)")
    return token.strip()
