"""The crowd HTTP API (``/api/v1``), the worker page, and its OpenAPI document.

One table (:meth:`CrowdApi.endpoints`) declares every endpoint: its auth, body and
response models. The aiohttp routes and the OpenAPI document are both built from
it. Every call is rate limited per client address, and worker calls per worker too;
worker calls need a worker token (``Authorization: Bearer``), operator calls pass
the operator rule of every operator endpoint (pe.common.http.OperatorAccess). Bodies
are JSON (``Content-Type: application/json``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Protocol

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from pe.annotator.costs import Earnings
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import RetainerPool
from pe.annotator.web import schemas as s
from pe.annotator.web.crowd import Invite, Session, WebCrowd, WebCrowdError
from pe.annotator.web.openapi import openapi_document
from pe.annotator.web.ratelimit import RateLimiter
from pe.annotator.web.tokens import TokenError, TokenSigner
from pe.common.http import (
    SECURITY_HEADERS,
    HttpError,
    OperatorAccess,
    bearer,
    read_body,
    require_json,
)
from pe.common.sse import Event, event_stream

__all__ = ["ApiConfig", "CrowdApi", "Endpoint"]

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: Largest request body the API reads; every body it takes is a few hundred bytes.
MAX_BODY = 16 * 1024
#: Security headers on everything the crowd app serves: no framing, no sniffing, and
#: scripts, styles and connections from this server only (no CDN, no inline code).
STATIC = {
    "worker.js": "text/javascript",
    "worker.css": "text/css",
}

Auth = Literal["none", "worker", "operator"]


class PoolHost(Protocol):
    """What the API reads of the annotator: its pool and, once started, its service."""

    pool: RetainerPool
    guard: LifeGuard | None


@dataclass(frozen=True)
class ApiConfig:
    token_key: bytes
    token_ttl_s: float = 12 * 3600
    operator: OperatorAccess = OperatorAccess(None, loopback_only=False)
    ip_rate: float = 20.0  #: requests a second per client address
    ip_burst: int = 60
    worker_rate: float = 5.0  #: requests a second per worker
    worker_burst: int = 20


@dataclass
class Call:
    request: web.Request
    worker_id: str = ""
    body: Any = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    operation: str
    summary: str
    auth: Auth
    run: Callable[[Call], Awaitable[BaseModel | web.StreamResponse | None]]
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    stream: bool = False  #: answers with server-sent events

    @property
    def responses(self) -> tuple[int, ...]:
        """Every status this endpoint can answer with."""
        codes = {self.status, 429, *self.errors}
        if self.body is not None:
            codes |= {400, 408, 413, 415, 422}
        if self.auth == "worker":
            codes |= {401, 410}
        if self.auth == "operator":
            codes |= {401, 403}
        return tuple(sorted(codes))


def _address(request: web.Request) -> str:
    return request.remote or "unknown"


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(x) for x in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


class CrowdApi:
    def __init__(self, crowd: WebCrowd, host: PoolHost, config: ApiConfig) -> None:
        self.crowd = crowd
        self.host = host
        self.config = config
        self.signer = TokenSigner(config.token_key, config.token_ttl_s)
        self._ip_limit = RateLimiter(config.ip_rate, config.ip_burst)
        self._worker_limit = RateLimiter(config.worker_rate, config.worker_burst)

    @property
    def heartbeat_s(self) -> float:
        """How often pages send a heartbeat: four times per pool timeout."""
        return self.host.pool.config.heartbeat_timeout_s / 4

    # -- routes -----------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        me = f"{PREFIX}/workers/me"
        op = f"{PREFIX}/operator"
        return [
            Endpoint(
                "POST",
                f"{PREFIX}/workers",
                "join",
                "Join the pool; returns a token and the qualification items.",
                "none",
                self._join,
                s.JoinRequest,
                s.TokenResponse,
                201,
                (403, 409, 503),
            ),
            Endpoint(
                "GET",
                me,
                "status",
                "The worker's state, earnings and open assignment.",
                "worker",
                self._status,
                response=s.WorkerStatus,
            ),
            Endpoint(
                "POST",
                f"{me}/qualification",
                "qualify",
                "Answer the qualification items.",
                "worker",
                self._qualify,
                s.QualificationRequest,
                s.QualificationResponse,
                errors=(409,),
            ),
            Endpoint(
                "POST",
                f"{me}/heartbeat",
                "heartbeat",
                "Still here; returns a renewed token.",
                "worker",
                self._heartbeat,
                response=s.TokenResponse,
            ),
            Endpoint(
                "GET",
                f"{me}/tasks",
                "tasks",
                "Server-sent events: status, task, "
                "terminated, ended. An open stream counts as presence.",
                "worker",
                self._tasks,
                stream=True,
            ),
            Endpoint(
                "POST",
                f"{me}/answers",
                "answer",
                "Answer an assignment (idempotent per assignment).",
                "worker",
                self._answer,
                s.AnswerRequest,
                s.AnswerResponse,
                errors=(403, 404, 409),
            ),
            Endpoint(
                "POST",
                f"{me}/leave",
                "leave",
                "Leave the pool.",
                "worker",
                self._leave,
                response=s.WorkerStatus,
            ),
            Endpoint(
                "GET",
                f"{me}/earnings",
                "earnings",
                "What the worker has earned.",
                "worker",
                self._earnings,
                response=s.Earnings,
            ),
            Endpoint(
                "GET",
                f"{op}/pool",
                "pool_status",
                "Pool size, openings, queue, events and costs.",
                "operator",
                self._pool,
                response=s.PoolStatus,
                errors=(503,),
            ),
            Endpoint(
                "GET",
                f"{op}/workers",
                "list_workers",
                "Workers of this session, current and ended, with their pay.",
                "operator",
                self._workers,
                response=s.WorkerList,
            ),
            Endpoint(
                "POST",
                f"{op}/workers/{{worker_id}}/release",
                "release_worker",
                "Release a worker from the pool (their work is paid).",
                "operator",
                self._release,
                response=s.ReleaseResponse,
                errors=(404, 503),
            ),
            Endpoint(
                "GET",
                f"{op}/invites",
                "list_invites",
                "Invite codes still valid.",
                "operator",
                self._invites,
                response=s.InviteList,
            ),
            Endpoint(
                "POST",
                f"{op}/invites",
                "create_invites",
                "Create invite codes.",
                "operator",
                self._create_invites,
                s.InviteRequest,
                s.InviteList,
                201,
            ),
            Endpoint(
                "DELETE",
                f"{op}/invites/{{code}}",
                "revoke_invite",
                "Revoke an invite code.",
                "operator",
                self._revoke,
                status=204,
                errors=(404,),
            ),
        ]

    def routes(self) -> list[web.RouteDef]:
        table = self.endpoints()
        document = openapi_document(table)
        routes = [web.route(e.method, e.path, self._wrap(e)) for e in table]

        async def openapi(request: web.Request) -> web.Response:
            return _json(200, document)

        return [
            *routes,
            web.get(f"{PREFIX}/openapi.json", openapi),
            web.get("/", self._home),
            web.get("/work", self._page),
            web.get("/static/{name}", self._static),
        ]

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                self._limit(self._ip_limit, _address(request))
                call = Call(request)
                if endpoint.auth == "worker":
                    call.worker_id = self._worker(request)
                    self._limit(self._worker_limit, call.worker_id)
                elif endpoint.auth == "operator":
                    self.config.operator.check(request)
                if endpoint.body is not None:
                    require_json(request)
                    raw = await read_body(request, MAX_BODY)
                    call.body = endpoint.body.model_validate_json(raw or b"{}")
                result = await endpoint.run(call)
            except HttpError as exc:
                return _json(exc.status, {"error": exc.message}, exc.headers)
            except WebCrowdError as exc:
                body = {"error": exc.message}
                if exc.reason is not None:
                    body["reason"] = exc.reason
                return _json(exc.status, body)
            except ValidationError as exc:
                status = 400 if any(e["type"] == "json_invalid" for e in exc.errors()) else 422
                return _json(status, {"error": _validation_message(exc)})
            if isinstance(result, web.StreamResponse):
                return result
            if result is None:
                return web.Response(status=endpoint.status, headers=SECURITY_HEADERS)
            return _json(endpoint.status, result.model_dump(mode="json"))

        return handle

    def _limit(self, limiter: RateLimiter, key: str) -> None:
        wait = limiter.check(key)
        if wait > 0:
            raise HttpError(
                429, "too many requests: slow down", {"Retry-After": str(max(int(wait + 0.999), 1))}
            )

    def _worker(self, request: web.Request) -> str:
        try:
            return self.signer.verify(bearer(request))
        except TokenError as exc:
            raise HttpError(401, str(exc)) from None

    def _guard(self) -> LifeGuard:
        if self.host.guard is None:
            raise HttpError(503, "the annotator is not running yet: try again shortly")
        return self.host.guard

    # -- worker endpoints -------------------------------------------------------------

    def _token(self, session: Session) -> s.TokenResponse:
        token, expires = self.signer.issue(session.worker_id)
        return s.TokenResponse(
            **self.crowd.status(session),
            token=token,
            expires_at=round(expires, 3),
            heartbeat_s=self.heartbeat_s,
        )

    async def _join(self, call: Call) -> BaseModel:
        body: s.JoinRequest = call.body
        return self._token(self.crowd.join(body.name, body.invite, _address(call.request)))

    async def _status(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.worker_id, ended=True)
        return s.WorkerStatus(**self.crowd.status(session))

    async def _qualify(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.worker_id)
        admitted = self.crowd.qualify(session, call.body.answers)
        return s.QualificationResponse(admitted=admitted, state=session.state)

    async def _heartbeat(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.worker_id)
        self.crowd.heartbeat(session)
        return self._token(session)

    async def _answer(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.worker_id)
        body: s.AnswerRequest = call.body
        return s.AnswerResponse(**self.crowd.answer(session, body.assignment_id, body.tag))

    async def _leave(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.worker_id)
        self.crowd.leave(session)
        return s.WorkerStatus(**self.crowd.status(session))

    async def _earnings(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.worker_id, ended=True)
        return s.Earnings(**self.crowd.earnings(session))

    async def _tasks(self, call: Call) -> web.StreamResponse:
        session = self.crowd.session(call.worker_id)
        self.crowd.heartbeat(session)
        stream = self.crowd.open_stream(session)

        async def next_event() -> Event | None:
            event = await stream.get()
            return None if event is None else Event(*event)

        try:
            # An open stream is presence: a ping (and a heartbeat) well inside the timeout.
            return await event_stream(
                call.request,
                next_event,
                ping_s=min(15.0, self.heartbeat_s),
                on_ping=lambda: self.crowd.heartbeat(session),
                ends=(WebCrowdError,),  # the pool dropped the worker: nothing to send
                headers=SECURITY_HEADERS,
            )
        finally:
            self.crowd.close_stream(session, stream)

    # -- operator endpoints -----------------------------------------------------------

    async def _pool(self, call: Call) -> BaseModel:
        guard = self._guard()
        pool = guard.pool
        return s.PoolStatus(
            target_size=pool.config.target_size,
            openings=self.crowd.openings,
            join_mode=self.crowd.join_mode,
            workers={
                "qualifying": pool.qualifying,
                "available": len(pool.available),
                "working": pool.working,
            },
            queue=pool.waiting,
            active_tasks=len(pool.tasks),
            events=dict(pool.counts),
            costs=pool.costs(guard.clock.now()),
            mean_latency_s=pool.mean_pool_latency(),
        )

    async def _workers(self, call: Call) -> BaseModel:
        pool = self.host.pool
        listed = []
        for session in self.crowd.sessions.values():
            worker = pool.workers.get(session.worker_id)
            latency = worker.latency if worker is not None else None
            # From the pay ledger, which keeps workers who left or were released.
            work = pool.ledger.workers.get(session.worker_id, Earnings())
            listed.append(
                s.WorkerInfo(
                    worker_id=session.worker_id,
                    name=session.name,
                    address=session.address,
                    state=session.state,
                    joined_at=round(session.joined, 3),
                    answers=work.answers,
                    terminated=work.terminated,
                    mean_latency_s=latency.mean_completed if latency else None,
                    marked_slow=worker is not None and worker.marked == "slow",
                    marked=worker.marked if worker is not None else None,
                    accuracy=(
                        round(pool.judge.skill(session.worker_id, None), 4)
                        if pool.judge is not None
                        else None
                    ),
                    earnings=s.Earnings(**self.crowd.earnings(session)),
                )
            )
        return s.WorkerList(workers=listed)

    async def _release(self, call: Call) -> BaseModel:
        worker_id = call.request.match_info["worker_id"]
        if not self._guard().release(worker_id):
            raise HttpError(404, f"no worker {worker_id!r} in the pool")
        return s.ReleaseResponse(worker_id=worker_id, released=True)

    async def _invites(self, call: Call) -> BaseModel:
        return s.InviteList(invites=[_invite(i) for i in self.crowd.live_invites()])

    async def _create_invites(self, call: Call) -> BaseModel:
        body: s.InviteRequest = call.body
        made = self.crowd.create_invites(
            body.count, uses=body.uses, name=body.name, expires_in_s=body.expires_in_s
        )
        return s.InviteList(invites=[_invite(i) for i in made])

    async def _revoke(self, call: Call) -> None:
        if not self.crowd.revoke_invite(call.request.match_info["code"]):
            raise HttpError(404, "no such invite code")

    # -- the page ---------------------------------------------------------------------

    async def _home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/work")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return self._asset("worker.html", "text/html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(text="no such file")
        return self._asset(name, STATIC[name])

    def _asset(self, name: str, content_type: str) -> web.Response:
        body = resources.files("pe.annotator.web").joinpath("static", name).read_bytes()
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
        )


def _invite(invite: Invite) -> s.InviteView:
    return s.InviteView(
        code=invite.code,
        name=invite.name,
        uses_left=invite.uses_left,
        expires_at=round(invite.expires, 3),
    )
