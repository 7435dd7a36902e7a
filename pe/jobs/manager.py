"""The jobs of a pipeline: events in, tasks and results out.

Pure logic. :class:`JobManager` applies the events of every job's logs (commands
from ``jobs``, the tasks it issued from ``crowd.tasks``, their outcomes from
``crowd.labels``, what it already reported from ``jobs.results``) to one
:class:`~pe.jobs.run.JobRun` per job, and on each :meth:`step` returns the tasks
to issue, the item results and the status records to write. Replaying the same
logs after a restart rebuilds the same state, so jobs survive restarts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from channels.jobs import (
    CountingJob,
    EnumerationJob,
    ItemResult,
    JobCommand,
    JobStatus,
    LabelingJob,
)
from channels.records import NA_TAG, Label, Task
from pe.common.quality import WorkerQuality, worker_model
from pe.jobs.counting import CountingRun
from pe.jobs.ended import EndedRun
from pe.jobs.enumeration import EnumerationRun
from pe.jobs.labeling import LabelingRun
from pe.jobs.run import JobRun, Plan
from pe.params import ClassifierSpec, QualityParams

__all__ = ["JobManager", "Step", "check_spec"]

log = logging.getLogger(__name__)

JobSpecT = LabelingJob | CountingJob | EnumerationJob


def check_spec(spec: JobSpecT, classifiers: Mapping[str, ClassifierSpec]) -> str | None:
    """Why ``spec`` cannot run on this pipeline, or None."""
    if isinstance(spec, LabelingJob | CountingJob):
        known = classifiers.get(spec.classifier)
        if known is None:
            names = ", ".join(sorted(classifiers))
            return f"unknown classifier {spec.classifier!r} (this pipeline has: {names})"
        if isinstance(spec, CountingJob) and spec.tag not in known.tags:
            return f"tag {spec.tag!r} is not one of {spec.classifier}'s tags: {known.tags}"
        if isinstance(spec, CountingJob) and spec.tag == NA_TAG:
            return "N/A cannot be counted"
    return None


def _run(job_id: str, spec: JobSpecT, created: float, workers: WorkerQuality) -> JobRun:
    if isinstance(spec, LabelingJob):
        return LabelingRun(job_id, spec, created)
    if isinstance(spec, CountingJob):
        return CountingRun(job_id, spec, created, workers=workers)
    return EnumerationRun(job_id, spec, created)


@dataclass
class Step:
    tasks: list[Task] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    statuses: list[JobStatus] = field(default_factory=list)


@dataclass
class JobManager:
    classifiers: Mapping[str, ClassifierSpec]
    #: The quality loop's parameters: its prior for an unknown worker.
    quality: QualityParams = field(default_factory=QualityParams)
    runs: dict[str, JobRun] = field(default_factory=dict)
    #: Events of jobs not submitted yet (logs are read side by side).
    _early: dict[str, list[Task | Label | JobStatus | ItemResult | JobCommand]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _reported: dict[str, dict[str, object]] = field(default_factory=dict)
    #: Ended jobs that had no event since their last step: nothing to redo for them.
    _settled: set[str] = field(default_factory=set)
    #: The quality loop's model of the workers, from its prior and the gold answers
    #: on ``crowd.labels``: counting jobs correct for worker error with it.
    workers: WorkerQuality = field(init=False)

    def __post_init__(self) -> None:
        self.workers = worker_model(self.quality, self.classifiers.values())

    def command(self, command: JobCommand) -> None:
        run = self.runs.get(command.job_id)
        if command.action == "submit":
            if run is not None or command.spec is None:
                return  # a repeated submission: the first one stands
            run = _run(command.job_id, command.spec, command.ts, self.workers)
            self.runs[command.job_id] = run
            problem = check_spec(command.spec, self.classifiers)
            if problem is not None:
                run.finish("failed", problem, command.ts)
            for event in self._early.pop(command.job_id, []):
                self._apply(event)
            return
        if run is None:
            self._early[command.job_id].append(command)
            return
        self._settled.discard(command.job_id)
        if command.action == "cancel":
            run.finish("cancelled", command.reason or "cancelled by the user", command.ts)
        elif command.action == "items":
            run.take_items(command.items)
        elif command.action == "window":
            run.close_window(command.items, command.seen, command.predicted_sum)
        elif command.action == "shed":
            run.take_shed(command.shed)

    def task(self, task: Task) -> None:
        self._route(task.job, task)

    def outcome(self, label: Label) -> None:
        """A job's outcome goes to its run; a gold answer teaches the worker model.
        Not the agreement of redundant answers: under adaptive redundancy the loop's
        online estimates from it are biased toward error (docs/jobs.md)."""
        if label.kind == "gold":
            self.workers.learn(label)
        self._route(label.job, label)

    def result(self, result: JobStatus | ItemResult) -> None:
        self._route(result.job_id, result)

    def _route(self, job: str | None, event: Task | Label | JobStatus | ItemResult) -> None:
        if job is None:
            return
        if job in self.runs:
            self._apply(event)
        else:
            self._early[job].append(event)

    def _apply(self, event: Task | Label | JobStatus | ItemResult | JobCommand) -> None:
        if isinstance(event, JobCommand):
            self.command(event)
            return
        job = str(event.job_id if isinstance(event, JobStatus | ItemResult) else event.job)
        self._settled.discard(job)
        run = self.runs[job]
        if isinstance(event, Task):
            run.take_task(event)
        elif isinstance(event, Label):
            run.take_outcome(event)
        elif isinstance(event, ItemResult):
            run.take_result(event)
        else:
            run.published = True
            self._reported[event.job_id] = event.model_dump(exclude={"updated"})
            if event.status in ("done", "cancelled", "failed"):
                run.finish(event.status, event.reason, event.updated)

    def step(self, plan: Plan, *, heartbeat: bool = False) -> Step:
        """Advance every job. Status records are returned when they changed (or for
        every running job when ``heartbeat``)."""
        out = Step()
        released: dict[str, JobRun] = {}
        for job_id, run in self.runs.items():
            if job_id in self._settled:
                continue
            was_terminal = run.terminal
            try:
                if not was_terminal:
                    out.tasks.extend(run.step(plan))
                out.results.extend(run.results(plan))
            except Exception as exc:  # one job's fault must not stop the others
                log.exception("job %s failed", job_id, extra={"job_id": job_id})
                run.finish("failed", f"internal error: {type(exc).__name__}: {exc}"[:500], plan.now)
            record = run.status_record(plan.now)
            fingerprint = record.model_dump(exclude={"updated"})
            changed = self._reported.get(job_id) != fingerprint
            if changed or (heartbeat and not was_terminal):
                self._reported[job_id] = fingerprint
                if changed or not run.terminal:
                    out.statuses.append(record)
                    run.published = True
            if run.terminal:
                self._settled.add(job_id)
                if run.releasable():
                    released[job_id] = EndedRun.of(run, record)
        self.runs.update(released)
        return out
