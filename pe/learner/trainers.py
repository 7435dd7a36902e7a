"""Model families: scikit-learn (batch refit) and river (online), both exported as weights."""

from __future__ import annotations

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
from pe.learner.teacher import Fit, Lesson, Teacher, Teaching, logistic, with_sample
from pe.learner.threshold import choose_threshold, out_of_fold

__all__ = [
    "MAX_WEIGHTS",
    "RiverTrainer",
    "SklearnTrainer",
    "Trainer",
    "fit_logistic",
    "make_trainer",
]


class Example(NamedTuple):
    """A labeled item; ``weight``: how sure the crowd is of ``tag`` (its posterior);
    ``text``, for a teacher (None in labels written before they carried it)."""

    idx: Sequence[int]
    val: Sequence[float]
    tag: str
    weight: float = 1.0
    item_id: str = ""
    text: str | None = None


#: Weights smaller than this are dropped from a model message: they change no
#: prediction visibly and keep the message small.
_MIN_WEIGHT = 1e-6
#: The most weights a model message keeps (the largest): a model must fit in one
#: Kafka message (1 MB by default; 20,000 weights are about 320 KB of JSON). A
#: distilled model learns from tens of thousands of features; keeping its 20,000
#: largest weights changed its held-out AUC by under 0.001 (docs/quality.md).
MAX_WEIGHTS = 20_000


class Trainer(ABC):
    """Learns from ``(indices, values, tag)`` examples; exports a :class:`LinearModel`."""

    family: str

    def __init__(self, tags: list[str], n_features: int) -> None:
        self.classes = sorted(tags)
        self.n_features = n_features

    @abstractmethod
    def add(self, example: Example) -> None:
        """A new training example."""

    def correct(self, example: Example) -> None:
        """An operator's tag for an item already learned (``example.item_id``). By
        default it is learned as one more example: an online learner cannot unlearn
        the crowd's tag, only outweigh it."""
        self.add(example)

    @abstractmethod
    def export(self) -> LinearModel | None:
        """The current model, or None when it cannot be trained yet."""

    async def export_off_loop(self, executor: Executor) -> LinearModel | None:
        """:meth:`export`, sending long computations to ``executor``.

        The default exports in place: the trainer's work is cheap enough for the loop.
        """
        return self.export()

    async def refit_off_loop(
        self, executor: Executor, n_train: int, held_out: Sequence[Example]
    ) -> LinearModel | None:
        """The model refitted on the first ``n_train`` training examples and the
        ``held_out`` ones, once they have judged it; None: this family does not refit
        (river learns online, and its held-out labels must stay unseen)."""
        del executor, n_train, held_out
        return None


class SklearnTrainer(Trainer):
    """Logistic regression refitted on every training example (fast at crowd scale)."""

    family = "sklearn"

    def __init__(
        self,
        tags: list[str],
        n_features: int,
        c: float,
        min_precision: float = 0.0,
        teacher: Teacher | None = None,
    ) -> None:
        """A two-tag classifier's first tag (``yes`` of yes/no) gets a threshold.
        ``teacher``: distil from it (its pool: the live sample of the stream)."""
        super().__init__(tags, n_features)
        self.c = c
        self.positive = tags[0] if len(tags) == 2 else None
        self.min_precision = min_precision
        self.teacher = teacher
        self.examples: list[Example] = []

    def add(self, example: Example) -> None:
        self.examples.append(example)

    def correct(self, example: Example) -> None:
        # Refitted from its examples at every retrain: the crowd's tag is replaced.
        for i, held in enumerate(self.examples):
            if held.item_id == example.item_id:
                self.examples[i] = example
                return
        self.examples.append(example)

    def _fit_args(
        self, examples: list[Example], whole: bool
    ) -> tuple[list[Example], int, float, str | None, float, Teaching | None]:
        return (
            examples,
            self.n_features,
            self.c,
            self.positive,
            self.min_precision,
            None if self.teacher is None else self.teacher.teaching(whole),
        )

    def export(self) -> LinearModel | None:
        return fit_logistic(*self._fit_args(list(self.examples), whole=True))

    async def export_off_loop(self, executor: Executor) -> LinearModel | None:
        return await self._fit_off_loop(executor, list(self.examples))

    async def refit_off_loop(
        self, executor: Executor, n_train: int, held_out: Sequence[Example]
    ) -> LinearModel | None:
        return await self._fit_off_loop(executor, self.examples[:n_train] + list(held_out))

    async def _fit_off_loop(
        self, executor: Executor, examples: list[Example]
    ) -> LinearModel | None:
        # A refit holds the GIL for long stretches: in a thread it would stall the
        # event loop, so callers pass a process pool. The snapshot is taken now.
        return await with_sample(
            executor, fit_logistic, lambda whole: self._fit_args(examples, whole)
        )


def _plain(c: float) -> Fit:
    def fit(x: sp.csr_matrix, tags: list[str], weights: list[float]) -> LogisticRegression:
        return logistic(c).fit(x, tags, sample_weight=weights)

    return fit


def fit_logistic(
    examples: list[Example],
    n_features: int,
    c: float,
    positive: str | None = None,
    min_precision: float = 0.0,
    teaching: Teaching | None = None,
) -> LinearModel | None:
    """Fit logistic regression; a plain function so it can run in another process.

    With ``positive`` (a two-tag classifier's first tag), the model carries the
    threshold on its probability chosen on out-of-fold predictions
    (pe.learner.threshold). With ``teaching``, the model is distilled from an
    encoder's (pe.learner.teacher); out-of-fold predictions refit the teacher too."""
    # The fitting process's previous fit, smaller than this one, left free pages.
    release_free_heap()
    # The fitting process takes the sample's update whatever this fit makes of it: an
    # update it dropped would make the next fit send the whole sample again.
    pool = [] if teaching is None else teaching.pool.items()
    tags = [e.tag for e in examples]
    if len(set(tags)) < 2:
        return None
    full = feature_matrix([(e.idx, e.val) for e in examples], n_features)
    weights = [e.weight for e in examples]
    # Only the features some example (or pool item) has: a feature none has gets
    # weight 0 under the L2 penalty anyway, and the solver's vectors shrink from the
    # hashed space (2^18) to the few thousand features seen, which makes each fit
    # several times faster.
    fit: Fit
    if teaching is not None and not any(e.text for e in examples):
        teaching = None  # nothing to teach the teacher: do not embed the pool for nothing
    # The items the model is to classify, for its decision rule: the stream's sample
    # a distilled model learned from (else, in _decision, the labelled items), in the
    # fit's columns.
    population: sp.csr_matrix | None = None
    if teaching is None:
        seen_features = np.unique(full.indices)
        x = full[:, seen_features]
        fit = _plain(c)
    else:
        lesson = Lesson.prepare([(e.item_id, e.text) for e in examples], pool, teaching, n_features)
        seen_features = lesson.columns(full)
        x = lesson.matrix(full[:, seen_features])
        population = lesson.pool_words[:, seen_features]
        fit = lesson.student(population, c)
    model = fit(x, tags, weights)
    classes = [str(cls) for cls in model.classes_]

    def row(coef: npt.NDArray[np.float64]) -> SparseRow:
        return _sparse(coef, seen_features, len(model.coef_))

    if len(classes) == 2:
        return LinearModel(
            classes=classes,
            link="sigmoid",
            n_features=n_features,
            intercept=[float(model.intercept_[0])],
            rows=[row(model.coef_[0])],
            decision=_decision(x, tags, weights, fit, positive, min_precision, model, population),
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
    fit: Fit,
    positive: str | None,
    min_precision: float,
    model: LogisticRegression,
    population: sp.csr_matrix | None,
) -> Decision | None:
    """``model``'s threshold on ``positive``'s probability (pe.learner.threshold),
    chosen for ``population`` (word features) if given."""
    if positive is None or positive not in tags:
        return None

    def fold(
        x_fit: sp.csr_matrix, tags_fit: list[str], weights_fit: list[float]
    ) -> Callable[[sp.csr_matrix], npt.NDArray[np.float64]]:
        model = fit(x_fit, tags_fit, weights_fit)
        column = list(model.classes_).index(positive)
        width = model.coef_.shape[1]  # a student's: the word features only
        return lambda x_new: np.asarray(model.predict_proba(x_new[:, :width])[:, column])

    scores = out_of_fold(x, tags, weights, fold)
    if scores is None:
        return None
    truth = np.array([tag == positive for tag in tags])
    population_scores = None
    if population is not None and population.shape[0]:
        column = list(model.classes_).index(positive)
        population_scores = model.predict_proba(population)[:, column]
    threshold = choose_threshold(truth, scores, min_precision, population_scores)
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
            features = np.array(sorted(model.weights), dtype=np.int32)
            weights = np.array([model.weights[k] for k in features.tolist()], dtype=np.float64)
            rows.append(_sparse(weights, features, len(self.models)))
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
    teacher: Teacher | None = None,
) -> Trainer:
    """A trainer of ``family``; only scikit-learn's learns from a ``teacher``."""
    if family == "river":
        return RiverTrainer(tags, n_features, lr)
    return SklearnTrainer(tags, n_features, c, min_precision, teacher)


def _sparse(
    weights: npt.NDArray[np.float64],
    features: npt.NDArray[np.int32] | None = None,
    rows: int = 1,
) -> SparseRow:
    """The weights big enough to keep, at most the largest ``MAX_WEIGHTS / rows`` (the
    model has ``rows`` rows); ``features``: the feature each weight is of (default: its
    position)."""
    limit = MAX_WEIGHTS // rows
    keep = np.flatnonzero(np.abs(weights) >= _MIN_WEIGHT)
    if len(keep) > limit:
        keep = np.sort(keep[np.argsort(-np.abs(weights[keep]), kind="stable")[:limit]])
    idx = keep if features is None else features[keep]
    return SparseRow(idx=idx.tolist(), val=np.round(weights[keep], 6).tolist())
