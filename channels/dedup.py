"""The dedup rule for readers of ``items.classified``: the first record of an id wins.

crowdstream processes at least once: after a crash, a batch whose output reached
the broker but whose input offsets were not committed yet is processed again, and
its items appear twice (same id, maybe another model version). A reader that keeps
the first record of each id sees every item exactly once. Ids are remembered in a
bounded window: repeats come within one uncommitted batch of the original, far
inside it.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["FirstById"]


class FirstById:
    """Remembers the last ``memory`` ids seen; :meth:`first` is True once per id."""

    def __init__(self, memory: int = 1_000_000) -> None:
        if memory < 1:
            raise ValueError("memory must be at least 1")
        self.memory = memory
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.repeats = 0

    def first(self, item_id: str) -> bool:
        if item_id in self._seen:
            self.repeats += 1
            return False
        self._seen[item_id] = None
        if len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        return True
