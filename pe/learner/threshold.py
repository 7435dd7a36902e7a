"""The decision rule of a two-tag classifier: the threshold on its first tag's
probability with the best expected F1 of that tag, with a floor on its expected
precision the operator sets (``learner.min_precision``).

At a fixed 0.5 a rare tag hardly ever fires (``request=yes``, 17% of messages: recall
under 1% on a live stream): with few labels the model's probabilities of it stay low.
Out-of-fold predictions score every label with a model that did not learn from it;
Platt scaling fits two numbers to them, turning the model's scores into calibrated
probabilities of the tag; the threshold is then the one with the best F1 expected
under those probabilities over the items the model will classify (the stream's
sample a distilled model learned from, else the labelled items). The F1 of the
labels themselves, maximised directly, jumps between distant thresholds from one few
hundred noisy labels to the next (docs/quality.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from pe.common.linear import logit

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
    """Each example's score from a model fitted without it (stratified folds; a row of
    scores if the fit's predictions have columns); None when a tag has fewer than two
    examples."""
    counts = Counter(tags)
    folds = min(FOLDS, *counts.values())
    if len(counts) < 2 or folds < 2:
        return None
    scores: npt.NDArray[np.float64] | None = None
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for train, test in split.split(np.zeros(len(tags)), tags):
        predict = fit(x[train], [tags[i] for i in train], [weights[i] for i in train])
        got = predict(x[test])
        if scores is None:
            scores = np.zeros((len(tags), *got.shape[1:]))
        scores[test] = got
    return scores


def choose_threshold(
    positive: npt.NDArray[np.bool_],
    score: npt.NDArray[np.float64],
    min_precision: float,
    population: npt.NDArray[np.float64] | None = None,
) -> float | None:
    """The threshold on ``score`` (a probability) whose rule ``score >= threshold`` has
    the best expected F1 of the positive tag over ``population`` (scores of the items to
    classify; ``score`` itself if None), among the rules whose expected precision is at
    least ``min_precision`` (if none is, the most precise). The expectation is under
    ``score`` calibrated to ``positive`` by Platt scaling. None without both positives
    and negatives, or when higher scores do not mean more positives."""
    if positive.all() or not positive.any():
        return None
    # A (nearly) unregularised fit of two numbers: the slope and the intercept.
    platt = LogisticRegression(C=1e6).fit(logit(score)[:, None], positive)
    if platt.coef_[0, 0] <= 0:
        return None
    ranked = np.sort(score if population is None or not len(population) else population)[::-1]
    probability = platt.predict_proba(logit(ranked)[:, None])[:, 1]
    # Predicting the k highest scores positive: expected true positives, and F1 as
    # 2 TP / (k + all positives).
    true_positives = np.cumsum(probability)
    predicted = np.arange(1, len(ranked) + 1)
    f1 = 2 * true_positives / (predicted + true_positives[-1])
    precision = true_positives / predicted
    # A threshold cannot split equal scores: only the last of a run of them is a rule.
    rule = np.append(ranked[:-1] > ranked[1:], True)
    allowed = rule & (precision >= min_precision)
    if allowed.any():
        best = np.argmax(np.where(allowed, f1, -1.0))
    else:
        best = np.argmax(np.where(rule, precision, -1.0))
    return float(ranked[best])
