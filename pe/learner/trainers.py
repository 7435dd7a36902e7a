"""Model families: scikit-learn (batch refit) and river (online), both exported as weights."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from river import linear_model, optim
from sklearn.linear_model import LogisticRegression

from channels.records import Decision, LinearModel, SparseRow
from pe.common.heap import release_free_heap
from pe.common.linear import feature_matrix
from pe.learner.threshold import choose_threshold, out_of_fold

__all__ = ["RiverTrainer", "SklearnTrainer", "Trainer", "fit_logistic", "make_trainer"]


class Example(NamedTuple):
    """A labeled item; ``weight``: how sure the crowd is of ``tag`` (its posterior)."""

    idx: Sequence[int]
    val: Sequence[float]
    tag: str
    weight: float = 1.0


#: Weights smaller than this are dropped from a model message: they change no
#: prediction visibly and keep the message small.
_MIN_WEIGHT = 1e-6


class Trainer(ABC):
    """Learns from ``(indices, values, tag)`` examples; exports a :class:`LinearModel`."""

    family: str

    def __init__(self, tags: list[str], n_features: int) -> None:
        self.classes = sorted(tags)
        self.n_features = n_features

    @abstractmethod
    def add(self, example: Example) -> None:
        """A new training example."""

    @abstractmethod
    def export(self) -> LinearModel | None:
        """The current model, or None when it cannot be trained yet."""

    async def export_off_loop(self, executor: Executor) -> LinearModel | None:
        """:meth:`export`, sending long computations to ``executor``.

        The default exports in place: the trainer's work is cheap enough for the loop.
        """
        return self.export()


class SklearnTrainer(Trainer):
    """Logistic regression refitted on every training example (fast at crowd scale)."""

    family = "sklearn"

    def __init__(
        self, tags: list[str], n_features: int, c: float, min_precision: float = 0.0
    ) -> None:
        """A two-tag classifier's first tag (``yes`` of yes/no) gets a threshold."""
        super().__init__(tags, n_features)
        self.c = c
        self.positive = tags[0] if len(tags) == 2 else None
        self.min_precision = min_precision
        self.examples: list[Example] = []

    def add(self, example: Example) -> None:
        self.examples.append(example)

    def _fit_args(self) -> tuple[list[Example], int, float, str | None, float]:
        return list(self.examples), self.n_features, self.c, self.positive, self.min_precision

    def export(self) -> LinearModel | None:
        return fit_logistic(*self._fit_args())

    async def export_off_loop(self, executor: Executor) -> LinearModel | None:
        # A refit holds the GIL for long stretches: in a thread it would stall the
        # event loop, so callers pass a process pool. The snapshot is taken now.
        return await asyncio.get_running_loop().run_in_executor(
            executor, fit_logistic, *self._fit_args()
        )


def _logistic(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, class_weight="balanced", max_iter=1000)


def fit_logistic(
    examples: list[Example],
    n_features: int,
    c: float,
    positive: str | None = None,
    min_precision: float = 0.0,
) -> LinearModel | None:
    """Fit logistic regression; a plain function so it can run in another process.

    With ``positive`` (a two-tag classifier's first tag), the model carries the
    threshold on its probability chosen on out-of-fold predictions
    (pe.learner.threshold)."""
    # The fitting process's previous fit, smaller than this one, left free pages.
    release_free_heap()
    tags = [e.tag for e in examples]
    if len(set(tags)) < 2:
        return None
    # Only the features some example has: a feature no example has gets weight 0
    # under the L2 penalty anyway, and the solver's vectors shrink from the hashed
    # space (2^18) to the few thousand features seen, which makes each fit several
    # times faster.
    full = feature_matrix([(e.idx, e.val) for e in examples], n_features)
    seen_features = np.unique(full.indices)
    x = full[:, seen_features]
    weights = [e.weight for e in examples]
    model = _logistic(c)
    model.fit(x, tags, sample_weight=weights)
    classes = [str(cls) for cls in model.classes_]

    def row(coef: npt.NDArray[np.float64]) -> SparseRow:
        return _sparse(coef, seen_features)

    if len(classes) == 2:
        return LinearModel(
            classes=classes,
            link="sigmoid",
            n_features=n_features,
            intercept=[float(model.intercept_[0])],
            rows=[row(model.coef_[0])],
            decision=_decision(x, tags, weights, c, positive, min_precision),
        )
    return LinearModel(
        classes=classes,
        link="softmax",
        n_features=n_features,
        intercept=[float(b) for b in model.intercept_],
        rows=[row(coef) for coef in model.coef_],
    )


def _decision(
    x: sp.csr_matrix,
    tags: list[str],
    weights: list[float],
    c: float,
    positive: str | None,
    min_precision: float,
) -> Decision | None:
    if positive is None or positive not in tags:
        return None

    def fit(
        x_fit: sp.csr_matrix, tags_fit: list[str], weights_fit: list[float]
    ) -> Callable[[sp.csr_matrix], npt.NDArray[np.float64]]:
        model = _logistic(c).fit(x_fit, tags_fit, sample_weight=weights_fit)
        column = list(model.classes_).index(positive)
        return lambda x_new: np.asarray(model.predict_proba(x_new)[:, column])

    scores = out_of_fold(x, tags, weights, fit)
    if scores is None:
        return None
    truth = np.array([tag == positive for tag in tags])
    threshold = choose_threshold(truth, scores, min_precision)
    return None if threshold is None else Decision(tag=positive, threshold=round(threshold, 6))


class RiverTrainer(Trainer):
    """River's online logistic regression: learns each label once, as it arrives.

    One binary model per tag (one-vs-rest); two tags need only the second's.
    """

    family = "river"

    def __init__(self, tags: list[str], n_features: int, lr: float) -> None:
        super().__init__(tags, n_features)
        targets = self.classes[1:] if len(self.classes) == 2 else self.classes
        self.models = {
            tag: linear_model.LogisticRegression(optimizer=optim.SGD(lr)) for tag in targets
        }
        self.seen: set[str] = set()

    def add(self, example: Example) -> None:
        x = dict(zip(example.idx, example.val, strict=True))
        self.seen.add(example.tag)
        for target, model in self.models.items():
            model.learn_one(x, example.tag == target, w=example.weight)

    def export(self) -> LinearModel | None:
        if len(self.seen) < 2:
            return None
        rows, intercepts = [], []
        for model in self.models.values():
            weights = model.weights
            idx = sorted(k for k, w in weights.items() if abs(w) >= _MIN_WEIGHT)
            rows.append(SparseRow(idx=idx, val=[round(float(weights[k]), 6) for k in idx]))
            intercepts.append(float(model.intercept))
        link = "sigmoid" if len(self.classes) == 2 else "ovr"
        return LinearModel(
            classes=self.classes,
            link=link,
            n_features=self.n_features,
            intercept=intercepts,
            rows=rows,
        )


def make_trainer(
    family: str,
    tags: list[str],
    n_features: int,
    *,
    c: float,
    lr: float,
    min_precision: float = 0.0,
) -> Trainer:
    if family == "river":
        return RiverTrainer(tags, n_features, lr)
    return SklearnTrainer(tags, n_features, c, min_precision)


def _sparse(
    weights: npt.NDArray[np.float64], features: npt.NDArray[np.int32] | None = None
) -> SparseRow:
    """The weights big enough to keep; ``features``: the feature each weight is of
    (default: its position)."""
    keep = np.flatnonzero(np.abs(weights) >= _MIN_WEIGHT)
    idx = keep if features is None else features[keep]
    return SparseRow(idx=idx.tolist(), val=np.round(weights[keep], 6).tolist())
