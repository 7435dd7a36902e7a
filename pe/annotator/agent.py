"""The annotator agent: tasks in, a CLAMShell retainer pool, aggregated labels out."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, ProducerClosed

from channels.codec import DecodeError, decode, decode_valid, encode
from channels.jobs import TERMINAL, job_status
from channels.records import NA_TAG, Answer, Label, PoolMember, Task
from pe.annotator.aggregate import majority_vote
from pe.annotator.assurance import QualityLoop
from pe.annotator.clock import LoopClock
from pe.annotator.crowd import CrowdAdapter, GoldItem, SimulatedCrowd
from pe.annotator.journal import PoolJournal
from pe.annotator.latency import MaintenanceRule
from pe.annotator.lifeguard import LifeGuard
from pe.annotator.plugin import CrowdSetup, make_crowd
from pe.annotator.pool import (
    Effect,
    Finished,
    Left,
    Offer,
    PoolConfig,
    PoolTask,
    Recruit,
    Release,
    RetainerPool,
    Shed,
    Terminate,
    Vote,
)
from pe.annotator.population import PRESETS
from pe.annotator.web.api import ApiConfig, CrowdApi
from pe.annotator.web.crowd import WebCrowd
from pe.common.http import OperatorAccess
from pe.common.outcomes import Outcomes
from pe.common.quality import Verdict, worker_model
from pe.params import AnnotatorParams, ClassifierSpec
from runtime.context import PipelineContext
from runtime.follower import Follower

__all__ = ["Annotator", "AnnotatorPE", "pool_config", "register"]

log = logging.getLogger(__name__)

PE = "annotator"
#: How often changed pool workers are written to ``crowd.pool`` (what a crash loses).
JOURNAL_EVERY_S = 1.0
#: How long the label writer waits before it tries a failed write again.
WRITE_RETRY_S = 1.0
#: Longest a stopping worker waits for the crowd labels on their way.
DRAIN_TIMEOUT_S = 10.0


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
        capacity=params.max_queue,
        gold_rate=params.quality.gold_rate if params.quality.enabled else 0.0,
        routing=params.quality.enabled and params.quality.routing,
    )


def quality_loop(params: AnnotatorParams) -> QualityLoop:
    """The quality assurance loop of a topology's annotator parameters, asking gold
    questions at its gold rate (each classifier's, as it is added: add_topic)."""
    return QualityLoop(worker_model(params.quality, []), [], _gold_task, random.Random(params.seed))


def _gold_task(item: GoldItem, task_id: str, now: float) -> Task:
    """A gold question as workers see it: like any label task (the truth is never shown)."""
    return Task(
        task_id=task_id,
        item_id=item.gold_id,
        classifier=item.topic or "",
        question=item.question,
        tags=item.tags,
        text=item.text,
        kind="gold",
        created=time.time(),
        truth=item.truth,
        idx=[],
        val=[],
    )


def gold_items(classifiers: list[ClassifierSpec]) -> list[GoldItem]:
    """Gold questions (qualification and quality): the topology's, per classifier."""
    return [
        GoldItem(f"{spec.name}:{q.id}", q.text, spec.question, list(spec.tags), q.tag, spec.name)
        for spec in classifiers
        for q in spec.gold
    ]


class Annotator:
    """Joins the task log, the pool service and the output channel.

    Every task in ``crowd.tasks`` without an outcome in ``crowd.labels`` waits in the
    pool's queue: both logs are read from their start (followers), so a restart
    queues again the tasks that were waiting or being answered. The pool's workers
    come back from ``crowd.pool`` (:mod:`pe.annotator.journal`).
    """

    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self.params = ctx.params_of(AnnotatorParams)
        q = self.params.quality
        # Qualification quizzes and the loop's gold questions share one gold set.
        wants_gold = self.params.qualification > 0 or (q.enabled and q.gold_rate > 0)
        self._wants_gold = wants_gold
        self._gold: list[GoldItem] = []
        self.quality = quality_loop(self.params) if q.enabled else None
        ctx.catalog.on_added(self._add_classifier)
        ctx.catalog.on_gold(self._add_gold)
        self.pool = RetainerPool(
            pool_config(self.params), random.Random(self.params.seed), judge=self.quality
        )
        self.guard: LifeGuard | None = None
        self._clock: LoopClock | None = None
        #: Labels to write to ``crowd.labels``, and the task writing them.
        self._outbox: list[Label] = []
        self._writer: asyncio.Future[None] | None = None
        self._waiting: dict[str, Task] = {}  #: read before the pool started
        self._done = Outcomes()  #: tasks with an outcome
        self._ended: set[str] = set()  #: jobs that ended
        self.journal = PoolJournal()

    def _add_classifier(self, spec: ClassifierSpec) -> None:
        """Gold questions and the quality loop's judgement for a classifier (the
        topology's, or one added on the running pipeline)."""
        gold = gold_items([spec]) if self._wants_gold else []
        self._gold.extend(gold)
        if self.quality is not None:
            self.quality.add_topic(spec.name, spec.tags, gold)

    def _add_gold(self, spec: ClassifierSpec) -> None:
        """Gold questions an operator added to a classifier."""
        if not self._wants_gold:
            return
        known = {g.gold_id for g in self._gold}
        fresh = [g for g in gold_items([spec]) if g.gold_id not in known]
        self._gold.extend(fresh)
        if self.quality is not None:
            self.quality.add_gold(fresh)

    def start(self, crowd: CrowdAdapter, clock: LoopClock) -> None:
        """Start the pool and queue the tasks read so far, oldest first."""
        self._clock = clock
        returning = self.pool.restore(self.journal.restorable(), clock.now())
        self.guard = LifeGuard(
            self.pool,
            clock,
            on_finished=self._finished,
            on_shed=self._shed,
            observe=self._observe,
            gold=self._gold if self.params.qualification else None,
            rng=random.Random(self.params.seed),
            quality=self.quality,
        )
        self.guard.start(crowd, returning)
        if returning:
            log.info("annotator: %d worker(s) of the pool before the restart", len(returning))
        # Read at scrape time: counting workers and tasks on every event would cost
        # O(pool + queue) per event for numbers nobody reads between scrapes.
        m, p, pool = self._ctx.metrics, self._ctx.pipeline, self.pool
        m.crowd_queue.labels(p).set_function(lambda: pool.waiting)
        m.pool_workers.labels(p, "qualifying").set_function(lambda: pool.qualifying)
        m.pool_workers.labels(p, "working").set_function(lambda: pool.working)
        m.pool_workers.labels(p, "available").set_function(lambda: len(pool.available))
        m.pool_workers.labels(p, "away").set_function(lambda: pool.away)
        waiting, self._waiting = self._waiting, {}
        for task in sorted(waiting.values(), key=lambda t: t.created):
            self._submit(task)
        for job in self._ended:
            self.guard.withdraw(job)

    @property
    def started(self) -> bool:
        return self._clock is not None

    def take_task(self, task: Task) -> None:
        """A task from the log: queue it unless it already has an outcome."""
        answered = [key for key in (task.task_id, _legacy_key(task)) if key in self._done]
        for key in answered or [task.task_id]:
            self._done.task_read(key)
        if answered:
            return
        if self.guard is None:
            self._waiting[task.task_id] = task
        else:
            self._submit(task)

    def take_outcome(self, label: Label) -> None:
        """An outcome from the log (this annotator's own, or one from before a restart,
        whose answers the quality loop learns from again)."""
        key = label.task_id or _legacy_key(label)
        if label.corrected_by is not None:
            # The task's outcome came before: this tells the quality loop who was wrong.
            if self.quality is not None:
                self.quality.correct(label)
        else:
            if key not in self._done and self.quality is not None:
                self.quality.replay(label)
            self._done.read(key, gold=label.kind == "gold")
        self._waiting.pop(key, None)

    def job_ended(self, job: str) -> None:
        if job in self._ended:
            return
        self._ended.add(job)
        if self.guard is not None:
            self.guard.withdraw(job)

    async def write_journal(self) -> None:
        """Write the pool workers that changed to ``crowd.pool``."""
        if not self.started:
            return
        changed = self.journal.changes(self.pool.workers, time.time())
        if changed:
            pending = await self._ctx.publish(
                "crowd.pool", [(m.worker_id.encode(), encode(m)) for m in changed]
            )
            await self._ctx.flush(pending)

    def _submit(self, task: Task) -> None:
        if self.guard is None or self._clock is None:
            raise RuntimeError("start() the annotator first")
        age = max(time.time() - task.created, 0.0) * self._clock.speed
        labels = task.form == "label"
        q = self.params.quality
        adaptive = self.quality is not None and q.adaptive and labels and task.redundancy is None
        self.guard.submit(
            task.task_id,
            task,
            size=max(len(task.batch), 1),
            votes=q.min_answers if adaptive else task.redundancy,
            topic=task.classifier if labels else None,
            adaptive=adaptive,
            # Work is paid to a job: a classifier's training, or a submitted job.
            job=task.job or task.classifier,
            priority=task.priority,
            age=age,
        )
        if task.job is not None and task.job in self._ended:
            self.guard.withdraw(task.job)

    def _finished(self, done: Finished) -> None:
        self._send(self._label(done.task, "labeled"))

    def _shed(self, shed: Shed) -> None:
        m, p = self._ctx.metrics, self._ctx.pipeline
        if shed.reason == "queue_full":
            m.items_shed.labels(p, PE, "queue_full").inc()
        else:
            m.pool_events.labels(p, "withdrawn").inc()
        self._send(self._label(shed.task, "shed" if shed.reason == "queue_full" else "withdrawn"))

    def _send(self, label: Label) -> None:
        self._done.sent(label.task_id or _legacy_key(label))
        self._count(label)
        self._outbox.append(label)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        """Write the outbox to ``crowd.labels`` until it is empty: each turn takes
        every label that came meanwhile in one publish. One publish per label held
        one record batch per partition in flight at a time (aiokafka), so at a few
        hundred answers a second they queued until they timed out and were lost.
        A turn that fails is tried again: people were paid for those answers."""
        while self._outbox:
            labels, self._outbox = self._outbox, []
            records = [(label.item_id.encode(), encode(label)) for label in labels]
            try:
                await self._ctx.flush(await self._ctx.publish("crowd.labels", records))
            except ProducerClosed:
                self._outbox = labels + self._outbox
                log.error("the producer closed with %d crowd label(s) not written", len(labels))
                return
            except KafkaError as exc:
                self._outbox = labels + self._outbox
                log.warning("writing %d crowd label(s) failed (%r); retrying", len(labels), exc)
                await asyncio.sleep(WRITE_RETRY_S)
                continue
            self._ctx.metrics.items_out.labels(self._ctx.pipeline, PE).inc(len(labels))

    async def drain(self) -> None:
        """Write the labels on their way (the worker is stopping, no more answers come
        in over HTTP): people were paid for their answers, and the labels must not be
        lost with the process. At most ``DRAIN_TIMEOUT_S``: a label not written then
        leaves its task to be asked again after a restart."""
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=DRAIN_TIMEOUT_S)
        if self._outbox:
            log.error("stopping with %d crowd label(s) not written", len(self._outbox))

    def _observe(self, effect: Effect) -> None:
        m, p = self._ctx.metrics, self._ctx.pipeline
        if isinstance(effect, Offer) and (effect.duplicate or effect.task.gold):
            m.pool_events.labels(p, "gold" if effect.task.gold else "duplicate").inc()
        elif isinstance(effect, Finished):
            m.crowd_task_seconds.labels(p).observe(effect.seconds)
        elif isinstance(effect, Left):
            m.pool_events.labels(p, effect.reason).inc()
        elif isinstance(effect, Terminate):
            m.pool_events.labels(p, "termination").inc()
        elif isinstance(effect, Release):
            event = "release_low_quality" if effect.reason == "low_quality" else "release"
            m.pool_events.labels(p, event).inc()
        elif isinstance(effect, Recruit):
            m.pool_events.labels(p, "recruit").inc(effect.count)
        self._costs()

    def _label(self, pooled: PoolTask, status: LabelStatus) -> Label:
        task: Task = pooled.payload
        answers = [_answer(task, vote) for vote in pooled.answers]
        tag, share, posterior = None, 0.0, None
        if task.form == "label" and answers:
            tags = [a.tag for a in answers if a.tag is not None]
            verdict = self._settle(pooled) if status == "labeled" else None
            if verdict is None:
                tag, share = majority_vote(tags, min(self.params.agreement_needed, pooled.votes))
            else:
                tag = verdict.tag if verdict.tag != NA_TAG else None
                share = tags.count(tag) / len(tags) if tag is not None else 0.0
                posterior = round(verdict.posterior, 4)
            if self.quality is not None:
                # The estimates after this label's evidence, shown beside each answer
                # when an operator reviews the label.
                skill = self.quality.skill
                answers = [
                    a.model_copy(update={"accuracy": round(skill(a.worker_id, task.classifier), 4)})
                    for a in answers
                ]
        return Label(
            item_id=task.item_id,
            classifier=task.classifier,
            tag=tag,
            agreement=round(share, 4),
            kind=task.kind,
            answers=answers,
            idx=task.idx,
            val=task.val,
            ts=time.time(),
            task_id=task.task_id,
            task_created=task.created,
            job=task.job,
            form=task.form,
            status=status,
            cost=round(pooled.paid * self.params.pay_per_record, 6),
            posterior=posterior,
            **_item_of(task),
        )

    def _settle(self, pooled: PoolTask) -> Verdict | None:
        if self.quality is None:
            return None
        verdict = self.quality.settle(pooled)
        if verdict is not None and pooled.gold and pooled.answers:
            right = pooled.answers[0].value == verdict.tag
            m, p = self._ctx.metrics, self._ctx.pipeline
            m.crowd_gold.labels(p, "correct" if right else "wrong").inc()
        return verdict

    def _count(self, label: Label) -> None:
        m, p = self._ctx.metrics, self._ctx.pipeline
        for answer in label.answers:
            m.crowd_answers.labels(p, label.classifier).inc()
            m.crowd_answer_seconds.labels(p).observe(answer.latency_s)
        if label.status == "labeled":
            outcome = "agreed" if label.tag is not None else "no_agreement"
            if label.form != "label" or label.kind == "gold":
                outcome = "gold" if label.kind == "gold" else label.form
            else:
                m.crowd_label_answers.labels(p, label.classifier).observe(len(label.answers))
                if label.posterior is not None:
                    m.crowd_label_posterior.labels(p, label.classifier).observe(label.posterior)
            m.crowd_labels.labels(p, label.classifier, outcome).inc()
        log.debug(
            "label %s: %s after %d answer(s)",
            label.status,
            label.tag,
            len(label.answers),
            extra={
                "item_id": label.item_id,
                "task_id": label.task_id,
                "job_id": label.job,
                "classifier": label.classifier,
            },
        )

    def _costs(self) -> None:
        m, p, ledger = self._ctx.metrics, self._ctx.pipeline, self.pool.ledger
        m.crowd_cost.labels(p, "waiting", "pool").set(ledger.waiting_cost)
        for job in ledger.records:
            m.crowd_cost.labels(p, "work", job).set(ledger.job_cost(job))


LabelStatus = Literal["labeled", "shed", "withdrawn"]


def _item_of(task: Task) -> dict[str, Any]:
    """The item a label task asked about, as its label carries it (Label.text): the
    classifier propagates the label and revises the item's classification with it.
    A task without a signature (0: jobs) gives none; gold questions, never propagated,
    keep their text off the log."""
    if task.form != "label" or task.kind == "gold":
        return {}
    return {"text": task.text, "sig": task.sig or None, "ts_in": task.ts_in, "source": task.source}


def _legacy_key(record: Task | Label) -> str:
    """Labels written before they carried task ids match their task by item."""
    return f"{record.classifier}\x00{record.item_id}"


def _answer(task: Task, vote: Vote) -> Answer:
    value = vote.value
    common = {"task_id": task.task_id, "worker_id": vote.worker_id}
    latency = round(vote.seconds, 3)
    if task.form == "count":
        return Answer(**common, count=value if isinstance(value, int) else None, latency_s=latency)
    if task.form == "enumerate":
        values = list(value) if isinstance(value, tuple) else [str(value)]
        return Answer(**common, values=values, latency_s=latency)
    return Answer(**common, tag=str(value), latency_s=latency)


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
    operator = OperatorAccess.from_settings(settings)
    if not operator.enabled:
        log.warning(
            "operator endpoints are disabled on a server that listens beyond loopback: "
            "set operator_token (CROWDSTREAM_OPERATOR_TOKEN) to enable them"
        )
    return ApiConfig(
        token_key=key,
        token_ttl_s=settings.crowd_token_ttl_s,
        operator=operator,
        ip_rate=settings.crowd_rate_per_ip,
        ip_burst=max(int(settings.crowd_rate_per_ip * 3), 1),
        worker_rate=settings.crowd_rate_per_worker,
        worker_burst=max(int(settings.crowd_rate_per_worker * 4), 1),
    )


class AnnotatorPE:
    """The annotator PE in one worker: its logs in, the crowd's pool, labels out."""

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.annotator = Annotator(ctx)
        self.params = ctx.params_of(AnnotatorParams)
        self.web_crowd: WebCrowd | None = None
        self.logs: list[Follower] = []
        self.tasks_log: Follower | None = None

    def wire(self) -> None:
        """Create the PE's agents, timer, task and (with the web crowd) routes."""
        ctx = self.ctx
        if ctx.crowd == "web":
            self.web_crowd = WebCrowd(join_mode=ctx.settings.crowd_join)
            api = CrowdApi(self.web_crowd, self.annotator, api_config(ctx))
            ctx.endpoints.extend(api.endpoints())
            ctx.routes.extend(api.pages())
            ctx.web_closing.append(self.web_crowd.close_streams)
        ctx.draining.append(self.annotator.drain)
        # Outcomes and ended jobs first: a task already answered must not be queued.
        labels_log = ctx.follow("crowd.labels", PE, self.on_labels)
        results_log = ctx.follow("jobs.results", PE, self.on_results)
        self.tasks_log = ctx.follow("crowd.tasks", PE, self.on_tasks)
        pool_log = ctx.follow("crowd.pool", PE, self.on_pool)
        self.logs = [labels_log, results_log, self.tasks_log, pool_log]
        ctx.task(self.start_pool)
        ctx.timer(
            JOURNAL_EVERY_S, f"{ctx.pipeline}.annotator.journal", self.annotator.write_journal
        )

    async def on_tasks(self, records: Sequence[ConsumerRecord]) -> None:
        ctx = self.ctx
        live = self.tasks_log is not None and self.tasks_log.caught_up.is_set()
        for record in records:
            try:
                task = decode(Task, record.value)
            except DecodeError as exc:
                # A restart reads the log again: reject each bad record once.
                if live:
                    ctx.metrics.items_in.labels(ctx.pipeline, PE).inc()
                    await (await ctx.reject(PE, exc.kind, str(exc), record.value))
                continue
            if live:
                ctx.metrics.items_in.labels(ctx.pipeline, PE).inc()
            self.annotator.take_task(task)

    def on_labels(self, records: Sequence[ConsumerRecord]) -> None:
        # The learner rejects and counts bad labels.
        for label in decode_valid(Label, (record.value for record in records)):
            self.annotator.take_outcome(label)

    def on_pool(self, records: Sequence[ConsumerRecord]) -> None:
        if self.annotator.started:
            return  # the log was read for the restore; later records are this pool's own
        for record in records:
            try:
                self.annotator.journal.read(decode(PoolMember, record.value))
            except DecodeError as exc:
                log.warning(
                    "crowd.pool: a record at offset %d is not a pool worker: %s", record.offset, exc
                )

    def on_results(self, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            status = job_status(record.value)
            if status is not None and status.status in TERMINAL:
                self.annotator.job_ended(status.job_id)

    async def start_pool(self) -> None:
        """Once every log is read, start the pool on its crowd."""
        for log_ in self.logs:
            await log_.caught_up.wait()
        annotator, params = self.annotator, self.params
        if self.web_crowd is not None:
            # People work in real time: the clock runs at speed 1 whatever is set.
            annotator.start(self.web_crowd, LoopClock())
        else:
            clock = LoopClock(params.speed)
            crowd: CrowdAdapter
            if self.ctx.crowd == "simulated":
                population = dataclasses.replace(
                    PRESETS[params.population], spammer_share=params.spammers
                )
                crowd = SimulatedCrowd(population, clock, seed=params.seed)
            else:  # package.module:factory, checked by the settings
                crowd = make_crowd(self.ctx.crowd, CrowdSetup(clock, params))
            annotator.start(crowd, clock)
        log.info("annotator: pool started with %d task(s) waiting", annotator.pool.waiting)


def register(ctx: PipelineContext) -> None:
    AnnotatorPE(ctx).wire()
