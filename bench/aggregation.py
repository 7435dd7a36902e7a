"""Aggregation accuracy: the quality loop's online Dawid-Skene against crowd-kit.

A benchmark, not a test (tests/unit/test_aggregation_crosscheck.py asserts the same
on the bundled sample). Every message of the data with a known tag gets three
answers from a crowd of 40 simulated workers (``live`` population: accuracy
Beta(8, 1.5)) of whom ``--spammers`` answer at random. Reported: the accuracy of
crowd-kit's MajorityVote and DawidSkene (batch EM, 100 iterations), of our model
online (each item settled once, in stream order) and of our model's posterior once
it has seen every answer (one pass, no iteration).
Usage: python bench/aggregation.py [--data FILE] [--classifier aid_related]
       [--spammers 0.2] [--seeds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crowdkit.aggregation import DawidSkene, MajorityVote

from pe.annotator.population import PRESETS, simulate_answers
from pe.common.quality import WorkerQuality
from pipelines.sample import SAMPLE_PATH, load_tagged

TAGS = ["yes", "no"]


def _trial(truth: dict[str, str], spammers: float, seed: int) -> dict[str, float]:
    population = dataclasses.replace(PRESETS["live"], spammer_share=spammers)
    rng = random.Random(seed)
    answers = simulate_answers(truth, TAGS, population, workers=40, per_item=3, rng=rng)
    frame = pd.DataFrame(answers, columns=["task", "worker", "label"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # crowd-kit 1.4 uses options pandas 3 deprecates
        majority = MajorityVote().fit_predict(frame)
        batch = DawidSkene(n_iter=100).fit_predict(frame)
    model = WorkerQuality()
    model.register("c", TAGS)
    online, final = model.aggregate("c", answers)

    def accuracy(labels: Any) -> float:
        return round(float(sum(labels[i] == tag for i, tag in truth.items()) / len(truth)), 4)

    return {
        "majority_vote": accuracy(majority),
        "dawid_skene": accuracy(batch),
        "ours_online": accuracy(online),
        "ours_final": accuracy(final),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_PATH)
    parser.add_argument("--classifier", default="aid_related")
    parser.add_argument("--spammers", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    records = load_tagged(args.data, args.classifier)
    truth = {str(i): tag for i, (_, tag) in enumerate(records)}
    trials = [_trial(truth, args.spammers, seed) for seed in range(args.seeds)]
    result = {
        "items": len(truth),
        "spammers": args.spammers,
        "trials": trials,
        "mean": {k: round(statistics.fmean(t[k] for t in trials), 4) for k in trials[0]},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
