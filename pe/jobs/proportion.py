"""Estimating a proportion from crowd labels, with confidence intervals.

Pure functions. Two estimators of "what fraction of a window's items have tag T":

- :func:`wilson` (``pe.common.intervals``): label-based sampling. Items drawn at
  random, one crowd label each (Qurk found redundancy buys nothing for counts:
  breadth beats depth); the Wilson score interval, which keeps its coverage near 0
  and 1 where the normal one fails.
- :func:`difference`: model-assisted. The classifier scores every item of the
  window (classify and count); a random sample of them is crowd-labeled, and the
  mean of (label - prediction) over the sample corrects the count. The estimate is
  unbiased whatever the model's errors, and its interval is as narrow as the model
  is good: the variance is that of the residuals, not of the labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pe.common.intervals import Estimate, wilson, z_for

__all__ = ["Estimate", "difference", "wilson", "z_for"]


def difference(
    predicted_mean: float,
    residuals: Sequence[float],
    confidence: float = 0.95,
    population: int | None = None,
) -> Estimate:
    """Classify-and-count corrected by a crowd-labeled random sample.

    ``predicted_mean``: the model's mean prediction (0/1 or a probability) over all
    ``population`` items; ``residuals``: label - prediction for each sampled item.
    With a finite ``population`` the finite-population correction applies.
    """
    n = len(residuals)
    if n < 2:
        return Estimate(min(max(predicted_mean, 0.0), 1.0), 0.0, 1.0, n)
    mean = sum(residuals) / n
    var = sum((r - mean) ** 2 for r in residuals) / (n - 1)
    fpc = 1.0
    if population is not None and population > 1:
        fpc = max(1.0 - n / population, 0.0)
    # A sample with no disagreement yet has variance 0; a residual variance floor of
    # one disagreement in n keeps the interval honest until the first one shows.
    var = max(var, 1.0 / (n * n))
    half = z_for(confidence) * math.sqrt(var * fpc / n)
    value = min(max(predicted_mean + mean, 0.0), 1.0)
    return Estimate(value, max(value - half, 0.0), min(value + half, 1.0), n)
