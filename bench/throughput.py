"""Throughput, latency, overload and memory of the pipeline on the embedded broker.

A benchmark, not a test. Runs workers with every PE but the annotator
(``--crowd none``) and a model for each classifier, distilled from the default
teacher as the learner's are (with its decision and second opinion). Each measurement gets a
fresh embedded broker and fresh workers, warmed up with 5,000 items (so runs do not
measure each other's backlog, retention or caches). It measures:

1. saturation: N items pushed as fast as possible; items/s from the first push to
   the last classified item, and end-to-end latency percentiles;
2. sustained: items pushed at a fixed high rate (default 11,000/s) for 60 s;
3. steady: items pushed at 270/s (the hurricane Sandy peak); latency percentiles;
4. a rate sweep: each input rate for a few seconds; output rate and latency
   percentiles per rate (plotted to reports/bench-sweep-<timestamp>.png); the
   highest swept rate the pipeline kept up with is the maximum sustainable rate,
   and latency is then measured for ``--seconds`` at 80% of it;
5. the ceiling: a plain aiokafka produce + consume of the same records, same broker;
6. overload: a worker with load shedding on, fed at 3x the maximum sustainable rate
   (or ``--overload-rate``); latency, output rate, and its books
   (in = out + rejected + shed);
7. burst: ``--burst-items`` (default 60,000) pushed at once, as fast as the pusher
   goes, into the default shedding policy (the ``crisis`` default): how many come
   out, how fast, how late, and how many were shed;
8. scale-out: saturation with two worker processes, first two instances of every
   PE sharing the partitions, then features (with the fused task generator) in one
   process and the classifier in another;
9. memory: a worker's resident memory sampled over a long run at a fixed rate
   (plotted to reports/bench-memory-<timestamp>.png);
10. retweets: the second pass's reach on a retweet-heavy stream, pushed at ``--rate``
   for ``--retweet-seconds``: each item is, with probability ``--retweet-share``, a
   retweet ("RT @user: ...") of an earlier item picked at random (so a message is
   retweeted in proportion to its copies so far: Yule-Simon), else the next message
   of ``--data`` (default: the bundled sample; pass the full dataset so that no
   message comes twice but as a retweet). With no retweets and with them, the second
   pass's memory of near-duplicates' embeddings off and on; for each, from the
   helper's first batch on (it loads its encoders first), the doubted tags decided
   again, shed or expired, the share decided, and the embeddings by source.

Prints JSON and writes it to reports/bench-throughput-<timestamp>.json.
Usage: python bench/throughput.py [--runs saturation,sustained,...] [--items 200000]
       [--sustain-rate 11000] [--sustain-seconds 60] [--overload-rate R]
       [--memory-rate 10000] [--memory-seconds 600]
       [--retweet-share 0.5] [--retweet-seconds 60] [--data messages.jsonl.gz] ...
Two runs are not in the default set: the memory run pushes six million records over
ten minutes, and the retweets run is four runs of ``--retweet-seconds``; run each on
its own (``--runs memory``, ``--runs retweets``). Every run pushes with a 5 ms
linger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from channels.signing import ModelSigner
from channels.topics import TopicPolicy, TopicSpec
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.client import push_lines
from pipelines.kafka.dist import kafka_version
from pipelines.local import rss_mib
from pipelines.report import percentiles
from pipelines.sample import SAMPLE_PATH, load_sample
from pipelines.testing import sample_models
from pipelines.topology import load_topology
from runtime.admin import declare_topics

PIPELINE = "crisis"
#: The model key of the bench workers (they do not own the broker, so they need one).
BENCH_MODEL_KEY = b"crowdstream throughput-bench model key"


@dataclass(frozen=True)
class _Load:
    """``n`` sample messages with ids ``<prefix><i>``, made as they are pushed;
    ``retweets`` of them are retweets of earlier ones (the ``retweets`` run).

    Made lazily and tracked by index, so a run of millions of items costs the load
    generator megabytes, not gigabytes.
    """

    n: int
    prefix: str = "b"
    retweets: float = 0.0
    data: Path = SAMPLE_PATH

    def lines(self) -> Iterator[bytes]:
        sample = load_sample(path=self.data)
        rng = random.Random(self.n)
        source = array("i")  # each pushed item's message: retweets pick from these
        fresh = 0
        for i in range(self.n):
            if i and rng.random() < self.retweets:
                message = source[rng.randrange(i)]
                text = f"RT @user{rng.randrange(100_000)}: {sample[message]['text']}"
            else:
                message, fresh = fresh % len(sample), fresh + 1
                text = sample[message]["text"]
            source.append(message)
            yield orjson.dumps({**sample[message], "text": text, "id": f"{self.prefix}{i}"})

    def index(self, item_id: object) -> int | None:
        """Which of this load's items ``item_id`` is, if any."""
        if not isinstance(item_id, str) or not item_id.startswith(self.prefix):
            return None
        rest = item_id[len(self.prefix) :]
        return int(rest) if rest.isdigit() and int(rest) < self.n else None


#: The sample's items the models are distilled over by default: each model carries a
#: decision and a second opinion, as the default learner's do, so the classifier's
#: second pass runs as it does in the default configuration.
TAUGHT = 1000


@functools.cache
def _models(taught: int) -> list[bytes]:
    """Each classifier's model, trained on the sample's truth and distilled over
    ``taught`` items (once a run: the teacher embeds for about a minute); signed with
    the key the workers check."""
    return sample_models(load_topology(PIPELINE), ModelSigner(BENCH_MODEL_KEY), taught=taught)


async def _publish_models(bootstrap: str, taught: int) -> None:
    """Publish each classifier's model (:func:`_models`), as the learner would."""
    topology = load_topology(PIPELINE)
    models = _models(taught)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for spec, model in zip(topology.classifiers, models, strict=True):
            await producer.send_and_wait(
                f"{PIPELINE}.control.models", model, key=spec.name.encode()
            )
    finally:
        await producer.stop()


async def _measure(bootstrap: str, load: _Load, rate: float | None) -> dict[str, Any]:
    """Push ``load`` and read its classified records; throughput and latency."""
    consumer = AIOKafkaConsumer(
        f"{PIPELINE}.items.classified",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    await consumer.getmany(timeout_ms=200)  # settle the "latest" position first
    latencies: list[float] = []
    seen = bytearray(load.n)
    count = 0
    started = time.time()
    pushed_at: list[float] = []

    async def push() -> None:
        await push_lines([bootstrap], PIPELINE, load.lines(), rate)
        pushed_at.append(time.time())

    pusher = asyncio.create_task(push())
    last = started
    try:
        # Stop 10 s after the last new item: with load shedding, some never come.
        while count < load.n and time.time() - last < 10:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                for record in batch:
                    item = orjson.loads(record.value)
                    i = load.index(item["id"])
                    if i is not None and not seen[i]:
                        seen[i] = 1
                        count += 1
                        latencies.append(item["ts_out"] - item["ts_in"])
                        last = time.time()
        await pusher
    finally:
        await consumer.stop()
    elapsed = last - started
    push_s = pushed_at[0] - started
    return {
        "items": load.n,
        "classified": count,
        "input_rate": rate,
        "pushed_per_s": round(load.n / push_s, 1) if push_s > 0 else None,
        "seconds": round(elapsed, 2),
        "items_per_s": round(count / elapsed, 1) if elapsed > 0 else None,
        "latency_s": percentiles(latencies),
    }


async def _ceiling(bootstrap: str, load: _Load) -> dict[str, Any]:
    """Plain aiokafka: produce the records to a fresh topic and consume them back."""
    topic = f"bench-ceiling-{int(time.time())}"
    # Declared like the pipeline's topics (the broker creates none by itself).
    await declare_topics([bootstrap], [TopicSpec(topic, topic, 4)], TopicPolicy())
    lines = list(load.lines())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.time()
    futures = [await producer.send(topic, line) for line in lines]
    await asyncio.gather(*futures)
    produced = time.time() - started
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    count, started_c = 0, time.time()
    while count < len(lines) and time.time() - started_c < 60:
        batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
        for batch in batches.values():
            for record in batch:
                orjson.loads(record.value)  # parse, as the pipeline does
                count += 1
    consumed = time.time() - started_c
    await consumer.stop()
    return {
        "records": count,
        "produce_per_s": round(len(lines) / produced, 1),
        "consume_per_s": round(count / consumed, 1),
        "produce_plus_consume_per_s": round(count / (produced + consumed), 1),
    }


def _plot_sweep(sweep: list[dict[str, Any]], path: Path) -> None:
    """Input vs output rate and latency percentiles (AIDR's Figure 4 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [point["input_rate"] for point in sweep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(rates, [point["items_per_s"] for point in sweep], marker="o", label="output")
    left.plot(rates, rates, linestyle="--", color="grey", label="input")
    left.set_xlabel("input rate (items/s)")
    left.set_ylabel("output rate (items/s)")
    left.legend()
    left.grid(alpha=0.3)
    for key in ("p50", "p99"):
        right.plot(
            rates, [point["latency_s"][key] * 1000 for point in sweep], marker="o", label=key
        )
    right.set_yscale("log")
    right.set_xlabel("input rate (items/s)")
    right.set_ylabel("end-to-end latency (ms)")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_memory(memory: dict[str, Any], path: Path) -> None:
    """The worker's resident memory over the memory run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([t for t, _ in memory["rss_mib"]], [rss for _, rss in memory["rss_mib"]])
    axis.set_xlabel(f"seconds at {memory['input_rate']:,.0f} items/s")
    axis.set_ylabel("worker RSS (MiB)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("worker exited; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("worker not ready")


class _Workers:
    """Worker processes of one bench run, stopped (SIGTERM) together."""

    def __init__(self, broker: EmbeddedBroker, out_dir: Path, stamp: str, scratch: Path) -> None:
        """Logs go to ``out_dir``; the workers' state to ``scratch``, removed after."""
        self._broker = broker
        self._out_dir = out_dir
        self._stamp = stamp
        self._scratch = scratch
        self.procs: list[tuple[subprocess.Popen[bytes], int]] = []

    def start(self, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
        http = free_port()
        log_path = self._out_dir / f"bench-worker-{self._stamp}-{http}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "pipelines.cli",
                    "up",
                    PIPELINE,
                    "--broker",
                    self._broker.url,
                    "--http-port",
                    str(http),
                    "--crowd",
                    "none",
                    # Throughput runs count every item: shedding only where asked.
                    "--set",
                    "shedding.enabled=false",
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "CROWDSTREAM_MODEL_KEY": BENCH_MODEL_KEY.decode(),
                    "CROWDSTREAM_DATA_DIR": str(self._scratch / f"worker-{http}"),
                },
            )
        self.procs.append((proc, http))
        _wait_ready(f"http://127.0.0.1:{http}/healthz", proc)
        return proc, http

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
        self.procs.clear()


def _metrics(http: int) -> list[tuple[str, dict[str, str], float]]:
    """The worker's Prometheus samples: name, labels, value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as answer:
        body = answer.read().decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    ]


def _books(https: list[int]) -> dict[str, dict[str, float]]:
    """in, out, rejected and shed of each data-flow PE over all workers (they must
    balance), and what the second pass did."""
    samples = [sample for http in https for sample in _metrics(http)]
    books: dict[str, dict[str, float]] = {}
    for pe in ("features", "classifier"):
        row = {
            kind: sum(
                value
                for name, labels, value in samples
                if name == f"crowdstream_items_{kind}_total" and labels.get("pe") == pe
            )
            for kind in ("in", "out", "rejected", "shed")
        }
        row["balanced"] = float(row["in"] == row["out"] + row["rejected"] + row["shed"])
        books[pe] = row
    # The second pass: its tags by outcome (over both classifiers), its embeddings
    # by source, and the items still waiting for it.
    opinions: dict[str, float] = {}
    for name, labels, value in samples:
        if name == "crowdstream_second_opinions_total":
            key = f"tags_{labels['outcome']}"
        elif name == "crowdstream_second_opinion_embeddings_total":
            key = f"embeddings_{labels['source']}"
        elif name == "crowdstream_second_opinion_waiting":
            key = "waiting"
        else:
            continue
        opinions[key] = opinions.get(key, 0.0) + value
    books["second_opinions"] = opinions
    return books


async def _memory(
    bootstrap: str, pid: int, rate: float, seconds: float, every_s: float = 5.0
) -> dict[str, Any]:
    """Push at ``rate`` for ``seconds`` and sample the worker's resident memory."""
    samples: list[tuple[float, float]] = []
    started = time.time()

    async def sample() -> None:
        while True:
            samples.append((round(time.time() - started, 1), round(rss_mib(pid), 1)))
            await asyncio.sleep(every_s)

    sampler = asyncio.create_task(sample())
    try:
        run = await _measure(bootstrap, _Load(int(rate * seconds), prefix="m"), rate)
    finally:
        sampler.cancel()
    # After warm-up (the first minute, or the first tenth of a short run).
    settled = [rss for t, rss in samples if t >= min(60.0, seconds / 10)]
    first, last = settled[: max(len(settled) // 10, 1)], settled[-max(len(settled) // 10, 1) :]
    return {
        **run,
        "rss_mib": samples,
        "rss_settled_first_mib": round(sum(first) / len(first), 1),
        "rss_settled_last_mib": round(sum(last) / len(last), 1),
        "rss_growth": round(sum(last) / len(last) / (sum(first) / len(first)) - 1, 3),
    }


class _Bench:
    """Each measurement on a fresh embedded broker and fresh workers, so no run reads
    another's records or pays for its retained log."""

    def __init__(self, out_dir: Path, stamp: str, taught: int = TAUGHT) -> None:
        self._out_dir = out_dir
        self._stamp = stamp
        self._taught = taught

    @contextlib.contextmanager
    def broker(self) -> Iterator[tuple[str, _Workers]]:
        """A started broker with the pipeline's topics and models, and its workers."""
        port = free_port()
        # The broker's log and the workers' state are gigabytes after a run: removed.
        scratch = Path(tempfile.mkdtemp(prefix="crowdstream-bench-"))
        broker = EmbeddedBroker(port, scratch / "kafka")
        broker.start()
        workers = _Workers(broker, self._out_dir, self._stamp, scratch)
        try:
            topology = load_topology(PIPELINE)
            asyncio.run(
                declare_topics([broker.bootstrap], topology.topics(4).values(), TopicPolicy())
            )
            asyncio.run(_publish_models(broker.bootstrap, self._taught))
            yield broker.bootstrap, workers
        finally:
            workers.stop()
            broker.stop()
            shutil.rmtree(scratch, ignore_errors=True)

    def run(
        self, load: _Load, rate: float | None, layout: list[tuple[str, ...]] | None = None
    ) -> dict[str, Any]:
        """Start workers (one per entry of ``layout``), warm up, measure, read the books."""
        with self.broker() as (boot, workers):
            for extra in layout or [()]:
                workers.start(*extra)
            asyncio.run(_measure(boot, _Load(5000, "w"), None))
            result = asyncio.run(_measure(boot, load, rate))
            result["books"] = _books([http for _, http in workers.procs])
            return result


def _retweets(bench: _Bench, load: _Load, rate: float, memory: bool) -> dict[str, Any]:
    """The second pass's work while ``load`` is pushed at ``rate``, its memory on or
    off: counted from the helper's first batch on (it loads its encoders first)."""
    extra = () if memory else ("--set", "classifier.second_opinion_memory=0")
    with bench.broker() as (boot, workers):
        _, http = workers.start(*extra)
        asyncio.run(_measure(boot, _Load(5000, "w"), None))
        for _ in range(600):
            if _books([http])["second_opinions"].get("embeddings_encoder"):
                break
            time.sleep(0.5)
        before = _books([http])["second_opinions"]
        result = asyncio.run(_measure(boot, load, rate))
        after = _books([http])["second_opinions"]
    done = {key: value - before.get(key, 0.0) for key, value in after.items() if key != "waiting"}
    decided = done.get("tags_kept", 0.0) + done.get("tags_changed", 0.0)
    left = decided + done.get("tags_shed", 0.0) + done.get("tags_expired", 0.0)
    return {
        **result,
        "second_opinions": {**done, "waiting": after.get("waiting", 0.0)},
        "decided_share": round(decided / left, 4) if left else None,
    }


def _max_sustainable(sweep: list[dict[str, Any]]) -> float | None:
    """The highest swept input rate whose every item came out at >= 95% of that rate."""
    kept = [
        point["input_rate"]
        for point in sweep
        if point["classified"] == point["items"]
        and (point["items_per_s"] or 0) >= 0.95 * point["input_rate"]
    ]
    return max(kept, default=None)


RUNS = (
    "saturation",
    "sustained",
    "steady",
    "sweep",
    "ceiling",
    "overload",
    "burst",
    "scaleout",
    "memory",
    "retweets",
)
#: Runs not in the default set: each takes many minutes of its own.
OWN_RUNS = ("memory", "retweets")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        default=",".join(r for r in RUNS if r not in OWN_RUNS),
        help=f"comma-separated runs out of {', '.join(RUNS)}",
    )
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument(
        "--taught",
        type=int,
        default=TAUGHT,
        help="the sample's items the models are distilled over (0: plain word models, "
        "without a second opinion)",
    )
    parser.add_argument("--rate", type=float, default=270.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sustain-rate", type=float, default=11_000.0)
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument(
        "--sweep",
        default="1000,2500,5000,7500,9000,10000,11000,12000,13000,14000,16000",
        help="input rates (items/s) of the rate sweep, comma separated",
    )
    parser.add_argument("--sweep-seconds", type=float, default=10.0)
    parser.add_argument(
        "--overload-rate",
        type=float,
        help="default: 3x the maximum sustainable rate of the sweep, else 30,000/s",
    )
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--max-age", type=float, default=1.0, help="shedding bound (s)")
    parser.add_argument(
        "--max-drain", type=float, help="the overload run's max_drain_s [default: the policy's]"
    )
    parser.add_argument("--burst-items", type=int, default=60_000)
    parser.add_argument("--memory-rate", type=float, default=10_000.0)
    parser.add_argument("--memory-seconds", type=float, default=600.0)
    parser.add_argument("--retweet-share", type=float, default=0.5)
    parser.add_argument("--retweet-seconds", type=float, default=60.0)
    parser.add_argument(
        "--data", type=Path, default=SAMPLE_PATH, help="the retweets run's messages (JSON lines)"
    )
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown run(s): {', '.join(sorted(unknown))}")
    out_dir = Path("reports")
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    bench = _Bench(out_dir, stamp, args.taught)
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "broker": f"embedded Apache Kafka {kafka_version()}, a fresh one for each measurement",
    }
    if "steady" in runs:
        result["steady"] = bench.run(_Load(int(args.rate * args.seconds), "t"), args.rate)
    if "saturation" in runs:
        result["saturation"] = bench.run(_Load(args.items), None)
    if "sustained" in runs:
        n = int(args.sustain_rate * args.sustain_seconds)
        result["sustained"] = bench.run(_Load(n, "u"), args.sustain_rate)
    if "sweep" in runs:
        rates = [float(r) for r in args.sweep.split(",") if r.strip()]
        sweep = [bench.run(_Load(int(r * args.sweep_seconds), f"s{r:g}-"), r) for r in rates]
        result["sweep"] = sweep
        _plot_sweep(sweep, out_dir / f"bench-sweep-{stamp}.png")
        best = _max_sustainable(sweep)
        result["max_sustainable_per_s"] = best
        if best is not None:
            rate = 0.8 * best
            result["at_80pct_of_max"] = bench.run(_Load(int(rate * args.seconds), "e"), rate)
    if "ceiling" in runs:
        with bench.broker() as (boot, _):
            result["ceiling_plain_aiokafka"] = asyncio.run(_ceiling(boot, _Load(args.items, "c")))
    if "saturation" in runs and "ceiling" in runs:
        result["pipeline_vs_ceiling"] = round(
            (result["saturation"]["items_per_s"] or 0)
            / result["ceiling_plain_aiokafka"]["produce_plus_consume_per_s"],
            3,
        )
    if "overload" in runs:
        rate = args.overload_rate or 3 * (result.get("max_sustainable_per_s") or 10_000)
        shedding: tuple[str, ...] = (
            "--set",
            "shedding.enabled=true",
            "--set",
            f"shedding.max_age_s={args.max_age}",
        )
        if args.max_drain is not None:
            shedding += ("--set", f"shedding.max_drain_s={args.max_drain}")
        result["overload"] = bench.run(
            _Load(int(rate * args.overload_seconds), "o"), rate, layout=[shedding]
        )
    if "burst" in runs:
        result["burst"] = bench.run(
            _Load(args.burst_items, "b"), None, layout=[("--set", "shedding.enabled=true")]
        )
    if "scaleout" in runs:
        layouts: dict[str, list[tuple[str, ...]]] = {
            "scaleout_two_instances": [(), ()],
            "scaleout_split": [
                ("--pe", "collector", "features", "taskgen", "learner"),
                ("--pe", "classifier"),
            ],
        }
        for name, layout in layouts.items():
            result[name] = bench.run(_Load(args.items, f"{name}-"), None, layout=layout)
    if "memory" in runs:
        with bench.broker() as (boot, workers):
            proc, _ = workers.start()
            asyncio.run(_measure(boot, _Load(5000, "mw"), None))
            result["memory"] = asyncio.run(
                _memory(boot, proc.pid, args.memory_rate, args.memory_seconds)
            )
        _plot_memory(result["memory"], out_dir / f"bench-memory-{stamp}.png")
    if "retweets" in runs:
        n = int(args.rate * args.retweet_seconds)
        result["retweets"] = [
            {
                "retweet_share": share,
                "memory": memory,
                **_retweets(
                    bench, _Load(n, f"r{share:g}{memory}-", share, args.data), args.rate, memory
                ),
            }
            for share in (0.0, args.retweet_share)
            for memory in (False, True)
        ]
    text = json.dumps(result, indent=2)
    (out_dir / f"bench-throughput-{stamp}.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
