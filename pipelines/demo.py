"""``crowdstream demo``: the crisis pipeline end to end on the embedded broker.

Starts the broker and a worker process (all PEs, simulated crowd), streams the
bundled sample, shows live progress, and writes ``reports/<timestamp>/`` with
report.json and PNG plots. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from channels.codec import DecodeError, decode
from channels.records import ClassifiedItem, Label, ModelUpdate, format_auc
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.client import push_lines
from pipelines.local import LocalWorker
from pipelines.report import STREAM_TAIL, RunLog, crowd_summary, percentiles, write_report
from pipelines.sample import load_sample
from pipelines.topology import load_topology

__all__ = ["DEMO_OVERRIDES", "run_demo"]

#: The demo compresses a crisis into a minute: crowd time runs 40x faster, and the
#: task rate and pool are sized so ~1,000 labels per classifier arrive meanwhile. The
#: learner's teacher is `use` alone, sampling 50 items a second: the default
#: `use+minilm` embeds about 75 items a second, enough for a crowd's real pace, but here
#: two classifiers' labels take most of that and the sample it teaches from stays
#: small within the minute (the last 1,000 items' AUC: 0.76 for `aid_related` and 0.86
#: for `request`, against 0.80 and 0.885 with `use`).
DEMO_OVERRIDES = (
    "annotator.speed=40",
    "annotator.pool_size=30",
    "taskgen.max_tasks_per_minute=1200",
    "taskgen.round_interval_s=0.25",
    "learner.teacher=use",
    "learner.teacher_rate=50",
)
#: After the last item is classified, labels and a last model still arrive.
DRAIN_S = 8.0


def run_demo(*, items: int, rate: float, reports_dir: Path) -> int:
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = reports_dir / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    # A fresh broker for each run (its log is kept in the report), so the counts are
    # this run's alone.
    data = Path(tempfile.mkdtemp(prefix="crowdstream-demo-"))
    broker = EmbeddedBroker(free_port(), data / "kafka")
    print(f"starting the embedded broker (Apache Kafka) on {broker.url} ...", flush=True)
    worker: LocalWorker | None = None
    try:
        broker.start()
        print(f"starting the crisis pipeline (log: {out_dir / 'worker.log'}) ...", flush=True)
        worker = LocalWorker.start(
            "crisis",
            broker.url,
            free_port(),
            out_dir / "worker.log",
            crowd="simulated",
            data_dir=data / "worker",
            overrides=DEMO_OVERRIDES,
        )
        worker.wait_ready()
        print(f"worker ready; metrics at {worker.url}/metrics", flush=True)
        sample = load_sample(items)
        run = asyncio.run(_stream(broker.bootstrap, sample, rate))
        finished = time.time()
        run.crowd = crowd_summary(worker.metrics())
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        if broker.log_file.is_file():
            shutil.copy(broker.log_file, out_dir / "broker.log")
        shutil.rmtree(data, ignore_errors=True)
    topology = load_topology("crisis")
    truth = {row["id"]: row["meta"]["truth"] for row in sample}
    positives = {spec.name: spec.tags[0] for spec in topology.classifiers}
    report = write_report(run, finished, truth, positives, out_dir)
    _print_summary(report, out_dir)
    return 0 if report["items_classified"] == len(sample) else 1


async def _stream(bootstrap: str, sample: list[dict[str, object]], rate: float) -> RunLog:
    run = RunLog(started=time.time())
    consumer = AIOKafkaConsumer(
        "crisis.items.classified",
        "crisis.control.models",
        "crisis.crowd.labels",
        "crisis.items.rejected",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    lines = [orjson.dumps(row) for row in sample]
    push = asyncio.create_task(push_lines([bootstrap], "crisis", lines, rate))
    last_print = 0.0
    drained_at: float | None = None
    window: list[float] = []
    out_before = 0
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    _observe(run, tp.topic, record.value, window)
            if push.done():
                run.pushed = push.result()
            now = time.time()
            if now - last_print >= 1.0:
                _progress(run, now, len(run.classified) - out_before, window, len(lines), rate)
                out_before, window, last_print = len(run.classified), [], now
            if len(run.classified) + run.rejected >= len(lines) and push.done():
                drained_at = drained_at or now
                if now - drained_at >= DRAIN_S:
                    break
    finally:
        push.cancel()
        await consumer.stop()
    return run


def _observe(run: RunLog, topic: str, value: bytes | None, window: list[float]) -> None:
    try:
        if topic.endswith("items.classified"):
            item = decode(ClassifiedItem, value)
            if item.revision:  # a crowd label's revision of an item already out
                run.revisions += 1
            elif item.id not in run.classified:  # the sink deduplicates by id
                run.classified[item.id] = item
                window.append(item.ts_out - item.ts_in)
        elif topic.endswith("control.models"):
            run.models.append(decode(ModelUpdate, value))
        elif topic.endswith("crowd.labels"):
            label = decode(Label, value)
            if label.tag is not None:
                run.labels[label.classifier] = run.labels.get(label.classifier, 0) + 1
        else:
            run.rejected += 1
    except DecodeError:
        run.rejected += 1


def _progress(
    run: RunLog, now: float, out_last_s: int, window: list[float], total: int, rate: float
) -> None:
    elapsed = now - run.started
    pushed = min(int(elapsed * rate), total)
    lat = percentiles(window)
    p50, p99 = lat["p50"], lat["p99"]
    latency = (
        f"p50 {p50 * 1000:5.0f} ms p99 {p99 * 1000:5.0f} ms"
        if p50 is not None and p99 is not None
        else "p50     - ms p99     - ms"
    )
    models = []
    for name in ("aid_related", "request"):
        latest = [m for m in run.models if m.classifier == name]
        if latest:
            models.append(f"{name} v{latest[-1].version} AUC {latest[-1].metrics.describe_auc()}")
        else:
            models.append(f"{name} (no model)")
    labels = sum(run.labels.values())
    print(
        f"[{elapsed:5.1f}s] in {pushed:5d}/{total} ({rate:.0f}/s)  out {len(run.classified):5d} "
        f"({out_last_s:4d}/s)  {latency}  labels {labels:4d}  " + "  ".join(models),
        flush=True,
    )


def _print_summary(report: dict[str, Any], out_dir: Path) -> None:
    print("\n=== crowdstream demo report ===")
    print(
        f"items: {report['items_classified']} classified of {report['items_pushed']} pushed, "
        f"{report['items_rejected']} rejected, in {report['duration_s']} s; "
        f"{report['items_revised']} revised by crowd labels"
    )
    print(f"end-to-end latency (s): {report['latency_s']}")
    classifiers: dict[str, Any] = report["classifiers"]
    for name, result in classifiers.items():
        held = result["held_out"] or {}
        ci = held.get("auc_ci") or {}
        auc = format_auc(held.get("auc"), ci.get("low"), ci.get("high"))
        tail = result[f"stream_vs_truth_last_{STREAM_TAIL}"]
        print(
            f"{name}: model v{result['model_version']} from {result['crowd_labels']} crowd "
            f"labels; held-out AUC {auc} on {result['labels_held_out']} labels; "
            f"last {STREAM_TAIL} items vs truth: "
            f"accuracy {tail['accuracy']}, AUC {tail['auc']}"
        )
    crowd: dict[str, float] = report["crowd"]
    print(
        f"crowd pool: {crowd.get('duplicate', 0):.0f} duplicates (straggler mitigation), "
        f"{crowd.get('termination', 0):.0f} terminations, {crowd.get('release', 0):.0f} "
        f"releases (pool maintenance), {crowd.get('recruit', 0):.0f} recruits; pay "
        f"{crowd.get('cost_waiting', 0):.2f} waiting + {crowd.get('cost_work', 0):.2f} work"
    )
    print(f"report: {out_dir / 'report.json'}; plots: {out_dir}/auc_vs_labels.png, latency.png")
