"""Record schemas of jobs: what users submit, and what the jobs PE reports.

Wire format as for every topic: UTF-8 JSON, one record per message.

- ``<pipeline>.jobs`` (key: job id): :class:`JobCommand`, the event log of every job:
  submissions, cancellations, the stream items a job's window collected, and the
  window items load shedding dropped. Kept forever: job state is rebuilt from it.
- ``<pipeline>.jobs.results`` (key: job id): :class:`JobStatus` snapshots and
  :class:`ItemResult` records (a labeling job's labels, with their source).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from channels.codec import DecodeError, decode
from channels.records import MAX_TEXT_CHARS, ItemId

__all__ = [
    "JOB_ID_PATTERN",
    "TERMINAL",
    "CountingJob",
    "EnumerationJob",
    "ItemFilter",
    "ItemResult",
    "JobCommand",
    "JobItem",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "LabelingJob",
    "StreamWindow",
    "decode_result",
    "job_status",
]

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
JobState = Literal["queued", "running", "done", "cancelled", "failed"]
#: States a job never leaves.
TERMINAL: frozenset[str] = frozenset({"done", "cancelled", "failed"})
#: Most items one job may name or collect.
MAX_JOB_ITEMS = 100_000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class JobItem(_Spec):
    """One item of a job's set (inline, from a file, or collected from the stream)."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    id: ItemId
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    meta: dict[str, Any] = Field(default_factory=dict)
    #: Hashed features and the model's prediction at arrival; set by the jobs PE.
    idx: list[int] = Field(default_factory=list)
    val: list[float] = Field(default_factory=list)
    predicted: float | None = None


class ItemFilter(_Spec):
    """Which stream items a window takes: all of them, by default."""

    #: Any of these words or phrases, case-insensitive, as whole words.
    contains: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    #: Only items from this source.
    source: str | None = Field(None, max_length=256)

    def compiled(self) -> re.Pattern[str] | None:
        if not self.contains:
            return None
        words = "|".join(re.escape(word.lower()) for word in self.contains)
        return re.compile(rf"(?<!\w)(?:{words})(?!\w)")

    def matches(self, text: str, source: str | None, pattern: re.Pattern[str] | None) -> bool:
        if self.source is not None and source != self.source:
            return False
        return pattern is None or pattern.search(text.lower()) is not None


class StreamWindow(_Spec):
    """The next items of the stream that match a filter: ``count`` of them, or those
    of the next ``seconds``, whichever ends first."""

    filter: ItemFilter = ItemFilter()
    count: int | None = Field(None, ge=1, le=MAX_JOB_ITEMS)
    seconds: float | None = Field(None, gt=0, le=7 * 86400)
    #: Never shed the window's items (load shedding drops others first); if false,
    #: the job counts the window's items shedding dropped, to correct its count.
    protect: bool = True

    @model_validator(mode="after")
    def _check(self) -> StreamWindow:
        if self.count is None and self.seconds is None:
            raise ValueError("a stream window needs a count, seconds, or both")
        return self


class _Job(_Spec):
    job_id: str | None = Field(None, pattern=JOB_ID_PATTERN)
    name: str = Field("", max_length=200)
    #: 0 (lowest) .. 9; the classifiers' training tasks have taskgen.priority (5).
    priority: int = Field(5, ge=0, le=9)
    #: Most the job may spend on crowd pay (work pay per record, straggler
    #: duplicates included); the job stops issuing tasks before it would pass it.
    budget: float = Field(gt=0, le=1_000_000)
    items: list[JobItem] | None = Field(None, min_length=1, max_length=MAX_JOB_ITEMS)
    stream: StreamWindow | None = None
    #: Most of the job's tasks waiting or being answered at once (default: the pool
    #: size). Fewer waste less past a stop condition; more keep a big pool busy.
    max_in_flight: int | None = Field(None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_source(self) -> _Job:
        if (self.items is None) == (self.stream is None):
            raise ValueError("give either items (a set) or stream (a window), not both")
        if self.items is not None and len({i.id for i in self.items}) != len(self.items):
            raise ValueError("item ids must be unique within a job")
        return self


class LabelingJob(_Job):
    """Label a set of items for a classifier."""

    kind: Literal["labeling"] = "labeling"
    classifier: str
    #: Answers per item (default: the annotator's redundancy).
    redundancy: int | None = Field(None, ge=1, le=15)
    #: Stop asking the crowd once the classifier's held-out AUC (or accuracy)
    #: reaches this; the model labels the rest.
    target_auc: float | None = Field(None, gt=0.5, le=1)
    target_accuracy: float | None = Field(None, gt=0, le=1)


class CountingJob(_Job):
    """How many, and what fraction, of the items have ``tag``?"""

    kind: Literal["counting"] = "counting"
    classifier: str
    tag: str = Field(min_length=1)
    #: ``label``: sample items, one label each, corrected for each worker's error.
    #: ``count``: Qurk's count batches, corrected for the crowd's counting error
    #: measured on calibration batches. ``model``: classify and count,
    #: corrected by a crowd-labeled sample (difference estimator).
    method: Literal["label", "count", "model"] = "label"
    #: Stop when the interval is at most this wide (in fraction units).
    ci_width: float = Field(0.1, gt=0, le=1)
    confidence: float = Field(0.95, ge=0.5, lt=1)
    #: Count method: items per batch, and the mean number of gold items hidden in it.
    batch_size: int = Field(20, ge=2, le=200)
    gold_per_batch: float = Field(0, ge=0)
    #: Count method: the share of batches that are calibration batches, all gold
    #: with a varying number of items with the tag; they measure how the crowd
    #: counts, to correct the other batches' counts.
    calibration_share: float = Field(0.3, gt=0, lt=1)
    #: Label and model methods: the share of the job's label tasks that are gold
    #: questions (messages of known tag), which measure its workers' error.
    gold_share: float = Field(0.1, ge=0, le=0.5)
    #: Answers needed before the interval may stop the job.
    min_answers: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _check_gold(self) -> CountingJob:
        if self.gold_per_batch >= self.batch_size - 1:
            raise ValueError("gold_per_batch must leave real items in each batch")
        return self


class EnumerationJob(_Job):
    """List the distinct X mentioned in the items (e.g. places)."""

    kind: Literal["enumeration"] = "enumeration"
    question: str = Field(min_length=1, max_length=500)
    #: Simulated crowd only: ``meta.truth.<truth_key>`` lists an item's answers.
    truth_key: str | None = Field(None, max_length=64)
    #: Stop when the distinct answers found reach this share of Chao92's estimate.
    target_coverage: float = Field(0.9, gt=0, le=1)
    #: Answers needed before the estimate may stop the job.
    min_answers: int = Field(20, ge=2)
    #: Report the distinct answers expected from this many more tasks.
    horizons: list[int] = Field(default_factory=lambda: [10, 20, 50], max_length=10)
    #: The streaker correction: workers compared, and the most of a worker's
    #: answers it may discount.
    streaker_k: int = Field(10, ge=1)
    streaker_beta: float = Field(0.5, ge=0, le=1)


JobSpec = Annotated[LabelingJob | CountingJob | EnumerationJob, Field(discriminator="kind")]


class JobCommand(BaseModel):
    """One event of a job's log on ``<pipeline>.jobs``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action: Literal["submit", "cancel", "items", "window", "shed"]
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    spec: JobSpec | None = None  #: submit
    reason: str = Field("", max_length=500)  #: cancel
    #: items: stream items a labeling window collected; window: a counting
    #: window's sample when it closed.
    items: list[JobItem] = Field(default_factory=list)
    seen: int = 0  #: window: items the window saw
    predicted_sum: float = 0.0  #: window: sum of the model's predictions over them
    shed: int = 0  #: shed: window items load shedding dropped (an increment)
    ts: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> JobCommand:
        if self.action == "submit" and self.spec is None:
            raise ValueError("a submit command needs a spec")
        return self


class JobStatus(BaseModel):
    """A job's state, progress, cost and estimate (``type: status``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["status"] = "status"
    job_id: str
    kind: str
    name: str = ""
    status: JobState
    reason: str = ""
    priority: int
    created: float
    updated: float
    budget: float
    cost: float  #: crowd pay so far
    progress: dict[str, int | float]
    window: dict[str, Any] | None = None
    estimate: dict[str, Any] | None = None


class ItemResult(BaseModel):
    """A labeling job's result for one item (``type: item``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["item"] = "item"
    job_id: str
    item_id: str
    classifier: str
    tag: str | None  #: None when the crowd did not agree
    source: Literal["crowd", "model"]
    confidence: float  #: crowd: share of agreeing answers; model: its probability
    model_version: int = 0
    ts: float


JobResult = Annotated[JobStatus | ItemResult, Field(discriminator="type")]


class _AnyResult(RootModel[JobResult]):
    pass


def decode_result(data: bytes | None) -> JobStatus | ItemResult:
    """Decode a ``jobs.results`` record; raises DecodeError."""
    return decode(_AnyResult, data).root


def job_status(data: bytes | None) -> JobStatus | None:
    """The status a ``jobs.results`` record carries, if it is a valid status record."""
    try:
        result = decode_result(data)
    except DecodeError:
        return None
    return result if isinstance(result, JobStatus) else None
