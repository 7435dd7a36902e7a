"""The crowd answers a classifier's training may spend."""

from __future__ import annotations

from pe.common.outcomes import Outcomes

__all__ = ["AnswerBudget"]


class AnswerBudget:
    """Answers bought for a classifier's training, gold questions included, against
    ``limit``.

    A training task still open counts as the most answers it may get
    (``most_answers``: the quality loop's ``max_answers``), so new tasks stop before the
    spend could pass the limit; only gold questions the annotator mixes into the last
    open tasks can take it a few answers past. Rebuilt from the logs: tasks opened from
    ``crowd.tasks``, outcomes from ``crowd.labels``, read in either order. An outcome
    is remembered while a record of its task may still be read (:class:`Outcomes`,
    the last ``keep`` of those whose task was read too), not for the whole run.
    """

    def __init__(self, limit: int | None, most_answers: int, keep: int = 100_000) -> None:
        self.limit = limit
        self.most_answers = max(most_answers, 1)
        self.spent = 0
        self._open: set[str] = set()
        self._closed = Outcomes(keep)

    def opened(self, task_id: str) -> None:
        """A training task issued (idempotent; one already closed stays closed)."""
        if task_id in self._closed:
            self._closed.task_read(task_id)
        else:
            self._open.add(task_id)

    def closed(self, task_id: str, answers: int, *, gold: bool = False) -> None:
        """A task's outcome with its ``answers`` (a gold question's too: it has no task
        to be opened); counted once."""
        if task_id in self._closed:
            return
        self._closed.read(task_id, gold=gold)
        if task_id in self._open:
            self._open.discard(task_id)
            self._closed.task_read(task_id)
        self.spent += answers

    @property
    def remembered(self) -> int:
        """Outcome ids held (what its memory grows with)."""
        return len(self._closed)

    @property
    def tasks_left(self) -> int | None:
        """How many more tasks may open now; None without a limit."""
        if self.limit is None:
            return None
        left = self.limit - self.spent - len(self._open) * self.most_answers
        return max(left // self.most_answers, 0)

    def snapshot(self) -> dict[str, object]:
        return {"spent": self.spent, "open": sorted(self._open)}
