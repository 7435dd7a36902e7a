"""Which crowd tasks have an outcome, for as long as a record of them may still be read.

The annotator and the task generator read ``crowd.tasks`` and ``crowd.labels`` from
their start, each log in its own follower, and must know which tasks have an outcome:
the annotator so as not to queue an answered task again, nor teach the quality loop
twice from an outcome of its own read back; the task generator to count the crowd's
backlog. Not for ever: once a task's record and its outcome have both been read (a
gold question has no task record), its id comes up again only in a record read
twice, which a follower does soon after (a batch handed again after an error). A set
of every id grew by about 100 bytes a task for as long as the worker ran, which is
days in a crisis.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

__all__ = ["Outcomes"]

_TASK = 1  #: the task's record was read
_READ = 2  #: its outcome was read from crowd.labels
_SENT = 4  #: its outcome was written here (and may not be read back yet)


class Outcomes:
    """Task ids with an outcome. Ids *settled* (task and outcome both read) are kept,
    newest last, up to ``keep``, and older ones forgotten; the others (tasks waiting
    or being answered, outcomes whose task is yet to be read) are all kept."""

    def __init__(self, keep: int = 100_000) -> None:
        self._keep = keep
        self._open: dict[str, int] = {}
        self._settled: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        """Has task ``key`` an outcome?"""
        return key in self._settled or bool(self._open.get(str(key), 0) & (_READ | _SENT))

    def __len__(self) -> int:
        """Ids held, settled or not."""
        return len(self._open) + len(self._settled)

    def __iter__(self) -> Iterator[str]:
        """The ids held with an outcome, settled or not."""
        yield from (key for key, state in self._open.items() if state & (_READ | _SENT))
        yield from self._settled

    def task_read(self, key: str) -> None:
        """The task's record was read from ``crowd.tasks``."""
        self._mark(key, _TASK)

    def sent(self, key: str) -> None:
        """This annotator wrote the task's outcome."""
        self._mark(key, _SENT)

    def read(self, key: str, *, gold: bool = False) -> None:
        """The task's outcome was read from ``crowd.labels``; a gold question's is
        its only record."""
        self._mark(key, _READ | (_TASK if gold else 0))

    def _mark(self, key: str, flags: int) -> None:
        if key in self._settled:
            self._settled.move_to_end(key)
            return
        state = self._open.pop(key, 0) | flags
        if state & _TASK and state & _READ:
            self._settled[key] = None
            if len(self._settled) > self._keep:
                self._settled.popitem(last=False)
        else:
            self._open[key] = state
