"""A two-tag classifier's first tag is decided by a threshold chosen on out-of-fold
predictions: the best F1 above the operator's precision floor."""

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


def test_the_threshold_with_the_best_f1_is_chosen() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.4, 0.35, 0.3, 0.2, 0.1])
    positive = np.array([True, True, False, True, True, False, False, False])
    # >= 0.35 catches all four positives with one false alarm: F1 0.89.
    assert choose_threshold(positive, score, 0.0) == 0.35
    # A floor of 0.9 on precision leaves only the rules above 0.7: >= 0.8, F1 0.67.
    assert choose_threshold(positive, score, 0.9) == 0.8


def test_an_unreachable_floor_takes_the_most_precise_rule_and_one_tag_takes_none() -> None:
    score = np.array([0.9, 0.8, 0.2])
    positive = np.array([False, True, True])
    assert choose_threshold(positive, score, 0.99) == 0.2  # precision 2/3, the best there is
    assert choose_threshold(np.array([True, True]), np.array([0.3, 0.6]), 0.0) is None


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
