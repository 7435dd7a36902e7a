"""An ended job keeps only its report: status and item results."""

from __future__ import annotations

from channels.jobs import JobCommand, JobItem, LabelingJob
from channels.records import Answer, Label, Task
from pe.jobs.ended import EndedRun
from pe.jobs.manager import JobManager
from pe.jobs.run import Plan
from pe.params import ClassifierSpec

SPEC = ClassifierSpec(name="water", question="Is this about water?", tags=["yes", "no"])
PLAN = Plan(
    now=1.0,
    pay_per_record=0.02,
    redundancy=1,
    mitigation=False,
    in_flight=10,
    classifiers={"water": SPEC},
    models={},
    model_metrics={},
    gold={},
)


def _manager(items: int = 20) -> JobManager:
    manager = JobManager({"water": SPEC})
    job = LabelingJob(
        classifier="water",
        budget=100.0,
        redundancy=1,
        items=[JobItem(id=f"m{i}", text=f"message {i} about the flood") for i in range(items)],
    )
    manager.command(JobCommand(action="submit", job_id="j", spec=job, ts=0.0))
    return manager


def _label(task: Task, status: str = "labeled") -> Label:
    answers = [Answer(task_id=task.task_id, worker_id="w1", tag="yes", latency_s=1.0)]
    return Label(
        item_id=task.item_id,
        classifier="water",
        tag="yes" if status == "labeled" else None,
        agreement=1.0,
        kind="job",
        answers=answers if status == "labeled" else [],
        ts=1.0,
        task_id=task.task_id,
        job="j",
        idx=[],
        val=[],
        status=status,
        cost=0.02 if status == "labeled" else 0.0,
    )


def test_a_finished_job_keeps_its_status_and_results_and_forgets_its_work() -> None:
    manager = _manager()
    tasks: list[Task] = []
    while manager.runs["j"].status != "done":
        step = manager.step(PLAN)
        tasks += step.tasks
        for task in step.tasks:
            manager.outcome(_label(task))
    run = manager.runs["j"]
    assert isinstance(run, EndedRun)
    final = run.status_record(5.0)
    assert final.status == "done" and final.cost == 0.4 and final.progress["tasks_done"] == 20
    assert run.cost == final.cost and run.progress() == final.progress
    assert len(run.item_results) == 20 and all(r.tag == "yes" for r in run.item_results.values())
    assert not run.items and not run.tasks and not run.outcomes and run.spec.items is None
    # Its records read again (its own status, a label, a task) change nothing.
    manager.task(tasks[0])
    manager.outcome(_label(tasks[0]))
    manager.result(final)
    step = manager.step(PLAN)
    assert step.tasks == [] and step.results == [] and step.statuses == []
    assert manager.runs["j"].status_record(6.0) == final
    assert not run.tasks and not run.outcomes


def test_a_job_ended_with_tasks_open_is_kept_until_their_outcomes_are_in() -> None:
    manager = _manager()
    asked = manager.step(PLAN).tasks
    assert len(asked) == 10
    manager.command(JobCommand(action="cancel", job_id="j", reason="enough", ts=1.0))
    manager.step(PLAN)
    assert manager.runs["j"].terminal and not isinstance(manager.runs["j"], EndedRun)
    for task in asked[:-1]:
        manager.outcome(_label(task))
    manager.outcome(_label(asked[-1], status="withdrawn"))
    manager.step(PLAN)
    run = manager.runs["j"]
    assert isinstance(run, EndedRun)
    assert run.cost == 0.18 and run.progress()["tasks_withdrawn"] == 1


def test_a_labeling_job_done_without_a_model_keeps_its_items_for_one() -> None:
    manager = JobManager({"water": SPEC})
    items = [JobItem(id=f"m{i}", text=f"message {i}") for i in range(20)]
    job = LabelingJob(classifier="water", budget=100.0, target_auc=0.8, items=items)
    manager.command(JobCommand(action="submit", job_id="j", spec=job, ts=0.0))
    # The model's figures pass the target, but the model itself is not loaded yet.
    ready = Plan(**{**PLAN.__dict__, "model_metrics": {"water": (3, 0.9, 0.9)}})
    assert manager.step(ready).tasks == []
    run = manager.runs["j"]
    assert run.status == "done" and not isinstance(run, EndedRun) and len(run.items) == 20
