"""Count batches corrected for the crowd's counting error, with calibration batches.

Pure functions. A worker skimming a batch of ``m`` items of which ``T`` have the tag
counts on average ``false_alarm * (m - T) + hit * T``, with rates of their own when
counting (text gives no "pop-out": Qurk saw up to 50% error counting tweets), not
those of labeling. A count is one total, so the gold hidden in a batch cannot tell
the two rates apart; a *calibration batch*, all of it gold with a known number of
positives that varies from batch to batch, can.

The rates are the crowd's, pooled: a job asks few batches of each worker (10
batches among 20 workers in bench/counting.py), too few for rates of their own.
Calibration batches are asked of the same crowd as the others, interleaved, so the
pooled rates are those of whoever answers a batch, spammers (a uniform random
count) included: no worker needs to be judged, and none is dropped (Thresh's
dropping by distance to the consensus would remove different workers from the two
kinds of batches and bias the rates).

Every batch's fraction ``count / m`` has expectation
``false_alarm + d * gold_positive / m + d * p * real / m`` with ``d = hit -
false_alarm``: one linear regression over all the answers gives ``false_alarm``,
``d`` and ``e = d * p``. The estimate is ``e / d`` and its interval Fieller's: every
``p`` whose ``e - p * d`` is within t standard errors of 0 (Student's t, as the
crowd's spread is estimated from few batches). It holds the rates' uncertainty and
is unbounded (cut to [0, 1]) when the crowd does not count better than chance.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

import numpy as np
from scipy.stats import t as student_t

from pe.jobs.proportion import Estimate, below_zero
from pe.jobs.thresh import CountAnswer

__all__ = ["calibrated_share", "calibration_batch", "calibration_due"]

T = TypeVar("T")

#: Least residual variance of a batch's fraction: a crowd that counts every batch
#: exactly would otherwise get an interval of no width.
MIN_VARIANCE = 1e-4


def calibration_due(calibrations: int, batches: int, share: float) -> bool:
    """Whether the next batch is a calibration batch, keeping ``share`` of the
    ``batches`` asked so far (``calibrations`` of them) calibration batches, spread
    evenly so the same crowd answers both kinds."""
    return calibrations < share * (batches + 1)


def calibration_batch(
    positives: Sequence[T], negatives: Sequence[T], size: int, rng: random.Random
) -> list[T]:
    """A calibration batch of gold items: a uniform number of ``positives`` (as
    many as there are) and ``negatives`` for the rest, so the known share varies
    across batches from 0 to 1 and tells the two rates apart."""
    size = min(size, len(positives) + len(negatives))
    k = rng.randint(max(size - len(negatives), 0), min(size, len(positives)))
    return rng.sample(list(positives), k) + rng.sample(list(negatives), size - k)


def calibrated_share(answers: Sequence[CountAnswer], confidence: float = 0.95) -> Estimate:
    """The share of the real items with the tag from count answers, regular and
    calibration batches (``gold == size``) alike, corrected for the crowd's pooled
    counting rates."""
    n = len(answers)
    unknown = Estimate(0.5, 0.0, 1.0, n)
    if n <= 3:
        return unknown
    sizes = np.array([a.size for a in answers], dtype=float)
    y = np.array([a.count for a in answers], dtype=float) / sizes
    x = np.column_stack(
        [
            np.ones(n),
            np.array([a.gold_positive for a in answers]) / sizes,
            np.array([a.size - a.gold for a in answers]) / sizes,
        ]
    )
    if np.linalg.matrix_rank(x) < 3:  # no calibration, or no spread in it
        return unknown
    inverse = np.linalg.inv(x.T @ x)
    beta = inverse @ x.T @ y
    residual = y - x @ beta
    cov = [
        [float(v) for v in row]
        for row in max(float(residual @ residual) / (n - 3), MIN_VARIANCE) * inverse
    ]
    _, d, e = (float(v) for v in beta)
    if d <= 0:  # the crowd counts no better than chance
        return unknown
    value = min(max(e / d, 0.0), 1.0)
    t2 = float(student_t.ppf(0.5 + confidence / 2, n - 3)) ** 2
    low, high = below_zero(
        d * d - t2 * cov[1][1],
        -2 * (e * d - t2 * cov[1][2]),
        e * e - t2 * cov[2][2],
    )
    if high < 0 or low > 1:
        # Not even 0 (or 1) fits: the answers disagree with the rates beyond chance.
        return replace(unknown, value=value)
    cut = Estimate(value, max(low, 0.0), min(high, 1.0), n)
    return replace(cut, span=max(high - low, cut.width))
