"""Model families: scikit-learn (batch refit) and river (online), both exported as weights."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from river import linear_model, optim
from sklearn.linear_model import LogisticRegression

from channels.records import LinearModel, SparseRow
from pe.common.heap import release_free_heap
from pe.common.linear import feature_matrix

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

    def __init__(self, tags: list[str], n_features: int, c: float) -> None:
        super().__init__(tags, n_features)
        self.c = c
        self.examples: list[Example] = []

    def add(self, example: Example) -> None:
        self.examples.append(example)

    def export(self) -> LinearModel | None:
        return fit_logistic(list(self.examples), self.n_features, self.c)

    async def export_off_loop(self, executor: Executor) -> LinearModel | None:
        # A refit holds the GIL for long stretches: in a thread it would stall the
        # event loop, so callers pass a process pool. The snapshot is taken now.
        return await asyncio.get_running_loop().run_in_executor(
            executor, fit_logistic, list(self.examples), self.n_features, self.c
        )


def fit_logistic(examples: list[Example], n_features: int, c: float) -> LinearModel | None:
    """Fit logistic regression; a plain function so it can run in another process."""
    # The fitting process's previous fit, smaller than this one, left free pages.
    release_free_heap()
    tags = [e.tag for e in examples]
    if len(set(tags)) < 2:
        return None
    x = feature_matrix([(e.idx, e.val) for e in examples], n_features)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000)
    model.fit(x, tags, sample_weight=[e.weight for e in examples])
    seen = [str(cls) for cls in model.classes_]
    if len(seen) == 2:
        return LinearModel(
            classes=seen,
            link="sigmoid",
            n_features=n_features,
            intercept=[float(model.intercept_[0])],
            rows=[_sparse(model.coef_[0])],
        )
    return LinearModel(
        classes=seen,
        link="softmax",
        n_features=n_features,
        intercept=[float(b) for b in model.intercept_],
        rows=[_sparse(row) for row in model.coef_],
    )


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


def make_trainer(family: str, tags: list[str], n_features: int, *, c: float, lr: float) -> Trainer:
    if family == "river":
        return RiverTrainer(tags, n_features, lr)
    return SklearnTrainer(tags, n_features, c)


def _sparse(weights: npt.NDArray[np.float64]) -> SparseRow:
    idx = np.flatnonzero(np.abs(weights) >= _MIN_WEIGHT)
    return SparseRow(idx=idx.tolist(), val=np.round(weights[idx], 6).tolist())
