"""Distillation: the teacher's soft labels on the stream's sample teach the word model
words the crowd's few labels never showed it."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from channels.records import Label
from pe.common.hashing import sparse_rows
from pe.common.linear import compile_model, feature_matrix
from pe.common.space import FeatureSpace
from pe.learner import agent as learner_agent
from pe.learner import neighbours as neighbours_module
from pe.learner import teacher as teacher_module
from pe.learner import threshold as threshold_module
from pe.learner import trainers as trainers_module
from pe.learner.teacher import (
    Lesson,
    PoolItem,
    SampleUpdate,
    StreamSample,
    Teacher,
    Teaching,
    embed_cached,
    warm,
)
from pe.learner.trainers import Example, SklearnTrainer, fit_logistic
from pe.params import FeaturesParams
from pe.registry import params_of
from pipelines.sample import load_sample
from pipelines.testing import PeHarness
from pipelines.topology import Topology, load_topology

N_FEATURES = 2**12
# Made-up words (the feature space folds digits, so no numbered words): 40 of each kind.
WATER = [f"aqua{a}{b}" for a in "bcdefghi" for b in "klmno"]
OTHER = [f"sport{a}{b}" for a in "bcdefghi" for b in "klmno"]


def _concept(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """A stand-in encoder that knows what every word is about (as a sentence encoder
    knows more than a few labels show): the share of water words, and of the others."""
    rows = []
    for text in texts:
        words = text.split()
        water = sum(w.startswith("aqua") for w in words) / len(words)
        rows.append([water, 1.0 - water])
    return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The stand-in encoder under the name ``fake``; counts the texts it embeds."""
    embedded: list[int] = []

    def load(name: str) -> object:
        assert name == "fake"

        def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
            embedded.append(len(texts))
            return _concept(texts)

        return embed

    monkeypatch.setattr(teacher_module, "load_embedder", load)
    teacher_module.EMBEDDINGS.clear()
    teacher_module.SAMPLE.clear()
    teacher_module.GRAPH.neighbours.clear()
    return embedded


def _teaching(pool: Sequence[PoolItem]) -> Teaching:
    """The whole of ``pool`` as one fit's sample."""
    return Teaching("fake", 1.0, 1.0, SampleUpdate([item.item_id for item in pool], list(pool)))


def _warmed(pool: Sequence[PoolItem]) -> Teaching:
    """``_teaching(pool)``, once the fitting process has embedded all of it between
    refits, as the learner's warm-up does."""
    teaching = _teaching(pool)
    for _ in range(len(pool) // teacher_module.EMBED_BATCH + 1):
        warm(teaching)
    assert warm(teaching) == (len(pool), len(pool))
    return teaching


def _texts(rng: random.Random, n: int, vocab_range: range) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        tag = rng.choice(["yes", "no"])
        vocab = WATER if tag == "yes" else OTHER
        out.append((" ".join(vocab[rng.choice(vocab_range)] for _ in range(5)), tag))
    return out


def _rows(texts: Sequence[str]) -> list[tuple[list[int], list[float]]]:
    matrix = FeatureSpace(FeaturesParams(n_features=N_FEATURES)).matrix(list(texts))
    return [
        (matrix.indices[a:b].tolist(), matrix.data[a:b].tolist())
        for a, b in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
    ]


def _setup(
    pool_words: range = range(5, 40),
) -> tuple[list[Example], list[PoolItem], list[tuple[str, str]]]:
    rng = random.Random(3)
    # The crowd labelled 30 items, which use only the first 5 words of each kind; the
    # stream's sample and the test use the others.
    labelled = _texts(rng, 30, range(5))
    pool = [text for text, _ in _texts(rng, 400, pool_words)]
    test = _texts(rng, 200, range(20, 40))
    examples = [
        Example(idx, val, tag, 1.0, f"l{i}", text)
        for i, ((text, tag), (idx, val)) in enumerate(
            zip(labelled, _rows([t for t, _ in labelled]), strict=True)
        )
    ]
    items = [
        PoolItem(f"p{i}", text, idx, val)
        for i, (text, (idx, val)) in enumerate(zip(pool, _rows(pool), strict=True))
    ]
    return examples, items, test


def _auc(model: object, test: list[tuple[str, str]]) -> float:
    compiled = compile_model(model)  # type: ignore[arg-type]
    x = feature_matrix(_rows([t for t, _ in test]), N_FEATURES)
    yes = compiled.classes.index("yes")
    return float(
        roc_auc_score([tag == "yes" for _, tag in test], compiled.predict_proba(x)[:, yes])
    )


def test_the_student_learns_the_words_only_the_teacher_saw(encoder: list[int]) -> None:
    examples, pool, test = _setup()
    alone = fit_logistic(examples, N_FEATURES, 1.0, "yes")
    taught = fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=_warmed(pool))
    assert alone is not None and taught is not None
    assert _auc(alone, test) < 0.6  # the test's words never appear in a label
    assert _auc(taught, test) > 0.95
    # The model is a word model, decided by a threshold the teacher was refitted for
    # on every fold of the labels.
    assert taught.n_features == N_FEATURES and taught.decision is not None
    assert max(max(row.idx) for row in taught.rows) < N_FEATURES


def test_a_distilled_models_threshold_is_chosen_for_the_streams_sample(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    examples, pool, _ = _setup()
    seen: list[npt.NDArray[np.float64] | None] = []
    choose = threshold_module.choose_threshold

    def spy(*args: object) -> float | None:
        seen.append(args[3])  # type: ignore[arg-type]
        return choose(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(trainers_module, "choose_threshold", spy)
    model = fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=_warmed(pool))
    assert model is not None and model.decision is not None
    # The population is the published model's probability of yes on each sampled item.
    compiled = compile_model(model)
    on_pool = compiled.predict_proba(feature_matrix([(i.idx, i.val) for i in pool], N_FEATURES))
    assert seen[-1] is not None
    np.testing.assert_allclose(seen[-1], on_pool[:, compiled.classes.index("yes")], atol=1e-6)
    # Without a teacher, the labelled items' own scores.
    fit_logistic(examples, N_FEATURES, 1.0, "yes")
    assert seen[-1] is None


def test_a_second_opinion_covers_the_share_of_the_sample_nearest_the_threshold(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    examples, pool, _ = _setup()
    seen: list[tuple[Any, ...]] = []
    choose = threshold_module.choose_threshold

    def spy(*args: Any) -> float | None:
        seen.append(args)
        return choose(*args)

    monkeypatch.setattr(trainers_module, "choose_threshold", spy)
    teaching = dataclasses.replace(_warmed(pool), second_share=0.3)
    model = fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=teaching)
    assert model is not None and model.decision is not None
    opinion = model.second_opinion
    assert opinion is not None and opinion.encoder == "fake" and len(opinion.weights) == 2
    compiled = compile_model(model)
    yes = compiled.classes.index("yes")
    words = feature_matrix([(i.idx, i.val) for i in pool], N_FEATURES)
    student = compiled.predict_proba(words)[:, yes]
    # The band: the 30% of the sample nearest the student's threshold.
    assert opinion.low <= model.decision.threshold <= opinion.high
    assert abs(((student >= opinion.low) & (student <= opinion.high)).mean() - 0.3) < 0.03
    # Its threshold is the rule's on the joined probabilities: the teacher it publishes
    # (log-odds of yes), joined to the student, over the sample.
    assert compiled.second_opinion is not None
    embedded = _concept([i.text for i in pool]).astype(np.float64)
    joined = compiled.second_opinion.joined(student, embedded)
    assert len(seen) == 2 and seen[1][3] is not None
    np.testing.assert_allclose(seen[1][3], joined, atol=1e-4)
    assert opinion.threshold == pytest.approx(choose(*seen[1]), abs=1e-6)
    # The teacher knows the sample's words: joined, the sample is ranked right.
    truth = [any(w.startswith("aqua") for w in i.text.split()) for i in pool]
    assert roc_auc_score(truth, joined) > 0.99


def test_no_second_opinion_unless_the_teaching_asks_for_one(encoder: list[int]) -> None:
    examples, pool, _ = _setup()
    teaching = _warmed(pool)
    assert teaching.second_share == 0
    taught = fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=teaching)
    alone = fit_logistic(examples, N_FEATURES, 1.0, "yes")
    assert taught is not None and taught.second_opinion is None
    assert alone is not None and alone.second_opinion is None


def test_labels_without_text_teach_only_the_student(encoder: list[int]) -> None:
    examples, pool, test = _setup()
    untaught = [e._replace(text=None) for e in examples]
    model = fit_logistic(untaught, N_FEATURES, 1.0, "yes", teaching=_teaching(pool))
    assert model is not None
    assert _auc(model, test) < 0.6  # no teacher without texts: the plain word model
    assert encoder == []  # and the sample is not embedded for nothing


def test_each_text_is_embedded_once_across_retrains(encoder: list[int]) -> None:
    examples, pool, _ = _setup()
    keys = [item.item_id for item in pool]
    embed_cached("pool", "fake", keys, [item.text for item in pool])
    embed_cached(
        "pool", "fake", keys[100:] + ["new"], [item.text for item in pool[100:]] + ["aquabk"]
    )
    assert encoder == [400, 1]


def test_a_refit_embeds_none_of_the_sample_and_teaches_from_what_the_warm_up_embedded(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(teacher_module, "EMBED_BATCH", 150)
    examples, pool, test = _setup()
    labelled = [(e.item_id, e.text) for e in examples]
    lesson = Lesson.prepare(labelled, pool, _teaching(pool), N_FEATURES)
    assert encoder == [30]  # the labels alone
    assert lesson.pool_words.shape[0] == lesson.pool_embeddings.shape[0] == 0
    assert warm(_teaching(pool)) == (150, 400)
    lesson = Lesson.prepare(labelled, pool, _teaching(pool), N_FEATURES)
    assert encoder == [30, 150]  # the labels' are kept; the refit embedded nothing
    # The newest items first (they stay in the sample longest); the teacher scores
    # the 150 embedded ones only.
    assert lesson.pool_words.shape[0] == lesson.pool_embeddings.shape[0] == 150
    assert {key[2] for key in teacher_module.EMBEDDINGS if key[0] == "pool"} == {
        item.item_id for item in pool[250:]
    }


def test_a_refit_teaches_from_the_labels_embedded_so_far(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a restart every label must be embedded again: a refit does a batch of
    # them, and its teacher learns from those; the student from all 30.
    monkeypatch.setattr(teacher_module, "EMBED_BATCH", 20)
    examples, pool, _ = _setup()
    labelled = [(e.item_id, e.text) for e in examples]
    lesson = Lesson.prepare(labelled, pool, _teaching(pool), N_FEATURES)
    assert encoder == [20]
    assert np.count_nonzero(np.abs(lesson.label_embeddings).sum(axis=1)) == 20
    lesson = Lesson.prepare(labelled, pool, _teaching(pool), N_FEATURES)
    assert encoder == [20, 10]
    assert np.count_nonzero(np.abs(lesson.label_embeddings).sum(axis=1)) == 30


def test_warming_up_embeds_the_sample_a_batch_at_a_time_and_forgets_items_that_left(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(teacher_module, "EMBED_BATCH", 250)
    examples, pool, _ = _setup()
    fit_logistic(examples[:10], N_FEATURES, 1.0, "yes", teaching=_teaching(pool[:50]))
    assert encoder == [10]
    assert warm(_teaching(pool)) == (250, 400)
    assert warm(_teaching(pool)) == (400, 400)
    assert warm(_teaching(pool)) == (400, 400)  # nothing left to embed
    assert encoder == [10, 250, 150]
    assert warm(_teaching(pool[200:])) == (200, 200)
    kinds = [key[0] for key in teacher_module.EMBEDDINGS]
    # The items that left the sample are dropped; the labelled items' stay for refits.
    assert (kinds.count("pool"), kinds.count("label")) == (200, 10)


def test_the_sample_takes_items_at_its_rate_and_keeps_the_latest() -> None:
    sample = StreamSample(size=50, rate=10.0, rng=random.Random(1))
    taken = 0
    for step in range(100):  # 10 s of 1,000-item batches every 0.1 s
        chosen = sample.choose(1000, now=step * 0.1)
        assert chosen == sorted(set(chosen))
        for i in chosen:
            sample.add(PoolItem(f"{step}:{i}", "text", [], [], sig=step * 1000 + i))
        taken += len(chosen)
    assert 100 <= taken <= 111  # a second's worth at first, then 10 a second
    kept = [int(item.item_id.split(":")[0]) for item in list(sample.items)]
    assert len(kept) == 50 and min(kept) >= 45  # the last 5 s or so, at 10 a second
    quiet = sample.choose(1000, now=3600.0)  # an hour later: no burst saved up
    assert len(quiet) == 10


def test_an_empty_sample_takes_nothing() -> None:
    assert StreamSample(size=0, rate=10.0).choose(100, now=0.0) == []


def test_the_sample_keeps_one_copy_of_a_text_until_it_leaves() -> None:
    sample = StreamSample(size=3, rate=100.0)
    assert sample.add(PoolItem("a", "flood in town", [], [], sig=7))
    assert not sample.add(PoolItem("a-retweet", "flood in town", [], [], sig=7))
    for name, sig in (("b", 8), ("c", 9), ("d", 10)):  # "a" leaves the sample
        assert sample.add(PoolItem(name, "other", [], [], sig=sig))
    assert sample.add(PoolItem("a-again", "flood in town", [], [], sig=7))
    assert [item.item_id for item in list(sample.items)] == ["c", "d", "a-again"]


def _taught_trainer(examples: list[Example], size: int) -> tuple[SklearnTrainer, StreamSample]:
    """A trainer of ``examples`` with a teacher, and the (empty) sample it teaches from."""
    sample = StreamSample(size=size, rate=1.0)
    trainer = SklearnTrainer(
        ["yes", "no"], N_FEATURES, 1.0, teacher=Teacher("fake", 1.0, 1.0, sample)
    )
    for example in examples:
        trainer.add(example)
    return trainer, sample


def test_a_trainer_teaches_from_the_live_sample_as_it_is_at_each_fit(encoder: list[int]) -> None:
    examples, pool, test = _setup()
    trainer, sample = _taught_trainer(examples, len(pool))
    for i, item in enumerate(pool):  # added after the trainer was made
        assert sample.add(dataclasses.replace(item, sig=i + 1))
    expected = fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=_warmed(pool))
    assert _auc(expected, test) > 0.95  # taught
    assert trainer.export() == expected


async def test_a_fit_receives_only_the_sample_items_new_to_the_fitting_process(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    examples, pool, _ = _setup()
    trainer, sample = _taught_trainer(examples, len(pool))
    received: list[int] = []
    items = SampleUpdate.items

    def receive(update: SampleUpdate) -> list[PoolItem]:
        received.append(len(update.new))
        return items(update)

    monkeypatch.setattr(SampleUpdate, "items", receive)
    # A thread stands in for the fitting process: the copy it keeps is the module's.
    with ThreadPoolExecutor(1) as executor:
        for i, item in enumerate(pool[:300]):
            sample.add(dataclasses.replace(item, sig=i + 1))
        await trainer.export_off_loop(executor)
        for i, item in enumerate(pool[300:]):
            sample.add(dataclasses.replace(item, sig=i + 301))
        second = await trainer.export_off_loop(executor)
        assert received == [300, 100]
        assert len(teacher_module.SAMPLE) == len(pool)
        teacher_module.SAMPLE.clear()  # the fitting process died; a new one knows nothing
        third = await trainer.export_off_loop(executor)
    assert received == [300, 100, 0, len(pool)]  # refused, then sent whole
    expected = fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=_teaching(pool))
    assert second == third == expected


def test_the_fitting_process_keeps_only_the_current_sample() -> None:
    teacher_module.SAMPLE.clear()
    a, b, c = (PoolItem(key, key, [], []) for key in "abc")
    assert SampleUpdate(["a", "b"], [a, b]).items() == [a, b]
    assert SampleUpdate(["b", "c"], [c]).items() == [b, c]
    assert set(teacher_module.SAMPLE) == {"b", "c"}
    with pytest.raises(teacher_module.SampleUnknown, match="1 of 2"):
        SampleUpdate(["a", "c"], []).items()


def test_the_teacher_s_weight_sets_how_much_its_soft_labels_count(encoder: list[int]) -> None:
    examples, pool, test = _setup()
    truth = [tag == "yes" for _, tag in test]
    x = feature_matrix(_rows([text for text, _ in test]), N_FEATURES)

    def loss(weight: float) -> float:
        """The student's log loss on the test items, whose words only the pool has."""
        teaching = dataclasses.replace(_warmed(pool), weight=weight)
        compiled = compile_model(fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=teaching))  # type: ignore[arg-type]
        return float(log_loss(truth, compiled.predict_proba(x)[:, compiled.classes.index("yes")]))

    faint, heard, heeded = loss(0.01), loss(1.0), loss(8.0)
    assert faint > heard > heeded


def test_the_student_learns_soft_labels_smoothed_over_each_items_neighbours(
    encoder: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    examples, _, _ = _setup()
    # Texts mixing both kinds of words in many proportions: neighbours in the
    # stand-in encoder's space differ a little, and so do the teacher's soft labels.
    rng = random.Random(5)
    mixed = []
    for _ in range(300):
        n = rng.randint(5, 30)
        water = rng.randint(0, n)
        mixed.append(" ".join(rng.sample(WATER, water) + rng.sample(OTHER, n - water)))
    pool = [
        PoolItem(f"p{i}", text, idx, val)
        for i, (text, (idx, val)) in enumerate(zip(mixed, _rows(mixed), strict=True))
    ]
    taught: list[npt.NDArray[np.float64]] = []
    learn = teacher_module.learn_from_teacher

    def spy(*args: Any) -> Any:
        taught.append(args[4])  # the soft labels, times the teacher's weight
        return learn(*args)

    monkeypatch.setattr(teacher_module, "learn_from_teacher", spy)
    plain = _warmed(pool)
    assert not teacher_module.GRAPH.neighbours  # no smoothing: no neighbours found
    fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=plain)
    as_taught, taught[:] = list(taught), []
    smoothed = dataclasses.replace(plain, smoothing=0.5)
    warm(smoothed)  # the warm-up finds the neighbours
    found = teacher_module.GRAPH.neighbours
    assert set(found) == {item.item_id for item in pool}
    assert all(len(others) == neighbours_module.NEIGHBOURS for others in found.values())
    fit_logistic(examples, N_FEATURES, 1.0, "yes", teaching=smoothed)
    links = teacher_module.GRAPH.links([item.item_id for item in pool])
    # Each fit (the folds', then the full one) taught what the same teacher said,
    # halfway to its neighbours' mean.
    assert len(taught) == len(as_taught) > 1
    for got, before in zip(taught, as_taught, strict=True):
        assert got == pytest.approx(neighbours_module.smooth(before, links, 0.5))
        assert not np.allclose(got, before)


def test_a_fit_that_learns_nothing_still_keeps_the_sample_s_update(encoder: list[int]) -> None:
    examples, pool, _ = _setup()
    one_tag = [e._replace(tag="yes") for e in examples]  # nothing to learn
    untaught = [e._replace(text=None) for e in examples]  # nothing to teach the teacher
    for unused, result in ((one_tag, None), (untaught, "model")):
        teacher_module.SAMPLE.clear()
        model = fit_logistic(unused, N_FEATURES, 1.0, "yes", teaching=_teaching(pool))
        assert (model is None) == (result is None)
        # The fit did not use the sample, yet the fitting process keeps it for the next.
        assert set(teacher_module.SAMPLE) == {item.item_id for item in pool}
    assert encoder == []


def test_a_worker_whose_teacher_is_not_installed_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CROWDSTREAM_ENCODERS_DIR", str(tmp_path))  # MiniLM never fetched
    # The default teacher: refused when the learner is built, not at its first refit.
    with pytest.raises(RuntimeError, match="all-minilm-l6-v2 .*crowdstream encoders --fetch"):
        PeHarness(load_topology("crisis"), pes=["learner"])


def _sampling_learner() -> PeHarness:
    """The PEs up to the learner, whose teacher (the fast `use`) samples every item."""
    data = load_topology("crisis").model_dump(mode="json")
    data["params"]["learner"] = {"teacher": "use", "teacher_rate": 10_000}
    return PeHarness(Topology.model_validate(data), pes=["collector", "features", "learner"])


async def test_the_learner_embeds_its_sample_for_the_teacher_before_any_label() -> None:
    async with _sampling_learner() as run:
        await run.feed("items.raw", load_sample(300))

        def sample() -> dict[str, float]:
            [family] = run.context.metrics.teacher_sample.collect()
            return {s.labels["state"]: s.value for s in family.samples}

        # No label yet, so no refit: the fitting process embeds the sample anyway.
        deadline = time.monotonic() + 60
        while sample().get("embedded") != 300 and time.monotonic() < deadline:
            await run.settle()
            await asyncio.sleep(0.1)
        assert sample() == {"sampled": 300, "embedded": 300}


async def test_a_failed_warm_up_is_logged_and_tried_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(teaching: Teaching) -> tuple[int, int]:  # a local function: unpicklable
        raise AssertionError("never runs")

    monkeypatch.setattr(learner_agent, "warm", broken)
    monkeypatch.setattr(learner_agent, "WARM_RETRY_S", 0.05)
    async with _sampling_learner() as run:
        await run.feed("items.raw", load_sample(50))
        deadline = time.monotonic() + 30
        while caplog.text.count("warm-up failed") < 3 and time.monotonic() < deadline:
            await run.settle()
            await asyncio.sleep(0.05)
        # The warm-up goes on trying; the worker does not crash.
        assert caplog.text.count("the teacher's warm-up failed; tried again") >= 3


async def test_the_warm_up_waits_while_a_retrain_round_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each call to the fitting process, in the order the learner makes them.
    calls: list[str] = []

    def recording(kind: str, real: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def call(*args: Any) -> Any:
            calls.append(kind)
            return await real(*args)

        return call

    # The warm-up's calls and the refits' both go through the teacher's with_sample.
    monkeypatch.setattr(learner_agent, "with_sample", recording("warm", teacher_module.with_sample))
    monkeypatch.setattr(
        trainers_module, "with_sample", recording("fit", teacher_module.with_sample)
    )
    data = load_topology("crisis").model_dump(mode="json")
    data["params"]["learner"] = {
        "teacher": "use",
        "teacher_rate": 10_000,
        "retrain_every": 10,
        "min_train": 5,
    }
    topology = Topology.model_validate(data)
    sample = load_sample(3000)
    space = FeatureSpace(params_of(topology.params, FeaturesParams))
    labelled = sample[:60]
    rows = sparse_rows(space.matrix([str(row["text"]) for row in labelled]))
    labels = [
        Label(
            task_id=f"t-{name}-{row['id']}",
            item_id=str(row["id"]),
            classifier=name,
            tag=row["meta"]["truth"][name],
            agreement=1.0,
            answers=[],
            ts=1.0,
            idx=idx,
            val=val,
            text=str(row["text"]),
        )
        for name in ("aid_related", "request")
        for row, (idx, val) in zip(labelled, rows, strict=True)
    ]
    async with PeHarness(topology, pes=["collector", "features", "learner"]) as run:
        # A sample of 3,000 takes the warm-up several calls of 512.
        await run.feed("items.raw", sample)
        deadline = time.monotonic() + 60
        while "warm" not in calls and time.monotonic() < deadline:
            await run.settle()
            await asyncio.sleep(0.05)
        await run.feed("crowd.labels", [label.model_dump() for label in labels])
        await run.tick()  # a round: both classifiers, each a fit then a refit
        assert len(run.outputs("control.models")) == 2
        deadline = time.monotonic() + 60
        while calls[-1] != "warm" and time.monotonic() < deadline:
            await run.settle()
            await asyncio.sleep(0.05)
    first, last = calls.index("fit"), len(calls) - calls[::-1].index("fit")
    # The warm-up went on before and after the round, never between its fits.
    assert calls[first:last] == ["fit"] * 4
    assert calls[first - 1] == calls[last] == "warm"
