"""Worker latency for pool maintenance: empirical means, TermEst, the one-sided test.

Pure logic. Latencies are per label (a task's seconds divided by its records), as in
CLAMShell, so tasks of different sizes compare.

TermEst (CLAMShell, section 4.3): straggler mitigation terminates a slow worker's
task when a faster duplicate finishes first, so that worker's completed tasks alone
make them look fast. With ``N`` tasks started, ``N_c`` completed and ``N_t``
terminated, and ``l_f`` the mean latency of the workers who caused the terminations,

    l_s,Tt = l_f (N + alpha) / (N_c + alpha)
    l_s    = (N_t / N) l_s,Tt + (N_c / N) l_s,Tc

where ``l_s,Tc`` is the mean of the completed tasks' latencies and ``alpha`` smooths
small ``N`` (and ``N_c = 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import fmean, stdev

from scipy.special import stdtr

__all__ = ["LatencyEstimate", "MaintenanceRule", "WorkerLatency", "termest"]


def termest(lf: float, started: int, completed: int, alpha: float) -> float:
    """TermEst's latency of a worker's terminated tasks, ``l_f (N + a) / (N_c + a)``."""
    if alpha <= 0 and completed == 0:
        raise ValueError("alpha must be positive when no task was completed")
    return lf * (started + alpha) / (completed + alpha)


@dataclass(frozen=True)
class LatencyEstimate:
    mean: float  #: estimated mean latency per label (s)
    std: float  #: sample standard deviation of the estimate's sample
    n: int  #: tasks behind it (completed + terminated)


@dataclass
class WorkerLatency:
    """What pool maintenance knows about one worker's speed."""

    completed: list[float] = field(default_factory=list)  #: per-label latencies
    terminated: int = 0
    #: Per-label mean latency of the worker who finished first, at each termination.
    finishers: list[float] = field(default_factory=list)

    def record_completed(self, seconds_per_label: float) -> None:
        self.completed.append(seconds_per_label)

    def record_terminated(self, finisher_mean: float) -> None:
        self.terminated += 1
        self.finishers.append(finisher_mean)

    @property
    def mean_completed(self) -> float | None:
        return fmean(self.completed) if self.completed else None

    def estimate(self, *, use_termest: bool, alpha: float) -> LatencyEstimate | None:
        """Mean latency per label; with TermEst, terminated tasks count at ``l_s,Tt``.

        Without TermEst, terminated tasks are ignored (the bias TermEst corrects).
        """
        values = list(self.completed)
        if use_termest and self.terminated:
            started = len(self.completed) + self.terminated
            imputed = termest(fmean(self.finishers), started, len(self.completed), alpha)
            # N_t copies of l_s,Tt with the completed ones: their mean is l_s.
            values += [imputed] * self.terminated
        if not values:
            return None
        spread = stdev(values) if len(values) > 1 else 0.0
        return LatencyEstimate(mean=fmean(values), std=spread, n=len(values))


@dataclass(frozen=True)
class MaintenanceRule:
    """Release a worker whose latency is significantly above ``threshold_s``.

    A one-sided one-sample t-test of H0 "mean <= threshold" against H1 "mean >
    threshold" at level ``significance``, once a worker has ``min_tasks`` tasks.
    """

    threshold_s: float  #: PM_l, seconds per label
    significance: float = 0.05
    min_tasks: int = 3
    use_termest: bool = True
    alpha: float = 1.0

    def p_value(self, estimate: LatencyEstimate) -> float:
        """P(mean this far above the threshold | true mean == threshold)."""
        if estimate.std == 0.0:
            return 0.0 if estimate.mean > self.threshold_s else 1.0
        statistic = (estimate.mean - self.threshold_s) / (estimate.std / math.sqrt(estimate.n))
        # Student's t upper tail; the special function, not scipy.stats.t.sf, which
        # costs 30 times more on every answer of a busy crowd.
        return float(stdtr(estimate.n - 1, -statistic))

    def estimate(self, latency: WorkerLatency) -> LatencyEstimate | None:
        """A worker's latency as this rule sees it (with or without TermEst)."""
        return latency.estimate(use_termest=self.use_termest, alpha=self.alpha)

    def is_slow(self, latency: WorkerLatency) -> bool:
        estimate = self.estimate(latency)
        if estimate is None or estimate.n < self.min_tasks:
            return False
        return self.p_value(estimate) < self.significance
