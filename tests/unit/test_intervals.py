"""The AUC interval of held-out metrics: coverage with few positives, by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from channels.records import format_auc
from pe.common.intervals import auc_interval


@pytest.mark.parametrize("true_auc", [0.75, 0.95])
def test_the_auc_interval_holds_the_true_auc_with_4_positives_among_38(true_auc: float) -> None:
    # Binormal scores: positives N(d, 1), negatives N(0, 1) have AUC Phi(d / sqrt 2).
    # The Wald interval (Hanley-McNeil error) holds 0.95 in 171 of these 200 sets.
    rng = np.random.default_rng(20)
    shift = math.sqrt(2) * float(norm.ppf(true_auc))
    truth = np.array([True] * 4 + [False] * 34)
    held = 0
    for _ in range(200):
        scores = np.where(truth, rng.normal(shift, 1, 38), rng.normal(0, 1, 38))
        low, high = auc_interval(float(roc_auc_score(truth, scores)), 4, 34)
        held += low <= true_auc <= high
    assert held / 200 >= 0.9


def test_the_auc_interval_is_inside_0_1_and_narrows_with_more_labels() -> None:
    low, high = auc_interval(0.875, 4, 34)
    assert 0.5 < low < 0.875 < high < 1.0  # the request v7: far from exact
    assert auc_interval(0.875, 34, 4) == (low, high)  # a tag and its complement
    wide = high - low
    low, high = auc_interval(0.875, 40, 340)
    assert low < 0.875 < high and high - low < wide / 2
    low, high = auc_interval(1.0, 4, 34)  # no pair out of order: not certainty
    assert 0.5 < low < 0.9 and high == 1.0
    low, high = auc_interval(0.0, 4, 34)
    assert low == 0.0 and 0.1 < high < 0.5
    with pytest.raises(ValueError, match="positive and one negative"):
        auc_interval(0.5, 0, 10)


def test_an_auc_is_shown_with_its_interval() -> None:
    assert format_auc(0.875, 0.5762, 0.969) == "0.875 (95% CI 0.576-0.969)"
    assert format_auc(0.875) == "0.875"
    assert format_auc(None) == "-"
