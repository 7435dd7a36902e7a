"""Labeling jobs: crowd labels for a set of items, until the model can take over.

Each item is asked once (``redundancy`` answers, or the quality loop's adaptive
number when unset, settled by the loop's posterior); an item whose task
was shed is asked again later. The job is done when every item has a label, when
the classifier's held-out AUC or accuracy reaches the job's target (the model then
labels the rest), or when the budget would be passed (the model labels the rest
if there is one). Every result says its source: ``crowd`` or ``model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.jobs import ItemResult, LabelingJob
from channels.records import Task
from pe.common.linear import feature_matrix
from pe.jobs.run import JobRun, Plan

__all__ = ["LabelingRun"]


@dataclass
class LabelingRun(JobRun):
    plans_while_open = True
    spec: LabelingJob

    def _crowd_labeled(self) -> dict[str, tuple[str | None, float]]:
        return {task.item_id: (label.tag, label.agreement) for task, label in self.answered()}

    def next_task(self, plan: Plan) -> Task | None:
        if self._model_ready(plan):
            return None
        asked = self.asked_items()
        spec = plan.classifiers[self.spec.classifier]
        for item in self.items.values():
            if item.id not in asked and item.id not in self.emitted:
                return self.label_task(plan, spec, item, self.spec.redundancy)
        return None

    def _model_ready(self, plan: Plan) -> bool:
        if self.spec.target_auc is None and self.spec.target_accuracy is None:
            return False
        version, auc, accuracy = plan.model_metrics.get(self.spec.classifier, (0, None, None))
        if version == 0:
            return False
        if self.spec.target_auc is not None and (auc is None or auc < self.spec.target_auc):
            return False
        target = self.spec.target_accuracy
        return target is None or (accuracy is not None and accuracy >= target)

    def done_reason(self, plan: Plan) -> str | None:
        labeled = self._crowd_labeled()
        if self.window is not None and not self.window.closed:
            return None
        if all(item_id in labeled or item_id in self.emitted for item_id in self.items):
            return "every item labeled"
        if self._model_ready(plan):
            return "the model reached the target; it labeled the rest"
        return None

    def releasable(self) -> bool:
        # Done without a model, the rest waits for one to label it.
        rest = self.status == "done" and any(i not in self.emitted for i in self.items)
        return super().releasable() and not rest

    def exhausted_reason(self) -> str | None:
        return None  # waiting for open tasks, or for more items

    def stuck_reason(self, plan: Plan) -> str | None:
        if self.next_task(plan) is None:
            return None
        return (
            "budget spent; the model labeled the rest"
            if plan.models.get(self.spec.classifier)
            else "budget spent; the rest are unlabeled"
        )

    def results(self, plan: Plan) -> list[ItemResult]:
        out = [
            ItemResult(
                job_id=self.job_id,
                item_id=item_id,
                classifier=self.spec.classifier,
                tag=tag,
                source="crowd",
                confidence=agreement,
                ts=plan.now,
            )
            for item_id, (tag, agreement) in self._crowd_labeled().items()
            if item_id not in self.emitted
        ]
        if self.terminal and self.status == "done":
            out.extend(self._model_results(plan, {r.item_id for r in out}))
        for result in out:
            self.take_result(result)
        return out

    def _model_results(self, plan: Plan, taken: set[str]) -> list[ItemResult]:
        model = plan.models.get(self.spec.classifier)
        rest = [i for i in self.items.values() if i.id not in self.emitted and i.id not in taken]
        if model is None or not rest:
            return []
        probs = model.predict_proba(
            feature_matrix([(i.idx, i.val) for i in rest], model.n_features)
        )
        version = plan.model_metrics.get(self.spec.classifier, (0, None, None))[0]
        return [
            ItemResult(
                job_id=self.job_id,
                item_id=item.id,
                classifier=self.spec.classifier,
                tag=model.classes[int(row.argmax())],
                source="model",
                confidence=round(float(row.max()), 4),
                model_version=version,
                ts=plan.now,
            )
            for item, row in zip(rest, probs, strict=True)
        ]

    def progress(self) -> dict[str, int | float]:
        labeled = self._crowd_labeled()
        return {
            **self.counts(),
            "labeled_by_crowd": len(labeled),
            "results": len(self.emitted),
        }

    def estimate(self) -> dict[str, Any] | None:
        return None
