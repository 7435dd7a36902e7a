"""Soak: the embedded default fed like a live feed for an hour; stalls, latency,
memory and disk over time.

A benchmark, not a test. It starts the stack the way a user does,
``python -m pipelines.cli up --embedded --crowd simulated`` (the ``crisis`` pipeline,
default settings, so load shedding is on), with ``CROWDSTREAM_DATA_DIR`` set to a
fresh folder that holds the embedded Kafka broker's log. Inherited ``CROWDSTREAM_*``
variables are dropped (except ``CROWDSTREAM_KAFKA_CACHE_DIR``), so the worker runs
on the defaults. Then, from outside the worker:

* a producer (confluent-kafka, ``linger.ms=5``, ``acks=all``: many small batches,
  as a live feed makes) sends the bundled sample messages, cycled with fresh unique
  ids, to ``crisis.items.raw`` at a steady ``--rate`` (270/s, the hurricane Sandy
  peak) for ``--minutes`` (60);
* a reader (confluent-kafka) of ``crisis.items.classified`` measures each item's
  end-to-end latency, from just before the bench handed it to its producer to its
  receipt by the reader, with its parts: the producer's acknowledgement, the
  pipeline's ``ts_out - ts_in`` (``ts_in`` is the raw record's Kafka timestamp, set at
  ``produce()``) and the output hop (receipt - ``ts_out``); and the longest time
  without any output while input was flowing (a stall);
* every 10 s: resident memory (RSS, anonymous and file-backed) and CPU of the worker
  process, of its helper processes (the learner's fitter), of the broker (the
  worker's ``java`` child) and of the bench; once a minute the broker's heap
  (``jstat -gc``, when the JDK has it); the disk allocated under the data folder
  (``items.*`` topics one by one, topics kept forever, Kafka's internal topics, the
  rest); the p99 and max latency of the items received since the previous sample;
  and the worker's ``/metrics`` (shed and rejected records, consumer lag, shedding
  keep fraction, active model versions: a retrain shows where it happened).

It reports per minute (by produce time) the items produced and classified, the
p50/p95/p99/max of latency and its parts, the load average and CPU shares; the
memory slope per hour after ``--warmup-minutes`` (least squares, and over the second
half of that window alone); the disk bound that the broker's retention settings put
on the ``items.*`` topics and where each topic settles; the books (produced,
acknowledged, classified, missing, duplicates; the worker's in/out/rejected/shed and
batches per stage); and pass/fail of each target: no stall over
``--max-stall-seconds`` (5), p99 under ``--p99-ms`` (250) in every minute after
warm-up and over all of them, RSS slope of the worker (with its helpers) and of the
broker under ``--max-slope-pct`` (5) of their mean RSS per hour, ``items.*`` disk
within the retention bound.

Prints JSON and writes it to reports/soak-<timestamp>.json (the worker's log beside
it). Exits 0 when every target passed, 1 otherwise, 2 when the stack did not start.
Everything it started is stopped at the end, on Ctrl-C or SIGTERM too (the worker
gets SIGTERM and stops its broker); a run cut short still reports what it measured.
The machine's other load shows in the latency: compare ``load1`` per minute.

Usage: python bench/soak.py [--rate 270] [--minutes 60] [--warmup-minutes 5]
       [--linger-ms 5] [--data-dir DIR | --keep-data] [--broker-port P] [--http-port H]
       [--crowd simulated|none]
A short check of the bench itself: python bench/soak.py --minutes 8 --warmup-minutes 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import confluent_kafka
import numpy as np
import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

# ConfigResource and ResourceType are public (confluent-kafka documents this import),
# but its module leaves them out of __all__.
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

from pe.common.lifecycle import die_with_parent
from pipelines.broker import free_port
from pipelines.kafka.dist import kafka_version
from pipelines.local import cpu_seconds
from pipelines.report import ms_summary
from pipelines.sample import load_sample

PIPELINE = "crisis"
RAW = f"{PIPELINE}.items.raw"
CLASSIFIED = f"{PIPELINE}.items.classified"
ITEMS_PREFIX = f"{PIPELINE}.items."
SAMPLE_EVERY_S = 10.0
#: The first start fetches the pinned Kafka release; a cold JVM on a loaded machine.
READY_TIMEOUT_S = 300.0
#: SIGTERM to a worker: its graceful stop, then its broker's controlled shutdown (30 s).
STOP_TIMEOUT_S = 90.0
#: Inherited settings the worker keeps: where the Kafka release is cached.
KEEP_ENV = frozenset({"CROWDSTREAM_KAFKA_CACHE_DIR"})
#: Read the broker's heap (``jstat``, a JVM of its own) every this many samples.
JSTAT_EVERY = 6
#: Gaps without output longer than this are listed in the report.
GAP_LISTED_S = 1.0
MIB = 1024 * 1024


def _slope_per_hour(points: Iterable[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour (None below 3 points)."""
    pts = list(points)
    if len(pts) < 3:
        return None
    t = np.array([p[0] for p in pts]) / 3600.0
    v = np.array([p[1] for p in pts])
    return float(np.polyfit(t, v, 1)[0])


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# --- processes ----------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of ``pid`` in MiB (empty if it is gone)."""
    fields: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(rest.split()[0]) / 1024
    return fields


def _is_broker(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is the Kafka broker keeping its log in ``data_dir`` (other
    brokers may run on this machine)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(data_dir).encode() in cmdline


def _tree(root: int, data_dir: Path) -> tuple[list[int], int | None]:
    """The descendants of ``root``: all but the embedded broker (the learner's fitting
    process, multiprocessing helpers), and the broker (its ``java ... kafka.Kafka``
    child, with its log in ``data_dir``)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    others: list[int] = []
    broker: int | None = None
    level = [root]
    while level:
        children = [pid for pid, ppid in parents.items() if ppid in level]
        for pid in children:
            if broker is None and parents[pid] == root and _is_broker(pid, data_dir):
                broker = pid
            else:
                others.append(pid)
        level = [pid for pid in children if pid != broker]
    return others, broker


def _jvm_heap(pid: int) -> dict[str, float] | None:
    """Heap of a JVM from ``jstat -gc`` (MiB, GC counts and seconds), if jstat is here."""
    jstat = shutil.which("jstat")
    if jstat is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603 (the JDK's own tool)
            [jstat, "-gc", str(pid)], capture_output=True, text=True, timeout=15, check=True
        ).stdout.split("\n")
        row = dict(zip(out[0].split(), (float(v) for v in out[1].split()), strict=True))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    used = row["S0U"] + row["S1U"] + row["EU"] + row["OU"]
    committed = row["S0C"] + row["S1C"] + row["EC"] + row["OC"]
    return {
        "heap_used_mib": round(used / 1024, 1),
        "old_used_mib": round(row["OU"] / 1024, 1),
        "heap_committed_mib": round(committed / 1024, 1),
        "young_gcs": row["YGC"],
        "full_gcs": row["FGC"],
        "gc_s": row["GCT"],
    }


class _CpuMeter:
    """CPU share of a process between two readings (100 = one core)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}

    def percent(self, pid: int | None) -> float | None:
        if pid is None:
            return None
        used, now = cpu_seconds(pid), time.monotonic()
        if used is None:
            return None
        before = self._last.get(pid)
        self._last[pid] = (used, now)
        if before is None or now <= before[1]:
            return None
        return round(100 * (used - before[0]) / (now - before[1]), 1)


# --- disk -------------------------------------------------------------------------


def _allocated(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (sparse index files count what they use)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # segments are deleted while we walk
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _disk(data_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes under the data folder: ``items.*`` topics, topics kept forever or
    compacted, Kafka's internal topics, and the rest (broker logs, Faust files); and
    the bytes of each ``items.*`` topic."""
    usage = {"items": 0, "kept": 0, "internal": 0, "other": 0}
    items: Counter[str] = Counter()
    log_dir = data_dir / "kafka" / "node-1"
    with contextlib.suppress(OSError):
        for entry in log_dir.iterdir():
            topic, sep, partition = entry.name.rpartition("-")
            if not (entry.is_dir() and sep and partition.isdigit()):
                continue
            kind = (
                "items"
                if topic.startswith(ITEMS_PREFIX)
                else "internal"
                if topic.startswith("__")
                else "kept"
            )
            size = _allocated(entry)
            usage[kind] += size
            if kind == "items":
                items[topic] += size
    usage["other"] = max(_allocated(data_dir) - sum(usage.values()), 0)
    usage["total"] = sum(usage.values())
    return usage, dict(sorted(items.items()))


def _retention(bootstrap: str) -> dict[str, Any]:
    """Retention of each ``items.*`` topic as the broker has it, and the disk bound it
    implies: per partition its size bound, one more segment (Kafka deletes whole
    segments, never the active one) and the active segment's two index files."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = admin.list_topics(timeout=30)
    names = sorted(name for name in cluster.topics if name.startswith(ITEMS_PREFIX))
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    topics: dict[str, Any] = {}
    bound: int | None = 0
    for resource, future in futures.items():
        configs = {key: entry.value for key, entry in future.result(timeout=30).items()}
        partitions = len(cluster.topics[resource.name].partitions)
        size = int(configs["retention.bytes"])
        per_partition = (
            size + int(configs["segment.bytes"]) + 2 * int(configs["segment.index.bytes"])
            if size >= 0
            else None
        )
        topics[resource.name] = {
            "partitions": partitions,
            "retention_ms": int(configs["retention.ms"]),
            "retention_bytes": size,
            "segment_bytes": int(configs["segment.bytes"]),
            "bound_mib": None if per_partition is None else round(partitions * per_partition / MIB),
        }
        bound = (
            None if bound is None or per_partition is None else bound + partitions * per_partition
        )
    return {"topics": dict(sorted(topics.items())), "bound_bytes": bound}


# --- the worker's metrics ---------------------------------------------------------


def _metrics(http: int) -> list[tuple[str, dict[str, str], float]]:
    """The worker's Prometheus samples: name, labels, value."""
    url = f"http://127.0.0.1:{http}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = answer.read().decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
    ]


def _total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for n, have, value in samples
        if n == name and all(have.get(k) == v for k, v in labels.items())
    )


def _books(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, Any]:
    """Records in, out, rejected and shed of each data-flow stage, and its batches."""
    books: dict[str, Any] = {}
    for pe in ("features", "classifier"):
        row: dict[str, Any] = {
            kind: int(_total(samples, f"crowdstream_items_{kind}_total", pe=pe))
            for kind in ("in", "out", "rejected", "shed")
        }
        row["shed_by_reason"] = {
            labels["reason"]: int(value)
            for name, labels, value in samples
            if name == "crowdstream_items_shed_total" and labels.get("pe") == pe and value
        }
        batches = _total(samples, "crowdstream_batch_processing_seconds_count", pe=pe)
        seconds = _total(samples, "crowdstream_batch_processing_seconds_sum", pe=pe)
        row["batches"] = int(batches)
        row["mean_batch_ms"] = round(1000 * seconds / batches, 2) if batches else None
        row["mean_batch_items"] = round(row["in"] / batches, 1) if batches else None
        books[pe] = row
    books["worker_e2e_mean_ms"] = None
    count = _total(samples, "crowdstream_end_to_end_latency_seconds_count")
    if count:
        total_s = _total(samples, "crowdstream_end_to_end_latency_seconds_sum")
        books["worker_e2e_mean_ms"] = round(1000 * total_s / count, 1)
    return books


# --- load and measurement ---------------------------------------------------------


class _Soak:
    """The producer and reader threads and what they measure, indexed by item."""

    def __init__(self, n: int, rate: float, prefix: str, minutes: int) -> None:
        self.n = n
        self.rate = rate
        self.prefix = prefix
        self._prefix_b = prefix.encode()
        self.minutes = minutes
        self.produced_at = array("d", bytes(8 * n))  # wall time just before produce()
        self.seen = bytearray(n)
        self.produced = 0
        self.acked = 0
        self.delivery_errors = 0
        self.classified = 0
        self.duplicates = 0
        self.revisions = 0  # records revising an item after a crowd label: not repeats
        self.foreign = 0
        self.read_errors = 0
        self.max_behind_s = 0.0  # how late the producer ran behind its schedule
        self.start_wall = 0.0
        self.end_wall: float | None = None
        self.last_out: float | None = None  # wall time of the latest new output
        self.longest_gap = (0.0, 0.0)  # (seconds, starting at seconds into the run)
        self.gaps: list[tuple[float, float]] = []
        self.e2e = [array("d") for _ in range(minutes)]
        self.pipeline = [array("d") for _ in range(minutes)]
        self.egress = [array("d") for _ in range(minutes)]
        self.ack = [array("d") for _ in range(minutes)]
        self.classified_by_minute = [0] * minutes
        self.out_by_receipt_minute: Counter[int] = Counter()
        #: End-to-end latencies (ms) received since the last sample.
        self.window = array("d")
        self.stop = threading.Event()
        self.reader_ready = threading.Event()
        self.errors: list[str] = []

    def minute(self, wall: float) -> int:
        return min(max(int((wall - self.start_wall) // 60), 0), self.minutes - 1)

    def _index(self, key: object) -> int | None:
        if isinstance(key, str) and key.startswith(self.prefix):
            rest = key[len(self.prefix) :]
            if rest.isdigit() and int(rest) < self.n:
                return int(rest)
        return None

    def _guarded(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except Exception as exc:  # noqa: BLE001 (reported in the JSON, and the run ends)
                self.errors.append(f"{body.__name__}: {exc!r}")
                self.stop.set()

        return run

    # The producer.

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        key = msg.key() or b""
        i = int(key[len(self._prefix_b) :]) if key.startswith(self._prefix_b) else -1
        if err is not None or i < 0:
            self.delivery_errors += 1
            return
        self.acked += 1
        sent = self.produced_at[i]
        self.ack[self.minute(sent)].append(1000 * (time.time() - sent))

    def produce(self, bootstrap: str, linger_ms: float) -> None:
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": "crowdstream-soak-producer",
                "linger.ms": linger_ms,
                "acks": "all",
                "enable.idempotence": True,
            }
        )
        sample = load_sample()
        started = time.monotonic()
        self.start_wall = time.time()
        try:
            for i in range(self.n):
                due = started + i / self.rate
                ahead = due - time.monotonic()
                if ahead > 0:
                    if self.stop.wait(ahead):
                        break
                else:
                    self.max_behind_s = max(self.max_behind_s, -ahead)
                    if self.stop.is_set():
                        break
                item_id = f"{self.prefix}{i}"
                value = orjson.dumps({**sample[i % len(sample)], "id": item_id})
                self.produced_at[i] = time.time()
                while True:
                    try:
                        producer.produce(
                            RAW, value, key=item_id.encode(), on_delivery=self._delivered
                        )
                        break
                    except BufferError:  # librdkafka's queue is full: the broker lags
                        producer.poll(0.05)
                self.produced = i + 1
                producer.poll(0)
        finally:
            self.end_wall = time.time()
            producer.flush(30)

    # The reader.

    def gap_until(self, until: float) -> None:
        """Output resumed (or the run ended) at ``until``: note the gap since the last
        output (or since input began), counting only while input was flowing."""
        start = self.last_out if self.last_out is not None else self.start_wall
        if self.end_wall is not None:
            if start >= self.end_wall:
                return
            until = min(until, self.end_wall)
        gap = until - start
        at = round(start - self.start_wall, 1)
        if gap > self.longest_gap[0]:
            self.longest_gap = (gap, at)
        if gap > GAP_LISTED_S and len(self.gaps) < 200:
            self.gaps.append((at, round(gap, 2)))

    def read(self, bootstrap: str) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": "crowdstream-soak-reader",
                "group.id": "crowdstream-soak-reader",  # required; assign() joins no group
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        try:
            cluster = consumer.list_topics(CLASSIFIED, timeout=30)
            partitions = sorted(cluster.topics[CLASSIFIED].partitions)
            if not partitions:
                raise RuntimeError(f"{CLASSIFIED} has no partitions")
            # A fresh broker: the topic holds only this run's items.
            consumer.assign([TopicPartition(CLASSIFIED, p, OFFSET_BEGINNING) for p in partitions])
            self.reader_ready.set()
            while not self.stop.is_set():
                # poll() returns as soon as a record is there (consume() would wait for
                # a full batch or its timeout), then take whatever else is queued.
                first = consumer.poll(0.1)
                if first is None:
                    continue
                now = time.time()
                messages = [first, *consumer.consume(num_messages=1000, timeout=0)]
                new = 0
                for msg in messages:
                    if msg.error() is not None:
                        self.read_errors += 1
                        continue
                    item = orjson.loads(msg.value() or b"null")
                    i = self._index(item.get("id")) if isinstance(item, dict) else None
                    if i is None:
                        self.foreign += 1
                        continue
                    if item.get("revision"):
                        self.revisions += 1
                        continue
                    if self.seen[i]:
                        self.duplicates += 1
                        continue
                    self.seen[i] = 1
                    new += 1
                    sent = self.produced_at[i]
                    minute = self.minute(sent)
                    self.e2e[minute].append(1000 * (now - sent))
                    self.window.append(1000 * (now - sent))
                    self.pipeline[minute].append(1000 * (item["ts_out"] - item["ts_in"]))
                    self.egress[minute].append(1000 * (now - item["ts_out"]))
                    self.classified_by_minute[minute] += 1
                if new:
                    self.gap_until(now)
                    self.last_out = now
                    self.classified += new
                    self.out_by_receipt_minute[int((now - self.start_wall) // 60)] += new
        finally:
            consumer.close()

    def threads(self, bootstrap: str, linger_ms: float) -> tuple[threading.Thread, ...]:
        return (
            threading.Thread(
                target=self._guarded(lambda: self.read(bootstrap)), name="soak-reader"
            ),
            threading.Thread(
                target=self._guarded(lambda: self.produce(bootstrap, linger_ms)),
                name="soak-producer",
            ),
        )


# --- the run ----------------------------------------------------------------------


class _Run:
    """One soak: the worker (and its broker), the load, the samples, the report."""

    def __init__(self, args: argparse.Namespace, stamp: str, data_dir: Path, out: Path) -> None:
        self.args = args
        self.data_dir = data_dir
        self.broker_port = args.broker_port or free_port()
        self.http_port = args.http_port or free_port()
        self.crowd: str = args.crowd
        self.log_path = out / f"soak-{stamp}-worker.log"
        self.minutes = max(math.ceil(args.minutes), 1)
        self.soak = _Soak(
            int(args.rate * args.minutes * 60), args.rate, f"soak-{stamp}-", self.minutes
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.broker_pids: list[int] = []
        self.samples: list[dict[str, Any]] = []
        self.cpu = _CpuMeter()
        self.retention: dict[str, Any] = {}
        self.final_metrics: list[tuple[str, dict[str, str], float]] = []
        self.worker_exit: int | None = None
        self.stop_seconds: float | None = None
        self.dropped_env: list[str] = []
        self._stopped = False
        self._threads: tuple[threading.Thread, ...] = ()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def start_worker(self) -> None:
        """``crowdstream up --embedded`` as a user runs it; wait until it is ready."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSTREAM_")}
        env.update({k: os.environ[k] for k in KEEP_ENV if k in os.environ})
        self.dropped_env = sorted(set(os.environ) - set(env))
        env["CROWDSTREAM_DATA_DIR"] = str(self.data_dir)
        cmd = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "up",
            "--embedded",
            "--crowd",
            self.crowd,
            "--broker-port",
            str(self.broker_port),
            "--http-port",
            str(self.http_port),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603 (our own CLI)
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Ctrl-C at the terminal reaches the bench only, which stops the worker
                # in order; the worker still goes if the bench is killed.
                start_new_session=True,
                preexec_fn=die_with_parent,  # only prctl: safe between fork and exec
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the worker exited with {self.proc.returncode}:\n{self._log_tail()}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker was not ready in {READY_TIMEOUT_S:.0f} s:\n{self._log_tail()}"
                )
            time.sleep(0.5)
        _, pid = _tree(self.proc.pid, self.data_dir)
        if pid is None:
            raise RuntimeError("no embedded broker (java kafka.Kafka) under the worker")
        self.broker_pids.append(pid)

    def sample(self) -> dict[str, Any]:
        """Memory and CPU of worker, broker and bench; disk; the worker's metrics."""
        assert self.proc is not None
        soak = self.soak
        worker = self.proc.pid
        helpers, broker = _tree(worker, self.data_dir)
        if broker is not None and broker not in self.broker_pids:
            self.broker_pids.append(broker)  # the worker restarted its broker
        w, b, me = _proc_status(worker), _proc_status(broker or -1), _proc_status(os.getpid())
        tree = [w, *(_proc_status(pid) for pid in helpers)]
        tree_cpu = [self.cpu.percent(pid) for pid in [worker, *helpers]]
        window, soak.window = soak.window, array("d")
        latency = ms_summary(window)
        row: dict[str, Any] = {
            "t_s": round(time.time() - soak.start_wall, 1),
            "produced": soak.produced,
            "classified": soak.classified,
            # Items received since the previous sample, and their latency.
            "window_out": latency["n"],
            "window_p99_ms": latency["p99"],
            "window_max_ms": latency["max"],
            "worker_rss_mib": round(w.get("VmRSS", 0.0), 1),
            "worker_anon_mib": round(w.get("RssAnon", 0.0), 1),
            "worker_cpu_pct": tree_cpu[0],
            "worker_helpers": len(helpers),
            "worker_tree_rss_mib": round(sum(t.get("VmRSS", 0.0) for t in tree), 1),
            "worker_tree_anon_mib": round(sum(t.get("RssAnon", 0.0) for t in tree), 1),
            "worker_tree_cpu_pct": round(sum(c for c in tree_cpu if c is not None), 1),
            "broker_pid": broker,
            "broker_rss_mib": round(b.get("VmRSS", 0.0), 1),
            "broker_anon_mib": round(b.get("RssAnon", 0.0), 1),
            "broker_file_mib": round(b.get("RssFile", 0.0), 1),
            "broker_cpu_pct": self.cpu.percent(broker),
            "bench_rss_mib": round(me.get("VmRSS", 0.0), 1),
            "bench_cpu_pct": self.cpu.percent(os.getpid()),
            "load1": round(os.getloadavg()[0], 2),
        }
        if broker is not None and len(self.samples) % JSTAT_EVERY == 0:
            row["broker_heap"] = _jvm_heap(broker)
        disk, topics = _disk(self.data_dir)
        row.update({f"disk_{kind}_mib": round(size / MIB, 1) for kind, size in disk.items()})
        row["disk_topics_mib"] = {topic: round(size / MIB, 1) for topic, size in topics.items()}
        try:
            metrics = _metrics(self.http_port)
        except OSError:
            row["metrics"] = None
            return row
        lags = [v for n, _, v in metrics if n == "crowdstream_consumer_lag"]
        keeps = [v for n, _, v in metrics if n == "crowdstream_shedding_keep_fraction"]
        row.update(
            {
                "shed": int(_total(metrics, "crowdstream_items_shed_total")),
                "rejected": int(_total(metrics, "crowdstream_items_rejected_total")),
                "max_lag": int(max(lags, default=0)),
                "min_keep_fraction": min(keeps, default=None),
                "broker_up": _total(metrics, "crowdstream_broker_up"),
                "model_versions": {
                    labels["classifier"]: int(value)
                    for name, labels, value in metrics
                    if name == "crowdstream_model_version"
                },
            }
        )
        return row

    def run(self) -> bool:
        """Start, soak, drain; False when interrupted (Ctrl-C, SIGTERM)."""
        try:
            self.start_worker()
            self.retention = _retention(self.bootstrap)
            reader, producer = self._threads = self.soak.threads(
                self.bootstrap, self.args.linger_ms
            )
            reader.start()
            if not self.soak.reader_ready.wait(60):
                raise RuntimeError("the reader did not get its partitions in 60 s")
            producer.start()
            while self.soak.start_wall == 0.0 and producer.is_alive():
                time.sleep(0.01)
            self._soak_loop(producer)
            self._drain()
            self.samples.append(self.sample())
            with contextlib.suppress(OSError):
                self.final_metrics = _metrics(self.http_port)
            return True
        except KeyboardInterrupt:
            with contextlib.suppress(OSError):
                self.final_metrics = _metrics(self.http_port)
            return False
        finally:
            self.stop()

    def _soak_loop(self, producer: threading.Thread) -> None:
        next_at = time.monotonic()
        while producer.is_alive():
            self.samples.append(self.sample())
            if self.proc is not None and self.proc.poll() is not None:
                self.worker_exit = self.proc.returncode
                self.soak.stop.set()
                return
            next_at += SAMPLE_EVERY_S
            producer.join(timeout=max(next_at - time.monotonic(), 0.0))

    def _drain(self) -> None:
        """Wait for the last items: until all acknowledged ones came out, or none came
        for ``--drain-seconds`` (shed items never come)."""
        soak = self.soak
        last, count = time.monotonic(), soak.classified
        while not soak.stop.is_set() and soak.classified < soak.acked:
            time.sleep(0.2)
            if soak.classified != count:
                last, count = time.monotonic(), soak.classified
            elif time.monotonic() - last > self.args.drain_seconds:
                break

    def stop(self) -> None:
        """Stop the load, then the worker (SIGTERM; it stops its broker). Idempotent."""
        self.soak.stop.set()
        if self._stopped:
            return
        self._stopped = True
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=60)
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait(timeout=10)
            self.stop_seconds = round(time.monotonic() - started, 1)
        elif self.worker_exit is None:
            self.worker_exit = proc.returncode
        for pid in self.broker_pids:  # a broker that outlived its worker
            if _is_broker(pid, self.data_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while _is_broker(pid, self.data_dir) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if _is_broker(pid, self.data_dir):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    # The report.

    def _memory(self, prefix: str, warmup_s: float, end_s: float) -> dict[str, Any]:
        points = [
            (s["t_s"], s[f"{prefix}_rss_mib"])
            for s in self.samples
            if warmup_s <= s["t_s"] <= end_s and s[f"{prefix}_rss_mib"]
        ]
        anon = [
            (s["t_s"], s[f"{prefix}_anon_mib"])
            for s in self.samples
            if warmup_s <= s["t_s"] <= end_s and s[f"{prefix}_anon_mib"]
        ]
        slope = _slope_per_hour(points)
        anon_slope = _slope_per_hour(anon)
        # A step (a helper process starting, buffers filling) weighs on one fit over the
        # whole window; the second half says whether it is still growing.
        late = _slope_per_hour(points[len(points) // 2 :])
        mean = sum(v for _, v in points) / len(points) if points else None
        limit = self.args.max_slope_pct / 100 * mean if mean else None
        cpu = [s[f"{prefix}_cpu_pct"] for s in self.samples if s[f"{prefix}_cpu_pct"] is not None]
        return {
            "rss_first_mib": self.samples[0][f"{prefix}_rss_mib"] if self.samples else None,
            "rss_after_warmup_mib": points[0][1] if points else None,
            "rss_last_mib": points[-1][1] if points else None,
            "rss_max_mib": max((s[f"{prefix}_rss_mib"] for s in self.samples), default=None),
            "rss_mean_after_warmup_mib": None if mean is None else round(mean, 1),
            "slope_mib_per_h": None if slope is None else round(slope, 1),
            "anon_slope_mib_per_h": None if anon_slope is None else round(anon_slope, 1),
            "slope_second_half_mib_per_h": _round(late),
            "limit_mib_per_h": None if limit is None else round(limit, 1),
            "samples_fitted": len(points),
            "cpu_pct_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "pass": slope is not None and limit is not None and slope <= limit,
        }

    def _heap(self, warmup_s: float, end_s: float) -> dict[str, Any] | None:
        """The broker's heap (jstat) after warm-up: old-generation trend, GC work."""
        rows = [
            (s["t_s"], s["broker_heap"])
            for s in self.samples
            if s.get("broker_heap") and warmup_s <= s["t_s"] <= end_s
        ]
        if not rows:
            return None
        first, last = rows[0][1], rows[-1][1]
        span_h = (rows[-1][0] - rows[0][0]) / 3600
        return {
            "readings": len(rows),
            "committed_mib": last["heap_committed_mib"],
            "used_mib": [r["heap_used_mib"] for _, r in rows],
            "old_used_mib": [r["old_used_mib"] for _, r in rows],
            "old_slope_mib_per_h": _round(_slope_per_hour((t, r["old_used_mib"]) for t, r in rows)),
            "young_gcs_per_min": round((last["young_gcs"] - first["young_gcs"]) / span_h / 60, 1)
            if span_h
            else None,
            "full_gcs": last["full_gcs"],
            "gc_s_per_min": round((last["gc_s"] - first["gc_s"]) / span_h / 60, 3)
            if span_h
            else None,
        }

    def _disk_report(self, warmup_s: float, end_s: float) -> dict[str, Any]:
        def series(kind: str) -> list[tuple[float, float]]:
            return [
                (s["t_s"], s[f"disk_{kind}_mib"])
                for s in self.samples
                if warmup_s <= s["t_s"] <= end_s
            ]

        bound = self.retention.get("bound_bytes")
        bound_mib = None if bound is None else round(bound / MIB)
        items_max = max((s["disk_items_mib"] for s in self.samples), default=0.0)
        growth = _slope_per_hour(series("items"))
        retention_h = (
            min(
                (t["retention_ms"] for t in self.retention.get("topics", {}).values()),
                default=-1,
            )
            / 3.6e6
        )
        report: dict[str, Any] = {
            "max_total_mib": max((s["disk_total_mib"] for s in self.samples), default=None),
            "max_items_topics_mib": items_max,
            "last": {
                k: self.samples[-1][f"disk_{k}_mib"]
                for k in ("items", "kept", "internal", "other", "total")
            }
            if self.samples
            else None,
            "items_growth_mib_per_h": None if growth is None else round(growth, 1),
            "kept_topics_growth_mib_per_h": _round(_slope_per_hour(series("kept"))),
            "total_growth_mib_per_h": _round(_slope_per_hour(series("total"))),
            "items_bound_mib": bound_mib,
            "retention": self.retention.get("topics"),
        }
        # Where each topic settles: its size bound or what its time bound keeps.
        steady: list[float] = []
        for topic, spec in (report["retention"] or {}).items():
            points = [
                (s["t_s"], s["disk_topics_mib"].get(topic, 0.0))
                for s in self.samples
                if warmup_s <= s["t_s"] <= end_s
            ]
            rate = _slope_per_hour(points)
            now = points[-1][1] if points else 0.0
            spec["last_mib"] = now
            spec["growth_mib_per_h"] = _round(rate)
            if rate and rate > 0 and spec["bound_mib"] is not None:
                spec["hours_to_size_bound"] = round((spec["bound_mib"] - now) / rate, 1)
            if spec["bound_mib"] is not None and spec["retention_ms"] > 0:
                by_time = (rate or 0.0) * spec["retention_ms"] / 3.6e6
                steady.append(min(spec["bound_mib"], max(by_time, now)))
        if steady and len(steady) == len(report["retention"] or {}):
            report["items_steady_state_mib"] = round(sum(steady))
        report["pass"] = bound_mib is not None and retention_h > 0 and items_max <= bound_mib
        return report

    def report(self, completed: bool, stamp: str) -> dict[str, Any]:
        args, soak = self.args, self.soak
        warmup_s = args.warmup_minutes * 60
        end_s = (soak.end_wall or time.time()) - soak.start_wall if soak.start_wall else 0.0
        if soak.start_wall:
            soak.gap_until(time.time())  # output that stopped before the input did
        warm = math.ceil(args.warmup_minutes)  # whole minutes after the warm-up
        per_minute: list[dict[str, Any]] = []
        for m in range(self.minutes):
            produced = sum(
                1
                for t in soak.produced_at[int(m * 60 * args.rate) : int((m + 1) * 60 * args.rate)]
                if t
            )
            per_minute.append(
                {
                    "minute": m,
                    "produced": produced,
                    "classified": soak.classified_by_minute[m],
                    "out_in_minute": soak.out_by_receipt_minute.get(m, 0),
                    "shed_in_minute": self._shed_between(60 * m, 60 * (m + 1)),
                    **self._sampled_in(60 * m, 60 * (m + 1)),
                    "e2e_ms": ms_summary(soak.e2e[m]),
                    "pipeline_ms": ms_summary(soak.pipeline[m]),
                    "egress_ms": ms_summary(soak.egress[m]),
                    "producer_ack_ms": ms_summary(soak.ack[m]),
                }
            )
        after = [m for m in per_minute if m["minute"] >= warm and m["e2e_ms"]["n"]]
        over = [m["minute"] for m in after if m["e2e_ms"]["p99"] > args.p99_ms]
        worst = max(after, key=lambda m: m["e2e_ms"]["p99"], default=None)
        overall_after = ms_summary(_concat(soak.e2e[warm:]))
        stall_s, stall_at = soak.longest_gap
        memory: dict[str, Any] = {
            # The worker with its helper processes (the learner's fitter), not its broker.
            "worker": self._memory("worker_tree", warmup_s, end_s),
            "worker_main_process": self._memory("worker", warmup_s, end_s),
            "broker": self._memory("broker", warmup_s, end_s),
            "broker_heap": self._heap(warmup_s, end_s),
        }
        disk = self._disk_report(warmup_s, end_s)
        books = _books(self.final_metrics) if self.final_metrics else None
        missing = int(soak.acked - soak.classified)
        targets = {
            "no_stall": {
                "limit_s": args.max_stall_seconds,
                "longest_s": round(stall_s, 2),
                "at_s": stall_at,
                "pass": stall_s <= args.max_stall_seconds and soak.classified > 0,
            },
            "p99_each_minute_after_warmup": {
                "limit_ms": args.p99_ms,
                "worst_minute": None if worst is None else worst["minute"],
                "worst_p99_ms": None if worst is None else worst["e2e_ms"]["p99"],
                "minutes_over": over,
                "pass": bool(after) and not over,
            },
            "p99_overall_after_warmup": {
                "limit_ms": args.p99_ms,
                "p99_ms": overall_after["p99"],
                "pass": overall_after["p99"] is not None and overall_after["p99"] < args.p99_ms,
            },
            "worker_memory_flat": {
                k: memory["worker"][k] for k in ("slope_mib_per_h", "limit_mib_per_h", "pass")
            },
            "broker_memory_flat": {
                k: memory["broker"][k] for k in ("slope_mib_per_h", "limit_mib_per_h", "pass")
            },
            "disk_bounded_by_retention": {
                "max_items_topics_mib": disk["max_items_topics_mib"],
                "bound_mib": disk["items_bound_mib"],
                "pass": disk["pass"],
            },
        }
        passed = (
            completed
            and self.worker_exit is None
            and not soak.errors
            and all(t["pass"] for t in targets.values())
        )
        return {
            "benchmark": "soak",
            "when": stamp,
            "passed": passed,
            "completed": completed,
            "errors": soak.errors,
            "worker_exit_code": self.worker_exit,
            "worker_stop_s": self.stop_seconds,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
            },
            "setup": {
                "command": f"python -m pipelines.cli up --embedded --crowd {self.crowd} "
                f"--broker-port {self.broker_port} --http-port {self.http_port}",
                "pipeline": PIPELINE,
                "kafka": kafka_version(),
                "inherited_env_dropped": self.dropped_env,
                "broker_pids": self.broker_pids,
                "broker_restarts": max(len(self.broker_pids) - 1, 0),
                "worker_log": f"reports/{self.log_path.name}",
                "producer": f"confluent-kafka {confluent_kafka.version()[0]}, "
                f"linger.ms={args.linger_ms}, "
                "acks=all, idempotent, key = item id",
            },
            "load": {
                "rate_per_s": args.rate,
                "minutes": args.minutes,
                "warmup_minutes": args.warmup_minutes,
                "seconds": round(end_s, 1),
                "produced": soak.produced,
                "acked": soak.acked,
                "delivery_errors": soak.delivery_errors,
                "producer_max_behind_s": round(soak.max_behind_s, 3),
            },
            "output": {
                "classified": soak.classified,
                "missing": missing,
                "duplicates": soak.duplicates,
                "revisions": soak.revisions,
                "foreign": soak.foreign,
                "read_errors": soak.read_errors,
                "stalls_over_1s": [{"at_s": at, "gap_s": gap} for at, gap in soak.gaps],
            },
            "latency_ms": {
                "e2e_overall": ms_summary(_concat(soak.e2e)),
                "e2e_after_warmup": overall_after,
                "pipeline_after_warmup": ms_summary(_concat(soak.pipeline[warm:])),
                "egress_after_warmup": ms_summary(_concat(soak.egress[warm:])),
                "producer_ack_after_warmup": ms_summary(_concat(soak.ack[warm:])),
            },
            "worker_books": books,
            "memory": memory,
            "disk": disk,
            "targets": targets,
            "per_minute": per_minute,
            "samples": self.samples,
        }

    def _sampled_in(self, start_s: float, end_s: float) -> dict[str, float | None]:
        """Mean load average and CPU shares of the samples taken in a time range."""
        rows = [s for s in self.samples if start_s < s["t_s"] <= end_s]
        means: dict[str, float | None] = {}
        for key in ("load1", "worker_cpu_pct", "broker_cpu_pct"):
            values = [s[key] for s in rows if s[key] is not None]
            means[key] = round(sum(values) / len(values), 1) if values else None
        return means

    def _shed_between(self, start_s: float, end_s: float) -> int | None:
        """Shed records between two times, from the samples nearest to them."""
        rows = [s for s in self.samples if s.get("shed") is not None]
        if not rows:
            return None

        def at(t: float) -> int:
            return int(min(rows, key=lambda s: abs(s["t_s"] - t))["shed"])

        return at(end_s) - at(start_s)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _concat(parts: Sequence[array[float]]) -> array[float]:
    out = array("d")
    for part in parts:
        out.extend(part)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=270.0, help="items per second")
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to feed")
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument(
        "--crowd",
        choices=("simulated", "none"),
        default="simulated",
        help="none: no crowd, so no labels or retrains (tells their memory from the rest)",
    )
    parser.add_argument("--linger-ms", type=float, default=5.0, help="the producer's linger.ms")
    parser.add_argument("--p99-ms", type=float, default=250.0, help="p99 latency target")
    parser.add_argument("--max-stall-seconds", type=float, default=5.0)
    parser.add_argument(
        "--max-slope-pct",
        type=float,
        default=5.0,
        help="memory counts as flat below this slope, in %% of its mean RSS per hour",
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=15.0, help="wait this long for the last items"
    )
    parser.add_argument("--broker-port", type=int, help="default: a free port")
    parser.add_argument("--http-port", type=int, help="default: a free port")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="an empty or new folder, kept afterwards (default: a temporary one, removed)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0 or args.warmup_minutes < 0:
        parser.error("--rate and --minutes must be positive, --warmup-minutes not negative")
    if args.warmup_minutes >= args.minutes:
        parser.error("--warmup-minutes must be shorter than --minutes")
    if args.data_dir is not None and args.data_dir.exists() and any(args.data_dir.iterdir()):
        parser.error("--data-dir must be empty or not exist: the soak needs a fresh broker")
    out_dir = Path("reports")
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="crowdstream-soak-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    run = _Run(args, stamp, data_dir.resolve(), out_dir)
    try:
        completed = run.run()
        result = run.report(completed, stamp)
    except RuntimeError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    finally:
        run.stop()
        if args.data_dir is None and not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    (out_dir / f"soak-{stamp}.json").write_text(text + "\n")
    print(text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
