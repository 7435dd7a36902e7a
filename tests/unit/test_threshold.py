"""A two-tag classifier's first tag is decided by a threshold: the best expected F1,
under out-of-fold scores calibrated by Platt scaling, over the items to classify,
above the operator's floor on expected precision."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import f1_score

from channels.records import Decision, LinearModel, SparseRow
from pe.common.hashing import sparse_rows
from pe.common.linear import compile_model, feature_matrix
from pe.common.space import FeatureSpace
from pe.learner.threshold import choose_threshold
from pe.learner.trainers import Example, fit_logistic
from pe.params import FeaturesParams
from pipelines.sample import SAMPLE_PATH, load_tagged


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are the probability of the tag: a positive with probability score."""
    rng = np.random.default_rng(seed)
    score = rng.beta(1.0, 2.5, n)
    return score, rng.random(n) < score


def _f1(positive: np.ndarray, score: np.ndarray, threshold: float) -> float:
    decided = score >= threshold
    hits = int(np.sum(decided & positive))
    return 2 * hits / (int(decided.sum()) + int(positive.sum()))


def _best_f1_threshold(score: np.ndarray, positive: np.ndarray) -> float:
    """The threshold with the best F1 on a large set: what a rule should aim at."""
    candidates = np.quantile(score, np.linspace(0.2, 0.98, 400))
    return float(max(candidates, key=lambda t: _f1(positive, score, t)))


def test_the_threshold_with_the_best_expected_f1_is_chosen() -> None:
    truth_score, truth = _calibrated(200_000, 0)
    best = _best_f1_threshold(truth_score, truth)
    # 300 noisy labels judge the calibration; the rule is chosen for 20,000 items.
    score, positive = _calibrated(300, 1)
    population, _ = _calibrated(20_000, 2)
    chosen = choose_threshold(positive, score, 0.0, population)
    assert chosen is not None and chosen == pytest.approx(best, abs=0.05)
    assert _f1(truth, truth_score, chosen) > _f1(truth, truth_score, best) - 0.01
    # Without a population, the labelled items' own scores.
    assert choose_threshold(positive, score, 0.0) == pytest.approx(best, abs=0.08)


def test_a_floor_on_precision_raises_the_threshold_to_meet_it() -> None:
    score, positive = _calibrated(2_000, 3)
    population, _ = _calibrated(20_000, 4)
    free = choose_threshold(positive, score, 0.0, population)
    floored = choose_threshold(positive, score, 0.8, population)
    assert free is not None and floored is not None and floored > free
    truth_score, truth = _calibrated(200_000, 5)
    assert truth[truth_score >= floored].mean() == pytest.approx(0.8, abs=0.04)


def test_a_rule_is_chosen_more_steadily_than_by_the_labels_own_f1() -> None:
    # The labels' F1 maximised directly (the rule before this one) jumps from one
    # set of 300 labels to the next; the expected F1 over the population does not.
    truth_score, truth = _calibrated(200_000, 6)
    population, _ = _calibrated(20_000, 7)
    by_expectation: list[float] = []
    by_labels: list[float] = []
    for seed in range(20):
        score, positive = _calibrated(300, 100 + seed)
        chosen = choose_threshold(positive, score, 0.0, population)
        assert chosen is not None
        by_expectation.append(chosen)
        by_labels.append(float(max(score, key=lambda t: _f1(positive, score, t))))
    assert np.std(by_expectation) < np.std(by_labels) / 2
    mean_f1 = [
        np.mean([_f1(truth, truth_score, t) for t in rules])
        for rules in (by_expectation, by_labels)
    ]
    assert mean_f1[0] > mean_f1[1]


def test_an_unreachable_floor_takes_the_most_precise_rule_and_no_signal_takes_none() -> None:
    score, positive = _calibrated(500, 8)
    assert choose_threshold(positive, score, 0.999) == score.max()
    assert choose_threshold(np.array([True, True]), np.array([0.3, 0.6]), 0.0) is None
    # Scores that rank negatives higher tell nothing about where the tag is.
    assert choose_threshold(positive, 1 - score, 0.0) is None


def _model(decision: Decision | None) -> LinearModel:
    # P(yes) = sigmoid(w * x): 0.27, 0.5 and 0.73 for x = -1, 0 and 1.
    return LinearModel(
        classes=["no", "yes"],
        link="sigmoid",
        n_features=1,
        intercept=[0.0],
        rows=[SparseRow(idx=[0], val=[1.0])],
        decision=decision,
    )


def test_a_compiled_model_applies_its_decision() -> None:
    x = feature_matrix([([0], [-1.0]), ([0], [-0.5]), ([0], [1.0])], 1)
    assert compile_model(_model(None)).predict(x)[0] == ["no", "no", "yes"]
    tags, confidence = compile_model(_model(Decision(tag="yes", threshold=0.3))).predict(x)
    assert tags == ["no", "yes", "yes"]
    # The confidence is the probability of the tag given.
    assert confidence[0] == pytest.approx(1 - 1 / (1 + np.exp(1.0)))
    assert confidence[1] == pytest.approx(1 / (1 + np.exp(0.5)))
    with pytest.raises(ValueError, match="not a class"):
        compile_model(_model(Decision(tag="maybe", threshold=0.3)))


def test_the_decided_tag_beats_the_most_probable_one_on_held_out_messages() -> None:
    records = load_tagged(SAMPLE_PATH, "aid_related")
    random.Random(3).shuffle(records)
    space = FeatureSpace(FeaturesParams())
    x = space.matrix([text for text, _ in records])
    examples = [
        Example(idx, val, tag) for (idx, val), (_, tag) in zip(sparse_rows(x), records, strict=True)
    ]
    truth = [tag == "yes" for _, tag in records[2000:]]
    gains = []
    for n in (200, 400):
        model = fit_logistic(examples[:n], space.dimensions, 1.0, positive="yes")
        assert model is not None and model.decision is not None
        assert model.decision.tag == "yes"
        compiled = compile_model(model)
        decided = [tag == "yes" for tag in compiled.predict(x[2000:])[0]]
        likeliest = compiled.predict_proba(x[2000:])[:, compiled.classes.index("yes")] >= 0.5
        gains.append(f1_score(truth, decided) - f1_score(truth, likeliest))
    assert min(gains) > 0.01
    # Without a first tag to decide (or a river model), the most probable tag.
    assert fit_logistic(examples[:200], space.dimensions, 1.0).decision is None  # type: ignore[union-attr]
