"""The crowd HTTP API (``/api/v1``), the worker page, and its OpenAPI document.

One table (:meth:`CrowdApi.endpoints`) declares every endpoint: its auth, body and
response models. The aiohttp routes and the OpenAPI document are both built from
it. Worker calls are rate limited per worker, every other call (joins, operator
calls, and worker calls without a valid token) per client address; worker calls
need a worker token (``Authorization: Bearer``), operator calls pass
the operator rule of every operator endpoint (pe.common.http.OperatorAccess). Bodies
are JSON (``Content-Type: application/json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from aiohttp import web
from pydantic import BaseModel

from pe.annotator.costs import Earnings
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import RetainerPool
from pe.annotator.web import schemas as s
from pe.annotator.web.crowd import Invite, Session, WebCrowd, WebCrowdError
from pe.annotator.web.tokens import TokenError, TokenSigner
from pe.common.api import OPEN, Body, Call, Endpoint, Limited, address, retry_after
from pe.common.http import SECURITY_HEADERS, HttpError, OperatorAccess, bearer, static_asset
from pe.common.ratelimit import RateLimiter
from pe.common.sse import Event, event_stream

__all__ = ["ApiConfig", "CrowdApi"]

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: Largest request body the API reads; every body it takes is a few hundred bytes.
MAX_BODY = 16 * 1024
STATIC = {
    "worker.js": "text/javascript",
    "worker.css": "text/css",
}


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


@dataclass(frozen=True)
class WorkerAccess:
    """A crowd worker with a valid token (pe.annotator.web.tokens), within the
    per-worker rate limit.

    A call with a valid token counts against its worker's limit only: people behind
    one NAT or an unlisted proxy share an address, and at a few hundred of them their
    heartbeats alone used up a per-address limit. A call without one counts against
    its address, so guessing tokens is slow.
    """

    signer: TokenSigner
    limiter: RateLimiter
    by_address: RateLimiter
    scheme = "workerToken"
    #: 410: the worker's session has ended (its calls say why).
    refusals = (401, 410, 429)

    def check(self, request: web.Request) -> str:
        try:
            worker_id = self.signer.verify(bearer(request))
        except (HttpError, TokenError) as exc:  # no token, or a bad one
            retry_after(self.by_address, address(request))
            raise HttpError(401, str(exc)) from None
        retry_after(self.limiter, worker_id)
        return worker_id


class CrowdApi:
    def __init__(self, crowd: WebCrowd, host: PoolHost, config: ApiConfig) -> None:
        self.crowd = crowd
        self.host = host
        self.config = config
        self.signer = TokenSigner(config.token_key, config.token_ttl_s)
        by_address = RateLimiter(config.ip_rate, config.ip_burst)
        by_worker = RateLimiter(config.worker_rate, config.worker_burst)
        self._anyone = Limited(OPEN, by_address)
        self._worker = WorkerAccess(self.signer, by_worker, by_address)
        self._operator = Limited(config.operator, by_address)

    @property
    def heartbeat_s(self) -> float:
        """How often pages send a heartbeat: four times per pool timeout."""
        return self.host.pool.config.heartbeat_timeout_s / 4

    # -- routes -----------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        me = f"{PREFIX}/workers/me"
        op = f"{PREFIX}/operator"

        def body(model: type[BaseModel]) -> Body:
            return Body(model, MAX_BODY)

        worker = partial(Endpoint, access=self._worker, tag="crowd")
        operator = partial(Endpoint, access=self._operator, tag="crowd operator")

        return [
            Endpoint(
                "POST",
                f"{PREFIX}/workers",
                "join",
                "Join the pool; returns a token and the qualification items.",
                self._join,
                access=self._anyone,
                body=body(s.JoinRequest),
                response=s.TokenResponse,
                status=201,
                errors=(403, 409, 503),
                tag="crowd",
            ),
            worker(
                "GET",
                me,
                "status",
                "The worker's state, earnings and open assignment.",
                run=self._status,
                response=s.WorkerStatus,
            ),
            worker(
                "POST",
                f"{me}/qualification",
                "qualify",
                "Answer the qualification items.",
                run=self._qualify,
                body=body(s.QualificationRequest),
                response=s.QualificationResponse,
                errors=(409,),
            ),
            worker(
                "POST",
                f"{me}/heartbeat",
                "heartbeat",
                "Still here; returns a renewed token.",
                run=self._heartbeat,
                response=s.TokenResponse,
            ),
            worker(
                "GET",
                f"{me}/tasks",
                "tasks",
                "Server-sent events: status, task, "
                "terminated, ended. An open stream counts as presence.",
                run=self._tasks,
                stream=True,
            ),
            worker(
                "POST",
                f"{me}/answers",
                "answer",
                "Answer an assignment (idempotent per assignment).",
                run=self._answer,
                body=body(s.AnswerRequest),
                response=s.AnswerResponse,
                errors=(403, 404, 409),
            ),
            worker(
                "POST",
                f"{me}/leave",
                "leave",
                "Leave the pool.",
                run=self._leave,
                response=s.WorkerStatus,
            ),
            worker(
                "GET",
                f"{me}/earnings",
                "earnings",
                "What the worker has earned.",
                run=self._earnings,
                response=s.Earnings,
            ),
            operator(
                "GET",
                f"{op}/pool",
                "pool_status",
                "Pool size, openings, queue, events and costs.",
                run=self._pool,
                response=s.PoolStatus,
                errors=(503,),
            ),
            operator(
                "GET",
                f"{op}/workers",
                "list_workers",
                "Workers of this session, current and ended, with their pay.",
                run=self._workers,
                response=s.WorkerList,
            ),
            operator(
                "POST",
                f"{op}/workers/{{worker_id}}/release",
                "release_worker",
                "Release a worker from the pool (their work is paid).",
                run=self._release,
                response=s.ReleaseResponse,
                errors=(404, 503),
            ),
            operator(
                "GET",
                f"{op}/invites",
                "list_invites",
                "Invite codes still valid.",
                run=self._invites,
                response=s.InviteList,
            ),
            operator(
                "POST",
                f"{op}/invites",
                "create_invites",
                "Create invite codes.",
                run=self._create_invites,
                body=body(s.InviteRequest),
                response=s.InviteList,
                status=201,
            ),
            operator(
                "DELETE",
                f"{op}/invites/{{code}}",
                "revoke_invite",
                "Revoke an invite code.",
                run=self._revoke,
                status=204,
                errors=(404,),
            ),
        ]

    def pages(self) -> list[web.RouteDef]:
        """The worker page and its assets."""
        return [
            web.get("/", self._home),
            web.get("/work", self._page),
            web.get("/static/{name}", self._static),
        ]

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
        return self._token(self.crowd.join(body.name, body.invite, address(call.request)))

    async def _status(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.caller, ended=True)
        return s.WorkerStatus(**self.crowd.status(session))

    async def _qualify(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.caller)
        admitted = self.crowd.qualify(session, call.body.answers)
        return s.QualificationResponse(admitted=admitted, state=session.state)

    async def _heartbeat(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.caller)
        self.crowd.heartbeat(session)
        return self._token(session)

    async def _answer(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.caller)
        body: s.AnswerRequest = call.body
        return s.AnswerResponse(**self.crowd.answer(session, body.assignment_id, body.tag))

    async def _leave(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.caller)
        self.crowd.leave(session)
        return s.WorkerStatus(**self.crowd.status(session))

    async def _earnings(self, call: Call) -> BaseModel:
        session = self.crowd.session(call.caller, ended=True)
        return s.Earnings(**self.crowd.earnings(session))

    async def _tasks(self, call: Call) -> web.StreamResponse:
        session = self.crowd.session(call.caller)
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
        released = self.host.guard.release_reasons if self.host.guard is not None else {}
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
                    ended=(
                        f"released:{released.get(session.worker_id, 'operator')}"
                        if session.ended == "released"
                        else session.ended
                    ),
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
        return static_asset("pe.annotator.web", name, content_type)


def _invite(invite: Invite) -> s.InviteView:
    return s.InviteView(
        code=invite.code,
        name=invite.name,
        uses_left=invite.uses_left,
        expires_at=round(invite.expires, 3),
    )
