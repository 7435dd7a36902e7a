"""The crowd HTTP API against the real pool service, served by aiohttp in-process."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from channels.records import Task, TaskExample
from pe.annotator.clock import LoopClock
from pe.annotator.crowd import GoldItem
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import Finished, PoolConfig, RetainerPool
from pe.annotator.web.api import ApiConfig, CrowdApi
from pe.annotator.web.crowd import WebCrowd
from pe.annotator.web.tokens import TokenSigner
from pe.common.api import api_routes
from pe.common.http import OperatorAccess

KEY = b"k" * 32
OPERATOR = "operator-token-0123456789"
GOLD = [
    GoldItem(f"g{i}", f"gold message {i}", "Is it about aid?", ["yes", "no"], "yes")
    for i in range(4)
]


@dataclass
class Env:
    client: TestClient[web.Request, web.Application]
    api: CrowdApi
    crowd: WebCrowd
    pool: RetainerPool
    guard: LifeGuard
    finished: list[Finished] = field(default_factory=list)

    async def close(self) -> None:
        self.crowd.close_streams()  # as the server does when it stops
        await self.client.close()

    async def join(self, name: str = "ana", **extra: Any) -> dict[str, Any]:
        response = await self.client.post("/api/v1/workers", json={"name": name, **extra})
        assert response.status == 201, await response.text()
        return dict(await response.json())

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, data

    async def answer(self, token: str, assignment_id: str, tag: str) -> tuple[int, Any]:
        body = {"assignment_id": assignment_id, "tag": tag}
        return await self.call("POST", "/api/v1/workers/me/answers", token, body)

    def submit(
        self,
        n: int = 1,
        classifier: str = "aid_related",
        na_allowed: bool = True,
        examples: list[TaskExample] | None = None,
    ) -> list[str]:
        ids = []
        for _ in range(n):
            task_id = f"t{len(self.pool.tasks) + len(self.finished)}-{random.random():.6f}"
            task = Task(
                task_id=task_id,
                item_id=task_id,
                classifier=classifier,
                question="Is this message about aid?",
                tags=["yes", "no"],
                na_allowed=na_allowed,
                examples=examples or [],
                text=f"message for {task_id}",
                kind="active",
                created=0.0,
                idx=[],
                val=[],
            )
            self.guard.submit(task_id, task, job=classifier)
            ids.append(task_id)
        return ids


@dataclass
class Holder:
    pool: RetainerPool
    guard: LifeGuard | None = None


async def make_env(
    *,
    size: int = 2,
    votes: int = 1,
    qualification: int = 0,
    timeout_s: float = 60.0,
    operator: str | None = OPERATOR,
    loopback_only: bool = False,
    join_mode: str = "open",
    rates: tuple[float, float] = (1000.0, 1000.0),
    mitigation: bool = True,
) -> Env:
    pool = RetainerPool(
        PoolConfig(
            target_size=size,
            votes=votes,
            mitigation=mitigation,
            heartbeat_timeout_s=timeout_s,
            qualification=qualification,
        ),
        random.Random(1),
    )
    host = Holder(pool)
    crowd = WebCrowd(join_mode="invite" if join_mode == "invite" else "open")
    api = CrowdApi(
        crowd,
        host,
        ApiConfig(
            token_key=KEY,
            operator=OperatorAccess(operator, loopback_only),
            ip_rate=rates[0],
            ip_burst=int(rates[0]),
            worker_rate=rates[1],
            worker_burst=int(rates[1]),
        ),
    )
    finished: list[Finished] = []
    guard = LifeGuard(pool, LoopClock(), on_finished=finished.append, gold=GOLD)
    host.guard = guard
    guard.start(crowd)
    app = web.Application()
    app.add_routes([*api_routes(api.endpoints()), *api.pages()])
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return Env(client, api, crowd, pool, guard, finished)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    made = await make_env()
    yield made
    await made.close()


class Events:
    """Reads a task stream's server-sent events."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def next(self, wait_s: float = 5.0) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(wait_s):
            return await self._next()

    async def _next(self) -> tuple[str, dict[str, Any]]:
        name, data = "", b""
        while True:
            line = await self.response.content.readline()
            if not line:
                raise EOFError("stream closed")
            line = line.rstrip(b"\n")
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data += line[6:]
            elif not line and data:
                return name, orjson.loads(data)

    async def until(self, name: str, wait_s: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(wait_s):
            while True:
                got, data = await self._next()
                if got == name:
                    return data


async def stream(env: Env, token: str) -> Events:
    response = await env.client.get(
        "/api/v1/workers/me/tasks", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    return Events(response)


# -- joining and qualification ---------------------------------------------------------


async def test_join_gives_a_token_and_the_state(env: Env) -> None:
    joined = await env.join("ana")
    assert joined["state"] == "waiting" and joined["name"] == "ana"
    assert TokenSigner(KEY, 60).verify(joined["token"]) == joined["worker_id"]
    assert joined["expires_at"] > time.time()
    status, me = await env.call("GET", "/api/v1/workers/me", joined["token"])
    assert status == 200 and me["worker_id"] == joined["worker_id"]
    assert joined["worker_id"] in env.pool.workers


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "invalid JSON"),
        (b'{"name": ""}', 422, "name"),
        (b'{"name": "x", "admin": true}', 422, "admin"),
        (b'{"name": "' + b"x" * 41 + b'"}', 422, "at most 40"),
        (b"{}", 422, "display name"),
        (b'{"name": "' + b"x" * 20_000 + b'"}', 413, "larger than"),
        # A CR/LF would forge a log line; NUL, zero-width or direction-override names
        # show nothing, or show something else, to the operator.
        (b'{"name": "ana\\r\\n2026 INFO forged"}', 422, "control characters"),
        (b'{"name": "\\u0000\\u0000"}', 422, "control characters"),
        (b'{"name": "\\u200b\\u200d"}', 422, "visible character"),
        (b'{"name": "ana\\u202egnp.exe"}', 422, "text-direction"),
    ],
)
async def test_bad_join_requests_get_a_4xx_with_a_message(
    env: Env, body: bytes, status: int, message: str
) -> None:
    response = await env.client.post(
        "/api/v1/workers", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == status
    assert message in (await response.json())["error"]
    assert not env.pool.workers


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_bodies_must_be_sent_as_json(env: Env, content_type: str | None) -> None:
    """What a page of another site can send without the browser asking first."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = await env.client.post("/api/v1/workers", data=b'{"name": "ana"}', headers=headers)
    assert response.status == 415
    assert "application/json" in (await response.json())["error"]
    assert not env.pool.workers
    operator = {**headers, "Authorization": f"Bearer {OPERATOR}"}
    response = await env.client.post(
        "/api/v1/operator/invites", data=b'{"count": 5}', headers=operator
    )
    assert response.status == 415 and not env.crowd.live_invites()


async def test_a_full_pool_refuses_joins(env: Env) -> None:
    await env.join("a")
    await env.join("b")
    response = await env.client.post("/api/v1/workers", json={"name": "c"})
    assert response.status == 409 and "full" in (await response.json())["error"]


async def test_qualification_admits_right_answers_and_ends_wrong_ones() -> None:
    env = await make_env(qualification=2)
    try:
        good = await env.join("good")
        assert good["state"] == "qualifying" and len(good["qualification"]) == 2
        answers = {g["gold_id"]: "yes" for g in good["qualification"]}
        status, body = await env.call(
            "POST", "/api/v1/workers/me/qualification", good["token"], {"answers": answers}
        )
        assert status == 200 and body == {"admitted": True, "state": "waiting"}

        bad = await env.join("bad")
        answers = {g["gold_id"]: "no" for g in bad["qualification"]}
        status, body = await env.call(
            "POST", "/api/v1/workers/me/qualification", bad["token"], {"answers": answers}
        )
        assert status == 200 and body["admitted"] is False
        status, body = await env.call("POST", "/api/v1/workers/me/heartbeat", bad["token"])
        assert status == 410 and body["reason"] == "failed_qualification"
        assert "did not match" in body["error"]  # the farewell, again
        # the failed worker's place opens again
        assert env.crowd.openings == 1
    finally:
        await env.close()


# -- tasks, answers, replays -------------------------------------------------------------


async def test_a_task_is_pushed_and_its_answer_counted_once(env: Env) -> None:
    joined = await env.join()
    events = await stream(env, joined["token"])
    assert (await events.next())[0] == "status"
    env.submit()
    task = await events.until("task")
    assert task["text"].startswith("message for") and task["tags"] == ["yes", "no"]
    assert "truth" not in task
    status, first = await env.answer(joined["token"], task["assignment_id"], "yes")
    assert status == 200 and first["outcome"] == "vote"
    assert first["earnings"]["records"] == 1
    # a replay, even with another tag, gets the same response and changes nothing
    status, second = await env.answer(joined["token"], task["assignment_id"], "no")
    assert status == 200 and second == first
    assert len(env.finished) == 1
    assert [v.value for v in env.finished[0].task.answers] == ["yes"]
    assert env.pool.ledger.workers[joined["worker_id"]].records == 1


async def test_answers_are_checked_against_the_workers_own_open_assignments(env: Env) -> None:
    ana, ben = await env.join("ana"), await env.join("ben")
    env.submit(2)
    ana_task = env.crowd.sessions[ana["worker_id"]].current
    assert ana_task is not None
    # another worker's assignment
    status, body = await env.answer(ben["token"], ana_task.assignment_id, "yes")
    assert status == 403 and "another worker" in body["error"]
    # an assignment that never existed
    status, body = await env.answer(ben["token"], "nope", "yes")
    assert status == 404
    # a tag the classifier does not have
    status, body = await env.answer(ana["token"], ana_task.assignment_id, "maybe")
    assert status == 422 and "not one of: yes, no, N/A" in body["error"]
    assert not env.finished and env.pool.ledger.workers[ana["worker_id"]].records == 0
    # N/A (skip) is a valid answer where the classifier allows it
    status, body = await env.answer(ana["token"], ana_task.assignment_id, "N/A")
    assert status == 200 and body["outcome"] == "vote"


async def test_a_task_without_n_a_shows_no_skip_refuses_it_and_carries_its_examples(
    env: Env,
) -> None:
    ana = await env.join("ana")
    events = await stream(env, ana["token"])
    example = TaskExample(text="we need water", tag="yes")
    env.submit(na_allowed=False, examples=[example])
    task = await events.until("task")
    assert task["na_allowed"] is False and task["tags"] == ["yes", "no"]
    assert task["examples"] == [{"text": "we need water", "tag": "yes"}]
    status, body = await env.answer(ana["token"], task["assignment_id"], "N/A")
    assert status == 422 and "not one of: yes, no" in body["error"]
    status, body = await env.answer(ana["token"], task["assignment_id"], "no")
    assert status == 200


async def test_a_terminated_assignment_is_paid_and_not_a_vote(env: Env) -> None:
    ana, ben = await env.join("ana"), await env.join("ben")
    ana_events, ben_events = await stream(env, ana["token"]), await stream(env, ben["token"])
    env.submit()  # one task, two idle workers: the second gets a duplicate
    ana_task, ben_task = await ana_events.until("task"), await ben_events.until("task")
    assert ana_task["text"] == ben_task["text"]
    assert ana_task["assignment_id"] != ben_task["assignment_id"]
    status, _ = await env.answer(ana["token"], ana_task["assignment_id"], "yes")
    assert status == 200
    terminated = await ben_events.until("terminated")
    assert terminated["assignment_id"] == ben_task["assignment_id"]
    assert terminated["earnings"]["terminated_records"] == 1
    # ben's late answer: accepted for pay, not a vote
    status, late = await env.answer(ben["token"], ben_task["assignment_id"], "no")
    assert status == 200 and late["outcome"] == "terminated"
    assert late["earnings"]["records"] == 1 and late["earnings"]["work"] > 0
    assert len(env.finished) == 1 and [v.value for v in env.finished[0].task.answers] == ["yes"]


# -- tokens ---------------------------------------------------------------------------


async def test_calls_need_a_valid_unexpired_token(env: Env) -> None:
    joined = await env.join()
    # Older than the server's token lifetime (ApiConfig.token_ttl_s, 12 hours).
    long_ago = time.time() - 13 * 3600
    expired, _ = TokenSigner(KEY, 60, clock=lambda: long_ago).issue(joined["worker_id"])
    forged, _ = TokenSigner(b"x" * 32, 60).issue(joined["worker_id"])
    head, payload, mac = joined["token"].split(".")
    tampered = f"{head}.{payload[:-2]}AA.{mac}"
    for token, message in [
        (None, "missing bearer token"),
        (expired, "expired"),
        (forged, "signature"),
        (tampered, "signature"),
        ("garbage", "malformed"),
    ]:
        for method, path in [
            ("GET", "/api/v1/workers/me"),
            ("GET", "/api/v1/workers/me/tasks"),
            ("POST", "/api/v1/workers/me/heartbeat"),
        ]:
            status, body = await env.call(method, path, token)
            assert status == 401 and message in body["error"], (token, path, body)


async def test_heartbeat_renews_the_token(env: Env) -> None:
    joined = await env.join()
    status, body = await env.call("POST", "/api/v1/workers/me/heartbeat", joined["token"])
    assert status == 200 and TokenSigner(KEY, 60).verify(body["token"]) == joined["worker_id"]
    assert body["expires_at"] >= joined["expires_at"]
    status, _ = await env.call("GET", "/api/v1/workers/me/earnings", body["token"])
    assert status == 200


# -- disconnects ---------------------------------------------------------------------


async def test_a_worker_who_returns_in_time_gets_the_assignment_back() -> None:
    env = await make_env(size=1, timeout_s=2.0)
    try:
        joined = await env.join()
        events = await stream(env, joined["token"])
        env.submit()
        task = await events.until("task")
        events.response.close()  # the connection drops
        await asyncio.sleep(0.5)
        events = await stream(env, joined["token"])
        status = await events.until("status")
        assert status["assignment"]["assignment_id"] == task["assignment_id"]
    finally:
        await env.close()


async def test_a_worker_who_does_not_return_loses_the_assignment_to_the_queue() -> None:
    # The silence timeout leaves "stays" room to join first, even on a loaded machine.
    env = await make_env(size=2, timeout_s=1.5, mitigation=False)
    try:
        gone = await env.join("gone")
        env.submit()
        task_id = env.pool.workers[gone["worker_id"]].task_id
        assert task_id is not None
        await asyncio.sleep(0.3)
        stays = await env.join("stays")
        events = await stream(env, stays["token"])  # an open stream keeps "stays" present
        assert env.pool.workers[stays["worker_id"]].task_id is None
        task_event = await events.until("task", wait_s=5.0)  # back from the queue
        assert task_event["text"] == f"message for {task_id}"
        assert gone["worker_id"] not in env.pool.workers
        task = env.pool.tasks[task_id]
        assert list(task.active) == [stays["worker_id"]] and task.open_slots == 0
        status, body = await env.call("POST", "/api/v1/workers/me/heartbeat", gone["token"])
        assert status == 410 and body["reason"] == "vanished"
        assert "Join again" in body["error"]
        status, body = await env.answer(stays["token"], task_event["assignment_id"], "no")
        assert status == 200 and body["outcome"] == "vote" and len(env.finished) == 1
    finally:
        await env.close()


# -- operator ------------------------------------------------------------------------


async def test_operator_endpoints_need_the_operator_token(env: Env) -> None:
    worker = await env.join()
    for token, expected in [(None, 401), ("wrong-token-000000000", 401), (worker["token"], 401)]:
        status, body = await env.call("GET", "/api/v1/operator/pool", token)
        assert status == expected and body["error"]
    status, pool = await env.call("GET", "/api/v1/operator/pool", OPERATOR)
    assert status == 200 and pool["target_size"] == 2 and pool["workers"]["available"] == 1


async def test_operator_endpoints_are_disabled_without_a_configured_token() -> None:
    env = await make_env(operator=None)
    try:
        for token in (None, "", "anything-at-all-123"):
            status, body = await env.call("GET", "/api/v1/operator/workers", token)
            assert status == 403 and "disabled" in body["error"]
    finally:
        await env.close()


async def test_without_a_token_a_loopback_server_serves_operator_calls() -> None:
    env = await make_env(operator=None, loopback_only=True)
    try:
        status, body = await env.call("GET", "/api/v1/operator/workers", None)
        assert status == 200 and body == {"workers": []}
    finally:
        await env.close()


async def test_operator_lists_and_releases_workers(env: Env) -> None:
    joined = await env.join("ana")
    events = await stream(env, joined["token"])
    env.submit()
    task = await events.until("task")
    assert (await env.answer(joined["token"], task["assignment_id"], "no"))[0] == 200
    status, listed = await env.call("GET", "/api/v1/operator/workers", OPERATOR)
    assert status == 200 and [w["name"] for w in listed["workers"]] == ["ana"]
    assert listed["workers"][0]["answers"] == 1
    # this pool runs without a quality loop: no accuracy estimate, nobody marked
    assert listed["workers"][0]["accuracy"] is None and listed["workers"][0]["marked"] is None
    path = f"/api/v1/operator/workers/{joined['worker_id']}/release"
    status, body = await env.call("POST", path, OPERATOR)
    assert status == 200 and body == {"worker_id": joined["worker_id"], "released": True}
    ended = await events.until("ended")
    assert ended["reason"] == "released" and "Thank you" in ended["message"]
    status, _ = await env.call("POST", path, OPERATOR)
    assert status == 404
    # the list keeps what a released worker did, as their earnings do
    status, listed = await env.call("GET", "/api/v1/operator/workers", OPERATOR)
    gone = listed["workers"][0]
    assert gone["state"] == "ended" and gone["answers"] == 1 and gone["terminated"] == 0
    assert gone["earnings"]["records"] == 1 and gone["ended"] == "released:operator"
    # Released once marked by pool maintenance: the list says why.
    ben = await env.join("ben")
    env.pool.workers[ben["worker_id"]].marked = "low_quality"
    assert env.guard.release(ben["worker_id"])
    status, listed = await env.call("GET", "/api/v1/operator/workers", OPERATOR)
    assert {w["name"]: w["ended"] for w in listed["workers"]} == {
        "ana": "released:operator",
        "ben": "released:low_quality",
    }
    # the released worker can still read their final earnings
    status, _ = await env.call("GET", "/api/v1/workers/me/earnings", joined["token"])
    assert status == 200


async def test_invite_codes_admit_people_to_an_invite_only_pool() -> None:
    env = await make_env(join_mode="invite")
    try:
        response = await env.client.post("/api/v1/workers", json={"name": "walk-in"})
        assert response.status == 403 and "invite" in (await response.json())["error"]
        status, made = await env.call(
            "POST", "/api/v1/operator/invites", OPERATOR, {"count": 2, "name": "Dana"}
        )
        assert status == 201 and len(made["invites"]) == 2
        code, other = (i["code"] for i in made["invites"])
        response = await env.client.post("/api/v1/workers", json={"invite": code})
        assert response.status == 201 and (await response.json())["name"] == "Dana"
        response = await env.client.post("/api/v1/workers", json={"invite": code})
        assert response.status == 403  # used up
        status, _ = await env.call("DELETE", f"/api/v1/operator/invites/{other}", OPERATOR)
        assert status == 204
        status, listed = await env.call("GET", "/api/v1/operator/invites", OPERATOR)
        assert listed["invites"] == []
    finally:
        await env.close()


# -- limits and the document -----------------------------------------------------------


async def test_rate_limits_per_worker_and_per_address() -> None:
    env = await make_env(rates=(1000.0, 3.0))
    try:
        joined = await env.join()
        codes = [
            (await env.call("GET", "/api/v1/workers/me", joined["token"]))[0] for _ in range(6)
        ]
        assert codes[:3] == [200, 200, 200] and 429 in codes
    finally:
        await env.close()
    env = await make_env(rates=(4.0, 1000.0))
    try:
        responses = [await env.client.get("/api/v1/workers/me") for _ in range(8)]
        limited = [r for r in responses if r.status == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
    finally:
        await env.close()


async def test_people_behind_one_address_are_limited_each_not_together() -> None:
    # Three calls a second per address (a NAT, a proxy not listed): three people
    # behind it make nine calls at once, each within their own limit ...
    env = await make_env(size=3, rates=(3.0, 1000.0))
    try:
        tokens = [(await env.join())["token"] for _ in range(3)]
        codes = [
            (await env.call("GET", "/api/v1/workers/me", token))[0]
            for token in tokens
            for _ in range(3)
        ]
        assert codes == [200] * 9
        # ... while calls without a valid token count against the address.
        guesses = [
            (await env.call("GET", "/api/v1/workers/me", "not-a-token"))[0] for _ in range(4)
        ]
        assert set(guesses) <= {401, 429} and 429 in guesses
    finally:
        await env.close()


async def test_the_openapi_document_lists_every_endpoint(env: Env) -> None:
    response = await env.client.get("/api/v1/openapi.json")
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    listed = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert listed == {(e.method, e.path) for e in env.api.endpoints()}
    answer = document["paths"]["/api/v1/workers/me/answers"]["post"]
    assert {"401", "403", "404", "410", "422", "429"} <= set(answer["responses"])


async def test_the_page_and_its_assets_are_served_locally(env: Env) -> None:
    page = await env.client.get("/work")
    html = await page.text()
    assert page.status == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http://" not in html and "https://" not in html  # no CDN
    for asset in ("worker.js", "worker.css"):
        assert (await env.client.get(f"/static/{asset}")).status == 200
    assert (await env.client.get("/static/../api.py")).status == 404
