"""Crowd adapters: where the pool's workers come from and how tasks reach them.

A platform adapter (a web app, an external marketplace) implements
:class:`CrowdAdapter`; the annotator only calls :meth:`offer` and listens to the
callbacks. :class:`SimulatedCrowd` answers from ``Task.truth`` for demos, tests and
benchmarks.
"""

from __future__ import annotations

import asyncio
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from channels.records import NA_TAG, Task
from pe.params import AnnotatorParams

__all__ = ["CrowdAdapter", "CrowdEvents", "SimulatedCrowd", "SimulatedWorker"]


@dataclass(frozen=True)
class CrowdEvents:
    """Callbacks from a crowd to the annotator."""

    joined: Callable[[str], None]
    left: Callable[[str], None]
    #: (worker id, task id, tag, seconds the worker took)
    answered: Callable[[str, str, str, float], None]


class CrowdAdapter(ABC):
    @abstractmethod
    async def start(self, events: CrowdEvents) -> None:
        """Connect; report workers as they join."""

    @abstractmethod
    def offer(self, worker_id: str, task: Task) -> None:
        """Show ``task`` to ``worker_id``; the answer comes back through ``events``."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending answers are dropped."""


@dataclass(frozen=True)
class SimulatedWorker:
    worker_id: str
    median_latency_s: float
    spread: float  #: sigma of the log-normal latency
    accuracy: float

    def answer(self, task: Task, rng: random.Random) -> str:
        """The true tag with probability ``accuracy``, else another tag at random."""
        if task.truth is None or task.truth not in task.tags:
            return NA_TAG
        if rng.random() < self.accuracy:
            return task.truth
        return rng.choice([tag for tag in task.tags if tag != task.truth])

    def latency(self, rng: random.Random) -> float:
        return self.median_latency_s * math.exp(rng.gauss(0.0, self.spread))


class SimulatedCrowd(CrowdAdapter):
    """A population of simulated workers whose clock runs ``speed`` times faster."""

    def __init__(
        self,
        *,
        size: int,
        latency_median_s: float,
        latency_spread: float,
        accuracy_min: float,
        accuracy_max: float,
        speed: float,
        seed: int,
    ) -> None:
        self._rng = random.Random(seed)
        self.speed = speed
        # Each worker's median and spread vary around the population's, as in real
        # crowds, where a few slow or erratic workers make the tail.
        self.workers = {
            f"sim-{i}": SimulatedWorker(
                worker_id=f"sim-{i}",
                median_latency_s=latency_median_s * math.exp(self._rng.gauss(0.0, 0.5)),
                spread=latency_spread * self._rng.uniform(0.5, 1.5),
                accuracy=self._rng.uniform(accuracy_min, accuracy_max),
            )
            for i in range(size)
        }
        self._events: CrowdEvents | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    @classmethod
    def from_params(cls, params: AnnotatorParams) -> SimulatedCrowd:
        """The simulated crowd a topology's annotator parameters describe."""
        return cls(
            size=params.pool_size,
            latency_median_s=params.latency_median_s,
            latency_spread=params.latency_spread,
            accuracy_min=params.accuracy_min,
            accuracy_max=params.accuracy_max,
            speed=params.speed,
            seed=params.seed,
        )

    async def start(self, events: CrowdEvents) -> None:
        self._events = events
        for worker_id in self.workers:
            events.joined(worker_id)

    def offer(self, worker_id: str, task: Task) -> None:
        worker = self.workers[worker_id]
        simulated_s = worker.latency(self._rng)
        tag = worker.answer(task, self._rng)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def deliver() -> None:
            self._timers.discard(handle)
            if self._events is not None:
                self._events.answered(worker_id, task.task_id, tag, simulated_s)

        handle = loop.call_later(simulated_s / self.speed, deliver)
        self._timers.add(handle)

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._events = None
