"""A live learning run on a local worker: the crowd's answers bought through the
running pipeline, and the model they bought scored on items held out of the stream.
``crowdstream demo`` and ``bench/live_learning.py`` run it.

1. The stream flows and the crowd waits: the classifiers are paused (no crowd tasks)
   until the learner's sample holds ``prefill`` items embedded for its teacher, as a
   crisis stream flows long before the crowd has bought much; the teacher embeds far
   fewer items a second than a sped-up crowd labels (``prefill`` 0: the crowd starts
   at once). The stream goes on, lap after lap if it must (:func:`laps`).
2. The crowd spends its budget (``taskgen.answer_budget``): no outcome for
   ``quiet_s``.
3. The learner's last training saw every label it holds
   (``crowdstream_learner_trained_labels``), and its model reaches the classifier.
4. The stream stops, and the classifier's second pass finishes what the stream
   left it (its queue keeps the most doubtful items, and the held-out ones must not
   compete with the stream's for it: the held-out items stand for the stream, not
   for what follows it).
5. The held-out items, never streamed, are pushed under ids ``held-<id>`` and read
   back from ``items.classified``, their second opinions too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from channels.records import ClassifiedItem
from pipelines.client import laps, push_lines
from pipelines.local import LocalWorker
from pipelines.report import RunLog

__all__ = ["HELD", "LivePlan", "LiveRun", "live_crowd", "live_run"]

#: The prefix of the held-out items' ids (and record keys).
HELD = "held-"
#: How often a run calls its ``tick``.
TICK_S = 1.0
#: After the last training, for its model to reach the classifier.
SETTLE_S = 2.0


def live_crowd(
    answers: int, speed: float, task_rate: float, teacher_rate: float
) -> tuple[str, ...]:
    """A live run's settings over the default configuration: the crowd the quality
    targets name (the ``live`` population, 10% spammers), its clock ``speed`` times
    faster and the task rate cap (``task_rate`` a minute) raised to match, so minutes of
    crowd work take seconds; ``answers`` crowd answers per classifier; and the rate at
    which the learner samples the stream for its teacher."""
    return (
        "annotator.population=live",
        "annotator.spammers=0.1",
        f"annotator.speed={speed:g}",
        f"taskgen.answer_budget={answers}",
        f"taskgen.max_tasks_per_minute={task_rate:g}",
        "taskgen.round_interval_s=0.25",
        f"learner.teacher_rate={teacher_rate:g}",
    )


@dataclass(frozen=True)
class LivePlan:
    """How a live run goes (see the module's steps)."""

    pipeline: str
    classifiers: tuple[str, ...]
    rate: float  #: stream items/s
    prefill: int  #: items embedded for the teacher before the crowd starts; 0: at once
    quiet_s: float = 20.0  #: the budget is spent when no outcome came for this long
    timeout_s: float = 1800.0  #: the longest wait of any one step


@dataclass
class LiveRun:
    """A live run's record: what it read (``log``), its held-out items by their id on
    the topics, and how its steps went."""

    log: RunLog
    held: dict[str, dict[str, Any]]
    step: str = "stream"  #: "stream" (the crowd waits), "crowd", "held-out", "done"
    status: str = ""  #: where the current step is, in words
    budget_spent: bool = False
    holdout_scored: bool = False
    prefill_s: float = 0.0
    training_s: float = 0.0
    teacher_embedded: float = 0.0

    def scored(self) -> list[ClassifiedItem]:
        """The held-out items' classifications by the model read back: the first, or
        the second opinion that revised it."""
        return [self.log.classified[key] for key in self.held if key in self.log.classified]

    def first_pass(self) -> list[ClassifiedItem]:
        """The held-out items' first classifications read back."""
        first, latest = self.log.first_pass, self.log.classified
        return [first.get(key, latest[key]) for key in self.held if key in latest]

    def truth(self) -> dict[str, dict[str, str]]:
        """Each held-out item's ``meta.truth``, by its id on the topics."""
        return {key: item["meta"]["truth"] for key, item in self.held.items()}


async def live_run(
    bootstrap: str,
    worker: LocalWorker,
    stream: Sequence[dict[str, Any]],
    holdout: Sequence[dict[str, Any]],
    plan: LivePlan,
    *,
    keep: bytes = b"",
    tick: Callable[[LiveRun], None] | None = None,
) -> LiveRun:
    """Run ``plan`` on ``worker``: ``stream`` flows into ``items.raw`` at
    ``plan.rate``, then ``holdout`` is scored. ``keep``: read back only the
    classifications whose key starts with it (:class:`RunLog`); ``tick(run)``: called
    every second, for progress."""
    topics = ("crowd.labels", "control.models", "items.classified", "items.rejected")
    consumer = AIOKafkaConsumer(
        *(f"{plan.pipeline}.{topic}" for topic in topics),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    run = LiveRun(
        RunLog(started=time.time(), keep=keep),
        {f"{HELD}{item['id']}": {**item, "id": f"{HELD}{item['id']}"} for item in holdout},
    )
    await consumer.start()
    try:
        await _train(consumer, worker, stream, run, plan, bootstrap, tick)
        run.step = "second opinions on the stream"
        await _read(consumer, run, _second_opinions_written(worker, run), plan.timeout_s, tick)
        run.step = "held-out"
        run.log.pushed += await push_lines(
            [bootstrap], plan.pipeline, [orjson.dumps(item) for item in run.held.values()]
        )
        progress = {"count": 0, "at": time.monotonic()}

        def scored_or_stuck() -> bool:
            count = sum(key in run.log.classified for key in run.held)
            run.status = f"{count:,}/{len(run.held):,} held-out items scored"
            if count > progress["count"]:
                progress.update(count=count, at=time.monotonic())
            return count == len(run.held) or time.monotonic() - progress["at"] >= plan.quiet_s

        await _read(consumer, run, scored_or_stuck, plan.timeout_s, tick)
        run.holdout_scored = all(key in run.log.classified for key in run.held)
        await _read(consumer, run, _second_opinions_written(worker, run), plan.timeout_s, tick)
        run.teacher_embedded = await asyncio.to_thread(worker.teacher_embedded)
        run.step = "done"
    finally:
        await consumer.stop()
    return run


async def _train(
    consumer: AIOKafkaConsumer,
    worker: LocalWorker,
    stream: Sequence[dict[str, Any]],
    run: LiveRun,
    plan: LivePlan,
    bootstrap: str,
    tick: Callable[[LiveRun], None] | None,
) -> None:
    """Steps 1-3: the stream flows until the learner's last model is out."""

    def pushed(_: str) -> None:
        run.log.pushed += 1

    if plan.prefill:
        await asyncio.to_thread(worker.set_classifiers, plan.classifiers, "pause")
    push = asyncio.create_task(
        push_lines([bootstrap], plan.pipeline, laps(stream), plan.rate, expect=pushed)
    )
    try:
        if plan.prefill:
            begun = time.monotonic()

            def embedded() -> bool:
                run.teacher_embedded = worker.teacher_embedded()
                run.status = f"teacher sample {run.teacher_embedded:,.0f}/{plan.prefill:,} embedded"
                return run.teacher_embedded >= plan.prefill

            if not await _read(consumer, run, embedded, plan.timeout_s, tick):
                raise RuntimeError(f"the teacher's sample did not reach {plan.prefill} items")
            run.prefill_s = time.monotonic() - begun
            await asyncio.to_thread(worker.set_classifiers, plan.classifiers, "resume")
        run.step = "crowd"
        started = time.monotonic()
        log = run.log

        def spent() -> bool:
            run.status = ", ".join(
                f"{name} {log.answers.get(name, 0)} answers" for name in plan.classifiers
            )
            quiet = time.monotonic() - max(log.last_label, started) >= plan.quiet_s
            return quiet and all(log.answers.get(name) for name in plan.classifiers)

        run.budget_spent = await _read(consumer, run, spent, plan.timeout_s, tick)

        def trained() -> bool:
            run.status = "the learner trains on the last labels"
            return worker.trained_on_all(plan.classifiers)

        await _read(consumer, run, trained, plan.timeout_s, tick)
        await _read(consumer, run, lambda: False, SETTLE_S, tick)
        run.training_s = time.monotonic() - started
    finally:
        push.cancel()
        # Nothing of the stream after this: the held-out items follow alone.
        await asyncio.gather(push, return_exceptions=True)


def _second_opinions_written(worker: LocalWorker, run: LiveRun) -> Callable[[], bool]:
    """True once the classifier's second pass has nothing waiting at two checks a
    second apart: the items it decided again by the first are then read back (the
    held-out ones; the stream's are not kept)."""
    state = {"at": 0.0, "idle": 0}

    def written() -> bool:
        if time.monotonic() - state["at"] >= 1.0:
            state["at"] = time.monotonic()
            waiting = worker.second_opinions_waiting()
            state["idle"] = state["idle"] + 1 if waiting == 0 else 0
            run.status = (
                f"{waiting:,.0f} items wait for a second opinion; "
                f"{run.log.second_opinions:,} held-out second opinions read"
            )
        return state["idle"] >= 2

    return written


async def _read(
    consumer: AIOKafkaConsumer,
    run: LiveRun,
    until: Callable[[], bool],
    timeout_s: float,
    tick: Callable[[LiveRun], None] | None,
) -> bool:
    """Read into ``run.log`` until ``until()`` holds (True) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    next_tick = time.monotonic() + TICK_S
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for record in records:
                run.log.take(tp.topic, record.key, record.value)
        done = until()
        if tick is not None and (done or time.monotonic() >= next_tick):
            tick(run)
            next_tick = time.monotonic() + TICK_S
        if done:
            return True
    return False
