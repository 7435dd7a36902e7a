"""A counting or enumeration job's open stream window, in the worker that reads it.

Keeps a uniform sample of the window's items (reservoir sampling, so every item
seen has the same chance to be asked about however long the window runs), the
number seen, and the sum of the model's predictions over all of them (for the
model-assisted count). Lives in memory until the window closes; then the jobs
agent writes the sample to the job's log. After a restart the agent rebuilds it
from ``items.features``, read from the window's opening time: a uniform sample of
the same items.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from channels.jobs import JobItem

__all__ = ["Reservoir"]


@dataclass
class Reservoir:
    capacity: int
    rng: random.Random
    seen: int = 0
    predicted_sum: float = 0.0
    items: list[JobItem] = field(default_factory=list)
    #: Ids taken, so an item read twice (a rebuild overlapping the live stream)
    #: counts once.
    ids: set[str] = field(default_factory=set)

    def offer(self, item: JobItem) -> None:
        if item.id in self.ids:
            return
        self.ids.add(item.id)
        self.seen += 1
        self.predicted_sum += item.predicted or 0.0
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.capacity:
            self.items[slot] = item
