"""TermEst and the one-sided release test of pool maintenance."""

from __future__ import annotations

import math

import pytest

from pe.annotator.latency import LatencyEstimate, MaintenanceRule, WorkerLatency, termest


def test_termest_follows_its_formula() -> None:
    # l_f (N + a) / (N_c + a) with l_f = 2 s, N = 10 started, N_c = 4 completed, a = 1
    assert termest(2.0, 10, 4, 1.0) == pytest.approx(2.0 * 11 / 5)
    # alpha keeps it finite when every task was terminated
    assert termest(3.0, 5, 0, 0.5) == pytest.approx(3.0 * 5.5 / 0.5)
    with pytest.raises(ValueError, match="alpha"):
        termest(3.0, 5, 0, 0.0)


def test_the_estimate_weights_terminated_and_completed_tasks() -> None:
    latency = WorkerLatency()
    latency.record_completed(2.0)
    latency.record_completed(4.0)
    latency.record_terminated(1.0)
    latency.record_terminated(3.0)
    with_termest = latency.estimate(use_termest=True, alpha=1.0)
    assert with_termest is not None
    # l_f = 2, N = 4, N_c = 2: l_s,Tt = 2 * 5 / 3; l_s = 2/4 * l_s,Tt + 2/4 * 3
    expected = 0.5 * (2.0 * 5 / 3) + 0.5 * 3.0
    assert with_termest.mean == pytest.approx(expected) and with_termest.n == 4
    without = latency.estimate(use_termest=False, alpha=1.0)
    assert without is not None and without.mean == 3.0 and without.n == 2
    assert WorkerLatency().estimate(use_termest=True, alpha=1.0) is None


def test_the_one_sided_test_matches_students_t() -> None:
    rule = MaintenanceRule(threshold_s=8.0)
    # mean 12, sd 2, n 3: t = 4 / (2 / sqrt 3); with 2 degrees of freedom the upper
    # tail has the closed form 1/2 - t / (2 sqrt(2 + t^2))
    t = 4.0 / (2.0 / math.sqrt(3))
    expected = 0.5 - t / (2 * math.sqrt(2 + t * t))
    assert rule.p_value(LatencyEstimate(12.0, 2.0, 3)) == pytest.approx(expected)
    # one-sided: a worker faster than the threshold is never "significantly slow"
    assert rule.p_value(LatencyEstimate(4.0, 2.0, 3)) > 0.9
    assert rule.p_value(LatencyEstimate(9.0, 0.0, 3)) == 0.0
    assert rule.p_value(LatencyEstimate(7.0, 0.0, 3)) == 1.0


def _worker(*seconds: float) -> WorkerLatency:
    latency = WorkerLatency()
    for s in seconds:
        latency.record_completed(s)
    return latency


def test_release_needs_significance_and_enough_tasks() -> None:
    rule = MaintenanceRule(threshold_s=8.0, significance=0.05, min_tasks=3)
    assert rule.is_slow(_worker(12.0, 10.0, 14.0))  # p ~ 0.037
    assert not rule.is_slow(_worker(12.0, 14.0))  # too few tasks
    assert not rule.is_slow(_worker(2.0, 30.0, 4.0))  # slow on average, not significantly
    assert not rule.is_slow(_worker(5.0, 6.0, 7.0))
    stricter = MaintenanceRule(threshold_s=8.0, significance=0.01, min_tasks=3)
    assert not stricter.is_slow(_worker(12.0, 10.0, 14.0))
