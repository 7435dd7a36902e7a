"""Retainer pool scheduling, majority vote and the simulated crowd."""

from __future__ import annotations

import asyncio
import random

import pytest

from channels.records import NA_TAG, Answer, Task
from pe.annotator.aggregate import majority_vote
from pe.annotator.crowd import CrowdEvents, SimulatedCrowd, SimulatedWorker
from pe.annotator.pool import RetainerPool
from pe.params import AnnotatorParams


def _task(task_id: str, truth: str | None = "yes") -> Task:
    return Task(
        task_id=task_id,
        item_id=f"item-{task_id}",
        classifier="c",
        question="q?",
        tags=["yes", "no"],
        text="t",
        idx=[],
        val=[],
        kind="passive",
        created=0.0,
        truth=truth,
    )


def _answer(task_id: str, worker: str, tag: str = "yes") -> Answer:
    return Answer(task_id=task_id, worker_id=worker, tag=tag, latency_s=1.0)


def test_each_task_goes_to_distinct_workers_until_it_has_its_answers() -> None:
    pool = RetainerPool(answers_per_task=2)
    for w in ("a", "b", "c"):
        pool.add_worker(w)
    pool.enqueue(_task("t1"))
    pool.enqueue(_task("t2"))
    assert pool.assign() == [("a", _task("t1")), ("b", _task("t1")), ("c", _task("t2"))]
    assert pool.available == [] and pool.waiting == 1
    assert pool.complete(_answer("t1", "a")) is None
    # a is free again: it gets t2, never t1 a second time
    assert pool.assign() == [("a", _task("t2"))]
    done = pool.complete(_answer("t1", "b", "no"))
    assert done is not None and [x.worker_id for x in done.answers] == ["a", "b"]
    assert "t1" not in pool.tasks


def test_a_duplicate_task_id_is_queued_once() -> None:
    pool = RetainerPool(answers_per_task=1)
    assert pool.enqueue(_task("t1"))
    assert not pool.enqueue(_task("t1"))
    assert pool.waiting == 1


def test_a_worker_who_leaves_returns_their_task_to_the_queue() -> None:
    pool = RetainerPool(answers_per_task=1)
    pool.add_worker("a")
    pool.enqueue(_task("t1"))
    assert pool.assign() == [("a", _task("t1"))]
    pool.remove_worker("a")
    assert pool.waiting == 1
    # the answer of a worker no longer holding the task is not a vote
    assert pool.complete(_answer("t1", "a")) is None
    pool.add_worker("b")
    assert pool.assign() == [("b", _task("t1"))]
    assert pool.complete(_answer("t1", "b")) is not None


@pytest.mark.parametrize(
    ("answers", "needed", "expected"),
    [
        (["yes", "yes", "no"], 2, ("yes", 2 / 3)),
        (["yes", "no", NA_TAG], 2, (None, 1 / 3)),
        (["yes", "no"], 1, (None, 0.5)),  # a tie is no label
        ([NA_TAG, NA_TAG, "yes"], 2, (None, 2 / 3)),  # "no label" never trains
        (["no"], 1, ("no", 1.0)),
        ([], 1, (None, 0.0)),
    ],
)
def test_majority_vote(answers: list[str], needed: int, expected: tuple[str | None, float]) -> None:
    tag, share = majority_vote(answers, needed)
    assert tag == expected[0]
    assert share == pytest.approx(expected[1])


def test_simulated_worker_answers_with_its_accuracy() -> None:
    rng = random.Random(3)
    worker = SimulatedWorker("w", median_latency_s=10.0, spread=0.5, accuracy=0.8)
    answers = [worker.answer(_task("t"), rng) for _ in range(5000)]
    assert answers.count("yes") / len(answers) == pytest.approx(0.8, abs=0.02)
    assert set(answers) == {"yes", "no"}
    assert worker.answer(_task("t", truth=None), rng) == NA_TAG
    latencies = sorted(worker.latency(rng) for _ in range(5001))
    assert latencies[2500] == pytest.approx(10.0, rel=0.05)  # the median


async def test_simulated_crowd_runs_faster_by_its_speed_factor() -> None:
    crowd = SimulatedCrowd.from_params(
        AnnotatorParams(
            pool_size=3,
            redundancy=1,
            latency_median_s=20.0,
            latency_spread=0.1,
            accuracy_min=1.0,
            accuracy_max=1.0,
            speed=1000.0,
            seed=1,
        )
    )
    joined: list[str] = []
    answers: list[tuple[str, str, str, float]] = []
    done = asyncio.Event()

    def answered(worker: str, task_id: str, tag: str, seconds: float) -> None:
        answers.append((worker, task_id, tag, seconds))
        done.set()

    await crowd.start(CrowdEvents(joined.append, lambda w: None, answered))
    assert joined == ["sim-0", "sim-1", "sim-2"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    crowd.offer("sim-0", _task("t1"))
    await asyncio.wait_for(done.wait(), timeout=2)
    # ~20 simulated seconds pass in ~20 ms of real time
    assert loop.time() - started < 1.0
    worker, task_id, tag, seconds = answers[0]
    assert (worker, task_id, tag) == ("sim-0", "t1", "yes") and seconds > 5
    await crowd.stop()


def test_simulated_workers_differ_within_the_configured_ranges() -> None:
    params = AnnotatorParams(
        pool_size=50,
        latency_median_s=10.0,
        latency_spread=0.4,
        accuracy_min=0.7,
        accuracy_max=0.9,
        seed=5,
    )
    crowd = SimulatedCrowd.from_params(params)
    workers = list(crowd.workers.values())
    assert all(0.7 <= w.accuracy <= 0.9 for w in workers)
    assert all(0.2 <= w.spread <= 0.6 for w in workers)
    assert len({round(w.median_latency_s, 6) for w in workers}) == 50
    medians = sorted(w.median_latency_s for w in workers)
    assert 5.0 < medians[25] < 20.0  # centred on the population median
    again = SimulatedCrowd.from_params(params)
    assert list(again.workers.values()) == workers  # a seed reproduces the crowd
