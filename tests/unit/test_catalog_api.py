"""The classifiers HTTP API, served in-process: who may call it and what a change
must be. What it writes is applied by the catalog as every worker applies it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pe.common.api import api_routes
from pe.common.catalog import ClassifierCatalog, ClassifierRecord
from pe.common.catalog_api import ClassifiersApi
from pe.common.http import OperatorAccess
from pe.params import ClassifierSpec

OPERATOR = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"}
SEED = [ClassifierSpec(name="aid_related", question="Aid?", tags=["yes", "no"])]
NEW = {
    "name": "missing_people",
    "question": "Does it report a missing person?",
    "tags": ["yes", "no"],
    "gold": [{"id": "g1", "text": "my brother is missing since the quake", "tag": "yes"}],
}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[OperatorAccess], Any]]:
    clients: list[Client] = []

    async def start(operator: OperatorAccess) -> tuple[Client, ClassifierCatalog]:
        catalog = ClassifierCatalog(SEED)
        catalog.caught_up.set()  # as once the worker has read control.classifiers

        async def publish(record: ClassifierRecord) -> None:
            # As the topic's follower does, once the write is acknowledged.
            assert catalog.apply(record) is None

        app = web.Application()
        app.add_routes(
            api_routes(ClassifiersApi(catalog, publish, list, operator=operator).endpoints())
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, catalog

    yield start
    for client in clients:
        await client.close()


async def test_an_operator_adds_pauses_resumes_and_retires_a_classifier(serve: Any) -> None:
    client, catalog = await serve(OperatorAccess(OPERATOR, loopback_only=False))
    added = await client.post("/api/v1/classifiers", data=orjson.dumps(NEW), headers=AUTH)
    assert added.status == 202, await added.text()
    assert (await added.json())["href"] == "/api/v1/classifiers/missing_people"
    record = catalog.get("missing_people")
    assert record is not None and record.state == "active" and record.by == "operator"
    assert record.spec.gold[0].text.startswith("my brother")

    again = await client.post("/api/v1/classifiers", data=orjson.dumps(NEW), headers=AUTH)
    assert again.status == 409
    for action, state in (("pause", "paused"), ("resume", "active"), ("retire", "retired")):
        changed = await client.post(f"/api/v1/classifiers/missing_people/{action}", headers=AUTH)
        assert changed.status == 202 and (await changed.json())["state"] == state
        assert catalog.state("missing_people") == state
    refused = await client.post("/api/v1/classifiers/missing_people/resume", headers=AUTH)
    assert refused.status == 409 and "retired" in (await refused.json())["error"]

    listed = await (await client.get("/api/v1/classifiers", headers=AUTH)).json()
    assert [(c["spec"]["name"], c["state"]) for c in listed["classifiers"]] == [
        ("aid_related", "active"),
        ("missing_people", "retired"),
    ]
    shown = await client.get("/api/v1/classifiers/aid_related", headers=AUTH)
    assert (await shown.json())["by"] == "topology"


async def test_bad_changes_get_a_4xx_with_a_reason_and_change_nothing(serve: Any) -> None:
    client, catalog = await serve(OperatorAccess(OPERATOR, loopback_only=False))
    cases = [
        ({**NEW, "tags": ["yes"]}, 422),  # one tag
        ({**NEW, "name": "Not A Name"}, 422),
        ({**NEW, "gold": [{"id": "g", "text": "t", "tag": "maybe"}]}, 422),
    ]
    for body, status in cases:
        response = await client.post("/api/v1/classifiers", data=orjson.dumps(body), headers=AUTH)
        assert response.status == status, body
        assert (await response.json())["error"]
    missing = await client.post("/api/v1/classifiers/nobody/pause", headers=AUTH)
    assert missing.status == 404
    anonymous = await client.post("/api/v1/classifiers", data=orjson.dumps(NEW))
    assert anonymous.status == 401
    assert [r.name for r in catalog.records()] == ["aid_related"]


async def test_a_worker_still_reading_the_changes_answers_503_not_the_topology(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pe.common.catalog_api.READY_WAIT_S", 0.05)
    client, catalog = await serve(OperatorAccess(OPERATOR, loopback_only=False))
    catalog.caught_up.clear()
    for method, path in [
        ("GET", "/api/v1/classifiers"),
        ("GET", "/api/v1/classifiers/aid_related"),
        ("POST", "/api/v1/classifiers/aid_related/pause"),
    ]:
        answer = await client.request(method, path, headers=AUTH)
        assert answer.status == 503, path
        assert "try again" in (await answer.json())["error"]
    catalog.caught_up.set()
    assert (await client.get("/api/v1/classifiers", headers=AUTH)).status == 200


async def test_an_operator_promotes_an_item_to_gold_and_the_catalog_tells_its_listeners(
    serve: Any,
) -> None:
    client, catalog = await serve(OperatorAccess(OPERATOR, loopback_only=False))
    heard: list[list[str]] = []
    catalog.on_gold(lambda spec: heard.append([q.id for q in spec.gold]))
    question = {"id": "item-7", "text": "we need water in Leogane", "tag": "yes"}
    path = "/api/v1/classifiers/aid_related/gold"
    promoted = await client.post(path, data=orjson.dumps(question), headers=AUTH)
    assert promoted.status == 202, await promoted.text()
    record = catalog.get("aid_related")
    assert record is not None and record.change == "gold_added" and record.by == "operator"
    assert [q.id for q in record.spec.gold] == ["item-7"] and heard == [["item-7"]]
    for body, status, reason in (
        (question, 409, "already"),
        ({**question, "id": "item-8", "tag": "maybe"}, 422, "no tag 'maybe'"),
        ({"id": "item-9", "text": ""}, 422, "text"),
    ):
        answer = await client.post(path, data=orjson.dumps(body), headers=AUTH)
        assert answer.status == status and reason in await answer.text(), body
    missing = await client.post(
        "/api/v1/classifiers/nope/gold", data=orjson.dumps(question), headers=AUTH
    )
    assert missing.status == 404
    assert heard == [["item-7"]]
    # The question and tags stay what the labels answered: only gold may grow, by
    # questions of new ids.
    assert "new id" in (catalog.apply(record.with_gold(record.spec.gold[0], "x")) or "")
    changed = ClassifierRecord(
        spec=record.spec.model_copy(update={"question": "Other?"}), change="gold_added"
    )
    assert "question and tags stay" in (catalog.apply(changed) or "")
