"""Estimating a proportion from crowd labels, corrected for worker error.

Pure functions. A worker who says tag T with probability ``hit`` when it is the
truth and ``false_alarm`` when it is not says T with probability
``false_alarm + (hit - false_alarm) * p`` on items of which a share ``p`` have it:
plain shares of the answers are biased toward 50% by worker error (2.75% reads as
about 26% in bench/counting.py's crowd of 30% spammers). Both estimators below invert
that, worker by worker, with the rates the quality loop's Dawid-Skene model gives
each worker (:class:`WorkerRates`):

- :func:`corrected_share`: label-based sampling. Items drawn at random, one crowd
  label each (Qurk: breadth beats redundancy for counts). Each worker's answers
  give ``(share said - false_alarm) / (hit - false_alarm)``; the estimate weighs
  them by inverse variance, which counts a spammer (``hit`` near ``false_alarm``)
  for nothing, as Qurk's Thresh does, and a worker the loop knows little about
  for little. The interval is a score interval (Wilson's, when every worker is
  right for certain) whose variance adds the uncertainty of the workers' rates.
- :func:`corrected_difference`: model-assisted. The classifier scores every item
  (classify and count); crowd labels of a random sample, each corrected as above,
  estimate the model's mean error (the difference estimator). Unbiased whatever
  the model's errors; normal interval from the residuals and the rates'
  uncertainty.

Neither applies a finite-population correction: sampling every item leaves the
labels' own noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from pe.common.intervals import Estimate, z_for

__all__ = [
    "Estimate",
    "WorkerRates",
    "below_zero",
    "corrected_difference",
    "corrected_share",
    "z_for",
]

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WorkerRates:
    """How one worker says the counted tag: the chance when it is the truth
    (``hit``) and when it is not (``false_alarm``), with each estimate's variance.
    The default worker is right, for certain (no correction)."""

    hit: float = 1.0
    false_alarm: float = 0.0
    hit_var: float = 0.0
    false_alarm_var: float = 0.0

    @classmethod
    def from_counts(
        cls, hit: float, miss: float, false_alarm: float, rejection: float
    ) -> WorkerRates:
        """Beta posteriors of both rates from (soft) answer counts, prior included."""
        h, h_var = _beta(hit, miss)
        f, f_var = _beta(false_alarm, rejection)
        return cls(h, f, h_var, f_var)


def _beta(a: float, b: float) -> tuple[float, float]:
    total = a + b
    return a / total, a * b / (total * total * (total + 1))


@dataclass(frozen=True)
class _Workers:
    """Per-worker sums of the answers, and their rates, as arrays."""

    index: dict[str, int]  #: worker -> position
    n: Vector  #: answers
    said: Vector  #: share of them that said the tag
    predicted: Vector  #: mean model prediction of their items (0: label method)
    f: Vector
    b: Vector  #: hit - false_alarm
    f_var: Vector
    h_var: Vector

    @classmethod
    def of(
        cls, answers: Sequence[tuple[str, int, float]], rates: Mapping[str, WorkerRates]
    ) -> _Workers:
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for worker, said, predicted in answers:
            row = sums[worker]
            row[0] += 1
            row[1] += said
            row[2] += predicted
        known = [rates.get(w, WorkerRates()) for w in sums]
        n = np.array([row[0] for row in sums.values()])
        return cls(
            {worker: i for i, worker in enumerate(sums)},
            n,
            np.array([row[1] for row in sums.values()]) / n,
            np.array([row[2] for row in sums.values()]) / n,
            np.array([r.false_alarm for r in known]),
            np.array([r.hit - r.false_alarm for r in known]),
            np.array([r.false_alarm_var for r in known]),
            np.array([r.hit_var for r in known]),
        )

    def rate_var(self, delta: float) -> Vector:
        """Variance of each worker's expected share said, from its rates' uncertainty,
        when the items' true share is ``predicted + delta``."""
        share = self.predicted + delta
        out: Vector = (1 - share) ** 2 * self.f_var + share**2 * self.h_var
        return out

    def weights(self, delta: float) -> Vector:
        """Inverse-variance weights of the workers' corrected shares at ``delta``."""
        total = int(self.n.sum())
        # Kept off 0 and 1: perfect workers on a sample with no positives would
        # otherwise have no variance at all.
        share = np.clip(self.predicted + delta, 0.5 / total, 1 - 0.5 / total)
        said = self.f + self.b * share
        var = said * (1 - said) / self.n + self.rate_var(delta)
        out: Vector = self.b / np.maximum(var, 1e-12)
        return out

    def solve(self, low: float, high: float) -> tuple[float, Vector]:
        """``delta`` of the weighted estimating equation (clipped to [low, high]), and
        the weights at it."""
        pooled = float(self.b @ self.n)
        offset = float((self.said - self.f - self.b * self.predicted) @ self.n)
        delta = min(max(offset / pooled, low), high) if pooled > 0 else (low + high) / 2
        for _ in range(50):
            weights = self.weights(delta)
            denominator = float(weights @ self.b)
            if denominator <= 0:
                break
            numerator = float(weights @ (self.said - self.f - self.b * self.predicted))
            updated = min(max(numerator / denominator, low), high)
            if abs(updated - delta) < 1e-10:
                delta = updated
                break
            delta = updated
        return delta, self.weights(delta)


def corrected_share(
    answers: Sequence[tuple[str, int]],
    rates: Mapping[str, WorkerRates],
    confidence: float = 0.95,
) -> Estimate:
    """The share of items with the tag from ``(worker, 1 if they said it else 0)``
    answers, one per sampled item, corrected by each worker's ``rates`` (a worker
    without rates is taken as always right)."""
    n = len(answers)
    if n == 0:
        return Estimate(0.5, 0.0, 1.0, 0)
    workers = _Workers.of([(w, said, 0.0) for w, said in answers], rates)
    value, w = workers.solve(0.0, 1.0)
    f, b, size = workers.f, workers.b, workers.n
    top, slope = float(w @ (workers.said - f)), float(w @ b)
    if slope <= 0:  # only spammers: the answers say nothing about the share
        return Estimate(value, 0.0, 1.0, n)
    # The score interval: every share p whose estimating equation's value,
    # top - slope * p, is within z standard deviations of 0. Its variance, at p:
    # sum w^2 (said(p) (1 - said(p)) / n + rate variance(p)), with said(p) = f + b p,
    # is r0 + r1 p + r2 p^2.
    z2 = z_for(confidence) ** 2
    w2 = w * w
    r0 = z2 * float(w2 @ (f * (1 - f) / size + workers.f_var))
    r1 = z2 * float(w2 @ (b * (1 - 2 * f) / size - 2 * workers.f_var))
    r2 = z2 * float(w2 @ (-b * b / size + workers.f_var + workers.h_var))
    low, high = below_zero(slope * slope - r2, -2 * top * slope - r1, top * top - r0)
    if high < 0 or low > 1:
        # Not even 0 (or 1) fits: the answers and the workers' rates disagree beyond
        # chance, and no interval can be trusted.
        return Estimate(value, 0.0, 1.0, n)
    cut = Estimate(value, min(max(low, 0.0), value), max(min(high, 1.0), value), n)
    return replace(cut, span=max(high - low, cut.width))


def below_zero(a: float, b: float, c: float) -> tuple[float, float]:
    """The smallest and largest p with a p^2 + b p + c <= 0 (infinite when the set is
    unbounded, (inf, -inf) when it is empty)."""
    if abs(a) <= 1e-15:  # a line: a half-line, or none
        if b == 0:
            return (-math.inf, math.inf) if c <= 0 else (math.inf, -math.inf)
        root = -c / b
        return (root, math.inf) if b < 0 else (-math.inf, root)
    disc = b * b - 4 * a * c
    if a < 0:  # the set is unbounded (outside the roots, or every p)
        return -math.inf, math.inf
    if disc < 0:
        return math.inf, -math.inf
    root = math.sqrt(disc)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def corrected_difference(
    predicted_mean: float,
    answers: Sequence[tuple[str, int, float]],
    rates: Mapping[str, WorkerRates],
    confidence: float = 0.95,
) -> Estimate:
    """Classify-and-count corrected by a crowd-labeled random sample.

    ``predicted_mean``: the model's mean prediction (0/1 or a probability) over all
    items; ``answers``: ``(worker, 1 if they said the tag else 0, the model's
    prediction of that item)`` for each sampled item.
    """
    n = len(answers)
    value = min(max(predicted_mean, 0.0), 1.0)
    if n < 2:
        return Estimate(value, 0.0, 1.0, n)
    workers = _Workers.of(answers, rates)
    delta, w = workers.solve(-predicted_mean, 1.0 - predicted_mean)
    slope = float(w @ workers.b)
    if slope <= 0:  # only spammers: the answers say nothing about the model's error
        return Estimate(value, 0.0, 1.0, n)
    # The sampling error from the residuals' spread (sandwich), per worker mean.
    spread = np.zeros(len(workers.index))
    for worker, said, predicted in answers:
        i = workers.index[worker]
        spread[i] += (said - workers.f[i] - workers.b[i] * (predicted + delta)) ** 2
    var = float((w * w) @ (spread / workers.n**2 + workers.rate_var(delta)))
    half = z_for(confidence) * math.sqrt(var) / slope
    value = min(max(predicted_mean + delta, 0.0), 1.0)
    return Estimate(value, max(value - half, 0.0), min(value + half, 1.0), n, 2 * half)
