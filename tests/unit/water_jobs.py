"""What the job tests share: a ``water`` classifier, a plan for it, a crowd outcome."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from channels.records import Answer, Label, Task
from pe.jobs.run import Plan
from pe.params import ClassifierSpec

TAGS = ["yes", "no"]
SPEC = ClassifierSpec(name="water", question="Is this about water?", tags=TAGS)

_PLAN = Plan(
    now=0.0,
    pay_per_record=0.02,
    redundancy=1,
    mitigation=False,
    in_flight=10,
    classifiers={"water": SPEC},
    models={},
    model_metrics={},
    gold={},
)


def water_plan(**changes: Any) -> Plan:
    """A plan for the water classifier: ten tasks in flight, no model, no gold."""
    return dataclasses.replace(_PLAN, **changes)


def outcome(
    task: Task,
    tag: str | None = "yes",
    *,
    worker: str = "w1",
    ts: float = 1.0,
    status: Literal["labeled", "shed", "withdrawn"] = "labeled",
) -> Label:
    """The crowd's outcome of a job's task: one answer of ``tag`` at 0.02, or none."""
    labeled = status == "labeled"
    answers = [Answer(task_id=task.task_id, worker_id=worker, tag=tag, latency_s=1.0)]
    return Label(
        item_id=task.item_id,
        classifier=task.classifier or "water",
        tag=tag if labeled else None,
        agreement=1.0,
        kind=task.kind,
        form=task.form,
        answers=answers if labeled else [],
        ts=ts,
        task_id=task.task_id,
        job=task.job,
        idx=[],
        val=[],
        status=status,
        cost=0.02 if labeled else 0.0,
    )
