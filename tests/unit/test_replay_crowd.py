"""The replay crowd (examples/replay_crowd.py), a crowd adapter of a user's own: a
recording made with the answers export, replayed through the real pool service on a
virtual clock, and plugged into the annotator PE with the ``crowd`` setting."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from channels.codec import encode
from channels.records import NA_TAG, Answer, BatchItem, Label, Task, TaskForm
from config import load_settings
from examples.replay_crowd import ReplayCrowd, read_recording, replay_crowd
from pe.annotator.clock import VirtualClock
from pe.annotator.crowd import GoldItem
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.plugin import CrowdSetup, crowd_factory, make_crowd
from pe.annotator.pool import (
    AnswerOutcome,
    AnswerValue,
    Finished,
    PoolConfig,
    PoolWorker,
    RetainerPool,
)
from pe.common.export import EXPORTS, Exporter
from pe.params import AnnotatorParams
from pipelines.testing import PeHarness
from pipelines.topology import Topology, load_topology

SPEC = "examples.replay_crowd:replay_crowd"
#: What a recorded crowd answered: item -> (worker, tag or count, latency), in order.
Recorded = dict[str, list[tuple[str, str | int, float]]]


def _record(path: Path, recorded: Recorded) -> Path:
    """A recording as the answers export writes it, from labels as the annotator
    writes them to crowd.labels."""
    export = EXPORTS["answers"]
    exporter = Exporter(export, "jsonl")
    rows: list[dict[str, Any]] = []
    for item, answers in recorded.items():
        label = Label(
            item_id=item,
            classifier="aid_related",
            tag=None,
            agreement=0.0,
            answers=[
                Answer(
                    task_id=f"old-{item}",
                    worker_id=worker,
                    latency_s=latency,
                    **({"count": value} if isinstance(value, int) else {"tag": value}),
                )
                for worker, value, latency in answers
            ],
            ts=1000.0,
            idx=[],
            val=[],
        )
        rows.extend(export.rows(SimpleNamespace(value=encode(label))))
    path.write_bytes(exporter.batch(rows))
    return path


def _task(
    item: str, form: TaskForm = "label", *, na_allowed: bool = True, task_id: str = ""
) -> Task:
    counting = form == "count"
    return Task(
        task_id=task_id or f"t-{item}",
        item_id=item,
        classifier="aid_related",
        question="Is this message about aid?",
        tags=["yes", "no"],
        na_allowed=na_allowed,
        text=f"message {item}",
        kind="passive",
        created=0.0,
        idx=[],
        val=[],
        form=form,
        batch=[BatchItem(id=f"{item}-{i}", text="x") for i in range(3 if counting else 0)],
        count_tag="yes" if counting else None,
    )


class _Guard(LifeGuard):
    """The pool service, noting every answer the crowd gives it (when, and the outcome)."""

    def __init__(self, config: PoolConfig, clock: VirtualClock, gold: list[GoldItem]) -> None:
        self.finished: list[Finished] = []
        super().__init__(
            RetainerPool(config, random.Random(1)),
            clock,
            on_finished=self.finished.append,
            gold=gold,
        )
        self.answered: list[tuple[float, str, str, AnswerValue, AnswerOutcome]] = []
        self.virtual = clock

    def answer(self, worker_id: str, task_id: str, value: AnswerValue) -> AnswerOutcome:
        outcome = super().answer(worker_id, task_id, value)
        self.answered.append((self.clock.now(), worker_id, task_id, value, outcome))
        return outcome


def _replay(
    recording: Path,
    config: PoolConfig,
    tasks: Sequence[Task] = (),
    *,
    returning: list[str] | None = None,
    gold: list[GoldItem] | None = None,
) -> tuple[ReplayCrowd, _Guard]:
    """The crowd of ``recording`` in a pool on a virtual clock: everyone joins, then
    ``tasks`` come at t=1 and are worked on for 1,000 s."""
    clock = VirtualClock()
    guard = _Guard(config, clock, gold or [])
    if returning:
        guard.pool.restore([PoolWorker(w, 0.0, 0.0, qualified=True) for w in returning], 0.0)
    crowd = ReplayCrowd(read_recording(recording), clock)
    guard.start(crowd, returning)
    clock.run(until=1.0)
    for task in tasks:
        guard.submit(task.task_id, task, size=max(len(task.batch), 1), topic=task.classifier)
    clock.run(until=1000.0)
    return crowd, guard


def _votes(done: Finished) -> list[tuple[str, AnswerValue, float]]:
    return sorted((v.worker_id, v.value, v.seconds) for v in done.task.answers)


#: Three workers; w2 answered i2 first (the roster is w1, w2, w3: first answers).
THREE: Recorded = {
    "i1": [("w1", "yes", 4.0), ("w2", "yes", 6.0), ("w3", "no", 9.0)],
    "i2": [("w2", "no", 3.0), ("w3", "no", 5.0), ("w1", "yes", 2.5)],
    "b1": [("w3", 3, 7.0), ("w1", 2, 8.0), ("w2", 2, 4.0)],
}


def test_a_recording_replays_its_workers_tags_counts_and_latencies(tmp_path: Path) -> None:
    recording = _record(tmp_path / "answers.jsonl", THREE)
    tasks = [_task("i1"), _task("i2"), _task("b1", "count")]
    crowd, guard = _replay(recording, PoolConfig(target_size=3, votes=3, mitigation=False), tasks)
    assert sorted(guard.pool.workers) == ["replay-w1", "replay-w2", "replay-w3"]
    done = {f.task.task_id: f for f in guard.finished}
    for item, answers in THREE.items():
        expected = sorted((f"replay-{w}", value, latency) for w, value, latency in answers)
        assert _votes(done[f"t-{item}"]) == expected, item
    assert crowd.replayed == {"own": 9}
    # i1 went to all three at t=1 and took as long as its slowest recorded answer.
    assert done["t-i1"].seconds == 9.0


def test_a_replay_is_deterministic(tmp_path: Path) -> None:
    """Mitigation, terminations, N/A, guesses and answers given by other workers than
    their own: two replays answer alike, at the same times."""
    recording = _record(tmp_path / "answers.jsonl", {**THREE, "i3": [("w1", "yes", 5.0)]})
    tasks = [
        *(_task(item) for item in ("i1", "i2", "i3", "i4")),
        *(_task(item, na_allowed=False) for item in ("s1", "s2", "s3", "s4")),
        _task("b1", "count"),
        _task("b2", "count"),
    ]
    config = PoolConfig(target_size=3, votes=2, mitigation=True)
    runs = [_replay(recording, config, tasks) for _ in range(2)]
    (first, one), (second, two) = runs
    assert one.answered == two.answered
    assert [(f.task.task_id, f.seconds, _votes(f)) for f in one.finished] == [
        (f.task.task_id, f.seconds, _votes(f)) for f in two.finished
    ]
    assert first.replayed == second.replayed
    assert set(first.replayed) == {"own", "other", "na", "guess"}
    assert one.pool.counts["terminations"] > 0


def test_a_worker_without_an_answer_of_their_own_gives_someone_else_s(tmp_path: Path) -> None:
    recording = _record(
        tmp_path / "answers.jsonl", {"i1": [("w1", "yes", 4.0)], "i2": [("w2", "no", 3.0)]}
    )
    # A pool of one: w1 gives w2's answer to i2, then their own to i1.
    config = PoolConfig(target_size=1, votes=1, mitigation=False)
    crowd, guard = _replay(recording, config, [_task("i2"), _task("i1")])
    assert {f.task.task_id: _votes(f) for f in guard.finished} == {
        "t-i2": [("replay-w1", "no", 3.0)],
        "t-i1": [("replay-w1", "yes", 4.0)],
    }
    assert crowd.replayed == {"other": 1, "own": 1}


def test_a_terminated_or_released_worker_s_answer_never_comes(tmp_path: Path) -> None:
    # i1 goes to w1 (both joined at 0: the first to join is available longest), who
    # takes 100 s; w2, idle, gets a duplicate and has nothing recorded left for it:
    # N/A after w2's usual 2 s ends the task and terminates w1's.
    recording = _record(
        tmp_path / "answers.jsonl", {"i1": [("w1", "yes", 100.0)], "i9": [("w2", "no", 2.0)]}
    )
    crowd, guard = _replay(recording, PoolConfig(target_size=2, votes=1), [_task("i1")])
    (done,) = guard.finished
    assert _votes(done) == [("replay-w2", NA_TAG, 2.0)]
    assert [a[1:4] for a in guard.answered] == [("replay-w2", "t-i1", NA_TAG)]

    # The answer w1 did not give went back to the recording: a later task about i1,
    # with w2 gone, gets it.
    clock = guard.virtual
    guard.release("replay-w2")
    guard.submit("t-i1-again", _task("i1", task_id="t-i1-again"))
    clock.run(until=clock.now() + 200.0)
    assert _votes(guard.finished[-1]) == [("replay-w1", "yes", 100.0)]

    # Released while answering (i5 is not recorded: N/A after 100 s): the pool
    # terminates the assignment, the crowd lets the worker go, and nothing comes.
    guard.submit("t-i5", _task("i5"))
    clock.run(until=clock.now() + 10.0)
    assert guard.release("replay-w1")
    assert not crowd.workers
    clock.run(until=clock.now() + 500.0)
    assert [a[2] for a in guard.answered] == ["t-i1", "t-i1-again"]
    assert crowd.replayed == {"na": 1, "own": 1}


def test_what_nothing_recorded_is_answered_with(tmp_path: Path) -> None:
    recording = _record(tmp_path / "answers.jsonl", {"i1": [("w1", "yes", 3.0)]})
    tasks = [
        _task("none"),
        _task("strict", na_allowed=False),
        _task("b9", "count"),
        _task("e9", "enumerate"),
    ]
    config = PoolConfig(target_size=1, votes=1, mitigation=False)
    crowd, guard = _replay(recording, config, tasks)
    votes = {f.task.task_id: _votes(f) for f in guard.finished}
    assert votes["t-none"] == [("replay-w1", NA_TAG, 3.0)]  # w1's mean latency
    assert votes["t-e9"] == [("replay-w1", (), 3.0)]  # "nothing found"
    # Where N/A is not an answer, a guess: a tag, or a count up to the batch's size,
    # the same in every replay.
    (_, tag, _), (_, count, _) = votes["t-strict"][0], votes["t-b9"][0]
    assert tag in ("yes", "no") and count in range(4)
    _, again = _replay(recording, config, tasks)
    assert {f.task.task_id: _votes(f) for f in again.finished} == votes
    assert crowd.replayed == {"na": 2, "guess": 2}

    # Stopped while answering: every worker goes, and nothing more comes.
    given = len(guard.answered)
    guard.submit("t-late", _task("late"))
    guard.stop()
    assert not crowd.workers
    guard.virtual.run(until=2000.0)
    assert len(guard.answered) == given


def test_returning_workers_come_back_and_recorded_ones_pass_the_quiz(tmp_path: Path) -> None:
    recording = _record(tmp_path / "answers.jsonl", THREE)
    # Restored after a restart: replay-w2 comes back, and only w1 and w3 are recruited.
    _, guard = _replay(recording, PoolConfig(target_size=3), returning=["replay-w2"])
    assert sorted(guard.pool.workers) == ["replay-w1", "replay-w2", "replay-w3"]
    assert guard.pool.away == 0
    assert guard.pool.counts["recruited"] == 2

    gold = [GoldItem(f"g{i}", "text", "q?", ["yes", "no"], "no") for i in range(3)]
    _, quizzed = _replay(recording, PoolConfig(target_size=3, qualification=2), gold=gold)
    assert len(quizzed.pool.available) == 3 and quizzed.pool.qualifying == 0


def test_the_plug_in_loader_takes_the_example_and_refuses_bad_specs(tmp_path: Path) -> None:
    assert crowd_factory(SPEC) is replay_crowd
    recording = _record(tmp_path / "answers.jsonl", THREE)
    clock = VirtualClock()
    options = {"path": str(recording), "prefix": "rec"}
    crowd = make_crowd(SPEC, CrowdSetup(clock, AnnotatorParams(crowd_options=options)))
    assert isinstance(crowd, ReplayCrowd) and crowd.prefix == "rec"

    for spec, words in [
        ("examples.replay_crowd", "expected simulated, web, none or package.module:factory"),
        (":replay_crowd", "expected simulated"),
        ("examples.no_such_module:make", "module 'examples.no_such_module' cannot be imported"),
        ("examples.replay_crowd:nothing", "module 'examples.replay_crowd' has no 'nothing'"),
        ("examples.replay_crowd:log", "'log' is a Logger, not a callable"),
    ]:
        with pytest.raises(ValueError, match=words):
            crowd_factory(spec)
    with pytest.raises(TypeError, match="'builtins:str' returned a str, not a CrowdAdapter"):
        make_crowd("builtins:str", CrowdSetup(clock, AnnotatorParams()))
    with pytest.raises(ValueError, match="crowd_options.path"):
        make_crowd(SPEC, CrowdSetup(clock, AnnotatorParams()))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "i1", "classifier": "c", "worker_id": "w"}\n')
    with pytest.raises(ValueError, match="bad.jsonl: answer 1: .*latency_s"):
        read_recording(bad)
    enumerations = tmp_path / "enumerations.jsonl"  # answers without a tag or a count
    enumerations.write_text('{"item_id": "i1", "classifier": "", "worker_id": "w", "latency_s": 1}')
    with pytest.raises(ValueError, match="no label or count answers to replay"):
        ReplayCrowd(read_recording(enumerations), clock)


def _topology(recording: Path) -> Topology:
    data = load_topology("crisis").model_dump(mode="json")
    data["params"]["annotator"] = {
        "pool_size": 3,
        "redundancy": 3,
        "mitigation": False,
        "quality": {"enabled": False},
        "speed": 1000,  # the recorded seconds pass in milliseconds
        "crowd_options": {"path": str(recording)},
    }
    return Topology.model_validate(data)


async def test_the_annotator_pe_runs_a_plugged_in_crowd(tmp_path: Path) -> None:
    recording = _record(tmp_path / "answers.jsonl", THREE)
    settings = load_settings(crowd=SPEC)
    async with PeHarness(_topology(recording), ["annotator"], settings=settings) as run:
        await run.feed("crowd.tasks", [_task("i1"), _task("i2")])
        deadline = time.monotonic() + 10.0
        labels: list[dict[str, Any]] = []
        while len(labels) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            await run.settle()
            labels = run.outputs("crowd.labels")
    answers = {
        label["item_id"]: sorted((a["worker_id"], a["tag"]) for a in label["answers"])
        for label in labels
    }
    assert answers == {
        item: sorted((f"replay-{w}", tag) for w, tag, _ in THREE[item]) for item in ("i1", "i2")
    }
    assert {label["item_id"]: label["tag"] for label in labels} == {"i1": "yes", "i2": "no"}
