"""Applying a linear model (from a model update) to a batch of hashed features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from channels.records import LinearModel, SecondOpinion
from pe.common.anchors import with_anchors

__all__ = [
    "CompiledModel",
    "CompiledOpinion",
    "compile_model",
    "feature_matrix",
    "features_in_range",
    "joined_probability",
    "logit",
    "sigmoid",
]

FloatArray = npt.NDArray[np.float64]


def features_in_range(idx: Sequence[int], n_features: int) -> bool:
    """Are all indices valid columns of an ``n_features`` matrix?"""
    return not idx or (min(idx) >= 0 and max(idx) < n_features)


def feature_matrix(
    rows: Sequence[tuple[Sequence[int], Sequence[float]]], n_features: int
) -> sp.csr_matrix:
    """Stack sparse rows ``(indices, values)`` into a CSR matrix.

    Raises ValueError for an index out of range: scipy does not check them here, and
    one would make a later product read out of bounds.
    """
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(idx) for idx, _ in rows], out=indptr[1:])
    indices = np.fromiter((i for idx, _ in rows for i in idx), dtype=np.int64, count=indptr[-1])
    data = np.fromiter((v for _, val in rows for v in val), dtype=np.float64, count=indptr[-1])
    if indices.size and (indices.min() < 0 or indices.max() >= n_features):
        raise ValueError(f"a feature index is outside 0..{n_features - 1}")
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_features))


@dataclass(frozen=True)
class CompiledOpinion:
    """A model's second opinion (channels.records.SecondOpinion) ready to apply."""

    encoder: str
    #: the teacher's log-odds of the decision's tag, per dimension, then per anchor
    weights: FloatArray
    intercept: float
    low: float
    high: float
    threshold: float
    #: Each anchored tag's examples' embeddings, a row each (pe.common.anchors).
    anchors: tuple[FloatArray, ...] = ()

    @property
    def dimensions(self) -> int:
        """The size of the embedding the teacher reads."""
        return len(self.weights) - len(self.anchors)

    def in_band(self, probability: float) -> bool:
        """Is a student probability of the decision's tag one to decide again?"""
        return self.low <= probability <= self.high

    def distance(self, probability: float) -> float:
        """How far a student probability lies from the band's middle (the student's
        threshold), in log-odds, as a share of the band's half-width: 0 at the
        threshold, 1 at either edge. Comparable across models whose bands differ."""
        low, high, odds = logit(np.array([self.low, self.high, probability]))
        half = (high - low) / 2
        return float(abs(odds - (low + high) / 2) / half) if half > 0 else 0.0

    def joined(self, probability: FloatArray, embeddings: FloatArray) -> FloatArray:
        """The joined probability of the decision's tag: the mean of the student's
        log-odds (from ``probability``) and the teacher's (from ``embeddings``, a row
        an item)."""
        features = with_anchors(embeddings, self.anchors)
        return joined_probability(probability, features @ self.weights + self.intercept)


@dataclass(frozen=True)
class CompiledModel:
    """A model ready for batch prediction."""

    classes: list[str]
    link: str
    n_features: int
    #: Weights as (n_features, rows): transposed once here, not on every product
    #: (scipy would convert a transposed view on each call, ~0.3 ms a batch).
    weights_t: sp.csr_matrix
    intercept: FloatArray
    #: The tag decided by a threshold (its column, the threshold), if the model has one.
    decision: tuple[int, float] | None = None
    second_opinion: CompiledOpinion | None = None

    def predict_proba(self, x: sp.csr_matrix) -> FloatArray:
        """Class probabilities, one row per item, columns in ``classes`` order."""
        scores = np.asarray((x @ self.weights_t).todense()) + self.intercept
        if self.link == "sigmoid":
            positive = sigmoid(scores[:, 0])
            return np.column_stack([1.0 - positive, positive])
        if self.link == "softmax":
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))
        each = sigmoid(scores)
        return np.asarray(each / np.maximum(each.sum(axis=1, keepdims=True), 1e-12))

    def predict(self, x: sp.csr_matrix) -> tuple[list[str], FloatArray]:
        """Each row's tag (by the model's decision, else the most probable) and its
        probability."""
        return self.decide(self.predict_proba(x))

    def decide(self, proba: FloatArray) -> tuple[list[str], FloatArray]:
        """:meth:`predict` from the rows' class probabilities."""
        if self.decision is None:
            best = proba.argmax(axis=1)
        else:
            column, threshold = self.decision
            others = proba.copy()
            others[:, column] = -1.0
            best = np.where(proba[:, column] >= threshold, column, others.argmax(axis=1))
        return [self.classes[i] for i in best], proba[np.arange(len(best)), best]


def compile_model(model: LinearModel) -> CompiledModel:
    """Check a model's shape and build its weight matrix."""
    n_rows = 1 if model.link == "sigmoid" else len(model.classes)
    if model.link == "sigmoid" and len(model.classes) != 2:
        raise ValueError("a sigmoid model has exactly two classes")
    if len(model.rows) != n_rows or len(model.intercept) != n_rows:
        raise ValueError(f"expected {n_rows} weight rows and intercepts")
    for row in model.rows:
        if len(row.idx) != len(row.val):
            raise ValueError("a weight row has as many indices as values")
        if row.idx and (min(row.idx) < 0 or max(row.idx) >= model.n_features):
            raise ValueError("a weight index is out of range")
    decision = None
    if model.decision is not None:
        if model.decision.tag not in model.classes:
            raise ValueError(f"the decision's tag {model.decision.tag!r} is not a class")
        decision = (model.classes.index(model.decision.tag), model.decision.threshold)
    opinion = None
    if model.second_opinion is not None:
        if decision is None or model.link != "sigmoid":
            raise ValueError("a second opinion needs a two-tag model with a decision")
        opinion = _compile_opinion(model.second_opinion)
    weights = feature_matrix([(row.idx, row.val) for row in model.rows], model.n_features)
    return CompiledModel(
        classes=list(model.classes),
        link=model.link,
        n_features=model.n_features,
        weights_t=weights.T.tocsr(),
        intercept=np.asarray(model.intercept, dtype=np.float64),
        decision=decision,
        second_opinion=opinion,
    )


def _compile_opinion(opinion: SecondOpinion) -> CompiledOpinion:
    return CompiledOpinion(
        encoder=opinion.encoder,
        weights=np.asarray(opinion.weights, dtype=np.float64),
        intercept=opinion.intercept,
        low=opinion.low,
        high=opinion.high,
        threshold=opinion.threshold,
        anchors=tuple(np.asarray(a.vectors, dtype=np.float64) for a in opinion.anchors),
    )


def logit(p: FloatArray) -> FloatArray:
    """Log-odds of probabilities (clipped away from 0 and 1)."""
    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    return np.asarray(np.log(clipped / (1 - clipped)))


def joined_probability(student: FloatArray, teacher_odds: FloatArray) -> FloatArray:
    """A second opinion's joined probability: the mean of the student's log-odds (from
    its probability) and the teacher's."""
    return sigmoid((logit(student) + teacher_odds) / 2)


def sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))))
