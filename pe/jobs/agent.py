"""The jobs PE's wiring: logs in, tasks and results out, the HTTP API."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from aiokafka import ConsumerRecord

from channels.codec import DecodeError, decode, encode
from channels.jobs import JobCommand, JobItem, decode_result
from channels.records import Label, Task
from pe.common.featurebatch import FeatureBatch, decode_feature_batch, skipping_decoder
from pe.common.http import OperatorAccess
from pe.common.linear import feature_matrix
from pe.common.modelbook import model_book
from pe.jobs.api import JobsApi
from pe.jobs.counting import CountingRun
from pe.jobs.intake import Featurizer, read_command
from pe.jobs.manager import JobManager
from pe.jobs.run import JobRun, Plan, assured
from pe.jobs.windows import Reservoir
from pe.params import AnnotatorParams, ClassifierSpec, CollectorParams, FeaturesParams
from runtime.context import PipelineContext
from runtime.dataflow import Pending
from runtime.follower import Follower

__all__ = ["JobsPE", "register"]

log = logging.getLogger(__name__)

PE = "jobs"
#: How often jobs plan tasks and report; status records repeat every HEARTBEAT_S.
TICK_S = 0.5
HEARTBEAT_S = 5.0
#: Items a counting or enumeration window keeps as its sample.
WINDOW_SAMPLE = 5000


class JobsPE:
    """The jobs PE in one worker: its logs in, tasks and results out, the HTTP API.

    Every decision is in a log (event sourcing): on start the logs are read from
    their start into a replay, applied once all are read, then events apply live.
    """

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.annotator = ctx.params_of(AnnotatorParams)
        self.dimensions = ctx.params_of(FeaturesParams).dimensions
        self.featurizer = Featurizer(ctx.params_of(FeaturesParams))
        self.book = model_book(ctx)
        self.classifiers: dict[str, ClassifierSpec] = {}
        self.manager = JobManager(self.classifiers, quality=self.annotator.quality)
        self.gold: dict[str, list[tuple[str, str]]] = {}
        ctx.catalog.on_added(self.add_classifier)
        ctx.catalog.on_gold(self.add_gold)
        self.windows: dict[str, Reservoir] = {}  #: open counting/enumeration windows
        self.ready = asyncio.Event()
        self.replay: dict[str, list[Any]] = {
            "commands": [],
            "tasks": [],
            "labels": [],
            "results": [],
        }
        self.last_heartbeat = 0.0
        self.logs: list[Follower] = []

    def add_classifier(self, spec: ClassifierSpec) -> None:
        """Take jobs on ``spec`` (a classifier of the topology, or one added since)."""
        self.add_gold(spec)
        self.manager.workers.register(spec.name, spec.tags)

    def add_gold(self, spec: ClassifierSpec) -> None:
        """Calibrate counting jobs with the gold questions an operator added too."""
        self.classifiers[spec.name] = spec
        self.gold[spec.name] = [(q.text, q.tag) for q in spec.gold]

    def wire(self) -> None:
        """Create the PE's agents, timer, task and routes."""
        ctx, manager = self.ctx, self.manager
        self.logs = [
            ctx.follow(
                "jobs",
                PE,
                self.handler(
                    "commands",
                    partial(read_command, featurizer=self.featurizer),
                    manager.command,
                    owned=True,
                ),
            ),
            ctx.follow("crowd.tasks", PE, self.handler("tasks", job_task, manager.task)),
            ctx.follow("crowd.labels", PE, self.handler("labels", job_label, manager.outcome)),
            ctx.follow("jobs.results", PE, self.handler("results", decode_result, manager.result)),
        ]
        ctx.durable(PE, self.snapshot)
        operator = OperatorAccess.from_settings(ctx.settings)
        if not operator.enabled:
            log.warning(
                "the jobs HTTP API is disabled on a server that listens beyond loopback: "
                "set operator_token (CROWDSTREAM_OPERATOR_TOKEN) to enable it; "
                "`crowdstream job` still works"
            )
        api = JobsApi(
            manager,
            self.send,
            operator=operator,
            max_body_bytes=ctx.params_of(CollectorParams).max_body_bytes,
            label_tasks_only=ctx.crowd == "web",
        )
        ctx.endpoints.extend(api.endpoints())
        ctx.consume("items.features", PE, skipping_decoder(self.dimensions), self.take_stream)
        ctx.task(self.start)
        ctx.timer(TICK_S, f"{ctx.pipeline}.jobs.tick", self.tick)

    def snapshot(self) -> dict[str, object]:
        """Each job's state as its logs rebuild it."""
        return {
            job_id: {
                "progress": run.progress(),
                "cost": round(run.cost, 6),
                "emitted": sorted(run.emitted),
                "terminal": run.terminal,
            }
            for job_id, run in sorted(self.manager.runs.items())
        }

    # -- the logs --------------------------------------------------------------

    def handler(
        self,
        kind: str,
        parse: Callable[[bytes | None], Any],
        apply: Callable[[Any], None],
        *,
        owned: bool = False,
    ) -> Callable[[Sequence[ConsumerRecord]], Awaitable[None]]:
        """``parse`` may be a coroutine (a job's items are read a chunk at a time:
        pe.jobs.intake). ``owned``: the topic is this PE's to police (bad records are
        rejected here; on the others, by the PE that owns them)."""

        async def handle(records: Sequence[ConsumerRecord]) -> None:
            for record in records:
                try:
                    event = parse(record.value)
                    if inspect.isawaitable(event):
                        event = await event
                except DecodeError as exc:
                    # A restart reads the log again: reject each bad record once, live.
                    if owned and self.ready.is_set():
                        await (await self.ctx.reject(PE, exc.kind, str(exc), record.value))
                    continue
                if event is None:
                    continue
                if self.ready.is_set():
                    apply(event)
                else:
                    self.replay[kind].append(event)

        return handle

    async def start(self) -> None:
        """Once every log is read: apply the replay, rebuild open windows, go live."""
        manager = self.manager
        for follower in self.logs:
            await follower.caught_up.wait()
        await self.book.caught_up.wait()
        # Submissions first, then what became of them: the logs are read side by side.
        for command in self.replay["commands"]:
            manager.command(command)
        for task in self.replay["tasks"]:
            manager.task(task)
        for label in self.replay["labels"]:
            manager.outcome(label)
        for result in self.replay["results"]:
            manager.result(result)
        self.replay.clear()
        for job_id, run in manager.runs.items():
            if run.sampling and run.published:  # open before this start: sample lost
                await self.rebuild_window(job_id, run)
        self.ready.set()
        log.info("jobs: %d job(s) in the log", len(manager.runs))

    async def rebuild_window(self, job_id: str, run: JobRun) -> None:
        """Read the window's items again from ``items.features``, from its opening."""
        window = run.window
        if window is None:
            return
        sample = self.sample_of(job_id)

        def take(records: Sequence[ConsumerRecord]) -> None:
            batch, _ = decode_feature_batch(records, self.dimensions)
            offer(sample, window.spec.count, self.window_items(run, batch))

        ctx = self.ctx
        reader = ctx.new_follower(
            ctx.bootstrap_servers,
            ctx.topics["items.features"].name,
            take,
            since_ms=int(window.opened * 1000),
            security=ctx.security,
        )
        reading = asyncio.ensure_future(reader.run())
        try:
            await reader.caught_up.wait()
        finally:
            reading.cancel()
        log.info("job %s: window rebuilt, %d item(s) seen so far", job_id, sample.seen)

    async def send(self, command: JobCommand) -> None:
        await (await self.ctx.send("jobs", command.job_id, encode(command)))

    # -- each tick ---------------------------------------------------------------

    def plan(self, now: float) -> Plan:
        book, annotator = self.book, self.annotator
        metrics = {name: (u.version, *assured(u.metrics)) for name, u in book.updates.items()}
        return Plan(
            now=now,
            pay_per_record=annotator.pay_per_record,
            redundancy=annotator.most_answers,
            mitigation=annotator.mitigation,
            in_flight=annotator.pool_size,
            classifiers=self.classifiers,
            models=dict(book.compiled),
            model_metrics=metrics,
            gold=self.gold,
        )

    def tag_probability(
        self, classifier: str, tag: str, rows: list[tuple[list[int], list[float]]]
    ) -> list[float]:
        model = self.book.compiled.get(classifier)
        if model is None or tag not in model.classes or not rows:
            return [0.0] * len(rows)
        probs = model.predict_proba(feature_matrix(rows, model.n_features))
        return [float(p) for p in probs[:, model.classes.index(tag)]]

    async def tick(self) -> None:
        """Score model-assisted counts, close windows, and step every job."""
        if not self.ready.is_set():
            return
        ctx, manager = self.ctx, self.manager
        now = time.time()
        for run in manager.runs.values():
            if isinstance(run, CountingRun) and run.spec.method == "model":
                model_version = self.book.version(run.spec.classifier)
                run.score(
                    model_version,
                    partial(self.tag_probability, run.spec.classifier, run.spec.tag),
                )
        await self.close_windows(now)
        heartbeat = now - self.last_heartbeat >= HEARTBEAT_S
        if heartbeat:
            self.last_heartbeat = now
        step = manager.step(self.plan(now), heartbeat=heartbeat)
        pending = []
        for task in step.tasks:
            pending.append(await ctx.send("crowd.tasks", task.item_id, encode(task)))
            ctx.metrics.job_tasks.labels(ctx.pipeline, manager.runs[str(task.job)].spec.kind).inc()
        results: list[tuple[str, bytes]] = [(r.job_id, encode(r)) for r in step.results]
        results += [(s.job_id, encode(s)) for s in step.statuses]
        for job_id, value in results:
            pending.append(await ctx.send("jobs.results", job_id, value))
        await ctx.flush(pending)
        states = Counter((run.spec.kind, run.status) for run in manager.runs.values())
        for kind in ("labeling", "counting", "enumeration"):
            for status in ("queued", "running", "done", "cancelled", "failed"):
                ctx.metrics.jobs.labels(ctx.pipeline, kind, status).set(states[(kind, status)])

    async def close_windows(self, now: float) -> None:
        """Write the sample of every counting/enumeration window that just closed."""
        for job_id, run in self.manager.runs.items():
            window = run.window
            if window is None or not run.sampling:
                self.windows.pop(job_id, None)
                continue
            sample = self.sample_of(job_id)
            spec = window.spec
            timed_out = spec.seconds is not None and now >= window.opened + spec.seconds
            full = spec.count is not None and sample.seen >= spec.count
            if timed_out or full:
                del self.windows[job_id]
                await self.send(
                    JobCommand(
                        action="window",
                        job_id=job_id,
                        items=sample.items,
                        seen=sample.seen,
                        predicted_sum=sample.predicted_sum,
                        ts=now,
                    )
                )
            else:
                window.seen = sample.seen  # for the status while the window fills

    # -- the stream --------------------------------------------------------------

    async def take_stream(self, batch: FeatureBatch) -> Pending:
        """Stream items into the open windows: a labeling window's go to the log at
        once, a counting or enumeration window's into its sample."""
        if not self.ready.is_set():
            return []
        ctx = self.ctx
        pending: Pending = []
        for job_id, run in self.manager.runs.items():
            window = run.window
            if window is None or window.closed or run.terminal:
                continue
            chosen = self.window_items(run, batch)
            if not chosen:
                continue
            if run.plans_while_open:
                room = (window.spec.count or len(chosen)) - window.seen
                chosen = chosen[: max(room, 0)]
                if chosen:
                    command = JobCommand(
                        action="items", job_id=job_id, items=chosen, ts=time.time()
                    )
                    pending.append(await ctx.send("jobs", job_id, encode(command)))
                    window.seen += len(chosen)  # the log echo sets the same number
            else:
                offer(self.sample_of(job_id), window.spec.count, chosen)
        ctx.metrics.items_in.labels(ctx.pipeline, PE).inc(len(batch))
        return pending

    def sample_of(self, job_id: str) -> Reservoir:
        if job_id not in self.windows:
            self.windows[job_id] = Reservoir(WINDOW_SAMPLE, random.Random(job_id))
        return self.windows[job_id]

    def window_items(self, run: JobRun, batch: FeatureBatch) -> list[JobItem]:
        """The batch's items the job's window takes, as job items."""
        window = run.window
        if window is None:
            return []
        picked = [
            (item, row)
            for item, row in zip(batch.items, batch.rows, strict=True)
            if window.takes(item.text, item.source, item.ts_in)
        ]
        predicted = [0.0] * len(picked)
        if isinstance(run, CountingRun) and run.spec.method == "model":
            rows = [r for _, r in picked]
            predicted = self.tag_probability(run.spec.classifier, run.spec.tag, rows)
        return [
            JobItem(
                id=item.id,
                text=item.text,
                meta=item.meta,
                idx=row[0],
                val=row[1],
                predicted=round(p, 6),
            )
            for (item, row), p in zip(picked, predicted, strict=True)
        ]


def job_task(raw: bytes | None) -> Task | None:
    """A job's task (training tasks are the task generator's)."""
    task = decode(Task, raw)
    return task if task.job is not None else None


def job_label(raw: bytes | None) -> Label | None:
    """A job's outcome, or a gold answer (the worker model learns from those)."""
    label = decode(Label, raw)
    return label if label.job is not None or label.kind == "gold" else None


def offer(sample: Reservoir, count: int | None, items: list[JobItem]) -> None:
    for item in items:
        if count is not None and sample.seen >= count:
            return
        sample.offer(item)


def register(ctx: PipelineContext) -> None:
    JobsPE(ctx).wire()
