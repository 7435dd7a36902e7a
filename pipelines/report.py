"""What a live run read from the pipeline's output topics, and the demo's report:
summary numbers, JSON and PNG plots."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_auc_score

from channels.codec import DecodeError, decode
from channels.records import SECOND_OPINION_REVISION, ClassifiedItem, Label, ModelUpdate
from pipelines.client import first_lap

__all__ = [
    "RunLog",
    "crowd_summary",
    "label_quality",
    "percentiles",
    "stream_quality",
    "write_report",
]


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of ``values`` (None when empty), rounded to 0.1 ms."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "max": round(float(arr.max()), 4),
    }


def ms_summary(values: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95, p99 and max of ``values`` (milliseconds), rounded to 0.1 ms."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99, top = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99, 100])
    return {
        "n": len(values),
        "p50": round(float(p50), 1),
        "p95": round(float(p95), 1),
        "p99": round(float(p99), 1),
        "max": round(float(top), 1),
    }


@dataclass
class RunLog:
    """What a live run (the demo, the live learning bench) read from the pipeline's
    output topics (:meth:`take`)."""

    started: float
    #: Each item's classification by the model, of the items whose record key starts
    #: with ``keep``: its first (revision 0), replaced by its second opinion (revision
    #: 1) if one comes. The bench scores only its held-out items, and decoding the
    #: 170,000 of a pre-fill would cost the pipeline CPU it needs.
    classified: dict[str, ClassifiedItem] = field(default_factory=dict)
    #: The first classification of each item a second opinion replaced in ``classified``.
    first_pass: dict[str, ClassifiedItem] = field(default_factory=dict)
    keep: bytes = b""
    revisions: int = 0  #: records that revised an item after a crowd label
    second_opinions: int = 0  #: items given a second opinion (revision 1)
    models: list[ModelUpdate] = field(default_factory=list)
    #: Per classifier: training labels bought (not gold questions, not disagreements),
    #: answers paid for (gold questions' too) and gold questions' answers.
    labels: dict[str, int] = field(default_factory=dict)
    #: Per classifier: each labelled item's tag, the first label of it (the one the
    #: learner trains on), to score the crowd's labels against the truth.
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    gold_answers: dict[str, int] = field(default_factory=dict)
    last_label: float = 0.0  #: time.monotonic() of the last outcome read
    #: Latencies of the items classified since a progress line took them.
    window: list[float] = field(default_factory=list)
    pushed: int = 0
    rejected: int = 0
    crowd: dict[str, float] = field(default_factory=dict)  #: see crowd_summary

    def take(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Count one record of ``items.classified``, ``control.models``,
        ``crowd.labels`` or ``items.rejected``; an undecodable one is rejected."""
        try:
            if topic.endswith("items.classified"):
                if (key or b"").startswith(self.keep):
                    self._classified(decode(ClassifiedItem, value))
            elif topic.endswith("control.models"):
                self.models.append(decode(ModelUpdate, value))
            elif topic.endswith("crowd.labels"):
                self._outcome(decode(Label, value))
            else:
                self.rejected += 1
        except DecodeError:
            self.rejected += 1

    def _classified(self, item: ClassifiedItem) -> None:
        if item.revision == SECOND_OPINION_REVISION:
            first = self.classified.get(item.id)
            if first is None or first.revision != SECOND_OPINION_REVISION:  # not a repeat
                self.second_opinions += 1
                self.classified[item.id] = item
                if first is not None:
                    self.first_pass[item.id] = first
        elif item.revision:  # a crowd label's revision of an item already out
            self.revisions += 1
        elif item.id not in self.classified:  # the sink deduplicates by id
            self.classified[item.id] = item
            self.window.append(item.ts_out - item.ts_in)

    def _outcome(self, label: Label) -> None:
        if label.job is not None:  # a labeling or counting job's, not training's
            return
        name = label.classifier
        self.answers[name] = self.answers.get(name, 0) + len(label.answers)
        if label.kind == "gold":
            self.gold_answers[name] = self.gold_answers.get(name, 0) + len(label.answers)
        elif label.tag is not None:
            self.labels[name] = self.labels.get(name, 0) + 1
            self.tags.setdefault(name, {}).setdefault(label.item_id, label.tag)
        self.last_label = time.monotonic()

    def model(self, classifier: str) -> ModelUpdate | None:
        """The latest model of ``classifier`` read, if any."""
        return next((m for m in reversed(self.models) if m.classifier == classifier), None)


def crowd_summary(exposition: str) -> dict[str, float]:
    """The retainer pool's totals from a worker's Prometheus exposition: pool events
    (duplicates, terminations, releases, recruits, ...) and cost by kind."""
    keys = {
        "crowdstream_pool_events_total": ("event", ""),
        "crowdstream_crowd_cost": ("kind", "cost_"),
    }
    summary: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in keys:
                label, prefix = keys[sample.name]
                key = prefix + sample.labels.get(label, "")
                summary[key] = summary.get(key, 0.0) + sample.value
    return {k: round(v, 4) for k, v in sorted(summary.items())}


#: Scores of the positive tag alone.
_TAG_SCORES = ("precision", "recall", "f1", "best_f1")


def stream_quality(
    items: Sequence[ClassifiedItem],
    truth: dict[str, dict[str, str]],
    classifier: str,
    positive: str,
    sources: Collection[str] | None = None,
) -> dict[str, Any]:
    """Accuracy and AUC of the stream's output against ground truth, and precision,
    recall and F1 of its ``positive`` tag, over the items tagged (items classified
    before a first model or label have no tag); with ``sources``, over the items
    whose tag came from one of them (``{"model"}``: the model's predictions).
    ``best_f1`` is the F1 of the best threshold on the same scores, chosen on the
    truth: the most any decision rule could reach, against which ``f1`` is judged."""
    scored = [
        (item.labels[classifier], truth[item.id][classifier])
        for item in items
        if item.id in truth
        and classifier in truth[item.id]
        and item.labels[classifier].tag
        and (sources is None or item.labels[classifier].source in sources)
    ]
    if not scored:
        return {"items": 0, "accuracy": None, "auc": None} | dict.fromkeys(_TAG_SCORES)
    correct = sum(pred.tag == actual for pred, actual in scored)
    tagged = [pred.tag == positive for pred, _ in scored]
    # Probability of the positive tag, from the winning tag and its confidence.
    score = [
        (p.confidence or 0.0) if p.tag == positive else 1.0 - (p.confidence or 0.0)
        for p, _ in scored
    ]
    actual = [a == positive for _, a in scored]
    auc = roc_auc_score(actual, score) if 0 < sum(actual) < len(actual) else None
    precision, recall, f1, _ = precision_recall_fscore_support(
        actual, tagged, average="binary", zero_division=0.0
    )
    best_f1 = 0.0
    if any(actual):
        at_p, at_r, _ = precision_recall_curve(actual, score)
        best_f1 = float(np.max(2 * at_p * at_r / np.maximum(at_p + at_r, 1e-12)))
    return {
        "items": len(scored),
        "accuracy": round(correct / len(scored), 4),
        "auc": round(float(auc), 4) if auc is not None else None,
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "f1": round(float(f1), 4),
        "best_f1": round(best_f1, 4),
    }


def label_quality(
    tags: dict[str, str], truth: dict[str, dict[str, str]], classifier: str, positive: str
) -> dict[str, Any]:
    """The crowd's labels (item id -> tag) against the truth, over the items whose
    truth is known (an item of a later lap of :func:`~pipelines.client.laps` by its
    first lap's): their accuracy, the share labelled ``positive`` and the true share,
    and the share of the truly positive and of the truly negative labelled positive.
    A tag the quality loop settles on a lone answer that agrees with the class prior
    shows here as a recall of the positive tag well under the accuracy."""
    pairs = [
        (tag == positive, known[classifier] == positive)
        for item_id, tag in tags.items()
        if (known := truth.get(item_id) or truth.get(first_lap(item_id))) is not None
        and classifier in known
    ]
    if not pairs:
        return {"labels": 0}
    said, actual = np.array(pairs).T
    return {
        "labels": len(pairs),
        "accuracy": round(float(np.mean(said == actual)), 4),
        "positive_share": round(float(said.mean()), 4),
        "true_positive_share": round(float(actual.mean()), 4),
        "positives_labelled_positive": round(float(said[actual].mean()), 4)
        if actual.any()
        else None,
        "negatives_labelled_positive": round(float(said[~actual].mean()), 4)
        if not actual.all()
        else None,
    }


def _out(item: ClassifiedItem) -> float:
    return item.ts_out


def write_report(
    run: RunLog,
    finished: float,
    truth: dict[str, dict[str, str]],
    positives: dict[str, str],
    out_dir: Path,
    *,
    held_out: Collection[str] = (),
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write report.json and the plots to ``out_dir``; return the report.
    ``held_out``: the ids of the items held out of the stream (scored apart, by the
    model's predictions alone); ``timings``: seconds the run's steps took."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Latency and throughput are the first classifications': a second opinion comes
    # seconds later, by design.
    firsts = sorted((run.first_pass.get(i.id, i) for i in run.classified.values()), key=_out)
    items = sorted(run.classified.values(), key=_out)
    held = set(held_out)
    streamed = [item for item in items if item.id not in held]
    scored = [item for item in items if item.id in held]
    # The stream's latency: the held-out items come at once, in a burst of their own.
    latencies = [max(i.ts_out - i.ts_in, 0.0) for i in firsts if i.id not in held]
    duration = finished - run.started
    span = (firsts[-1].ts_out - firsts[0].ts_in) if firsts else 0.0
    final: dict[str, Any] = {}
    for name, positive in positives.items():
        last = run.model(name)
        final[name] = {
            "model_version": last.version if last else None,
            "labels_trained": last.n_train if last else 0,
            "labels_held_out": last.n_holdout if last else 0,
            "held_out": last.metrics.model_dump() if last else None,
            "stream_vs_truth_all_models": stream_quality(streamed, truth, name, positive),
            "held_out_items_vs_truth": stream_quality(
                scored, truth, name, positive, sources={"model"}
            ),
            # The same items' first classifications, before any second opinion.
            "held_out_first_pass_vs_truth": stream_quality(
                [run.first_pass.get(item.id, item) for item in scored],
                truth,
                name,
                positive,
                sources={"model"},
            ),
            "crowd_answers": run.answers.get(name, 0),
            "crowd_labels": run.labels.get(name, 0),
            "crowd_labels_vs_truth": label_quality(run.tags.get(name, {}), truth, name, positive),
        }
    report = {
        "duration_s": round(duration, 1),
        "timings_s": {key: round(value, 1) for key, value in (timings or {}).items()},
        "items_pushed": run.pushed,
        "items_classified": len(items),
        "items_revised": run.revisions,
        "items_second_opinions": run.second_opinions,
        "items_rejected": run.rejected,
        "throughput_items_per_s": round(len(items) / span, 1) if span > 0 else None,
        "latency_s": percentiles(latencies),
        "classifiers": final,
        "crowd": run.crowd,
        "models": [
            {
                "classifier": m.classifier,
                "version": m.version,
                "family": m.family,
                "labels": m.n_train + m.n_holdout,
                "n_train": m.n_train,
                "auc": m.metrics.auc,
                "auc_low": m.metrics.auc_ci.low if m.metrics.auc_ci else None,
                "auc_high": m.metrics.auc_ci.high if m.metrics.auc_ci else None,
                "at_s": round(m.created - run.started, 1),
            }
            for m in run.models
        ],
        "plots": ["auc_vs_labels.png", "latency.png"],
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _plot_auc(run.models, out_dir / "auc_vs_labels.png")
    _plot_latency(streamed, run.started, out_dir / "latency.png")
    return report


def _plot_auc(models: Sequence[ModelUpdate], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in sorted({m.classifier for m in models}):
        points: list[tuple[int, float]] = []
        band: list[tuple[int, float, float]] = []  # the 95% interval, where models have one
        for m in models:
            if m.classifier == name and m.metrics.auc is not None:
                points.append((m.n_train + m.n_holdout, m.metrics.auc))
                if m.metrics.auc_ci is not None:
                    band.append((points[-1][0], m.metrics.auc_ci.low, m.metrics.auc_ci.high))
        if points:
            (line,) = ax.plot(*zip(*points, strict=True), marker="o", label=name)
        if band:
            labels, low, high = zip(*band, strict=True)
            ax.fill_between(labels, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("crowd labels (train + held out)")
    ax.set_ylabel("held-out AUC (band: 95% interval)")
    ax.set_ylim(0.3, 1.0)
    ax.grid(alpha=0.3)
    ax.set_title("Model quality vs. crowd labels")
    if models:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_latency(items: Sequence[ClassifiedItem], started: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    if items:
        t = np.array([i.ts_out - started for i in items])
        lat = np.array([max(i.ts_out - i.ts_in, 0.0) * 1000 for i in items])
        ax.scatter(t, lat, s=2, alpha=0.3, label="item")
        # p50 and p99 per second of the run.
        seconds = np.floor(t).astype(int)
        edges = np.unique(seconds)
        p50 = [np.percentile(lat[seconds == s], 50) for s in edges]
        p99 = [np.percentile(lat[seconds == s], 99) for s in edges]
        ax.plot(edges + 0.5, p50, color="tab:green", label="p50 per second")
        ax.plot(edges + 0.5, p99, color="tab:red", label="p99 per second")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.grid(alpha=0.3)
    ax.set_title("End-to-end latency over time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
