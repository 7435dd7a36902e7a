"""Throughput and latency of the whole pipeline on the embedded broker (a benchmark, not a test).

Runs one worker with every PE but the annotator (``--crowd none``) and a trained
model for each classifier, then measures:

1. saturation: N items pushed as fast as possible; items/s from the first push to
   the last classified item, and end-to-end latency percentiles;
2. steady load: items pushed at a fixed rate (270/s, the hurricane Sandy peak);
   latency percentiles;
3. a rate sweep: each input rate for a few seconds; output rate and latency
   percentiles per rate (plotted to reports/bench-sweep-<timestamp>.png);
4. the ceiling: a plain aiokafka produce + consume of the same records, same broker.

Prints JSON and writes it to reports/bench-throughput-<timestamp>.json.
Usage: python bench/throughput.py [--items 20000] [--rate 270] [--seconds 30]
       [--sweep 250,500,1000] [--sweep-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from channels.admin import declare_topics
from channels.codec import encode
from channels.records import ModelMetrics, ModelUpdate
from pe.features.hashing import FeatureHasher
from pe.features.text import grams, tokens
from pe.learner.trainers import fit_logistic
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.client import push_lines
from pipelines.report import percentiles
from pipelines.sample import load_sample
from pipelines.topology import load_topology

PIPELINE = "crisis"


def _records(n: int, prefix: str = "b") -> list[bytes]:
    sample = load_sample()
    return [orjson.dumps({**sample[i % len(sample)], "id": f"{prefix}{i}"}) for i in range(n)]


async def _publish_models(bootstrap: str) -> None:
    """Train each classifier on the sample's truth and publish it, as the learner would."""
    topology = load_topology(PIPELINE)
    sample = load_sample()
    hasher = FeatureHasher(topology.params.features.n_features)
    rows = hasher.transform([grams(tokens(r["text"])) for r in sample])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for spec in topology.classifiers:
            examples = [
                (idx, val, r["meta"]["truth"][spec.name])
                for (idx, val), r in zip(rows, sample, strict=True)
            ]
            model = fit_logistic(examples, hasher.n_features, 1.0)
            assert model is not None
            update = ModelUpdate(
                classifier=spec.name,
                version=1,
                family="sklearn",
                created=time.time(),
                n_train=len(examples),
                n_holdout=0,
                metrics=ModelMetrics(auc=None, accuracy=None, per_tag={}),
                model=model,
            )
            await producer.send_and_wait(
                f"{PIPELINE}.control.models", encode(update), key=spec.name.encode()
            )
    finally:
        await producer.stop()


async def _measure(bootstrap: str, lines: list[bytes], rate: float | None) -> dict[str, Any]:
    """Push ``lines`` and read their classified records; throughput and latency."""
    ids = {orjson.loads(line)["id"] for line in lines}
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
    seen: set[str] = set()
    started = time.time()
    push = asyncio.create_task(push_lines([bootstrap], PIPELINE, lines, rate))
    last = started
    try:
        while len(seen) < len(ids) and time.time() - last < 30:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                for record in batch:
                    item = orjson.loads(record.value)
                    if item["id"] in ids and item["id"] not in seen:
                        seen.add(item["id"])
                        latencies.append(item["ts_out"] - item["ts_in"])
                        last = time.time()
        await push
    finally:
        await consumer.stop()
    elapsed = last - started
    return {
        "items": len(ids),
        "classified": len(seen),
        "input_rate": rate,
        "seconds": round(elapsed, 2),
        "items_per_s": round(len(seen) / elapsed, 1) if elapsed > 0 else None,
        "latency_s": percentiles(latencies),
    }


async def _ceiling(bootstrap: str, lines: list[bytes]) -> dict[str, Any]:
    """Plain aiokafka: produce the records to a fresh topic and consume them back."""
    topic = f"bench-ceiling-{int(time.time())}"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=270.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--sweep",
        default="250,500,1000,1500,2000,2500,3000",
        help="input rates (items/s) of the rate sweep, comma separated; empty to skip",
    )
    parser.add_argument("--sweep-seconds", type=float, default=10.0)
    args = parser.parse_args()
    out_dir = Path("reports")
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    broker = EmbeddedBroker(free_port(), log_file=out_dir / f"bench-broker-{stamp}.log")
    broker.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        topology = load_topology(PIPELINE)
        asyncio.run(declare_topics([broker.bootstrap], topology.topics(4).values()))
        asyncio.run(_publish_models(broker.bootstrap))
        http = free_port()
        with (out_dir / f"bench-worker-{stamp}.log").open("wb") as log:
            worker = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "pipelines.cli",
                    "up",
                    PIPELINE,
                    "--broker",
                    broker.url,
                    "--http-port",
                    str(http),
                    "--crowd",
                    "none",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ},
            )
        _wait_ready(f"http://127.0.0.1:{http}/healthz", worker)
        warmup = asyncio.run(_measure(broker.bootstrap, _records(2000), None))
        saturation = asyncio.run(_measure(broker.bootstrap, _records(args.items), None))
        steady_n = int(args.rate * args.seconds)
        steady = asyncio.run(_measure(broker.bootstrap, _records(steady_n), args.rate))
        sweep = [
            asyncio.run(
                _measure(
                    broker.bootstrap,
                    _records(int(rate * args.sweep_seconds), prefix=f"s{rate:g}-"),
                    rate,
                )
            )
            for rate in (float(r) for r in args.sweep.split(",") if r.strip())
        ]
        ceiling = asyncio.run(_ceiling(broker.bootstrap, _records(args.items)))
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        broker.stop()
    result = {
        "benchmark": "throughput",
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "broker": "embedded (Tansu)",
        "warmup": warmup,
        "saturation": saturation,
        "steady": steady,
        "sweep": sweep,
        "ceiling_plain_aiokafka": ceiling,
        "pipeline_vs_ceiling": round(
            (saturation["items_per_s"] or 0) / ceiling["produce_plus_consume_per_s"], 3
        ),
    }
    text = json.dumps(result, indent=2)
    (out_dir / f"bench-throughput-{stamp}.json").write_text(text + "\n")
    if sweep:
        _plot_sweep(sweep, out_dir / f"bench-sweep-{stamp}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
