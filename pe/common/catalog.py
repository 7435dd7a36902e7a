"""The pipeline's classifiers, changed on a running pipeline.

The topology's ``classifiers`` seed the catalog; ``control.classifiers``, a
compacted topic keyed by classifier name that every process follows from its
start, carries what an operator changed since (``crowdstream classifier``, the
HTTP API): a new classifier, a pause, a retirement. The newest record of a name
wins over the topology, so a change survives restarts and reaches every worker.

A classifier's state says what the pipeline does with it:

- ``active``: classified, given crowd tasks, retrained;
- ``paused``: still classified with its last model; no new tasks, no retrains (its
  labels are kept and learned once it is active again);
- ``retired``: no longer classified, labelled or trained. Its labels and models
  stay in their logs; its name cannot be used again.

A classifier's question and tags never change (the labels bought answer them); its
gold questions may grow: an operator promotes an item to gold (``gold_added``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict, Field

from channels.codec import DecodeError, decode
from pe.params import ClassifierSpec, GoldQuestion

if TYPE_CHECKING:
    from runtime.context import PipelineContext

__all__ = [
    "CHANGE_OF",
    "STATE_OF",
    "ClassifierCatalog",
    "ClassifierRecord",
    "ClassifierState",
    "change_refused",
    "follow_catalog",
]

log = logging.getLogger(__name__)

ClassifierState = Literal["active", "paused", "retired"]
ClassifierChange = Literal["added", "paused", "resumed", "retired", "gold_added"]
#: The state each operator action sets.
STATE_OF: dict[str, ClassifierState] = {"pause": "paused", "resume": "active", "retire": "retired"}
#: The change each operator action makes.
CHANGE_OF: dict[str, ClassifierChange] = {
    "pause": "paused",
    "resume": "resumed",
    "retire": "retired",
}
#: The channel the catalog follows, and the owner its reads are counted under.
CHANNEL = "control.classifiers"
OWNER = "classifiers"


class ClassifierRecord(BaseModel):
    """A classifier as an operator last set it (the value on ``control.classifiers``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: ClassifierSpec
    state: ClassifierState = "active"
    #: What this record changed (its event, for webhooks: pe.notifier).
    change: ClassifierChange = "added"
    #: Who made the change (the operator's name, or ``cli``) and when (epoch s).
    by: str = Field("operator", min_length=1, max_length=100)
    at: float = Field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.spec.name

    def after(self, action: str, by: str) -> ClassifierRecord:
        """This classifier once ``action`` (pause, resume, retire) is done by ``by``."""
        return self.model_copy(
            update={
                "state": STATE_OF[action],
                "change": CHANGE_OF[action],
                "by": by,
                "at": time.time(),
            }
        )

    def with_gold(self, question: GoldQuestion, by: str) -> ClassifierRecord:
        """This classifier with one more gold question (an item an operator promoted)."""
        spec = self.spec.model_copy(update={"gold": [*self.spec.gold, question]})
        return self.model_copy(
            update={
                # Validated again: the question's tag must be one of the tags.
                "spec": ClassifierSpec.model_validate(spec.model_dump()),
                "change": "gold_added",
                "by": by,
                "at": time.time(),
            }
        )


def change_refused(current: ClassifierRecord | None, change: ClassifierRecord) -> str | None:
    """Why ``change`` may not follow ``current`` (None: it may)."""
    if current is None:
        return None if change.state != "retired" else f"no classifier {change.name!r}"
    if current.state == "retired":
        return f"classifier {change.name!r} is retired; choose another name"
    if change.spec == current.spec:
        return None
    if change.change == "gold_added":
        if _gold_grown(current.spec, change.spec):
            return None
        return (
            f"classifier {change.name!r}: gold questions are only added, each under a new "
            "id; its question and tags stay"
        )
    # Labels and models already bought hold the old question and tags.
    return (
        f"classifier {change.name!r} exists with another question, tags or gold: "
        "add a classifier under a new name"
    )


def _gold_grown(before: ClassifierSpec, after: ClassifierSpec) -> bool:
    """Whether ``after`` is ``before`` with gold questions of new ids appended."""
    old = len(before.gold)
    ids = {q.id for q in before.gold}
    return (
        after.model_copy(update={"gold": after.gold[:old]}) == before
        and len(after.gold) > old
        and all(q.id not in ids for q in after.gold[old:])
    )


class ClassifierCatalog:
    """Every classifier of the pipeline and its state, in one process."""

    def __init__(self, seed: Sequence[ClassifierSpec]) -> None:
        self._records = {
            spec.name: ClassifierRecord(spec=spec, by="topology", at=0.0) for spec in seed
        }
        self._listeners: list[Callable[[ClassifierSpec], None]] = []
        self._gold_listeners: list[Callable[[ClassifierSpec], None]] = []
        #: Set once the changes already on the topic are applied (follow_catalog).
        self.caught_up = asyncio.Event()
        #: Set (and replaced) at each change applied.
        self._changed = asyncio.Event()

    def records(self) -> list[ClassifierRecord]:
        return list(self._records.values())

    def get(self, name: str) -> ClassifierRecord | None:
        return self._records.get(name)

    def state(self, name: str) -> ClassifierState | None:
        record = self._records.get(name)
        return record.state if record is not None else None

    def serving(self) -> list[ClassifierSpec]:
        """The classifiers items are classified on (active and paused)."""
        return [r.spec for r in self._records.values() if r.state != "retired"]

    def labeling(self) -> list[ClassifierSpec]:
        """The classifiers given crowd tasks and retrained (active)."""
        return [r.spec for r in self._records.values() if r.state == "active"]

    def on_added(self, listener: Callable[[ClassifierSpec], None]) -> None:
        """Call ``listener(spec)`` for each classifier known now and each one added."""
        self._listeners.append(listener)
        for record in self._records.values():
            listener(record.spec)

    def on_gold(self, listener: Callable[[ClassifierSpec], None]) -> None:
        """Call ``listener(spec)`` when a classifier gets more gold questions (its
        new spec, every question in it)."""
        self._gold_listeners.append(listener)

    async def applied(self, record: ClassifierRecord, timeout_s: float) -> bool:
        """Wait until ``record`` is the classifier's (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self._records.get(record.name) != record:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), deadline - time.monotonic())
            if time.monotonic() >= deadline:
                return self._records.get(record.name) == record
        return True

    def apply(self, record: ClassifierRecord) -> str | None:
        """Take a change; why it was refused, or None."""
        current = self._records.get(record.name)
        problem = change_refused(current, record)
        if problem is not None:
            return problem
        self._records[record.name] = record
        self._changed.set()
        self._changed = asyncio.Event()
        if current is None:
            log.info(
                "classifier %s added by %s: %r, tags %s",
                record.name,
                record.by,
                record.spec.question,
                "/".join(record.spec.tags),
            )
            for listener in self._listeners:
                listener(record.spec)
        elif current.state != record.state:
            log.info("classifier %s %s by %s", record.name, record.state, record.by)
        elif current.spec != record.spec:
            log.info("classifier %s: gold question added by %s", record.name, record.by)
            for gold_listener in self._gold_listeners:
                gold_listener(record.spec)
        return None


def follow_catalog(ctx: PipelineContext) -> None:
    """Keep ``ctx.catalog`` up to date from ``control.classifiers`` (every worker
    does, from the topic's start); its ``caught_up`` is set once the changes already
    there are applied."""
    book = ctx.catalog

    async def take(records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            try:
                change = decode(ClassifierRecord, record.value)
            except DecodeError as exc:
                await (await ctx.reject(OWNER, exc.kind, str(exc), record.value))
                continue
            problem = book.apply(change)
            if problem is not None:
                # Two operators raced, or a writer skipped the checks: the first wins.
                await (await ctx.reject(OWNER, "refused", problem, record.value))

    book.caught_up = ctx.follow(CHANNEL, OWNER, take).caught_up
