"""Learning progress (pe.learner.progress): the crowd's work in time buckets that
coarsen as a disaster goes on, every model's held-out metrics, the API that serves
them, and the learner keeping ``models.history`` whole (with the whole pipeline in
memory)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.codec import decode
from channels.records import Answer, Interval, Label, ModelHeader, ModelMetrics, TagMetrics
from pe.common.api import api_routes
from pe.common.http import OperatorAccess
from pe.learner.progress import CrowdSeries, LearningProgress, ProgressApi
from pipelines.sample import load_sample
from pipelines.testing import PeHarness, sample_models
from pipelines.topology import Topology, load_topology

OPERATOR = "operator-token-0123456789"
Client = TestClient[web.Request, web.Application]


def _label(ts: float, latency: float | None = 10.0, **fields: Any) -> Label:
    answers = [
        Answer(task_id="t", worker_id=f"w{i}", tag="yes", latency_s=1.0, accuracy=0.9)
        for i in range(3)
    ]
    values: dict[str, Any] = {
        "item_id": f"i{ts}",
        "classifier": "aid_related",
        "tag": "yes",
        "agreement": 1.0,
        "answers": answers,
        "ts": ts,
        "task_created": None if latency is None else ts - latency,
        "cost": 0.3,
        "idx": [],
        "val": [],
    }
    return Label(**(values | fields))


def test_the_crowd_series_counts_labels_answers_cost_and_latency_per_bucket() -> None:
    series = CrowdSeries(width_s=60.0, max_buckets=10)
    for ts, latency in ((0.0, 4.0), (10.0, 8.0), (30.0, 2.0), (200.0, 30.0)):
        series.take(_label(ts, latency))
    series.take(_label(20.0, kind="gold"))  # paid answers, not a label bought
    series.take(_label(25.0, corrected_by="operator"))  # buys nothing
    series.take(_label(26.0, status="shed", answers=[], tag=None))
    series.take(_label(27.0, latency=None))  # written before latencies were kept
    first, empty, _, last = series.points()
    assert (first.start, first.labels, first.answers) == (0.0, 4, 15)
    assert first.cost == pytest.approx(1.5)
    assert first.latency_p50 == 4.0 and first.latency_p95 == pytest.approx(7.6)
    assert (empty.labels, empty.latency_p50, empty.labels_total) == (0, None, 4)
    assert (last.start, last.labels, last.latency_p50, last.labels_total) == (180.0, 1, 30.0, 5)
    assert last.cost_total == pytest.approx(1.8)


def test_a_long_run_coarsens_the_buckets_and_keeps_every_total() -> None:
    series = CrowdSeries(width_s=60.0, max_buckets=8)
    # Read out of order, as partitions interleave.
    stamps = [float(t) for t in range(0, 3600, 30)]
    for ts in stamps[::2] + stamps[1::2]:
        series.take(_label(ts, latency=ts / 100))
    points = series.points()
    assert len(points) <= 8 and series.width_s == 60.0 * 8
    assert points[-1].labels_total == len(stamps) == sum(p.labels for p in points)
    assert [p.start for p in points] == [i * series.width_s for i in range(len(points))]
    # Exact percentiles survive the merges.
    first = [ts / 100 for ts in stamps if ts < series.width_s]
    assert points[0].latency_p95 == pytest.approx(np.percentile(first, 95), abs=1e-3)


def _header(version: int, auc: float, classifier: str = "aid_related") -> ModelHeader:
    tag = TagMetrics(
        precision=0.8,
        recall=0.6,
        auc=auc,
        support=40,
        precision_ci=Interval(low=0.7, high=0.9),
        recall_ci=Interval(low=0.5, high=0.7),
    )
    return ModelHeader(
        classifier=classifier,
        version=version,
        family="sklearn",
        created=1000.0 + version,
        n_train=10 * version,
        n_holdout=5,
        metrics=ModelMetrics(
            auc=auc, accuracy=0.7, per_tag={"yes": tag}, auc_ci=Interval(low=0.5, high=0.9)
        ),
    )


@pytest.fixture
async def client() -> AsyncIterator[tuple[Client, asyncio.Event]]:
    progress = LearningProgress()
    progress.take_label(_label(5.0))
    progress.take_label(_label(6.0, job="j1"))  # a job's label: the job's own results
    for version, auc in ((2, 0.8), (1, 0.7), (2, 0.8)):  # v2 written twice: kept once
        progress.take_model(_header(version, auc))
    labels, history = asyncio.Event(), asyncio.Event()
    labels.set()
    api = ProgressApi(
        progress,
        lambda: {"aid_related", "retired_one"},
        operator=OperatorAccess(OPERATOR, loopback_only=False),
        ready=(labels, history),
    )
    app = web.Application()
    app.add_routes(api_routes(api.endpoints()))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, history


async def test_the_api_serves_the_series_and_each_model_once(
    client: tuple[Client, asyncio.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, history = client
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    monkeypatch.setattr("pe.learner.progress.READY_WAIT_S", 0.2)
    answer = await http.get("/api/v1/learning/aid_related", headers=auth)
    assert answer.status == 503 and "still reading" in (await answer.json())["error"]
    history.set()
    answer = await http.get("/api/v1/learning/aid_related", headers=auth)
    assert answer.status == 200
    body = await answer.json()
    assert [m["version"] for m in body["models"]] == [1, 2]
    assert body["models"][1]["per_tag"]["yes"]["recall_ci"] == {"low": 0.5, "high": 0.7}
    assert [(p["labels"], p["answers"]) for p in body["crowd"]] == [(1, 3)]
    answer = await http.get("/api/v1/learning/retired_one", headers=auth)
    assert (await answer.json())["crowd"] == []
    answer = await http.get("/api/v1/learning/nope", headers=auth)
    assert answer.status == 404 and "nope" in (await answer.json())["error"]
    answer = await http.get("/api/v1/learning/aid_related")
    assert answer.status == 401


def _topology() -> Topology:
    data = load_topology("crisis").model_dump(mode="json")
    params = data["params"]
    params["annotator"] = {**params.get("annotator", {}), "speed": 50, "pool_size": 10}
    params["taskgen"] = {**params.get("taskgen", {}), "max_tasks_per_minute": 6000}
    params["learner"] = {"retrain_every": 10, "min_train": 10, "teacher": "none"}
    return Topology.model_validate(data)


async def test_every_model_published_joins_the_history_and_a_missing_one_is_written_again() -> None:
    topology = _topology()
    # A learner that died between its two writes: the model is active, not in history.
    active = sample_models(topology)[:1]
    async with PeHarness(topology, logs={"control.models": active}) as run:
        await run.tick()
        [repaired] = run.outputs("models.history")
        assert (repaired["classifier"], repaired["version"]) == ("aid_related", 1)
        assert "model" not in repaired  # the header, not the weights
        await run.feed("items.raw", load_sample(600))
        deadline = time.monotonic() + 60
        while len(run.outputs("control.models")) < 3 and time.monotonic() < deadline:
            await run.tick()
            await asyncio.sleep(0.05)
        published = [(m["classifier"], m["version"]) for m in run.outputs("control.models")]
        assert len(published) >= 3
        history = [(m["classifier"], m["version"]) for m in run.outputs("models.history")]
        assert history == [("aid_related", 1), *published]
        labels = run.outputs("crowd.labels")
        assert all(label["task_created"] <= label["ts"] for label in labels)
        # Each answer carries the quality loop's estimate of its worker.
        assert all(0 <= a["accuracy"] <= 1 for label in labels for a in label["answers"])
    # Read back, the history decodes as headers.
    assert decode(ModelHeader, orjson.dumps(repaired)).version == 1
