"""The pool service: a retainer pool driven by a clock and a crowd platform.

Named after CLAMShell's LifeGuard, which schedules a batch's tasks on the pool. It
is the :class:`~pe.annotator.crowd.WorkerDesk` platforms call for their workers,
carries out the pool's effects on the platform (offers, terminations, releases,
recruitment), runs qualification with gold items, and checks heartbeats. Finished
tasks and batches go to callbacks; every effect goes to an optional observer (the
annotator's metrics).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pe.annotator.assurance import QualityLoop
from pe.annotator.clock import Clock
from pe.annotator.crowd import CrowdAdapter, GoldItem
from pe.annotator.pool import (
    AnswerOutcome,
    AnswerValue,
    BatchDone,
    Effect,
    Finished,
    Left,
    Offer,
    Recruit,
    Release,
    RetainerPool,
    Shed,
    Terminate,
)

__all__ = ["LifeGuard"]


class LifeGuard:
    def __init__(
        self,
        pool: RetainerPool,
        clock: Clock,
        *,
        on_finished: Callable[[Finished], None],
        on_batch: Callable[[BatchDone], None] | None = None,
        on_shed: Callable[[Shed], None] | None = None,
        observe: Callable[[Effect], None] | None = None,
        gold: list[GoldItem] | None = None,
        rng: random.Random | None = None,
        quality: QualityLoop | None = None,
    ) -> None:
        """``gold``: qualification questions; ``quality``: the loop that is also the
        pool's judge (quiz answers are evidence of a worker's quality)."""
        k = pool.config.qualification
        if k and len(gold or []) < k:
            raise ValueError(f"qualification needs at least {k} gold items")
        self.pool = pool
        self.clock = clock
        self._on_finished = on_finished
        self._on_batch = on_batch
        self._on_shed = on_shed
        self._observe = observe
        self._gold = gold or []
        self._rng = rng or random.Random(0)
        self._quality = quality
        self._quizzes: dict[str, dict[str, GoldItem]] = {}  #: worker -> gold id -> item
        #: Why each released worker was released (operator, slow, low_quality), for
        #: the operator's list of workers (the adapter hears only that they were).
        self.release_reasons: dict[str, str] = {}
        self._crowd: CrowdAdapter | None = None

    def start(self, crowd: CrowdAdapter, returning: list[str] | None = None) -> None:
        """Connect ``crowd``, recruit the pool, and start checking heartbeats.

        ``returning``: workers restored into the pool (:meth:`RetainerPool.restore`),
        whom the platform is told to expect back.
        """
        self._crowd = crowd
        crowd.start(self)
        if returning:
            crowd.resume(returning)
        self.pool.fill()
        self._flush()
        self._check_heartbeats()

    def stop(self) -> None:
        if self._crowd is not None:
            self._crowd.stop()
            self._crowd = None

    # -- the worker desk ----------------------------------------------------------

    def join(self, worker_id: str) -> list[GoldItem]:
        self.pool.join(worker_id, self.clock.now())
        quiz: list[GoldItem] = []
        known = self.pool.workers.get(worker_id)
        qualified = known is not None and known.qualified
        if self.pool.config.qualification and not qualified and worker_id not in self._quizzes:
            quiz = self._rng.sample(self._gold, self.pool.config.qualification)
            self._quizzes[worker_id] = {g.gold_id: g for g in quiz}
        self._flush()
        return quiz

    def qualify(self, worker_id: str, answers: dict[str, str]) -> bool:
        quiz = self._quizzes.pop(worker_id, None)
        if quiz is None:
            return worker_id in self.pool.workers
        correct = sum(answers.get(gold_id) == g.truth for gold_id, g in quiz.items())
        if self._quality is not None:
            self._quality.qualified(worker_id, quiz, answers)
        admitted = self.pool.qualify(worker_id, correct, self.clock.now())
        self._flush()
        return admitted

    def heartbeat(self, worker_id: str) -> bool:
        known = self.pool.heartbeat(worker_id, self.clock.now())
        self._flush()  # a worker back after a restart may get work
        return known

    def answer(self, worker_id: str, task_id: str, value: AnswerValue) -> AnswerOutcome:
        outcome = self.pool.answer(worker_id, task_id, value, self.clock.now())
        self._flush()
        return outcome

    def leave(self, worker_id: str) -> None:
        self._quizzes.pop(worker_id, None)
        self.pool.leave(worker_id, self.clock.now())
        self._flush()

    def earnings(self, worker_id: str) -> dict[str, float | int]:
        return self.pool.earnings(worker_id, self.clock.now())

    # -- the operator -------------------------------------------------------------

    def release(self, worker_id: str) -> bool:
        """Dismiss a worker (their work so far is paid); False if not in the pool."""
        if worker_id not in self.pool.workers:
            return False
        self.pool.release(worker_id, self.clock.now())
        self._flush()
        return True

    # -- tasks --------------------------------------------------------------------

    def submit(
        self,
        task_id: str,
        payload: Any,
        *,
        size: int = 1,
        votes: int | None = None,
        batch: str | None = None,
        job: str = "pool",
        priority: int = 5,
        age: float = 0.0,
        topic: str | None = None,
        adaptive: bool = False,
    ) -> bool:
        """Queue a task; ``age``: how long it already waited, in clock seconds."""
        now = self.clock.now()
        queued = self.pool.submit(
            task_id,
            payload,
            now,
            size=size,
            votes=votes,
            batch=batch,
            job=job,
            priority=priority,
            submitted=now - age if age > 0 else None,
            topic=topic,
            adaptive=adaptive,
        )
        self._flush()
        return queued

    def withdraw(self, job: str) -> int:
        """Take ``job``'s waiting tasks out of the queue (its job ended)."""
        count = self.pool.withdraw(job)
        self._flush()
        return count

    # -- internals ----------------------------------------------------------------

    def _check_heartbeats(self) -> None:
        if self._crowd is None:
            return
        for worker_id in self.pool.expire(self.clock.now()):
            self._quizzes.pop(worker_id, None)
        self._flush()
        self.clock.call_later(self.pool.config.heartbeat_timeout_s / 4, self._check_heartbeats)

    def _flush(self) -> None:
        # Effects can cause more (an answer delivered synchronously by a platform):
        # drain until the pool is quiet.
        while effects := self.pool.drain():
            for effect in effects:
                self._apply(effect)

    def _apply(self, effect: Effect) -> None:
        if self._observe is not None:
            self._observe(effect)
        crowd = self._crowd
        if isinstance(effect, Offer):
            if crowd is not None:
                crowd.offer(effect.worker_id, effect.task)
        elif isinstance(effect, Terminate):
            if crowd is not None:
                crowd.terminate(effect.worker_id, effect.task_id)
        elif isinstance(effect, Release):
            self._quizzes.pop(effect.worker_id, None)
            self.release_reasons[effect.worker_id] = effect.reason
            if crowd is not None:
                crowd.release(effect.worker_id)
        elif isinstance(effect, Left):
            if crowd is not None and effect.reason != "left":
                crowd.left(effect.worker_id, effect.reason)
        elif isinstance(effect, Recruit):
            if crowd is not None:
                crowd.recruit(effect.count)
        elif isinstance(effect, Finished):
            self._on_finished(effect)
        elif isinstance(effect, BatchDone) and self._on_batch is not None:
            self._on_batch(effect)
        elif isinstance(effect, Shed) and self._on_shed is not None:
            self._on_shed(effect)
