"""Learning progress of each classifier, for an operator to watch it learn: the crowd's
work over time (labels bought, answers, cost, label latency p50/p95) and every model
published, with its held-out AUC and per-tag precision and recall.

The learner's process builds both from logs it follows from their start, so a
restarted worker shows the whole history again: ``crowd.labels`` for the crowd's work,
``models.history`` (a model's header, without its weights, appended by the learner
when it publishes the model) for the models; ``control.models`` is compacted and keeps
only each classifier's newest model.

The crowd's work is counted in time buckets aligned on the epoch, at most
``max_buckets`` of them per classifier: when a classifier's labels span more, the
bucket width doubles and neighbours merge, so memory stays bounded through a
disaster of days while the plot keeps its shape. A bucket keeps its labels' latencies
themselves (8 bytes each) for exact percentiles: labels are bought one by one, so
even a million of them take 8 MB, and a quantile sketch would only add a
dependency.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from pydantic import BaseModel, Field

from channels.records import Interval, Label, ModelHeader
from pe.common.api import Call, Endpoint
from pe.common.http import HttpError, OperatorAccess, ready_or_503

__all__ = ["CrowdSeries", "LearningProgress", "ProgressApi"]

PREFIX = "/api/v1/learning"
#: How long a call waits for a starting worker to have read its logs.
READY_WAIT_S = 10.0


@dataclass
class _Bucket:
    labels: int = 0
    answers: int = 0
    cost: float = 0.0
    latencies: array[float] = field(default_factory=lambda: array("d"))

    def merge(self, other: _Bucket) -> None:
        self.labels += other.labels
        self.answers += other.answers
        self.cost += other.cost
        self.latencies.extend(other.latencies)


class CrowdPoint(BaseModel):
    start: float = Field(description="The bucket's start, epoch seconds.")
    labels: int = Field(description="Labels bought in the bucket (not gold, not corrections).")
    answers: int = Field(description="Answers paid for in the bucket, gold questions' too.")
    cost: float
    latency_p50: float | None = Field(description="Seconds from task to label, median.")
    latency_p95: float | None
    labels_total: int = Field(description="Labels bought up to the bucket's end.")
    cost_total: float


class CrowdSeries:
    """One classifier's crowd work in time buckets (see the module's doc)."""

    def __init__(self, width_s: float = 10.0, max_buckets: int = 120) -> None:
        self.width_s = width_s
        self.max_buckets = max_buckets
        self._buckets: dict[int, _Bucket] = {}

    def take(self, label: Label) -> None:
        """Count a label written by the annotator (an operator's correction buys
        nothing and is not counted)."""
        if label.status != "labeled" or label.corrected_by is not None:
            return
        bucket = self._buckets.setdefault(math.floor(label.ts / self.width_s), _Bucket())
        bucket.answers += len(label.answers)
        bucket.cost += label.cost
        if label.kind != "gold":
            bucket.labels += 1
            if label.task_created is not None:
                bucket.latencies.append(max(0.0, label.ts - label.task_created))
        while max(self._buckets) - min(self._buckets) >= self.max_buckets:
            self._coarsen()

    def _coarsen(self) -> None:
        self.width_s *= 2
        merged: dict[int, _Bucket] = {}
        for key in sorted(self._buckets):
            # floor(ts / 2w) == floor(floor(ts / w) / 2): the new grid holds the old.
            target = merged.setdefault(key // 2, _Bucket())
            target.merge(self._buckets[key])
        self._buckets = merged

    def points(self) -> list[CrowdPoint]:
        """The buckets from the first label's to the last's, empty ones included."""
        if not self._buckets:
            return []
        points: list[CrowdPoint] = []
        labels_total, cost_total = 0, 0.0
        for key in range(min(self._buckets), max(self._buckets) + 1):
            bucket = self._buckets.get(key, _Bucket())
            labels_total += bucket.labels
            cost_total += bucket.cost
            p50, p95 = (
                (round(float(v), 3) for v in np.percentile(bucket.latencies, [50, 95]))
                if bucket.latencies
                else (None, None)
            )
            points.append(
                CrowdPoint(
                    start=key * self.width_s,
                    labels=bucket.labels,
                    answers=bucket.answers,
                    cost=round(bucket.cost, 6),
                    latency_p50=p50,
                    latency_p95=p95,
                    labels_total=labels_total,
                    cost_total=round(cost_total, 6),
                )
            )
        return points


class TagPoint(BaseModel):
    precision: float
    recall: float
    support: int
    precision_ci: Interval | None
    recall_ci: Interval | None


class ModelPoint(BaseModel):
    version: int
    created: float
    n_train: int
    n_holdout: int
    auc: float | None = Field(description="Held-out AUC (macro over tags).")
    auc_ci: Interval | None = Field(description="Its 95% interval.")
    per_tag: dict[str, TagPoint]

    @classmethod
    def of(cls, header: ModelHeader) -> ModelPoint:
        metrics = header.metrics
        return cls(
            version=header.version,
            created=header.created,
            n_train=header.n_train,
            n_holdout=header.n_holdout,
            auc=metrics.auc,
            auc_ci=metrics.auc_ci,
            per_tag={
                tag: TagPoint(
                    precision=m.precision,
                    recall=m.recall,
                    support=m.support,
                    precision_ci=m.precision_ci,
                    recall_ci=m.recall_ci,
                )
                for tag, m in metrics.per_tag.items()
            },
        )


class Progress(BaseModel):
    classifier: str
    bucket_s: float = Field(description="The width of the crowd series' buckets.")
    crowd: list[CrowdPoint] = Field(description="Oldest first.")
    models: list[ModelPoint] = Field(description="Every model published, oldest first.")


class LearningProgress:
    """The crowd series and model history of every classifier."""

    def __init__(self, width_s: float = 10.0, max_buckets: int = 120) -> None:
        self._series = partial(CrowdSeries, width_s, max_buckets)
        self.crowd: dict[str, CrowdSeries] = {}
        self.models: dict[str, dict[int, ModelHeader]] = {}

    def take_label(self, label: Label) -> None:
        if label.job is None:  # a job's labels are the job's, not the classifier's
            self.crowd.setdefault(label.classifier, self._series()).take(label)

    def take_model(self, header: ModelHeader) -> None:
        """A published model; one written twice (a learner that crashed between its
        two writes repeats it) is kept once."""
        self.models.setdefault(header.classifier, {})[header.version] = header

    def knows(self, header: ModelHeader) -> bool:
        return header.version in self.models.get(header.classifier, {})

    def of(self, classifier: str) -> Progress:
        series = self.crowd.get(classifier)
        models = self.models.get(classifier, {})
        return Progress(
            classifier=classifier,
            bucket_s=series.width_s if series else self._series().width_s,
            crowd=series.points() if series else [],
            models=[ModelPoint.of(models[v]) for v in sorted(models)],
        )


class ProgressApi:
    def __init__(
        self,
        progress: LearningProgress,
        known: Callable[[], set[str]],
        *,
        operator: OperatorAccess,
        ready: Sequence[asyncio.Event],
    ) -> None:
        """``known()``: the classifiers of the pipeline, retired ones included;
        ``ready``: set once each log has been read to its end."""
        self._progress = progress
        self._known = known
        self._operator = operator
        self._ready = ready

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "GET",
                f"{PREFIX}/{{classifier}}",
                "learning_progress",
                "A classifier's learning over time: the crowd's labels, answers, cost "
                "and label latency, and every model published with its held-out metrics.",
                self.show,
                access=self._operator,
                response=Progress,
                errors=(404, 503),
                tag="labels",
            )
        ]

    async def show(self, call: Call) -> Progress:
        for ready in self._ready:
            await ready_or_503(ready, READY_WAIT_S, "the crowd labels and models")
        classifier = call.request.match_info["classifier"]
        if classifier not in self._known():
            raise HttpError(404, f"no classifier {classifier[:100]!r}")
        return self._progress.of(classifier)
