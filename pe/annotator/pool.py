"""The retainer pool and its task queue: which worker does which task next.

Pure logic (no I/O, no clock). Each task needs ``answers_per_task`` answers from
distinct workers; a worker holds at most one task at a time. The CLAMShell pool
(straggler mitigation, pool maintenance) extends this class.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from channels.records import Answer, Task

__all__ = ["PendingTask", "RetainerPool"]


@dataclass
class PendingTask:
    task: Task
    answers: list[Answer] = field(default_factory=list)
    active: set[str] = field(default_factory=set)  #: workers holding it now
    seen: set[str] = field(default_factory=set)  #: workers who ever held it


class RetainerPool:
    def __init__(self, answers_per_task: int) -> None:
        self.answers_per_task = answers_per_task
        self.workers: dict[str, str | None] = {}  #: worker id -> task id held, or None
        self.tasks: OrderedDict[str, PendingTask] = OrderedDict()  #: FIFO by arrival

    @property
    def available(self) -> list[str]:
        return [w for w, held in self.workers.items() if held is None]

    @property
    def working(self) -> int:
        return sum(held is not None for held in self.workers.values())

    @property
    def waiting(self) -> int:
        """Tasks that still need a worker to be assigned."""
        return sum(1 for p in self.tasks.values() if self._open_slots(p) > 0)

    def add_worker(self, worker_id: str) -> None:
        self.workers.setdefault(worker_id, None)

    def remove_worker(self, worker_id: str) -> None:
        """A worker left or vanished; their task goes back to the queue."""
        held = self.workers.pop(worker_id, None)
        if held is not None and held in self.tasks:
            self.tasks[held].active.discard(worker_id)

    def enqueue(self, task: Task) -> bool:
        """Add a task; a task id already queued is ignored (returns False)."""
        if task.task_id in self.tasks:
            return False
        self.tasks[task.task_id] = PendingTask(task)
        return True

    def assign(self) -> list[tuple[str, Task]]:
        """Give every available worker the oldest task they have not seen that needs one."""
        assignments = []
        for worker in self.available:
            for pending in self.tasks.values():
                if self._open_slots(pending) > 0 and worker not in pending.seen:
                    pending.active.add(worker)
                    pending.seen.add(worker)
                    self.workers[worker] = pending.task.task_id
                    assignments.append((worker, pending.task))
                    break
        return assignments

    def complete(self, answer: Answer) -> PendingTask | None:
        """Record an answer; return the task once it has all its answers."""
        if self.workers.get(answer.worker_id) == answer.task_id:
            self.workers[answer.worker_id] = None
        pending = self.tasks.get(answer.task_id)
        if pending is None or answer.worker_id not in pending.active:
            return None  # a late answer for a task no longer held: not a vote
        pending.active.discard(answer.worker_id)
        pending.answers.append(answer)
        if len(pending.answers) >= self.answers_per_task:
            del self.tasks[answer.task_id]
            return pending
        return None

    def _open_slots(self, pending: PendingTask) -> int:
        return self.answers_per_task - len(pending.answers) - len(pending.active)
