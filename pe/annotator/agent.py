"""The annotator agent: tasks in, a CLAMShell retainer pool, aggregated labels out."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import Any

from faust import StreamT

from channels.codec import DecodeError, decode, encode
from channels.records import Answer, Label, Task
from pe.annotator.aggregate import majority_vote
from pe.annotator.clock import LoopClock
from pe.annotator.crowd import CrowdAdapter, GoldItem, SimulatedCrowd
from pe.annotator.latency import MaintenanceRule
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.pool import (
    Effect,
    Finished,
    Left,
    Offer,
    PoolConfig,
    Recruit,
    Release,
    RetainerPool,
    Terminate,
)
from pe.annotator.population import PRESETS
from pe.annotator.web.api import ApiConfig, CrowdApi
from pe.annotator.web.crowd import WebCrowd
from pe.common.context import PipelineContext
from pe.params import AnnotatorParams
from pipelines.sample import load_sample

__all__ = ["Annotator", "pool_config", "register"]

log = logging.getLogger(__name__)

PE = "annotator"


def pool_config(params: AnnotatorParams) -> PoolConfig:
    """The retainer pool a topology's annotator parameters describe."""
    m = params.maintenance
    rule = (
        MaintenanceRule(m.threshold_s, m.significance, m.min_tasks, m.termest, m.alpha)
        if m.enabled
        else None
    )
    return PoolConfig(
        target_size=params.pool_size,
        votes=params.redundancy,
        mitigation=params.mitigation,
        mode="stream",
        heartbeat_timeout_s=params.heartbeat_timeout_s,
        qualification=params.qualification,
        maintenance=rule,
        pay_per_minute=params.pay_per_minute,
        pay_per_record=params.pay_per_record,
    )


def gold_items(ctx: PipelineContext) -> list[GoldItem]:
    """Qualification items: the bundled sample's messages with their known tags."""
    gold = []
    for record in load_sample():
        truth = record.get("meta", {}).get("truth", {})
        for spec in ctx.classifiers:
            tag = truth.get(spec.truth_field)
            if tag in spec.tags:
                gold.append(
                    GoldItem(
                        f"{spec.name}:{record['id']}",
                        record["text"],
                        spec.question,
                        list(spec.tags),
                        str(tag),
                    )
                )
    return gold


class Annotator:
    """Joins the Kafka input, the pool service and the output channel."""

    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self.params = ctx.params.annotator
        self.pool = RetainerPool(pool_config(self.params), random.Random(self.params.seed))
        self.guard: LifeGuard | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._sending: set[asyncio.Future[Any]] = set()

    def start(self, crowd: CrowdAdapter, clock: LoopClock) -> None:
        self.guard = LifeGuard(
            self.pool,
            clock,
            on_finished=self._finished,
            observe=self._observe,
            gold=gold_items(self._ctx) if self.params.qualification else None,
            rng=random.Random(self.params.seed),
        )
        self.guard.start(crowd)
        # Read at scrape time: counting workers and tasks on every event would cost
        # O(pool + queue) per event for numbers nobody reads between scrapes.
        m, p, pool = self._ctx.metrics, self._ctx.pipeline, self.pool
        m.crowd_queue.labels(p).set_function(lambda: pool.waiting)
        m.pool_workers.labels(p, "qualifying").set_function(lambda: pool.qualifying)
        m.pool_workers.labels(p, "working").set_function(lambda: pool.working)
        m.pool_workers.labels(p, "available").set_function(lambda: len(pool.available))

    async def accept(self, task: Task) -> None:
        """Queue a task, waiting while the queue is full (backpressure)."""
        if self.guard is None:
            raise RuntimeError("start() the annotator first")
        while self.pool.waiting >= self.params.max_queue:
            self._room.clear()
            await self._room.wait()
        # Each classifier's training is a job of the pool: its work is paid to it.
        self.guard.submit(task.task_id, task, job=task.classifier)

    def _finished(self, done: Finished) -> None:
        future = asyncio.ensure_future(self._emit(done))
        self._sending.add(future)
        future.add_done_callback(self._sending.discard)

    def _observe(self, effect: Effect) -> None:
        m, p = self._ctx.metrics, self._ctx.pipeline
        if isinstance(effect, Offer) and effect.duplicate:
            m.pool_events.labels(p, "duplicate").inc()
        elif isinstance(effect, Finished):
            m.crowd_task_seconds.labels(p).observe(effect.seconds)
        elif isinstance(effect, Left):
            m.pool_events.labels(p, effect.reason).inc()
        elif isinstance(effect, Terminate):
            m.pool_events.labels(p, "termination").inc()
        elif isinstance(effect, Release):
            m.pool_events.labels(p, "release").inc()
        elif isinstance(effect, Recruit):
            m.pool_events.labels(p, "recruit").inc(effect.count)
        # Any assignment can make room in the queue: accept() checks whether it did.
        self._room.set()
        self._costs()

    async def _emit(self, done: Finished) -> None:
        task: Task = done.task.payload
        answers = [
            Answer(
                task_id=task.task_id,
                worker_id=v.worker_id,
                tag=v.tag,
                latency_s=round(v.seconds, 3),
            )
            for v in done.task.answers
        ]
        for answer in answers:
            self._ctx.metrics.crowd_answers.labels(self._ctx.pipeline, task.classifier).inc()
            self._ctx.metrics.crowd_answer_seconds.labels(self._ctx.pipeline).observe(
                answer.latency_s
            )
        tag, share = majority_vote([a.tag for a in answers], self.params.agreement_needed)
        label = Label(
            item_id=task.item_id,
            classifier=task.classifier,
            tag=tag,
            agreement=round(share, 4),
            kind=task.kind,
            answers=answers,
            idx=task.idx,
            val=task.val,
            ts=time.time(),
        )
        outcome = "agreed" if tag is not None else "no_agreement"
        self._ctx.metrics.crowd_labels.labels(self._ctx.pipeline, task.classifier, outcome).inc()
        await (await self._ctx.send("crowd.labels", task.item_id, encode(label)))
        self._ctx.metrics.items_out.labels(self._ctx.pipeline, PE).inc()

    def _costs(self) -> None:
        m, p, ledger = self._ctx.metrics, self._ctx.pipeline, self.pool.ledger
        m.crowd_cost.labels(p, "waiting", "pool").set(ledger.waiting_cost)
        for job in ledger.records:
            m.crowd_cost.labels(p, "work", job).set(ledger.job_cost(job))


def api_config(ctx: PipelineContext) -> ApiConfig:
    """The web crowd API's settings; a random token key if none is set."""
    settings = ctx.settings
    if settings.crowd_token_key is not None:
        key = settings.crowd_token_key.get_secret_value().encode()
    else:
        key = secrets.token_bytes(32)
        log.info(
            "worker tokens are signed with a per-process key: set crowd_token_key "
            "to keep them valid across restarts"
        )
    operator = settings.operator_token
    if operator is None:
        log.info("operator endpoints are disabled: set operator_token to enable them")
    return ApiConfig(
        token_key=key,
        token_ttl_s=settings.crowd_token_ttl_s,
        operator_token=operator.get_secret_value() if operator is not None else None,
        ip_rate=settings.crowd_rate_per_ip,
        ip_burst=max(int(settings.crowd_rate_per_ip * 3), 1),
        worker_rate=settings.crowd_rate_per_worker,
        worker_burst=max(int(settings.crowd_rate_per_worker * 4), 1),
    )


def register(ctx: PipelineContext) -> None:
    annotator = Annotator(ctx)
    labels = (ctx.pipeline, PE)
    params = ctx.params.annotator
    web_crowd: WebCrowd | None = None
    if ctx.crowd == "web":
        web_crowd = WebCrowd(join_mode=ctx.settings.crowd_join)
        ctx.routes.extend(CrowdApi(web_crowd, annotator, api_config(ctx)).routes())
        ctx.web_closing.append(web_crowd.close_streams)

    async def annotate(stream: StreamT[Any]) -> None:
        if annotator.guard is None:
            if web_crowd is not None:
                # People work in real time: the clock runs at speed 1 whatever is set.
                annotator.start(web_crowd, LoopClock())
            else:
                clock = LoopClock(params.speed)
                crowd = SimulatedCrowd(PRESETS[params.population], clock, seed=params.seed)
                annotator.start(crowd, clock)
        async for raw in stream:
            ctx.metrics.items_in.labels(*labels).inc()
            try:
                task = decode(Task, raw)
            except DecodeError as exc:
                await (await ctx.reject(PE, exc.kind, str(exc), raw))
                continue
            await annotator.accept(task)

    ctx.app.agent(ctx.topic("crowd.tasks"), name=f"{ctx.pipeline}.annotator")(annotate)
