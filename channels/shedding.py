"""Load shedding for data-flow stages: bounded latency when input outruns capacity.

A stage is *behind* when the oldest item of its batch is older than ``max_age_s`` or
its lag exceeds ``max_lag`` records. While behind, the fraction of items it keeps
falls (multiplicatively, at most every ``adapt_every_s``); once it is caught up, the
fraction climbs back (additively). The items to drop are chosen by policy:
near-duplicates of items just seen first, then a uniform sample. Protected items (a
listed source, or a truthy ``meta[protect_meta_key]``: the "human processing
mandatory" pattern) are never shed.

Pure logic: time, randomness and the near-duplicate key are passed in.
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SHED_REASONS", "Sheddable", "Shedder", "SheddingPolicy"]

#: Why an item was shed (a metric label).
SHED_REASONS = ("near_duplicate", "sample")

DECREASE = 0.7
INCREASE = 0.05


class SheddingPolicy(BaseModel):
    """A pipeline's shedding bounds (``params.shedding`` in a topology)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    #: Input older than this (seconds since it entered crowdstream) means "behind".
    max_age_s: float = Field(1.0, gt=0)
    #: Records not yet read past this many also mean "behind" (None: age only).
    max_lag: int | None = Field(None, ge=1)
    #: Never keep less than this fraction of unprotected items.
    min_keep: float = Field(0.02, gt=0, le=1)
    #: How often the kept fraction may change.
    adapt_every_s: float = Field(0.1, gt=0)
    #: Items from these sources are never shed.
    protect_sources: list[str] = Field(default_factory=list)
    #: Items whose ``meta`` has this key set to a true value are never shed.
    protect_meta_key: str | None = "mandatory"
    #: How many recent items are remembered to recognise near-duplicates.
    dedup_memory: int = Field(10_000, ge=1)


class Sheddable(Protocol):
    @property
    def ts_in(self) -> float: ...
    @property
    def text(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def meta(self) -> Mapping[str, Any]: ...


class Shedder:
    """Decides, batch by batch, which items a stage keeps."""

    def __init__(
        self,
        policy: SheddingPolicy,
        dup_key: Callable[[str], str],
        rng: random.Random,
        now: float,
    ) -> None:
        self.policy = policy
        self.keep_fraction = 1.0
        self._dup_key = dup_key
        self._rng = rng
        self._adapted = now
        self._recent: OrderedDict[str, None] = OrderedDict()

    def protected(self, item: Sheddable) -> bool:
        policy = self.policy
        if item.source is not None and item.source in policy.protect_sources:
            return True
        return bool(policy.protect_meta_key and item.meta.get(policy.protect_meta_key))

    def select(
        self, items: Sequence[Sheddable], now: float, lag: int | None = None
    ) -> tuple[list[bool], Counter[str]]:
        """Which of ``items`` to keep (a mask), and how many were shed for each reason."""
        shed: Counter[str] = Counter()
        if not self.policy.enabled or not items:
            return [True] * len(items), shed
        self._adapt(self._behind(items, now, lag), now)
        if self.keep_fraction >= 1.0:
            return [True] * len(items), shed
        keep = [True] * len(items)
        candidates = [i for i, item in enumerate(items) if not self.protected(item)]
        to_drop = round(len(candidates) * (1.0 - self.keep_fraction))
        others = []
        for i in candidates:
            key = self._dup_key(items[i].text)
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
        return keep, shed

    def _behind(self, items: Sequence[Sheddable], now: float, lag: int | None) -> bool:
        oldest = min(item.ts_in for item in items)
        if now - oldest > self.policy.max_age_s:
            return True
        return self.policy.max_lag is not None and lag is not None and lag > self.policy.max_lag

    def _adapt(self, behind: bool, now: float) -> None:
        if now - self._adapted < self.policy.adapt_every_s:
            return
        self._adapted = now
        if behind:
            self.keep_fraction = max(self.policy.min_keep, self.keep_fraction * DECREASE)
        else:
            self.keep_fraction = min(1.0, self.keep_fraction + INCREASE)

    def _remember(self, key: str) -> None:
        self._recent[key] = None
        self._recent.move_to_end(key)
        if len(self._recent) > self.policy.dedup_memory:
            self._recent.popitem(last=False)
