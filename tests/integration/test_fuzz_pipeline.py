"""Bad input at scale: hypothesis-drawn random bytes, wrong types, huge strings, deep
JSON, invalid UTF-8 and emoji sent to every ingress of a running pipeline (each topic
a PE reads, and the HTTP endpoints). Nothing crashes, and every input is accounted:
out, or in ``items.rejected`` (refused models: in their own counter).

The crowd's HTTP API is fuzzed from its OpenAPI document by schemathesis
(test_crowd_api_schema.py).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterator
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from channels.codec import DecodeError, decode, iter_json_lines
from channels.jobs import JobCommand
from channels.records import Label, Task
from pipelines.broker import EmbeddedBroker
from tests.fuzzing import JSON, payloads
from tests.integration.conftest import Worker, read_all, start_worker, wait_until, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "fuzztest"
PER_INGRESS = 150
_QUERY_KEYS = ("classifier", "tag", "source", "min_confidence", "since", "until", "limit", "other")

T = TypeVar("T")


def draw(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """Up to ``count`` examples of ``strategy``, as hypothesis generates them."""
    found: list[T] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found


def _bad(model: type[Any], raws: list[bytes]) -> int:
    count = 0
    for raw in raws:
        try:
            decode(model, raw)
        except DecodeError:
            count += 1
    return count


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    topology = write_topology(tmp_path_factory.mktemp("topology"), PIPELINE)
    running = start_worker(broker, topology, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


async def _send(bootstrap: str, topic: str, raws: list[bytes], key: bytes | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        # Every record must be written: a refused one would not test its reader.
        await asyncio.gather(
            *[await producer.send(f"{PIPELINE}.{topic}", raw, key=key) for raw in raws]
        )
    finally:
        await producer.stop()


async def test_every_ingress_takes_fuzz_without_crashing_and_accounts_every_input(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    def metric(name: str, **labels: str) -> float:
        return worker.metric(f"crowdstream_{name}", **labels)

    before = {pe: metric("items_rejected_total", pe=pe) for pe in ("annotator", "learner", "jobs")}
    refused_before = metric("models_refused_total")

    # HTTP: POST /items. Each request answers 202 or 4xx; the records of each body
    # are accepted or rejected, one by one.
    bodies = draw(payloads(), PER_INGRESS)
    accepted = rejected = 0
    for body in bodies:
        status, answer = worker.post("/items", body)
        assert status in (202, 400, 413), (status, answer, body[:200])
        assert "error" in answer or status == 202
        if "accepted" in answer:
            assert answer["accepted"] + answer["rejected"] == len(list(iter_json_lines(body)))
            accepted += answer["accepted"]
            rejected += answer["rejected"]
    assert metric("items_rejected_total", pe="collector") == rejected

    # Topics, written by any producer: items.raw (features), crowd.tasks (annotator),
    # crowd.labels (learner), jobs (jobs PE), control.models (every model reader).
    raw = draw(payloads(), PER_INGRESS)
    tasks = draw(payloads(), PER_INGRESS)
    labels = draw(payloads(), PER_INGRESS)
    commands = draw(payloads(), PER_INGRESS)
    models = draw(payloads(), PER_INGRESS)
    for topic, sent, record_key in (
        ("items.raw", raw, None),
        ("crowd.tasks", tasks, None),
        ("crowd.labels", labels, None),
        ("jobs", commands, None),
        # A compacted topic takes keyed records only (Kafka refuses others).
        ("control.models", models, b"request"),
    ):
        await _send(broker.bootstrap, topic, sent, record_key)

    # HTTP: the jobs API and the results API, with fuzz bodies and queries.
    for body in draw(payloads(), PER_INGRESS // 2):
        status, answer = worker.post("/api/v1/jobs", body, {"Content-Type": "application/json"})
        assert 400 <= status < 500 and answer["error"], (status, answer)
    for params in draw(st.dictionaries(st.sampled_from(_QUERY_KEYS), JSON), PER_INGRESS // 2):
        query = urllib.parse.urlencode({k: orjson.dumps(v).decode() for k, v in params.items()})
        status, answer_body = worker.get(f"/api/v1/classified?{query}")
        assert status in (200, 400), (status, answer_body[:300])

    # Every record that reached items.raw is classified or rejected by the features
    # PE (the collector's accepted ones too); the others, rejected by their owner.
    expected_raw = accepted + len(raw)

    def settled() -> bool:
        return (
            metric("items_in_total", pe="features") >= expected_raw
            and metric("items_out_total", pe="features")
            + metric("items_rejected_total", pe="features")
            >= expected_raw
        )

    assert await wait_until(settled, timeout_s=120)
    features_out = metric("items_out_total", pe="features")
    assert metric("items_in_total", pe="features") == expected_raw
    assert features_out + metric("items_rejected_total", pe="features") == expected_raw
    assert await wait_until(
        lambda: metric("items_out_total", pe="classifier") == features_out, timeout_s=60
    )
    # The bad records on each topic (ours: the pipeline writes only good ones) are
    # each rejected once by the PE that owns the topic.
    for pe, key, model, sent in (
        ("annotator", "crowd.tasks", Task, tasks),
        ("learner", "crowd.labels", Label, labels),
        ("jobs", "jobs", JobCommand, commands),
    ):
        on_topic = await read_all(broker.bootstrap, f"{PIPELINE}.{key}")
        bad = _bad(model, [record.value for record in on_topic])
        assert bad == _bad(model, sent) > 0

        def rejected_by(pe: str = pe) -> float:
            return metric("items_rejected_total", pe=pe) - before[pe]

        assert await wait_until(lambda: rejected_by() >= bad, timeout_s=60)  # noqa: B023
        await asyncio.sleep(1)  # and no more
        assert rejected_by() == bad, pe
    assert await wait_until(
        lambda: metric("models_refused_total") - refused_before == len(models), timeout_s=60
    )
    assert worker.proc.poll() is None
    assert worker.get("/healthz")[0] == 200
