"""The one way every endpoint of the worker checks, refuses and documents a call
(pe.common.api), on a small API served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from pe.common.api import OPEN, Body, Call, Endpoint, Limited, api_routes
from pe.common.http import HttpError, TokenAccess
from pe.common.ratelimit import RateLimiter

Client = TestClient[web.Request, web.Application]


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=10)


class Page(BaseModel):
    limit: int = Field(10, ge=1, le=100)
    tag: str | None = None


class Echo(BaseModel):
    caller: str
    text: str = ""
    limit: int = 0


async def _note(call: Call) -> Echo:
    if call.body.text == "taken":
        raise HttpError(409, "that note exists", details=[{"text": "taken"}])
    return Echo(caller=call.caller, text=call.body.text)


async def _page(call: Call) -> Echo:
    return Echo(caller=call.caller, limit=call.query.limit)


async def _nothing(call: Call) -> None:
    return None


def endpoints() -> list[Endpoint]:
    secret = TokenAccess("s3cret", "notes token", "notesToken")
    return [
        Endpoint(
            "POST",
            "/notes",
            "add_note",
            "Add a note.",
            _note,
            access=secret,
            body=Body(Note, 64),
            response=Echo,
            status=201,
            errors=(409,),
        ),
        Endpoint(
            "GET", "/notes", "list_notes", "Notes.", _page, query=Page, response=Echo, tag="notes"
        ),
        Endpoint(
            "DELETE",
            "/notes/{note_id}",
            "drop_note",
            "Drop a note.",
            _nothing,
            access=Limited(OPEN, RateLimiter(0.001, 2)),
            status=204,
        ),
    ]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application()
    app.add_routes(api_routes(endpoints()))
    test_client: Client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


AUTH = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}


async def _call(client: Client, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    response = await client.request(method, path, **kw)
    body = await response.json() if response.content_type == "application/json" else None
    return response.status, body


async def test_a_valid_call_runs_with_its_caller_body_and_query(client: Client) -> None:
    assert await _call(client, "POST", "/notes", data=b'{"text": "hi"}', headers=AUTH) == (
        201,
        {"caller": "", "text": "hi", "limit": 0},
    )
    status, body = await _call(client, "GET", "/notes", params={"limit": "7"})
    assert status == 200 and body["limit"] == 7
    status, body = await _call(client, "GET", "/notes")
    assert body["limit"] == 10  # the query model's default


@pytest.mark.parametrize(
    ("kw", "status", "message"),
    [
        (
            {"data": b'{"text": "hi"}', "headers": {"Content-Type": "application/json"}},
            401,
            "bearer",
        ),
        (
            {"data": b'{"text": "hi"}', "headers": {**AUTH, "Authorization": "Bearer x"}},
            401,
            "wrong notes token",
        ),
        ({"data": b'{"text": "hi"}', "headers": {"Authorization": "Bearer s3cret"}}, 415, "JSON"),
        ({"data": b'{"text": ', "headers": AUTH}, 400, "invalid JSON: EOF"),
        ({"data": b'{"text": ""}', "headers": AUTH}, 422, "text:"),
        ({"data": b'{"text": "hi", "more": "x" }' + b" " * 64, "headers": AUTH}, 413, "64 bytes"),
        ({"data": b'{"text": "taken"}', "headers": AUTH}, 409, "that note exists"),
    ],
)
async def test_a_refused_body_gets_a_4xx_with_a_message(
    client: Client, kw: dict[str, Any], status: int, message: str
) -> None:
    got, body = await _call(client, "POST", "/notes", **kw)
    assert got == status and message in body["error"], body


async def test_validation_and_refusals_list_their_details(client: Client) -> None:
    _, body = await _call(client, "POST", "/notes", data=b'{"text": ""}', headers=AUTH)
    assert body["details"][0]["loc"] == ["text"]
    _, body = await _call(client, "POST", "/notes", data=b'{"text": "taken"}', headers=AUTH)
    assert body["details"] == [{"text": "taken"}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit:"),
        ({"limit": "many"}, "limit:"),
        ({"colour": "red"}, "unknown parameter(s): colour; known: limit, tag"),
    ],
)
async def test_a_bad_query_gets_a_400_that_names_the_parameter(
    client: Client, params: dict[str, str], message: str
) -> None:
    status, body = await _call(client, "GET", "/notes", params=params)
    assert status == 400 and message in body["error"], body


async def test_a_rate_limited_endpoint_answers_429_with_retry_after(client: Client) -> None:
    statuses = []
    for _ in range(3):
        response = await client.delete("/notes/n1")
        statuses.append(response.status)
    assert statuses == [204, 204, 429]
    assert int(response.headers["Retry-After"]) >= 1


async def test_the_document_describes_what_the_server_checks(client: Client) -> None:
    _, document = await _call(client, "GET", "/api/v1/openapi.json")
    add = document["paths"]["/notes"]["post"]
    assert add["security"] == [{"notesToken": []}]
    assert set(add["responses"]) == {"201", "400", "401", "408", "409", "413", "415", "422"}
    assert add["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Note")
    listing = document["paths"]["/notes"]["get"]
    assert "security" not in listing and listing["tags"] == ["notes"]
    limit, tag = listing["parameters"]
    assert limit == {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "default": 10,
            "maximum": 100,
            "minimum": 1,
            "title": "Limit",
            "type": "integer",
        },
    }
    assert tag["schema"] == {"title": "Tag", "type": "string"}  # optional, never null
    drop = document["paths"]["/notes/{note_id}"]["delete"]
    assert drop["parameters"][0] == {
        "name": "note_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert set(drop["responses"]) == {"204", "429"}
    assert document["components"]["securitySchemes"] == {
        "notesToken": {"type": "http", "scheme": "bearer"}
    }
    assert {"Echo", "ErrorBody", "Note"} <= set(document["components"]["schemas"])
