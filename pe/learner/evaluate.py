"""Held-out evaluation: per-tag precision, recall and one-vs-rest AUC, each with its 95%
confidence interval (pe.common.intervals), and accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from channels.records import Interval, LinearModel, ModelMetrics, TagMetrics
from pe.common.intervals import auc_interval, wilson
from pe.common.linear import compile_model, feature_matrix
from pe.learner.trainers import Example

__all__ = ["evaluate"]


def _interval(low: float, high: float) -> Interval:
    """Rounded outwards to 4 decimals, so rounding never narrows it."""
    return Interval(
        low=max(math.floor(low * 1e4) / 1e4, 0.0), high=min(math.ceil(high * 1e4) / 1e4, 1.0)
    )


def _share(hits: int, n: int) -> tuple[float, Interval]:
    """``hits / n`` (0 when ``n`` is 0) and its Wilson interval ([0, 1] when ``n`` is 0)."""
    estimate = wilson(hits, n)
    return (round(hits / n, 4) if n else 0.0), _interval(estimate.low, estimate.high)


def evaluate(model: LinearModel, holdout: Sequence[Example], tags: list[str]) -> ModelMetrics:
    """Metrics of ``model`` on held-out examples; AUC is None where a tag lacks positives
    or negatives."""
    if not holdout:
        return ModelMetrics(auc=None, accuracy=None, per_tag={})
    compiled = compile_model(model)
    x = feature_matrix([(e.idx, e.val) for e in holdout], model.n_features)
    truth = np.array([e.tag for e in holdout])
    proba = compiled.predict_proba(x)
    predicted = np.array(compiled.decide(proba)[0])
    per_tag: dict[str, TagMetrics] = {}
    aucs: list[tuple[float, Interval]] = []
    for tag in tags:
        positives, chosen = truth == tag, predicted == tag
        hits, support = int((positives & chosen).sum()), int(positives.sum())
        auc = auc_ci = None
        if 0 < support < len(truth) and tag in compiled.classes:
            value = float(roc_auc_score(positives, proba[:, compiled.classes.index(tag)]))
            auc, auc_ci = (
                round(value, 4),
                _interval(*auc_interval(value, support, len(truth) - support)),
            )
            aucs.append((auc, auc_ci))
        precision, precision_ci = _share(hits, int(chosen.sum()))
        recall, recall_ci = _share(hits, support)
        per_tag[tag] = TagMetrics(
            precision=precision,
            recall=recall,
            auc=auc,
            support=support,
            precision_ci=precision_ci,
            recall_ci=recall_ci,
            auc_ci=auc_ci,
        )
    accuracy, accuracy_ci = _share(int((predicted == truth).sum()), len(truth))
    if not aucs:
        return ModelMetrics(auc=None, accuracy=accuracy, per_tag=per_tag, accuracy_ci=accuracy_ci)
    # The macro AUC's interval averages the tags' bounds: with two tags both have the
    # same AUC and interval; with more, the spread of a mean is at most the mean of
    # the spreads, so it is wide enough however the tags' errors go together.
    return ModelMetrics(
        auc=round(float(np.mean([a for a, _ in aucs])), 4),
        accuracy=accuracy,
        per_tag=per_tag,
        auc_ci=_interval(
            float(np.mean([ci.low for _, ci in aucs])), float(np.mean([ci.high for _, ci in aucs]))
        ),
        accuracy_ci=accuracy_ci,
    )
