"""Qurk's count-based estimation: batches of items, one count per worker answer.

A worker sees a batch of ``b`` items and answers how many have tag T. Two defences
from Marcus's thesis (chapter 6):

- **Thresh** (section 6.4.4), iterative outlier-resistant aggregation: each worker's
  answers are averaged first (so a high-volume spammer has one vote), the estimate
  is the mean of worker means, a worker whose mean is ``lambda_`` (0.14, about two
  standard deviations) or more away from it gets weight 0 and the others
  ``1 - |F_i - F|``; repeat to a fixed point, then average the individual answers
  with those weights (the minimum-variance estimator once spammers are out).
- **Random gold** (section 6.5): each batch hides a random number of gold items of
  known tag; an answer is corrected to ``(C - gold positives) / (b - gold)``.
  Colluders who agree on one count no longer agree after correction, and a clearly
  negative corrected fraction marks a spammer outright.

The interval is normal, from the spread of the retained answers' fractions. It
assumes workers count what they see without error; counting jobs correct for that
error with :mod:`pe.jobs.calibrated_count` instead, and bench/counting.py reports
Thresh as the uncorrected count.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from pe.jobs.proportion import Estimate, z_for

__all__ = ["CountAnswer", "ThreshResult", "gold_count", "thresh"]

#: A corrected fraction below this is not honest error but a spammer.
NEGATIVE_SLACK = -0.02


@dataclass(frozen=True)
class CountAnswer:
    worker_id: str
    count: int  #: what the worker answered for the whole batch
    size: int  #: items in the batch, gold included
    gold: int = 0  #: gold items in the batch
    gold_positive: int = 0  #: of those, items with the tag

    @property
    def fraction(self) -> float:
        """The corrected fraction of the batch's real items with the tag."""
        real = self.size - self.gold
        return (self.count - self.gold_positive) / real if real > 0 else 0.0


@dataclass(frozen=True)
class ThreshResult:
    estimate: Estimate
    weights: dict[str, float]  #: per worker; 0 for those judged spammers

    @property
    def spammers(self) -> list[str]:
        return sorted(w for w, weight in self.weights.items() if weight == 0.0)


def gold_count(size: int, mean: float, rng: random.Random) -> int:
    """Gold items to hide in a batch of ``size``: ``mean`` +- U{-g..g}, g = 0.2 * size,
    kept inside the batch (Qurk section 6.5.2)."""
    if mean <= 0 or size < 2:
        return 0
    centre = min(round(mean), size - 1)
    # mu > g and size - mu > g keep the draw inside the batch.
    g = max(min(int(0.2 * size), centre - 1, size - centre - 1), 0)
    return centre + rng.randint(-g, g)


def thresh(
    answers: Sequence[CountAnswer],
    *,
    lambda_: float = 0.14,
    confidence: float = 0.95,
    max_rounds: int = 100,
) -> ThreshResult:
    """Aggregate count answers with Thresh; spammers get weight 0."""
    by_worker: dict[str, list[float]] = defaultdict(list)
    for answer in answers:
        by_worker[answer.worker_id].append(answer.fraction)
    if not by_worker:
        return ThreshResult(Estimate(0.5, 0.0, 1.0, 0), {})
    means = {w: sum(fs) / len(fs) for w, fs in by_worker.items()}
    # An answer below its gold count is no honest mistake: out at once.
    banned = {w for w, fs in by_worker.items() if min(fs) < NEGATIVE_SLACK}
    honest = [m for w, m in means.items() if w not in banned]
    estimate = sum(honest) / len(honest) if honest else 0.5
    weights: dict[str, float] = {}
    for _ in range(max_rounds):
        weights = {
            w: (1.0 - abs(m - estimate)) if w not in banned and abs(m - estimate) < lambda_ else 0.0
            for w, m in means.items()
        }
        total = sum(weights.values())
        if total == 0:
            break
        updated = sum(weights[w] * means[w] for w in means) / total
        if abs(updated - estimate) < 1e-9:
            break
        estimate = updated
    return ThreshResult(_final(by_worker, weights, confidence), weights)


def _final(
    by_worker: dict[str, list[float]], weights: dict[str, float], confidence: float
) -> Estimate:
    pairs = [(weights[w], f) for w, fs in by_worker.items() for f in fs if weights.get(w, 0) > 0]
    total = sum(w for w, _ in pairs)
    if not pairs or total == 0:
        return Estimate(0.5, 0.0, 1.0, 0)
    value = sum(w * f for w, f in pairs) / total
    n = len(pairs)
    if n < 2:
        return Estimate(min(max(value, 0.0), 1.0), 0.0, 1.0, n)
    spread = sum(w * (f - value) ** 2 for w, f in pairs) / total * n / (n - 1)
    # Kish's effective sample size: unequal weights are worth fewer answers.
    effective = total * total / sum(w * w for w, _ in pairs)
    half = z_for(confidence) * math.sqrt(max(spread, 1e-4) / effective)
    value = min(max(value, 0.0), 1.0)
    return Estimate(value, max(value - half, 0.0), min(value + half, 1.0), n)
