"""The jobs HTTP API: submit, list, inspect and cancel jobs.

``POST /api/v1/jobs`` validates a job and appends its submission to the job log
(``jobs``); the jobs PE takes it from there. Reads come from the jobs PE's state.
Every call is an operator call (pe.common.http.OperatorAccess).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from channels.jobs import JobCommand, JobSpec
from pe.common.http import HttpError, OperatorAccess, read_body, require_json
from pe.jobs.manager import JobManager, check_spec

__all__ = ["JobsApi"]

Submit = Callable[[JobCommand], Awaitable[None]]
_SPEC: TypeAdapter[Any] = TypeAdapter(JobSpec)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(p) for p in err["loc"]], "msg": err["msg"]} for err in exc.errors()[:20]]


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

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/jobs", self._guarded(self.create)),
            web.get("/api/v1/jobs", self._guarded(self.list)),
            web.get("/api/v1/jobs/{job_id}", self._guarded(self.show)),
            web.get("/api/v1/jobs/{job_id}/results", self._guarded(self.results)),
            web.post("/api/v1/jobs/{job_id}/cancel", self._guarded(self.cancel)),
        ]

    def _guarded(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                self._operator.check(request)
                return await handler(request)
            except HttpError as exc:
                return _error(exc.status, exc.message)

        return guarded

    async def create(self, request: web.Request) -> web.StreamResponse:
        require_json(request)
        body = await read_body(request, self._max_body)
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"invalid JSON: {exc}")
        try:
            spec = _SPEC.validate_python(raw)
        except ValidationError as exc:
            return _error(422, "invalid job", details=_errors(exc))
        problem = check_spec(spec, self._manager.classifiers)
        needs_page = spec.kind == "enumeration" or getattr(spec, "method", "label") == "count"
        if problem is None and self._label_only and needs_page:
            problem = "the web crowd's page answers label tasks only: use another method"
        if problem is not None:
            return _error(422, problem)
        job_id = spec.job_id or uuid.uuid4().hex
        if job_id in self._manager.runs:
            return _error(409, f"job {job_id!r} exists")
        await self._submit(JobCommand(action="submit", job_id=job_id, spec=spec, ts=time.time()))
        return web.json_response(
            {"job_id": job_id, "status": "queued", "href": f"/api/v1/jobs/{job_id}"}, status=202
        )

    async def list(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        jobs = [
            run.status_record(now).model_dump(mode="json", exclude={"estimate", "window"})
            for run in self._manager.runs.values()
        ]
        return web.json_response({"jobs": jobs})

    async def show(self, request: web.Request) -> web.StreamResponse:
        run = self._manager.runs.get(request.match_info["job_id"])
        if run is None:
            return _error(404, "no such job (a job just submitted shows up within a second)")
        return web.json_response(run.status_record(time.time()).model_dump(mode="json"))

    async def results(self, request: web.Request) -> web.StreamResponse:
        run = self._manager.runs.get(request.match_info["job_id"])
        if run is None:
            return _error(404, "no such job")
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _error(400, "offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= 10_000:
            return _error(400, "offset must be >= 0 and limit in 1..10000")
        results = list(run.item_results.values())
        page = [r.model_dump(mode="json") for r in results[offset : offset + limit]]
        return web.json_response({"total": len(results), "offset": offset, "results": page})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        run = self._manager.runs.get(job_id)
        if run is None:
            return _error(404, "no such job")
        if run.terminal:
            return _error(409, f"job {job_id!r} is already {run.status}")
        reason = "cancelled by the operator"
        await self._submit(
            JobCommand(action="cancel", job_id=job_id, reason=reason, ts=time.time())
        )
        return web.json_response({"job_id": job_id, "status": "cancelling"}, status=202)
