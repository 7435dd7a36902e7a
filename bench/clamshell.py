"""CLAMShell's experiments, replicated in simulation with crowdstream's annotator.

A benchmark, not a test. Every run drives the annotator's own pool service
(pe.annotator.lifeguard) and simulated crowd on a virtual clock, so hours of crowd
work take seconds. Experiments (CLAMShell sections 4 and 6):

1. straggler: straggler mitigation on/off at pool-batch ratios R = Np / Nbatch in
   {0.5, 0.75, 1, 2, 3} (Np = 15, tasks of 5 records): batch latency, the standard
   deviation of task latency within a batch, cost;
2. maintenance: pool maintenance off and at PM_l in {2, 4, 8, 16, 32} s per record,
   tasks of {1, 5, 10} records, 500 tasks: total latency, mean pool latency (MPL)
   per batch, replacements, cost;
3. termest: with straggler mitigation and maintenance (PM_l = 8 s), TermEst on/off:
   replacements per 100 tasks;
4. learning: hybrid vs active vs passive on crisis messages (aid_related) with
   simulated labels: time to a target AUC;
5. end_to_end: CLAMShell (retainer pool, mitigation, maintenance, hybrid) vs Base-NR
   (all tasks posted at once, a newly recruited worker each, passive learning) vs
   Base-R (retainer pool, batches, active learning): labeling throughput, latency
   spread, time to a target AUC, for 500 labels.

Workers come from the ``live`` preset (CLAMShell's live retainer-pool runs; seconds
per record) unless ``--preset`` says otherwise; experiment 1 also runs on the
``medical`` preset (the deployment traces CLAMShell's simulator used).
Prints a table and JSON; writes reports/bench-clamshell-<timestamp>.json and plots.
Usage: python bench/clamshell.py [--runs straggler,maintenance,...] [--seeds 5]
       [--data FILE.jsonl[.gz]] [--target-auc 0.7]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

from pe.annotator.latency import MaintenanceRule
from pe.annotator.pool import BatchDone, PoolConfig
from pe.annotator.population import PRESETS, PopulationModel
from pe.annotator.simpool import SimulatedPool
from pe.common.hashing import FeatureHasher
from pe.common.linear import CompiledModel, compile_model, feature_matrix
from pe.common.text import grams, tokens
from pe.learner.trainers import Example, fit_logistic
from pe.taskgen.sampler import Candidate, ClassifierSampler, Strategy
from pipelines.sample import SAMPLE_PATH, load_tagged

POOL = 15
TAGS = ["yes", "no"]
N_FEATURES = 2**18


@dataclass(frozen=True)
class _Item:
    """A simulated task's payload: the simulated crowd answers from ``truth``."""

    truth: str
    tags: tuple[str, ...] = ("yes", "no")


def _config(**kwargs: Any) -> PoolConfig:
    return PoolConfig(target_size=kwargs.pop("target_size", POOL), **kwargs)


def _batched(
    config: PoolConfig, model: PopulationModel, *, per_batch: int, size: int, tasks: int, seed: int
) -> dict[str, Any]:
    """Send ``tasks`` tasks in batches of ``per_batch``, each after the last finished."""
    sim = SimulatedPool(config, model, seed)
    sent = 0
    mpl: list[float | None] = []

    def submit(_: BatchDone | None = None) -> None:
        nonlocal sent
        if _ is not None:
            mpl.append(sim.pool.mean_pool_latency())
        batch = f"b{sent}"
        for _i in range(min(per_batch, tasks - sent)):
            sim.guard.submit(f"t{sent}", _Item("yes"), size=size, batch=batch)
            sent += 1

    sim.on_batch = lambda done: (
        submit(done) if sent < tasks else mpl.append(sim.pool.mean_pool_latency())
    )
    submit()
    sim.run(stop=lambda: len(sim.finished) >= tasks)
    by_batch: dict[str | None, list[float]] = {}
    for done in sim.finished:
        by_batch.setdefault(done.task.batch, []).append(done.seconds)
    spreads = [statistics.pstdev(v) for v in by_batch.values() if len(v) > 1]
    latencies = [b.seconds for b in sim.batches]
    return {
        "total_s": sim.elapsed,
        "batch_latency_s": statistics.fmean(latencies),
        "batch_latency_std_s": statistics.pstdev(latencies),
        "task_std_in_batch_s": statistics.fmean(spreads) if spreads else 0.0,
        "cost": sim.cost(),
        "replacements": sim.pool.counts["releases"],
        "duplicates": sim.pool.counts["duplicates"],
        "terminations": sim.pool.counts["terminations"],
        "mpl_s": mpl,
    }


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    return {k: round(statistics.fmean(r[k] for r in runs), 3) for k in keys}


def straggler(seeds: int, preset: str) -> list[dict[str, Any]]:
    rows = []
    for ratio in (0.5, 0.75, 1.0, 2.0, 3.0):
        row: dict[str, Any] = {"preset": preset, "R": ratio}
        for mitigation in (False, True):
            runs = [
                _batched(
                    _config(votes=1, mitigation=mitigation, mode="batch"),
                    PRESETS[preset],
                    per_batch=max(round(POOL / ratio), 1),
                    size=5,
                    tasks=20 * max(round(POOL / ratio), 1),
                    seed=seed,
                )
                for seed in range(seeds)
            ]
            row["on" if mitigation else "off"] = _mean(runs)
        row["speedup"] = round(row["off"]["batch_latency_s"] / row["on"]["batch_latency_s"], 2)
        row["task_std_reduction"] = round(
            row["off"]["task_std_in_batch_s"] / max(row["on"]["task_std_in_batch_s"], 1e-9), 2
        )
        row["cost_ratio"] = round(row["on"]["cost"] / row["off"]["cost"], 2)
        rows.append(row)
    return rows


def maintenance(seeds: int, preset: str) -> list[dict[str, Any]]:
    rows = []
    for size in (1, 5, 10):
        for threshold in (None, 2.0, 4.0, 8.0, 16.0, 32.0):
            rule = MaintenanceRule(threshold) if threshold else None
            runs = [
                _batched(
                    _config(votes=1, mitigation=False, mode="batch", maintenance=rule),
                    PRESETS[preset],
                    per_batch=POOL,
                    size=size,
                    tasks=500,
                    seed=seed,
                )
                for seed in range(seeds)
            ]
            mpl = [
                round(statistics.fmean(x for x in point if x is not None), 2)
                for point in zip(*(r["mpl_s"] for r in runs), strict=False)
                if any(x is not None for x in point)
            ]
            rows.append({"records_per_task": size, "PM_l": threshold, **_mean(runs), "mpl_s": mpl})
    return rows


def termest(seeds: int, preset: str) -> list[dict[str, Any]]:
    rows = []
    for mitigation, use_termest in ((False, False), (True, False), (True, True)):
        runs = [
            _batched(
                _config(
                    votes=1,
                    mitigation=mitigation,
                    mode="batch",
                    maintenance=MaintenanceRule(8.0, use_termest=use_termest),
                ),
                PRESETS[preset],
                per_batch=POOL,
                size=5,
                tasks=500,
                seed=seed,
            )
            for seed in range(seeds)
        ]
        mean = _mean(runs)
        rows.append(
            {
                "mitigation": mitigation,
                "termest": use_termest,
                "replacements_per_100_tasks": round(mean["replacements"] / 5, 2),
                **mean,
            }
        )
    return rows


# -- learning ------------------------------------------------------------------------


@dataclass
class _Data:
    rows: list[tuple[list[int], list[float]]]
    truth: list[str]
    train: list[int]
    test: list[int]


def _load(path: Path, classifier: str, limit: int, seed: int) -> _Data:
    records = load_tagged(path, classifier)
    random.Random(seed).shuffle(records)
    records = records[:limit]
    hasher = FeatureHasher(N_FEATURES)
    rows = hasher.transform([grams(tokens(text)) for text, _ in records])
    cut = int(len(records) * 0.7)
    return _Data(
        rows, [tag for _, tag in records], list(range(cut)), list(range(cut, len(records)))
    )


def _fit(data: _Data, labels: dict[int, str]) -> tuple[CompiledModel, float] | None:
    """A model of the labels so far, and its AUC on the held-out items."""
    examples = [Example(data.rows[i][0], data.rows[i][1], tag) for i, tag in labels.items()]
    model = fit_logistic(examples, N_FEATURES, 1.0)
    if model is None:
        return None
    compiled = compile_model(model)
    x = feature_matrix([data.rows[i] for i in data.test], N_FEATURES)
    proba = compiled.predict_proba(x)[:, compiled.classes.index("yes")]
    return compiled, float(roc_auc_score([data.truth[i] == "yes" for i in data.test], proba))


@dataclass(frozen=True)
class _Design:
    name: str
    strategy: Strategy
    config: PoolConfig
    pool: bool = True  #: a retainer pool, warmed up before the first task
    round_size: int = POOL  #: tasks per round (all at once without a pool)


def _learn(
    design: _Design, data: _Data, budget: int, model: PopulationModel, seed: int
) -> dict[str, Any]:
    """Label up to ``budget`` items through the simulated crowd; AUC after each round
    (or every 50 labels without rounds), with the model of the labels so far."""
    rng = random.Random(seed)
    # Without a retainer pool, each worker takes one task and goes: every task waits
    # for a recruit.
    sim = SimulatedPool(design.config, model, seed, warm=design.pool, one_task=not design.pool)
    sampler = ClassifierSampler(
        buffer_size=len(data.train),
        active_fraction=0.5,
        uncertainty_sample=500,
        label_budget=budget,
        near_dup_bits=0,
        near_dup_memory=budget + 1,
        rng=rng,
        strategy=design.strategy,
    )
    for i in data.train:
        idx, val = data.rows[i]
        sampler.offer(Candidate(str(i), "", idx, val, i + 1, {}))
    labels: dict[int, str] = {}
    curve: list[tuple[float, int, float]] = []
    latest: dict[str, Any] = {"model": None}

    def evaluate() -> None:
        fitted = _fit(data, labels)
        if fitted is not None:
            latest["model"], auc = fitted
            curve.append((round(sim.elapsed, 1), len(labels), round(auc, 4)))

    def scorer(candidates: Any) -> Any:
        compiled = latest["model"]
        x = feature_matrix([(c.idx, c.val) for c in candidates], N_FEATURES)
        return compiled.predict_proba(x).max(axis=1).tolist()

    round_no = 0

    def next_round(_: BatchDone | None = None) -> None:
        nonlocal round_no
        if _ is not None:
            evaluate()  # retrained as soon as the round is in: "asynchronous" in sim time
        picks = sampler.select(design.round_size, scorer if latest["model"] else None)
        for candidate, _kind in picks:
            i = int(candidate.item_id)
            sim.guard.submit(candidate.item_id, _Item(data.truth[i]), batch=f"r{round_no}")
        round_no += 1

    collected = 0

    def on_finished() -> None:
        nonlocal collected
        for done in sim.finished[collected:]:
            tag = done.task.answers[0].value
            if tag in TAGS:
                labels[int(done.task.task_id)] = tag
        if not design.pool and len(sim.finished) // 50 > collected // 50:
            evaluate()
        collected = len(sim.finished)

    sim.on_batch = next_round if design.pool else (lambda _: None)
    next_round()

    def done() -> bool:
        on_finished()
        return len(sim.finished) >= budget or not sim.pool.tasks

    sim.run(stop=done)
    on_finished()
    evaluate()
    latencies = [d.seconds for d in sim.finished]
    return {
        "design": design.name,
        "labels": len(sim.finished),
        "seconds": round(sim.elapsed, 1),
        "labels_per_minute": round(len(sim.finished) / sim.elapsed * 60, 2),
        "task_latency_std_s": round(statistics.pstdev(latencies), 2),
        "task_latency_mean_s": round(statistics.fmean(latencies), 2),
        "cost": round(sim.cost(), 2),
        "curve": curve,
    }


def _time_to(curve: list[tuple[float, int, float]], target: float) -> float | None:
    return next((t for t, _, auc in curve if auc >= target), None)


def _summarise(runs: list[dict[str, Any]], target: float) -> dict[str, Any]:
    times = [_time_to(r["curve"], target) for r in runs]
    reached = [t for t in times if t is not None]
    return {
        "design": runs[0]["design"],
        **{
            k: round(statistics.fmean(r[k] for r in runs), 2)
            for k in ("labels", "seconds", "labels_per_minute", "task_latency_std_s", "cost")
        },
        "final_auc": round(statistics.fmean(r["curve"][-1][2] for r in runs), 4),
        "reached_target": f"{len(reached)}/{len(runs)}",
        "time_to_target_s": round(statistics.fmean(reached), 1) if reached else None,
        "curves": [r["curve"] for r in runs],
    }


def learning(
    seeds: int, preset: str, data: _Data, budget: int, target: float
) -> list[dict[str, Any]]:
    config = _config(votes=1, mode="batch", maintenance=MaintenanceRule(8.0))
    designs = [
        _Design("hybrid", "hybrid", config),
        _Design("active", "active", config),
        _Design("passive", "passive", config),
    ]
    return [
        _summarise([_learn(d, data, budget, PRESETS[preset], s) for s in range(seeds)], target)
        for d in designs
    ]


def end_to_end(
    seeds: int, preset: str, data: _Data, budget: int, target: float
) -> list[dict[str, Any]]:
    designs = [
        _Design(
            "CLAMShell",
            "hybrid",
            _config(votes=1, mode="batch", mitigation=True, maintenance=MaintenanceRule(8.0)),
        ),
        _Design(
            "Base-R",
            "active",
            _config(votes=1, mode="batch", mitigation=False),
            round_size=POOL,
        ),
        # No retainer pool: every task posted at once; as many workers at a time as
        # the pool has, but each takes one task and leaves, so each task waits for a
        # recruit.
        _Design(
            "Base-NR",
            "passive",
            _config(votes=1, mitigation=False),
            pool=False,
            round_size=budget,
        ),
    ]
    rows = [
        _summarise([_learn(d, data, budget, PRESETS[preset], s) for s in range(seeds)], target)
        for d in designs
    ]
    base_nr = rows[2]
    for row in rows:
        row["throughput_vs_base_nr"] = round(
            row["labels_per_minute"] / base_nr["labels_per_minute"], 2
        )
        row["std_reduction_vs_base_nr"] = round(
            base_nr["task_latency_std_s"] / max(row["task_latency_std_s"], 1e-9), 1
        )
        row["variance_reduction_vs_base_nr"] = round(row["std_reduction_vs_base_nr"] ** 2, 1)
    return rows


# -- output --------------------------------------------------------------------------


def _plots(result: dict[str, Any], out: Path, stamp: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "straggler" in result:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for axis, preset in zip(axes, ("live", "medical"), strict=True):
            rows = [r for r in result["straggler"] if r["preset"] == preset]
            if not rows:
                continue
            ratios = [r["R"] for r in rows]
            for key, label in (("off", "no mitigation"), ("on", "straggler mitigation")):
                axis.plot(
                    ratios, [r[key]["batch_latency_s"] for r in rows], marker="o", label=label
                )
            axis.set_xlabel("pool-batch ratio R")
            axis.set_ylabel("mean batch latency (s)")
            axis.set_title(f"{preset} workers")
            axis.legend()
            axis.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, out / f"clamshell-straggler-{stamp}.png", plt))
    if "maintenance" in result:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=False)
        for axis, size in zip(axes, (1, 5, 10), strict=True):
            for row in (r for r in result["maintenance"] if r["records_per_task"] == size):
                label = f"PM_l={row['PM_l']:g}" if row["PM_l"] else "off"
                axis.plot(row["mpl_s"], label=label)
            axis.set_title(f"{size} record(s) per task")
            axis.set_xlabel("batch")
            axis.set_ylabel("mean pool latency (s / record)")
            axis.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out / f"clamshell-mpl-{stamp}.png", plt))
    for key in ("learning", "end_to_end"):
        if key not in result:
            continue
        fig, axis = plt.subplots(figsize=(6, 3.8))
        for row in result[key]:
            curve = row["curves"][0]
            axis.plot([t / 60 for t, _, _ in curve], [a for _, _, a in curve], label=row["design"])
        axis.set_xscale("log")
        axis.set_xlabel("minutes of crowd time (log)")
        axis.set_ylabel("held-out AUC")
        axis.legend()
        axis.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, out / f"clamshell-{key}-{stamp}.png", plt))
    return written


def _save(fig: Any, path: Path, plt: Any) -> str:
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


RUNS = ("straggler", "maintenance", "termest", "learning", "end_to_end")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--preset", default="live", choices=sorted(PRESETS))
    parser.add_argument(
        "--data", type=Path, default=SAMPLE_PATH, help="JSON lines of crisis messages"
    )
    parser.add_argument("--classifier", default="aid_related")
    parser.add_argument("--limit", type=int, default=6000, help="messages used for learning")
    parser.add_argument("--budget", type=int, default=500, help="labels per learning run")
    parser.add_argument("--target-auc", type=float, default=0.7)
    args = parser.parse_args()
    runs = [r for r in args.runs.split(",") if r]
    if unknown := set(runs) - set(RUNS):
        parser.error(f"unknown run(s): {', '.join(sorted(unknown))}")
    out = Path("reports")
    out.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {"benchmark": "clamshell", "when": stamp, "seeds": args.seeds}
    if "straggler" in runs:
        result["straggler"] = straggler(args.seeds, args.preset) + straggler(args.seeds, "medical")
    if "maintenance" in runs:
        result["maintenance"] = maintenance(args.seeds, args.preset)
    if "termest" in runs:
        result["termest"] = termest(args.seeds, args.preset)
    if {"learning", "end_to_end"} & set(runs):
        data = _load(args.data, args.classifier, args.limit, seed=3)
        result["data"] = {"file": args.data.name, "items": len(data.truth), "test": len(data.test)}
        result["target_auc"] = args.target_auc
        if "learning" in runs:
            result["learning"] = learning(
                args.seeds, args.preset, data, args.budget, args.target_auc
            )
        if "end_to_end" in runs:
            result["end_to_end"] = end_to_end(
                args.seeds, args.preset, data, args.budget, args.target_auc
            )
    result["plots"] = _plots(result, out, stamp)
    text = json.dumps(result, indent=1)
    (out / f"bench-clamshell-{stamp}.json").write_text(text + "\n")
    _table(result)
    print(text)
    return 0


def _table(result: dict[str, Any]) -> None:
    lines = []
    for row in result.get("straggler", []):
        lines.append(
            f"straggler {row['preset']:8} R={row['R']:<5} latency off"
            f" {row['off']['batch_latency_s']:9.1f} on {row['on']['batch_latency_s']:9.1f}"
            f" ({row['speedup']}x)  task std /"
            f"{row['task_std_reduction']}  cost x{row['cost_ratio']}"
        )
    for row in result.get("maintenance", []):
        lines.append(
            f"maintenance size={row['records_per_task']:<2} PM_l={row['PM_l']!s:5} total"
            f" {row['total_s']:8.1f}s replacements {row['replacements']:6.1f}"
            f" cost {row['cost']:.2f}"
        )
    for row in result.get("termest", []):
        lines.append(
            f"termest mitigation={row['mitigation']!s:5} termest={row['termest']!s:5}"
            f" replacements/100 tasks {row['replacements_per_100_tasks']}"
        )
    for key in ("learning", "end_to_end"):
        for row in result.get(key, []):
            lines.append(
                f"{key} {row['design']:9} labels/min {row['labels_per_minute']:8.2f} task std"
                f" {row['task_latency_std_s']:8.1f}s AUC {row['final_auc']} time to target"
                f" {row['time_to_target_s']} ({row['reached_target']})"
            )
    sys.stderr.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
