"""Jobs while the stream is pushed at 3x the rate the worker keeps up with."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.client import push_lines
from pipelines.sample import load_sample
from tests.integration.conftest import Worker, start_worker, wait_until, write_topology

pytestmark = pytest.mark.integration

PIPELINE = "jload"
MARKED = 200  #: stream items a protected counting window must see, all of them


def _job(worker: Worker, job_id: str) -> dict[str, Any]:
    status, body = worker.get(f"/api/v1/jobs/{job_id}")
    return orjson.loads(body) if status == 200 else {}


def _books(worker: Worker, pe: str) -> tuple[float, ...]:
    return tuple(
        worker.metric(f"crowdstream_items_{kind}_total", pe=pe)
        for kind in ("in", "out", "rejected", "shed")
    )


def _stream(n: int, offset: int, sample: list[dict[str, Any]]) -> list[bytes]:
    lines: list[bytes] = []
    for i in range(n):
        record = sample[(offset + i) % len(sample)]
        text = record["text"]
        if (offset + i) % (n // MARKED) == 0 and len(lines) // (n // MARKED) < MARKED:
            text = "zebrawater " + text  # the counting window's filter word
        lines.append(orjson.dumps({"id": f"L{offset + i}", "text": text, "meta": record["meta"]}))
    return lines


async def test_jobs_finish_with_balanced_books_at_3x_the_sustainable_rate(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topology = write_topology(
        tmp_path,
        PIPELINE,
        shedding={"enabled": True, "max_age_s": 0.5, "min_backlog": 500, "max_drain_s": 1.0},
        annotator={"speed": 200.0, "pool_size": 8, "redundancy": 3},
        taskgen={"label_budget": 60, "max_tasks_per_minute": 6000, "round_interval_s": 0.2},
    )
    worker = start_worker(broker, topology, tmp_path)
    sample = load_sample()
    try:
        # Calibrate: items a second the worker fully processes (not shed) while a
        # burst pushed as fast as possible keeps it busy.
        warm = 6000
        started = time.monotonic()
        await push_lines([broker.bootstrap], PIPELINE, _stream(warm, 10_000_000, sample))
        assert await wait_until(lambda: _books(worker, "features")[0] >= warm, timeout_s=120)
        fin, fout, frej, _ = _books(worker, "features")
        sustainable = (fout + frej) / (time.monotonic() - started)

        jobs = [
            {
                "kind": "counting",
                "job_id": "load-count",
                "classifier": "aid_related",
                "tag": "yes",
                # Intervals corrected for worker error need the crowd measured: gold
                # questions, and answers. A 0.3-wide interval took 135-145 of the
                # window's 200 items (3 runs) and once asked all 200 at 0.319; 0.4
                # leaves the window and the budget room.
                "budget": 120,
                "gold_share": 0.4,
                "ci_width": 0.4,
                "priority": 7,
                "stream": {"count": MARKED, "seconds": 120, "filter": {"contains": ["zebrawater"]}},
            },
            {
                "kind": "labeling",
                "job_id": "load-label",
                "classifier": "request",
                "budget": 20,
                "redundancy": 1,
                "priority": 3,
                "items": [
                    {"id": f"x{i}", "text": r["text"], "meta": r["meta"]}
                    for i, r in enumerate(sample[:40])
                ],
            },
        ]
        for job in jobs:
            assert worker.post("/api/v1/jobs", orjson.dumps(job))[0] == 202
        assert await wait_until(lambda: _job(worker, "load-count").get("status") == "running")

        # 3x the sustainable rate for about 8 seconds. The worker is paused for the
        # first 1.5: a run where it kept up with 3x its measured rate shed nothing.
        rate = 3 * sustainable
        n = int(rate * 8)
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            pushing = asyncio.ensure_future(
                push_lines([broker.bootstrap], PIPELINE, _stream(n, 0, sample), rate=rate)
            )
            await asyncio.sleep(1.5)
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        await pushing

        def finished() -> bool:
            return all(
                _job(worker, j).get("status") == "done" for j in ("load-count", "load-label")
            )

        assert await wait_until(finished, timeout_s=180), [_job(worker, "load-count")]
        counted = _job(worker, "load-count")
        # the protected window saw every marked item, however much was shed around it
        assert counted["window"]["seen"] == MARKED
        low, high = counted["estimate"]["ci"]
        assert high - low <= 0.4, counted.get("reason")
        # books: the features stage accounts for every record, and shed some
        total = warm + n
        assert await wait_until(lambda: _books(worker, "features")[0] == total, timeout_s=60)
        fin, fout, frej, fshed = _books(worker, "features")
        assert fin == fout + frej + fshed and fshed > 0
        # each job's cost is what the pool paid for it
        for job_id in ("load-count", "load-label"):
            paid = worker.metric("crowdstream_crowd_cost", kind="work", job=job_id)
            assert _job(worker, job_id)["cost"] == pytest.approx(paid, abs=1e-6)
        # Latency stays bounded: 99% of classified items within 10 s of arrival. A kept
        # item waits about max_drain_s + trend_s (3 s here) behind the shedding stage,
        # plus the batches in flight after it; on two cores 83-96% came within 5 s
        # and all within 10 s (4 runs), where an unshed backlog of this push waits over 15 s.
        within = worker.metric("crowdstream_end_to_end_latency_seconds_bucket", le="10.0")
        count = worker.metric("crowdstream_end_to_end_latency_seconds_count")
        assert count > 0 and within / count >= 0.99, (sustainable, within, count)
    finally:
        worker.stop()
