"""Crowd adapters: where workers come from and how their tasks reach them.

A platform (the built-in web app, an external marketplace, the simulator) implements
:class:`CrowdAdapter`: the pool service calls it to recruit, offer, terminate and
release; the platform calls back the service's worker API (:class:`WorkerDesk`:
join, qualify, heartbeat, answer, leave) as its workers act. The simulator goes
through the same API as people do.
"""

from __future__ import annotations

import functools
import math
import random
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.records import NA_TAG
from pe.annotator.clock import Clock, Handle
from pe.annotator.pool import AnswerOutcome, AnswerValue, PoolTask
from pe.annotator.population import PopulationModel, SimulatedWorker

__all__ = ["CrowdAdapter", "GoldItem", "SimulatedCrowd", "WorkerDesk"]


@dataclass(frozen=True)
class GoldItem:
    """A qualification question with a known answer."""

    gold_id: str
    text: str
    question: str
    tags: list[str]
    truth: str
    topic: str | None = None  #: the classifier it tests (quality evidence)


class WorkerDesk(Protocol):
    """The pool service's worker-facing API."""

    def join(self, worker_id: str) -> list[GoldItem]:
        """Enter the pool; returns the qualification items to answer (maybe none)."""

    def qualify(self, worker_id: str, answers: dict[str, str]) -> bool:
        """Answers to the qualification items, by gold id; True if admitted."""

    def heartbeat(self, worker_id: str) -> bool:
        """Still here; False if the pool no longer knows this worker."""

    def answer(self, worker_id: str, task_id: str, value: AnswerValue) -> AnswerOutcome:
        """An answer to an assignment: a tag, a count, or distinct values, by the
        task's form."""

    def leave(self, worker_id: str) -> None:
        """Leave the pool."""

    def earnings(self, worker_id: str) -> dict[str, float | int]:
        """What the worker has earned so far (waiting and work, terminated work too)."""


class CrowdAdapter(ABC):
    @abstractmethod
    def start(self, desk: WorkerDesk) -> None:
        """Connect; workers reach the pool through ``desk``."""

    @abstractmethod
    def recruit(self, count: int) -> None:
        """Look for ``count`` more workers (they arrive later, through ``desk.join``)."""

    @abstractmethod
    def offer(self, worker_id: str, task: PoolTask) -> None:
        """Show ``task`` to ``worker_id``."""

    @abstractmethod
    def terminate(self, worker_id: str, task_id: str) -> None:
        """Another worker finished ``task_id`` first: stop working on it (it is paid)."""

    @abstractmethod
    def release(self, worker_id: str) -> None:
        """The worker is dismissed from the pool (thank them; their work is paid)."""

    @abstractmethod
    def stop(self) -> None:
        """Disconnect; nothing more reaches the desk."""

    def resume(self, worker_ids: list[str]) -> None:  # noqa: B027 (optional hook)
        """These workers were in the pool before the pool service restarted: their
        sessions continue (they come back through ``desk.join`` or
        ``desk.heartbeat``, and are not asked to qualify again).

        Platforms that keep sessions restore them here.
        """

    def left(self, worker_id: str, reason: str) -> None:  # noqa: B027 (optional hook)
        """The pool dropped ``worker_id`` on its own (vanished, failed qualification).

        Platforms that keep sessions close them here; the simulator needs nothing.
        """


@dataclass
class _Member:
    worker: SimulatedWorker
    pending: Handle | None = None  #: the answer being "typed"
    heartbeat: Handle | None = None
    vanish_at: float = math.inf
    gone: bool = False
    extra: list[Handle] = field(default_factory=list)


class SimulatedCrowd(CrowdAdapter):
    """Workers drawn from a :class:`PopulationModel`, acting on a :class:`Clock`."""

    def __init__(
        self,
        model: PopulationModel,
        clock: Clock,
        *,
        seed: int = 0,
        heartbeat_s: float = 15.0,
        prefix: str = "sim",
        one_task: bool = False,
    ) -> None:
        """``one_task``: each worker leaves after one answer, as on an open
        marketplace without a retainer pool (CLAMShell's Base-NR)."""
        self.model = model
        self.one_task = one_task
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self._rng = random.Random(seed)
        self._seed = seed
        self._prefix = prefix
        self._next = 0
        self._desk: WorkerDesk | None = None
        self.members: dict[str, _Member] = {}

    def start(self, desk: WorkerDesk) -> None:
        self._desk = desk

    def recruit(self, count: int) -> None:
        for _ in range(count):
            self.clock.call_later(self.model.recruit_latency(self._rng), self._arrive)

    def resume(self, worker_ids: list[str]) -> None:
        """Workers of the pool before a restart come back within a heartbeat period
        (their tabs reconnect)."""
        # New recruits must not take the id of anyone before the restart, including
        # workers who left: they are numbered in a space of their own.
        self._prefix = f"{self._prefix}-{secrets.token_hex(3)}"
        for worker_id in worker_ids:
            back = functools.partial(self._arrive, worker_id)
            self.clock.call_later(self._rng.uniform(0, self.heartbeat_s), back)

    def _arrive(self, returning: str | None = None) -> None:
        if self._desk is None:
            return
        worker_id = returning or f"{self._prefix}-{self._next}"
        if returning is None:
            self._next += 1
        # The simulator keeps no traits across processes: a returning worker's are
        # drawn again, from the seed and their id (new recruits draw from the
        # crowd's generator, as benchmarks always have).
        rng = random.Random(f"{self._seed}:{worker_id}") if returning else self._rng
        member = _Member(self.model.draw(worker_id, rng))
        member.vanish_at = self.clock.now() + self.model.vanish_after(self._rng)
        self.members[worker_id] = member
        gold = self._desk.join(worker_id)
        self._beat(worker_id)
        if gold:
            answers = {g.gold_id: self._pick(member, g.truth, g.tags) for g in gold}
            seconds = sum(member.worker.latency(self._rng) for _ in gold)
            member.extra.append(
                self.clock.call_later(seconds, lambda: self._qualify(worker_id, answers))
            )

    def _qualify(self, worker_id: str, answers: dict[str, str]) -> None:
        member = self.members.get(worker_id)
        if member is None or member.gone or self._desk is None:
            return
        if not self._desk.qualify(worker_id, answers):
            self._drop(worker_id)

    def _beat(self, worker_id: str) -> None:
        member = self.members.get(worker_id)
        if member is None or member.gone or self._desk is None:
            return
        if self.clock.now() >= member.vanish_at:
            self._drop(worker_id)  # silently: the pool notices the missing heartbeats
            return
        if not self._desk.heartbeat(worker_id):
            self._drop(worker_id)
            return
        member.heartbeat = self.clock.call_later(self.heartbeat_s, lambda: self._beat(worker_id))

    def _pick(
        self, member: _Member, truth: str | None, tags: list[str], na_allowed: bool = True
    ) -> str:
        answer = member.worker.answer(truth, tags, self._rng)
        if answer is not None:
            return answer
        # Cannot tell: N/A, or a guess where N/A is not an answer.
        return NA_TAG if na_allowed or not tags else self._rng.choice(tags)

    def _respond(self, member: _Member, payload: Any) -> AnswerValue:
        """The worker's answer to a task of any form (label, count, enumerate)."""
        form = getattr(payload, "form", "label")
        tags = list(getattr(payload, "tags", []))
        if form == "count":
            truths = [item.truth for item in payload.batch]
            return member.worker.count(truths, payload.count_tag, tags, self._rng)
        if form == "enumerate":
            return member.worker.enumerate(list(payload.truth_values or []), self._rng)
        na_allowed = bool(getattr(payload, "na_allowed", True))
        return self._pick(member, getattr(payload, "truth", None), tags, na_allowed)

    def offer(self, worker_id: str, task: PoolTask) -> None:
        member = self.members.get(worker_id)
        if member is None or member.gone:
            return
        value = self._respond(member, task.payload)
        seconds = member.worker.latency(self._rng, task.size)
        if self.clock.now() + seconds >= member.vanish_at:
            return  # vanishes before answering
        desk = self._desk

        def deliver() -> None:
            member.pending = None
            if desk is not None and not member.gone:
                desk.answer(worker_id, task.task_id, value)
                if self.one_task:
                    self._drop(worker_id)
                    desk.leave(worker_id)

        member.pending = self.clock.call_later(seconds, deliver)

    def terminate(self, worker_id: str, task_id: str) -> None:
        member = self.members.get(worker_id)
        if member is not None and member.pending is not None:
            member.pending.cancel()
            member.pending = None

    def release(self, worker_id: str) -> None:
        self._drop(worker_id)

    def _drop(self, worker_id: str) -> None:
        member = self.members.pop(worker_id, None)
        if member is None:
            return
        member.gone = True
        for handle in (member.pending, member.heartbeat, *member.extra):
            if handle is not None:
                handle.cancel()

    def stop(self) -> None:
        for worker_id in list(self.members):
            self._drop(worker_id)
        self._desk = None
