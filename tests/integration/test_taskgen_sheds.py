"""Training tasks shed from a full crowd queue return their label budget, live and
after a restart of the worker."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import (
    read_all,
    read_topic,
    start_worker,
    values,
    write_topology,
)

pytestmark = pytest.mark.integration

PIPELINE = "tshed"
BUDGET = 40  #: training tasks per classifier
CLASSIFIERS = ("aid_related", "request")


def _count(labels: list[dict[str, Any]], status: str) -> Counter[str]:
    return Counter(label["classifier"] for label in labels if label["status"] == status)


def _enough(labels: list[dict[str, Any]], status: str, least: int) -> bool:
    counts = _count(labels, status)
    return all(counts[name] >= least for name in CLASSIFIERS)


async def _push(broker: EmbeddedBroker, rows: list[dict[str, Any]]) -> None:
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in rows])


async def test_shed_training_tasks_return_their_budget_across_a_restart(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # A crowd queue of two and a task rate several times what one worker answers:
    # most training tasks are shed.
    topology = write_topology(
        tmp_path,
        PIPELINE,
        annotator={
            "speed": 20.0,
            "pool_size": 1,
            "redundancy": 1,
            "max_queue": 2,
            "mitigation": False,
            "quality": {"enabled": False},
        },
        taskgen={"label_budget": BUDGET, "max_tasks_per_minute": 600, "round_interval_s": 0.1},
    )
    sample = load_sample(2400)
    labels_topic = f"{PIPELINE}.crowd.labels"
    worker = start_worker(broker, topology, tmp_path)
    try:
        await _push(broker, sample[:800])
        # More sheds than the whole budget: had they used it up, no task would follow.
        await read_topic(
            broker.bootstrap,
            labels_topic,
            lambda rs: _enough(values(rs), "shed", BUDGET),
            timeout_s=60,
        )
    finally:
        worker.stop()
    before = values(await read_all(broker.bootstrap, labels_topic))
    assert _enough(before, "shed", BUDGET), _count(before, "shed")
    assert all(_count(before, "labeled")[name] < BUDGET for name in CLASSIFIERS)

    # The restarted task generator rebuilds its budget from the tasks and their sheds.
    worker = start_worker(broker, topology, tmp_path)
    try:
        await _push(broker, sample[800:])
        await read_topic(
            broker.bootstrap,
            labels_topic,
            lambda rs: _enough(values(rs), "labeled", BUDGET),
            timeout_s=90,
        )
    finally:
        worker.stop()
    got = values(await read_all(broker.bootstrap, labels_topic))
    labeled = [label for label in got if label["status"] == "labeled"]
    assert _count(got, "labeled") == {name: BUDGET for name in CLASSIFIERS}
    # the budget holds: never more labels than it, and no item bought twice
    assert len({(label["classifier"], label["item_id"]) for label in labeled}) == len(labeled)
    assert all(label["job"] is None for label in got)
