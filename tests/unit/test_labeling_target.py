"""A labeling job stops asking the crowd when the model is good enough with 95%
confidence, not when its point estimate on a few held-out labels says so."""

from __future__ import annotations

from channels.jobs import JobCommand, JobItem, LabelingJob
from channels.records import Interval, ModelMetrics
from pe.jobs.manager import JobManager
from pe.jobs.run import Plan, assured
from pe.params import ClassifierSpec

SPEC = ClassifierSpec(name="water", question="Is this about water?", tags=["yes", "no"])


def _metrics(auc: float, low: float) -> ModelMetrics:
    return ModelMetrics(
        auc=auc, accuracy=0.9, per_tag={}, auc_ci=Interval(low=low, high=min(1.0, 2 * auc - low))
    )


def _tasks_asked(metrics: ModelMetrics) -> int:
    manager = JobManager({"water": SPEC})
    items = [JobItem(id=f"m{i}", text=f"message {i}") for i in range(20)]
    job = LabelingJob(classifier="water", budget=100.0, redundancy=1, target_auc=0.8, items=items)
    manager.command(JobCommand(action="submit", job_id="j", spec=job, ts=0.0))
    plan = Plan(
        now=0.0,
        pay_per_record=0.02,
        redundancy=1,
        mitigation=False,
        in_flight=5,
        classifiers={"water": SPEC},
        models={},
        model_metrics={"water": (3, *assured(metrics))},
        gold={},
    )
    return len(manager.step(plan).tasks)


def test_a_point_estimate_over_the_target_with_a_wide_interval_keeps_the_crowd_asking() -> None:
    assert _tasks_asked(_metrics(auc=0.85, low=0.72)) > 0


def test_a_model_whose_whole_interval_passes_the_target_takes_over() -> None:
    assert _tasks_asked(_metrics(auc=0.9, low=0.83)) == 0


def test_models_published_without_intervals_are_judged_by_their_point_estimates() -> None:
    legacy = ModelMetrics(auc=0.85, accuracy=None, per_tag={})
    assert assured(legacy) == (0.85, None)
    assert _tasks_asked(legacy) == 0
