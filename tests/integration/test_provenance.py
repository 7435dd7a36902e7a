"""Where a tag came from, end to end on the embedded broker: the simulated crowd labels
an item, the item's classification is revised with the crowd's tag, and a
near-duplicate pushed afterwards takes that tag, marked as propagated; a crowd
revision's other tags get the models' second opinions."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pe.common.simhash import hamming
from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from pipelines.topology import load_topology
from tests.integration.conftest import (
    Worker,
    read_topic,
    start_worker,
    values,
    wait_until,
    write_topology,
)

pytestmark = pytest.mark.integration

PIPELINE = "provtest"
#: The task generator's near-duplicate distance (taskgen.near_dup_bits, the default).
NEAR_DUP_BITS = 6
#: A crowd that labels within seconds; a fast teacher (`use`) whose second opinion's
#: band holds nearly every item, so that a model's tags are nearly all decided again.
FAST: dict[str, dict[str, Any]] = {
    "annotator": {"speed": 400.0, "pool_size": 12},
    "taskgen": {"max_tasks_per_minute": 6000, "round_interval_s": 0.1, "label_budget": 60},
    "learner": {
        "retrain_every": 20,
        "min_train": 10,
        "teacher": "use",
        "teacher_rate": 200.0,
        "second_opinion_share": 0.99,
        "retrain_idle_s": 2.0,
    },
}


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    topology = write_topology(tmp_path_factory.mktemp("topology"), PIPELINE, **FAST)
    running = start_worker(broker, topology, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


def _revision(ts: float) -> int:
    """The revision a label of time ``ts`` makes of its item: that time in
    microseconds (docs/operations.md; pe.classifier.agent.revision_of)."""
    return max(round(ts * 1_000_000), 1)


def _usable(label: dict[str, Any]) -> bool:
    """A training label the classifier tags items with and revises its item by."""
    return bool(
        label["status"] == "labeled"
        and label["form"] == "label"
        and label["kind"] in {"active", "passive"}
        and label["job"] is None
        and label["tag"] is not None
        and label["text"]
        and label["sig"]
    )


def _alone(labels: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A usable label no other label of its classifier is a near-duplicate of (so a
    copy of its item can only take its tag)."""
    usable = [label for label in labels if _usable(label)]
    for label in usable:
        if not any(
            other["item_id"] != label["item_id"]
            and other["classifier"] == label["classifier"]
            and hamming(other["sig"] or 0, label["sig"]) <= NEAR_DUP_BITS
            for other in labels
            if other.get("sig")
        ):
            return label
    return None


async def test_a_crowd_label_revises_its_item_and_reaches_a_later_near_duplicate(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(r) for r in load_sample(300)])
    labels = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.crowd.labels",
        lambda rs: _alone(values(rs)) is not None,
        timeout_s=120,
    )
    label = _alone(values(labels))
    assert label is not None, "the simulated crowd labeled no item"
    name, item_id = label["classifier"], label["item_id"]
    confidence = label["posterior"] if label["posterior"] is not None else label["agreement"]

    # The labeled item's classification is revised: that classifier's tag is the crowd's.
    revision = _revision(label["ts"])

    def revised(records: list[Any]) -> list[dict[str, Any]]:
        return [
            item
            for item in values(records)
            if item["id"] == item_id and item["revision"] == revision
        ]

    classified = await read_topic(
        broker.bootstrap, f"{PIPELINE}.items.classified", lambda rs: bool(revised(rs))
    )
    [first, *_] = revised(classified)
    assert first["text"] == label["text"]
    assert first["labels"][name]["tag"] == label["tag"]
    assert first["labels"][name]["source"] == "crowd"
    assert first["labels"][name]["confidence"] == pytest.approx(confidence, abs=1e-4)
    assert "from_item" not in first["labels"][name]
    original = [
        item for item in values(classified) if item["id"] == item_id and item["revision"] == 0
    ]
    assert original and original[0]["ts_out"] < first["ts_out"]

    # A retweet of the labeled message, pushed afterwards, takes the crowd's tag.
    copy_id = f"copy-of-{item_id}"
    copy = {"id": copy_id, "text": "RT @someone: " + label["text"]}
    await push_lines([broker.bootstrap], PIPELINE, [orjson.dumps(copy)])
    classified = await read_topic(
        broker.bootstrap,
        f"{PIPELINE}.items.classified",
        lambda rs: copy_id in {r.key.decode() for r in rs},
    )
    # Its first classification (a second opinion on its other tags may follow).
    [propagated] = [
        item for item in values(classified) if item["id"] == copy_id and item["revision"] == 0
    ]
    assert propagated["labels"][name] == {
        "tag": label["tag"],
        "confidence": pytest.approx(confidence, abs=1e-4),
        "model_version": propagated["labels"][name]["model_version"],
        "source": "propagated",
        "from_item": item_id,
    }

    # The results API filters on the source: the copy as propagated, the labeled
    # item (its latest revision) as the crowd's.
    def listed(source: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"classifier": name, "source": source, "limit": 1000})
        status, body = worker.get(f"/api/v1/classified?{query}")
        assert status == 200
        items: list[dict[str, Any]] = orjson.loads(body)["items"]
        return items

    assert await wait_until(lambda: copy_id in {i["id"] for i in listed("propagated")})
    # Its latest revision: the crowd's, or the second opinion on its other tags after it.
    assert any(i["id"] == item_id and i["revision"] >= revision for i in listed("crowd"))
    assert all(i["labels"][name]["source"] == "model" for i in listed("model"))
    status, body = worker.get("/api/v1/classified?source=crowd")
    assert status == 400 and b"need a classifier" in body
    assert worker.metric("crowdstream_crowd_tags_total", classifier=name, source="propagated") >= 1
    assert worker.metric("crowdstream_revisions_total", classifier=name) >= 1


def _doubting(items: list[dict[str, Any]]) -> set[str]:
    """The classifiers whose models gave a second opinion on some item."""
    return {
        name for item in items for name, tag in item["labels"].items() if tag.get("second_opinion")
    }


async def test_a_crowd_revisions_other_tags_are_decided_again_by_the_models_teachers(
    broker: EmbeddedBroker, worker: Worker
) -> None:
    bootstrap = broker.bootstrap
    topic = f"{PIPELINE}.items.classified"

    # The teacher's sample embedded: the crowd may have finished before it was, and
    # then no model carries a second opinion yet.
    def embedded() -> bool:
        return worker.metric("crowdstream_learner_teacher_sample", state="embedded") > 0

    assert await wait_until(embedded, timeout_s=120), "the teacher embedded nothing"
    status, raw = worker.get("/api/v1/labels?limit=1000")
    assert status == 200
    labels: dict[str, list[dict[str, Any]]] = {}
    for label in orjson.loads(raw)["labels"]:
        if label["tag"] and label["kind"] != "gold":
            labels.setdefault(label["classifier"], []).append(label)
    assert len(labels) == 2, "the crowd did not label for both classifiers"

    def confirm(label: dict[str, Any]) -> tuple[str, int]:
        """An operator confirms a crowd label (its own tag, as a correction): the item
        is revised, and the learner retrains. The item and its revision."""
        path = f"/api/v1/labels/{label['classifier']}/{label['item_id']}/correct"
        status, body = worker.post(path, orjson.dumps({"tag": label["tag"]}))
        assert status == 202, body
        return label["item_id"], _revision(body["label"]["ts"])

    # A confirmation makes each classifier retrain, with its teacher now (a retrain
    # under way took the sample as it was, and leaves the confirmation to the next).
    # New items until some model's teacher has decided one again: that model carries a
    # second opinion.
    for name in labels:
        confirm(labels[name][0])
    fresh = load_sample(2000)[300:]
    doubting: set[str] = set()
    for start in range(0, len(fresh), 100):
        batch = [orjson.dumps(message) for message in fresh[start : start + 100]]
        await push_lines([bootstrap], PIPELINE, batch)
        classified = await read_topic(
            bootstrap, topic, lambda rs: bool(_doubting(values(rs))), timeout_s=5
        )
        doubting = _doubting(values(classified))
        if doubting:
            break
    assert doubting, "no model gave a second opinion"

    # Its teacher reads the topology's worked examples (pe.common.anchors): the model
    # message carries their embeddings, which the classifier has just applied.
    def opinions(records: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (m["classifier"], m["model"]["second_opinion"])
            for m in values(records)
            if m["classifier"] in doubting and m["model"].get("second_opinion")
        ]

    models = await read_topic(
        bootstrap, f"{PIPELINE}.control.models", lambda rs: bool(opinions(rs))
    )
    examples = {spec.name: spec.anchors() for spec in load_topology("crisis").classifiers}
    for classifier, opinion in opinions(models):
        carried = [(a["tag"], len(a["vectors"])) for a in opinion["anchors"]]
        assert carried == [(tag, len(texts)) for tag, texts in examples[classifier]]
        assert carried  # the crisis topology gives each classifier examples

    # Confirmations of the other classifier's labels revise their items: that
    # classifier's tag the crowd's, the doubting one's the model's, then its teacher's.
    other = sorted(doubting)[0]
    [name] = set(labels) - {other}
    revisions = [confirm(label) for label in labels[name][1:6]]

    def decided_again(records: list[Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(crowd revision, the next revision) of the confirmed items."""
        latest = {(item["id"], item["revision"]): item for item in values(records)}
        return [
            (latest[(item_id, number)], latest[(item_id, number + 1)])
            for item_id, number in revisions
            if (item_id, number) in latest and (item_id, number + 1) in latest
        ]

    classified = await read_topic(
        bootstrap, topic, lambda rs: bool(decided_again(rs)), timeout_s=60
    )
    assert decided_again(classified), "no crowd revision was decided again"
    for revised, again in decided_again(classified):
        assert revised["labels"][name]["source"] == "crowd"
        assert again["labels"][name] == revised["labels"][name]  # the crowd's tag stays
        assert revised["labels"][other]["source"] == "model"
        assert "second_opinion" not in revised["labels"][other]
        assert again["labels"][other]["second_opinion"] is True
        assert again["labels"][other]["model_version"] == revised["labels"][other]["model_version"]
