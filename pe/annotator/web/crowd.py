"""The web crowd adapter: people working in browsers, one session each.

The pool service calls the adapter (offer, terminate, release, recruit); the HTTP
API (:mod:`pe.annotator.web.api`) calls the session methods as people act, and they
go on to the pool service's worker desk. Each session pushes its events (a task, a
termination, a release) to the worker's open task streams.

Rules the API relies on:

- Joining needs an opening: the pool asked for recruits and they have not come.
  In ``invite`` mode it also needs an unused invite code.
- A worker holds at most one open assignment. Answers are checked against the
  worker's own assignments; the first answer to an assignment decides its outcome
  and every repeat gets the same response, counted once.
- An answer to an assignment terminated by straggler mitigation is accepted (its
  work was paid at termination) and is not a vote.
- A session whose worker the pool dropped (vanished, failed qualification, was
  released, left) has ended; its token no longer works for pool calls.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from channels.records import NA_TAG
from pe.annotator.crowd import CrowdAdapter, GoldItem, WorkerDesk
from pe.annotator.pool import PoolTask
from pe.common.http import HttpError

__all__ = ["Assignment", "Event", "Invite", "Session", "WebCrowd", "WebCrowdError"]

log = logging.getLogger(__name__)

JoinMode = Literal["open", "invite"]
SessionState = Literal["qualifying", "waiting", "working", "ended"]
#: (event name, JSON-able data); ``None`` closes a stream.
Event = tuple[str, dict[str, Any]]

#: Assignments remembered per worker (for repeats and late answers).
_HISTORY = 256
#: Assignment owners remembered in all (to tell "not yours" from "unknown").
_OWNERS = 100_000
#: Ended sessions kept so a returning page can show its final earnings.
_ENDED = 1_000
#: Events a slow stream may fall behind before it is closed (the page reconnects).
_STREAM_BACKLOG = 64
_TERMINATED = "Another worker finished this task first. Your work is paid."


class WebCrowdError(HttpError):
    """A request the pool cannot honour, with the HTTP status that says why (and,
    on a 410, why the worker's session ended)."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(status, message, reason=reason)


@dataclass
class Invite:
    code: str
    name: str | None
    uses_left: int
    expires: float


@dataclass
class Assignment:
    assignment_id: str
    worker_id: str
    task: PoolTask
    offered: float
    response: dict[str, Any] | None = None  #: the first answer's response, for repeats

    @property
    def na_allowed(self) -> bool:
        return bool(getattr(self.task.payload, "na_allowed", True))

    @property
    def tags(self) -> list[str]:
        """The answers a worker may give."""
        tags = list(getattr(self.task.payload, "tags", []))
        return [*tags, NA_TAG] if self.na_allowed else tags

    def view(self) -> dict[str, Any]:
        """What the worker sees: never the ground truth a simulated payload carries."""
        payload = self.task.payload
        return {
            "assignment_id": self.assignment_id,
            "kind": "label",
            "classifier": str(getattr(payload, "classifier", self.task.job)),
            "question": str(getattr(payload, "question", "")),
            "text": str(getattr(payload, "text", "")),
            "tags": list(getattr(payload, "tags", [])),
            "na_allowed": self.na_allowed,
            "examples": [e.model_dump() for e in getattr(payload, "examples", [])],
            "offered_at": round(self.offered, 3),
        }


@dataclass
class Session:
    worker_id: str
    name: str
    address: str
    joined: float
    quiz: list[GoldItem] = field(default_factory=list)
    current: Assignment | None = None
    assignments: OrderedDict[str, Assignment] = field(default_factory=OrderedDict)
    streams: list[asyncio.Queue[Event | None]] = field(default_factory=list)
    ended: str | None = None  #: why the session ended
    farewell: str = ""  #: what the worker was told when it ended

    @property
    def state(self) -> SessionState:
        if self.ended is not None:
            return "ended"
        if self.quiz:
            return "qualifying"
        return "working" if self.current is not None else "waiting"


class WebCrowd(CrowdAdapter):
    def __init__(
        self, *, join_mode: JoinMode = "open", clock: Callable[[], float] = time.time
    ) -> None:
        self.join_mode = join_mode
        self.openings = 0  #: recruits the pool asked for that have not joined
        self.sessions: dict[str, Session] = {}
        self.invites: dict[str, Invite] = {}
        self._clock = clock
        self._desk: WorkerDesk | None = None
        self._owners: OrderedDict[str, str] = OrderedDict()  #: assignment -> worker
        self._ended: OrderedDict[str, None] = OrderedDict()

    # -- the pool service's side ----------------------------------------------------

    def start(self, desk: WorkerDesk) -> None:
        self._desk = desk

    def recruit(self, count: int) -> None:
        self.openings += count
        log.info("the pool has %d opening(s): share the worker page", self.openings)

    def offer(self, worker_id: str, task: PoolTask) -> None:
        session = self.sessions.get(worker_id)
        if session is None or session.ended is not None:
            return
        assignment = Assignment(secrets.token_urlsafe(12), worker_id, task, self._clock())
        session.current = assignment
        session.assignments[assignment.assignment_id] = assignment
        if len(session.assignments) > _HISTORY:
            session.assignments.popitem(last=False)
        self._owners[assignment.assignment_id] = worker_id
        if len(self._owners) > _OWNERS:
            self._owners.popitem(last=False)
        self._publish(session, "task", assignment.view())

    def terminate(self, worker_id: str, task_id: str) -> None:
        session = self.sessions.get(worker_id)
        if session is None or session.current is None:
            return
        if session.current.task.task_id == task_id:
            assignment, session.current = session.current, None
            self._publish(
                session,
                "terminated",
                {
                    "assignment_id": assignment.assignment_id,
                    "message": _TERMINATED,
                    "earnings": self.earnings(session),
                },
            )

    def release(self, worker_id: str) -> None:
        self._end(worker_id, "released", "Thank you! You have been released from the pool.")

    def resume(self, worker_ids: list[str]) -> None:
        # Their tokens stay valid if crowd_token_key is set: their next call finds a
        # session again. Names and addresses were not kept.
        for worker_id in worker_ids:
            self.sessions.setdefault(
                worker_id, Session(worker_id, "returning worker", "", self._clock())
            )

    def left(self, worker_id: str, reason: str) -> None:
        messages = {
            "vanished": "We lost contact with you for too long, so your task went to "
            "someone else. Join again to continue.",
            "failed_qualification": "Thank you for trying. Your qualification answers "
            "did not match ours, so we cannot offer you tasks this time.",
        }
        self._end(worker_id, reason, messages.get(reason, "Your session has ended."))

    def stop(self) -> None:
        for worker_id in list(self.sessions):
            self._end(worker_id, "stopped", "The labeling session has stopped. Thank you!")
        self._desk = None

    # -- the worker's side (called by the HTTP API) -----------------------------------

    def join(self, name: str | None, invite_code: str | None, address: str) -> Session:
        desk = self._require_desk()
        invite = self._take_invite(invite_code) if invite_code else None
        if invite is None and self.join_mode == "invite":
            raise WebCrowdError(403, "this pool is by invitation: enter your invite code")
        display = name or (invite.name if invite else None)
        if not display:
            raise WebCrowdError(422, "enter a display name")
        if self.openings <= 0:
            if invite is not None:
                invite.uses_left += 1  # not used after all
            raise WebCrowdError(409, "the pool is full: try again in a few minutes")
        self.openings -= 1
        session = Session(secrets.token_hex(8), display, address, self._clock())
        self.sessions[session.worker_id] = session
        session.quiz = desk.join(session.worker_id)
        log.info("worker %s (%s) joined from %s", session.worker_id, display, address)
        return session

    def session(self, worker_id: str, *, ended: bool = False) -> Session:
        """The worker's session: 401 if never known; 410 if it ended, unless ``ended``."""
        session = self.sessions.get(worker_id)
        if session is None:
            raise WebCrowdError(401, "unknown worker: join again")
        if session.ended is not None and not ended:
            # The farewell, not a generic error: a page may learn of the end from this
            # answer before the stream's "ended" event reaches it.
            raise WebCrowdError(410, session.farewell, session.ended)
        return session

    def qualify(self, session: Session, answers: dict[str, str]) -> bool:
        if not session.quiz:
            raise WebCrowdError(409, "no qualification is pending for you")
        session.quiz = []
        return self._require_desk().qualify(session.worker_id, answers)

    def heartbeat(self, session: Session) -> None:
        if not self._require_desk().heartbeat(session.worker_id):
            self.left(session.worker_id, "vanished")
            raise WebCrowdError(410, "the pool no longer knows you: join again")

    def answer(self, session: Session, assignment_id: str, tag: str) -> dict[str, Any]:
        assignment = session.assignments.get(assignment_id)
        if assignment is None:
            owner = self._owners.get(assignment_id)
            if owner is not None and owner != session.worker_id:
                raise WebCrowdError(403, "this assignment belongs to another worker")
            raise WebCrowdError(404, "no such assignment")
        if assignment.response is not None:
            return assignment.response  # a repeat: same response, counted once
        if tag not in assignment.tags:
            raise WebCrowdError(422, f"tag {tag!r} is not one of: {', '.join(assignment.tags)}")
        if session.current is assignment:
            # Cleared first: the pool may offer the next task before answer() returns.
            session.current = None
        outcome = self._require_desk().answer(session.worker_id, assignment.task.task_id, tag)
        if outcome == "rejected":
            raise WebCrowdError(409, "this assignment is no longer open")
        assignment.response = {
            "assignment_id": assignment_id,
            "outcome": outcome,
            "message": "Thank you!" if outcome == "vote" else _TERMINATED,
            "earnings": self.earnings(session),
        }
        return assignment.response

    def leave(self, session: Session) -> None:
        desk = self._require_desk()
        self._end(session.worker_id, "left", "You have left the pool. Thank you!")
        desk.leave(session.worker_id)

    def earnings(self, session: Session) -> dict[str, float | int]:
        desk = self._desk
        return desk.earnings(session.worker_id) if desk is not None else {}

    def status(self, session: Session) -> dict[str, Any]:
        """The worker's state, earnings, pending qualification and open assignment."""
        return {
            "worker_id": session.worker_id,
            "name": session.name,
            "state": session.state,
            "ended": session.ended,
            "earnings": self.earnings(session),
            "qualification": [
                {"gold_id": g.gold_id, "text": g.text, "question": g.question, "tags": g.tags}
                for g in session.quiz
            ],
            "assignment": session.current.view() if session.current is not None else None,
        }

    # -- task streams -----------------------------------------------------------------

    def open_stream(self, session: Session) -> asyncio.Queue[Event | None]:
        stream: asyncio.Queue[Event | None] = asyncio.Queue(_STREAM_BACKLOG)
        session.streams.append(stream)
        stream.put_nowait(("status", self.status(session)))
        return stream

    def close_stream(self, session: Session, stream: asyncio.Queue[Event | None]) -> None:
        if stream in session.streams:
            session.streams.remove(stream)

    def close_streams(self) -> None:
        """End every open stream (the server is shutting down)."""
        for session in self.sessions.values():
            for stream in list(session.streams):
                self._close(session, stream)

    # -- invites ----------------------------------------------------------------------

    def create_invites(
        self, count: int, *, uses: int, name: str | None, expires_in_s: float
    ) -> list[Invite]:
        expires = self._clock() + expires_in_s
        made = [Invite(secrets.token_urlsafe(9), name, uses, expires) for _ in range(count)]
        self.invites.update({invite.code: invite for invite in made})
        return made

    def live_invites(self) -> list[Invite]:
        now = self._clock()
        for code in [c for c, i in self.invites.items() if i.expires <= now or i.uses_left <= 0]:
            del self.invites[code]
        return list(self.invites.values())

    def revoke_invite(self, code: str) -> bool:
        return self.invites.pop(code, None) is not None

    # -- internals --------------------------------------------------------------------

    def _require_desk(self) -> WorkerDesk:
        if self._desk is None:
            raise WebCrowdError(503, "the annotator is not running yet: try again shortly")
        return self._desk

    def _take_invite(self, code: str) -> Invite:
        invite = self.invites.get(code)
        if invite is None or invite.uses_left <= 0 or invite.expires <= self._clock():
            raise WebCrowdError(403, "this invite code is not valid (unknown, used or expired)")
        invite.uses_left -= 1
        return invite

    def _end(self, worker_id: str, reason: str, message: str) -> None:
        session = self.sessions.get(worker_id)
        if session is None or session.ended is not None:
            return
        session.current = None
        session.quiz = []
        session.ended = reason
        session.farewell = message
        self._publish(
            session,
            "ended",
            {"reason": reason, "message": message, "earnings": self.earnings(session)},
        )
        for stream in list(session.streams):
            self._close(session, stream)
        self._ended[worker_id] = None
        if len(self._ended) > _ENDED:
            old, _ = self._ended.popitem(last=False)
            self.sessions.pop(old, None)

    def _publish(self, session: Session, name: str, data: dict[str, Any]) -> None:
        for stream in list(session.streams):
            if stream.qsize() >= _STREAM_BACKLOG - 1:
                self._close(session, stream)  # too far behind: it reconnects for a status
            else:
                stream.put_nowait((name, data))

    def _close(self, session: Session, stream: asyncio.Queue[Event | None]) -> None:
        self.close_stream(session, stream)
        while stream.full():
            stream.get_nowait()
        stream.put_nowait(None)
