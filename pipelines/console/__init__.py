"""The operator console: one page (``/console``) over the operator APIs every worker
serves (classifiers, labels, export). Plain HTML, CSS and JavaScript shipped in the
package: no build step, nothing fetched from elsewhere at run time. It sends the
operator token as a bearer token from the tab's memory, never a cookie, so a page
of another site cannot act through an operator's browser (and the server refuses
such requests by their Origin anyway)."""

from __future__ import annotations

from aiohttp import web

from pe.common.http import static_asset
from runtime.context import PipelineContext

__all__ = ["serve_console"]

#: The page's assets and their media types.
STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}


async def _page(request: web.Request) -> web.StreamResponse:
    return static_asset(__name__, "console.html", "text/html")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(text="no such file")
    return static_asset(__name__, name, STATIC[name])


def serve_console(ctx: PipelineContext) -> None:
    """Add the console's page and assets to this worker's HTTP server."""
    ctx.routes.extend([web.get("/console", _page), web.get("/console/static/{name}", _static)])
