"""A retainer pool of simulated workers on a virtual clock, for benchmarks.

The annotator's own pool service, pool and simulated crowd, with simulated time:
hours of crowd work take seconds. The pool is warmed up to its full size before
work starts (CLAMShell measures from the first task: recruitment is amortised).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pe.annotator.assurance import QualityLoop
from pe.annotator.clock import VirtualClock
from pe.annotator.crowd import SimulatedCrowd
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import BatchDone, Finished, PoolConfig, RetainerPool
from pe.annotator.population import PopulationModel

__all__ = ["SimulatedPool"]


class SimulatedPool:
    def __init__(
        self,
        config: PoolConfig,
        model: PopulationModel,
        seed: int,
        warm: bool = True,
        one_task: bool = False,
        quality: QualityLoop | None = None,
    ) -> None:
        """``quality``: the quality loop, the pool's judge (it settles no task itself:
        callers settle ``finished`` tasks)."""
        self.clock = VirtualClock()
        self.pool = RetainerPool(config, random.Random(seed), judge=quality)
        self.finished: list[Finished] = []
        self.batches: list[BatchDone] = []
        self.on_batch: Callable[[BatchDone], None] = lambda _: None
        self.guard = LifeGuard(
            self.pool,
            self.clock,
            on_finished=self.finished.append,
            on_batch=self._batch,
            quality=quality,
        )
        self.guard.start(SimulatedCrowd(model, self.clock, seed=seed + 1000, one_task=one_task))
        if warm:
            self.clock.run(stop=lambda: len(self.pool.available) >= config.target_size)
        self.t0 = self.clock.now()
        self.cost0 = float(self.pool.costs(self.t0)["total"])  # type: ignore[arg-type]

    def _batch(self, done: BatchDone) -> None:
        self.batches.append(done)
        self.on_batch(done)

    def run(self, stop: Callable[[], bool], horizon: float = 30 * 24 * 3600.0) -> None:
        self.clock.run(until=self.t0 + horizon, stop=stop)

    @property
    def elapsed(self) -> float:
        return self.clock.now() - self.t0

    def cost(self) -> float:
        return float(self.pool.costs(self.clock.now())["total"]) - self.cost0  # type: ignore[arg-type]
