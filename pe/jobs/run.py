"""What every job has: its spec, items, tasks, outcomes, cost and status.

Pure logic, no I/O: a run takes events (its items, the tasks it issued, their
outcomes, models) and, when asked, plans new tasks and reports its status. The
jobs agent feeds it from the logs (so a restart replays the same events) and
writes what it plans. Subclasses per job kind decide which tasks to ask and
when the job is done.
"""

from __future__ import annotations

import random
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import KeysView, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from channels.jobs import TERMINAL, ItemResult, JobItem, JobStatus, StreamWindow
from channels.records import Label, ModelMetrics, Task
from pe.common.linear import CompiledModel
from pe.params import ClassifierSpec

__all__ = ["JobRun", "Plan", "Window", "assured", "truth_of", "truth_tag"]


def truth_of(item: JobItem, key: str | None) -> Any:
    """``meta.truth[key]`` of an item (simulated crowds only), or None."""
    truth = item.meta.get("truth")
    return truth.get(key) if isinstance(truth, dict) and key else None


def truth_tag(item: JobItem, key: str) -> str | None:
    """An item's true tag for a classifier, as text (simulated crowds only)."""
    value = truth_of(item, key)
    return str(value) if value is not None else None


def assured(metrics: ModelMetrics) -> tuple[float | None, float | None]:
    """The held-out AUC and accuracy a job may rely on: the low end of each one's 95%
    interval (the point value for models published before intervals existed). A
    model scored on 40 held-out labels at 0.85 may well be a 0.75 model; a job that
    stops asking the crowd at ``target_auc`` should not bet its items on that."""
    auc = metrics.auc_ci.low if metrics.auc_ci is not None else metrics.auc
    accuracy = metrics.accuracy_ci.low if metrics.accuracy_ci is not None else metrics.accuracy
    return auc, accuracy


@dataclass(frozen=True)
class Plan:
    """What a run may use to plan tasks."""

    now: float
    pay_per_record: float
    redundancy: int  #: the most answers the annotator gives a task by default
    mitigation: bool  #: straggler duplicates may add paid answers
    in_flight: int  #: most tasks of one job waiting or being answered at once
    classifiers: Mapping[str, ClassifierSpec]
    models: Mapping[str, CompiledModel]
    #: classifier -> (model version, AUC, accuracy), each as :func:`assured` gives it
    model_metrics: Mapping[str, tuple[int, float | None, float | None]]
    gold: Mapping[str, list[tuple[str, str]]]  #: classifier -> (text, true tag) gold items


@dataclass
class Window:
    """A stream window's state."""

    spec: StreamWindow
    opened: float
    seen: int = 0
    shed: int = 0
    closed: bool = False
    _pattern: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Compiled once: the window is checked against every stream batch.
        self._pattern = self.spec.filter.compiled()

    def takes(self, text: str, source: str | None, ts_in: float) -> bool:
        """Is an item that arrived at ``ts_in`` within the window and its filter?"""
        end = self.opened + (self.spec.seconds or float("inf"))
        return self.opened <= ts_in < end and self.spec.filter.matches(text, source, self._pattern)

    def view(self) -> dict[str, Any]:
        return {
            "open": not self.closed,
            "filter": self.spec.filter.model_dump(),
            "protect": self.spec.protect,
            "count": self.spec.count,
            "seconds": self.spec.seconds,
            "opened": self.opened,
            "seen": self.seen,
            "shed": self.shed,
        }


@dataclass
class JobRun(ABC):
    #: Ask the crowd about a window's items as they come (else: once it closed).
    plans_while_open = False

    job_id: str
    spec: Any
    created: float
    status: str = "queued"
    reason: str = ""
    items: dict[str, JobItem] = field(default_factory=dict)
    window: Window | None = None
    tasks: dict[str, Task] = field(default_factory=dict)
    outcomes: dict[str, Label] = field(default_factory=dict)
    item_results: dict[str, ItemResult] = field(default_factory=dict)
    published: bool = False  #: a status of this job was written (before a restart too)
    updated: float = 0.0
    #: Sum of the model's predictions over a counting window's items.
    predicted_sum: float = 0.0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Seeded by the job: its draws do not depend on what else runs.
        self.rng = random.Random(f"{self.job_id}:0")
        if self.spec.items is not None:
            self.items = {item.id: item for item in self.spec.items}
        elif self.spec.stream is not None:
            self.window = Window(self.spec.stream, self.created)

    # -- events ---------------------------------------------------------------

    def take_task(self, task: Task) -> None:
        self.tasks[task.task_id] = task

    def take_outcome(self, label: Label) -> None:
        if label.task_id is not None:
            self.outcomes[label.task_id] = label

    def take_items(self, items: list[JobItem]) -> None:
        """Stream items a labeling window collected."""
        for item in items:
            self.items.setdefault(item.id, item)
        window = self.window
        if window is not None:
            window.seen = len(self.items)
            if window.spec.count is not None and window.seen >= window.spec.count:
                window.closed = True

    def close_window(self, items: list[JobItem], seen: int, predicted_sum: float) -> None:
        """A counting window closed with this sample of its ``seen`` items."""
        self.items = {item.id: item for item in items}
        self.predicted_sum = predicted_sum
        if self.window is not None:
            self.window.seen = seen
            self.window.closed = True

    def take_shed(self, count: int) -> None:
        if self.window is not None:
            self.window.shed += count

    def take_result(self, result: ItemResult) -> None:
        """One of its item results, as written (by this run, or read back from the log)."""
        self.item_results[result.item_id] = result

    @property
    def emitted(self) -> KeysView[str]:
        """The items whose result was written."""
        return self.item_results.keys()

    def result_page(self, offset: int, limit: int) -> tuple[int, list[ItemResult]]:
        """How many item results it has, and up to ``limit`` of them from ``offset``."""
        page = islice(self.item_results.values(), offset, offset + limit)
        return len(self.item_results), list(page)

    def finish(self, status: str, reason: str, now: float) -> None:
        if self.status not in TERMINAL:
            self.status, self.reason, self.updated = status, reason, now

    # -- views ----------------------------------------------------------------

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def cost(self) -> float:
        return sum(label.cost for label in self.outcomes.values())

    def releasable(self) -> bool:
        """Ended, with nothing more to hear of or to write: only its report is needed."""
        return self.terminal and not self.open_tasks

    @property
    def open_tasks(self) -> list[Task]:
        return [t for t_id, t in self.tasks.items() if t_id not in self.outcomes]

    @property
    def sampling(self) -> bool:
        """A counting or enumeration window is open: its sample is held in memory
        (by the jobs agent) until it closes."""
        window = self.window
        return (
            window is not None
            and not window.closed
            and not self.plans_while_open
            and not self.terminal
        )

    def asked_items(self) -> set[str]:
        """Items with a task that is open or answered (not shed or withdrawn)."""
        return {
            task.item_id
            for t_id, task in self.tasks.items()
            if t_id not in self.outcomes or self.outcomes[t_id].status == "labeled"
        }

    def answered(self) -> list[tuple[Task, Label]]:
        return [
            (task, self.outcomes[t_id])
            for t_id, task in self.tasks.items()
            if t_id in self.outcomes and self.outcomes[t_id].status == "labeled"
        ]

    def counts(self) -> dict[str, int | float]:
        statuses = [label.status for label in self.outcomes.values()]
        return {
            "items": len(self.items),
            "tasks_issued": len(self.tasks),
            "tasks_done": statuses.count("labeled"),
            "tasks_shed": statuses.count("shed"),
            "tasks_withdrawn": statuses.count("withdrawn"),
            "tasks_open": len(self.open_tasks),
            "answers": sum(len(label.answers) for label in self.outcomes.values()),
        }

    def status_record(self, now: float) -> JobStatus:
        return JobStatus(
            job_id=self.job_id,
            kind=self.spec.kind,
            name=self.spec.name,
            status=self.status,
            reason=self.reason,
            priority=self.spec.priority,
            created=self.created,
            updated=self.updated or now,
            budget=self.spec.budget,
            cost=round(self.cost, 6),
            progress=self.progress(),
            window=self.window.view() if self.window is not None else None,
            estimate=self.estimate(),
        )

    # -- planning -------------------------------------------------------------

    def step(self, plan: Plan) -> list[Task]:
        """Advance: start, close a timed-out window, stop, or plan new tasks."""
        if self.terminal:
            return []
        if self.status == "queued":
            self.status, self.updated = "running", plan.now
        window = self.window
        if window is not None and not window.closed:
            if window.spec.seconds is not None and plan.now >= window.opened + window.spec.seconds:
                self.window_timed_out(plan)
            if not window.closed and not self.plans_while_open:
                return []
        done = self.done_reason(plan)
        if done is not None:
            # Answers in flight are paid for and go into the result, which they can
            # still move (a count's interval can widen again): the job ends once they
            # are in and the goal still holds, or it goes on asking.
            if not self.open_tasks:
                self.finish("done", done, plan.now)
            return []
        room = (self.spec.max_in_flight or plan.in_flight) - len(self.open_tasks)
        tasks: list[Task] = []
        while room > 0:
            task = self.next_task(plan)
            if task is None:
                break
            if self.cost + self.committed(plan, [*self.open_tasks, task]) > self.spec.budget:
                break
            self.take_task(task)  # at once: the next pick must see it
            tasks.append(task)
            room -= 1
        if not tasks and not self.open_tasks:
            stuck = self.stuck_reason(plan)
            if stuck is not None:
                self.finish("done", stuck, plan.now)
        return tasks

    def committed(self, plan: Plan, tasks: list[Task]) -> float:
        """The most the open ``tasks`` may still cost (a straggler duplicate each)."""
        total = 0.0
        for task in tasks:
            votes = task.redundancy or plan.redundancy
            total += max(len(task.batch), 1) * (votes + int(plan.mitigation)) * plan.pay_per_record
        return total

    def task_id(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128)).hex

    def new_task(self, plan: Plan, **fields: Any) -> Task:
        base: dict[str, Any] = {
            "task_id": self.task_id(),
            "job": self.job_id,
            "kind": "job",
            "priority": self.spec.priority,
            "created": plan.now,
            "idx": [],
            "val": [],
            "tags": [],
            "classifier": "",
        }
        base.update(fields)
        return Task(**base)

    def label_task(
        self, plan: Plan, spec: ClassifierSpec, item: JobItem, redundancy: int | None
    ) -> Task:
        """A task to label ``item`` for classifier ``spec``."""
        return self.new_task(
            plan,
            item_id=item.id,
            classifier=spec.name,
            question=spec.question,
            tags=list(spec.tags),
            na_allowed=spec.na_allowed,
            examples=spec.task_examples(),
            text=item.text,
            idx=item.idx,
            val=item.val,
            redundancy=redundancy,
            truth=truth_tag(item, spec.truth_field),
        )

    def window_timed_out(self, plan: Plan) -> None:
        if self.window is not None:
            self.window.closed = True

    def stuck_reason(self, plan: Plan) -> str | None:
        """Why the job can go no further with nothing open (budget, no more items)."""
        if self.next_task(plan) is None:
            return self.exhausted_reason()
        return "budget spent"

    def exhausted_reason(self) -> str | None:
        return "no more items to ask about"

    def results(self, plan: Plan) -> list[ItemResult]:
        """Item results not written yet (labeling jobs)."""
        return []

    @abstractmethod
    def progress(self) -> dict[str, int | float]: ...

    @abstractmethod
    def estimate(self) -> dict[str, Any] | None: ...

    @abstractmethod
    def done_reason(self, plan: Plan) -> str | None:
        """Why the job is done now, or None."""

    @abstractmethod
    def next_task(self, plan: Plan) -> Task | None:
        """The next task to ask (not yet recorded), or None."""
