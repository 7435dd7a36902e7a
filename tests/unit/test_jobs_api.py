"""The jobs HTTP API's access rules, served in-process: who may call it, and what a
submission must look like."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from channels.jobs import JobCommand
from config import load_settings
from pe.common.api import api_routes
from pe.common.http import OperatorAccess
from pe.jobs.api import JobsApi
from pe.jobs.manager import JobManager
from pe.params import ClassifierSpec

OPERATOR = "operator-token-0123456789"
CLASSIFIERS = {
    "aid_related": ClassifierSpec(name="aid_related", question="Aid?", tags=["yes", "no"])
}
JOB = orjson.dumps(
    {
        "kind": "labeling",
        "classifier": "aid_related",
        "budget": 1,
        "items": [{"id": "i1", "text": "we need water"}],
    }
)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[OperatorAccess], Any]]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        operator: OperatorAccess,
    ) -> tuple[TestClient[web.Request, web.Application], list[JobCommand]]:
        submitted: list[JobCommand] = []

        async def submit(command: JobCommand) -> None:
            submitted.append(command)

        api = JobsApi(
            JobManager(CLASSIFIERS), submit, operator=operator, max_body_bytes=1024 * 1024
        )
        app = web.Application()
        app.add_routes(api_routes(api.endpoints()))
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, submitted

    yield start
    for client in clients:
        await client.close()


JSON = {"Content-Type": "application/json"}


async def test_without_a_token_a_server_listening_beyond_loopback_refuses_every_call(
    serve: Any,
) -> None:
    client, submitted = await serve(OperatorAccess(None, loopback_only=False))
    for method, path, body in [
        ("POST", "/api/v1/jobs", JOB),
        ("GET", "/api/v1/jobs", None),
        ("GET", "/api/v1/jobs/j1/results", None),
        ("POST", "/api/v1/jobs/j1/cancel", None),
    ]:
        response = await client.request(method, path, data=body, headers=JSON)
        assert response.status == 403, path
        assert "operator_token" in (await response.json())["error"]
    assert submitted == []


async def test_without_a_token_a_loopback_server_takes_jobs(serve: Any) -> None:
    client, submitted = await serve(OperatorAccess(None, loopback_only=True))
    response = await client.post("/api/v1/jobs", data=JOB, headers=JSON)
    assert response.status == 202
    assert [c.action for c in submitted] == ["submit"]


async def test_with_a_token_every_call_needs_it(serve: Any) -> None:
    client, submitted = await serve(OperatorAccess(OPERATOR, loopback_only=True))
    for headers in [JSON, {**JSON, "Authorization": "Bearer wrong-token-0123456789"}]:
        response = await client.post("/api/v1/jobs", data=JOB, headers=headers)
        assert response.status == 401 and (await response.json())["error"]
        assert (await client.get("/api/v1/jobs", headers=headers)).status == 401
    assert submitted == []
    mine = {**JSON, "Authorization": f"Bearer {OPERATOR}"}
    assert (await client.post("/api/v1/jobs", data=JOB, headers=mine)).status == 202
    assert (await client.get("/api/v1/jobs", headers=mine)).status == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_job_must_be_sent_as_json(serve: Any, content_type: str | None) -> None:
    """What a page of another site can send without the browser asking first."""
    client, submitted = await serve(OperatorAccess(None, loopback_only=True))
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/api/v1/jobs", data=JOB, headers=headers)
    assert response.status == 415
    assert "application/json" in (await response.json())["error"]
    assert submitted == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),  # noqa: S104
        ("10.1.2.3", False),
        ("crowd.example", False),
    ],
)
def test_the_rule_follows_the_address_the_server_listens_on(host: str, loopback: bool) -> None:
    access = OperatorAccess.from_settings(load_settings(http_host=host))
    assert access.loopback_only is loopback and access.token is None
    assert access.enabled is loopback
