"""Load shedding of a stage's input, with its books.

Every data-flow stage keeps the books ``in = out + rejected + shed`` in its metrics;
this is the one place that applies a pipeline's shedding policy to a stage's input
records (before they are decoded) and counts what it drops.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from channels.shedding import RecordHook, Shedder, SheddingPolicy
from pe.common.metrics import Metrics

__all__ = ["StageShedder"]


def _peek(record: ConsumerRecord) -> Mapping[str, Any] | None:
    try:
        value = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class StageShedder:
    """A pipeline's shedding policy applied to the input records of one stage."""

    def __init__(
        self,
        policy: SheddingPolicy,
        metrics: Metrics,
        pipeline: str,
        pe: str,
        *,
        dup_key: Callable[[str], str],
        lag: Callable[[], int | None],
        protect: RecordHook | None = None,
        witness: RecordHook | None = None,
    ) -> None:
        self._labels = (pipeline, pe)
        self._metrics = metrics
        self._lag = lag
        self._shedder = Shedder(
            policy,
            dup_key,
            random.Random(f"shed-{pe}"),
            time.time(),
            protect=protect,
            witness=witness,
        )
        self._kept = metrics.keep_fraction.labels(*self._labels)
        self._kept.set(1.0)

    def __call__(self, records: Sequence[ConsumerRecord]) -> list[ConsumerRecord]:
        """The records to process; the others are counted as read and shed."""
        now = time.time()
        # A record without a timestamp counts as fresh: its age is unknown.
        stamps = [r.timestamp / 1000 if r.timestamp and r.timestamp > 0 else now for r in records]
        keep, shed = self._shedder.select(stamps, now, lambda i: _peek(records[i]), self._lag())
        self._kept.set(self._shedder.keep_fraction)
        if not shed:
            return list(records)
        self._metrics.items_in.labels(*self._labels).inc(sum(shed.values()))
        for reason, count in shed.items():
            self._metrics.items_shed.labels(*self._labels, reason).inc(count)
        return [record for record, flag in zip(records, keep, strict=True) if flag]
