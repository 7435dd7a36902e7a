"""A pipeline's load-shedding policy: the bounds a topology sets (``params.shedding``).

runtime.shedding applies it to a stage's input.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SheddingPolicy"]


class SheddingPolicy(BaseModel):
    """A pipeline's shedding bounds (``params.shedding`` in a topology)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    #: Input older than this (seconds since it entered crowdstream) means "behind".
    max_age_s: float = Field(1.0, gt=0)
    #: Late input means "behind" only when at least this many records wait.
    min_backlog: int = Field(1000, ge=1)
    #: Records not yet read past this many also mean "behind" (None: age only).
    max_lag: int | None = Field(None, ge=1)
    #: Never keep less than this fraction of unprotected items.
    min_keep: float = Field(0.02, gt=0, le=1)
    #: How often the kept fraction may change.
    adapt_every_s: float = Field(0.1, gt=0)
    #: How long a stage must fall further behind before that counts as overload (a
    #: backlog that drains over such a window is caught up whole).
    trend_s: float = Field(2.0, gt=0)
    #: A stage falling behind sheds only once what waits would take longer than this
    #: to read at its measured rate (the latency a burst may cost; see above).
    max_drain_s: float = Field(10.0, gt=0)
    #: Items from these sources are never shed.
    protect_sources: list[str] = Field(default_factory=list)
    #: Items whose ``meta`` has this key set to a true value are never shed.
    protect_meta_key: str | None = "mandatory"
    #: How many recent items are remembered to recognise near-duplicates.
    dedup_memory: int = Field(10_000, ge=1)
