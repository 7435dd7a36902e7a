"""Request and response bodies of the crowd API (``/api/v1``), with their bounds.

The OpenAPI document is generated from these models, so it cannot drift from what
the server checks.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "AnswerRequest",
    "AnswerResponse",
    "Earnings",
    "GoldView",
    "InviteList",
    "InviteRequest",
    "InviteView",
    "JoinRequest",
    "PoolStatus",
    "QualificationRequest",
    "QualificationResponse",
    "ReleaseResponse",
    "TaskView",
    "TokenResponse",
    "WorkerInfo",
    "WorkerList",
    "WorkerStatus",
]

#: Characters that reorder the text around them (embeddings, overrides, isolates):
#: in a name they can make an operator's list or a log line read differently.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Unicode categories with nothing to see: controls, formats, spaces, combining marks.
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


def _readable_name(name: str) -> str:
    """A display name is shown to operators and written to logs: no control
    characters (a CR/LF would forge log lines), no bidi controls, and something
    visible."""
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError("a display name must not contain control characters")
    if any(c in _BIDI_CONTROLS for c in name):
        raise ValueError("a display name must not contain text-direction controls")
    if all(unicodedata.category(c) in _INVISIBLE for c in name):
        raise ValueError("a display name needs at least one visible character")
    return name


Name = Annotated[
    str, Field(min_length=1, max_length=40, pattern=r"\S"), AfterValidator(_readable_name)
]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]


class _Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class JoinRequest(_Body):
    name: Name | None = Field(None, description="Display name (or give an invite code).")
    invite: Code | None = Field(None, description="Invite code from the operator.")


class GoldView(BaseModel):
    gold_id: str
    text: str
    question: str
    tags: list[str]


class Earnings(BaseModel):
    waiting_minutes: float = 0.0
    waiting: float = Field(0.0, description="Pay for time waiting in the pool.")
    records: int = Field(0, description="Records of work paid, terminated work included.")
    terminated_records: int = Field(0, description="Of those, work another worker finished first.")
    work: float = 0.0
    total: float = 0.0


class TaskView(BaseModel):
    assignment_id: str
    kind: Literal["label"]
    classifier: str
    question: str
    text: str = Field(description="The message; plain text, to be shown escaped.")
    tags: list[str] = Field(description="Answer with one of these, or N/A when allowed.")
    na_allowed: bool = Field(description="Whether N/A (cannot tell, skip) is an answer.")
    examples: list[dict[str, str]] = Field(
        description="Worked examples ({text, tag}) to show beside the question."
    )
    offered_at: float


class WorkerStatus(BaseModel):
    worker_id: str
    name: str
    state: Literal["qualifying", "waiting", "working", "ended"]
    ended: str | None = Field(None, description="Why the session ended, once it has.")
    earnings: Earnings
    qualification: list[GoldView] = Field(description="Qualification items still to answer.")
    assignment: TaskView | None


class TokenResponse(WorkerStatus):
    token: str = Field(description="Bearer token for every worker call.")
    expires_at: float = Field(description="When the token expires (epoch seconds).")
    heartbeat_s: float = Field(description="Send a heartbeat at least this often.")


class QualificationRequest(_Body):
    answers: dict[Code, Tag] = Field(max_length=20, description="Tag per gold id.")


class QualificationResponse(BaseModel):
    admitted: bool
    state: Literal["qualifying", "waiting", "working", "ended"]


class AnswerRequest(_Body):
    assignment_id: Code
    tag: Tag = Field(description="One of the task's tags, or N/A (skip).")


class AnswerResponse(BaseModel):
    assignment_id: str
    outcome: Literal["vote", "terminated"] = Field(
        description="vote: counted; terminated: another worker finished first (paid, not counted)."
    )
    message: str
    earnings: Earnings


class PoolStatus(BaseModel):
    target_size: int
    openings: int = Field(description="Workers the pool is waiting for.")
    join_mode: Literal["open", "invite"]
    workers: dict[str, int] = Field(description="Workers by state.")
    queue: int = Field(description="Tasks waiting for a worker.")
    active_tasks: int
    events: dict[str, int] = Field(description="Duplicates, terminations, releases, recruits.")
    costs: dict[str, Any]
    mean_latency_s: float | None = Field(description="Mean seconds per label in the pool.")


class WorkerInfo(BaseModel):
    worker_id: str
    name: str
    address: str
    state: Literal["qualifying", "waiting", "working", "ended"]
    joined_at: float
    answers: int
    terminated: int
    mean_latency_s: float | None
    marked_slow: bool
    marked: Literal["slow", "low_quality"] | None = Field(
        description="Why pool maintenance will release the worker once replaced."
    )
    accuracy: float | None = Field(
        description="The quality loop's estimate of the worker's accuracy (null without it)."
    )
    ended: str | None = Field(
        None,
        description="Why the session ended: left, vanished, failed_qualification, or "
        "released by the operator (released:operator) or pool maintenance "
        "(released:slow, released:low_quality).",
    )
    earnings: Earnings


class WorkerList(BaseModel):
    workers: list[WorkerInfo]


class ReleaseResponse(BaseModel):
    worker_id: str
    released: bool


class InviteRequest(_Body):
    count: int = Field(1, ge=1, le=100)
    uses: int = Field(1, ge=1, le=1000, description="Joins each code allows.")
    name: Name | None = Field(None, description="Display name of whoever joins with it.")
    expires_in_s: float = Field(7 * 86400, ge=60, le=30 * 86400)


class InviteView(BaseModel):
    code: str
    name: str | None
    uses_left: int
    expires_at: float


class InviteList(BaseModel):
    invites: list[InviteView]
