"""Held-out evaluation: per-tag precision, recall and one-vs-rest AUC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from channels.records import LinearModel, ModelMetrics, TagMetrics
from pe.common.linear import compile_model, feature_matrix
from pe.learner.trainers import Example

__all__ = ["evaluate"]


def evaluate(model: LinearModel, holdout: Sequence[Example], tags: list[str]) -> ModelMetrics:
    """Metrics of ``model`` on held-out examples; AUC is None where a tag lacks positives
    or negatives."""
    if not holdout:
        return ModelMetrics(auc=None, accuracy=None, per_tag={})
    compiled = compile_model(model)
    x = feature_matrix([(e.idx, e.val) for e in holdout], model.n_features)
    truth = np.array([e.tag for e in holdout])
    proba = compiled.predict_proba(x)
    predicted = np.array(compiled.classes)[proba.argmax(axis=1)]
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, labels=tags, zero_division=0
    )
    per_tag: dict[str, TagMetrics] = {}
    aucs = []
    for i, tag in enumerate(tags):
        positives = truth == tag
        auc = None
        if 0 < positives.sum() < len(truth) and tag in compiled.classes:
            auc = round(float(roc_auc_score(positives, proba[:, compiled.classes.index(tag)])), 4)
            aucs.append(auc)
        per_tag[tag] = TagMetrics(
            precision=round(float(precision[i]), 4),
            recall=round(float(recall[i]), 4),
            auc=auc,
            support=int(support[i]),
        )
    return ModelMetrics(
        auc=round(float(np.mean(aucs)), 4) if aucs else None,
        accuracy=round(float((predicted == truth).mean()), 4),
        per_tag=per_tag,
    )
