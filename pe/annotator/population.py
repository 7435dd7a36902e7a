"""Simulated crowd workers: a heavy-tailed population of speeds and accuracies.

Each worker has a mean latency per record drawn from a shifted log-normal (a floor,
the fastest anyone works, plus a log-normal), a spread that grows with the mean
(slow workers are also the erratic ones), and an accuracy drawn from a Beta
distribution. A task's latency is log-normal with the worker's mean and standard
deviation, times the records in the task, so single tasks have long tails too.

Presets:

- ``medical``: CLAMShell's medical-abstract deployment (section 2.1, figure 2):
  per-worker mean latency with median ~4 min and 90th percentile ~1.1 h, per-worker
  standard deviation with median ~2 min and 90th percentile ~3 h, fastest worker
  ~28.5 s; recruitment 5 min at least, median 36 min, std 9 min.
- ``live``: CLAMShell's live retainer-pool runs on simple labeling tasks, where
  latency per label was a few seconds (fast < 4 s, slow >= 8 s; PM_l = 8 s worked
  best) and recruitment took a few minutes.
- ``demo``: a quick crowd for the demo and tests (8 s median, little tail).

A population can hold spammers (``spammer_share``), who answer at random. Count
answers (how many of a batch have a tag) follow Qurk's finding on text: with no
"pop-out", a worker skimming a batch of messages judges each one with only part of
the accuracy they have when labeling it alone (``COUNT_SKIM``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from scipy.stats import norm

__all__ = [
    "COUNT_SKIM",
    "PRESETS",
    "PopulationModel",
    "SimulatedWorker",
    "lognormal_for",
    "simulate_answers",
]

#: Share of a worker's labeling skill (accuracy above chance) left when they count a
#: batch of texts instead of labeling one (Qurk: up to 50% count error on tweets).
COUNT_SKIM = 0.5


def lognormal_for(mean: float, std: float) -> tuple[float, float]:
    """(mu, sigma) of the log-normal with this mean and standard deviation."""
    sigma2 = math.log1p((std / mean) ** 2)
    return math.log(mean) - sigma2 / 2, math.sqrt(sigma2)


@dataclass(frozen=True)
class SimulatedWorker:
    worker_id: str
    mean_s: float  #: mean latency per record
    std_s: float  #: standard deviation of latency per record
    accuracy: float
    spammer: bool = False  #: answers at random

    def latency(self, rng: random.Random, records: int = 1) -> float:
        mu, sigma = lognormal_for(self.mean_s, self.std_s)
        return records * math.exp(rng.gauss(mu, sigma))

    def answer(self, truth: str | None, tags: list[str], rng: random.Random) -> str | None:
        """The truth with probability ``accuracy``, else another tag at random;
        ``None`` when the truth is unknown (the caller answers "no label")."""
        if truth is None or truth not in tags:
            return None
        return self._judge(truth, tags, self.accuracy, rng)

    def _judge(self, truth: str, tags: list[str], accuracy: float, rng: random.Random) -> str:
        if self.spammer:
            return rng.choice(tags)
        if rng.random() < accuracy or len(tags) == 1:
            return truth
        return rng.choice([tag for tag in tags if tag != truth])

    def count(self, truths: list[str | None], tag: str, tags: list[str], rng: random.Random) -> int:
        """How many items of a batch (their true tags) the worker says have ``tag``."""
        if self.spammer:
            return rng.randint(0, len(truths))
        chance = 1.0 / max(len(tags), 1)
        skim = chance + (self.accuracy - chance) * COUNT_SKIM
        return sum(
            1
            for truth in truths
            if truth in tags and self._judge(str(truth), tags, skim, rng) == tag
        )

    def enumerate(self, truths: list[str], rng: random.Random) -> tuple[str, ...]:
        """The distinct things a worker lists for an item: each true one with
        probability ``accuracy``; a spammer makes one up."""
        if self.spammer:
            return (f"made-up-{rng.randint(0, 10**6)}",)
        return tuple(value for value in truths if rng.random() < self.accuracy)


@dataclass(frozen=True)
class PopulationModel:
    floor_s: float  #: the fastest mean latency per record
    median_s: float  #: median of the per-worker means (floor included)
    p90_s: float  #: 90th percentile of the per-worker means
    #: Per-worker std = cv * mean * (mean / median) ** cv_growth: the median worker's
    #: coefficient of variation is ``cv``; slower workers are more erratic.
    cv: float
    cv_growth: float
    accuracy_a: float  #: Beta(a, b) of per-worker accuracy
    accuracy_b: float
    cap_s: float  #: no worker's mean is above this
    recruit_floor_s: float
    recruit_median_s: float
    recruit_std_s: float
    #: Chance per hour that a worker vanishes without a word.
    vanish_per_hour: float = 0.0
    #: Share of workers who answer at random.
    spammer_share: float = 0.0

    def _mean_sigma(self) -> tuple[float, float]:
        median_above = self.median_s - self.floor_s
        sigma = math.log((self.p90_s - self.floor_s) / median_above) / float(norm.ppf(0.9))
        return math.log(median_above), sigma

    def draw(self, worker_id: str, rng: random.Random) -> SimulatedWorker:
        mu, sigma = self._mean_sigma()
        mean = min(self.floor_s + math.exp(rng.gauss(mu, sigma)), self.cap_s)
        std = self.cv * mean * (mean / self.median_s) ** self.cv_growth
        accuracy = rng.betavariate(self.accuracy_a, self.accuracy_b)
        spammer = self.spammer_share > 0 and rng.random() < self.spammer_share
        return SimulatedWorker(worker_id, mean, std, accuracy, spammer)

    def recruit_latency(self, rng: random.Random) -> float:
        above = self.recruit_median_s - self.recruit_floor_s
        if above <= 0:
            return self.recruit_floor_s
        # Log-normal above the floor with the given median; its std sets sigma.
        sigma = lognormal_for(above, self.recruit_std_s)[1]
        return self.recruit_floor_s + above * math.exp(rng.gauss(0.0, sigma))

    def vanish_after(self, rng: random.Random) -> float:
        """Seconds until a worker vanishes (infinite if they never do)."""
        if self.vanish_per_hour <= 0:
            return math.inf
        return rng.expovariate(self.vanish_per_hour / 3600.0)


PRESETS: dict[str, PopulationModel] = {
    "medical": PopulationModel(
        floor_s=28.5,
        median_s=240.0,
        p90_s=3960.0,
        cv=0.5,
        cv_growth=0.6,
        accuracy_a=8.0,
        accuracy_b=1.5,
        cap_s=4 * 3600.0,
        recruit_floor_s=300.0,
        recruit_median_s=2160.0,
        recruit_std_s=540.0,
    ),
    "live": PopulationModel(
        floor_s=1.5,
        median_s=5.0,
        p90_s=14.0,
        cv=0.5,
        cv_growth=0.6,
        accuracy_a=8.0,
        accuracy_b=1.5,
        cap_s=120.0,
        recruit_floor_s=30.0,
        recruit_median_s=150.0,
        recruit_std_s=60.0,
        vanish_per_hour=0.5,
    ),
    "demo": PopulationModel(
        floor_s=2.0,
        median_s=8.0,
        p90_s=14.0,
        cv=0.5,
        cv_growth=0.0,
        accuracy_a=12.0,
        accuracy_b=2.0,
        cap_s=60.0,
        recruit_floor_s=1.0,
        recruit_median_s=3.0,
        recruit_std_s=1.0,
    ),
}


def simulate_answers(
    truth: dict[str, str],
    tags: list[str],
    population: PopulationModel,
    *,
    workers: int,
    per_item: int,
    rng: random.Random,
) -> list[tuple[str, str, str]]:
    """``(item, worker, answer)`` rows: ``per_item`` distinct workers, drawn from a
    crowd of ``workers``, label each item (for offline aggregation studies)."""
    crowd = [population.draw(f"w{i}", rng) for i in range(workers)]
    rows = []
    for item_id, tag in truth.items():
        for worker in rng.sample(crowd, per_item):
            rows.append((item_id, worker.worker_id, worker.answer(tag, tags, rng) or "N/A"))
    return rows
