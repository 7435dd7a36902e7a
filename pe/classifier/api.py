"""The results API: recent classified items, filtered, as a list or an event stream.

``GET /api/v1/classified`` returns the newest items of the window (pe.classifier.recent)
that match ``classifier``, ``tag``, ``source``, ``min_confidence``, ``since`` and
``until``, at most ``limit``; the window holds the latest revision of each item.
``GET /api/v1/classified/stream`` sends each new matching item or revision as a
server-sent event (``event: item``, its id as the event id, ``id#revision`` for a
revision), after the window's matching items since ``since`` or after the
``Last-Event-ID`` a client resumes from.

Both need the ``results_token`` as a bearer token when it is set (or the operator's
credential, pe.common.http.OperatorAccess: the console shows the stream). A client address
holds at most ``streams_per_client`` streams, so a few clients cannot take every
stream of the worker.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from channels.records import Provenance
from pe.classifier.recent import Item, Query, RecentResults, Subscription, event_id
from pe.common.api import Call, Endpoint, address
from pe.common.http import HttpError, OperatorAccess, TokenAccess
from pe.common.sse import Event, event_stream

__all__ = ["ResultsApi"]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
PING_S = 15.0


def _time(raw: object) -> float:
    """Epoch seconds, or an ISO 8601 time (with a zone, else UTC)."""
    try:
        value = float(str(raw))
    except ValueError:
        try:
            parsed = datetime.fromisoformat(str(raw))
        except ValueError:
            msg = f"expected epoch seconds or an ISO 8601 time, got {str(raw)[:50]!r}"
            raise ValueError(msg) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
    if not math.isfinite(value):
        raise ValueError("not a finite time")
    return value


def _confidence(raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return value


Time = Annotated[
    float,
    BeforeValidator(_time),
    WithJsonSchema({"type": "string", "description": "Epoch seconds, or an ISO 8601 time."}),
]


class Filters(BaseModel):
    """Which classified items: a classifier's, with a tag from a source, confident
    enough, in a time."""

    model_config = ConfigDict(extra="forbid")

    classifier: str | None = None
    tag: str | None = Field(None, description="Needs a classifier.")
    source: Provenance | None = Field(
        None,
        description="Where the tag came from: the model, the crowd (the item was "
        "labeled) or propagated (from a labeled near-duplicate). Needs a classifier.",
    )
    min_confidence: Annotated[float, BeforeValidator(_confidence)] | None = Field(
        None, description="From 0 to 1; needs a classifier."
    )
    since: Time | None = None
    until: Time | None = None

    @model_validator(mode="after")
    def _order(self) -> Filters:
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("until is before since")
        return self


class Page(Filters):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class Classified(BaseModel):
    items: list[dict[str, Any]] = Field(description="Newest first.")
    count: int
    window: dict[str, Any] = Field(description="What the window holds now.")


class ResultsApi:
    def __init__(
        self,
        recent: RecentResults,
        tags: dict[str, list[str]],
        *,
        token: str | None = None,
        operator: OperatorAccess | None = None,
        streams_per_client: int = 4,
    ) -> None:
        """``tags``: each classifier's tags, to refuse filters that can match nothing;
        ``operator``: who may read with the operator's credential too (the console)."""
        self._recent = recent
        self._tags = tags
        self._access = TokenAccess(token, "results token", "resultsToken", operator)
        self._per_client = streams_per_client
        #: Open streams per client address.
        self._streams: Counter[str] = Counter()

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "GET",
                "/api/v1/classified",
                "classified",
                "The newest classified items that match the filters (the latest revision of each).",
                self.latest,
                access=self._access,
                query=Page,
                response=Classified,
                tag="results",
            ),
            Endpoint(
                "GET",
                "/api/v1/classified/stream",
                "classified_stream",
                "Server-sent events: each new matching item or revision (event `item`, "
                "its id the event id, `id#revision` for a revision), `dropped` where "
                "the client fell behind; resumes after `Last-Event-ID`, or starts from "
                "`since`.",
                self.stream,
                access=self._access,
                query=Filters,
                stream=True,
                errors=(429, 503),
                tag="results",
            ),
        ]

    def _query(self, filters: Filters) -> Query:
        classifier, tag = filters.classifier, filters.tag
        if classifier is not None and classifier not in self._tags:
            known = ", ".join(sorted(self._tags))
            raise HttpError(400, f"unknown classifier {classifier[:100]!r}; known: {known}")
        needs = (tag, filters.source, filters.min_confidence)
        if classifier is None and any(value is not None for value in needs):
            raise HttpError(400, "tag, source and min_confidence need a classifier")
        if classifier is not None and tag is not None and tag not in self._tags[classifier]:
            known = ", ".join(self._tags[classifier])
            raise HttpError(400, f"{classifier} has no tag {tag[:100]!r}; its tags: {known}")
        return Query(
            classifier,
            tag,
            filters.min_confidence,
            filters.since,
            filters.until,
            filters.source,
        )

    async def latest(self, call: Call) -> Classified:
        page: Page = call.query
        items = self._recent.query(self._query(page), page.limit)
        return Classified(items=items, count=len(items), window=self._recent.window())

    async def stream(self, call: Call) -> web.StreamResponse:
        query = self._query(call.query)
        client = address(call.request)
        if self._streams[client] >= self._per_client:
            msg = f"too many open result streams from your address (at most {self._per_client})"
            raise HttpError(429, msg)
        subscription = self._recent.subscribe(query)
        if subscription is None:
            raise HttpError(503, "too many open result streams; try again later")
        self._streams[client] += 1
        try:
            backlog = self._backlog(query, call.request.headers.get("Last-Event-ID"))
            events = _Events(subscription, backlog).next
            return await event_stream(call.request, events, ping_s=PING_S)
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
                if event_id(item) == last_id:
                    return matching[:at][::-1]
        return matching[::-1] if query.since is not None else []


class _Events:
    """The events of one stream: the backlog, then new items (each once), with
    ``dropped`` events where the client fell behind."""

    def __init__(self, subscription: Subscription, backlog: list[Item]) -> None:
        self._subscription = subscription
        self._backlog = backlog
        self._sent = {event_id(item) for item in backlog}

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
            if event_id(item) not in self._sent:  # already sent from the backlog
                return self._item(item)

    def _item(self, item: Item) -> Event:
        return Event("item", item, event_id(item))
