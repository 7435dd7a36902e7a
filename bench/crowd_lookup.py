"""The classifier's cost of crowd tags: ``classify`` on a batch with and without crowd
labels held, and the lookup (own labels and near-duplicates) alone.

A benchmark, not a test, in one process (no broker). The crowd labels are
``--labels`` / 2 texts, each two of the bundled sample's messages joined, each
labeled for both classifiers of the ``crisis`` topology; the batch is ``--batch``
messages of the sample, of which ``--copies`` (a share) are labeled texts with one
word dropped (near-duplicates). Models are the harness's sample models. Each figure
is the fastest and the median of ``--runs`` runs, in microseconds an item, timed
alternately so that other load on the machine touches each alike. JSON on stdout.
Usage: python bench/crowd_lookup.py [--labels 10000] [--batch 5000] [--copies 0.05]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channels.records import Item, Label
from config import load_settings
from pe.classifier.agent import classify
from pe.classifier.crowdlabels import CrowdLabels
from pe.common.featurebatch import FeatureBatch
from pe.common.hashing import SparseRows
from pe.common.linear import CompiledModel, compile_model
from pe.common.simhash import simhash_rows
from pe.common.space import FeatureSpace
from pe.params import ClassifierParams, FeaturesParams, TaskgenParams
from pe.registry import params_of
from pipelines.app import model_signer
from pipelines.sample import load_sample
from pipelines.testing import sample_models
from pipelines.topology import load_topology


def _labels(labeled: list[str], space: FeatureSpace) -> CrowdLabels:
    """Each of ``labeled`` labeled for every classifier, as the topology keeps them."""
    topology = load_topology("crisis")
    crowd = CrowdLabels(
        {spec.name: spec.tags for spec in topology.classifiers},
        params_of(topology.params, ClassifierParams).crowd_labels,
        params_of(topology.params, TaskgenParams).near_dup_bits,
    )
    _, words = space.matrices(labeled)
    stamp = 0.0
    for i, (text, sig) in enumerate(zip(labeled, simhash_rows(words), strict=True)):
        for spec in topology.classifiers:
            stamp += 1.0
            crowd.take(
                Label(
                    item_id=f"labeled-{i}",
                    classifier=spec.name,
                    tag=spec.tags[0],
                    agreement=1.0,
                    answers=[],
                    idx=[],
                    val=[],
                    ts=stamp,
                    sig=sig,
                    text=text,
                )
            )
    return crowd


def _batch(
    texts: list[str], labeled: list[str], space: FeatureSpace, args: argparse.Namespace
) -> FeatureBatch:
    rng = random.Random(args.seed + 1)
    chosen = []
    for _ in range(args.batch):
        if rng.random() < args.copies:
            words = rng.choice(labeled).split()
            del words[rng.randrange(len(words))]
            chosen.append(" ".join(words))
        else:
            chosen.append(rng.choice(texts))
    matrix, words = space.matrices(chosen)
    items = [Item(id=f"item-{i}", text=t, ts=0.0, ts_in=0.0) for i, t in enumerate(chosen)]
    return FeatureBatch(items, SparseRows(matrix), simhash_rows(words), matrix)


def _timed(runs: int, work: dict[str, Callable[[], object]], items: int) -> dict[str, object]:
    """Each of ``work`` run ``runs`` times, in turn: fastest and median µs an item."""
    seconds: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(runs):
        for name, run in work.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return {
        name: {
            "fastest_us": round(min(spent) / items * 1e6, 2),
            "median_us": round(statistics.median(spent) / items * 1e6, 2),
        }
        for name, spent in seconds.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--copies", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    topology = load_topology("crisis")
    rng = random.Random(args.seed)
    texts = [str(row["text"]) for row in load_sample()]
    space = FeatureSpace(params_of(topology.params, FeaturesParams))
    labeled = [f"{rng.choice(texts)} {rng.choice(texts)}" for _ in range(args.labels // 2)]
    crowd = _labels(labeled, space)
    batch = _batch(texts, labeled, space, args)
    signer = model_signer(load_settings(crowd="simulated"), embedded=True)
    models: dict[str, tuple[CompiledModel, int]] = {}
    for record in sample_models(topology, signer):
        update = signer.verify(record)
        models[update.classifier] = (compile_model(update.model), 1)
    names = [spec.name for spec in topology.classifiers]
    ids = [item.id for item in batch.items]
    tally: Counter[tuple[str, str]] = Counter()
    classify(batch, models, names, 0.0, crowd, tally)  # warms up, builds the tables
    timings = _timed(
        args.runs,
        {
            "classify_without_labels": lambda: classify(batch, models, names, 0.0),
            "classify_with_labels": lambda: classify(batch, models, names, 0.0, crowd),
            "lookup": lambda: list(crowd.tags(ids, batch.sigs)),
        },
        len(batch),
    )
    result = {
        "labels": len(crowd),
        "batch": len(batch),
        "crowd_tags": {f"{name}/{source}": n for (name, source), n in sorted(tally.items())},
        "per_item": timings,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
