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
   out, as in the offline benchmark. ``--text original`` streams each message in its
   original language (Haitian Creole or French, mostly); ``--require original`` keeps
   the English texts of the same messages, the fair comparison.
2. The rest stream into ``items.raw`` at ``--rate`` items/s and the crowd buys its
   answers as :mod:`pipelines.liverun` runs it: the classifiers paused (no crowd
   tasks) until the learner's sample holds ``--prefill`` items embedded for its
   teacher (``--prefill 0``: the crowd starts at once), then the budget spent (no
   outcome for ``--quiet-s``) and the learner's last training done on every label.
3. Once the classifier's second pass has finished what the stream left in its queue
   (the held-out items must not compete with the stream's for it), the held-out
   messages are pushed into ``items.raw`` and scored from
   ``items.classified``: AUC of the probability of ``yes``, and precision, recall and
   F1 of the ``yes`` tag, and the F1 of the best threshold chosen on the truth (the
   bound on any decision rule). Each held-out item's classification by the model is
   scored: its first (revision 0), or the model's second opinion on it (revision 1)
   when the classifier's second pass revised it (``first_pass``: the same scores of
   the first classifications alone); and only where its tag is the model's: held-out
   items are never labeled,
   but one may be a near-duplicate of a labeled item and take that label's tag
   (``source: propagated``); those are counted (``holdout_propagated``), not scored.

Prints a table (mean and worst seed) and writes JSON to
reports/bench-live-learning-<timestamp>.json.
Usage: python bench/live_learning.py --data disaster_messages.jsonl.gz
       [--answers 1000] [--seeds 3] [--first-seed 1] [--rate 200] [--teacher-rate 40]
       [--prefill 15000] [--text text|original] [--require text|original]
       [--set k=v ...]
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.records import MAX_TEXT_CHARS, ClassifiedItem
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.liverun import HELD, LivePlan, live_crowd, live_run
from pipelines.local import LocalWorker
from pipelines.report import label_quality, stream_quality
from pipelines.topology import load_topology

PIPELINE = "crisis"
CLASSIFIERS = ("aid_related", "request")
POSITIVE = "yes"


@dataclass
class _Split:
    stream: list[dict[str, Any]]
    holdout: list[dict[str, Any]]


def _split(path: Path, text_field: str, require: str, holdout: int, seed: int) -> _Split:
    """The messages with both classifiers' truth and a non-empty ``text_field`` and
    ``require``, as items, shuffled by ``seed``; the last ``holdout`` held out."""
    items = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            text = str(record.get(text_field) or "").strip()
            labels = record.get("labels", {})
            # Longer texts are rejected by the pipeline (two messages of the data set).
            if not text or len(text) > MAX_TEXT_CHARS:
                continue
            if not str(record.get(require) or "").strip():
                continue
            if any(labels.get(name) is None for name in CLASSIFIERS):
                continue
            truth = {name: "yes" if int(labels[name]) == 1 else "no" for name in CLASSIFIERS}
            items.append({"id": str(record["id"]), "text": text, "meta": {"truth": truth}})
    random.Random(seed).shuffle(items)
    return _Split(items[:-holdout], items[-holdout:])


async def _measure(
    bootstrap: str, worker: LocalWorker, split: _Split, args: argparse.Namespace
) -> dict[str, Any]:
    plan = LivePlan(PIPELINE, CLASSIFIERS, args.rate, args.prefill, args.quiet_s, args.timeout_s)
    run = await live_run(bootstrap, worker, split.stream, split.holdout, plan, keep=HELD.encode())
    items, truth = run.scored(), run.truth()
    streamed = {str(item["id"]): item["meta"]["truth"] for item in split.stream}
    result: dict[str, Any] = {
        "budget_spent": run.budget_spent,
        "holdout_scored": run.holdout_scored,
        "holdout_items": len(items),
        "prefill_s": round(run.prefill_s, 1),
        "training_s": round(run.training_s, 1),
        "teacher_embedded": run.teacher_embedded,
        "classifiers": {},
    }
    for name in CLASSIFIERS:
        model = run.log.model(name)
        result["classifiers"][name] = {
            "answers": run.log.answers.get(name, 0),
            "gold_answers": run.log.gold_answers.get(name, 0),
            "labels": run.log.labels.get(name, 0),
            "labels_vs_truth": label_quality(run.log.tags.get(name, {}), streamed, name, POSITIVE),
            "model_version": model.version if model else 0,
            "model_trained_on": model.n_train if model else 0,
            "learner_holdout_auc": model.metrics.auc if model else None,
            # The model's predictions: a held-out item whose tag was propagated from
            # a labeled near-duplicate is counted, not scored.
            "holdout_propagated": sum(item.labels[name].source == "propagated" for item in items),
            # Its tags decided again by the model's second opinion (scored as revised).
            "holdout_second_opinions": sum(
                bool(item.labels[name].second_opinion) for item in items
            ),
            **stream_quality(items, truth, name, POSITIVE, sources={"model"}),
            "first_pass": _first_pass(run.first_pass(), truth, name),
        }
    return result


def _first_pass(items: list[ClassifiedItem], truth: dict[str, Any], name: str) -> dict[str, Any]:
    """The scores of the held-out items' first classifications, before second opinions."""
    quality = stream_quality(items, truth, name, POSITIVE, sources={"model"})
    return {key: quality[key] for key in ("auc", "f1", "best_f1", "precision", "recall")}


def _run_seed(seed: int, split: _Split, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="crowdstream-live-"))
    broker = EmbeddedBroker(free_port(), scratch / "kafka")
    worker: LocalWorker | None = None
    overrides = (
        *live_crowd(args.answers, args.speed, args.task_rate, args.teacher_rate),
        f"annotator.seed={seed}",
        f"taskgen.seed={seed}",
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
        for key in ("auc", "f1"):
            values = [run["classifiers"][name]["first_pass"][key] for run in runs]
            per[f"first_pass_{key}"] = (
                round(statistics.fmean(values), 4) if None not in values else None
            )
        for key in ("answers", "labels", "model_trained_on", "holdout_second_opinions"):
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
    parser.add_argument(
        "--require",
        choices=("text", "original"),
        default="text",
        help="only messages with this field non-empty (compare languages on one set)",
    )
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
        split = _split(args.data, args.text, args.require, args.holdout, seed)
        run = _run_seed(seed, split, args, args.out)
        runs.append(run)
        for name in CLASSIFIERS:
            got = run["classifiers"][name]
            print(
                f"seed {seed} {name}: {got['answers']} answers ({got['gold_answers']} gold), "
                f"{got['labels']} labels, model v{got['model_version']} on "
                f"{got['model_trained_on']}: AUC {got['auc']}, F1 {got['f1']} "
                f"(P {got['precision']}, R {got['recall']}; best threshold {got['best_f1']}); "
                f"first pass AUC {got['first_pass']['auc']}, F1 {got['first_pass']['f1']}, "
                f"{got['holdout_second_opinions']} second opinions",
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
