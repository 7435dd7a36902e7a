"""Label review: the newest labels with their answers, and an operator's correction
through the labels API (served in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.records import Answer, Label
from pe.common.api import api_routes
from pe.common.http import OperatorAccess
from pe.learner.review import LabelReview, LabelsApi
from pe.params import ClassifierSpec

OPERATOR = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"}
SPECS = {"aid_related": ClassifierSpec(name="aid_related", question="Aid?", tags=["yes", "no"])}
Client = TestClient[web.Request, web.Application]


def _label(item_id: str, ts: float, **fields: Any) -> Label:
    values: dict[str, Any] = {
        "item_id": item_id,
        "classifier": "aid_related",
        "tag": "yes",
        "agreement": 2 / 3,
        "answers": [
            Answer(task_id=f"t-{item_id}", worker_id="w1", tag="yes", latency_s=2.0),
            Answer(task_id=f"t-{item_id}", worker_id="w2", tag="yes", latency_s=2.0),
            Answer(task_id=f"t-{item_id}", worker_id="w3", tag="no", latency_s=2.0),
        ],
        "idx": [3],
        "val": [1.0],
        "ts": ts,
        "task_id": f"t-{item_id}",
        "posterior": 0.9,
        "cost": 0.3,
    }
    return Label(**(values | fields))


def test_the_review_keeps_the_newest_training_labels_up_to_its_capacity() -> None:
    review = LabelReview(3)
    review.take(_label("a", 1.0))
    review.take(_label("gold", 2.0, kind="gold"))  # measures workers: not reviewed here
    review.take(_label("job", 2.0, job="j1"))  # a job's: its results API shows it
    review.take(_label("shed", 2.0, status="shed", answers=[], tag=None))
    for item_id, ts in (("b", 3.0), ("c", 4.0)):
        review.take(_label(item_id, ts))
    review.take(_label("a", 0.5, tag="no"))  # an older label of a: ignored
    assert [label.item_id for label in review.newest(None, 10, None)] == ["c", "b", "a"]
    review.take(_label("d", 5.0))
    assert review.get("aid_related", "a") is None  # the oldest, forgotten
    review.take(_label("b", 6.0, tag="no", corrected_by="operator"))
    assert [label.item_id for label in review.newest("aid_related", 10, True)] == ["b"]
    assert [label.item_id for label in review.newest(None, 1, False)] == ["d"]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[], Any]]:
    clients: list[Client] = []

    async def start() -> tuple[Client, LabelReview, list[Label]]:
        review, written = LabelReview(100), []
        review.take(_label("i1", 10.0))

        async def append(label: Label) -> None:
            written.append(label)

        ready = asyncio.Event()
        ready.set()  # crowd.labels read to its end
        operator = OperatorAccess(OPERATOR, loopback_only=False)
        api = LabelsApi(review, lambda: SPECS, append, operator=operator, ready=ready)
        app = web.Application()
        app.add_routes(api_routes(api.endpoints()))
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, review, written

    yield start
    for client in clients:
        await client.close()


async def test_an_operator_corrects_a_label_and_the_log_keeps_who_did(serve: Any) -> None:
    client, review, written = await serve()
    listed = await (await client.get("/api/v1/labels?classifier=aid_related", headers=AUTH)).json()
    [shown] = listed["labels"]
    assert [a["tag"] for a in shown["answers"]] == ["yes", "yes", "no"]
    assert shown["posterior"] == 0.9

    body = orjson.dumps({"tag": "no"})
    answer = await client.post("/api/v1/labels/aid_related/i1/correct", data=body, headers=AUTH)
    assert answer.status == 202, await answer.text()
    [correction] = written
    assert correction.tag == "no" and correction.corrected_by == "operator"
    assert correction.answers == _label("i1", 10.0).answers  # the crowd's, kept
    assert correction.task_id == "t-i1" and correction.ts > 10.0
    assert correction.cost == 0.0 and correction.posterior == 1.0
    now = await (await client.get("/api/v1/labels/aid_related/i1", headers=AUTH)).json()
    assert now["tag"] == "no" and now["corrected_by"] == "operator"
    assert review.newest(None, 10, True) == [correction]


async def test_a_bad_correction_gets_a_4xx_and_writes_nothing(serve: Any) -> None:
    client, _, written = await serve()
    cases = [
        ("/api/v1/labels/aid_related/i1/correct", {"tag": "maybe"}, 422),
        ("/api/v1/labels/aid_related/nope/correct", {"tag": "no"}, 404),
        ("/api/v1/labels/aid_related/i1/correct", {"label": "no"}, 422),
    ]
    for path, body, status in cases:
        answer = await client.post(path, data=orjson.dumps(body), headers=AUTH)
        assert answer.status == status, (path, body)
        assert (await answer.json())["error"]
    anonymous = await client.post("/api/v1/labels/aid_related/i1/correct", data=b'{"tag": "no"}')
    assert anonymous.status == 401
    assert written == []
