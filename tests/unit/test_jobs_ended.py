"""An ended job keeps only its report: status and item results."""

from __future__ import annotations

from channels.jobs import ItemResult, JobCommand, JobItem, LabelingJob
from channels.records import Task
from pe.jobs.ended import EndedRun
from pe.jobs.manager import JobManager
from tests.unit.water_jobs import SPEC, outcome, water_plan

PLAN = water_plan(now=1.0)


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


def test_a_finished_job_keeps_its_status_and_results_and_forgets_its_work() -> None:
    manager = _manager()
    tasks: list[Task] = []
    results: list[ItemResult] = []
    while manager.runs["j"].status != "done":
        step = manager.step(PLAN)
        tasks += step.tasks
        results += step.results
        for task in step.tasks:
            manager.outcome(outcome(task))
    run = manager.runs["j"]
    assert isinstance(run, EndedRun)
    final = run.status_record(5.0)
    assert final.status == "done" and final.cost == 0.4 and final.progress["tasks_done"] == 20
    assert run.cost == final.cost and run.progress() == final.progress
    assert not run.items and not run.tasks and not run.outcomes and run.spec.items is None
    # Its results are kept as JSON, not as records, and served a page at a time.
    assert len(results) == 20 and all(r.tag == "yes" for r in results)
    assert not run.item_results
    assert run.result_page(0, 100) == (20, results)
    assert run.result_page(15, 10) == (20, results[15:])
    # A result read back from the log again (a restart's replay) replaces its copy.
    again = results[3].model_copy(update={"confidence": 0.5})
    manager.result(again)
    assert run.result_page(3, 1) == (20, [again])
    # Its records read again (its own status, a label, a task) change nothing.
    manager.task(tasks[0])
    manager.outcome(outcome(tasks[0]))
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
        manager.outcome(outcome(task))
    manager.outcome(outcome(asked[-1], status="withdrawn"))
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
    ready = water_plan(now=1.0, model_metrics={"water": (3, 0.9, 0.9)})
    assert manager.step(ready).tasks == []
    run = manager.runs["j"]
    assert run.status == "done" and not isinstance(run, EndedRun) and len(run.items) == 20
