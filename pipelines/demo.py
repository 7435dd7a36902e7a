"""``crowdstream demo``: the crisis pipeline end to end on the embedded broker, in its
default configuration.

A crisis in a few minutes, run as :mod:`pipelines.liverun` runs one: the bundled
messages stream in while the crowd waits for the learner's teacher to embed
``prefill`` of them; the simulated crowd (the ``live`` population with 10% spammers,
its clock 40 times faster than people's) then buys ``answers`` answers per
classifier; once the learner has trained on them all, ``holdout`` messages never
streamed are pushed and scored against their truth. Shows live progress and writes
``reports/<timestamp>/`` with report.json and PNG plots. Every process it starts is
stopped at the end.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from channels.records import format_auc
from pipelines.broker import EmbeddedBroker, free_port
from pipelines.liverun import LivePlan, LiveRun, live_crowd, live_run
from pipelines.local import LocalWorker
from pipelines.report import crowd_summary, percentiles, write_report
from pipelines.sample import SAMPLE_PATH, STREAM_PATH, load_sample
from pipelines.topology import load_topology

__all__ = ["demo_overrides", "run_demo"]

PIPELINE = "crisis"


def demo_overrides(answers: int, rate: float) -> tuple[str, ...]:
    """The demo's settings over the default configuration: a live run's crowd
    (:func:`~pipelines.liverun.live_crowd`) 40 times faster, with a pool sized to
    match and the learner's wait for its last few labels (30 s) shortened alike;
    ``answers`` crowd answers per classifier; and the learner samples every item of the
    stream for its teacher (``rate`` a second; the default 30 a second would take
    minutes more to fill the sample)."""
    return (
        *live_crowd(answers, speed=40, task_rate=1200, teacher_rate=rate),
        "annotator.pool_size=30",
        "learner.retrain_idle_s=5",
    )


def run_demo(
    *,
    items: int | None,
    rate: float,
    prefill: int,
    answers: int,
    holdout: int,
    reports_dir: Path,
) -> int:
    """The demo (see the module); 0 if every held-out item was scored."""
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = reports_dir / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    messages = load_sample(path=SAMPLE_PATH) + load_sample(path=STREAM_PATH)
    if not 0 < holdout < len(messages):
        raise ValueError(f"--holdout must be between 1 and {len(messages) - 1}")
    stream, held = messages[:-holdout][:items], messages[-holdout:]
    topology = load_topology(PIPELINE)
    classifiers = tuple(spec.name for spec in topology.classifiers)
    plan = LivePlan(PIPELINE, classifiers, rate, prefill, quiet_s=QUIET_S)
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
            PIPELINE,
            broker.url,
            free_port(),
            out_dir / "worker.log",
            crowd="simulated",
            data_dir=data / "worker",
            overrides=demo_overrides(answers, rate),
        )
        worker.wait_ready()
        print(f"worker ready; metrics at {worker.url}/metrics", flush=True)
        print(
            f"streaming {len(stream):,} messages at {rate:g}/s; the crowd waits until the "
            f"learner's teacher has embedded {prefill:,} of them, then buys {answers:,} "
            f"answers per classifier; then {len(held):,} held-out messages are scored",
            flush=True,
        )
        run = asyncio.run(
            live_run(broker.bootstrap, worker, stream, held, plan, tick=_Progress(classifiers))
        )
        finished = time.time()
        run.log.crowd = crowd_summary(worker.metrics())
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        if broker.log_file.is_file():
            shutil.copy(broker.log_file, out_dir / "broker.log")
        shutil.rmtree(data, ignore_errors=True)
    truth = {str(row["id"]): row["meta"]["truth"] for row in stream} | run.truth()
    positives = {spec.name: spec.tags[0] for spec in topology.classifiers}
    timings = {"prefill": run.prefill_s, "training": run.training_s}
    report = write_report(
        run.log, finished, truth, positives, out_dir, held_out=list(run.held), timings=timings
    )
    _print_summary(report, out_dir)
    return 0 if run.holdout_scored else 1


#: The crowd has spent its budget when no outcome came for this long: the demo's crowd
#: answers a task within a few seconds.
QUIET_S = 10.0


class _Progress:
    """A line a second: the step, items in and out, latency, and each classifier's
    model."""

    def __init__(self, classifiers: tuple[str, ...]) -> None:
        self.classifiers = classifiers
        self.out_before = 0
        self.at = time.time()

    def __call__(self, run: LiveRun) -> None:
        log = run.log
        now = time.time()
        rate = (len(log.classified) - self.out_before) / max(now - self.at, 1e-3)
        self.out_before, self.at = len(log.classified), now
        lat = percentiles(log.window)
        log.window.clear()
        p50, p99 = lat["p50"], lat["p99"]
        latency = (
            f"p50 {p50 * 1000:4.0f} ms p99 {p99 * 1000:4.0f} ms"
            if p50 is not None and p99 is not None
            else "p50    - ms p99    - ms"
        )
        models = []
        for name in self.classifiers:
            model = log.model(name)
            models.append(
                f"{name} v{model.version} AUC {model.metrics.describe_auc()}"
                if model
                else f"{name} (no model)"
            )
        print(
            f"[{now - log.started:5.1f}s] in {log.pushed:6,d} out {len(log.classified):6,d} "
            f"({rate:4.0f}/s) {latency} | {run.step}: {run.status} | " + "  ".join(models),
            flush=True,
        )


def _share(value: float | None, digits: int) -> str:
    """A share as a percentage; ``-`` when there is none (no item of that truth)."""
    return "-" if value is None else f"{value:.{digits}%}"


def _print_summary(report: dict[str, Any], out_dir: Path) -> None:
    print("\n=== crowdstream demo report ===")
    print(
        f"items: {report['items_classified']} classified of {report['items_pushed']} pushed, "
        f"{report['items_rejected']} rejected, in {report['duration_s']} s; "
        f"{report['items_revised']} revised by crowd labels, "
        f"{report['items_second_opinions']} by the models' second opinions"
    )
    print(f"end-to-end latency (s): {report['latency_s']}")
    classifiers: dict[str, Any] = report["classifiers"]
    for name, result in classifiers.items():
        held = result["held_out"] or {}
        ci = held.get("auc_ci") or {}
        auc = format_auc(held.get("auc"), ci.get("low"), ci.get("high"))
        print(
            f"{name}: model v{result['model_version']} from {result['crowd_answers']} crowd "
            f"answers ({result['crowd_labels']} labels); its own held-out AUC {auc} on "
            f"{result['labels_held_out']} labels"
        )
        labels = result["crowd_labels_vs_truth"]
        if labels["labels"]:
            print(
                f"  crowd labels vs truth: {labels['accuracy']:.1%} right; "
                f"{_share(labels['positives_labelled_positive'], 0)} of the truly positive "
                f"labelled positive, {_share(labels['negatives_labelled_positive'], 1)} of "
                f"the rest ({labels['positive_share']:.0%} of labels positive, "
                f"{labels['true_positive_share']:.0%} truly)"
            )
        truth = result["held_out_items_vs_truth"]
        if truth["items"]:
            first = result["held_out_first_pass_vs_truth"]
            print(
                f"  {truth['items']} held-out messages vs truth: AUC {truth['auc']}; tag F1 "
                f"{truth['f1']} (precision {truth['precision']}, recall {truth['recall']}; "
                f"the best threshold's F1 {truth['best_f1']}; before second opinions: "
                f"AUC {first['auc']}, tag F1 {first['f1']})"
            )
    crowd: dict[str, float] = report["crowd"]
    print(
        f"crowd pool: {crowd.get('duplicate', 0):.0f} duplicates (straggler mitigation), "
        f"{crowd.get('termination', 0):.0f} terminations, {crowd.get('release', 0):.0f} "
        f"releases (pool maintenance), {crowd.get('recruit', 0):.0f} recruits; pay "
        f"{crowd.get('cost_waiting', 0):.2f} waiting + {crowd.get('cost_work', 0):.2f} work"
    )
    print(f"report: {out_dir / 'report.json'}; plots: {out_dir}/auc_vs_labels.png, latency.png")
