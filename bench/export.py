"""Exports of a million classified items: time, size, the worker's memory, and whether
its event loop stays responsive while it streams them.

A benchmark, not a test. It starts an embedded Apache Kafka broker, writes
``--items`` classified items (two classifiers each, texts from the bundled sample) to
``crisis.items.classified``, starts a worker of the ``crisis`` topology with only the
collector (every worker serves exports), and downloads
``/api/v1/export/classified`` in each format, reading the stream as it comes. While
a download runs it samples the worker's resident memory (``/proc``) and the time
``/healthz`` takes to answer (its event loop's responsiveness) every 0.2 s.
JSON on stdout.
Usage: python bench/export.py [--items 1000000] [--formats jsonl,csv,parquet]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.topics import TopicPolicy
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.local import LocalWorker, rss_mib
from pipelines.sample import load_sample
from pipelines.topology import load_topology
from runtime.admin import declare_topics

PIPELINE = "crisis"


async def _write_items(bootstrap: str, count: int) -> float:
    """``count`` classified items on the output topic; the seconds it took."""
    texts = [str(row["text"]) for row in load_sample()]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1
    )
    await producer.start()
    started = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        for n in range(count):
            key = f"item-{n}"
            item = {
                "id": key,
                "text": texts[n % len(texts)],
                "ts_in": 1.7e9 + n / 1000,
                "ts_out": 1.7e9 + n / 1000 + 0.05,
                "source": "bench",
                "labels": {
                    "aid_related": {
                        "tag": "yes" if n % 3 else "no",
                        "confidence": 0.8,
                        "model_version": 3,
                        "source": "model",
                    },
                    "request": {
                        "tag": "no",
                        "confidence": 0.9,
                        "model_version": 2,
                        "source": "model",
                    },
                },
            }
            pending.append(
                await producer.send(
                    f"{PIPELINE}.items.classified", orjson.dumps(item), key=key.encode()
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


class _Sampler:
    """The worker's memory and /healthz time, every 0.2 s until stopped."""

    def __init__(self, worker: LocalWorker) -> None:
        self._worker = worker
        self._stop = threading.Event()
        self.rss: list[float] = []
        self.health_ms: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.rss.append(rss_mib(self._worker.proc.pid))
            started = time.monotonic()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self._worker.url + "/healthz", timeout=10).read()  # noqa: S310
            self.health_ms.append((time.monotonic() - started) * 1000)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _download(worker: LocalWorker, fmt: str) -> dict[str, Any]:
    baseline = rss_mib(worker.proc.pid)
    url = f"{worker.url}/api/v1/export/classified?format={fmt}&until={time.time()}"
    size = lines = 0
    started = time.monotonic()
    first_byte_s = None
    with _Sampler(worker) as sampler, urllib.request.urlopen(url, timeout=600) as answer:  # noqa: S310
        while chunk := answer.read(1 << 20):
            if first_byte_s is None:
                first_byte_s = time.monotonic() - started
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.monotonic() - started
    health = sorted(sampler.health_ms)
    return {
        "format": fmt,
        "seconds": round(seconds, 1),
        "first_byte_s": round(first_byte_s or 0.0, 2),
        "megabytes": round(size / 1e6, 1),
        "lines": lines if fmt != "parquet" else None,
        "worker_rss_mb_before": round(baseline, 1),
        "worker_rss_mb_max": round(max(sampler.rss, default=baseline), 1),
        "healthz_ms_median": round(statistics.median(health), 1) if health else None,
        "healthz_ms_max": round(health[-1], 1) if health else None,
        "healthz_samples": len(health),
    }


@contextlib.contextmanager
def _stack(scratch: Path) -> Iterator[tuple[EmbeddedBroker, LocalWorker]]:
    broker = EmbeddedBroker(free_port(), scratch / "kafka")
    broker.start()
    worker: LocalWorker | None = None
    try:
        topology = load_topology(PIPELINE)
        asyncio.run(declare_topics([broker.bootstrap], topology.topics(4).values(), TopicPolicy()))
        worker = LocalWorker.start(
            PIPELINE,
            broker.url,
            free_port(),
            scratch / "worker.log",
            crowd="none",
            data_dir=scratch / "worker",
            pes=("collector",),
        )
        worker.wait_ready()
        yield broker, worker
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--formats", default="jsonl,csv,parquet")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="crowdstream-export-"))
    try:
        with _stack(scratch) as (broker, worker):
            write_s = asyncio.run(_write_items(broker.bootstrap, args.items))
            runs = [_download(worker, fmt) for fmt in args.formats.split(",")]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "bench": "export",
        "items": args.items,
        "rows": 2 * args.items,  # one per item and classifier
        "write_seconds": round(write_s, 1),
        "exports": runs,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
