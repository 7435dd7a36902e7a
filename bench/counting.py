"""Counting jobs: error, interval coverage and cost of the three counting methods.

For each method and number of crowd tasks, many trials draw a window of messages
from the data, ask simulated workers (the ``demo`` population, with a share of
spammers), and estimate the fraction with the tag, using the same estimators the
counting job runs (``pe.jobs``):

- ``label``: one label per sampled message, Wilson interval;
- ``count``: Qurk count batches (``--batch`` messages, ``--gold`` gold on average)
  aggregated with Thresh; workers skim a batch of texts (``COUNT_SKIM``);
- ``model``: a logistic regression trained on ``--train`` other messages scores the
  whole window; labels of a random sample correct it (difference estimator).

Cost is pay per record (0.02): a label task is 1 record, a count task a batch.
Prints a table and writes reports/bench-counting-<timestamp>.json.

Usage: python bench/counting.py [--data FILE.jsonl[.gz]] [--classifier aid_related]
       [--trials 200] [--tasks 10,20,40,80,160]
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
from pe.features.hashing import FeatureHasher
from pe.features.text import grams, tokens
from pe.jobs.proportion import Estimate, difference, wilson
from pe.jobs.thresh import CountAnswer, gold_count, thresh
from pipelines.sample import SAMPLE_PATH, load_tagged

TAGS = ["yes", "no"]
PAY = 0.02


def _crowd(rng: random.Random, size: int, spammers: float) -> list[SimulatedWorker]:
    model = dataclasses.replace(PRESETS["demo"], spammer_share=spammers)
    return [model.draw(f"w{i}", rng) for i in range(size)]


def _trial(
    method: str,
    tasks: int,
    window: list[int],
    truth: list[str],
    predicted: np.ndarray,
    gold: list[int],
    crowd: list[SimulatedWorker],
    rng: random.Random,
    args: argparse.Namespace,
) -> tuple[Estimate, float]:
    if method == "count":
        answers = []
        for _ in range(tasks):
            worker = rng.choice(crowd)
            n_gold = gold_count(args.batch, args.gold, rng)
            real = rng.sample(window, args.batch - n_gold)
            golds = rng.sample(gold, n_gold)
            batch = [truth[i] for i in real + golds]
            count = worker.count(list(batch), "yes", TAGS, rng)
            gold_yes = sum(truth[i] == "yes" for i in golds)
            answers.append(CountAnswer(worker.worker_id, count, args.batch, n_gold, gold_yes))
        return thresh(answers).estimate, tasks * args.batch * PAY
    sample = rng.sample(window, min(tasks, len(window)))
    labels = []
    for i in sample:
        answer = rng.choice(crowd).answer(truth[i], TAGS, rng)
        labels.append(int(answer == "yes"))
    if method == "label":
        return wilson(sum(labels), len(labels)), tasks * PAY
    mean = float(predicted[window].mean())
    residuals = [y - float(predicted[i]) for i, y in zip(sample, labels, strict=True)]
    return difference(mean, residuals, 0.95, len(window)), tasks * PAY


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
    rows = []
    for method in ("label", "count", "model"):
        for tasks in args.tasks:
            errors, covered, widths, costs = [], 0, [], []
            for _ in range(args.trials):
                window = rng.sample(pool, min(args.window, len(pool)))
                actual = sum(truth[i] == "yes" for i in window) / len(window)
                crowd = _crowd(rng, 20, args.spammers)
                estimate, cost = _trial(
                    method, tasks, window, truth, predicted, gold, crowd, rng, args
                )
                errors.append(abs(estimate.value - actual))
                covered += estimate.low <= actual <= estimate.high
                widths.append(estimate.width)
                costs.append(cost)
            rows.append(
                {
                    "method": method,
                    "tasks": tasks,
                    "mean_abs_error": round(statistics.fmean(errors), 4),
                    "coverage": round(covered / args.trials, 3),
                    "mean_ci_width": round(statistics.fmean(widths), 4),
                    "cost": round(statistics.fmean(costs), 2),
                    "records_judged": tasks * (args.batch if method == "count" else 1),
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
        "batch": args.batch,
        "gold_per_batch": args.gold,
        "spammer_share": args.spammers,
        "model_trained_on": args.train,
        "results": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_PATH)
    parser.add_argument("--classifier", default="aid_related")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument(
        "--tasks", type=lambda s: [int(x) for x in s.split(",")], default=[10, 20, 40, 80, 160]
    )
    parser.add_argument("--window", type=int, default=1000, help="messages per window")
    parser.add_argument("--batch", type=int, default=20, help="count batch size")
    parser.add_argument("--gold", type=float, default=2.0, help="mean gold items per batch")
    parser.add_argument("--spammers", type=float, default=0.1, help="share of spammers")
    parser.add_argument("--train", type=int, default=500, help="labels the model learned from")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    args = parser.parse_args()
    result = run(args)
    print(
        f"{'method':7} {'tasks':>5} {'records':>7} {'cost':>6} {'error':>7} "
        f"{'width':>6} {'coverage':>8}"
    )
    for row in result["results"]:
        print(
            f"{row['method']:7} {row['tasks']:>5} {row['records_judged']:>7} "
            f"{row['cost']:>6.2f} {row['mean_abs_error']:>7.4f} "
            f"{row['mean_ci_width']:>6.3f} {row['coverage']:>8.3f}"
        )
    args.reports.mkdir(parents=True, exist_ok=True)
    path = args.reports / f"bench-counting-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "results"}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
