"""Shedding and bookkeeping shared by the data-flow stages.

Every stage keeps the books ``in = out + rejected + shed`` in its metrics; this is
the one place that counts shed items and applies a pipeline's shedding policy.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from channels.shedding import Sheddable, Shedder
from pe.common.context import PipelineContext

__all__ = ["StageShedder"]


class StageShedder:
    """The pipeline's shedding policy applied to one stage, with its metrics."""

    def __init__(
        self,
        ctx: PipelineContext,
        pe: str,
        *,
        dup_key: Callable[[str], str],
        lag_of: str | None = None,
    ) -> None:
        self._ctx = ctx
        self._pe = pe
        self._lag_topic = ctx.topics[lag_of].name if lag_of else None
        self._shedder = Shedder(
            ctx.params.shedding, dup_key, random.Random(f"shed-{pe}"), time.time()
        )
        self._kept = ctx.metrics.keep_fraction.labels(ctx.pipeline, pe)
        self._kept.set(1.0)

    def select(self, items: Sequence[Sheddable]) -> list[bool]:
        """Which items to keep; counts the others by reason."""
        lag = self._ctx.plane.lag(self._lag_topic) if self._lag_topic else None
        keep, shed = self._shedder.select(items, time.time(), lag)
        for reason, count in shed.items():
            self._ctx.metrics.items_shed.labels(self._ctx.pipeline, self._pe, reason).inc(count)
        self._kept.set(self._shedder.keep_fraction)
        return keep
