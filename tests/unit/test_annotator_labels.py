"""The annotator writes every crowd label: in batches under load, again after a failed
write, and before its producer stops when the worker stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from config import load_settings
from pipelines.testing import PeHarness
from tests.unit.test_replay_crowd import SPEC, THREE, _record, _task, _topology

Records = Sequence[tuple[bytes | None, bytes]]


def _harness(tmp_path: Path, logs: dict[str, list[Any]] | None = None) -> PeHarness:
    """The annotator PE, its crowd replaying THREE 1,000 times faster than recorded;
    ``logs``: what its followed topics hold when it starts."""
    recording = _record(tmp_path / "answers.jsonl", THREE)
    return PeHarness(
        _topology(recording), ["annotator"], settings=load_settings(crowd=SPEC), logs=logs
    )


def _answers_counted(run: PeHarness) -> float:
    return sum(
        float(sample.value)
        for metric in run.context.metrics.crowd_answers.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def _until(check: Callable[[], bool], run: PeHarness) -> None:
    deadline = time.monotonic() + 10.0
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        await run.settle()
    assert check()


def _wrap(run: PeHarness, wrapper: Callable[[str, Records], Awaitable[Any]]) -> None:
    run.publisher.publish = wrapper  # type: ignore[method-assign,assignment]


async def test_a_stopping_worker_writes_the_crowd_labels_on_their_way(tmp_path: Path) -> None:
    async with _harness(tmp_path) as run:
        # The broker is slow to take the label: it is on its way when the worker stops.
        gate = asyncio.Event()
        publish = run.publisher.publish

        async def held(topic: str, records: Records) -> Any:
            await gate.wait()
            return await publish(topic, records)

        _wrap(run, held)
        await run.feed("crowd.tasks", [_task("i1")])
        await _until(lambda: _answers_counted(run) == 3, run)
        assert run.outputs("crowd.labels") == []
        drains: list[Awaitable[None]] = [drain() for drain in run.context.draining]
        stopping = asyncio.ensure_future(asyncio.gather(*drains))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # the stop waits for the label ...
        gate.set()
        await asyncio.wait_for(stopping, 5.0)
        # ... which is written before the producer would stop.
        assert [label["item_id"] for label in run.outputs("crowd.labels")] == ["i1"]


async def test_labels_that_come_while_one_is_written_go_out_together(tmp_path: Path) -> None:
    async with _harness(tmp_path) as run:
        gate = asyncio.Event()
        publish = run.publisher.publish
        calls: list[int] = []

        async def held(topic: str, records: Records) -> Any:
            calls.append(len(records))
            await gate.wait()
            return await publish(topic, records)

        _wrap(run, held)
        # Labels come after 5 ms (i2), 8 ms (b1) and 9 ms (i1).
        await run.feed("crowd.tasks", [_task("i1"), _task("i2"), _task("b1", "count")])
        await _until(lambda: _answers_counted(run) == 9, run)
        gate.set()
        await _until(lambda: len(run.outputs("crowd.labels")) == 3, run)
        assert sum(calls) == 3 and len(calls) < 3, calls


async def test_a_failed_write_is_tried_again(tmp_path: Path) -> None:
    async with _harness(tmp_path) as run:
        publish = run.publisher.publish
        failures: list[str] = []

        async def flaky(topic: str, records: Records) -> Any:
            if not failures:
                failures.append(topic)
                raise KafkaTimeoutError  # no room in the producer's queue in time
            return await publish(topic, records)

        _wrap(run, flaky)
        await run.feed("crowd.tasks", [_task("i1")])
        await _until(lambda: len(run.outputs("crowd.labels")) == 1, run)
        assert len(failures) == 1
        assert [label["item_id"] for label in run.outputs("crowd.labels")] == ["i1"]


async def test_a_restarted_annotator_answers_only_the_tasks_without_an_outcome(
    tmp_path: Path,
) -> None:
    async with _harness(tmp_path) as run:
        await run.feed("crowd.tasks", [_task("i1")])
        await _until(lambda: len(run.outputs("crowd.labels")) == 1, run)
        labels = run.outputs("crowd.labels")
    # Its logs after the restart: i1 and its outcome, and i2, issued while it was down.
    tasks = [_task("i1").model_dump(mode="json"), _task("i2").model_dump(mode="json")]
    async with _harness(tmp_path, {"crowd.tasks": tasks, "crowd.labels": labels}) as again:
        await _until(lambda: len(again.outputs("crowd.labels")) == 1, again)
        # i1's record read again (a follower hands a batch again after an error).
        await again.feed("crowd.tasks", [_task("i1")])
        await asyncio.sleep(0.2)  # had it been queued, it would be answered by now
        await again.settle()
        assert [label["item_id"] for label in again.outputs("crowd.labels")] == ["i2"]
