"""Label review: the newest crowd labels, with every answer, and an operator's
correction of one.

The learner's process follows ``crowd.labels`` from its start; it keeps the newest
``learner.review_labels`` training labels (the stream's; not gold questions, not
jobs') for the labels API. A correction is the label again, with the operator's tag,
``corrected_by`` and a later ``ts``, appended to ``crowd.labels``: the learner
replaces the crowd's tag with it at the next retrain, the classifier revises the
item, and the log keeps both.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial

from pydantic import BaseModel, Field

from channels.records import Answer, Label
from pe.common.api import Body, Call, Endpoint
from pe.common.http import HttpError, OperatorAccess, ready_or_503
from pe.params import ClassifierSpec

__all__ = ["LabelReview", "LabelsApi"]

PREFIX = "/api/v1/labels"
#: How long a call waits for a starting worker to have read crowd.labels.
READY_WAIT_S = 10.0


class LabelReview:
    """The newest label of each (classifier, item), at most ``capacity`` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._labels: OrderedDict[tuple[str, str], Label] = OrderedDict()

    def __len__(self) -> int:
        return len(self._labels)

    def take(self, label: Label) -> None:
        if label.status != "labeled" or label.job is not None or label.kind == "gold":
            return
        key = (label.classifier, label.item_id)
        held = self._labels.get(key)
        if held is not None and held.ts > label.ts:
            return
        self._labels[key] = label
        self._labels.move_to_end(key)
        while len(self._labels) > self.capacity:
            self._labels.popitem(last=False)

    def get(self, classifier: str, item_id: str) -> Label | None:
        return self._labels.get((classifier, item_id))

    def newest(self, classifier: str | None, limit: int, corrected: bool | None) -> list[Label]:
        """Up to ``limit`` labels, newest first; of one classifier, corrected or not."""
        found: list[Label] = []
        for label in reversed(self._labels.values()):
            if classifier is not None and label.classifier != classifier:
                continue
            if corrected is not None and (label.corrected_by is not None) != corrected:
                continue
            found.append(label)
            if len(found) == limit:
                break
        return found


class LabelView(BaseModel):
    """A label as a reviewer sees it: without the item's features and signature."""

    item_id: str
    classifier: str
    tag: str | None = Field(description="The crowd's, or an operator's correction.")
    agreement: float
    posterior: float | None = Field(description="The quality loop's, of the tag.")
    kind: str = Field(description="How the item was picked: active or passive.")
    answers: list[Answer] = Field(description="Every worker's answer.")
    ts: float
    task_id: str | None
    text: str | None
    source: str | None
    corrected_by: str | None

    @classmethod
    def of(cls, label: Label) -> LabelView:
        return cls.model_validate(label.model_dump(exclude={"idx", "val", "sig"}))


class LabelQuery(BaseModel):
    classifier: str | None = Field(None, description="Only this classifier's labels.")
    corrected: bool | None = Field(None, description="Only corrected ones, or only not.")
    limit: int = Field(100, ge=1, le=1000)


class LabelList(BaseModel):
    labels: list[LabelView] = Field(description="Newest first, each with every answer.")


class Correction(BaseModel):
    tag: str = Field(min_length=1, description="The right tag: one of the classifier's.")


class Corrected(BaseModel):
    label: LabelView = Field(description="The correction, as written to crowd.labels.")


#: Writes a label to ``crowd.labels`` and waits for the broker's ack.
Append = Callable[[Label], Awaitable[None]]


class LabelsApi:
    def __init__(
        self,
        review: LabelReview,
        specs: Callable[[], dict[str, ClassifierSpec]],
        append: Append,
        *,
        operator: OperatorAccess,
        ready: asyncio.Event,
    ) -> None:
        """``specs()``: the classifiers labels may be corrected for now; ``ready``: set
        once ``crowd.labels`` has been read to its end."""
        self._ready = ready
        self._review = review
        self._specs = specs
        self._append = append
        self._operator = operator

    def endpoints(self) -> list[Endpoint]:
        route = partial(Endpoint, access=self._operator, tag="labels")
        one = f"{PREFIX}/{{classifier}}/{{item_id}}"
        return [
            route(
                "GET",
                PREFIX,
                "list_labels",
                "The newest crowd labels, each with every answer.",
                run=self.list,
                query=LabelQuery,
                response=LabelList,
                errors=(503,),
            ),
            route(
                "GET",
                one,
                "show_label",
                "An item's newest label for a classifier.",
                run=self.show,
                response=LabelView,
                errors=(404, 503),
            ),
            route(
                "POST",
                f"{one}/correct",
                "correct_label",
                "Set an item's tag over the crowd's: the next model learns it.",
                run=self.correct,
                body=Body(Correction, 4096),
                response=Corrected,
                status=202,
                errors=(404, 409, 503),
            ),
        ]

    async def _wait(self) -> None:
        await ready_or_503(self._ready, READY_WAIT_S, "the crowd labels")

    async def _label(self, call: Call) -> Label:
        await self._wait()
        info = call.request.match_info
        label = self._review.get(info["classifier"], info["item_id"])
        if label is None:
            raise HttpError(
                404,
                f"no label of item {info['item_id'][:200]!r} for {info['classifier'][:100]!r} "
                f"among the newest {self._review.capacity} (learner.review_labels)",
            )
        return label

    async def list(self, call: Call) -> LabelList:
        query: LabelQuery = call.query
        await self._wait()
        found = self._review.newest(query.classifier, query.limit, query.corrected)
        return LabelList(labels=[LabelView.of(label) for label in found])

    async def show(self, call: Call) -> LabelView:
        return LabelView.of(await self._label(call))

    async def correct(self, call: Call) -> Corrected:
        label = await self._label(call)
        spec = self._specs().get(label.classifier)
        if spec is None:
            raise HttpError(409, f"classifier {label.classifier!r} is retired")
        tag: str = call.body.tag
        if tag not in spec.tags:
            raise HttpError(
                422,
                f"{label.classifier} has no tag {tag[:100]!r}; its tags: {', '.join(spec.tags)}",
            )
        correction = label.model_copy(
            update={
                "tag": tag,
                "posterior": 1.0,
                "cost": 0.0,  # the crowd was paid with the label it corrects
                "ts": max(time.time(), label.ts + 1e-6),
                "corrected_by": call.caller or "operator",
            }
        )
        await self._append(correction)
        self._review.take(correction)
        return Corrected(label=LabelView.of(correction))
