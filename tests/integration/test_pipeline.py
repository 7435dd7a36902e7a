"""The crisis topology end to end on the embedded broker, with a simulated crowd."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import (
    TEST_MODEL_KEY,
    Worker,
    read_topic,
    start_worker,
    values,
    wait_until,
    write_topology,
)

pytestmark = pytest.mark.integration

PIPELINE = "itest"
#: A crowd fast enough to label within seconds, and a learner that retrains often.
FAST: dict[str, dict[str, Any]] = {
    "annotator": {"speed": 400.0, "pool_size": 12},
    "taskgen": {"max_tasks_per_minute": 6000, "round_interval_s": 0.1, "label_budget": 300},
    "learner": {"retrain_every": 20, "min_train": 10},
    "collector": {"max_body_bytes": 4096},
}


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_topology(tmp_path_factory.mktemp("topology"), PIPELINE, **FAST)


@pytest.fixture(scope="module")
def worker(
    broker: EmbeddedBroker, topology: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    running = start_worker(
        broker, topology, tmp_path_factory.mktemp("worker"), "--log-format", "json"
    )
    yield running
    running.stop()


def _lines(rows: list[dict[str, object]]) -> list[bytes]:
    return [orjson.dumps(row) for row in rows]


async def test_every_item_appears_exactly_once_and_models_change_the_output(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    sample = load_sample(1200)
    first, later = sample[:1000], sample[1000:]
    assert await push_lines([broker.bootstrap], PIPELINE, _lines(first)) == 1000
    ids = {row["id"] for row in first}

    def all_first(records: list) -> bool:  # type: ignore[type-arg]
        return ids <= {r.key.decode() for r in records}

    records = await read_topic(broker.bootstrap, f"{PIPELINE}.items.classified", all_first)
    items = values(records)
    # Once each: a crowd label's revision of an item is another record, not a repeat.
    seen = Counter(item["id"] for item in items if item["revision"] == 0)
    assert set(seen) >= ids
    assert [i for i in ids if seen[i] != 1] == []
    # Items never wait for humans: the first ones were classified before any model.
    assert items[0]["labels"]["aid_related"] == {
        "tag": None,
        "confidence": None,
        "model_version": 0,
        "source": None,
    }

    # The simulated crowd labels, the learner trains and publishes models...
    models = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.control.models",
        lambda rs: {m["classifier"] for m in values(rs)} == {"aid_related", "request"},
    )
    published = values(models)
    assert {m["classifier"] for m in published} == {"aid_related", "request"}
    assert all(m["model"]["link"] == "sigmoid" and m["n_train"] >= 10 for m in published)
    assert await wait_until(
        lambda: all(
            worker.metric("crowdstream_model_version", classifier=name) >= 1
            for name in ("aid_related", "request")
        )
    )
    # Every held-out metric comes with its interval, in the record and the metrics.
    for model in published:
        metrics = model["metrics"]
        assert (
            metrics["accuracy_ci"]["low"] <= metrics["accuracy"] <= metrics["accuracy_ci"]["high"]
        )
        if metrics["auc"] is not None:
            assert metrics["auc_ci"]["low"] <= metrics["auc"] <= metrics["auc_ci"]["high"]
    exposed = {
        sample.name: sample.value
        for family in text_string_to_metric_families(worker.get("/metrics")[1].decode())
        for sample in family.samples
        if sample.labels.get("classifier") == "aid_related"
    }
    assert (
        exposed["crowdstream_model_auc_low"]
        <= exposed["crowdstream_model_auc"]
        <= exposed["crowdstream_model_auc_high"]
    )

    # ... which reach the classifier and change its output.
    await push_lines([broker.bootstrap], PIPELINE, _lines(later))
    later_ids = {row["id"] for row in later}
    records = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.items.classified",
        lambda rs: later_ids <= {r.key.decode() for r in rs},
    )
    models = await read_topic(
        broker.bootstrap, f"{PIPELINE}.control.models", lambda rs: len(rs) >= len(published)
    )
    by_version = {(m["classifier"], m["version"]): m["model"] for m in values(models)}
    decided = 0
    for item in values(records):
        if item["id"] in later_ids:
            for name in ("aid_related", "request"):
                prediction = item["labels"][name]
                assert prediction["model_version"] >= 1
                assert prediction["tag"] in {"yes", "no"}
                if prediction["source"] != "model":
                    continue  # the crowd's tag (the item, or a near-duplicate, labeled)
                # The tag is the model's decision: its first tag at or above the
                # threshold chosen from the labels, else the other (a model from too
                # few labels of a tag to choose one: the most probable tag); the
                # confidence is the probability of the tag given.
                decision = by_version[name, prediction["model_version"]]["decision"]
                if decision is None:
                    assert 0.5 <= prediction["confidence"] <= 1.0
                    continue
                assert decision["tag"] == "yes"
                p_yes = prediction["confidence"]
                if prediction["tag"] != "yes":
                    p_yes = 1.0 - p_yes
                if abs(p_yes - decision["threshold"]) < 1e-4:
                    continue  # the confidence is rounded to 4 places: too close to call
                assert (prediction["tag"] == "yes") == (p_yes >= decision["threshold"])
                decided += 1
    assert decided > 0
    labels = await read_topic(
        broker.bootstrap, f"{PIPELINE}.crowd.labels", lambda rs: len(rs) >= 20
    )
    for label in values(labels):
        if label["kind"] == "gold":  # a gold question: one answer, the known tag (sure)
            assert len(label["answers"]) == 1 and label["posterior"] == 1.0
            continue
        # The quality loop asked until the leading tag's posterior reached 0.9, or
        # the task had 5 answers.
        assert 1 <= len(label["answers"]) <= 5 and label["posterior"] is not None
        if len(label["answers"]) < 5:
            assert label["posterior"] >= 0.9 - 1e-4 and label["tag"] is not None
    assert worker.metric("crowdstream_crowd_answers_total") >= 60


async def test_malformed_records_are_rejected_and_the_worker_keeps_going(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    bad = [
        b"{not json",
        b"[1, 2, 3]",
        b'{"text": ""}',
        b'{"id": "x"}',
        b'{"text": "\xff\xfe"}',
        b'{"text": 12}',
        b'"just a string"',
    ]
    good = [orjson.dumps({"id": f"good-{i}", "text": f"we need water {i}"}) for i in range(5)]
    before = worker.metric("crowdstream_items_rejected_total", pe="features")
    # Bad records alone first: the features stage then gets batches with nothing valid
    # in them (which once crashed its agent and stalled the stream), then good ones.
    await push_lines([broker.bootstrap], PIPELINE, bad)
    rejected = await read_topic(
        broker.bootstrap, f"{PIPELINE}.items.rejected", lambda rs: len(rs) >= len(bad)
    )
    await push_lines([broker.bootstrap], PIPELINE, good)
    reasons = [r for r in values(rejected) if r["stage"] == "features"]
    assert len(reasons) >= len(bad)
    assert any("invalid JSON" in r["reason"] for r in reasons)
    assert any("text" in r["reason"] for r in reasons)
    assert all(r["raw_size"] > 0 for r in reasons)
    classified = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.items.classified",
        lambda rs: {f"good-{i}" for i in range(5)} <= {r.key.decode() for r in rs},
    )
    assert {f"good-{i}" for i in range(5)} <= {r.key.decode() for r in classified}
    status, body = worker.get("/healthz")
    assert worker.proc.poll() is None and status == 200
    assert orjson.loads(body)["catching_up"] == []  # the logs it follows were read
    assert await wait_until(
        lambda: worker.metric("crowdstream_items_rejected_total", pe="features") >= before + 7
    )


async def test_forged_records_on_internal_topics_are_rejected(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"{PIPELINE}.crowd.tasks", b'{"task_id": 1}')
        # A compacted topic takes only keyed records (Kafka refuses others).
        await producer.send_and_wait(
            f"{PIPELINE}.control.models", b'{"classifier": "request"}', key=b"request"
        )
    finally:
        await producer.stop()
    rejected = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.items.rejected",
        lambda rs: "annotator" in {r["stage"] for r in values(rs)},
    )
    stages = {r["stage"]: r["reason"] for r in values(rejected)}
    assert "task_id" in stages["annotator"]
    assert await wait_until(
        lambda: worker.metric("crowdstream_models_refused_total", reason="schema_version") >= 1
    )
    assert worker.proc.poll() is None and worker.get("/healthz")[0] == 200


async def test_unsigned_tampered_unknown_version_and_stale_models_are_refused(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    from aiokafka import AIOKafkaProducer

    from channels.signing import ModelSigner

    # A genuine model of the pipeline (signed by its learner), re-sent as a forger would.
    models = await read_topic(
        broker.bootstrap, f"{PIPELINE}.control.models", lambda rs: len(rs) >= 1
    )
    assert models, "the learner published no model"
    genuine = orjson.loads(models[0].value)
    assert ModelSigner(TEST_MODEL_KEY).verify(models[0].value).version == genuine["version"]
    hijack = {**genuine, "version": 10_000}
    unsigned = {key: value for key, value in hijack.items() if key != "signature"}
    wrong_key = ModelSigner(b"not this pipeline's key").sign(
        ModelSigner(TEST_MODEL_KEY)
        .verify(orjson.dumps(genuine))
        .model_copy(update={"version": 10_000})
    )
    future = {**genuine, "schema_version": 99}
    before = {
        reason: worker.metric("crowdstream_models_refused_total", reason=reason)
        for reason in ("tampered", "unsigned", "schema_version", "stale")
    }
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        topic = f"{PIPELINE}.control.models"
        key = genuine["classifier"].encode()
        # ... and the genuine model replayed: validly signed, but not newer.
        replay = models[0].value
        for wire in (orjson.dumps(hijack), orjson.dumps(unsigned), wrong_key, orjson.dumps(future)):
            await producer.send_and_wait(topic, wire, key=key)
        await producer.send_and_wait(topic, replay, key=key)
    finally:
        await producer.stop()

    def refused(reason: str) -> float:
        return worker.metric("crowdstream_models_refused_total", reason=reason) - before[reason]

    assert await wait_until(
        lambda: (
            refused("tampered") >= 2
            and refused("unsigned") >= 1
            and refused("schema_version") >= 1
            and refused("stale") >= 1
        )
    )
    version = worker.metric("crowdstream_model_version", classifier=genuine["classifier"])
    assert 1 <= version < 10_000
    assert "signature does not match" in worker.log.read_text()
    assert "a stale learner or a replay is publishing" in worker.log.read_text()


async def test_http_post_items(broker: EmbeddedBroker, worker: Worker) -> None:
    status, body = worker.post("/items", b'{"id": "http-1", "text": "Our house collapsed"}')
    assert status == 202 and body["ids"] == ["http-1"] and body["rejected"] == 0
    status, body = worker.post("/items", b'{"text": "we need tents"}\n{"text": ""}\n')
    assert status == 202 and body["accepted"] == 1 and body["rejected"] == 1
    assert body["errors"][0]["record"] == 2 and "text" in body["errors"][0]["error"]
    generated = body["ids"][0]
    status, body = worker.post("/items", b'{"text": "unterminated')
    assert status == 400 and "invalid JSON" in body["error"]
    status, body = worker.post("/items", b"   ")
    assert status == 400 and "empty body" in body["error"]
    status, body = worker.post("/items", b'{"text": "' + b"a" * 5000 + b'"}')
    assert status == 413 and "4096" in body["error"]
    # A chunked body (no Content-Length) is read whole, and refused past the limit
    # (80 lines are ~6.5 KB, over the 4 KiB limit of this pipeline).
    lines = [
        orjson.dumps({"id": f"chunk-{i}", "text": "roads blocked " * 4}) + b"\n" for i in range(80)
    ]
    status, body = worker.post_chunks("/items", lines[:25])
    assert status == 202 and body["accepted"] == 25
    status, body = worker.post_chunks("/items", lines)
    assert status == 413
    records = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.items.classified",
        lambda rs: {"http-1", generated} <= {r.key.decode() for r in rs},
    )
    assert {"http-1", generated} <= {r.key.decode() for r in records}
    assert worker.metric("crowdstream_items_rejected_total", pe="collector") >= 2


def test_metrics_are_served_in_prometheus_format(worker: Worker) -> None:
    status, body = worker.get("/metrics")
    text = body.decode()
    assert status == 200
    for name in (
        "crowdstream_items_in_total",
        "crowdstream_items_out_total",
        "crowdstream_batch_processing_seconds_bucket",
        "crowdstream_end_to_end_latency_seconds_bucket",
        "crowdstream_crowd_tasks_total",
        "crowdstream_crowd_labels_total",
        "crowdstream_model_auc",
    ):
        assert name in text, name
    assert worker.get("/table")[0] == 404  # Faust's table endpoints stay off


async def test_a_third_party_kafka_client_produces_and_consumes(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        producer.produce(
            f"{PIPELINE}.items.raw",
            key=f"rdk-{i}",
            value=orjson.dumps({"id": f"rdk-{i}", "text": f"flood near bridge {i}"}),
        )
    assert producer.flush(10) == 0
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "third-party-reader",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    consumer.subscribe([f"{PIPELINE}.items.classified"])
    found: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is None or message.error():
                continue
            item = orjson.loads(message.value())
            if item["id"].startswith("rdk-"):
                found.add(item["id"])
            if len(found) == 20:
                break
    finally:
        consumer.close()
    assert found == {f"rdk-{i}" for i in range(20)}


async def test_a_classifier_in_its_own_process_reads_the_features_topic(
    broker: EmbeddedBroker, worker: Worker, topology: Path, tmp_path: Path
) -> None:
    """Unfused: a restarted classifier starts from the latest model, classifies what
    the features PE of another process writes, and rejects forged feature records."""
    from aiokafka import AIOKafkaProducer

    assert await wait_until(
        lambda: worker.metric("crowdstream_model_version", classifier="aid_related") >= 1
    )
    fresh = start_worker(broker, topology, tmp_path, "--pe", "classifier")
    try:
        assert await wait_until(
            lambda: fresh.metric("crowdstream_model_version", classifier="aid_related") >= 1,
            timeout_s=30,
        )
        forged = {"id": "forged", "text": "t", "ts": 1.0, "ts_in": 1.0}
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                f"{PIPELINE}.items.features",
                orjson.dumps({**forged, "idx": [2**30], "val": [1.0], "sig": 0}),
            )
        finally:
            await producer.stop()
        before = fresh.metric("crowdstream_items_out_total", pe="classifier")
        status, _ = worker.post("/items", b'{"id": "split-1", "text": "we need water"}')
        assert status == 202
        assert await wait_until(
            lambda: fresh.metric("crowdstream_items_out_total", pe="classifier") > before
        )
        rejected = await read_topic(
            broker.bootstrap,
            f"{PIPELINE}.items.rejected",
            lambda rs: "classifier" in {r["stage"] for r in values(rs)},
        )
        stages = {r["stage"]: r["reason"] for r in values(rejected)}
        assert "out of range" in stages["classifier"]
        assert fresh.metric("crowdstream_items_rejected_total", pe="classifier") >= 1
    finally:
        fresh.stop()
    assert fresh.proc.returncode == 0, fresh.tail()


def _cli(*args: str) -> list[str]:
    """Standard output lines of a crowdstream command (which must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], capture_output=True, timeout=60, check=True
    )
    return done.stdout.decode().splitlines()


def test_tail_and_topology_commands(broker: EmbeddedBroker, worker: Worker) -> None:
    common = ("--pipeline", PIPELINE, "--broker", broker.url, "--from-beginning", "--timeout", "30")
    lines = _cli("tail", *common, "--count", "3", "--json")
    assert len(lines) == 3 and all("labels" in orjson.loads(line) for line in lines)
    human = _cli("tail", *common, "--count", "2", "--classifier", "aid_related")
    assert len(human) == 2 and all("aid_related=" in line for line in human)
    assert any("(classifier)" in line for line in _cli("topology"))


def test_up_refuses_a_busy_http_port(broker: EmbeddedBroker, worker: Worker) -> None:
    port = worker.http.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "up", "--broker", broker.url, "--http-port", port],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"HTTP port {port} on 127.0.0.1 is in use" in done.stderr.decode()


def test_json_logs_name_the_pipeline_and_pe(worker: Worker) -> None:
    # The start-up banner (broker, HTTP address) is printed for people; every log
    # record after it is one JSON object.
    lines = worker.log.read_text().splitlines()
    records = [orjson.loads(line) for line in lines if line.startswith("{")]
    banner = [line for line in lines if not line.startswith("{")]
    assert all(
        line.startswith(("crowdstream ", "broker: ", "http: ", "crowd: ")) for line in banner
    ), banner
    assert len(records) >= 5
    assert all({"ts", "time", "level", "logger", "msg"} <= set(r) for r in records)
    assert {r.get("pipeline") for r in records} == {PIPELINE}
    learner = [r for r in records if r.get("pe") == "learner"]
    assert any("published model" in r["msg"] for r in learner)


async def test_results_api_lists_and_streams_classified_items(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    import aiohttp

    async with aiohttp.ClientSession(worker.http) as http:
        stream = await http.get("/api/v1/classified/stream", params={"classifier": "aid_related"})
        assert stream.status == 200
        fresh: list[dict[str, object]] = [
            {"id": f"api-{n}", "text": f"bridge {n} is down, we need water"} for n in range(5)
        ]
        await push_lines([broker.bootstrap], PIPELINE, _lines(fresh))
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while not {row["id"] for row in fresh} <= seen and time.monotonic() < deadline:
            line = await asyncio.wait_for(stream.content.readline(), 30)
            if line.startswith(b"data: "):
                seen.add(orjson.loads(line[6:])["id"])
        stream.close()
        assert {row["id"] for row in fresh} <= seen

        answer = await http.get(
            "/api/v1/classified", params={"classifier": "aid_related", "limit": "500"}
        )
        body = await answer.json()
        assert answer.status == 200 and body["count"] >= 5
        assert {row["id"] for row in fresh} <= {row["id"] for row in body["items"]}
        stamps = [row["ts_out"] for row in body["items"]]
        newest = max(stamps)
        recent = await http.get("/api/v1/classified", params={"since": str(newest)})
        assert all(row["ts_out"] >= newest for row in (await recent.json())["items"])
        bad = await http.get("/api/v1/classified", params={"classifier": "aid_related", "tag": "x"})
        assert bad.status == 400 and "has no tag" in (await bad.json())["error"]


def test_status_shows_a_running_worker(worker: Worker) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "status", "--url", worker.http]
        + ["--url", "http://127.0.0.1:1", "--once", "--json", "--interval", "0.5"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    summary = orjson.loads(done.stdout.splitlines()[-1])
    assert summary["workers_down"] == ["http://127.0.0.1:1"]
    assert set(summary["models"]) == {"aid_related", "request"}
    assert all(model["version"] >= 1 for model in summary["models"].values())
    assert "classifier" in summary["out_per_s"]
    text = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "status", "--url", worker.http, "--once"]
        + ["--interval", "0.2"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    assert "latency" in text and "aid_related v" in text
