"""A job that ended and whose report is out: its status and item results, nothing else.

A run holds its items, tasks and outcomes while it works: about 6 KB per labeled
item, so a 100,000-item labeling job held 600 MB for as long as the worker ran, and
a restart rebuilt every job ever run. Once a job has ended, has no task open and its
final status is written, only what the API serves is kept: that status and, for a
labeling job, its item results, each as its JSON (decoded a page at a time when
asked for). Events of its tasks read later (a record read twice, a restart's replay)
change nothing.
"""

from __future__ import annotations

import random
from collections.abc import KeysView
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from pydantic_core import to_json

from channels.jobs import ItemResult, JobItem, JobStatus
from channels.records import Label, Task
from pe.jobs.run import JobRun, Plan

__all__ = ["EndedRun"]


@dataclass
class EndedRun(JobRun):
    """What is kept of an ended job: :attr:`final`, its last status record."""

    final: JobStatus = field(kw_only=True)
    #: Each item result's JSON, by item id: 2,000 results took 2.3 MB as records and
    #: 0.59 MB so (tracemalloc), and an ended job's results are read a page at a time.
    packed: dict[str, bytes] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.job_id}:0")  # never drawn from: nothing to plan

    @classmethod
    def of(cls, run: JobRun, final: JobStatus) -> EndedRun:
        return cls(
            job_id=run.job_id,
            spec=run.spec.model_copy(update={"items": None, "stream": None}),
            created=run.created,
            status=run.status,
            reason=run.reason,
            published=run.published,
            updated=run.updated,
            final=final,
            packed={key: to_json(result) for key, result in run.item_results.items()},
        )

    def take_result(self, result: ItemResult) -> None:
        self.packed[result.item_id] = to_json(result)

    @property
    def emitted(self) -> KeysView[str]:
        return self.packed.keys()

    def result_page(self, offset: int, limit: int) -> tuple[int, list[ItemResult]]:
        page = islice(self.packed.values(), offset, offset + limit)
        return len(self.packed), [ItemResult.model_validate_json(data) for data in page]

    # Its tasks and items are gone: events about them change nothing.
    def take_task(self, task: Task) -> None:
        pass

    def take_outcome(self, label: Label) -> None:
        pass

    def take_items(self, items: list[JobItem]) -> None:
        pass

    def close_window(self, items: list[JobItem], seen: int, predicted_sum: float) -> None:
        pass

    def take_shed(self, count: int) -> None:
        pass

    def releasable(self) -> bool:
        return False  # released already

    @property
    def cost(self) -> float:
        return self.final.cost

    def status_record(self, now: float) -> JobStatus:
        return self.final

    def progress(self) -> dict[str, int | float]:
        return dict(self.final.progress)

    def estimate(self) -> dict[str, Any] | None:
        return self.final.estimate

    def done_reason(self, plan: Plan) -> str | None:
        return self.reason

    def next_task(self, plan: Plan) -> Task | None:
        return None
