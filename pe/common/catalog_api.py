"""The classifiers HTTP API: list, add, pause, resume and retire classifiers on a
running pipeline, and promote an item to one's gold questions.

A change is checked against this worker's catalog, then written to
``control.classifiers``; every worker (this one too) applies it from there, within
a poll of that topic. Every call is an operator call (pe.common.http.OperatorAccess).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Literal

from pydantic import BaseModel, Field

from channels.codec import encode
from channels.records import ModelHeader
from pe.common.api import Body, Call, Endpoint
from pe.common.catalog import (
    CHANNEL,
    STATE_OF,
    ClassifierCatalog,
    ClassifierRecord,
    ClassifierState,
    change_refused,
)
from pe.common.http import HttpError, OperatorAccess, ready_or_503
from pe.common.modelbook import model_book
from pe.params import ClassifierSpec, GoldQuestion
from runtime.context import PipelineContext

__all__ = ["ClassifiersApi", "Publish", "serve_catalog"]

#: Writes a record to ``control.classifiers`` and waits for the broker's ack.
Publish = Callable[[ClassifierRecord], Awaitable[None]]
PREFIX = "/api/v1/classifiers"
#: How long a change's answer waits for this worker to apply it.
APPLY_WAIT_S = 5.0
#: How long a call waits for a starting worker to have read control.classifiers.
READY_WAIT_S = 10.0
#: A body of a few gold questions fits; a classifier is not a data upload.
MAX_BODY_BYTES = 256 * 1024


class ModelSummary(BaseModel):
    """A classifier's active model, as its held-out labels measured it."""

    classifier: str
    version: int
    created: float
    n_train: int
    n_holdout: int
    auc: float | None
    auc_low: float | None
    auc_high: float | None

    @classmethod
    def of(cls, header: ModelHeader) -> ModelSummary:
        ci = header.metrics.auc_ci
        return cls(
            classifier=header.classifier,
            version=header.version,
            created=header.created,
            n_train=header.n_train,
            n_holdout=header.n_holdout,
            auc=header.metrics.auc,
            auc_low=ci.low if ci else None,
            auc_high=ci.high if ci else None,
        )


class ClassifierList(BaseModel):
    classifiers: list[ClassifierRecord] = Field(
        description="Every classifier, retired ones too, as last set."
    )
    models: list[ModelSummary] = Field(description="The active model of each that has one.")


class ClassifierChanged(BaseModel):
    name: str
    state: ClassifierState
    status: Literal["accepted"] = Field(
        "accepted", description="Written to control.classifiers; workers apply it within a second."
    )
    href: str


class ClassifiersApi:
    def __init__(
        self,
        catalog: ClassifierCatalog,
        publish: Publish,
        models: Callable[[], Iterable[ModelHeader]],
        *,
        operator: OperatorAccess,
    ) -> None:
        """``models()``: the active model of each classifier that has one."""
        self._catalog = catalog
        self._models = models
        self._publish = publish
        self._operator = operator
        self._writing = asyncio.Lock()

    def endpoints(self) -> list[Endpoint]:
        route = partial(Endpoint, access=self._operator, tag="classifiers")
        one = f"{PREFIX}/{{name}}"
        endpoints = [
            route(
                "GET",
                PREFIX,
                "list_classifiers",
                "Every classifier and its state.",
                run=self.list,
                response=ClassifierList,
                errors=(503,),
            ),
            route(
                "POST",
                PREFIX,
                "add_classifier",
                "Add a classifier: it is classified at once (tag null until its first "
                "model) and gets crowd tasks from the live stream.",
                run=self.add,
                body=Body(ClassifierSpec, MAX_BODY_BYTES),
                response=ClassifierChanged,
                status=202,
                errors=(409, 503),
            ),
            route(
                "GET",
                one,
                "show_classifier",
                "A classifier and its state.",
                run=self.show,
                response=ClassifierRecord,
                errors=(404, 503),
            ),
        ]
        endpoints.append(
            route(
                "POST",
                f"{one}/gold",
                "add_gold_question",
                "Promote an item to gold: workers are measured on it from now on.",
                run=self.add_gold,
                body=Body(GoldQuestion, MAX_BODY_BYTES),
                response=ClassifierChanged,
                status=202,
                errors=(404, 409, 422, 503),
            )
        )
        for action, state in STATE_OF.items():
            endpoints.append(
                route(
                    "POST",
                    f"{one}/{action}",
                    f"{action}_classifier",
                    f"Set a classifier {state}.",
                    run=partial(self.act, action=action),
                    response=ClassifierChanged,
                    status=202,
                    errors=(404, 409, 503),
                )
            )
        return endpoints

    async def _ready(self) -> None:
        # A worker that just started would answer from the topology alone.
        await ready_or_503(self._catalog.caught_up, READY_WAIT_S, "the classifiers' changes")

    def _record(self, call: Call) -> ClassifierRecord:
        name = call.request.match_info["name"]
        record = self._catalog.get(name)
        if record is None:
            raise HttpError(404, f"no classifier {name[:100]!r}")
        return record

    async def list(self, call: Call) -> ClassifierList:
        await self._ready()
        return ClassifierList(
            classifiers=self._catalog.records(),
            models=[ModelSummary.of(header) for header in self._models()],
        )

    async def show(self, call: Call) -> ClassifierRecord:
        await self._ready()
        return self._record(call)

    async def add(self, call: Call) -> ClassifierChanged:
        spec: ClassifierSpec = call.body
        await self._ready()
        if self._catalog.get(spec.name) is not None:
            raise HttpError(409, f"classifier {spec.name!r} exists; choose another name")
        return await self._write(ClassifierRecord(spec=spec, by=call.caller, at=time.time()))

    async def act(self, call: Call, action: str) -> ClassifierChanged:
        await self._ready()
        return await self._write(self._record(call).after(action, call.caller))

    async def add_gold(self, call: Call) -> ClassifierChanged:
        question: GoldQuestion = call.body
        await self._ready()
        record = self._record(call)
        if question.tag not in record.spec.tags:
            tags = ", ".join(record.spec.tags)
            msg = f"{record.name} has no tag {question.tag[:100]!r}; its tags: {tags}"
            raise HttpError(422, msg)
        if any(q.id == question.id for q in record.spec.gold):
            raise HttpError(409, f"{record.name} has a gold question {question.id!r} already")
        if record.state == "retired":
            raise HttpError(409, f"classifier {record.name!r} is retired")
        return await self._write(record.with_gold(question, call.caller))

    async def _write(self, change: ClassifierRecord) -> ClassifierChanged:
        # One change at a time, each answered once this worker has applied it: a
        # second request sees the first (two workers' operators may still race;
        # the first on the topic wins, pe.common.catalog).
        async with self._writing:
            problem = change_refused(self._catalog.get(change.name), change)
            if problem is not None:
                raise HttpError(409, problem)
            await self._publish(change)
            await self._catalog.applied(change, APPLY_WAIT_S)
        return ClassifierChanged(
            name=change.name, state=change.state, href=f"{PREFIX}/{change.name}"
        )


def serve_catalog(ctx: PipelineContext) -> None:
    """Add the classifiers API to this worker's HTTP server."""

    async def publish(record: ClassifierRecord) -> None:
        await (await ctx.send(CHANNEL, record.name, encode(record)))

    book = model_book(ctx)
    api = ClassifiersApi(
        ctx.catalog,
        publish,
        lambda: book.updates.values(),
        operator=OperatorAccess.from_settings(ctx.settings),
    )
    ctx.endpoints.extend(api.endpoints())
