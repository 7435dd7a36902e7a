"""Load shedding for data-flow stages: bounded latency when input outruns capacity.

A stage is *behind* when the oldest item of its batch is older than ``max_age_s``
while at least ``min_backlog`` records wait (the late ones in hand plus its lag), or
when its lag exceeds ``max_lag`` records. Being behind is not overload: a backlog the
pipeline caused itself (a restart, a broker outage, a rebalance, a rewind) drains
once reading resumes, and dropping it would lose items for nothing. A stage is
*overloaded* only when, behind, it fell further behind over a whole ``trend_s``
window (its input arrives faster than it reads) and what waits would take longer
than ``max_drain_s`` to read at the rate it read over that window: a burst that the
stage clears within that bound is kept whole, late but complete, since shedding part
of it would lose items and barely shorten the wait of the rest. Only then does the
fraction of items it keeps fall (multiplicatively, at most every ``adapt_every_s``, while it keeps
getting worse); while it drains it holds, and once caught up it climbs back
(additively). Reading that resumes (``resume``: after a pause, a rebalance or a
rewind) starts the judgement afresh, keeping everything. The items to drop are chosen by policy:
near-duplicates of items just seen first, then a uniform sample. Protected items (a
listed source, or a truthy ``meta[protect_meta_key]``: the "human processing
mandatory" pattern) are never shed.

Decisions are made on raw records before they are decoded, so a shed record costs
little: its age comes from its Kafka timestamp (when it was written to the stage's
input channel), and only while shedding is a record looked into (``peek``: its JSON
object, or None when it is not one; such a record is kept, for the stage to reject).

The policy's values are declared in channels.shedding. Pure logic: time, randomness,
the peek and the near-duplicate key are passed in.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from channels.shedding import SheddingPolicy

__all__ = ["SHED_REASONS", "Peek", "RecordHook", "Shedder"]

#: Why an item was shed (a metric label).
SHED_REASONS = ("near_duplicate", "sample")

#: The JSON object of record ``i`` of a batch, or None if it is not one.
Peek = Callable[[int], Mapping[str, Any] | None]
#: Judges or takes note of an opened record (see Shedder).
RecordHook = Callable[[Mapping[str, Any]], Any]

DECREASE = 0.7
INCREASE = 0.05


class Shedder:
    """Decides, batch by batch, which items a stage keeps."""

    def __init__(
        self,
        policy: SheddingPolicy,
        dup_key: Callable[[str], str],
        rng: random.Random,
        now: float,
        *,
        protect: RecordHook | None = None,
        witness: RecordHook | None = None,
    ) -> None:
        """``protect(record)``: also never shed this record (items a job must see);
        ``witness(record)``: called for each record shed (a job counts its losses)."""
        self.policy = policy
        self._protect = protect
        self._witness = witness
        self.keep_fraction = 1.0
        #: Input arrives faster than the stage reads (see the module's docstring).
        self.overloaded = False
        self._dup_key = dup_key
        self._rng = rng
        self._adapted = now
        self._last_pressure: tuple[float, int] | None = None
        #: Records read so far (the read rate over the trend window comes from it).
        self._read = 0
        #: (time, age, backlog, records read) at each step while behind and not yet
        #: overloaded.
        self._trend: deque[tuple[float, float, int, int]] = deque()
        self._recent: OrderedDict[str, None] = OrderedDict()

    def resume(self) -> None:
        """Reading resumed after a pause, or from an earlier point (partitions
        assigned, a rewind): what waits is the pipeline's own backlog, not overload."""
        self.keep_fraction = 1.0
        self.overloaded = False
        self._last_pressure = None
        self._trend.clear()

    def protected(self, record: Mapping[str, Any]) -> bool:
        policy = self.policy
        source = record.get("source")
        if isinstance(source, str) and source in policy.protect_sources:
            return True
        meta = record.get("meta")
        key = policy.protect_meta_key
        if key and isinstance(meta, Mapping) and meta.get(key):
            return True
        return bool(self._protect is not None and self._protect(record))

    def select(
        self, stamps: Sequence[float], now: float, peek: Peek, lag: int | None = None
    ) -> tuple[list[bool], Counter[str]]:
        """Which of a batch's records to keep (a mask), and how many were shed per reason.

        ``stamps`` are the records' times (epoch seconds) of entry into the stage's
        input; ``peek(i)`` opens record ``i``, and is called only while shedding.
        """
        shed: Counter[str] = Counter()
        if not self.policy.enabled or not stamps:
            return [True] * len(stamps), shed
        self._read += len(stamps)
        late = sum(1 for stamp in stamps if now - stamp > self.policy.max_age_s)
        self._adapt(min(stamps), now, late, lag)
        if self.keep_fraction >= 1.0:
            return [True] * len(stamps), shed
        keep = [True] * len(stamps)
        texts: dict[int, str] = {}
        opened: dict[int, Mapping[str, Any]] = {}
        for i in range(len(stamps)):
            record = peek(i)
            if record is None or self.protected(record):
                continue
            text = record.get("text")
            texts[i] = text if isinstance(text, str) else ""
            opened[i] = record
        to_drop = round(len(texts) * (1.0 - self.keep_fraction))
        others = []
        for i, text in texts.items():
            key = self._dup_key(text)
            if key in self._recent and to_drop > 0:
                keep[i] = False
                to_drop -= 1
                shed["near_duplicate"] += 1
            else:
                others.append(i)
            self._remember(key)
        for i in self._rng.sample(others, min(to_drop, len(others))):
            keep[i] = False
            shed["sample"] += 1
        if self._witness is not None:
            for i, record in opened.items():
                if not keep[i]:
                    self._witness(record)
        return keep, shed

    def _adapt(self, oldest: float, now: float, late_in_hand: int, lag: int | None) -> None:
        policy = self.policy
        if now - self._adapted < policy.adapt_every_s:
            return
        self._adapted = now
        age = now - oldest
        backlog = lag if lag is not None else 0
        late = age > policy.max_age_s and late_in_hand + backlog >= policy.min_backlog
        lagging = policy.max_lag is not None and backlog > policy.max_lag
        if not (late or lagging):
            self.overloaded = False
            self._last_pressure = None
            self._trend.clear()
            self.keep_fraction = min(1.0, self.keep_fraction + INCREASE)
            return
        # What waits: the late records in hand and the lag (unknown without a lag).
        waiting = None if lag is None else late_in_hand + lag
        if not self.overloaded and not self._falling_behind(now, age, backlog, late, waiting):
            return
        self.overloaded = True
        last, self._last_pressure = self._last_pressure, (age, backlog)
        worse = last is None or (age >= last[0] if late else backlog >= last[1])
        if worse:
            self.keep_fraction = max(self.policy.min_keep, self.keep_fraction * DECREASE)

    def _falling_behind(
        self, now: float, age: float, backlog: int, late: bool, waiting: int | None
    ) -> bool:
        """Did the stage fall further behind over the last whole ``trend_s``, with more
        waiting than it reads in ``max_drain_s`` at that window's rate?"""
        trend = self._trend
        trend.append((now, age, backlog, self._read))
        horizon = now - self.policy.trend_s
        while len(trend) > 1 and trend[1][0] <= horizon:
            trend.popleft()
        start, start_age, start_backlog, start_read = trend[0]
        if start > horizon:
            return False  # not judged on less than a whole window
        if not (age > start_age if late else backlog > start_backlog):
            return False
        # Without a lag, the oldest waiting record's age is the wait there is to judge.
        rate = (self._read - start_read) / (now - start)
        wait = age if waiting is None or rate == 0 else waiting / rate
        return wait > self.policy.max_drain_s

    def _remember(self, key: str) -> None:
        self._recent[key] = None
        self._recent.move_to_end(key)
        if len(self._recent) > self.policy.dedup_memory:
            self._recent.popitem(last=False)
