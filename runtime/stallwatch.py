"""Noticing a broker that holds unread records but answers no fetch.

A broker that stops serving fetches (an overloaded or failing node, a partition
without a leader) makes a consumer look exactly like one with nothing to read. A
reader that has received nothing for ``after_s`` asks the broker for the partitions'
ends: if they are past its positions, records are waiting that fetches do not
return, and that is worth a warning.

Pure logic: the reader passes the time and the offsets in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["StallWatch"]

P = TypeVar("P")


@dataclass
class StallWatch:
    after_s: float = 30.0
    last_records: float | None = None
    last_check: float | None = None
    stalled: bool = False  #: a warning was given and no records came since

    def received(self, now: float) -> bool:
        """Records arrived; True if this ends a stall that was reported."""
        ended = self.stalled
        self.last_records, self.last_check, self.stalled = now, None, False
        return ended

    def due(self, now: float) -> bool:
        """Time to compare ends and positions (at most once every ``after_s``)."""
        if self.last_records is None:
            self.last_records = now
        since = self.last_check if self.last_check is not None else self.last_records
        return now - since >= self.after_s

    def judge(self, now: float, ends: Mapping[P, int], positions: Mapping[P, int]) -> int:
        """Records waiting beyond the positions; a positive answer starts a stall
        (returned once per stall, 0 afterwards and when nothing waits)."""
        self.last_check = now
        waiting = sum(max(end - positions[p], 0) for p, end in ends.items() if p in positions)
        if waiting and not self.stalled:
            self.stalled = True
            return waiting
        return 0
