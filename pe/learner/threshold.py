"""The decision rule of a two-tag classifier: the threshold on its first tag's
probability that maximises that tag's F1 on out-of-fold predictions of the training
labels, with a floor on its precision the operator sets (``learner.min_precision``).

At a fixed 0.5 a rare tag hardly ever fires (``request=yes``, 17% of messages: recall
under 1% on a live stream): with few labels the model's probabilities of it stay low.
Out-of-fold predictions score every label with a model that did not learn from it,
so the threshold is chosen on as many labels as the model was trained on, not only on
the few held out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import StratifiedKFold

__all__ = ["choose_threshold", "out_of_fold"]

#: Folds of the out-of-fold predictions (fewer when a tag has fewer labels).
FOLDS = 5

#: Fits a model on (features, tags, weights); returns the probability of the
#: positive tag for other features.
Fit = Callable[
    [sp.csr_matrix, list[str], list[float]], Callable[[sp.csr_matrix], npt.NDArray[np.float64]]
]


def out_of_fold(
    x: sp.csr_matrix, tags: Sequence[str], weights: Sequence[float], fit: Fit
) -> npt.NDArray[np.float64] | None:
    """Each example's score from a model fitted without it (stratified folds); None
    when a tag has fewer than two examples."""
    counts = Counter(tags)
    folds = min(FOLDS, *counts.values())
    if len(counts) < 2 or folds < 2:
        return None
    scores = np.zeros(len(tags))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for train, test in split.split(np.zeros(len(tags)), tags):
        predict = fit(x[train], [tags[i] for i in train], [weights[i] for i in train])
        scores[test] = predict(x[test])
    return scores


def choose_threshold(
    positive: npt.NDArray[np.bool_], score: npt.NDArray[np.float64], min_precision: float
) -> float | None:
    """The threshold on ``score`` whose rule ``score >= threshold`` has the best F1 of
    the positive tag among those with precision at least ``min_precision`` (if none
    has, the most precise); None without both positives and negatives."""
    if positive.all() or not positive.any():
        return None
    precision, recall, thresholds = precision_recall_curve(positive, score)
    # The curve's last point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(precision),
        where=precision + recall > 0,
    )
    allowed = precision >= min_precision
    best = int(np.argmax(np.where(allowed, f1, -1.0))) if allowed.any() else int(precision.argmax())
    return float(thresholds[best])
