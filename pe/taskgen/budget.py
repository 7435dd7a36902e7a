"""The crowd answers a classifier's training may spend."""

from __future__ import annotations

__all__ = ["AnswerBudget"]


class AnswerBudget:
    """Answers bought for a classifier's training, gold questions included, against
    ``limit``.

    A training task still open counts as the most answers it may get
    (``most_answers``: the quality loop's ``max_answers``), so new tasks stop before the
    spend could pass the limit; only gold questions the annotator mixes into the last
    open tasks can take it a few answers past. Rebuilt from the logs: tasks opened from
    ``crowd.tasks``, outcomes from ``crowd.labels``, read in either order.
    """

    def __init__(self, limit: int | None, most_answers: int) -> None:
        self.limit = limit
        self.most_answers = max(most_answers, 1)
        self.spent = 0
        self._open: set[str] = set()
        self._closed: set[str] = set()

    def opened(self, task_id: str) -> None:
        """A training task issued (idempotent; one already closed stays closed)."""
        if task_id not in self._closed:
            self._open.add(task_id)

    def closed(self, task_id: str, answers: int) -> None:
        """A task's outcome with its ``answers`` (a gold question's too); counted once."""
        if task_id in self._closed:
            return
        self._closed.add(task_id)
        self._open.discard(task_id)
        self.spent += answers

    @property
    def tasks_left(self) -> int | None:
        """How many more tasks may open now; None without a limit."""
        if self.limit is None:
            return None
        left = self.limit - self.spent - len(self._open) * self.most_answers
        return max(left // self.most_answers, 0)

    def snapshot(self) -> dict[str, object]:
        return {"spent": self.spent, "open": sorted(self._open)}
