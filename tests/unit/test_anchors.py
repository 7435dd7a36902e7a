"""A classifier's worked examples as anchors of its teacher (pe.common.anchors): the
learner's teacher reads each item's similarity to every tag's nearest example, and the
classifier's second opinion applies the same features from the model message alone."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from channels.records import SecondOpinion
from pe.common.anchors import Anchors, with_anchors
from pe.common.hashing import sparse_rows
from pe.common.linear import compile_model, logit
from pe.common.space import FeatureSpace
from pe.learner import teacher as teacher_module
from pe.learner.teacher import PoolItem, SampleUpdate, StreamSample, Teacher, Teaching, warm
from pe.learner.trainers import Example, fit_logistic, make_trainer
from pe.params import ClassifierSpec, FeaturesParams, TagExample

N_FEATURES = 2**12
DIMS = 256
LEAN = 0.1
MIX = 0.85
# Made-up words (the feature space folds digits): 40 about water, 40 about sport.
WATER = [f"aqua{a}{b}" for a in "bcdefghi" for b in "klmno"]
SPORT = [f"sport{a}{b}" for a in "bcdefghi" for b in "klmno"]


def _word_vectors() -> dict[str, npt.NDArray[np.float64]]:
    """Each word a random direction, water words leaning one shared way: a stand-in
    for a sentence encoder, whose topic is one direction among many."""
    rng = np.random.default_rng(5)
    topic = rng.normal(size=DIMS)
    topic /= np.linalg.norm(topic)
    vectors = {}
    for word in WATER + SPORT:
        noise = rng.normal(size=DIMS) / np.sqrt(DIMS)
        vectors[word] = noise + (LEAN if word in WATER else -LEAN) * topic
    return vectors


VECTORS = _word_vectors()


def _embed(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """Each text's unit-length mean word vector."""
    rows = np.array([np.mean([VECTORS[w] for w in text.split()], axis=0) for text in texts])
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float64)


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The stand-in encoder under the name ``fake``; records the texts it embeds."""
    embedded: list[list[str]] = []

    def load(name: str) -> object:
        assert name == "fake"

        def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
            embedded.append(list(texts))
            return _embed(texts).astype(np.float32)  # as the encoders give them

        return embed

    monkeypatch.setattr(teacher_module, "load_embedder", load)
    teacher_module.EMBEDDINGS.clear()
    teacher_module.SAMPLE.clear()
    return embedded


def _texts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        tag = rng.choice(["yes", "no"])
        # Mostly the tag's words, some of the other's: the topic is a lean, not a rule.
        words = [
            rng.choice(WATER if (tag == "yes") == (rng.random() < MIX) else SPORT) for _ in range(6)
        ]
        out.append((" ".join(words), tag))
    return out


def _rows(texts: Sequence[str]) -> list[tuple[list[int], list[float]]]:
    return sparse_rows(FeatureSpace(FeaturesParams(n_features=N_FEATURES)).matrix(list(texts)))


def _examples(texts: Sequence[tuple[str, str]], key: str = "l") -> list[Example]:
    rows = _rows([t for t, _ in texts])
    return [
        Example(idx, val, tag, 1.0, f"{key}{i}", text)
        for i, ((text, tag), (idx, val)) in enumerate(zip(texts, rows, strict=True))
    ]


def _teaching(pool: Sequence[str], anchors: Anchors, key: str = "p") -> Teaching:
    """``pool`` as a fit's sample (``key``: its items' ids' prefix), embedded."""
    rows = _rows(pool)
    items = [
        PoolItem(f"{key}{i}", text, idx, val)
        for i, (text, (idx, val)) in enumerate(zip(pool, rows, strict=True))
    ]
    teaching = Teaching(
        "fake", 1.0, 1.0, SampleUpdate([i.item_id for i in items], items), 0.3, anchors
    )
    warm(teaching)
    return teaching


def test_each_row_gains_its_nearest_examples_similarity_for_each_tag() -> None:
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 0.0]])
    yes = np.array([[1.0, 0.0], [0.0, 1.0]])
    no = np.array([[-1.0, 0.0]])
    out = with_anchors(vectors, [yes, no])
    np.testing.assert_allclose(out[:, :2], vectors)
    np.testing.assert_allclose(out[:, 2], [1.0, 0.8, 0.0])  # the nearest yes example
    np.testing.assert_allclose(out[:, 3], [-1.0, -0.6, 0.0])
    # An item not embedded (a zero row) stays a zero row: the teacher skips it.
    assert not out[2].any()
    np.testing.assert_array_equal(with_anchors(vectors, []), vectors)


def test_a_classifiers_examples_are_its_anchors_by_tag_in_tag_order() -> None:
    spec = ClassifierSpec(
        name="water",
        question="About water?",
        tags=["yes", "no", "unsure"],
        examples=[
            TagExample(text="we need water", tag="no"),
            TagExample(text="clean water please", tag="yes"),
            TagExample(text="a goal in the match", tag="no"),
        ],
    )
    assert spec.anchors() == (
        ("yes", ("clean water please",)),
        ("no", ("we need water", "a goal in the match")),
    )


def test_a_second_opinion_refuses_anchors_of_another_size() -> None:
    fields = {"encoder": "fake", "intercept": 0.0, "threshold": 0.5, "low": 0.2, "high": 0.8}
    SecondOpinion(weights=[1.0, 2.0, 3.0], anchors=[{"tag": "yes", "vectors": [[1, 0]]}], **fields)
    with pytest.raises(ValidationError, match="anchor vector"):
        SecondOpinion(weights=[1.0, 2.0], anchors=[{"tag": "yes", "vectors": [[1, 0]]}], **fields)


def _teacher_auc(
    data: tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]],
    anchors: Anchors,
    key: str,
) -> float | None:
    """The held-out AUC of the teacher a fit on ``data`` (labelled, sample, test items)
    publishes: its second opinion, applied as the classifier applies it, the student's
    probability held at one half; None without one. ``key``: the items' ids' prefix."""
    labelled, pool, test = data
    teaching = _teaching(pool, anchors, f"{key}p")
    model = fit_logistic(_examples(labelled, f"{key}l"), N_FEATURES, 1.0, "yes", teaching=teaching)
    opinion = None if model is None else compile_model(model).second_opinion
    if opinion is None:
        return None
    assert len(opinion.anchors) == len(anchors) and opinion.dimensions == DIMS
    joined = opinion.joined(np.full(len(test), 0.5), _embed([t for t, _ in test]))
    return float(roc_auc_score([tag == "yes" for _, tag in test], joined))


def test_with_few_noisy_labels_the_examples_make_a_better_teacher(
    encoder: list[list[str]],
) -> None:
    anchors = (
        ("yes", (" ".join(WATER[:6]), " ".join(WATER[6:12]))),
        ("no", (" ".join(SPORT[:6]),)),
    )
    gains = []
    for seed in range(6):
        rng = random.Random(seed)
        labelled = _texts(rng, 12)
        # A quarter of the crowd's labels are wrong.
        labelled = [
            (text, "no" if tag == "yes" else "yes") if i < 3 else (text, tag)
            for i, (text, tag) in enumerate(labelled)
        ]
        data = (labelled, [t for t, _ in _texts(rng, 300)], _texts(rng, 400))
        without = _teacher_auc(data, (), f"{seed}:")
        with_examples = _teacher_auc(data, anchors, f"{seed}:")
        assert with_examples is not None
        gains.append(with_examples - (0.5 if without is None else without))
    assert min(gains) > 0 and np.mean(gains) > 0.02, gains
    # Each example was embedded once, by the teacher's encoder, however many fits.
    assert sum(batch.count(anchors[0][1][0]) for batch in encoder) == 1


def test_the_learner_and_the_classifier_score_the_sample_alike(
    encoder: list[list[str]],
) -> None:
    # The second opinion's threshold is chosen on the teacher's scores of the sample
    # in the fitting process; the classifier must compute the same scores from the
    # model message (its anchors' embeddings) alone.
    rng = random.Random(2)
    labelled, pool = _texts(rng, 40), [t for t, _ in _texts(rng, 300)]
    anchors = (("yes", (" ".join(WATER[:6]),)), ("no", (" ".join(SPORT[:6]),)))
    teaching = _teaching(pool, anchors)
    model = fit_logistic(_examples(labelled), N_FEATURES, 1.0, "yes", teaching=teaching)
    assert model is not None and model.second_opinion is not None
    assert [a.tag for a in model.second_opinion.anchors] == ["yes", "no"]
    assert len(model.second_opinion.weights) == DIMS + 2
    lesson = teacher_module.Lesson.prepare(
        [(e.item_id, e.text) for e in _examples(labelled)],
        teaching.pool.items(),
        teaching,
        N_FEATURES,
    )
    opinion = compile_model(model).second_opinion
    assert opinion is not None
    fitted = lesson.pool_embeddings @ opinion.weights + opinion.intercept
    # The classifier's joined probability, the student's held at one half: the
    # teacher's log-odds halved.
    applied = 2 * logit(opinion.joined(np.full(len(pool), 0.5), _embed(pool)))
    np.testing.assert_allclose(applied, fitted, atol=1e-3)
    # Without the anchors' columns the embedding alone would score the sample otherwise.
    alone = _embed(pool) @ opinion.weights[:DIMS] + opinion.intercept
    assert not np.allclose(alone, fitted, atol=1e-2)


def test_a_classifiers_trainer_teaches_with_its_examples(encoder: list[list[str]]) -> None:
    spec = ClassifierSpec(
        name="water",
        question="About water?",
        tags=["yes", "no"],
        examples=[TagExample(text=" ".join(WATER[:6]), tag="yes")],
    )
    rng = random.Random(4)
    sample = StreamSample(size=300, rate=1000.0)
    pool = [t for t, _ in _texts(rng, 300)]
    for i, (text, (idx, val)) in enumerate(zip(pool, _rows(pool), strict=True)):
        sample.add(PoolItem(f"p{i}", text, idx, val, sig=i + 1))
    teacher = Teacher("fake", 1.0, 1.0, sample, second_share=0.3)
    trainer = make_trainer(
        "sklearn", spec.tags, N_FEATURES, c=1.0, lr=0.1, teacher=teacher, anchors=spec.anchors()
    )
    for example in _examples(_texts(rng, 40)):
        trainer.add(example)
    warm(teacher.teaching(whole=True))
    model = trainer.export()
    assert model is not None and model.second_opinion is not None
    [anchor] = model.second_opinion.anchors
    assert anchor.tag == "yes"
    np.testing.assert_allclose(anchor.vectors, _embed([" ".join(WATER[:6])]), atol=1e-6)
