"""The web crowd under hundreds of concurrent people: latency, errors, CPU.

A benchmark, not a test. For each crowd size N (default 100, 300, 500 and 1,000) it
starts a fresh embedded broker and the ``crisis`` pipeline with the web crowd
(``--crowd web``, a pool of N, no qualification), pushes a stream of distinct
messages into ``items.raw`` at ``--rate`` items/s the whole time, and runs N
simulated people over HTTP, each doing what the worker page does: join, hold the
task stream (server-sent events) open, send a heartbeat every ``heartbeat_s`` and
answer each task 2-4 s after it arrives (right 90% of the time). They come through
one trusted reverse proxy: the worker lists 127.0.0.1 in ``trusted_proxies`` and
each request carries its person's own ``X-Forwarded-For`` address, so every
per-client and per-worker limit is the deployed default.

After a warm-up it measures for ``--seconds``:

- the round trip of each call (answer, heartbeat, join: sent to response read)
  p50/p95/p99/max, and how long a person waits from sending an answer to the next
  task (that also counts waiting for work when the crowd outruns the stream);
- errors: every response that is not 2xx and every failed call or stream, by call
  and status (429 counts: a person never asks fast enough to earn one); an answer
  that failed on its way is sent again as the worker page does (up to four tries,
  each failed one counted), and ``answer:lost`` counts those that never arrived;
- the CPU (cores) and resident memory of each worker process, of the broker, and of
  the load generator, with its event loop's lag (its own delays add to every figure
  it measures);
- errors the worker processes logged (a label not written, an exception);
- invariants: from ``crowd.labels`` after the run, no worker's answer counted twice
  in one label, no task labeled twice, no label with more answers than the quality
  loop's ``max_answers``; from the people, the most who held one task at the same
  time, against the pool's bound (the answers a task may get, plus one straggler
  duplicate).

Layouts: ``split`` (default) runs the annotator, which serves the crowd, in a worker
process of its own and every other PE in another; ``one`` runs them all in one.
Prints JSON and writes it to reports/bench-crowd-load-<timestamp>.json.
Usage: python bench/crowd_load.py [--workers 100,300,500,1000] [--seconds 60]
       [--warmup 20] [--layout split|one] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson

from channels.records import Label
from channels.topics import TopicPolicy
from pe.params import AnnotatorParams
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.client import push_lines
from pipelines.local import LocalWorker, cpu_seconds, rss_mib
from pipelines.report import ms_summary
from pipelines.sample import load_sample
from pipelines.topology import load_topology
from runtime.admin import declare_topics
from runtime.cluster import PLAINTEXT
from runtime.ranges import read_range

PIPELINE = "crisis"
API = "/api/v1"
#: How often a person answers right (the rest: the other tag).
ACCURACY = 0.9
#: Seconds a person takes to answer a task.
THINK_S = (2.0, 4.0)
#: Tries of an answer in all, as the worker page makes them (pe/annotator/web/static).
ANSWER_TRIES = 4


def _messages(seed: int) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Distinct messages without end (two sample messages joined; near-duplicate
    removal would drop repeats), each with the tags of its first part."""
    sample = load_sample()
    rng = random.Random(seed)
    n = 0
    while True:
        first, second = rng.choice(sample), rng.choice(sample)
        n += 1
        text = f"{first['text']} {second['text']}"
        yield {"id": f"load-{n}", "text": text, "source": "bench"}, first["meta"]["truth"]


@dataclass
class _Stats:
    """What the people saw, counted inside the measurement window only."""

    start: float = float("inf")  #: set when the warm-up ends
    end: float = float("inf")
    calls: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    next_task_ms: list[float] = field(default_factory=list)
    tasks: int = 0
    terminated: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    holders: Counter[tuple[str, str]] = field(default_factory=Counter)
    most_holders: int = 0

    def inside(self, at: float) -> bool:
        return self.start <= at <= self.end

    def took(self, call: str, at: float, ms: float) -> None:
        # Joins come before the window: each person joins once, at the start.
        if self.inside(at) or call == "join":
            self.calls.setdefault(call, []).append(ms)

    def failed(self, call: str, what: str, at: float) -> None:
        if self.inside(at) or call == "join":
            self.errors[f"{call}:{what}"] += 1

    def hold(self, key: tuple[str, str], change: int) -> None:
        self.holders[key] += change
        if self.holders[key] <= 0:
            del self.holders[key]
        elif change > 0:
            self.most_holders = max(self.most_holders, self.holders[key])


class _Person:
    """One simulated person behind the proxy, acting as the worker page does."""

    def __init__(
        self,
        n: int,
        base: str,
        http: aiohttp.ClientSession,
        stats: _Stats,
        truth: dict[tuple[str, str], str],
    ) -> None:
        self.name = f"person {n}"
        self.address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        self.base = base
        self.http = http
        self.stats = stats
        self.truth = truth
        self.rng = random.Random(n)
        self.token = ""
        self.heartbeat_s = 15.0
        self.ended = False
        self.holding: tuple[str, tuple[str, str]] | None = None  #: assignment, task key
        self.thinking: asyncio.Task[None] | None = None
        self.answered_at: float | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"X-Forwarded-For": self.address, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def call(
        self, name: str, path: str, body: dict[str, Any], tries: int = 1
    ) -> dict[str, Any] | None:
        """POST ``body``; the answer's JSON, or None if it failed. Each failed try is
        counted; one that may succeed if sent again (no answer, 429, 5xx) is, up to
        ``tries`` times in all, after 1, 2, 4 s as the worker page does."""
        for attempt in range(1, tries + 1):
            sent = time.monotonic()
            status = 0
            connection = SimpleNamespace(reused=False)  # set by _trace
            try:
                async with self.http.post(
                    self.base + API + path,
                    data=orjson.dumps(body),
                    headers=self._headers(),
                    trace_request_ctx=connection,
                ) as response:
                    data, status = await response.read(), response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # On a kept-alive connection or a new one: a server closing idle
                # connections, or one that could not accept.
                kind = "reused" if connection.reused else "new"
                self.stats.failed(name, f"{type(exc).__name__} ({kind} connection)", sent)
            else:
                self.stats.took(name, sent, (time.monotonic() - sent) * 1000)
                if status < 300:
                    answer: dict[str, Any] = orjson.loads(data)
                    return answer
                self.stats.failed(name, str(status), sent)
                self.ended |= status == 410
            if status and status != 429 and status < 500:
                break  # the server's final word
            if attempt < tries:
                await asyncio.sleep(2 ** (attempt - 1))
        if tries > 1:
            self.stats.failed(name, "lost", time.monotonic())
        return None

    async def run(self) -> None:
        joined = await self.call("join", "/workers", {"name": self.name})
        if joined is None:
            return
        self.token, self.heartbeat_s = joined["token"], joined["heartbeat_s"]
        beats = asyncio.create_task(self._heartbeats())
        try:
            await self._stream()
        finally:
            beats.cancel()
            if self.thinking is not None:
                self.thinking.cancel()

    async def _heartbeats(self) -> None:
        while not self.ended:
            await asyncio.sleep(self.heartbeat_s * self.rng.uniform(0.9, 1.0))
            beat = await self.call("heartbeat", "/workers/me/heartbeat", {})
            if beat is not None:
                self.token = beat["token"]

    async def _stream(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        while not self.ended:
            opened = time.monotonic()
            try:
                async with self.http.get(
                    f"{self.base}{API}/workers/me/tasks", headers=self._headers(), timeout=timeout
                ) as response:
                    if response.status != 200:
                        self.stats.failed("stream", str(response.status), opened)
                        self.ended = response.status in (401, 410)
                    else:
                        await self._read_events(response)
                        if not self.ended:
                            self.stats.failed("stream", "closed", time.monotonic())
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.stats.failed("stream", type(exc).__name__, time.monotonic())
            if not self.ended:
                await asyncio.sleep(2.0)  # the page's EventSource waits the server's retry

    async def _read_events(self, response: aiohttp.ClientResponse) -> None:
        event, data = "", b""
        async for raw in response.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"event:"):
                event = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
            elif not line and event:
                self._on(event, orjson.loads(data))
                event, data = "", b""
                if self.ended:
                    return

    def _on(self, event: str, data: dict[str, Any]) -> None:
        if event == "status" and data.get("assignment"):
            event, data = "task", data["assignment"]
        if event == "task":
            if self.holding is not None and self.holding[0] == data["assignment_id"]:
                return  # the status after a reconnect repeats the task held
            self._drop()
            now = time.monotonic()
            self.stats.tasks += self.stats.inside(now)
            if self.answered_at is not None:
                self.stats.took("next_task", self.answered_at, (now - self.answered_at) * 1000)
                self.answered_at = None
            key = (data["classifier"], data["text"])
            self.holding = (data["assignment_id"], key)
            self.stats.hold(key, 1)
            self.thinking = asyncio.create_task(self._answer(data, key))
        elif event == "terminated":
            if self.holding is not None and self.holding[0] == data["assignment_id"]:
                self.stats.terminated += self.stats.inside(time.monotonic())
                self._drop()
        elif event == "ended":
            self.ended = True
            self.stats.ended[data["reason"]] += 1
            self._drop()

    def _drop(self) -> None:
        """Stop working on the task held (replaced, terminated, or the session ended)."""
        if self.thinking is not None:
            self.thinking.cancel()
            self.thinking = None
        if self.holding is not None:
            self.stats.hold(self.holding[1], -1)
            self.holding = None

    async def _answer(self, task: dict[str, Any], key: tuple[str, str]) -> None:
        await asyncio.sleep(self.rng.uniform(*THINK_S))
        right = self.truth.get(key, task["tags"][0])
        wrong = [t for t in task["tags"] if t != right]
        tag = right if self.rng.random() < ACCURACY or not wrong else wrong[0]
        self.thinking = None  # sent: a task arriving now no longer cancels it
        self.answered_at = time.monotonic()
        self.stats.hold(key, -1)
        self.holding = None
        body = {"assignment_id": task["assignment_id"], "tag": tag}
        await self.call("answer", "/workers/me/answers", body, tries=ANSWER_TRIES)


def _trace() -> aiohttp.TraceConfig:
    """Marks a request sent on a kept-alive connection (``trace_request_ctx.reused``)."""

    async def reused(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceConnectionReuseconnParams,
    ) -> None:
        if context.trace_request_ctx is not None:  # the task stream passes none
            context.trace_request_ctx.reused = True

    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(reused)
    return trace


async def _lag(samples: list[float], every_s: float = 0.05) -> None:
    """The load generator's event-loop lag: how late a 50 ms sleep wakes."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(every_s)
        samples.append((time.monotonic() - started - every_s) * 1000)


def _topics(bootstrap: str) -> dict[str, str]:
    topology = load_topology(PIPELINE)
    topics = topology.topics(4)
    asyncio.run(declare_topics([bootstrap], topics.values(), TopicPolicy()))
    return {channel: spec.name for channel, spec in topics.items()}


async def _check_labels(bootstrap: str, topic: str, most_answers: int) -> dict[str, int]:
    """The invariants ``crowd.labels`` must hold."""
    labels = 0
    twice_by_one = over = 0
    tasks: Counter[str] = Counter()
    async for batch in read_range([bootstrap], topic, 0, 2**62, PLAINTEXT):
        for record in batch:
            label = Label.model_validate_json(record.value)
            if label.status != "labeled" or label.kind == "gold":
                continue
            labels += 1
            workers = [a.worker_id for a in label.answers]
            twice_by_one += len(workers) != len(set(workers))
            over += len(workers) > most_answers
            tasks[label.task_id or label.item_id] += 1
    return {
        "labels": labels,
        "labels_with_a_worker_counted_twice": twice_by_one,
        "tasks_labeled_twice": sum(1 for n in tasks.values() if n > 1),
        "labels_over_max_answers": over,
    }


@dataclass
class _Run:
    workers: int
    seconds: float
    warmup: float
    rate: float
    layout: str


async def _drive(run: _Run, base: str, bootstrap: str, pids: dict[str, int]) -> dict[str, Any]:
    """Push the stream, start the people, measure; the stats and CPU use."""
    stats = _Stats()
    truth: dict[tuple[str, str], str] = {}
    stream = _messages(seed=run.workers)

    def lines() -> Iterator[bytes]:
        for item, tags in stream:
            for classifier, tag in tags.items():
                truth[(classifier, item["text"])] = tag
            yield orjson.dumps(item)

    lag: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trace_configs=[_trace()]
    ) as http:
        pushing = asyncio.create_task(push_lines([bootstrap], PIPELINE, lines(), run.rate))
        lagging = asyncio.create_task(_lag(lag))
        people = [_Person(n, base, http, stats, truth) for n in range(run.workers)]
        running = []
        # Joins spread over a few seconds, as people arrive.
        for person in people:
            running.append(asyncio.create_task(person.run()))
            await asyncio.sleep(min(10.0, run.workers / 50) / run.workers)
        await asyncio.sleep(run.warmup)
        stats.start = time.monotonic()
        cpu_before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        lag.clear()
        await asyncio.sleep(run.seconds)
        stats.end = time.monotonic()
        cpu = {
            name: round(((cpu_seconds(pid) or 0.0) - cpu_before[name]) / run.seconds, 2)
            for name, pid in pids.items()
        }
        memory = {name: round(rss_mib(pid)) for name, pid in pids.items()}
        for task in (pushing, lagging, *running):
            task.cancel()
        ended = await asyncio.gather(pushing, lagging, *running, return_exceptions=True)
    # A simulated person (or the pusher) that died of an error of the bench's own.
    crashed = Counter(type(x).__name__ for x in ended if isinstance(x, Exception))
    return {
        "calls_ms": {call: ms_summary(values) for call, values in sorted(stats.calls.items())},
        "answers_per_s": round(len(stats.calls.get("answer", [])) / run.seconds, 1),
        "tasks_received": stats.tasks,
        "terminated": stats.terminated,
        "errors": dict(stats.errors),
        "errors_total": sum(stats.errors.values()),
        "sessions_ended": dict(stats.ended),
        "most_people_on_one_task": stats.most_holders,
        "cpu_cores": cpu,
        "rss_mib": memory,
        "generator_lag_ms": ms_summary(lag),
        "generator_crashes": dict(crashed),
    }


def _measure(run: _Run, out_dir: Path, stamp: str) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="crowdstream-crowd-load-"))
    broker = EmbeddedBroker(free_port(), scratch / "kafka")
    broker.start()
    workers: list[LocalWorker] = []
    try:
        topics = _topics(broker.bootstrap)
        n = run.workers
        overrides = (
            f"annotator.pool_size={n}",
            "annotator.max_queue=5000",
            # Enough tasks for everyone: the stream, not a budget, limits them.
            "taskgen.label_budget=100000000",
            "taskgen.max_tasks_per_minute=1000000",
            f"taskgen.backlog_low={3 * n}",
            f"taskgen.backlog_high={6 * n}",
        )
        pes = load_topology(PIPELINE).pes
        layout = (
            [("annotator",), tuple(pe for pe in pes if pe != "annotator")]
            if run.layout == "split"
            else [()]
        )
        model_key = secrets.token_hex(16)
        for index, only in enumerate(layout):
            port = free_port()
            workers.append(
                LocalWorker.start(
                    PIPELINE,
                    broker.url,
                    port,
                    out_dir / f"bench-crowd-load-{stamp}-{n}-{index}.log",
                    crowd="web",
                    data_dir=scratch / f"worker-{index}",
                    overrides=overrides,
                    pes=only,
                    model_key=model_key,
                )
            )
        for worker in workers:
            worker.wait_ready()
        # Errors logged from here on (a fresh broker's coordinator is not ready at once).
        ready_lines = [len(w.log.read_text().splitlines()) for w in workers]
        names = ["crowd worker", "pipeline worker"] if run.layout == "split" else ["worker"]
        pids = {name: worker.proc.pid for name, worker in zip(names, workers, strict=True)}
        if broker.pid is not None:
            pids["broker"] = broker.pid
        pids["load generator"] = os.getpid()
        result = asyncio.run(_drive(run, workers[0].url, broker.bootstrap, pids))
        # Before they stop: an error a worker logged under load is the server's fault.
        result["worker_errors_logged"] = {
            name: sum(" ERROR " in line for line in w.log.read_text().splitlines()[start:])
            for name, w, start in zip(names, workers, ready_lines, strict=True)
        }
        most = AnnotatorParams().most_answers
        result["invariants"] = asyncio.run(
            _check_labels(broker.bootstrap, topics["crowd.labels"], most)
        )
        result["bound_people_on_one_task"] = most + 1
        return {"workers": n, "layout": run.layout, "rate": run.rate, **result}
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="100,300,500,1000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=100.0, help="stream items/s")
    parser.add_argument("--layout", choices=("split", "one"), default="split")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    os.environ.update(
        {
            "CROWDSTREAM_CROWD_JOIN": "open",
            "CROWDSTREAM_TRUSTED_PROXIES": "127.0.0.1",
            "CROWDSTREAM_CROWD_TOKEN_KEY": secrets.token_urlsafe(32),
            "CROWDSTREAM_OPERATOR_TOKEN": secrets.token_urlsafe(32),
        }
    )
    runs = []
    for n in (int(x) for x in args.workers.split(",")):
        run = _Run(n, args.seconds, args.warmup, args.rate, args.layout)
        result = _measure(run, args.out, stamp)
        print(json.dumps(result), file=sys.stderr, flush=True)
        runs.append(result)
    report = {
        "bench": "crowd_load",
        "when": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds": args.seconds,
        "runs": runs,
    }
    path = args.out / f"bench-crowd-load-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
