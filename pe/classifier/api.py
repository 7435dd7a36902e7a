"""The results API: recent classified items, filtered, as a list or an event stream.

``GET /api/v1/classified`` returns the newest items of the window (pe.classifier.recent)
that match ``classifier``, ``tag``, ``min_confidence``, ``since`` and ``until``, at most
``limit``. ``GET /api/v1/classified/stream`` sends each new matching item as a
server-sent event (``event: item``, its id as the event id), after the window's
matching items since ``since`` or after the ``Last-Event-ID`` a client resumes from.

Both need the ``results_token`` as a bearer token when it is set. A client address
holds at most ``streams_per_client`` streams, so a few clients cannot take every
stream of the worker.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from pe.classifier.recent import Item, Query, RecentResults, Subscription
from pe.common.http import HttpError, check_bearer
from pe.common.sse import Event, event_stream

__all__ = ["ResultsApi"]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
PING_S = 15.0
FILTERS = frozenset({"classifier", "tag", "min_confidence", "since", "until"})


def _time(name: str, raw: str) -> float:
    """Epoch seconds, or an ISO 8601 time (with a zone, else UTC)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            msg = f"{name}: expected epoch seconds or an ISO 8601 time, got {raw[:50]!r}"
            raise HttpError(400, msg) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
    if not math.isfinite(value):
        raise HttpError(400, f"{name}: not a finite time")
    return value


class ResultsApi:
    def __init__(
        self,
        recent: RecentResults,
        tags: dict[str, list[str]],
        *,
        token: str | None = None,
        streams_per_client: int = 4,
    ) -> None:
        """``tags``: each classifier's tags, to refuse filters that can match nothing."""
        self._recent = recent
        self._tags = tags
        self._token = token
        self._per_client = streams_per_client
        #: Open streams per client address.
        self._streams: Counter[str] = Counter()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/classified", self._errors(self.latest)),
            web.get("/api/v1/classified/stream", self._errors(self.stream)),
        ]

    def _errors(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                if self._token is not None:
                    check_bearer(request, self._token, "results token")
                return await handler(request)
            except HttpError as exc:
                return web.json_response({"error": exc.message}, status=exc.status)

        return guarded

    def _query(self, request: web.Request, allowed: frozenset[str]) -> Query:
        params = request.query
        unknown = set(params) - allowed
        if unknown:
            names = ", ".join(sorted(unknown))
            known = ", ".join(sorted(allowed))
            raise HttpError(400, f"unknown parameter(s): {names}; known: {known}")
        classifier = params.get("classifier")
        tag = params.get("tag")
        confidence = params.get("min_confidence")
        if classifier is not None and classifier not in self._tags:
            known = ", ".join(sorted(self._tags))
            raise HttpError(400, f"unknown classifier {classifier[:100]!r}; known: {known}")
        if (tag is not None or confidence is not None) and classifier is None:
            raise HttpError(400, "tag and min_confidence need a classifier")
        if classifier is not None and tag is not None and tag not in self._tags[classifier]:
            known = ", ".join(self._tags[classifier])
            raise HttpError(400, f"{classifier} has no tag {tag[:100]!r}; its tags: {known}")
        minimum = None
        if confidence is not None:
            try:
                minimum = float(confidence)
            except ValueError:
                minimum = math.nan
            if not 0.0 <= minimum <= 1.0:
                raise HttpError(400, "min_confidence: expected a number from 0 to 1")
        since = _time("since", params["since"]) if "since" in params else None
        until = _time("until", params["until"]) if "until" in params else None
        if since is not None and until is not None and until < since:
            raise HttpError(400, "until is before since")
        return Query(classifier, tag, minimum, since, until)

    async def latest(self, request: web.Request) -> web.StreamResponse:
        query = self._query(request, FILTERS | {"limit"})
        raw = request.query.get("limit", str(DEFAULT_LIMIT))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise HttpError(400, f"limit: expected a whole number from 1 to {MAX_LIMIT}")
        items = self._recent.query(query, int(raw))
        return web.json_response(
            {"items": items, "count": len(items), "window": self._recent.window()}
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        query = self._query(request, FILTERS)
        client = request.remote or "unknown"
        if self._streams[client] >= self._per_client:
            msg = f"too many open result streams from your address (at most {self._per_client})"
            raise HttpError(429, msg)
        subscription = self._recent.subscribe(query)
        if subscription is None:
            raise HttpError(503, "too many open result streams; try again later")
        self._streams[client] += 1
        try:
            backlog = self._backlog(query, request.headers.get("Last-Event-ID"))
            return await event_stream(request, _Events(subscription, backlog).next, ping_s=PING_S)
        finally:
            self._recent.unsubscribe(subscription)
            self._streams[client] -= 1
            if not self._streams[client]:
                del self._streams[client]

    def _backlog(self, query: Query, last_id: str | None) -> list[Item]:
        """Items of the window to send before new ones, oldest first."""
        if last_id is None and query.since is None:
            return []
        matching = list(self._recent.newest_first(query))
        if last_id is not None:
            for at, item in enumerate(matching):
                if str(item.get("id")) == last_id:
                    return matching[:at][::-1]
        return matching[::-1] if query.since is not None else []


class _Events:
    """The events of one stream: the backlog, then new items (each once), with
    ``dropped`` events where the client fell behind."""

    def __init__(self, subscription: Subscription, backlog: list[Item]) -> None:
        self._subscription = subscription
        self._backlog = backlog
        self._sent = {str(item.get("id")) for item in backlog}

    async def next(self) -> Event | None:
        if self._backlog:
            return self._item(self._backlog.pop(0))
        subscription = self._subscription
        if subscription.dropped:
            dropped, subscription.dropped = subscription.dropped, 0
            return Event("dropped", {"dropped": dropped})
        while True:
            item = await subscription.queue.get()
            if item is None:
                return None
            if str(item.get("id")) not in self._sent:  # already sent from the backlog
                return self._item(item)

    def _item(self, item: Item) -> Event:
        return Event("item", item, str(item.get("id")))
