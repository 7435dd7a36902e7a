"""How many distinct answers exist: Chao92, with the streaker correction, and the
expected yield of more tasks ("Getting It All from the Crowd", Trushkowsky, Kraska,
Franklin, Sarkar).

Pure functions over the answers so far, each a (worker, value) pair:

- Chao92 (section 3.2.3): sample coverage ``C = 1 - f1/n`` (Good-Turing), the
  squared coefficient of variation ``g2 = max(c/C * sum j(j-1) f_j / (n(n-1)) - 1, 0)``
  and ``N = c/C + f1/C * g2``.
- The f1-heuristic against streakers (section 4.2.2): workers who add most of the
  singletons make the estimate overshoot. Rank workers by their singleton
  answers; the mean over the top ``k`` is the bar ``q``; a worker with ``s``
  singletons loses ``s - q`` of them (whole answers: a worker less than one
  answer above the bar is no outlier), at most ``beta`` of all their answers.
  Chao92 of what is left is the corrected estimate, never below the distinct
  answers observed (the trimmed answers were still seen; Chao92 itself never
  goes below them). The raw statistics still feed the yield prediction
  (section 5.2: the corrected ones under-predict).
- Pay-as-you-go (section 5.1.2, Shen, Chao and Lin): the distinct answers expected
  from ``m`` more answers, ``f0 * (1 - (1 - f1/(n f0))^m)`` with ``f0 = N - c``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "Enumeration",
    "SpeciesEstimate",
    "chao92",
    "estimate",
    "expected_new",
    "f1_corrected",
]


@dataclass(frozen=True)
class SpeciesEstimate:
    n: int  #: answers counted
    distinct: int  #: c, distinct answers seen
    f1: int  #: answers seen exactly once
    coverage: float  #: Good-Turing sample coverage 1 - f1/n
    cv2: float  #: estimated squared coefficient of variation
    total: float | None  #: N, the estimated number of distinct answers (None: unbounded)

    @property
    def completeness(self) -> float:
        """Share of the estimated distinct answers already found."""
        if self.total is None or self.total <= 0:
            return 0.0
        return min(self.distinct / self.total, 1.0)


def chao92(frequencies: Iterable[int]) -> SpeciesEstimate:
    """Chao92 from the number of times each distinct answer was seen."""
    counts = [c for c in frequencies if c > 0]
    n, distinct = sum(counts), len(counts)
    f = Counter(counts)
    f1 = f[1]
    if n < 2 or f1 >= n:
        return SpeciesEstimate(n, distinct, f1, 0.0, 0.0, None)
    coverage = 1 - f1 / n
    pairs = sum(j * (j - 1) * fj for j, fj in f.items())
    cv2 = max(distinct / coverage * pairs / (n * (n - 1)) - 1, 0.0)
    total = distinct / coverage + f1 / coverage * cv2
    return SpeciesEstimate(n, distinct, f1, coverage, cv2, total)


def f1_corrected(
    answers: Sequence[tuple[str, str]], *, k: int = 10, beta: float = 0.5
) -> Counter[str]:
    """Frequencies after the f1-heuristic trims streakers' singleton answers."""
    freq = Counter(value for _, value in answers)
    singles: dict[str, list[str]] = defaultdict(list)
    per_worker: Counter[str] = Counter()
    for worker, value in answers:
        per_worker[worker] += 1
        if freq[value] == 1:
            singles[worker].append(value)
    if not singles:
        return freq
    # Every worker counts, those without singletons too: the bar is what the top k
    # workers add on average, not what the streakers alone add.
    top = sorted((len(singles.get(w, [])) for w in per_worker), reverse=True)[:k]
    bar = sum(top) / len(top)
    for worker, values in singles.items():
        # The paper removes s - q; rounding up would trim the one worker who found a
        # rare answer whenever the bar is a fraction (one singleton in the crowd).
        drop = min(math.floor(len(values) - bar), math.floor(beta * per_worker[worker]))
        if drop <= 0:
            continue
        for value in values[len(values) - drop :]:  # the latest ones
            del freq[value]
    return freq


def expected_new(raw: SpeciesEstimate, m: int) -> float:
    """Distinct answers expected from ``m`` more answers (Shen's estimator)."""
    if raw.n == 0:
        return 0.0
    new_rate = raw.f1 / raw.n  # chance that the next answer is new
    if raw.total is None:
        return m * new_rate  # no plateau in sight: the current rate
    f0 = raw.total - raw.distinct
    if f0 <= 0 or new_rate <= 0:
        return 0.0
    return f0 * (1 - (1 - min(new_rate / f0, 1.0)) ** m)


@dataclass(frozen=True)
class Enumeration:
    raw: SpeciesEstimate  #: from every answer
    #: Chao92 of the answers the streaker correction keeps; ``distinct`` are the
    #: answers observed, and ``total`` is never below them.
    corrected: SpeciesEstimate
    predicted: dict[int, float]  #: m -> distinct answers expected from m more


def estimate(
    answers: Sequence[tuple[str, str]],
    horizons: Sequence[int] = (10, 20, 50),
    *,
    k: int = 10,
    beta: float = 0.5,
) -> Enumeration:
    """All an enumeration job reports, from its (worker, value) answers."""
    raw = chao92(Counter(value for _, value in answers).values())
    trimmed = chao92(f1_corrected(answers, k=k, beta=beta).values())
    corrected = replace(
        trimmed,
        distinct=raw.distinct,
        total=None if trimmed.total is None else max(trimmed.total, raw.distinct),
    )
    return Enumeration(raw, corrected, {m: expected_new(raw, m) for m in horizons})
