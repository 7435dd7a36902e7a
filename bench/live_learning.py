"""Label efficiency of the running pipeline: held-out AUC and tag F1 after a given
number of crowd answers, measured through Kafka.

A benchmark, not a test; the live counterpart of ``bench/learning_curve.py``. Each
seed gets a fresh embedded broker and a worker running the ``crisis`` topology in
its default configuration, with the simulated ``live`` crowd with 10% spammers
(``annotator.population: live``, ``annotator.spammers: 0.1``) and a training budget
of ``--answers`` crowd answers per classifier, gold questions included
(``taskgen.answer_budget``). Only the crowd's clock (``annotator.speed``), the task
rate cap and the rate at which the learner samples the stream for its teacher
(``learner.teacher_rate``, to ``--teacher-rate``) are raised, so that minutes of
crowd work, and the stream that flows meanwhile, take seconds.

1. The messages of the shared data set (both classifiers' truth known, the text
   field non-empty) are shuffled by the seed; the last ``--holdout`` (5,000) are held
   out, as in the offline benchmark.
2. The rest stream into ``items.raw`` at ``--rate`` items/s (again, with new ids,
   if the stream ends first). The classifiers are paused (no crowd tasks) until the
   learner's sample holds ``--prefill`` items embedded for its teacher, as a crisis
   stream flows before the crowd has bought much; the teacher embeds far fewer items
   a second than the crowd, sped up, labels (``--prefill 0``: the crowd starts at
   once). Then the annotator buys answers, the learner trains and the classifier's
   models improve.
3. Once the budget is spent (no training label for ``--quiet-s``) and the learner's
   last training has seen every label (``crowdstream_learner_trained_labels``), the
   held-out messages are pushed into ``items.raw`` and scored from
   ``items.classified``: AUC of the probability of ``yes``, and precision, recall and
   F1 of the ``yes`` tag, and the F1 of the best threshold chosen on the truth (the
   bound on any decision rule). Each held-out item's first classification (revision 0) is
   scored, and only where its tag is the model's: held-out items are never labeled,
   but one may be a near-duplicate of a labeled item and take that label's tag
   (``source: propagated``); those are counted (``holdout_propagated``), not scored.

Prints a table (mean and worst seed) and writes JSON to
reports/bench-live-learning-<timestamp>.json.
Usage: python bench/live_learning.py --data disaster_messages.jsonl.gz
       [--answers 1000] [--seeds 3] [--first-seed 1] [--rate 200] [--teacher-rate 40]
       [--prefill 15000] [--text text|original] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.codec import DecodeError, decode
from channels.records import MAX_TEXT_CHARS, ClassifiedItem, Label, ModelUpdate
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.client import push_lines
from pipelines.local import LocalWorker
from pipelines.report import stream_quality
from pipelines.topology import load_topology

PIPELINE = "crisis"
CLASSIFIERS = ("aid_related", "request")
POSITIVE = "yes"
#: The prefix of the held-out items' ids (their key on items.classified).
HELD = b"held-"


@dataclass
class _Split:
    stream: list[dict[str, Any]]
    holdout: list[dict[str, Any]]


def _split(path: Path, text_field: str, holdout: int, seed: int) -> _Split:
    """The messages with both classifiers' truth and a non-empty ``text_field``, as
    items, shuffled by ``seed``; the last ``holdout`` held out."""
    items = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            text = str(record.get(text_field) or "").strip()
            labels = record.get("labels", {})
            # Longer texts are rejected by the pipeline (two messages of the data set).
            if not text or len(text) > MAX_TEXT_CHARS:
                continue
            if any(labels.get(name) is None for name in CLASSIFIERS):
                continue
            truth = {name: "yes" if int(labels[name]) == 1 else "no" for name in CLASSIFIERS}
            items.append({"id": str(record["id"]), "text": text, "meta": {"truth": truth}})
    random.Random(seed).shuffle(items)
    return _Split(items[:-holdout], items[-holdout:])


@dataclass
class _Observed:
    """What the benchmark reads back from the pipeline's topics."""

    answers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSIFIERS, 0))
    gold_answers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSIFIERS, 0))
    labels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSIFIERS, 0))
    models: dict[str, ModelUpdate] = field(default_factory=dict)
    classified: dict[str, ClassifiedItem] = field(default_factory=dict)
    last_label: float = 0.0
    last_model: float = 0.0

    def take(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        try:
            if topic.endswith("crowd.labels"):
                label = decode(Label, value)
                if label.job is None and label.classifier in self.answers:
                    self.answers[label.classifier] += len(label.answers)
                    if label.kind == "gold":
                        self.gold_answers[label.classifier] += len(label.answers)
                    elif label.tag is not None:
                        self.labels[label.classifier] += 1
                    self.last_label = time.monotonic()
            elif topic.endswith("control.models"):
                model = decode(ModelUpdate, value)
                self.models[model.classifier] = model
                self.last_model = time.monotonic()
            elif topic.endswith("items.classified") and (key or b"").startswith(HELD):
                # Only the held-out items are scored: the stream's (170,000 in a
                # pre-fill) would cost the bench the CPU and memory the pipeline needs.
                item = decode(ClassifiedItem, value)
                # The first classification of each item: a revision (a crowd label's)
                # or a repeat after a crash is not the model's first word on it.
                if item.revision == 0:
                    self.classified.setdefault(item.id, item)
        except DecodeError:
            pass  # not the pipeline's: nothing to measure


async def _read(consumer: AIOKafkaConsumer, seen: _Observed, until: Any, timeout_s: float) -> bool:
    """Read into ``seen`` until ``until()`` holds (True) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for record in records:
                seen.take(tp.topic, record.key, record.value)
        if until():
            return True
    return False


def _lines(items: list[dict[str, Any]], lap: int) -> list[bytes]:
    """The items as JSON lines, with ids of their own on a lap after the first."""
    if lap == 0:
        return [orjson.dumps(item) for item in items]
    return [orjson.dumps({**item, "id": f"{item['id']}~{lap}"}) for item in items]


async def _stream_forever(bootstrap: str, items: list[dict[str, Any]], rate: float) -> None:
    lap = 0
    while True:
        await push_lines([bootstrap], PIPELINE, _lines(items, lap), rate)
        lap += 1


def _gauge(worker: LocalWorker, name: str, label: str) -> dict[str, float]:
    """The worker's gauge ``name``, by the value of its label ``label``."""
    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(worker.metrics())
        for sample in family.samples
        if sample.name == name
    }


def _trained_on_all(worker: LocalWorker) -> bool:
    """Has the learner finished a training on every label it holds, per classifier?"""
    held = _gauge(worker, "crowdstream_learner_labels", "classifier")
    trained = _gauge(worker, "crowdstream_learner_trained_labels", "classifier")
    return all(0 < held.get(name, 0) <= trained.get(name, 0) for name in CLASSIFIERS)


def _embedded(worker: LocalWorker) -> float:
    """Items of the learner's sample embedded for its teacher."""
    return _gauge(worker, "crowdstream_learner_teacher_sample", "state").get("embedded", 0.0)


def _set_classifiers(worker: LocalWorker, action: str) -> None:
    """Pause or resume both classifiers through the classifiers API (an operator call;
    open on loopback), and wait until the worker has read the change back."""
    state = {"pause": "paused", "resume": "active"}[action]
    for name in CLASSIFIERS:
        url = f"{worker.url}/api/v1/classifiers/{name}"
        request = urllib.request.Request(f"{url}/{action}", data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (our own worker)
            pass
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
                if json.load(answer)["state"] == state:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"classifier {name} not {state} after 30 s")
            time.sleep(0.2)


async def _measure(
    bootstrap: str, worker: LocalWorker, split: _Split, args: argparse.Namespace
) -> dict[str, Any]:
    topics = ("crowd.labels", "control.models", "items.classified")
    consumer = AIOKafkaConsumer(
        *(f"{PIPELINE}.{topic}" for topic in topics),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    seen = _Observed()
    prefill_s = 0.0
    if args.prefill:
        await asyncio.to_thread(_set_classifiers, worker, "pause")
    push = asyncio.create_task(_stream_forever(bootstrap, split.stream, args.rate))
    try:
        if args.prefill:
            # The stream flows before the crowd starts, as in a crisis, until the
            # teacher's sample holds --prefill embedded items.
            begun = time.monotonic()
            full = await _read(
                consumer, seen, lambda: _embedded(worker) >= args.prefill, args.timeout_s
            )
            if not full:
                raise RuntimeError(f"the teacher's sample did not reach {args.prefill} items")
            prefill_s = time.monotonic() - begun
            await asyncio.to_thread(_set_classifiers, worker, "resume")
        started = time.monotonic()

        def spent() -> bool:
            quiet = time.monotonic() - max(seen.last_label, started) >= args.quiet_s
            return quiet and all(seen.answers[name] > 0 for name in CLASSIFIERS)

        budget_spent = await _read(consumer, seen, spent, args.timeout_s)
        # The learner's last model: its last training saw every label it holds.
        await _read(consumer, seen, lambda: _trained_on_all(worker), args.timeout_s)
        await _read(consumer, seen, lambda: False, 2.0)  # the last model reaches the classifier
    finally:
        push.cancel()
    training_s = time.monotonic() - started
    held = {f"{HELD.decode()}{item['id']}": item for item in split.holdout}
    await push_lines(
        [bootstrap],
        PIPELINE,
        [orjson.dumps({**item, "id": key}) for key, item in held.items()],
    )
    progress = {"count": 0, "at": time.monotonic()}

    def scored_or_stuck() -> bool:
        count = sum(key in seen.classified for key in held)
        if count > progress["count"]:
            progress.update(count=count, at=time.monotonic())
        return count == len(held) or time.monotonic() - progress["at"] >= args.quiet_s

    await _read(consumer, seen, scored_or_stuck, args.timeout_s)
    scored = all(key in seen.classified for key in held)
    await consumer.stop()
    items = [seen.classified[key] for key in held if key in seen.classified]
    truth = {key: item["meta"]["truth"] for key, item in held.items()}
    result: dict[str, Any] = {
        "budget_spent": budget_spent,
        "holdout_scored": scored,
        "holdout_items": len(items),
        "prefill_s": round(prefill_s, 1),
        "training_s": round(training_s, 1),
        "teacher_embedded": _embedded(worker),
        "classifiers": {},
    }
    for name in CLASSIFIERS:
        model = seen.models.get(name)
        result["classifiers"][name] = {
            "answers": seen.answers[name],
            "gold_answers": seen.gold_answers[name],
            "labels": seen.labels[name],
            "model_version": model.version if model else 0,
            "model_trained_on": model.n_train if model else 0,
            "learner_holdout_auc": model.metrics.auc if model else None,
            # The model's predictions: a held-out item whose tag was propagated from
            # a labeled near-duplicate is counted, not scored.
            "holdout_propagated": sum(item.labels[name].source == "propagated" for item in items),
            **stream_quality(items, truth, name, POSITIVE, sources={"model"}),
        }
    return result


def _run_seed(seed: int, split: _Split, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="crowdstream-live-"))
    broker = EmbeddedBroker(free_port(), scratch / "kafka")
    worker: LocalWorker | None = None
    overrides = (
        "annotator.population=live",
        "annotator.spammers=0.1",
        f"annotator.seed={seed}",
        f"annotator.speed={args.speed}",
        f"taskgen.seed={seed}",
        f"taskgen.answer_budget={args.answers}",
        f"taskgen.max_tasks_per_minute={args.task_rate}",
        "taskgen.round_interval_s=0.25",
        f"learner.teacher_rate={args.teacher_rate}",
        *args.set,
    )
    try:
        broker.start()
        worker = LocalWorker.start(
            PIPELINE,
            broker.url,
            free_port(),
            out / f"bench-live-learning-worker-{seed}.log",
            crowd="simulated",
            data_dir=scratch / "worker",
            overrides=overrides,
        )
        worker.wait_ready()
        return {"seed": seed, **asyncio.run(_measure(broker.bootstrap, worker, split, args))}
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in CLASSIFIERS:
        per: dict[str, Any] = {}
        for key in ("auc", "f1", "best_f1", "precision", "recall"):
            values = [run["classifiers"][name][key] for run in runs]
            known = [v for v in values if v is not None]
            per[key] = {
                "mean": round(statistics.fmean(known), 4) if known else None,
                "worst": min(known) if len(known) == len(values) else None,
            }
        for key in ("answers", "labels", "model_trained_on"):
            per[key] = statistics.fmean(run["classifiers"][name][key] for run in runs)
        summary[name] = per
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="disaster_messages.jsonl.gz")
    parser.add_argument("--answers", type=int, default=1000, help="per classifier")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1, help="seeds from this one on")
    parser.add_argument("--holdout", type=int, default=5000)
    parser.add_argument("--text", choices=("text", "original"), default="text")
    parser.add_argument("--rate", type=float, default=200.0, help="stream items/s")
    parser.add_argument("--speed", type=float, default=40.0, help="crowd clock speed-up")
    parser.add_argument("--task-rate", type=float, default=1200.0, help="tasks/min cap")
    parser.add_argument(
        "--teacher-rate",
        type=float,
        default=40.0,
        help="items/s the learner samples for its teacher (learner.teacher_rate)",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=15_000,
        help="the crowd starts once the teacher's sample holds this many embedded items",
    )
    parser.add_argument("--quiet-s", type=float, default=20.0)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--set", action="append", default=[], help="a topology override")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_topology(PIPELINE)  # fails early on a bad install
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        split = _split(args.data, args.text, args.holdout, seed)
        run = _run_seed(seed, split, args, args.out)
        runs.append(run)
        for name in CLASSIFIERS:
            got = run["classifiers"][name]
            print(
                f"seed {seed} {name}: {got['answers']} answers ({got['gold_answers']} gold), "
                f"{got['labels']} labels, model v{got['model_version']} on "
                f"{got['model_trained_on']}: AUC {got['auc']}, F1 {got['f1']} "
                f"(P {got['precision']}, R {got['recall']}; best threshold {got['best_f1']})",
                flush=True,
            )
    result = {
        "benchmark": "live_learning",
        "command": " ".join(sys.argv),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": runs,
        "summary": _summary(runs),
    }
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"bench-live-learning-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
