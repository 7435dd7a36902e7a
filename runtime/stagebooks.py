"""Load shedding of a stage's input, with its books.

Every data-flow stage keeps the books ``in = out + rejected + shed`` in its metrics;
this is the one place that applies a pipeline's shedding policy to a stage's input
records (before they are decoded), counts what it drops and says so in the log
(counters start at zero with each process; the log keeps the history).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
from aiokafka import ConsumerRecord

from channels.shedding import SheddingPolicy
from pe.common.metrics import Metrics
from runtime.shedding import RecordHook, Shedder

__all__ = ["StageShedder"]

log = logging.getLogger(__name__)

#: How often, at most, a stage logs what it shed.
REPORT_EVERY_S = 10.0


class Reading(Protocol):
    """What shedding asks of a stage's reader (runtime.batches.BatchReader)."""

    @property
    def resumed(self) -> int:
        """How many times reading resumed after a pause or from an earlier point."""

    def lag(self) -> int | None:
        """Records not read yet, if known."""


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
        reader: Callable[[], Reading | None],
        protect: RecordHook | None = None,
        witness: RecordHook | None = None,
    ) -> None:
        """``reader()``: the stage's reader, for its lag and its resumptions."""
        self._labels = (pipeline, pe)
        self._metrics = metrics
        self._reader = reader
        self._resumed = 0
        self._read = 0
        self._dropped: Counter[str] = Counter()
        self._reported = time.monotonic()
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
        reader = self._reader()
        if reader is not None and reader.resumed != self._resumed:
            self._resumed = reader.resumed
            self._shedder.resume()
        # A record without a timestamp counts as fresh: its age is unknown.
        stamps = [r.timestamp / 1000 if r.timestamp and r.timestamp > 0 else now for r in records]
        lag = reader.lag() if reader is not None else None
        was_overloaded = self._shedder.overloaded
        keep, shed = self._shedder.select(stamps, now, lambda i: _peek(records[i]), lag)
        self._kept.set(self._shedder.keep_fraction)
        self._books(len(records), shed, lag, was_overloaded)
        if not shed:
            return list(records)
        self._metrics.items_in.labels(*self._labels).inc(sum(shed.values()))
        for reason, count in shed.items():
            self._metrics.items_shed.labels(*self._labels, reason).inc(count)
        return [record for record, flag in zip(records, keep, strict=True) if flag]

    def _books(self, read: int, shed: Counter[str], lag: int | None, was: bool) -> None:
        """Log when overload starts and ends, and what was shed, at most every 10 s."""
        _, pe = self._labels
        overloaded = self._shedder.overloaded
        if overloaded and not was:
            log.warning(
                "%s: overloaded: input arrives faster than this stage reads (%s records "
                "waiting and growing); shedding unprotected items",
                pe,
                "?" if lag is None else f"{lag:,}",
            )
        self._read += read
        self._dropped.update(shed)
        clock = time.monotonic()
        ended = was and not overloaded
        if not ended and clock - self._reported < REPORT_EVERY_S:
            return
        if self._dropped:
            log.warning(
                "%s: shed %s of %s items read in the last %.0f s (%s); keeping %.0f%% of "
                "unprotected items",
                pe,
                f"{self._dropped.total():,}",
                f"{self._read:,}",
                clock - self._reported,
                ", ".join(f"{reason} {n:,}" for reason, n in sorted(self._dropped.items())),
                100 * self._shedder.keep_fraction,
            )
        if ended:
            log.warning("%s: no longer overloaded: shedding stopped", pe)
        self._read = 0
        self._dropped.clear()
        self._reported = clock
