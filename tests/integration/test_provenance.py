"""Where a tag came from, end to end on the embedded broker: the simulated crowd labels
an item, the item's classification is revised with the crowd's tag, and a
near-duplicate pushed afterwards takes that tag, marked as propagated."""

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
#: A crowd that labels within seconds.
FAST: dict[str, dict[str, Any]] = {
    "annotator": {"speed": 400.0, "pool_size": 12},
    "taskgen": {"max_tasks_per_minute": 6000, "round_interval_s": 0.1, "label_budget": 60},
    "learner": {"retrain_every": 20, "min_train": 10},
}


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    topology = write_topology(tmp_path_factory.mktemp("topology"), PIPELINE, **FAST)
    running = start_worker(broker, topology, tmp_path_factory.mktemp("worker"))
    yield running
    running.stop()


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
    revision = max(round(label["ts"] * 1_000_000), 1)

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
    [propagated] = [item for item in values(classified) if item["id"] == copy_id]
    assert propagated["revision"] == 0
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
    assert (item_id, revision) in {(i["id"], i["revision"]) for i in listed("crowd")}
    assert all(i["labels"][name]["source"] == "model" for i in listed("model"))
    status, body = worker.get("/api/v1/classified?source=crowd")
    assert status == 400 and b"need a classifier" in body
    assert worker.metric("crowdstream_crowd_tags_total", classifier=name, source="propagated") >= 1
    assert worker.metric("crowdstream_revisions_total", classifier=name) >= 1
