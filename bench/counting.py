"""Counting jobs: error, interval coverage and cost of the three counting methods,
with and without the correction for worker error.

Each trial is one simulated counting job. It draws a window of messages from the
data (with a set share of the tag, ``--shares``: a rare and a common one by
default), a crowd of simulated workers (the ``demo`` population, ``--spammers`` of
them answering at random), and what the quality loop learns of them:
``--training`` training tasks before the job (adaptive redundancy, as the annotator
asks), and a gold question before an assignment at the gold rate (``--gold-rate``,
5% as the annotator's default). Then the job asks the crowd, ``--gold-share`` of
its label tasks being its own gold questions, and the estimators the counting job
runs (``pe.jobs``) estimate the share:

- ``label``: one label per sampled message; the share corrected for each worker's
  error (``corrected``), or taking every answer as right (``plain``: the Wilson
  interval counting jobs reported before);
- ``model``: a logistic regression trained on ``--train`` other messages scores the
  whole window; labels of a random sample correct it (difference estimator), with
  and without the workers' rates;
- ``count``: Qurk count batches (``--batch`` messages, ``--gold`` gold on average)
  aggregated with Thresh; workers skim a batch of texts (``COUNT_SKIM``). Count
  answers say nothing about single items, so the loop's rates do not apply.

The workers' rates are what the jobs PE uses: the loop's prior and gold answers
(``--evidence gold``); ``--evidence all`` adds the loop's online learning from the
agreement of training answers, to measure that alternative.

Coverage is the share of jobs whose interval (95%) holds the window's true share.
Cost is pay per record (0.02): a label task is 1 record (gold questions included),
a count task a batch.
Prints a table and writes reports/bench-counting-<timestamp>.json.

Usage: python bench/counting.py [--data FILE.jsonl[.gz]] [--classifier aid_related]
       [--shares 0.0275,0.32] [--trials 100] [--tasks 200] [--spammers 0.3]
       [--training 0] [--gold-rate 0.05] [--gold-share 0.2] [--evidence gold]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pe.annotator.population import PRESETS, SimulatedWorker
from pe.common.hashing import FeatureHasher
from pe.common.quality import WorkerQuality, worker_model
from pe.common.text import grams, tokens
from pe.jobs.calibrated_count import calibrated_share, calibration_batch, calibration_due
from pe.jobs.counting import gold_record, worker_rates
from pe.jobs.proportion import Estimate, corrected_difference, corrected_share
from pe.jobs.thresh import CountAnswer, gold_count, thresh
from pe.params import ClassifierSpec, QualityParams
from pipelines.sample import SAMPLE_PATH, load_tagged

TAGS = ["yes", "no"]
PAY = 0.02
CROWD = 20  #: workers in the crowd


@dataclasses.dataclass
class Crowd:
    """One job's crowd and what the quality loop knows of it."""

    workers: list[SimulatedWorker]
    model: WorkerQuality
    topic: str
    gold: list[str]  #: true tags of the gold questions
    gold_rate: float
    agreement: bool  #: the model learns from training answers' agreement too
    rng: random.Random
    gold_answers: int = 0  #: the annotator's and the job's

    def ask(self, worker: SimulatedWorker, truth: str) -> str:
        """One assignment: maybe a gold question first (as the pool hands them out),
        then the worker's answer."""
        if self.rng.random() < self.gold_rate:
            known = self.rng.choice(self.gold)
            answer = worker.answer(known, TAGS, self.rng) or "N/A"
            self.model.gold(self.topic, worker.worker_id, answer, known)
            self.gold_answers += 1
        return worker.answer(truth, TAGS, self.rng) or "N/A"

    def train(self, truths: list[str]) -> None:
        """Training tasks: answers until the loop's posterior settles them."""
        for truth in truths:
            answers: list[tuple[str, str]] = []
            order = self.rng.sample(self.workers, len(self.workers))
            while self.model.needs_more(self.topic, answers, limit=len(order)):
                worker = order[len(answers)]
                answers.append((worker.worker_id, self.ask(worker, truth)))
            if self.agreement:
                self.model.settle(self.topic, answers)


def _crowd(rng: random.Random, args: argparse.Namespace, gold: list[str]) -> Crowd:
    population = dataclasses.replace(PRESETS["demo"], spammer_share=args.spammers)
    workers = [population.draw(f"w{i}", rng) for i in range(CROWD)]
    spec = ClassifierSpec(name=args.classifier, question="?", tags=TAGS)
    model = worker_model(QualityParams(gold_rate=args.gold_rate), [spec])
    agreement = args.evidence == "all"
    return Crowd(workers, model, spec.name, gold, args.gold_rate, agreement, rng)


def _labels(
    crowd: Crowd,
    tasks: int,
    window: list[int],
    truth: list[str],
    predicted: np.ndarray,
    share: float,
) -> tuple[list[tuple[str, int, float]], list[tuple[str, bool, bool]]]:
    """A job's label tasks, one answer each: (worker, said yes, prediction) of the
    sampled messages, and (worker, said yes, is yes) of its gold questions."""
    rng = crowd.rng
    unasked = list(window)
    rng.shuffle(unasked)
    out, gold = [], []
    for _ in range(tasks):
        worker = rng.choice(crowd.workers)
        if rng.random() < share:
            known = rng.choice(crowd.gold)
            answer = crowd.ask(worker, known)
            crowd.gold_answers += 1
            if answer in TAGS:
                gold.append((worker.worker_id, answer == "yes", known == "yes"))
            continue
        if not unasked:
            break
        i = unasked.pop()
        answer = crowd.ask(worker, truth[i])
        if answer in TAGS:
            out.append((worker.worker_id, int(answer == "yes"), float(predicted[i])))
    return out, gold


def _trial(
    method: str,
    tasks: int,
    window: list[int],
    truth: list[str],
    predicted: np.ndarray,
    gold: list[int],
    crowd: Crowd,
    args: argparse.Namespace,
) -> dict[str, Estimate]:
    rng = crowd.rng
    if method == "count":
        answers: list[CountAnswer] = []
        calibrations: list[CountAnswer] = []
        positives = [i for i in gold if truth[i] == "yes"]
        negatives = [i for i in gold if truth[i] != "yes"]
        for k in range(tasks):
            worker = rng.choice(crowd.workers)
            if calibration_due(len(calibrations), k, args.calibration):
                golds = calibration_batch(positives, negatives, args.batch, rng)
                real = []
            else:
                n_gold = gold_count(args.batch, args.gold, rng)
                real = rng.sample(window, args.batch - n_gold)
                golds = rng.sample(gold, n_gold)
            count = worker.count([truth[i] for i in real + golds], "yes", TAGS, rng)
            gold_yes = sum(truth[i] == "yes" for i in golds)
            answer = CountAnswer(worker.worker_id, count, len(real + golds), len(golds), gold_yes)
            (answers if real else calibrations).append(answer)
        return {
            "plain": thresh(answers).estimate,
            "corrected": calibrated_share(answers + calibrations),
        }
    labels, gold_answers = _labels(crowd, tasks, window, truth, predicted, args.gold_share)
    workers = {w for w, _, _ in labels}
    rates = worker_rates(crowd.model, crowd.topic, "yes", workers, gold_record(gold_answers))
    if method == "label":
        said = [(w, y) for w, y, _ in labels]
        return {"plain": corrected_share(said, {}), "corrected": corrected_share(said, rates)}
    mean = float(predicted[window].mean())
    return {
        "plain": corrected_difference(mean, labels, {}),
        "corrected": corrected_difference(mean, labels, rates),
    }


def _window(
    rng: random.Random, pool: list[int], truth: list[str], size: int, share: float | None
) -> list[int]:
    """``size`` messages: at random, or with ``share`` of them tagged yes."""
    if share is None:
        return rng.sample(pool, min(size, len(pool)))
    yes = [i for i in pool if truth[i] == "yes"]
    no = [i for i in pool if truth[i] != "yes"]
    k = round(share * size)
    return rng.sample(yes, k) + rng.sample(no, size - k)


def _summary(estimates: list[Estimate], actual: list[float]) -> dict[str, float]:
    return {
        "coverage": round(
            sum(e.low <= a <= e.high for e, a in zip(estimates, actual, strict=True)) / len(actual),
            3,
        ),
        "mean_abs_error": round(
            statistics.fmean(abs(e.value - a) for e, a in zip(estimates, actual, strict=True)),
            4,
        ),
        "mean_estimate": round(statistics.fmean(e.value for e in estimates), 4),
        "mean_ci_width": round(statistics.fmean(e.width for e in estimates), 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    records = load_tagged(args.data, args.classifier)
    texts, truth = [text for text, _ in records], [tag for _, tag in records]
    rng = random.Random(args.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    train, rest = order[: args.train], order[args.train :]
    gold, pool = rest[:200], rest[200:]
    hasher = FeatureHasher(2**18)
    matrix = hasher.matrix([grams(tokens(t)) for t in texts])
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(matrix[train], [truth[i] for i in train])
    predicted = model.predict_proba(matrix)[:, list(model.classes_).index("yes")]
    gold_tags = [truth[i] for i in gold]
    rows = []
    for share in args.shares:
        for method in ("label", "model", "count"):
            for tasks in args.tasks:
                if method == "count":
                    tasks = max(tasks // args.batch, 1)  # the same pay
                results: dict[str, list[Estimate]] = {}
                actual, gold_answers = [], 0
                for _ in range(args.trials):
                    window = _window(rng, pool, truth, args.window, share)
                    actual.append(sum(truth[i] == "yes" for i in window) / len(window))
                    crowd = _crowd(rng, args, gold_tags)
                    crowd.train([truth[i] for i in rng.sample(pool, args.training)])
                    found = _trial(method, tasks, window, truth, predicted, gold, crowd, args)
                    for name, estimate in found.items():
                        results.setdefault(name, []).append(estimate)
                    gold_answers += crowd.gold_answers
                records_judged = tasks * (args.batch if method == "count" else 1)
                rows.append(
                    {
                        "share": round(statistics.fmean(actual), 4),
                        "method": method,
                        "tasks": tasks,
                        "records_judged": records_judged,
                        "cost": round(records_judged * PAY, 2),
                        "gold_answers_per_worker": round(gold_answers / (args.trials * CROWD), 2),
                        **{name: _summary(found, actual) for name, found in results.items()},
                    }
                )
    positives = sum(t == "yes" for t in truth) / len(truth)
    return {
        "classifier": args.classifier,
        "data": args.data.name,
        "messages": len(texts),
        "positive_rate": round(positives, 4),
        "window": args.window,
        "trials": args.trials,
        "crowd": CROWD,
        "spammer_share": args.spammers,
        "training_tasks": args.training,
        "gold_rate": args.gold_rate,
        "gold_share": args.gold_share,
        "evidence": args.evidence,
        "batch": args.batch,
        "gold_per_batch": args.gold,
        "calibration_share": args.calibration,
        "model_trained_on": args.train,
        "results": rows,
    }


def _floats(text: str) -> list[float | None]:
    return [None if x == "natural" else float(x) for x in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_PATH)
    parser.add_argument("--classifier", default="aid_related")
    parser.add_argument(
        "--shares",
        type=_floats,
        default=[0.0275, 0.32],
        help="shares of the tag in a window, or 'natural' (random windows)",
    )
    parser.add_argument("--trials", type=int, default=100, help="jobs per method and share")
    parser.add_argument(
        "--tasks",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[200],
        help="records judged per job (count: in batches)",
    )
    parser.add_argument("--window", type=int, default=1000, help="messages per window")
    parser.add_argument("--batch", type=int, default=20, help="count batch size")
    parser.add_argument("--gold", type=float, default=2.0, help="mean gold items per batch")
    parser.add_argument(
        "--calibration",
        type=float,
        default=0.3,
        help="share of count batches that are calibration batches (all gold)",
    )
    parser.add_argument("--spammers", type=float, default=0.3, help="share of spammers")
    parser.add_argument(
        "--training", type=int, default=0, help="training tasks the loop saw before the job"
    )
    parser.add_argument(
        "--gold-rate", type=float, default=0.05, help="the annotator's gold questions' share"
    )
    parser.add_argument(
        "--gold-share", type=float, default=0.2, help="the job's gold questions' share"
    )
    parser.add_argument(
        "--evidence",
        choices=["gold", "all"],
        default="gold",
        help="what the workers' rates learn from: gold answers, or their agreement too",
    )
    parser.add_argument("--train", type=int, default=500, help="labels the model learned from")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    args = parser.parse_args()
    result = run(args)
    print(
        f"{'share':>6} {'method':6} {'records':>7} {'cost':>5} {'gold/w':>6} "
        f"{'plain: cover':>12} {'error':>6} {'width':>6} "
        f"{'corrected: cover':>16} {'error':>6} {'width':>6}"
    )
    for row in result["results"]:
        plain, corrected = row["plain"], row.get("corrected")
        line = (
            f"{row['share']:>6.4f} {row['method']:6} {row['records_judged']:>7} "
            f"{row['cost']:>5.2f} {row['gold_answers_per_worker']:>6.2f} "
            f"{plain['coverage']:>12.2f} {plain['mean_abs_error']:>6.3f} "
            f"{plain['mean_ci_width']:>6.3f}"
        )
        if corrected is not None:
            line += (
                f" {corrected['coverage']:>16.2f} {corrected['mean_abs_error']:>6.3f}"
                f" {corrected['mean_ci_width']:>6.3f}"
            )
        print(line)
    args.reports.mkdir(parents=True, exist_ok=True)
    path = args.reports / f"bench-counting-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "results"}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
