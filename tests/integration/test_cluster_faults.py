"""A three-node Kafka cluster on one machine loses nothing when a node or the worker dies.

One worker of the default crisis topology (every PE, the simulated crowd, load
shedding on as the topology has it) runs on a :class:`LocalCluster`, every topic
replicated three times (two replicas in sync for a write). An independent client
(confluent-kafka: acks=all, idempotent) pushes items at a steady rate while the
broker leading the most partitions, then the active KRaft controller (each started
again a few seconds later), then the worker (started again at once) are SIGKILLed.
Then independent readers find:

- every pushed item in ``items.raw``: the brokers lost no acknowledged write;
- every item in ``items.classified``, each exactly once after the documented dedup
  rule (the first record of an id wins): load shedding is on, but the backlogs the
  kills leave are the pipeline's own, caught up rather than shed;
- each crowd task's outcome (the label the crowd was paid for) in ``crowd.labels``
  once, never twice, and none of a task ``crowd.tasks`` does not hold.

How long the output stream paused at each kill is measured and printed.
``bench/cluster_faults.py`` runs the same scenario with 50,000 items.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from channels.dedup import FirstById
from channels.topics import pipeline_topics
from pipelines.kafka.cluster import LocalCluster
from pipelines.sample import load_sample
from tests.integration.conftest import (
    Worker,
    crisis_shedding,
    read_all,
    spawn_worker,
    values,
    wait_ready,
    write_topology,
)
from tests.integration.feeds import SteadyProducer

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PIPELINE = "clusterfaults"
#: 80 s of stream: room for the three kills and their recoveries on two cores.
ITEMS = 10_000
RATE = 125.0
#: Each worker's own counts: items load shedding dropped, crowd labels it bought.
SHED_METRIC = "crowdstream_items_shed_total"
LABELS_METRIC = "crowdstream_crowd_labels_total"
#: Past these shares of the stream the pusher waits for the controller's, then the
#: worker's kill: however slowly a node restarts on a loaded machine, each kill comes
#: mid-stream.
HOLDS = (0.9, 0.95)


@dataclass
class Kill:
    """One SIGKILL of the run and its recovery (epoch seconds)."""

    what: str  #: "busiest broker", "active controller" or "worker"
    node: int | None  #: the Kafka node killed (None: the worker)
    at: float
    sent: int  #: items pushed when it came (fewer than all: mid-stream)
    back: float | None = None  #: when the restarted process served again
    in_sync_s: float | None = None  #: how long the restarted node then took to catch up
    pause_s: float | None = None  #: the longest gap of the output stream after it
    ack_wait_s: float | None = None  #: the longest wait of the pusher for an ack after it

    def summary(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "node": self.node,
            "items_pushed_before": self.sent,
            "back_after_s": _round(None if self.back is None else self.back - self.at),
            "in_sync_after_s": _round(self.in_sync_s),
            "output_pause_s": _round(self.pause_s),
            "longest_ack_wait_s": _round(self.ack_wait_s),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class TopicReader:
    """Reads a topic from its start while the run goes on: every record's item id,
    and its ``ts_out`` (when it was classified) if it has one. Revisions (a crowd
    label's new record of an item classified before) are only counted."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        self.ids: list[str] = []
        self.seen: set[str] = set()
        self.ts_out: list[float] = []
        self.revisions = 0
        self.last_read = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.last_read = time.monotonic()
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()

    async def wait_for(self, wanted: set[str], timeout_s: float, idle_s: float) -> None:
        """Until every id of ``wanted`` was read, or nothing came for ``idle_s``, or
        ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= self.seen:
            if time.monotonic() - self.last_read > idle_s:
                return
            await asyncio.sleep(0.2)

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                for record in batch:
                    item = orjson.loads(record.value)
                    self.last_read = time.monotonic()
                    if item.get("revision"):
                        self.revisions += 1
                        continue
                    self.ids.append(item["id"])
                    self.seen.add(item["id"])
                    if "ts_out" in item:
                        self.ts_out.append(item["ts_out"])


@dataclass
class FaultRun:
    """What a run pushed, what came out, and how the kills went."""

    pushed: list[str]
    mandatory: set[str]  #: pushed with meta.mandatory: never shed
    acked: int
    delivery_errors: list[str]
    raw: set[str]  #: the pushed ids items.raw holds
    classified: list[str]  #: ids in the order items.classified holds them
    revisions: int  #: records of items.classified that revise an item (crowd labels)
    labels: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    kills: list[Kill]
    shed: float  #: items load shedding dropped (all workers)
    #: Task labels the workers counted as bought, read just before each was killed or
    #: stopped: crowd.labels may hold the few bought after that reading.
    bought: float
    seconds: float
    held_s: float  #: how long the pusher waited for a late kill (see HOLDS)
    baseline_pause_s: float | None  #: the longest output gap before the first kill
    baseline_ack_wait_s: float | None  #: the longest wait for an ack before it

    @property
    def missing(self) -> set[str]:
        """Pushed items never classified."""
        return set(self.pushed) - set(self.classified)

    @property
    def kept(self) -> list[str]:
        """The classified ids after the dedup rule: the first record of each."""
        once = FirstById()
        return [item_id for item_id in self.classified if once.first(item_id)]

    @property
    def task_labels(self) -> list[dict[str, Any]]:
        """The outcomes of crowd tasks (gold questions, asked of each new worker, are
        not tasks of crowd.tasks)."""
        return [label for label in self.labels if label.get("kind") != "gold"]

    def outcomes(self) -> Counter[str]:
        """Outcome records per crowd task."""
        return Counter(label["task_id"] for label in self.task_labels)

    def summary(self) -> dict[str, Any]:
        outcomes = self.outcomes()
        task_ids = {task["task_id"] for task in self.tasks}
        missing = self.missing
        # Which stretch of the stream the missing items were pushed in: before the
        # first kill, or after each kill and before the next.
        starts = [kill.sent for kill in self.kills]
        missing_by_kill = [0] * (len(self.kills) + 1)
        for i, item_id in enumerate(self.pushed):
            if item_id in missing:
                missing_by_kill[bisect.bisect_right(starts, i)] += 1
        return {
            "items_pushed": len(self.pushed),
            "items_mandatory": len(self.mandatory),
            "items_acknowledged": self.acked,
            "delivery_errors": len(self.delivery_errors),
            "missing_in_raw": len(set(self.pushed) - self.raw),
            "classified_records": len(self.classified),
            "classified_items": len(set(self.classified)),
            "revisions": self.revisions,
            "missing": len(missing),
            "missing_mandatory": len(missing & self.mandatory),
            "shed": self.shed,
            # Records of an id classified before (the worker's kill repeats its
            # uncommitted batches): the dedup rule drops them.
            "duplicates": len(self.classified) - len(self.kept),
            "tasks": len(task_ids),
            "labels": sum(1 for label in self.task_labels if label.get("status") == "labeled"),
            "labels_counted_by_workers": self.bought,
            "task_outcomes": len(self.task_labels),
            "duplicate_labels": sum(n - 1 for n in outcomes.values()),
            "labels_of_no_task": len(set(outcomes) - task_ids),
            "tasks_without_outcome_yet": len(task_ids - set(outcomes)),
            "gold_answers": len(self.labels) - len(self.task_labels),
            "missing_pushed_before_kills": missing_by_kill[0],
            "kills": [
                {**kill.summary(), "missing_pushed_from_here": n}
                for kill, n in zip(self.kills, missing_by_kill[1:], strict=True)
            ],
            "output_pause_before_kills_s": _round(self.baseline_pause_s),
            "longest_ack_wait_before_kills_s": _round(self.baseline_ack_wait_s),
            "pusher_held_s": _round(self.held_s),
            "run_s": _round(self.seconds),
        }


def sample_rows(n: int, prefix: str, mandatory_every: int) -> list[tuple[str, bytes]]:
    """``n`` messages of the bundled sample (with their truth for the simulated crowd)
    under ids ``<prefix><i>``, as (key, JSON value); every ``mandatory_every``-th one
    (0: none) has ``meta.mandatory``."""
    sample = load_sample()
    rows = []
    for i in range(n):
        item = {**sample[i % len(sample)], "id": f"{prefix}{i}"}
        if mandatory_every and i % mandatory_every == 0:
            item["meta"] = {**item.get("meta", {}), "mandatory": True}
        rows.append((item["id"], orjson.dumps(item)))
    return rows


def worst_by_kill(
    events: Iterable[tuple[float, float]], kills: Sequence[Kill]
) -> tuple[float | None, list[float | None]]:
    """The largest value of the ``(end, value)`` events that ended before the first
    kill, and of those that ended after each kill but not after the next one (an
    event is the latest kill's before its end). ``kills`` are in time order."""
    starts = [kill.at for kill in kills]
    before: float | None = None
    found: list[float | None] = [None] * len(kills)
    for end, value in events:
        k = bisect.bisect_left(starts, end) - 1
        if k < 0:
            before = max(before or value, value)
        else:
            found[k] = max(found[k] or value, value)
    return before, found


def _counts(worker: Worker) -> tuple[float, float]:
    """What ``worker`` shed, and the task labels it bought (not gold answers), read
    at one instant."""
    try:
        _, body = worker.get("/metrics")
    except OSError:
        return 0.0, 0.0
    shed = labels = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == SHED_METRIC:
                shed += sample.value
            elif sample.name == LABELS_METRIC and sample.labels.get("outcome") != "gold":
                labels += sample.value
    return shed, labels


async def run_faults(
    cluster: LocalCluster,
    topology: Path,
    work_dir: Path,
    *,
    pipeline: str,
    items: int,
    rate: float,
    mandatory_every: int = 0,
    down_s: float = 5.0,
    kill_at: tuple[float, float, float] = (0.15, 0.45, 0.75),
    restart_worker: bool = True,
    producer_overrides: Mapping[str, Any] | None = None,
    drain_s: float = 180.0,
) -> FaultRun:
    """Run a worker of ``topology`` on the started ``cluster`` and push ``items`` at
    ``rate``. Once these fractions of them are pushed, SIGKILL: the broker leading
    the most partitions of the pipeline, the active controller (each started again
    after ``down_s``; the controller once the broker has caught up), and the worker
    (once the stream flows again; another one started at once, unless not
    ``restart_worker``).

    The worker declares its topics with the replication factor of the environment
    (CROWDSTREAM_REPLICATION_FACTOR=3, set by the caller).
    """
    started = time.time()
    worker = spawn_worker(cluster.url, topology, work_dir)
    workers = [worker]
    topics = [spec.name for spec in pipeline_topics(pipeline, 1).values()]
    # The consumer groups' commits must survive the kills too.
    watched = [*topics, "__consumer_offsets"]
    classified = TopicReader(cluster.bootstrap, f"{pipeline}.items.classified")
    raw = TopicReader(cluster.bootstrap, f"{pipeline}.items.raw")
    rows = sample_rows(items, "cf", mandatory_every)
    pushed = [key for key, _ in rows]
    mandatory = set(pushed[::mandatory_every]) if mandatory_every else set()
    controller_killed, worker_killed = threading.Event(), threading.Event()
    producer = SteadyProducer(
        cluster.bootstrap,
        pipeline,
        rows,
        rate,
        holds={int(HOLDS[0] * items): controller_killed, int(HOLDS[1] * items): worker_killed},
        overrides=producer_overrides,
    )
    kills: list[Kill] = []
    shed = bought = 0.0

    async def when_sent(fraction: float) -> None:
        # The pusher is a thread: it has no event to await.
        while producer.sent < fraction * items:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def flowing_after(kill: Kill, timeout_s: float = 120.0) -> None:
        """Until an item pushed after ``kill`` comes out classified."""
        deadline = time.monotonic() + timeout_s
        while not any(pushed[i] in classified.seen for i in range(kill.sent, producer.sent)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no output {timeout_s:.0f} s after killing the {kill.what}")
            await asyncio.sleep(0.2)

    async def kill_node(what: str, fraction: float) -> Kill:
        await when_sent(fraction)
        node = (
            await cluster.busiest_broker(topics)
            if what == "busiest broker"
            else cluster.active_controller()
        )
        assert node is not None, f"no {what} to kill"
        kill = Kill(what, node, time.time(), producer.sent)
        kills.append(kill)
        await asyncio.to_thread(cluster.kill, node)
        return kill

    async def recover(kill: Kill) -> None:
        assert kill.node is not None
        await asyncio.sleep(down_s)
        await asyncio.to_thread(cluster.restart, kill.node)
        kill.back = time.time()
        kill.in_sync_s = await cluster.wait_in_sync(watched)

    recovering: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(wait_ready, worker)
        await cluster.wait_in_sync(watched)
        await classified.start()
        producer.start()
        # One node away at a time: the controller dies once the broker has caught up.
        await recover(await kill_node("busiest broker", kill_at[0]))
        controller = await kill_node("active controller", kill_at[1])
        controller_killed.set()
        recovering = asyncio.create_task(recover(controller))
        # The worker dies once the stream flows again, not once the node is back: a
        # slow restart on a loaded machine must not push it past the stream's end.
        await when_sent(kill_at[2])
        await flowing_after(controller)
        # What it dropped and bought is counted nowhere else.
        dropped, paid = _counts(worker)
        shed, bought = shed + dropped, bought + paid
        kill = Kill("worker", None, time.time(), producer.sent)
        kills.append(kill)
        worker.proc.send_signal(signal.SIGKILL)
        worker_killed.set()
        worker.proc.wait(timeout=10)
        if restart_worker:
            worker = spawn_worker(cluster.url, topology, work_dir)
            workers.append(worker)
            await asyncio.to_thread(wait_ready, worker)
            kill.back = time.time()
        await recovering

        await asyncio.to_thread(producer.join, items / rate + 300)
        # Every item must come: a minute without a new one means some never will.
        await classified.wait_for(set(pushed), drain_s, idle_s=60.0)
        await raw.start()
        await raw.wait_for(set(pushed), 60.0, idle_s=10.0)
        if worker.proc.poll() is None:
            dropped, paid = _counts(worker)
            shed, bought = shed + dropped, bought + paid
            # The crowd keeps answering: a label bought after this count would be in
            # crowd.labels but not in the count.
            await asyncio.to_thread(worker.stop)
        labels = values(await read_all(cluster.bootstrap, f"{pipeline}.crowd.labels"))
        tasks = values(await read_all(cluster.bootstrap, f"{pipeline}.crowd.tasks"))
    finally:
        controller_killed.set()
        worker_killed.set()
        if recovering is not None and not recovering.done():
            recovering.cancel()
        await classified.stop()
        await raw.stop()
        for each in workers:
            if each.proc.poll() is None:
                each.proc.send_signal(signal.SIGTERM)
                each.proc.wait(timeout=60)
    kills.sort(key=lambda kill: kill.at)
    stamps = sorted(classified.ts_out)
    gaps = ((b, b - a) for a, b in zip(stamps, stamps[1:], strict=False))
    baseline_pause, pauses = worst_by_kill(gaps, kills)
    # A record in flight when a node died waits for that node's failover.
    baseline_ack, ack_waits = worst_by_kill(((t + w, w) for t, w in producer.acks), kills)
    for kill, pause, ack_wait in zip(kills, pauses, ack_waits, strict=True):
        kill.pause_s = pause
        kill.ack_wait_s = ack_wait
    return FaultRun(
        pushed=pushed,
        mandatory=mandatory,
        acked=producer.acked,
        delivery_errors=producer.errors,
        raw=raw.seen,
        classified=classified.ids,
        revisions=classified.revisions,
        labels=labels,
        tasks=tasks,
        kills=kills,
        shed=shed,
        bought=bought,
        seconds=time.time() - started,
        held_s=producer.held_s,
        baseline_pause_s=baseline_pause,
        baseline_ack_wait_s=baseline_ack,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "kafka") as started:
        yield started


async def test_a_broker_the_controller_and_the_worker_die_and_nothing_is_lost(
    cluster: LocalCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Clients log every failed connection to a dead node: noise in a failure report.
    caplog.set_level(logging.CRITICAL, logger="aiokafka")
    caplog.set_level(logging.CRITICAL, logger="tests.feeds")
    monkeypatch.setenv("CROWDSTREAM_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("CROWDSTREAM_BROKER", cluster.url)
    topology = write_topology(tmp_path, PIPELINE, shedding=crisis_shedding())
    run = await run_faults(cluster, topology, tmp_path, pipeline=PIPELINE, items=ITEMS, rate=RATE)
    summary = run.summary()
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    for kill in summary["kills"]:
        print(
            f"killing the {kill['what']}: output paused {kill['output_pause_s']} s, "
            f"pusher waited up to {kill['longest_ack_wait_s']} s for an ack"
        )

    for kill in run.kills:
        assert kill.sent < ITEMS, f"the {kill.what} was killed after the stream ended"
        assert kill.pause_s is not None, f"no output after killing the {kill.what}"
    assert not run.delivery_errors, run.delivery_errors[:5]
    assert run.acked == ITEMS
    assert run.raw == set(run.pushed), f"{ITEMS - len(run.raw)} acknowledged items lost"
    assert not run.missing, f"{len(run.missing)} items never classified, {run.shed} shed"
    # Each item exactly once after the dedup rule.
    assert sorted(run.kept) == sorted(run.pushed)
    assert summary["labels"] > 0, "the crowd bought no label during the run"
    outcomes = run.outcomes()
    twice = sorted(task for task, n in outcomes.items() if n > 1)
    assert not twice, f"{len(twice)} crowd tasks have more than one outcome, e.g. {twice[:3]}"
    assert set(outcomes) <= {t["task_id"] for t in run.tasks}, "an outcome of no task"
