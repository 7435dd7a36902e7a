"""The jobs HTTP API: submit, list, inspect and cancel jobs.

``POST /api/v1/jobs`` validates a job and appends its submission to the job log
(``jobs``); the jobs PE takes it from there. Reads come from the jobs PE's state.
Every call is an operator call (pe.common.http.OperatorAccess).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

from pydantic import BaseModel, Field, RootModel

from channels.jobs import ItemResult, JobCommand, JobSpec, JobStatus
from pe.common.api import Body, Call, Endpoint
from pe.common.http import HttpError, OperatorAccess
from pe.jobs.manager import JobManager, check_spec
from pe.jobs.run import JobRun

__all__ = ["JobsApi"]

Submit = Callable[[JobCommand], Awaitable[None]]
PREFIX = "/api/v1/jobs"


class JobSubmission(RootModel[JobSpec]):
    """A labeling, counting or enumeration job (``kind``)."""


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["queued", "cancelling"]
    href: str


class JobList(BaseModel):
    jobs: list[JobStatus] = Field(description="Every job, without estimates and windows.")


class ResultsPage(BaseModel):
    offset: int = Field(0, ge=0)
    limit: int = Field(1000, ge=1, le=10_000)


class JobResults(BaseModel):
    total: int
    offset: int
    results: list[ItemResult]


class JobsApi:
    def __init__(
        self,
        manager: JobManager,
        submit: Submit,
        *,
        operator: OperatorAccess,
        max_body_bytes: int,
        label_tasks_only: bool = False,
    ) -> None:
        """``label_tasks_only``: the crowd answers label tasks only (the web page)."""
        self._label_only = label_tasks_only
        self._manager = manager
        self._submit = submit
        self._operator = operator
        self._max_body = max_body_bytes

    def endpoints(self) -> list[Endpoint]:
        job = partial(Endpoint, access=self._operator, tag="jobs")
        one = f"{PREFIX}/{{job_id}}"
        return [
            job(
                "POST",
                PREFIX,
                "submit_job",
                "Submit a job; it is queued on the job log.",
                run=self.create,
                body=Body(JobSubmission, self._max_body),
                response=JobAccepted,
                status=202,
                errors=(409,),
            ),
            job("GET", PREFIX, "list_jobs", "Every job.", run=self.list, response=JobList),
            job(
                "GET",
                one,
                "show_job",
                "A job's state, progress, cost and estimate.",
                run=self.show,
                response=JobStatus,
                errors=(404,),
            ),
            job(
                "GET",
                f"{one}/results",
                "job_results",
                "A labeling job's item results, a page at a time.",
                run=self.results,
                query=ResultsPage,
                response=JobResults,
                errors=(404,),
            ),
            job(
                "POST",
                f"{one}/cancel",
                "cancel_job",
                "Cancel a job.",
                run=self.cancel,
                response=JobAccepted,
                status=202,
                errors=(404, 409),
            ),
        ]

    def _run(self, call: Call) -> JobRun:
        run = self._manager.runs.get(call.request.match_info["job_id"])
        if run is None:
            raise HttpError(404, "no such job (a job just submitted shows up within a second)")
        return run

    async def create(self, call: Call) -> JobAccepted:
        spec: JobSpec = call.body.root
        problem = check_spec(spec, self._manager.classifiers)
        needs_page = spec.kind == "enumeration" or getattr(spec, "method", "label") == "count"
        if problem is None and self._label_only and needs_page:
            problem = "the web crowd's page answers label tasks only: use another method"
        if problem is not None:
            raise HttpError(422, problem)
        job_id = spec.job_id or uuid.uuid4().hex
        if job_id in self._manager.runs:
            raise HttpError(409, f"job {job_id!r} exists")
        await self._submit(JobCommand(action="submit", job_id=job_id, spec=spec, ts=time.time()))
        return JobAccepted(job_id=job_id, status="queued", href=f"{PREFIX}/{job_id}")

    async def list(self, call: Call) -> JobList:
        now = time.time()
        brief = {"estimate": None, "window": None}
        runs = self._manager.runs.values()
        return JobList(jobs=[run.status_record(now).model_copy(update=brief) for run in runs])

    async def show(self, call: Call) -> JobStatus:
        return self._run(call).status_record(time.time())

    async def results(self, call: Call) -> JobResults:
        run = self._run(call)
        page: ResultsPage = call.query
        total, chosen = run.result_page(page.offset, page.limit)
        return JobResults(total=total, offset=page.offset, results=chosen)

    async def cancel(self, call: Call) -> JobAccepted:
        run = self._run(call)
        if run.terminal:
            raise HttpError(409, f"job {run.job_id!r} is already {run.status}")
        reason = "cancelled by the operator"
        await self._submit(
            JobCommand(action="cancel", job_id=run.job_id, reason=reason, ts=time.time())
        )
        return JobAccepted(job_id=run.job_id, status="cancelling", href=f"{PREFIX}/{run.job_id}")
