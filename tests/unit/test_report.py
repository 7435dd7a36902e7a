"""What a live run reads back, and the demo report's numbers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from channels.records import (
    SECOND_OPINION_REVISION,
    Answer,
    ClassifiedItem,
    Interval,
    Label,
    LinearModel,
    ModelMetrics,
    ModelUpdate,
    Provenance,
    SparseRow,
    TagPrediction,
    TaskKind,
)
from pipelines.demo import _print_summary, _Progress
from pipelines.liverun import LiveRun
from pipelines.report import (
    RunLog,
    crowd_summary,
    label_quality,
    percentiles,
    stream_quality,
    write_report,
)


def _item(
    i: int,
    tag: str | None,
    confidence: float | None,
    ts_out: float,
    classifier: str = "c",
    source: Provenance = "model",
) -> ClassifiedItem:
    prediction = TagPrediction(
        tag=tag,
        confidence=confidence,
        model_version=1 if tag else 0,
        source=source if tag else None,
    )
    return ClassifiedItem(
        id=f"i{i}", text="t", ts_in=0.0, ts_out=ts_out, labels={classifier: prediction}
    )


def test_percentiles() -> None:
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}
    result = percentiles([float(i) for i in range(1, 101)])
    assert result["p50"] == pytest.approx(50.5) and result["max"] == 100.0


def test_stream_quality_scores_only_items_a_model_classified() -> None:
    items = [
        _item(0, None, None, 1.0),
        _item(1, "yes", 0.9, 1.0),
        _item(2, "no", 0.8, 1.0),
        _item(3, "yes", 0.6, 1.0),
    ]
    truth = {f"i{i}": {"c": t} for i, t in enumerate(["yes", "yes", "no", "no"])}
    result = stream_quality(items, truth, "c", "yes")
    assert result["items"] == 3
    assert result["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["auc"] == 1.0  # P(yes): 0.9 > 0.6 > 0.2
    # The yes tag: i1 right, i3 wrong; no true yes missed.
    assert (result["precision"], result["recall"], result["f1"]) == (0.5, 1.0, 0.6667)
    # A threshold above 0.6 would have tagged i1 alone.
    assert result["best_f1"] == 1.0


def test_stream_quality_can_score_only_the_models_tags() -> None:
    items = [
        _item(1, "yes", 0.9, 1.0),
        _item(2, "no", 1.0, 1.0, source="propagated"),
        _item(3, "yes", 0.8, 1.0, source="crowd"),
    ]
    truth = {f"i{i}": {"c": "yes"} for i in (1, 2, 3)}
    assert stream_quality(items, truth, "c", "yes")["items"] == 3
    model = stream_quality(items, truth, "c", "yes", sources={"model"})
    assert model["items"] == 1 and model["accuracy"] == 1.0


def test_a_run_counts_revisions_apart_from_the_items_classified() -> None:
    run = RunLog(started=0.0)
    first = _item(1, "yes", 0.9, 2.0)
    revised = first.model_copy(update={"revision": 5, "ts_out": 9.0})
    for item in (first, revised, first):
        run.take("crisis.items.classified", b"i1", item.model_dump_json().encode())
    assert run.classified == {"i1": first} and run.revisions == 1 and run.window == [2.0]


def test_a_second_opinion_replaces_the_first_classification_it_revised() -> None:
    run = RunLog(started=0.0)
    first = _item(1, "no", 0.6, 2.0)
    second = _item(1, "yes", 0.7, 5.0).model_copy(update={"revision": SECOND_OPINION_REVISION})
    crowd = _item(1, "yes", 1.0, 9.0, source="crowd").model_copy(update={"revision": 10**15})
    other = _item(2, "no", 0.9, 3.0)
    for item in (first, other, second, second, crowd):  # a repeat, then a crowd label's
        run.take("crisis.items.classified", item.id.encode(), item.model_dump_json().encode())
    # The model's latest word on each item, its first beside it, each counted once.
    assert run.classified == {"i1": second, "i2": other} and run.first_pass == {"i1": first}
    assert run.second_opinions == 1 and run.revisions == 1 and run.window == [2.0, 3.0]
    live = LiveRun(run, {"i1": {}, "i2": {}})
    assert live.scored() == [second, other] and live.first_pass() == [first, other]


def test_a_run_keeps_only_the_items_it_scores_and_counts_what_it_cannot_read() -> None:
    run = RunLog(started=0.0, keep=b"held-")
    streamed = _item(1, "yes", 0.9, 2.0)
    held = streamed.model_copy(update={"id": "held-1"})
    run.take("crisis.items.classified", b"i1", streamed.model_dump_json().encode())
    run.take("crisis.items.classified", b"held-1", held.model_dump_json().encode())
    run.take("crisis.items.classified", b"held-2", b"{not json")
    run.take("crisis.items.rejected", b"x", b"{}")
    assert list(run.classified) == ["held-1"] and run.rejected == 2


def _label(
    kind: TaskKind, tag: str | None, answers: int, job: str | None = None, item: str = "i1"
) -> bytes:
    task = f"t-{kind}-{tag}-{job}-{item}"
    label = Label(
        task_id=task,
        item_id=item,
        classifier="request",
        tag=tag,
        agreement=1.0 if tag else 0.5,
        answers=[
            Answer(task_id=task, worker_id=f"w{i}", tag=tag or "yes", latency_s=1.0)
            for i in range(answers)
        ],
        ts=1.0,
        idx=[],
        val=[],
        kind=kind,
        job=job,
    )
    return label.model_dump_json().encode()


def test_a_run_counts_answers_labels_and_gold_answers_of_training_alone() -> None:
    run = RunLog(started=0.0)
    run.take("crisis.crowd.labels", b"i1", _label("passive", "yes", 3))
    run.take("crisis.crowd.labels", b"i1", _label("passive", None, 5))  # a disagreement
    run.take("crisis.crowd.labels", b"i1", _label("gold", "no", 1))
    run.take("crisis.crowd.labels", b"i1", _label("passive", "yes", 2, job="j1"))
    assert run.answers == {"request": 9} and run.gold_answers == {"request": 1}
    assert run.labels == {"request": 1} and run.last_label > 0


def test_the_crowds_labels_are_scored_against_the_truth_by_the_first_label_of_each_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = {f"i{n}": {"request": "yes" if n < 4 else "no"} for n in range(10)}
    run = RunLog(started=0.0)
    # Truly yes: i0-i3; the crowd says yes of i0 and i1 only. Truly no: i4-i9; it says
    # yes of i4. i2 is an item of a later lap, scored by its first lap's truth.
    said = {"i0": "yes", "i1": "yes", "i2~1": "no", "i3": "no", "i4": "yes", "i5": "no"}
    said |= {"i6": "no", "i7": "no", "i8": "no", "i9": "no"}
    for item, tag in said.items():
        run.take("crisis.crowd.labels", item.encode(), _label("passive", tag, 2, item=item))
    # Neither a later label of an item, nor a gold question, nor a job's label counts.
    run.take("crisis.crowd.labels", b"i3", _label("active", "yes", 2, item="i3"))
    run.take("crisis.crowd.labels", b"i5", _label("gold", "yes", 1, item="i5"))
    run.take("crisis.crowd.labels", b"i6", _label("passive", "yes", 2, job="j", item="i6"))
    run.take("crisis.crowd.labels", b"x", _label("passive", "yes", 2, item="unknown"))
    quality = label_quality(run.tags["request"], truth, "request", "yes")
    assert quality == {
        "labels": 10,
        "accuracy": 0.7,
        "positive_share": 0.3,
        "true_positive_share": 0.4,
        "positives_labelled_positive": 0.5,
        "negatives_labelled_positive": round(1 / 6, 4),
    }
    report = write_report(run, 1.0, truth, {"request": "yes"}, tmp_path)
    assert report["classifiers"]["request"]["crowd_labels_vs_truth"] == quality
    _print_summary({**report, "crowd": {}}, tmp_path)
    assert "crowd labels vs truth: 70.0% right; 50% of the truly positive" in (
        capsys.readouterr().out
    )
    assert label_quality({}, truth, "request", "yes") == {"labels": 0}


def test_the_demo_summary_shows_label_quality_when_no_labelled_item_is_truly_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = RunLog(started=0.0)
    run.take("crisis.crowd.labels", b"i1", _label("passive", "no", 2, item="i1"))
    report = write_report(run, 1.0, {"i1": {"request": "no"}}, {"request": "yes"}, tmp_path)
    assert (
        report["classifiers"]["request"]["crowd_labels_vs_truth"]["positives_labelled_positive"]
        is None
    )
    _print_summary({**report, "crowd": {}}, tmp_path)
    assert "crowd labels vs truth: 100.0% right; - of the truly positive" in (
        capsys.readouterr().out
    )


def test_report_files(tmp_path: Path) -> None:
    run = RunLog(started=0.0, pushed=2)
    run.classified = {"i1": _item(1, "yes", 0.9, 0.05), "i2": _item(2, "no", 0.7, 0.15)}
    report = write_report(run, 1.0, {"i1": {"c": "yes"}, "i2": {"c": "no"}}, {"c": "yes"}, tmp_path)
    saved = orjson.loads((tmp_path / "report.json").read_bytes())
    assert saved == report and saved["items_classified"] == 2
    assert saved["latency_s"]["max"] == pytest.approx(0.15)
    for plot in saved["plots"]:
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")


def test_the_report_scores_held_out_items_apart_by_the_models_tags_and_latency_without_them(
    tmp_path: Path,
) -> None:
    run = RunLog(started=0.0, pushed=4)
    run.classified = {
        "i1": _item(1, "yes", 0.9, 0.05),
        "i2": _item(2, "yes", 0.9, 0.05),
        "i3": _item(3, "yes", 0.8, 0.5),
        "i4": _item(4, "no", 1.0, 0.5, source="propagated"),
    }
    truth = {"i1": {"c": "no"}, "i2": {"c": "yes"}, "i3": {"c": "yes"}, "i4": {"c": "yes"}}
    report = write_report(
        run, 1.0, truth, {"c": "yes"}, tmp_path, held_out=["i3", "i4"], timings={"prefill": 2.04}
    )
    result = report["classifiers"]["c"]
    assert result["stream_vs_truth_all_models"]["items"] == 2
    assert result["stream_vs_truth_all_models"]["accuracy"] == 0.5
    held = result["held_out_items_vs_truth"]
    assert held["items"] == 1 and held["accuracy"] == 1.0  # i4's tag is not the model's
    assert report["timings_s"] == {"prefill": 2.0}
    # The stream's latency: the held-out items' burst is not the stream's.
    assert report["latency_s"]["max"] == pytest.approx(0.05)


def test_the_report_scores_second_opinions_beside_the_first_pass_and_times_the_first(
    tmp_path: Path,
) -> None:
    run = RunLog(started=0.0, pushed=3)
    firsts = [_item(1, "yes", 0.6, 0.05), _item(2, "yes", 0.9, 0.1), _item(3, "yes", 0.6, 0.2)]
    for item in firsts:
        run.take("crisis.items.classified", item.id.encode(), item.model_dump_json().encode())
    for i, ts_out in ((1, 3.0), (3, 4.0)):  # both decided again, seconds later, as no
        second = _item(i, "no", 0.7, ts_out).model_copy(
            update={"revision": SECOND_OPINION_REVISION}
        )
        run.take("crisis.items.classified", second.id.encode(), second.model_dump_json().encode())
    truth = {"i1": {"c": "no"}, "i2": {"c": "yes"}, "i3": {"c": "yes"}}
    report = write_report(run, 5.0, truth, {"c": "yes"}, tmp_path, held_out=["i3"])
    result = report["classifiers"]["c"]
    assert result["stream_vs_truth_all_models"]["accuracy"] == 1.0  # i1's second opinion
    assert result["held_out_items_vs_truth"]["accuracy"] == 0.0
    assert result["held_out_first_pass_vs_truth"]["accuracy"] == 1.0
    assert report["items_second_opinions"] == 2 and report["items_classified"] == 3
    # Latency and throughput are the first classifications'.
    assert report["latency_s"]["max"] == pytest.approx(0.1)
    assert report["throughput_items_per_s"] == pytest.approx(3 / 0.2)


def test_crowd_summary_reads_pool_events_and_costs_from_metrics() -> None:
    exposition = "\n".join(
        [
            "# HELP crowdstream_pool_events_total Retainer pool events",
            'crowdstream_pool_events_total{event="duplicate",pipeline="crisis"} 12.0',
            'crowdstream_pool_events_total{event="termination",pipeline="crisis"} 11.0',
            'crowdstream_pool_events_total{event="recruit",pipeline="other"} 3.0',
            'crowdstream_pool_events_total{event="recruit",pipeline="crisis"} 30.0',
            'crowdstream_crowd_cost{job="pool",kind="waiting",pipeline="crisis"} 1.25',
            'crowdstream_crowd_cost{job="aid_related",kind="work",pipeline="crisis"} 2.0',
            'crowdstream_crowd_cost{job="request",kind="work",pipeline="crisis"} 0.5',
            'crowdstream_items_in_total{pe="features",pipeline="crisis"} 99.0',
        ]
    )
    assert crowd_summary(exposition) == {
        "cost_waiting": 1.25,
        "cost_work": 2.5,
        "duplicate": 12.0,
        "recruit": 33.0,
        "termination": 11.0,
    }


def _model(version: int, auc: float, ci: Interval | None) -> ModelUpdate:
    return ModelUpdate(
        classifier="request",
        version=version,
        family="sklearn",
        created=0.5,
        n_train=40 * version,
        n_holdout=10 * version,
        metrics=ModelMetrics(auc=auc, accuracy=0.8, per_tag={}, auc_ci=ci),
        model=LinearModel(
            classes=["no", "yes"],
            link="sigmoid",
            n_features=8,
            intercept=[0.0],
            rows=[SparseRow(idx=[], val=[])],
        ),
    )


def test_the_demo_shows_each_held_out_auc_with_its_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = RunLog(started=0.0, pushed=1)
    run.classified = {"i1": _item(1, "yes", 0.9, 0.05, "request")}
    run.models = [
        _model(6, 0.70, None),  # published before intervals
        _model(7, 0.875, Interval(low=0.5762, high=0.969)),
    ]
    live = LiveRun(run, {}, step="crowd", status="request 40 answers")
    _Progress(("aid_related", "request"))(live)
    line = capsys.readouterr().out
    assert "crowd: request 40 answers" in line and "aid_related (no model)" in line
    assert "request v7 AUC 0.875 (95% CI 0.576-0.969)" in line
    report = write_report(run, 1.0, {"i1": {"request": "yes"}}, {"request": "yes"}, tmp_path)
    assert [(m["auc"], m["auc_low"], m["auc_high"]) for m in report["models"]] == [
        (0.70, None, None),
        (0.875, 0.5762, 0.969),
    ]
    held = report["classifiers"]["request"]["held_out"]
    assert held["auc_ci"] == {"low": 0.5762, "high": 0.969}
    assert (tmp_path / "auc_vs_labels.png").read_bytes().startswith(b"\x89PNG")
    _print_summary({**report, "crowd": {}}, tmp_path)
    assert "held-out AUC 0.875 (95% CI 0.576-0.969) on 70 labels" in capsys.readouterr().out
