"""The classifier's crowd labels: which labels it keeps, and which tag an item gets
(its own crowd label, else a labeled near-duplicate's, else the model's)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from channels.records import ClassifiedItem, Item, Label, LinearModel, SparseRow, Task
from pe.annotator.agent import _item_of
from pe.classifier.agent import classify, revision_of
from pe.classifier.crowdlabels import CrowdLabels
from pe.common.featurebatch import FeatureBatch
from pe.common.hashing import FeatureHasher, sparse_rows
from pe.common.linear import compile_model
from pe.common.simhash import simhash_rows
from pe.common.space import FeatureSpace
from pe.common.text import grams, tokens
from pe.params import FeaturesParams
from pe.registry import params_of
from pipelines.testing import PeHarness, sample_models
from pipelines.topology import load_topology

N_FEATURES = 2**12
TAGS = {"aid": ["yes", "no"], "request": ["yes", "no"]}
BITS = 6
#: A signature, one 7 bits from it and one 6 bits from it.
SIG = 0xF0F0_F0F0_F0F0_F0F0
FAR = SIG ^ 0b111_1111
NEAR = SIG ^ 0b11_1111


def label(item_id: str, tag: str | None = "yes", **fields: Any) -> Label:
    values: dict[str, Any] = {
        "item_id": item_id,
        "classifier": "aid",
        "tag": tag,
        "agreement": 0.75,
        "answers": [],
        "idx": [],
        "val": [],
        "ts": 100.0,
        "sig": SIG,
        "text": f"the text of {item_id}",
    }
    return Label(**(values | fields))


def batch(*items: tuple[str, int]) -> FeatureBatch:
    """Items ``(id, signature)``, all with the text "ok"."""
    matrix = FeatureHasher(N_FEATURES).matrix([grams(tokens("ok")) for _ in items])
    return FeatureBatch(
        [Item(id=item_id, text="ok", ts=1.0, ts_in=1.0) for item_id, _ in items],
        sparse_rows(matrix),
        [sig for _, sig in items],
        matrix,
    )


def model() -> LinearModel:
    """Always "no", with probability 0.88."""
    return LinearModel(
        classes=["no", "yes"],
        link="sigmoid",
        n_features=N_FEATURES,
        intercept=[-2.0],
        rows=[SparseRow(idx=[], val=[])],
    )


def predictions(
    crowd: CrowdLabels | None, items: FeatureBatch, with_model: bool = True
) -> dict[str, dict[str, dict[str, Any]]]:
    models = {"aid": (compile_model(model()), 3)} if with_model else {}
    out = classify(items, models, ["aid", "request"], 5.0, crowd)
    for record in out:  # every record is a valid ClassifiedItem
        ClassifiedItem.model_validate_json(orjson.dumps(record))
    return {record["id"]: record["labels"] for record in out}


def test_the_items_own_label_beats_a_near_duplicates_which_beats_the_model() -> None:
    crowd = CrowdLabels(TAGS, 100, BITS)
    assert crowd.take(label("a", posterior=0.97))
    assert crowd.take(label("x", tag="no", sig=SIG ^ 1 << 40))
    got = predictions(crowd, batch(("a", SIG), ("b", SIG ^ 1), ("c", 1 << 63)))
    assert got["a"]["aid"] == {
        "tag": "yes",
        "confidence": 0.97,  # the posterior
        "model_version": 3,  # the active model's, though the tag is the crowd's
        "source": "crowd",
    }
    # Of the two labeled near-duplicates, the nearer: a (1 bit away), not x (2 bits).
    assert got["b"]["aid"] == {
        "tag": "yes",
        "confidence": 0.97,
        "model_version": 3,
        "source": "propagated",
        "from_item": "a",
    }
    assert got["c"]["aid"] == {
        "tag": "no",
        "confidence": 0.8808,
        "model_version": 3,
        "source": "model",
    }
    # Labels are per classifier: request has neither a label nor a model.
    for item in "abc":
        assert got[item]["request"] == {
            "tag": None,
            "confidence": None,
            "model_version": 0,
            "source": None,
        }


def test_near_duplicates_are_within_the_task_generators_distance() -> None:
    crowd = CrowdLabels(TAGS, 100, BITS)
    crowd.take(label("a", posterior=None))
    got = predictions(crowd, batch(("near", NEAR), ("far", FAR), ("blank", 0)))
    assert got["near"]["aid"]["source"] == "propagated"
    assert got["near"]["aid"]["confidence"] == 0.75  # the agreement, without a posterior
    assert got["far"]["aid"]["source"] == "model"
    # A text without word features has signature 0: nobody's near-duplicate.
    crowd.take(label("empty", sig=0))
    crowd.take(label("few-bits", sig=0b11))
    assert predictions(crowd, batch(("blank", 0)))["blank"]["aid"]["source"] == "model"


def test_a_crowd_label_tags_an_item_before_any_model() -> None:
    crowd = CrowdLabels(TAGS, 100, BITS)
    crowd.take(label("a"))
    got = predictions(crowd, batch(("a", SIG), ("b", NEAR), ("c", FAR)), with_model=False)
    assert got["a"]["aid"]["source"] == "crowd" and got["a"]["aid"]["model_version"] == 0
    assert got["b"]["aid"]["source"] == "propagated" and got["b"]["aid"]["tag"] == "yes"
    assert got["c"]["aid"] == {"tag": None, "confidence": None, "model_version": 0, "source": None}


def test_gold_shed_disagreeing_and_foreign_labels_are_not_used() -> None:
    crowd = CrowdLabels(TAGS, 100, BITS)
    refused = [
        label("gold", kind="gold"),
        # (shed and withdrawn tasks have no tag; these check the status alone)
        label("shed", status="shed"),
        label("withdrawn", status="withdrawn"),
        label("disagreed", tag=None),
        label("counted", form="count"),
        label("other", classifier="nope"),
        label("odd", tag="maybe"),
    ]
    assert not any(crowd.take(refused_label) for refused_label in refused)
    assert len(crowd) == 0
    got = predictions(crowd, batch(*((item.item_id, SIG) for item in refused)))
    assert {labels["aid"]["source"] for labels in got.values()} == {"model"}
    assert crowd.take(label("job", kind="job", job="j1"))  # a job's label tags items too


def test_the_oldest_label_is_forgotten_past_the_capacity() -> None:
    crowd = CrowdLabels(TAGS, 2, BITS)
    crowd.take(label("a", ts=1.0))
    crowd.take(label("b", ts=2.0, sig=1 << 20 | 1))
    crowd.take(label("c", ts=3.0, classifier="request", sig=1 << 30 | 1))
    assert len(crowd) == 2 and crowd.own("aid", "a") is None
    got = predictions(crowd, batch(("a", SIG), ("near-a", NEAR), ("b", 1)))
    assert got["a"]["aid"]["source"] == "model"
    assert got["near-a"]["aid"]["source"] == "model"
    assert got["b"]["aid"]["source"] == "crowd"
    assert crowd.snapshot() == {"aid": [("b", "yes")], "request": [("c", "yes")]}


def test_a_signature_slot_the_ring_gave_again_stays_its_new_labels() -> None:
    crowd = CrowdLabels(TAGS, 2, BITS)
    crowd.take(label("a", ts=1.0, sig=SIG))
    crowd.take(label("b", ts=2.0, sig=1 << 20 | 1))
    crowd.take(label("b", ts=3.0, sig=1 << 30 | 1))  # b again: the ring gives a's slot
    got = predictions(crowd, batch(("a", 0), ("near-a", NEAR), ("near-b", 1 << 30)))
    assert got["a"]["aid"]["source"] == "crowd"  # a is held, found by id only
    assert got["near-a"]["aid"]["source"] == "model"
    assert got["near-b"]["aid"]["from_item"] == "b"
    crowd.take(label("c", ts=4.0, sig=1 << 40 | 1))  # forgets a, not b's signature
    got = predictions(crowd, batch(("near-b", 1 << 30), ("near-c", 1 << 40)))
    assert got["near-b"]["aid"]["from_item"] == "b"
    assert got["near-c"]["aid"]["from_item"] == "c"


def test_an_items_newest_label_wins_and_taking_a_label_twice_changes_nothing() -> None:
    crowd = CrowdLabels(TAGS, 10, BITS)
    assert crowd.take(label("a", ts=2.0, tag="no"))
    assert crowd.take(label("a", ts=2.0, tag="no"))  # again (a replay)
    assert not crowd.take(label("a", ts=1.0))  # older
    assert len(crowd) == 1 and crowd.snapshot()["aid"] == [("a", "no")]
    assert crowd.take(label("a", ts=3.0, sig=1 << 10))  # newer, with a new signature
    got = predictions(crowd, batch(("old-sig", NEAR), ("new-sig", 1 << 10 | 1)))
    assert got["old-sig"]["aid"]["source"] == "model"
    assert got["new-sig"]["aid"] == {
        "tag": "yes",
        "confidence": 0.75,
        "model_version": 3,
        "source": "propagated",
        "from_item": "a",
    }


async def test_the_classifier_revises_a_labeled_item_and_tags_its_near_duplicates() -> None:
    crisis = load_topology("crisis")
    space = FeatureSpace(params_of(crisis.params, FeaturesParams))
    text = "We need water and food at the school in Leogane, please help"
    matrix, words = space.matrices([text])
    [(idx, val)] = sparse_rows(matrix)
    [sig] = simhash_rows(words)
    now = time.time()

    def crowd_label(item_id: str, **fields: Any) -> Label:
        values: dict[str, Any] = {
            "ts": now,
            "idx": idx,
            "val": val,
            "sig": sig,
            "ts_in": now - 30.0,
            "text": text,
        }
        return label(item_id, classifier="aid_related", source="sms", **(values | fields))

    labels = [
        crowd_label("labeled", posterior=0.99),
        crowd_label("by-job", job="j1", sig=None),  # a job's items need not be the stream's
        crowd_label("long-ago", ts=now - 7200.0, sig=None),  # read past revise_within_s
        crowd_label("gold", kind="gold"),
        crowd_label("before-text", text=None, sig=None),  # written before labels had text
    ]
    logs = {"control.models": sample_models(crisis)}
    async with PeHarness(crisis, ["features", "classifier"], logs=logs) as run:
        await run.feed("crowd.labels", [(item.item_id, item) for item in labels])
        [revision] = run.outputs("items.classified")
        await run.feed(
            "items.raw",
            [
                {"id": "copy", "text": "RT @aid: " + text},
                {"id": "by-job", "text": "something else entirely"},
                {"id": "other", "text": "The bridge to Jacmel collapsed after the aftershock"},
            ],
        )
        later = {item["id"]: item for item in run.outputs("items.classified")[1:]}
        # A replay of the label (a crash before its offset was committed) writes the
        # same revision again: readers keep one record per (id, revision).
        await run.feed("crowd.labels", [("labeled", labels[0])])
        again = run.outputs("items.classified")[-1]
    assert revision["id"] == "labeled" and revision["revision"] == revision_of(labels[0])
    assert (revision["text"], revision["ts_in"], revision["source"]) == (text, now - 30.0, "sms")
    assert revision["labels"]["aid_related"] == {
        "tag": "yes",
        "confidence": 0.99,
        "model_version": 1,
        "source": "crowd",
    }
    assert revision["labels"]["request"]["source"] == "model"
    assert revision["labels"]["request"]["model_version"] == 1
    assert later["copy"]["revision"] == 0
    assert later["copy"]["labels"]["aid_related"]["source"] == "propagated"
    assert later["copy"]["labels"]["aid_related"]["from_item"] == "labeled"
    assert later["by-job"]["labels"]["aid_related"]["source"] == "crowd"
    assert later["other"]["labels"]["aid_related"]["source"] == "model"
    assert {name: labels["source"] for name, labels in later["copy"]["labels"].items()} == {
        "aid_related": "propagated",
        "request": "model",
    }
    assert (again["id"], again["revision"]) == ("labeled", revision["revision"])


def test_a_label_carries_its_item_from_the_task_but_a_gold_question_does_not() -> None:
    task = Task(
        task_id="t1",
        item_id="i1",
        classifier="aid",
        question="?",
        tags=["yes", "no"],
        text="water please",
        kind="passive",
        created=5.0,
        sig=SIG,
        ts_in=4.0,
        source="sms",
        idx=[],
        val=[],
    )
    assert _item_of(task) == {"text": "water please", "sig": SIG, "ts_in": 4.0, "source": "sms"}
    assert _item_of(task.model_copy(update={"sig": 0, "job": "j"}))["sig"] is None
    assert _item_of(task.model_copy(update={"kind": "gold"})) == {}
    assert _item_of(task.model_copy(update={"form": "count"})) == {}
