"""The annotator agent: tasks in, assignments to the crowd, aggregated labels out."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faust import StreamT

from channels.codec import DecodeError, decode, encode
from channels.records import Answer, Label, Task
from pe.annotator.aggregate import majority_vote
from pe.annotator.crowd import CrowdAdapter, CrowdEvents, SimulatedCrowd
from pe.annotator.pool import PendingTask, RetainerPool
from pe.common.context import PipelineContext

__all__ = ["Annotator", "register"]

log = logging.getLogger(__name__)

PE = "annotator"


class Annotator:
    """Joins a pool, a crowd and the output channel."""

    def __init__(self, ctx: PipelineContext, crowd: CrowdAdapter) -> None:
        self._ctx = ctx
        self.params = ctx.params.annotator
        self.pool = RetainerPool(self.params.redundancy)
        self.crowd = crowd
        self._room = asyncio.Event()
        self._room.set()
        self._sending: set[asyncio.Future[Any]] = set()
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.crowd.start(CrowdEvents(self._joined, self._left, self._answered))

    async def accept(self, task: Task) -> None:
        """Queue a task, waiting while the queue is full (backpressure)."""
        while self.pool.waiting >= self.params.max_queue:
            self._room.clear()
            await self._room.wait()
        self.pool.enqueue(task)
        self._dispatch()

    def _dispatch(self) -> None:
        for worker_id, task in self.pool.assign():
            self.crowd.offer(worker_id, task)
        self._gauges()

    def _joined(self, worker_id: str) -> None:
        self.pool.add_worker(worker_id)
        self._dispatch()

    def _left(self, worker_id: str) -> None:
        self.pool.remove_worker(worker_id)
        self._dispatch()

    def _answered(self, worker_id: str, task_id: str, tag: str, seconds: float) -> None:
        pending = self.pool.tasks.get(task_id)
        if pending is not None:
            self._ctx.metrics.crowd_answers.labels(
                self._ctx.pipeline, pending.task.classifier
            ).inc()
            self._ctx.metrics.crowd_answer_seconds.labels(self._ctx.pipeline).observe(seconds)
        done = self.pool.complete(
            Answer(task_id=task_id, worker_id=worker_id, tag=tag, latency_s=round(seconds, 3))
        )
        if done is not None:
            future = asyncio.ensure_future(self._emit(done))
            self._sending.add(future)
            future.add_done_callback(self._sending.discard)
        if self.pool.waiting < self.params.max_queue:
            self._room.set()
        self._dispatch()

    async def _emit(self, done: PendingTask) -> None:
        task = done.task
        tag, share = majority_vote([a.tag for a in done.answers], self.params.agreement_needed)
        label = Label(
            item_id=task.item_id,
            classifier=task.classifier,
            tag=tag,
            agreement=round(share, 4),
            kind=task.kind,
            answers=done.answers,
            idx=task.idx,
            val=task.val,
            ts=time.time(),
        )
        outcome = "agreed" if tag is not None else "no_agreement"
        self._ctx.metrics.crowd_labels.labels(self._ctx.pipeline, task.classifier, outcome).inc()
        await (await self._ctx.send("crowd.labels", task.item_id, encode(label)))
        self._ctx.metrics.items_out.labels(self._ctx.pipeline, PE).inc()

    def _gauges(self) -> None:
        m, p = self._ctx.metrics, self._ctx.pipeline
        m.crowd_queue.labels(p).set(self.pool.waiting)
        m.pool_workers.labels(p, "working").set(self.pool.working)
        m.pool_workers.labels(p, "available").set(len(self.pool.workers) - self.pool.working)


def make_crowd(ctx: PipelineContext) -> CrowdAdapter:
    if ctx.crowd == "simulated":
        return SimulatedCrowd.from_params(ctx.params.annotator)
    msg = f"crowd {ctx.crowd!r} is not available in this release; use --crowd simulated or none"
    raise ValueError(msg)


def register(ctx: PipelineContext) -> None:
    annotator = Annotator(ctx, make_crowd(ctx))
    labels = (ctx.pipeline, PE)

    async def annotate(stream: StreamT[Any]) -> None:
        await annotator.start()
        async for raw in stream:
            ctx.metrics.items_in.labels(*labels).inc()
            try:
                task = decode(Task, raw)
            except DecodeError as exc:
                await (await ctx.reject(PE, exc.kind, str(exc), raw))
                continue
            await annotator.accept(task)

    ctx.app.agent(ctx.topic("crowd.tasks"), name=f"{ctx.pipeline}.annotator")(annotate)
