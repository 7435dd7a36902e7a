"""A labeling job stops asking the crowd when the model is good enough with 95%
confidence, not when its point estimate on a few held-out labels says so."""

from __future__ import annotations

from channels.jobs import JobCommand, JobItem, LabelingJob
from channels.records import Interval, ModelMetrics
from pe.jobs.manager import JobManager
from pe.jobs.run import Plan, assured
from tests.unit.water_jobs import SPEC, outcome, water_plan


def _metrics(auc: float, low: float) -> ModelMetrics:
    return ModelMetrics(
        auc=auc, accuracy=0.9, per_tag={}, auc_ci=Interval(low=low, high=min(1.0, 2 * auc - low))
    )


def _manager() -> JobManager:
    manager = JobManager({"water": SPEC})
    items = [JobItem(id=f"m{i}", text=f"message {i}") for i in range(20)]
    job = LabelingJob(classifier="water", budget=100.0, redundancy=1, target_auc=0.8, items=items)
    manager.command(JobCommand(action="submit", job_id="j", spec=job, ts=0.0))
    return manager


def _plan(metrics: ModelMetrics | None) -> Plan:
    return water_plan(
        in_flight=5,
        model_metrics={} if metrics is None else {"water": (3, *assured(metrics))},
    )


def _tasks_asked(metrics: ModelMetrics) -> int:
    return len(_manager().step(_plan(metrics)).tasks)


def test_a_point_estimate_over_the_target_with_a_wide_interval_keeps_the_crowd_asking() -> None:
    assert _tasks_asked(_metrics(auc=0.85, low=0.72)) > 0


def test_a_model_whose_whole_interval_passes_the_target_takes_over() -> None:
    assert _tasks_asked(_metrics(auc=0.9, low=0.83)) == 0


def test_models_published_without_intervals_are_judged_by_their_point_estimates() -> None:
    legacy = ModelMetrics(auc=0.85, accuracy=None, per_tag={})
    assert assured(legacy) == (0.85, None)
    assert _tasks_asked(legacy) == 0


def test_a_model_that_takes_over_ends_the_job_once_the_answers_in_flight_are_in() -> None:
    manager = _manager()
    asked = manager.step(_plan(None)).tasks
    assert len(asked) == 5
    good = _plan(_metrics(auc=0.9, low=0.83))
    run = manager.runs["j"]
    assert manager.step(good).tasks == [] and run.status == "running"  # paid for, awaited
    for n, task in enumerate(asked):
        manager.outcome(outcome(task))
        manager.step(good)
        assert run.status == ("done" if n == len(asked) - 1 else "running")
    assert run.reason == "the model reached the target; it labeled the rest"
