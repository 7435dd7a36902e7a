"""The dedup rule for readers of ``items.classified``: the first record of each (id,
revision) wins.

crowdstream processes at least once: after a crash, a batch whose output reached
the broker but whose input offsets were not committed yet is processed again, and
its items appear twice (same id and revision, maybe another model version). A
*revision* is not a repeat: a crowd label of an item writes its record again with a
higher ``revision`` (0 is the first classification), and a repeat of a revision
keeps its number. A reader that keeps the first record of each (id, revision) sees
every classification exactly once; one that wants each item once keeps revision 0
(the model's first word) or the highest (the latest). Keys are remembered in a
bounded window: repeats come within one uncommitted batch of the original, far
inside it.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["FirstById"]


class FirstById:
    """Remembers the last ``memory`` (id, revision) keys seen; :meth:`first` is True
    once per key."""

    def __init__(self, memory: int = 1_000_000) -> None:
        if memory < 1:
            raise ValueError("memory must be at least 1")
        self.memory = memory
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.repeats = 0

    def first(self, item_id: str, revision: int = 0) -> bool:
        key = (item_id, revision)
        if key in self._seen:
            self.repeats += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        return True
