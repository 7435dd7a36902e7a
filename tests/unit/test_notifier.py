"""Webhooks: signed, tried again with backoff, never raising; and the notifier PE
telling each webhook of the events it wants, with the pipeline in memory."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels.records import Label
from config import load_settings
from pe.common.catalog import ClassifierRecord
from pe.notifier.delivery import Event, Sender
from pe.notifier.latency import LatencyObjective
from pe.params import ClassifierSpec
from pipelines.testing import PeHarness, sample_models
from pipelines.topology import Topology, load_topology

SECRET = b"webhook-secret-for-tests"


class Receiver:
    """An HTTP endpoint that fails its first ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=503)
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    server = TestServer(app)
    await server.start_server()
    yield target, str(server.make_url("/hook"))
    await server.close()


def _verified(headers: dict[str, str], body: bytes) -> bool:
    """As a receiver checks a delivery."""
    signed = headers["X-Crowdstream-Timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET, signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Crowdstream-Signature"])


async def test_a_delivery_is_signed_and_tried_again_until_it_is_taken(
    receiver: tuple[Receiver, str],
) -> None:
    target, url = receiver
    target.failures = 2
    sender = Sender("p", SECRET, attempts=5, timeout_s=5, first_wait_s=0.01)
    event = Event("job.finished", "j1/done", {"job_id": "j1"})
    [done] = await sender.send_all([(event, url)])
    assert (done.outcome, done.attempts, done.status) == ("delivered", 3, 204)
    [(headers, body)] = target.received
    assert _verified(headers, body)
    assert not _verified(headers, body.replace(b"j1", b"j2"))  # tampered: refused
    assert headers["X-Crowdstream-Event"] == "job.finished"
    assert orjson.loads(body)["delivery"] == headers["X-Crowdstream-Delivery"] == done.delivery
    # The same event is the same delivery: receivers drop a duplicate by its id.
    [again] = await sender.send_all([(event, url)])
    assert again.delivery == done.delivery


async def test_a_webhook_that_never_answers_fails_without_holding_the_others(
    receiver: tuple[Receiver, str],
) -> None:
    _, url = receiver
    sender = Sender("p", SECRET, attempts=3, timeout_s=1, first_wait_s=0.01)
    event = Event("model.published", "aid/3", {})
    down, up = await sender.send_all([(event, "http://127.0.0.1:9/hook"), (event, url)])
    assert (down.outcome, down.attempts, down.status) == ("failed", 3, None)
    assert down.error and up.outcome == "delivered"
    assert [d.outcome for d in sender.recent] in (["failed", "delivered"], ["delivered", "failed"])


def _topology(url: str, **notifier: Any) -> Topology:
    data = load_topology("crisis").model_dump(mode="json")
    data["params"]["notifier"] = {
        "webhooks": [
            {"url": url, "events": ["model.published", "classifier.added"]},
            {"url": url + "?all"},
        ],
        "attempts": 2,
        **notifier,
    }
    return Topology.model_validate(data)


async def test_the_notifier_tells_each_webhook_the_events_it_wants(
    receiver: tuple[Receiver, str],
) -> None:
    target, url = receiver
    topology = _topology(url)
    settings = load_settings(crowd="none", webhook_secret=SECRET.decode())
    spec = ClassifierSpec(name="roads", question="A road?", tags=["yes", "no"])
    added = ClassifierRecord(spec=spec, by="operator").model_dump_json()
    paused = ClassifierRecord(spec=spec, by="operator", state="paused", change="paused")
    status = {
        "type": "status",
        "job_id": "j1",
        "kind": "labeling",
        "status": "done",
        "priority": 0,
        "created": 1.0,
        "updated": 2.0,
        "budget": 1.0,
        "cost": 0.5,
        "progress": {},
    }
    async with PeHarness(topology, ["notifier"], settings=settings) as run:
        await run.feed("control.classifiers", [("roads", added.encode()), ("roads", paused)])
        await run.feed("control.models", sample_models(topology)[:1])
        await run.feed("jobs.results", [("j1", {**status, "status": "running"}), ("j1", status)])
    names = sorted(headers["X-Crowdstream-Event"] for headers, _ in target.received)
    assert names == sorted(event["event"] for event in target.events())
    # The first webhook wants two kinds of event; the second, all five that happened.
    assert names == sorted(
        ["classifier.added", "model.published"] * 2 + ["classifier.paused", "job.finished"]
    )
    assert all(_verified(headers, body) for headers, body in target.received)
    [model] = [e for e in target.events() if e["event"] == "model.published"][:1]
    assert model["data"]["classifier"] == "aid_related" and model["data"]["version"] >= 1


async def test_old_events_are_not_sent(receiver: tuple[Receiver, str]) -> None:
    target, url = receiver
    topology = _topology(url, max_age_s=1e-6)  # every record is older than that
    settings = load_settings(crowd="none", webhook_secret=SECRET.decode())
    spec = ClassifierSpec(name="roads", question="A road?", tags=["yes", "no"])
    async with PeHarness(topology, ["notifier"], settings=settings) as run:
        await run.feed("control.classifiers", [("roads", ClassifierRecord(spec=spec))])
    assert target.received == []


def test_webhooks_without_a_secret_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        PeHarness(_topology("http://127.0.0.1:9/hook"), ["notifier"])


def _timed(classifier: str, ts: float, latency: float, **fields: Any) -> Label:
    return Label(
        item_id=f"{classifier}-{ts}",
        classifier=classifier,
        tag="yes",
        agreement=1.0,
        answers=[],
        idx=[],
        val=[],
        ts=ts,
        task_created=ts - latency,
        **fields,
    )


def test_the_latency_objective_is_missed_once_until_it_is_met_again() -> None:
    objective = LatencyObjective(p95_s=60.0, window_s=600.0, min_labels=5)
    fast = [_timed("aid", t, 10.0) for t in range(0, 50, 10)]
    assert objective.take(fast) == []
    # Slow labels, some not counted: a gold question's, a correction, an old label.
    slow = [_timed("aid", t, 300.0) for t in range(100, 160, 10)]
    ignored = [
        _timed("aid", 161, 900.0, kind="gold"),
        _timed("aid", 162, 900.0, corrected_by="operator"),
        _timed("aid", 163, 900.0, status="shed"),
    ]
    [event] = objective.take(slow + ignored + [_timed("request", 150, 999.0)])
    assert event.name == "label.latency_missed" and event.data["classifier"] == "aid"
    assert event.data["p95_s"] == 300.0 and event.data["labels"] == 11
    assert objective.take([_timed("aid", 170, 300.0)]) == []  # still missed: said once
    # 600 s later the slow ones left the window: met again, and a new miss is news.
    assert objective.take([_timed("aid", t, 5.0) for t in range(800, 850, 10)]) == []
    [again] = objective.take([_timed("aid", t, 200.0) for t in range(900, 1000, 10)])
    assert again.key != event.key


async def test_the_notifier_tells_a_webhook_of_a_missed_latency_objective(
    receiver: tuple[Receiver, str],
) -> None:
    target, url = receiver
    topology = _topology(url, label_latency_p95_s=30.0, latency_min_labels=3)
    settings = load_settings(crowd="none", webhook_secret=SECRET.decode())
    now = time.time()
    labels = [(f"i{n}", _timed("aid_related", now - n, 120.0)) for n in range(3)]
    async with PeHarness(topology, ["notifier"], settings=settings) as run:
        await run.feed("crowd.labels", labels)
    [missed] = [e for e in target.events() if e["event"] == "label.latency_missed"]
    assert missed["data"]["classifier"] == "aid_related" and missed["data"]["p95_s"] == 120.0
    # Only the webhook that wants every event was told.
    assert [h["X-Crowdstream-Event"] for h, _ in target.received].count("label.latency_missed") == 1
