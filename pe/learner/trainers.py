"""Model families: scikit-learn (batch refit) and river (online), both exported as weights."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from river import linear_model, optim
from sklearn.linear_model import LogisticRegression

from channels.records import Anchor, Decision, LinearModel, SecondOpinion, SparseRow
from pe.common.anchors import Anchors, Embedded
from pe.common.heap import release_free_heap
from pe.common.linear import feature_matrix, joined_probability, logit, sigmoid
from pe.learner.teacher import Fit, Fitted, Lesson, Teacher, Teaching, logistic, with_sample
from pe.learner.threshold import choose_threshold, out_of_fold

FloatArray = npt.NDArray[np.float64]

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
        anchors: Anchors = (),
    ) -> None:
        """A two-tag classifier's first tag (``yes`` of yes/no) gets a threshold.
        ``teacher``: distil from it (its pool: the live sample of the stream), with the
        classifier's worked examples as ``anchors`` (pe.common.anchors)."""
        super().__init__(tags, n_features)
        self.c = c
        self.positive = tags[0] if len(tags) == 2 else None
        self.min_precision = min_precision
        self.teacher = teacher
        self.anchors = anchors
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
            None if self.teacher is None else self.teacher.teaching(whole, self.anchors),
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
    def fit(x: sp.csr_matrix, tags: list[str], weights: list[float]) -> Fitted:
        return logistic(c).fit(x, tags, sample_weight=weights), None

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
    encoder's (pe.learner.teacher); out-of-fold predictions refit the teacher too,
    and a two-tag model carries its teacher as a second opinion when
    ``teaching.second_share`` asks for one."""
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
    # a distilled model learned from (else, in _Rule.decide, the labelled items), in the
    # fit's columns.
    population: sp.csr_matrix | None = None
    lesson: Lesson | None = None
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
    model, teacher = fit(x, tags, weights)
    classes = [str(cls) for cls in model.classes_]

    def row(coef: npt.NDArray[np.float64]) -> SparseRow:
        return _sparse(coef, seen_features, len(model.coef_))

    if len(classes) == 2:
        rule = _Rule(positive, min_precision)
        if lesson is not None and teacher is not None and teaching is not None:
            rule = _Rule(
                positive, min_precision, teaching, teacher, lesson.pool_embeddings, lesson.anchors
            )
        decision, opinion = rule.decide(x, tags, weights, fit, model, population)
        return LinearModel(
            classes=classes,
            link="sigmoid",
            n_features=n_features,
            intercept=[float(model.intercept_[0])],
            rows=[row(model.coef_[0])],
            decision=decision,
            second_opinion=opinion,
        )
    return LinearModel(
        classes=classes,
        link="softmax",
        n_features=n_features,
        intercept=[float(b) for b in model.intercept_],
        rows=[row(coef) for coef in model.coef_],
    )


@dataclass(frozen=True)
class _Rule:
    """How a two-tag model decides ``positive``: its threshold (pe.learner.threshold),
    chosen for ``population`` (word features) if given; with ``teaching`` that asks for
    one, the second opinion of ``teacher``, whose scores of the population are taken
    from ``pool_embeddings`` (channels.records.SecondOpinion; with a column for each
    of ``anchors``, pe.common.anchors)."""

    positive: str | None
    min_precision: float
    teaching: Teaching | None = None
    teacher: LogisticRegression | None = None
    pool_embeddings: FloatArray | None = None
    anchors: Embedded = ()

    def decide(
        self,
        x: sp.csr_matrix,
        tags: list[str],
        weights: list[float],
        fit: Fit,
        model: LogisticRegression,
        population: sp.csr_matrix | None,
    ) -> tuple[Decision | None, SecondOpinion | None]:
        """The model's decision and second opinion (either may be None)."""
        positive = self.positive
        if positive is None or positive not in tags:
            return None, None
        joined = self.teaching is not None and self.teaching.second_share > 0

        def fold(
            x_fit: sp.csr_matrix, tags_fit: list[str], weights_fit: list[float]
        ) -> Callable[[sp.csr_matrix], FloatArray]:
            model, teacher = fit(x_fit, tags_fit, weights_fit)
            width = model.coef_.shape[1]  # a student's: the word features only

            def predict(x_new: sp.csr_matrix) -> FloatArray:
                """Two columns: the student's scores, and the joined ones (the
                student's again without a teacher)."""
                student = _probability(model, positive, x_new[:, :width])
                if not joined or teacher is None:
                    return np.column_stack([student, student])
                embedded = x_new[:, width:].toarray()
                both = joined_probability(student, _log_odds(teacher, positive, embedded))
                # A label without an embedding keeps its student's score.
                both = np.where(np.abs(embedded).sum(axis=1) > 0, both, student)
                return np.column_stack([student, both])

            return predict

        scores = out_of_fold(x, tags, weights, fold)
        if scores is None:
            return None, None
        truth = np.array([tag == positive for tag in tags])
        student_scores = scores[:, 0]
        population_scores = None
        if population is not None and population.shape[0]:
            population_scores = _probability(model, positive, population)
        threshold = choose_threshold(truth, student_scores, self.min_precision, population_scores)
        if threshold is None:
            return None, None
        decision = Decision(tag=positive, threshold=round(threshold, 6))
        if not joined or population_scores is None:
            return decision, None
        return decision, self._opinion(positive, truth, scores[:, 1], threshold, population_scores)

    def _opinion(
        self,
        positive: str,
        truth: npt.NDArray[np.bool_],
        joined_scores: FloatArray,
        threshold: float,
        population_scores: FloatArray,
    ) -> SecondOpinion | None:
        """The teacher's second opinion on the ``second_share`` of the population
        nearest ``threshold`` (in log-odds), with its own threshold on the joined
        probability, chosen by the same rule on the joined out-of-fold scores."""
        teaching, teacher, embeddings = self.teaching, self.teacher, self.pool_embeddings
        if teaching is None or teacher is None or embeddings is None or not len(embeddings):
            return None
        joined_population = joined_probability(
            population_scores, _log_odds(teacher, positive, embeddings)
        )
        joined_threshold = choose_threshold(
            truth, joined_scores, self.min_precision, joined_population
        )
        if joined_threshold is None:
            return None
        centre = float(logit(np.array([threshold]))[0])
        gap = np.abs(logit(population_scores) - centre)
        width = float(np.quantile(gap, teaching.second_share))
        band = sigmoid(np.array([centre - width, centre + width]))
        sign = 1.0 if str(teacher.classes_[1]) == positive else -1.0
        return SecondOpinion(
            encoder=teaching.encoder,
            weights=np.round(sign * teacher.coef_[0], 6).tolist(),
            intercept=round(sign * float(teacher.intercept_[0]), 6),
            low=round(float(band[0]), 6),
            high=round(float(band[1]), 6),
            threshold=round(joined_threshold, 6),
            anchors=[
                Anchor(tag=tag, vectors=np.round(vectors, 6).tolist())
                for tag, vectors in self.anchors
            ],
        )


def _probability(model: LogisticRegression, positive: str, x: sp.csr_matrix) -> FloatArray:
    column = list(model.classes_).index(positive)
    return np.asarray(model.predict_proba(x)[:, column])


def _log_odds(teacher: LogisticRegression, positive: str, embedded: FloatArray) -> FloatArray:
    """The teacher's log-odds of ``positive`` for embedded items."""
    odds = np.asarray(teacher.decision_function(embedded), dtype=np.float64)
    return odds if str(teacher.classes_[1]) == positive else -odds


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
    anchors: Anchors = (),
) -> Trainer:
    """A trainer of ``family``; only scikit-learn's learns from a ``teacher`` (and its
    ``anchors``)."""
    if family == "river":
        return RiverTrainer(tags, n_features, lr)
    return SklearnTrainer(tags, n_features, c, min_precision, teacher, anchors)


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
