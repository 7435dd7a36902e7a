"""Exports: a topic's records as rows, and the rows as JSON lines, CSV and Parquet,
a batch at a time (the formats agree row for row)."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from channels.records import Answer, ClassifiedItem, Label, TagPrediction
from pe.common.export import EXPORTS, Exporter


def _record(value: Any) -> Any:
    return SimpleNamespace(value=value.model_dump_json().encode())


def _label(item_id: str, **fields: Any) -> Label:
    answers = [
        Answer(task_id=f"t-{item_id}", worker_id=f"w{i}", tag=tag, latency_s=1.5)
        for i, tag in enumerate(["yes", "yes", "no"])
    ]
    values: dict[str, Any] = {
        "item_id": item_id,
        "classifier": "aid_related",
        "tag": "yes",
        "agreement": 2 / 3,
        "answers": answers,
        "idx": [1],
        "val": [1.0],
        "ts": 1000.0,
        "task_id": f"t-{item_id}",
        "text": 'a "quoted", comma text\nover two lines',
    }
    return Label(**(values | fields))


def test_records_become_rows_one_per_answer_and_per_classifier() -> None:
    label = _label("i1")
    correction = label.model_copy(update={"tag": "no", "corrected_by": "operator"})
    assert [r["tag"] for r in EXPORTS["labels"].rows(_record(correction))] == ["no"]
    answers = list(EXPORTS["answers"].rows(_record(label)))
    assert [(r["worker_id"], r["tag"]) for r in answers] == [
        ("w0", "yes"),
        ("w1", "yes"),
        ("w2", "no"),
    ]
    assert list(EXPORTS["answers"].rows(_record(correction))) == []  # answers once
    item = ClassifiedItem(
        id="i1",
        text="t",
        ts_in=1.0,
        ts_out=2.0,
        labels={
            "aid_related": TagPrediction(
                tag="yes", confidence=0.9, model_version=3, source="model"
            ),
            "request": TagPrediction(tag=None, confidence=None, model_version=0),
        },
    )
    rows = list(EXPORTS["classified"].rows(_record(item)))
    assert [(r["classifier"], r["tag"], r["tag_source"]) for r in rows] == [
        ("aid_related", "yes", "model"),
        ("request", None, None),
    ]


@pytest.mark.parametrize("what", sorted(EXPORTS))
def test_the_three_formats_hold_the_same_rows(what: str) -> None:
    export = EXPORTS[what]
    rows = [
        {
            name: _value(name, kind, i)
            for name, kind in zip(export.schema.names, export.schema.types, strict=True)
        }
        for i in range(7)
    ]
    rows[3] = {name: None for name in export.schema.names}  # every column may be empty

    def write(fmt: Any) -> bytes:
        exporter = Exporter(export, fmt)
        return (
            exporter.header() + exporter.batch(rows[:4]) + exporter.batch(rows[4:]) + exporter.end()
        )

    lines = [orjson.loads(line) for line in write("jsonl").splitlines()]
    assert lines == rows
    table = pq.read_table(io.BytesIO(write("parquet")))
    assert table.num_rows == 7 and table.to_pylist() == rows
    read = list(csv.DictReader(io.StringIO(write("csv").decode())))
    assert [list(r) for r in read] == [export.schema.names] * 7
    assert [r[export.schema.names[0]] for r in read] == [
        "" if row[export.schema.names[0]] is None else str(row[export.schema.names[0]])
        for row in rows
    ]


def test_an_export_without_rows_is_still_a_valid_file() -> None:
    exporter = Exporter(EXPORTS["labels"], "parquet")
    table = pq.read_table(io.BytesIO(exporter.header() + exporter.end()))
    assert table.num_rows == 0 and table.schema.names == EXPORTS["labels"].schema.names


def _value(name: str, kind: Any, i: int) -> Any:
    if str(kind) == "string":
        return f'{name} {i}, "quoted"\nline'
    if str(kind) == "int64":
        return i
    return i + 0.5
