"""Label efficiency: held-out AUC against crowd answers bought (AIDR's Figure 5 design).

A benchmark, not a test. Each run drives crowdstream's own parts on a virtual clock:
the task generator's sampler (passive, active or hybrid picks; near-duplicate
removal on or off), the retainer pool with simulated workers, the quality loop, the
learner's logistic regression (examples weighted by their posterior) and the
feature space. The crowd is the ``live`` population (per-worker accuracy
Beta(8, 1.5), mean 0.84) with 10% spammers who answer at random: realistic, not
kind. Straggler mitigation is off (its duplicates buy speed, not labels).

Label policies:

- ``perfect``: the true tag for one answer (the ceiling: no crowd is this good);
- ``single``: one answer per item, no quality loop;
- ``majority``: AIDR's three answers per item, kept when two agree;
- ``loop``: the quality loop (adaptive redundancy from 1 to 5 answers at posterior
  0.9, online Dawid-Skene weights, gold questions at 5% from a gold set of 300
  messages held apart, release of inaccurate workers, posterior-weighted examples).

Gold answers count as answers bought. The model is retrained every 50 labels and
scored on 5,000 held-out messages; a run ends at ``--answers`` answers.
Prints a table; writes JSON and plots to reports/.
Usage: python bench/learning_curve.py --data disaster_messages.jsonl.gz
       [--classifier aid_related] [--answers 1000] [--seeds 2]
       [--runs grid,features,perfect] [--best word+char+minilm] [--threshold 0.9] [--c 0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pe.annotator.assurance import QualityLoop
from pe.annotator.crowd import GoldItem
from pe.annotator.pool import BatchDone, Finished, PoolConfig
from pe.annotator.population import PRESETS
from pe.annotator.simpool import SimulatedPool
from pe.common.hashing import sparse_rows
from pe.common.linear import compile_model
from pe.common.quality import QualityConfig, WorkerQuality
from pe.common.simhash import simhash_rows
from pe.common.space import FeatureSpace
from pe.learner.trainers import Example, fit_logistic
from pe.params import FeaturesParams, LearnerParams
from pe.taskgen.sampler import Candidate, ClassifierSampler, Strategy
from pipelines.sample import SAMPLE_PATH, load_tagged

POOL = 15
TAGS = ["yes", "no"]
TEST = 5000
GOLD = 300
RETRAIN = 50
FEATURES = {
    "word": FeaturesParams(),
    "word+char": FeaturesParams(char_ngrams=True),
    "word+char+emb": FeaturesParams(char_ngrams=True, embedding="wordllama"),
    "word+char+minilm": FeaturesParams(char_ngrams=True, embedding="minilm"),
}


@dataclass(frozen=True)
class _Payload:
    """What a simulated worker sees: the crowd answers from ``truth``."""

    truth: str
    tags: tuple[str, ...] = ("yes", "no")


@dataclass
class _Data:
    texts: list[str]
    truth: list[str]
    x: sp.csr_matrix
    sigs: list[int]
    dims: int
    stream: list[int]
    gold: list[int]
    test: list[int]


def _load(path: Path, classifier: str, features: str, seed: int) -> _Data:
    records = load_tagged(path, classifier)
    random.Random(seed).shuffle(records)
    texts = [text for text, _ in records]
    space = FeatureSpace(FEATURES[features])
    x, words = space.matrices(texts)
    n = len(records)
    test, gold = min(TEST, n // 4), min(GOLD, n // 20)  # the bundled sample is small
    return _Data(
        texts,
        [tag for _, tag in records],
        x,
        simhash_rows(words),
        space.dimensions,
        list(range(n - test - gold)),
        list(range(n - test - gold, n - test)),
        list(range(n - test, n)),
    )


@dataclass(frozen=True)
class _Design:
    strategy: Strategy
    dedup: bool
    policy: str  #: perfect | single | majority | loop
    features: str

    @property
    def name(self) -> str:
        dedup = "dedup" if self.dedup else "nodedup"
        return f"{self.strategy}/{dedup}/{self.policy}/{self.features}"


def _quality(data: _Data, rng: random.Random, threshold: float) -> QualityLoop:
    model = WorkerQuality(QualityConfig(threshold=threshold, max_answers=5))
    model.register("c", TAGS)
    gold = [GoldItem(f"c:{i}", data.texts[i], "?", TAGS, data.truth[i], "c") for i in data.gold]
    return QualityLoop(model, gold, lambda item, _id, _now: _Payload(item.truth), rng)


def _run(
    design: _Design, data: _Data, budget: int, seed: int, threshold: float, c: float
) -> dict[str, Any]:
    rng = random.Random(seed)
    population = dataclasses.replace(PRESETS["live"], spammer_share=0.1)
    loop = _quality(data, rng, threshold) if design.policy == "loop" else None
    votes = 3 if design.policy == "majority" else 1
    config = PoolConfig(
        target_size=POOL,
        votes=votes,
        mitigation=False,
        gold_rate=0.05 if loop else 0.0,
    )
    sim = SimulatedPool(config, population, seed, quality=loop)
    sampler = ClassifierSampler(
        buffer_size=len(data.stream),
        active_fraction=0.5,
        uncertainty_sample=500,
        strategy=design.strategy,
        label_budget=len(data.stream),  # the answer budget ends the run
        near_dup_bits=6 if design.dedup else 0,
        near_dup_memory=budget + 1,
        rng=rng,
    )
    rows = sparse_rows(data.x[data.stream])
    for i, (idx, val) in zip(data.stream, rows, strict=True):
        sampler.offer(Candidate(str(i), "", idx, val, data.sigs[i], {}))
    test_truth = [data.truth[i] == "yes" for i in data.test]
    labels: dict[int, tuple[str, float]] = {}
    state: dict[str, Any] = {
        "model": None,
        "answers": 0,
        "trained_at": 0,
        "correct": 0,
        "idle": False,
    }
    curve: list[tuple[int, int, float]] = []

    def train() -> None:
        examples = [
            Example(rows_by_id[i][0], rows_by_id[i][1], tag, weight)
            for i, (tag, weight) in labels.items()
        ]
        model = fit_logistic(examples, data.dims, c)
        if model is None:
            return
        compiled = compile_model(model)
        state["model"] = compiled
        proba = compiled.predict_proba(data.x[data.test])[:, compiled.classes.index("yes")]
        curve.append((state["answers"], len(labels), round(roc_auc_score(test_truth, proba), 4)))
        state["trained_at"] = len(labels)

    rows_by_id = dict(zip(data.stream, rows, strict=True))

    def scorer(candidates: Sequence[Candidate]) -> Sequence[float]:
        x = data.x[[int(c.item_id) for c in candidates]]
        confidence: list[float] = state["model"].predict_proba(x).max(axis=1).tolist()
        return confidence

    rounds = 0

    def next_round(_: BatchDone | None = None) -> None:
        nonlocal rounds
        if state["answers"] >= budget:
            return
        rounds += 1
        picks = sampler.select(POOL, scorer if state["model"] else None)
        state["idle"] = not picks  # nothing left to ask: the run ends
        for candidate, _kind in picks:
            sim.guard.submit(
                candidate.item_id,
                _Payload(data.truth[int(candidate.item_id)]),
                batch=f"r{rounds}",
                topic="c",
                adaptive=loop is not None,
            )

    seen = 0

    def collect() -> bool:
        nonlocal seen
        for done in sim.finished[seen:]:
            state["answers"] += len(done.task.answers)
            if done.task.gold:
                if loop is not None:
                    loop.settle(done.task)
                continue
            tag, weight = _aggregate(done, loop, design.policy)
            if tag is not None:
                i = int(done.task.task_id)
                labels[i] = (tag, weight)
                state["correct"] += tag == data.truth[i]
        seen = len(sim.finished)
        if len(labels) - state["trained_at"] >= RETRAIN:
            train()
        return state["answers"] >= budget or (state["idle"] and not sim.pool.tasks)

    sim.on_batch = next_round
    next_round()
    started = time.perf_counter()
    sim.run(stop=collect)
    train()
    return {
        "design": design.name,
        "seed": seed,
        "answers": state["answers"],
        "labels": len(labels),
        "label_accuracy": round(state["correct"] / max(len(labels), 1), 4),
        "answers_per_label": round(state["answers"] / max(len(labels), 1), 3),
        "auc": curve[-1][2] if curve else None,
        "gold_answers": sim.pool.counts["gold"],
        "released": sim.pool.counts["releases"],
        "cost": round(sim.cost(), 2),
        "seconds": round(time.perf_counter() - started, 1),
        "curve": curve,
    }


def _aggregate(done: Finished, loop: QualityLoop | None, policy: str) -> tuple[str | None, float]:
    values = [str(v.value) for v in done.task.answers]
    if loop is not None:
        verdict = loop.settle(done.task)
        return (verdict.tag, verdict.posterior) if verdict is not None else (None, 0.0)
    if policy == "perfect":
        return done.task.payload.truth, 1.0
    if policy == "majority":
        top = max(TAGS, key=values.count)
        return (top, 1.0) if values.count(top) >= 2 else (None, 0.0)
    return (values[0], 1.0) if values[0] in TAGS else (None, 0.0)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["answers", "labels", "label_accuracy", "answers_per_label", "auc", "cost", "released"]
    out: dict[str, Any] = {"design": runs[0]["design"], "seeds": len(runs)}
    for key in keys:
        out[key] = round(statistics.fmean(r[key] for r in runs), 4)
    out["auc_min"] = min(r["auc"] for r in runs)
    return out


def _designs(runs: list[str], best: str) -> list[_Design]:
    designs: list[_Design] = []
    if "grid" in runs:
        designs += [
            _Design(strategy, dedup, policy, best)
            for strategy in ("passive", "active", "hybrid")
            for dedup in (True, False)
            for policy in ("single", "majority", "loop")
        ]
    if "perfect" in runs:
        designs += [_Design(strategy, False, "perfect", best) for strategy in ("passive", "hybrid")]
    if "features" in runs:
        others = [name for name in FEATURES if name != best]
        designs += [_Design("hybrid", True, "loop", name) for name in others]
        designs += [_Design("passive", False, "perfect", name) for name in others]
    return designs


def _parse(name: str) -> _Design:
    strategy, dedup, policy, features = name.split("/")
    if strategy not in ("passive", "active", "hybrid") or features not in FEATURES:
        raise SystemExit(f"unknown design {name!r}")
    return _Design(strategy, dedup == "dedup", policy, features)  # type: ignore[arg-type]


def _plot(result: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    by_design: dict[str, list[dict[str, Any]]] = {}
    for run in result["runs"]:
        by_design.setdefault(run["design"], []).append(run)
    panels: dict[str, Callable[[str], bool]] = {
        "policy": lambda d: d.startswith("hybrid/dedup/") and d.endswith(result["best"]),
        "strategy": lambda d: "/dedup/loop/" in d and d.endswith(result["best"]),
        "dedup": lambda d: d.startswith("hybrid/") and "/loop/" in d and d.endswith(result["best"]),
        "features": lambda d: d.startswith("hybrid/dedup/loop/"),
    }
    for panel, keep in panels.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for design, runs in sorted(by_design.items()):
            if not keep(design):
                continue
            points = sorted(p for run in runs[:1] for p in run["curve"])
            ax.plot([p[0] for p in points], [p[2] for p in points], label=design, marker=".")
        ax.axhline(0.82, color="grey", linestyle=":", label="target 0.82")
        ax.set_xlabel("crowd answers bought")
        ax.set_ylabel("held-out AUC")
        ax.set_title(f"{result['classifier']}: by {panel} (seed 0)")
        ax.legend(fontsize=7)
        path = out / f"learning-{panel}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths


def _write(result: dict[str, Any], out: Path) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out.mkdir(exist_ok=True)
    result["plots"] = _plot(result, out)
    path = out / f"bench-learning-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def _merge(paths: list[Path], out: Path) -> int:
    """Designs run in several processes (2 cores), joined into one report."""
    parts = [json.loads(path.read_text()) for path in paths]
    result = {k: v for k, v in parts[0].items() if k not in ("summaries", "runs", "plots")}
    result["summaries"] = [s for part in parts for s in part["summaries"]]
    result["runs"] = [r for part in parts for r in part["runs"]]
    for summary in result["summaries"]:
        print(json.dumps(summary))
    _write(result, out)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SAMPLE_PATH)
    parser.add_argument("--classifier", default="aid_related")
    parser.add_argument("--answers", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--runs", default="grid,features")
    parser.add_argument(
        "--designs",
        default="",
        help="only these designs, e.g. hybrid/dedup/loop/word (comma-separated)",
    )
    parser.add_argument("--best", default="word+char+minilm", choices=list(FEATURES))
    parser.add_argument("--threshold", type=float, default=0.9, help="the loop's posterior")
    parser.add_argument(
        "--c", type=float, default=LearnerParams().c, help="the learner's inverse regularization"
    )
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument(
        "--merge", type=Path, nargs="*", help="join earlier runs' JSON reports (and plot)"
    )
    args = parser.parse_args()
    if args.merge:
        return _merge(args.merge, args.out)
    runs = args.runs.split(",")
    designs = _designs(runs, args.best)
    if args.designs:
        designs = [_parse(name) for name in args.designs.split(",")]
    wanted = {d.features for d in designs}
    data = {name: _load(args.data, args.classifier, name, 1) for name in wanted}
    results = []
    summaries = []
    for design in designs:
        done = [
            _run(design, data[design.features], args.answers, s, args.threshold, args.c)
            for s in range(args.seeds)
        ]
        results += done
        summary = _summary(done)
        summaries.append(summary)
        print(json.dumps(summary), flush=True)
    result = {
        "classifier": args.classifier,
        "best": args.best,
        "answers": args.answers,
        "threshold": args.threshold,
        "c": args.c,
        "summaries": summaries,
        "runs": results,
    }
    _write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
