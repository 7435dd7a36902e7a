"""The annotator's retainer pool, driven by the simulated crowd through the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import (
    Worker,
    read_topic,
    start_worker,
    values,
    wait_until,
    write_topology,
)

pytestmark = pytest.mark.integration

PIPELINE = "atest"
BUDGET = 40  #: tasks per classifier


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    topology: Path = write_topology(
        tmp_path_factory.mktemp("topology"),
        PIPELINE,
        # Fixed redundancy (no quality loop): this test is about straggler mitigation.
        annotator={
            "speed": 200.0,
            "pool_size": 8,
            "redundancy": 3,
            "mitigation": True,
            "quality": {"enabled": False},
        },
        taskgen={"max_tasks_per_minute": 6000, "round_interval_s": 0.1, "label_budget": BUDGET},
        learner={"retrain_every": 20, "min_train": 10},
    )
    running = start_worker(broker, topology, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


async def test_the_pool_labels_a_stream_with_straggler_mitigation(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    sample = load_sample(600)
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in sample])
    labels = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.crowd.labels",
        lambda rs: len(rs) >= 2 * BUDGET,
        timeout_s=120,
    )
    got = values(labels)
    assert len(got) == 2 * BUDGET  # every task of both classifiers, once
    assert len({(label["item_id"], label["classifier"]) for label in got}) == 2 * BUDGET
    for label in got:
        # three votes from three distinct workers, whatever mitigation did
        assert len({answer["worker_id"] for answer in label["answers"]}) == 3
    # When the last tasks were assigned, idle workers got duplicates; the first
    # answers won and the slower assignments were terminated (and paid).
    assert worker.metric("crowdstream_pool_events_total", event="duplicate") > 0
    assert worker.metric("crowdstream_pool_events_total", event="termination") > 0
    assert worker.metric("crowdstream_pool_events_total", event="recruit") >= 8
    # work is paid per record to each classifier's job, waiting to the pool
    cost = worker.metric("crowdstream_crowd_cost", kind="work")
    per_job = [
        worker.metric("crowdstream_crowd_cost", kind="work", job=job)
        for job in ("aid_related", "request")
    ]
    assert all(c > 0 for c in per_job) and sum(per_job) == pytest.approx(cost)
    assert worker.metric("crowdstream_crowd_cost", kind="waiting", job="pool") > 0
    assert worker.metric("crowdstream_crowd_task_seconds_count") == 2 * BUDGET
    # the labels reach the learner
    assert await wait_until(
        lambda: worker.metric("crowdstream_items_in_total", pe="learner") >= 2 * BUDGET
    )
