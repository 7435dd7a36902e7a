"""The ``crowdstream job`` commands: talk to a pipeline's jobs through Kafka."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from channels.codec import DecodeError, encode
from channels.jobs import TERMINAL, JobCommand, JobStatus, decode_result
from config import Settings
from pe.jobs.manager import check_spec
from pe.params import ClassifierSpec
from pipelines.jobfile import load_job_file

__all__ = ["cancel_job", "latest_statuses", "show_status", "submit_job"]


async def _send(settings: Settings, topic: str, command: JobCommand) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        **settings.security().client_options(),
        acks="all",
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, encode(command), key=command.job_id.encode())
    finally:
        await producer.stop()


async def submit_job(
    settings: Settings,
    pipeline: str,
    classifiers: Mapping[str, ClassifierSpec] | None,
    path: Path,
    wait: bool,
    wait_s: float | None,
) -> int:
    """Submit the job file at ``path`` to ``pipeline``. With ``classifiers`` (the
    pipeline's topology is known here) the spec is checked first; without, the
    pipeline's jobs PE checks it and fails the job with the reason."""
    spec = load_job_file(path)
    problem = check_spec(spec, classifiers) if classifiers is not None else None
    if problem is not None:
        raise ValueError(problem)
    job_id = spec.job_id or uuid.uuid4().hex
    command = JobCommand(action="submit", job_id=job_id, spec=spec, ts=time.time())
    await _send(settings, f"{pipeline}.jobs", command)
    print(f"submitted job {job_id} to {pipeline}.jobs", flush=True)
    if wait:
        return await show_status(settings, pipeline, job_id, True, wait_s)
    return 0


async def cancel_job(settings: Settings, pipeline: str, job_id: str) -> int:
    command = JobCommand(
        action="cancel", job_id=job_id, reason="cancelled by the user", ts=time.time()
    )
    await _send(settings, f"{pipeline}.jobs", command)
    print(f"asked to cancel job {job_id}", flush=True)
    return 0


async def latest_statuses(
    settings: Settings,
    pipeline: str,
    *,
    until: float,
    stop: str | None = None,
    on_status: object = None,
) -> dict[str, JobStatus]:
    """Read ``jobs.results`` from its start until ``until`` (epoch seconds), or until
    job ``stop`` reaches a final state; the latest status of each job."""
    consumer = AIOKafkaConsumer(
        f"{pipeline}.jobs.results",
        bootstrap_servers=settings.bootstrap_servers,
        **settings.security().client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    latest: dict[str, JobStatus] = {}
    try:
        while time.time() < until:
            batches = await consumer.getmany(timeout_ms=300)
            records = [r for batch in batches.values() for r in batch]
            if not records and stop is None:
                break
            for record in records:
                try:
                    result = decode_result(record.value)
                except DecodeError:
                    continue
                if isinstance(result, JobStatus):
                    latest[result.job_id] = result
                    if callable(on_status) and result.job_id == stop:
                        on_status(result)
            if stop is not None and stop in latest and latest[stop].status in TERMINAL:
                break
    finally:
        await consumer.stop()
    return latest


def _line(status: JobStatus) -> str:
    progress = ", ".join(f"{k} {v}" for k, v in status.progress.items() if v)
    cost = f"cost {status.cost:.2f}/{status.budget:.2f}"
    text = f"{status.job_id}  {status.kind}  {status.status}  {cost}"
    if status.reason:
        text += f"  ({status.reason})"
    return f"{text}\n    {progress}"


async def show_status(
    settings: Settings, pipeline: str, job_id: str | None, wait: bool, wait_s: float | None
) -> int:
    until = time.time() + (wait_s if wait_s is not None else (86400.0 if wait else 10.0))
    seen: list[str] = []

    def show(status: JobStatus) -> None:
        line = _line(status)
        if not seen or seen[-1] != line:
            seen.append(line)
            print(line, flush=True)

    latest = await latest_statuses(
        settings,
        pipeline,
        until=until,
        stop=job_id if wait else None,
        on_status=show if wait else None,
    )
    if job_id is None:
        for status in latest.values():
            print(_line(status))
        return 0
    found = latest.get(job_id)
    if found is None:
        print(f"crowdstream job: no status for job {job_id!r} yet", file=sys.stderr)
        return 1
    if not wait:
        print(orjson.dumps(found.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
    return 0 if found.status != "failed" else 1
