"""The results API's window and its HTTP endpoints (list and event stream), in-process."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pe.classifier.api import ResultsApi
from pe.classifier.recent import Query, RecentResults
from pe.common.api import api_routes
from pe.common.http import LIMITS, HttpLimits, OperatorAccess

TAGS = {"aid_related": ["yes", "no"], "request": ["yes", "no"]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(
    n: int,
    ts: float,
    tag: str = "yes",
    confidence: float | None = 0.9,
    source: str = "model",
    revision: int = 0,
) -> dict[str, Any]:
    prediction = {"tag": tag, "confidence": confidence, "model_version": 1, "source": source}
    return {
        "id": f"i{n}",
        "text": f"message {n}",
        "ts_in": ts - 0.1,
        "ts_out": ts,
        "labels": {
            "aid_related": prediction,
            "request": {"tag": None, "confidence": None, "model_version": 0, "source": None},
        },
        "revision": revision,
    }


def test_the_window_is_bounded_by_count_and_age_and_keeps_one_item_per_id() -> None:
    clock = Clock()
    recent = RecentResults(max_items=5, max_age_s=60.0, clock=clock)
    assert recent.add(item(n, 990.0 + n) for n in range(8)) == 8
    assert [i["id"] for i in recent.query(Query(), 10)] == ["i7", "i6", "i5", "i4", "i3"]
    assert recent.add([item(7, 999.0, tag="no")]) == 0  # a repeat after a crash
    assert recent.query(Query(), 1)[0]["labels"]["aid_related"]["tag"] == "yes"
    clock.now = 1054.5  # i3 (993) and i4 (994) are now older than 60 s
    assert [i["id"] for i in recent.query(Query(), 10)] == ["i7", "i6", "i5"]
    assert recent.window()["items"] == 3 and recent.window()["oldest"] == 995.0


def test_filters_by_classifier_tag_confidence_and_time() -> None:
    recent = RecentResults(max_items=100, max_age_s=1e9, clock=Clock())
    recent.add(
        [
            item(1, 10.0),
            item(2, 20.0, "no"),
            item(3, 30.0, confidence=0.5),
            item(4, 40.0, confidence=None),
        ]
    )

    def ids(query: Query) -> list[str]:
        return [i["id"] for i in recent.query(query, 100)]

    assert ids(Query(classifier="aid_related", tag="yes")) == ["i4", "i3", "i1"]
    assert ids(Query(classifier="aid_related", min_confidence=0.8)) == ["i2", "i1"]
    assert ids(Query(since=15.0, until=30.0)) == ["i3", "i2"]
    assert ids(Query(classifier="request", tag="yes")) == []
    assert ids(Query(classifier="other")) == []


def test_a_newer_revision_replaces_its_item_and_counts_as_arriving_now() -> None:
    clock = Clock()
    recent = RecentResults(max_items=3, max_age_s=60.0, clock=clock)
    recent.add([item(1, 990.0), item(2, 991.0), item(3, 992.0)])
    subscription = recent.subscribe(Query(classifier="aid_related", source="crowd"))
    assert subscription is not None
    crowd = item(1, 995.0, "no", 1.0, source="crowd", revision=7)
    assert recent.add([crowd]) == 1
    assert [i["id"] for i in recent.query(Query(), 10)] == ["i1", "i3", "i2"]
    assert recent.query(Query(), 1)[0] is crowd and subscription.queue.get_nowait() is crowd
    # A repeat of the revision or of the first record (after a crash), or an older
    # revision, changes nothing.
    assert recent.add([item(1, 996.0), dict(crowd), item(1, 997.0, revision=3)]) == 0
    assert recent.query(Query(), 1)[0] is crowd and subscription.queue.empty()
    # The revised item left the window last: the next item evicts the oldest first.
    recent.add([item(4, 998.0)])
    assert [i["id"] for i in recent.query(Query(), 10)] == ["i4", "i1", "i3"]
    assert recent.add([item(2, 999.0, revision=9)]) == 1  # evicted: back as new
    assert len(recent) == 3


def test_filters_by_where_the_tag_came_from() -> None:
    recent = RecentResults(max_items=100, max_age_s=1e9, clock=Clock())
    old = item(4, 40.0)
    del old["labels"]["aid_related"]["source"]  # written before tags had a source
    recent.add(
        [item(1, 10.0), item(2, 20.0, source="crowd"), item(3, 30.0, source="propagated"), old]
    )

    def ids(query: Query) -> list[str]:
        return [i["id"] for i in recent.query(query, 100)]

    assert ids(Query(classifier="aid_related", source="model")) == ["i4", "i1"]
    assert ids(Query(classifier="aid_related", source="crowd")) == ["i2"]
    assert ids(Query(classifier="aid_related", tag="yes", source="propagated")) == ["i3"]
    assert ids(Query(classifier="aid_related", tag="no", source="propagated")) == []
    assert ids(Query(classifier="request", source="model")) == []


async def test_a_slow_subscriber_loses_items_counted_never_the_table() -> None:
    recent = RecentResults(max_items=100, max_age_s=1e9, subscriber_backlog=2, clock=Clock())
    subscription = recent.subscribe(Query(classifier="aid_related", tag="yes"))
    assert subscription is not None
    recent.add([item(1, 1.0), item(2, 2.0, "no"), item(3, 3.0), item(4, 4.0)])
    assert subscription.queue.qsize() == 2 and subscription.dropped == 1
    assert len(recent) == 4
    recent.close()
    assert [subscription.queue.get_nowait() for _ in range(2)][-1] is None


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], RecentResults]]:
    recent = RecentResults(max_items=1000, max_age_s=1e12, max_subscribers=2)
    app = web.Application()
    app.add_routes(api_routes(ResultsApi(recent, TAGS).endpoints()))
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client, recent
    recent.close()
    await test_client.close()


async def test_list_filters_and_limits(client: Any) -> None:
    http, recent = client
    recent.add([item(n, 1_700_000_000.0 + n, "yes" if n % 2 else "no") for n in range(10)])
    answer = await http.get(
        "/api/v1/classified",
        params={
            "classifier": "aid_related",
            "tag": "yes",
            "limit": "3",
            "since": "2023-11-14T22:13:21Z",
        },
    )
    assert answer.status == 200
    body = await answer.json()
    assert [i["id"] for i in body["items"]] == ["i9", "i7", "i5"]
    assert body["count"] == 3 and body["window"]["items"] == 10


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"classifier": "nope"}, "unknown classifier"),
        ({"tag": "yes"}, "need a classifier"),
        ({"source": "crowd"}, "need a classifier"),
        ({"classifier": "aid_related", "source": "people"}, "source"),
        ({"classifier": "aid_related", "tag": "maybe"}, "has no tag"),
        ({"classifier": "aid_related", "min_confidence": "2"}, "from 0 to 1"),
        ({"classifier": "aid_related", "min_confidence": "nan"}, "from 0 to 1"),
        ({"since": "yesterday"}, "ISO 8601"),
        ({"since": "inf"}, "finite"),
        ({"since": "20", "until": "10"}, "before since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"colour": "red"}, "unknown parameter"),
    ],
)
async def test_bad_queries_get_a_400_that_says_why(
    client: Any, params: dict[str, str], message: str
) -> None:
    http, _ = client
    answer = await http.get("/api/v1/classified", params=params)
    assert answer.status == 400
    assert message in (await answer.json())["error"]
    stream = await http.get("/api/v1/classified/stream", params=params)
    assert stream.status == 400 or "limit" in params


async def _events(response: Any, count: int) -> list[tuple[str, str | None, Any]]:
    """The next ``count`` events of an event stream: (name, id, data)."""
    events: list[tuple[str, str | None, Any]] = []
    fields: dict[str, str] = {}
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
        if not line:
            if "event" in fields:
                events.append((fields["event"], fields.get("id"), orjson.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


async def test_the_stream_sends_the_backlog_then_new_matching_items_once(client: Any) -> None:
    http, recent = client
    recent.add([item(1, 100.0), item(2, 200.0, "no"), item(3, 300.0)])
    response = await http.get(
        "/api/v1/classified/stream",
        params={"classifier": "aid_related", "tag": "yes", "since": "150"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    first = await _events(response, 1)
    assert first == [("item", "i3", item(3, 300.0))]
    recent.add([item(4, 400.0, "no"), item(5, 500.0), item(3, 300.0)])  # i3 again: not resent
    assert [(name, event_id) for name, event_id, _ in await _events(response, 1)] == [
        ("item", "i5")
    ]
    response.close()


async def test_the_list_and_the_stream_filter_by_source_and_stream_revisions(
    client: Any,
) -> None:
    http, recent = client
    recent.add([item(1, 100.0), item(2, 200.0, source="propagated")])
    answer = await http.get(
        "/api/v1/classified", params={"classifier": "aid_related", "source": "propagated"}
    )
    assert [i["id"] for i in (await answer.json())["items"]] == ["i2"]
    response = await http.get(
        "/api/v1/classified/stream", params={"classifier": "aid_related", "source": "crowd"}
    )
    assert response.status == 200
    await asyncio.sleep(0.05)
    recent.add([item(1, 300.0, "no", 1.0, source="crowd", revision=42)])
    [(name, event, data)] = await _events(response, 1)
    assert (name, event, data["revision"]) == ("item", "i1#42", 42)
    response.close()
    # A client resumes after a revision's event id.
    recent.add([item(3, 400.0)])
    response = await http.get("/api/v1/classified/stream", headers={"Last-Event-ID": "i1#42"})
    assert [event for _, event, _ in await _events(response, 1)] == ["i3"]
    response.close()


async def test_the_stream_resumes_after_the_last_event_id(client: Any) -> None:
    http, recent = client
    recent.add([item(n, float(n)) for n in range(1, 5)])
    response = await http.get("/api/v1/classified/stream", headers={"Last-Event-ID": "i2"})
    assert [event_id for _, event_id, _ in await _events(response, 2)] == ["i3", "i4"]
    response.close()


async def test_streams_are_capped(client: Any) -> None:
    http, _ = client
    open_ones = [await http.get("/api/v1/classified/stream") for _ in range(2)]
    await asyncio.sleep(0.05)
    refused = await http.get("/api/v1/classified/stream")
    assert refused.status == 503
    for response in open_ones:
        response.close()


RESULTS = "results-token-0123456789"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Serves a window's results API (write timeout 1 s); keyword arguments go to
    ResultsApi."""
    started: list[tuple[Client, RecentResults]] = []

    async def start(recent: RecentResults, **api: Any) -> Client:
        app = web.Application()
        app[LIMITS] = HttpLimits(write_timeout_s=1.0)
        app.add_routes(api_routes(ResultsApi(recent, TAGS, **api).endpoints()))
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        started.append((client, recent))
        return client

    yield start
    for client, recent in started:
        recent.close()
        await client.close()


async def test_one_client_address_holds_a_bounded_number_of_streams(serve: Any) -> None:
    recent = RecentResults(max_items=1000, max_age_s=1e12, max_subscribers=3)
    http = await serve(recent, streams_per_client=2)
    mine = [await http.get("/api/v1/classified/stream") for _ in range(2)]
    assert [r.status for r in mine] == [200, 200]
    refused = await http.get("/api/v1/classified/stream")
    assert refused.status == 429 and "at most 2" in (await refused.json())["error"]
    # the last stream of the worker is left for another address
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as client:
        response = await client.get(str(http.make_url("/api/v1/classified/stream")))
        assert response.status == 200 and len(recent.subscribers) == 3
        response.close()
    for response in mine:
        response.close()


async def test_with_a_results_token_the_list_and_the_stream_need_it(serve: Any) -> None:
    recent = RecentResults(max_items=1000, max_age_s=1e12)
    recent.add([item(1, 100.0)])
    http = await serve(recent, token=RESULTS)
    for path in ("/api/v1/classified", "/api/v1/classified/stream"):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            response = await http.get(path, headers=headers)
            assert response.status == 401 and (await response.json())["error"], path
    assert not recent.subscribers
    mine = {"Authorization": f"Bearer {RESULTS}"}
    listed = await http.get("/api/v1/classified", headers=mine)
    assert listed.status == 200 and (await listed.json())["count"] == 1
    stream = await http.get("/api/v1/classified/stream", headers=mine)
    assert stream.status == 200
    stream.close()


async def test_an_operator_reads_the_results_with_the_operator_token(serve: Any) -> None:
    recent = RecentResults(max_items=1000, max_age_s=1e12)
    recent.add([item(1, 100.0)])
    operator = OperatorAccess("operator-token-0123456789", loopback_only=False)
    http = await serve(recent, token=RESULTS, operator=operator)
    for bearer, status in ((RESULTS, 200), (operator.token, 200), ("wrong-token-0123456", 401)):
        listed = await http.get("/api/v1/classified", headers={"Authorization": f"Bearer {bearer}"})
        assert listed.status == status, bearer
    assert "operator token" in (await listed.json())["error"]


async def test_a_stream_client_that_reads_nothing_is_dropped(serve: Any) -> None:
    """It would hold its connection and a stream slot for good; one that reads stays."""
    recent = RecentResults(max_items=100_000, max_age_s=1e12)
    http = await serve(recent)
    loop = asyncio.get_running_loop()
    idle = socket.socket()
    idle.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    idle.setblocking(False)
    await loop.sock_connect(idle, (http.host, http.port))
    await loop.sock_sendall(idle, b"GET /api/v1/classified/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    reader = await http.get("/api/v1/classified/stream")
    received = 0

    async def read() -> None:
        nonlocal received
        while chunk := await reader.content.read(65536):
            received += len(chunk)

    reading = asyncio.create_task(read())
    try:
        n = 0
        deadline = time.monotonic() + 30
        while len(recent.subscribers) > 1 and time.monotonic() < deadline:
            text = f"{n} " + "x" * 10_000
            recent.add([{"id": f"b{n + i}", "text": text, "ts_out": 1e9} for i in range(20)])
            n += 20
            await asyncio.sleep(0.05)
        assert len(recent.subscribers) == 1  # the reader's
        assert received > 0 and not reading.done()
    finally:
        reading.cancel()
        reader.close()
        idle.close()
