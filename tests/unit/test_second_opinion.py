"""The classifier's second pass: the tags a model is least sure of, decided again by
its teacher's opinion joined to the student's, as the item's next revision."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from channels.records import (
    SECOND_OPINION_REVISION,
    ClassifiedItem,
    Decision,
    Interval,
    LinearModel,
    ModelUpdate,
    SecondOpinion,
    SparseRow,
)
from pe.classifier import second_opinion as module
from pe.classifier.embedding_memory import EmbeddingMemory
from pe.classifier.second_opinion import SecondOpinions, doubt, revise
from pe.common.linear import CompiledModel, compile_model
from pipelines.sample import load_sample
from pipelines.testing import PeHarness, sample_models
from pipelines.topology import Topology, load_topology

#: The stand-in encoder: 'wet' texts embed as (1, 0), others as (0, 1); the teacher's
#: log-odds of yes are +4 and -4.
OPINION = SecondOpinion(
    encoder="fake", weights=[4.0, -4.0], intercept=0.0, low=0.3, high=0.7, threshold=0.5
)


def test_a_band_from_high_to_low_is_refused() -> None:
    """As a confidence interval's bounds are (both records validate one range)."""
    with pytest.raises(ValidationError, match="SecondOpinion: low must not exceed high"):
        OPINION.model_validate({**OPINION.model_dump(), "low": 0.8, "high": 0.2})
    with pytest.raises(ValidationError, match="Interval: low must not exceed high"):
        Interval(low=0.9, high=0.8)
    assert Interval(low=0.5, high=0.5).high == 0.5


def _embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return np.array([[1.0, 0.0] if "wet" in t else [0.0, 1.0] for t in texts], np.float32)


def _model(opinion: SecondOpinion | None = OPINION) -> CompiledModel:
    return compile_model(
        LinearModel(
            classes=["no", "yes"],
            link="sigmoid",
            n_features=8,
            intercept=[0.0],
            rows=[SparseRow(idx=[0], val=[1.0])],
            decision=Decision(tag="yes", threshold=0.5),
            second_opinion=opinion,
        )
    )


def _tag(tag: str, confidence: float, source: str = "model") -> dict[str, Any]:
    return {"tag": tag, "confidence": confidence, "model_version": 3, "source": source}


def _record(
    item_id: str, text: str, ts_out: float = 2.0, **labels: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": item_id,
        "text": text,
        "ts_in": 1.0,
        "ts_out": ts_out,
        "source": None,
        "labels": labels,
        "revision": 0,
    }


def test_only_the_models_own_tags_in_its_band_are_doubted() -> None:
    model = _model()
    found = doubt(model, _tag("no", 0.6))  # P(yes) 0.4: in the band
    assert found is not None
    assert (found.decided, found.other) == ("yes", "no")
    assert found.probability == pytest.approx(0.4)
    assert doubt(model, _tag("yes", 0.9)) is None  # sure
    assert doubt(model, _tag("no", 0.6, source="crowd")) is None
    assert doubt(model, _tag("no", 0.6, source="propagated")) is None
    assert doubt(_model(opinion=None), _tag("no", 0.6)) is None
    assert doubt(None, _tag("no", 0.6)) is None


def test_distance_is_zero_at_the_threshold_and_one_at_the_band_edges() -> None:
    opinion = _model().second_opinion
    assert opinion is not None  # band 0.3-0.7 around the student's threshold 0.5
    assert opinion.distance(0.5) == pytest.approx(0.0)
    assert opinion.distance(0.3) == pytest.approx(1.0) == opinion.distance(0.7)
    # in log-odds: 0.6 is nearer the middle than halfway in probability
    assert opinion.distance(0.6) == pytest.approx(np.log(1.5) / np.log(7 / 3))
    assert opinion.distance(0.4) == pytest.approx(opinion.distance(0.6))


def test_a_full_queue_sheds_its_least_doubtful_item_and_serves_the_most_doubtful() -> None:
    opinions = SecondOpinions(capacity=2)
    models = {"a": _model(), "b": _model()}
    records = [
        _record("1", "wet", a=_tag("no", 0.6), b=_tag("no", 0.65)),  # P(yes) 0.4 and 0.35
        _record("2", "dry", a=_tag("yes", 0.95)),  # sure: not queued
        _record("3", "wet", a=_tag("no", 0.52)),  # the most doubtful
        _record("4", "wet", b=_tag("yes", 0.65)),  # less doubtful than item 1's tag a
        _record("5", "wet", a=_tag("yes", 0.55)),
    ]
    shed = opinions.offer(records, [0] * len(records), models)
    # Item 4 came to a full queue (1, 3) and was the least doubtful; then item 5 put
    # out item 1, both of whose tags are shed.
    assert shed == {"a": 1, "b": 2}
    assert [q.record["id"] for q in opinions.queue] == ["3", "5"]
    assert opinions.waiting == 2
    assert [q.record["id"] for q in opinions.take(1)] == ["3"]
    assert opinions.waiting == 1
    # Equally doubtful items are served oldest first.
    opinions.offer([_record("6", "wet", a=_tag("yes", 0.55))], [0], models)
    assert [q.record["id"] for q in opinions.take(2)] == ["5", "6"]


def test_the_teachers_opinion_decides_the_doubted_tag_in_a_revision() -> None:
    opinions = SecondOpinions(capacity=10)
    record = _record(
        "1", "wet sand", a=_tag("no", 0.6), b=_tag("no", 0.6, source="crowd"), c=_tag("no", 0.99)
    )
    opinions.offer([record], [0], {"a": _model(), "b": _model(), "c": _model()})
    [queued] = opinions.take()
    counted: list[tuple[str, bool]] = []
    embedded = {("fake", 0): _embed(["wet sand"])[0]}
    out = revise(queued, embedded, 0, 9.0, lambda *c: counted.append(c))
    assert out is not None
    item = ClassifiedItem.model_validate(out)  # a valid record of items.classified
    assert item.revision == SECOND_OPINION_REVISION and item.ts_out == 9.0
    # Student P(yes) 0.4 (log-odds -0.41), teacher +4: joined 0.85, over the threshold.
    joined = 1 / (1 + np.exp(-(np.log(0.4 / 0.6) + 4.0) / 2))
    assert item.labels["a"].tag == "yes" and item.labels["a"].second_opinion
    assert item.labels["a"].confidence == pytest.approx(joined, abs=1e-4)
    assert item.labels["a"].model_version == 3 and item.labels["a"].source == "model"
    assert item.labels["b"] == ClassifiedItem.model_validate(record).labels["b"]
    assert not item.labels["c"].second_opinion
    assert counted == [("a", True)]
    # The teacher agreeing with the student keeps its tag, now with the joined confidence.
    opinions.offer([_record("2", "dry", a=_tag("no", 0.6))], [0], {"a": _model()})
    [queued] = opinions.take()
    kept = revise(queued, {("fake", 0): _embed(["dry"])[0]}, 0, 9.0, lambda *c: counted.append(c))
    assert kept is not None and kept["labels"]["a"]["tag"] == "no"
    assert kept["labels"]["a"]["confidence"] > 0.6 and counted[-1] == ("a", False)


def test_a_crowd_revisions_model_tags_are_decided_again_as_its_next_revision() -> None:
    """A crowd label's revision (numbered by the label's time) carries the models'
    tags of its other classifiers: its second opinion is the revision after it, the
    crowd's tag unchanged."""
    opinions = SecondOpinions(capacity=10)
    crowd_revision = 1_764_000_000_000_000
    record = {
        **_record("1", "wet sand", a=_tag("no", 0.6), b=_tag("no", 0.6, source="crowd")),
        "revision": crowd_revision,
    }
    opinions.offer([record], [0], {"a": _model(), "b": _model()})
    [queued] = opinions.take()
    assert set(queued.doubts) == {"a"}
    out = revise(queued, {("fake", 0): _embed(["wet sand"])[0]}, 0, 9.0, lambda *c: None)
    assert out is not None
    item = ClassifiedItem.model_validate(out)
    assert item.revision == crowd_revision + 1
    assert item.labels["a"].tag == "yes" and item.labels["a"].second_opinion
    assert item.labels["b"] == ClassifiedItem.model_validate(record).labels["b"]


def test_an_embedding_of_another_size_revises_nothing() -> None:
    opinions = SecondOpinions(capacity=10)
    opinions.offer([_record("1", "wet", a=_tag("no", 0.6))], [0], {"a": _model()})
    [queued] = opinions.take()
    assert revise(queued, {("fake", 0): np.zeros(3, np.float32)}, 0, 9.0, lambda *c: None) is None


class _Helper:
    """A helper whose process is a thread; ``renew`` records why it was called."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.renewed: list[BaseException] = []

    def renew(self, broken: object, why: BaseException) -> None:
        self.renewed.append(why)


async def _run(
    opinions: SecondOpinions,
    helper: _Helper,
    published: list[dict[str, Any]],
    expired: list[Mapping[str, int]] | None = None,
) -> None:
    async def publish(records: list[dict[str, Any]]) -> None:
        published.extend(records)

    task = asyncio.create_task(
        opinions.run(
            helper,  # type: ignore[arg-type]
            publish,
            lambda: 9.0,
            lambda *c: None,
            (expired if expired is not None else []).append,
        )
    )
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not opinions.waiting:
            break
    task.cancel()


def test_the_loop_embeds_the_queue_and_writes_every_revision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedded: list[int] = []

    def counting(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        embedded.append(len(texts))
        return _embed(texts)

    def load(name: str) -> Any:
        assert name == "fake"
        return counting

    monkeypatch.setattr(module, "load_embedder", load)
    opinions = SecondOpinions(capacity=1000)
    records = [_record(str(i), "wet" if i % 2 else "dry", a=_tag("no", 0.6)) for i in range(300)]
    published: list[dict[str, Any]] = []

    async def main() -> None:
        opinions.offer(records, [0] * len(records), {"a": _model()})
        await _run(opinions, _Helper(), published)

    asyncio.run(main())
    assert embedded == [module.BATCH, module.BATCH, 300 - 2 * module.BATCH]
    assert [r["id"] for r in published] == [str(i) for i in range(300)]
    assert [r["labels"]["a"]["tag"] for r in published[:4]] == ["no", "yes", "no", "yes"]
    assert opinions.waiting == 0


def test_a_dead_helper_is_renewed_and_its_batch_keeps_its_first_tags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def embed_texts(encoder: str, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        calls.append(len(texts))
        if len(calls) == 1:
            raise BrokenProcessPool("killed")
        return _embed(texts)

    monkeypatch.setattr(module, "embed_texts", embed_texts)
    opinions = SecondOpinions(capacity=1000)
    helper = _Helper()
    published: list[dict[str, Any]] = []

    async def main() -> None:
        opinions.offer([_record("1", "wet", a=_tag("no", 0.6))], [0], {"a": _model()})
        await _run(opinions, helper, published)
        opinions.offer([_record("2", "wet", a=_tag("no", 0.6))], [0], {"a": _model()})
        await _run(opinions, helper, published)

    asyncio.run(main())
    assert len(helper.renewed) == 1 and calls == [1, 1]
    assert [r["id"] for r in published] == ["2"]


def test_items_that_waited_too_long_leave_the_queue_with_their_first_tags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 9.0, with a 5 s limit, a record written at 3.0 has waited too long; one
    written at 4.0 has not (the limit itself is still in time)."""
    monkeypatch.setattr(module, "load_embedder", lambda name: _embed)
    opinions = SecondOpinions(capacity=10, max_age_s=5.0)
    models = {"a": _model(), "b": _model()}
    opinions.offer(
        [
            _record("old", "wet", ts_out=3.0, a=_tag("no", 0.52), b=_tag("no", 0.6)),
            _record("in time", "wet", ts_out=4.0, a=_tag("no", 0.6)),
            _record("new", "wet", ts_out=8.5, b=_tag("no", 0.55)),
        ],
        [0, 0, 0],
        models,
    )
    published: list[dict[str, Any]] = []
    expired: list[Mapping[str, int]] = []
    asyncio.run(_run(opinions, _Helper(), published, expired))
    assert [r["id"] for r in published] == ["new", "in time"]  # most doubtful first
    assert {"a": 1, "b": 1} in expired
    assert opinions.waiting == 0
    # Without a limit nothing expires, however old.
    unlimited = SecondOpinions(capacity=10)
    unlimited.offer([_record("old", "wet", ts_out=0.0, a=_tag("no", 0.6))], [0], models)
    assert unlimited.expire(1e9) == {} and unlimited.waiting == 1


def test_near_duplicates_are_embedded_once_and_a_remembered_one_goes_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Copies of a text waiting together are embedded once; a later near-duplicate
    (one bit off) takes the remembered embedding, ahead of a more doubtful item."""
    embedded: list[list[str]] = []

    def counting(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        embedded.append(list(texts))
        return _embed(texts)

    monkeypatch.setattr(module, "load_embedder", lambda name: counting)
    opinions = SecondOpinions(capacity=100, memory=EmbeddingMemory(100, max_bits=3))
    models = {"a": _model()}
    wet, dry = 0b1010_1010, 0b0101_0101_0000_0000
    copies = [_record(f"w{i}", "wet", a=_tag("no", 0.6)) for i in range(3)]
    copies += [_record(f"d{i}", "dry", a=_tag("no", 0.6)) for i in range(2)]
    sources: list[tuple[str, int]] = []
    published: list[dict[str, Any]] = []

    async def run() -> None:
        async def publish(records: list[dict[str, Any]]) -> None:
            published.extend(records)

        task = asyncio.create_task(
            opinions.run(
                _Helper(),  # type: ignore[arg-type]
                publish,
                lambda: 9.0,
                lambda *c: None,
                lambda expired: None,
                lambda source, count: sources.append((source, count)),
            )
        )
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not opinions.waiting:
                break
        task.cancel()

    opinions.offer(copies, [wet, wet, wet, dry, dry], models)
    asyncio.run(run())
    assert sorted(map(sorted, embedded)) == [["dry", "wet"]]  # one of each signature
    assert sorted(sources) == [("encoder", 2), ("near_duplicate", 3)]
    by_id = {r["id"]: r["labels"]["a"]["tag"] for r in published}
    assert by_id == {"w0": "yes", "w1": "yes", "w2": "yes", "d0": "no", "d1": "no"}

    later = [
        _record("doubtful", "dry sand", a=_tag("no", 0.51)),  # new: needs the encoder
        # wet's near-duplicate, in words the stand-in encoder would embed as dry
        _record("retweet", "RT it is", a=_tag("no", 0.65)),
    ]
    opinions.offer(later, [0b1111_0000_1111_0000_0000, wet ^ 0b100], models)
    assert [q.record["id"] for q in opinions.queue] == ["retweet", "doubtful"]
    embedded.clear()
    published.clear()
    asyncio.run(run())
    assert embedded == [["dry sand"]]
    assert {r["id"]: r["labels"]["a"]["tag"] for r in published} == {
        "retweet": "yes",  # by wet's embedding
        "doubtful": "no",
    }


def _counted(run: PeHarness, outcome: str) -> dict[str, float]:
    """``crowdstream_second_opinions_total`` of ``outcome``, by classifier."""
    [family] = run.context.metrics.second_opinions.collect()
    return {
        sample.labels["classifier"]: sample.value
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["outcome"] == outcome
    }


async def test_the_classifier_counts_the_tags_its_second_pass_sheds_and_lets_expire() -> None:
    """Through the classifier PE: a queue of one keeps the most doubtful item and sheds
    the rest, and under an age limit every record exceeds, that item expires. Each
    doubted tag is counted once, by its classifier, and no record is written again."""
    data = load_topology("crisis").model_dump(mode="json")
    # The fast teacher; a band that holds nearly every item.
    data["params"]["learner"] = {"teacher": "use", "second_opinion_share": 0.99}
    data["params"]["classifier"] = {"second_opinion_queue": 1, "second_opinion_max_age_s": 1e-6}
    topology = Topology.model_validate(data)
    published = sample_models(topology, taught=200)
    models = {
        update.classifier: compile_model(update.model)
        for update in (ModelUpdate.model_validate_json(record) for record in published)
    }
    assert all(model.second_opinion is not None for model in models.values())
    items = [{"id": str(row["id"]), "text": row["text"]} for row in load_sample(50)]
    async with PeHarness(
        topology, ["features", "classifier"], logs={"control.models": published}
    ) as run:
        await run.feed("items.raw", items)
        classified = run.outputs("items.classified")
        for _ in range(100):  # the second pass's loop wakes and finds the item too old
            await asyncio.sleep(0.01)
            if _counted(run, "expired"):
                break
        shed, expired = _counted(run, "shed"), _counted(run, "expired")
        assert len(run.outputs("items.classified")) == len(classified)  # none decided again
    doubted = {
        name: sum(doubt(model, item["labels"][name]) is not None for item in classified)
        for name, model in models.items()
    }
    assert [item["revision"] for item in classified] == [0] * len(items)
    assert all(doubted.values())
    for name, count in doubted.items():
        assert shed.get(name, 0) + expired.get(name, 0) == count
    # The queue's one item expired, with each of its doubted tags.
    assert 1 <= sum(expired.values()) <= len(models)
    assert _counted(run, "kept") == _counted(run, "changed") == {}


async def test_the_classifier_embeds_a_message_once_for_its_retweets() -> None:
    """Through the classifier PE: a message and its retweet are near-duplicates (the
    same signature); the second pass embeds the message and gives the retweet the
    same embedding, so both get the same second opinion, and the metric says which
    embeddings the encoder computed and which a near-duplicate's served."""
    data = load_topology("crisis").model_dump(mode="json")
    data["params"]["learner"] = {"teacher": "use", "second_opinion_share": 0.99}
    topology = Topology.model_validate(data)
    published = sample_models(topology, taught=200)
    models = {
        update.classifier: compile_model(update.model)
        for update in (ModelUpdate.model_validate_json(record) for record in published)
    }
    sample = load_sample(20)
    items = [{"id": f"m{i}", "text": row["text"]} for i, row in enumerate(sample)]
    items += [
        {"id": f"rt{i}", "text": f"RT @someone: {row['text']}"} for i, row in enumerate(sample)
    ]
    async with PeHarness(
        topology, ["features", "classifier"], logs={"control.models": published}
    ) as run:
        await run.feed("items.raw", items)
        first = {item["id"]: item for item in run.outputs("items.classified")}
        doubted = {
            item_id
            for item_id, item in first.items()
            if any(doubt(model, item["labels"][name]) for name, model in models.items())
        }
        for _ in range(600):  # the helper loads its encoder first
            await asyncio.sleep(0.1)
            if len(run.outputs("items.classified")) - len(first) == len(doubted):
                break
        [family] = run.context.metrics.second_opinion_embeddings.collect()
        sources = {
            sample.labels["source"]: sample.value
            for sample in family.samples
            if sample.name.endswith("_total")
        }
    revised = {item["id"]: item for item in run.outputs("items.classified")[len(first) :]}
    assert doubted and set(revised) == doubted
    originals = {item_id for item_id in doubted if item_id.startswith("m")}
    assert {f"rt{item_id[1:]}" for item_id in originals} == doubted - originals
    assert sources == {"encoder": len(originals), "near_duplicate": len(originals)}
    for item_id in originals:
        assert revised[f"rt{item_id[1:]}"]["labels"] == revised[item_id]["labels"]
