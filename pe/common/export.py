"""Export: labels, answers, models and classified items for a time range, as JSON
lines, CSV or Parquet, streamed from their topics.

``GET /api/v1/export/{what}`` reads the topic from the first record written at
``since`` (epoch seconds) up to ``until`` or the end it had when the export began,
and writes each batch of rows to the response as it is read: nothing holds the
whole export, and a long one is a long chunked response, never a timeout. Every
worker serves it (an operator API).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import BaseModel, Field, ValidationError

from channels.records import ClassifiedItem, Label, ModelHeader
from pe.common.api import Call, Endpoint
from pe.common.http import OperatorAccess
from runtime.cluster import Security
from runtime.context import PipelineContext
from runtime.ranges import read_range

__all__ = ["EXPORTS", "ExportApi", "Exporter", "serve_export"]

Row = dict[str, Any]
Format = Literal["jsonl", "csv", "parquet"]
#: Rows a Parquet row group (and a read from the topic) holds at most.
BATCH = 5000


def _labels(record: ConsumerRecord) -> Iterable[Row]:
    label = Label.model_validate_json(record.value)
    yield {
        "item_id": label.item_id,
        "classifier": label.classifier,
        "tag": label.tag,
        "agreement": label.agreement,
        "posterior": label.posterior,
        "kind": label.kind,
        "status": label.status,
        "job": label.job,
        "task_id": label.task_id,
        "answers": len(label.answers),
        "cost": label.cost,
        "corrected_by": label.corrected_by,
        "ts": label.ts,
        "text": label.text,
    }


def _answers(record: ConsumerRecord) -> Iterable[Row]:
    label = Label.model_validate_json(record.value)
    if label.corrected_by is not None:
        return  # a correction repeats the answers of the label it corrects
    for answer in label.answers:
        yield {
            "item_id": label.item_id,
            "classifier": label.classifier,
            "task_id": answer.task_id,
            "worker_id": answer.worker_id,
            "tag": answer.tag,
            "count": answer.count,
            "latency_s": answer.latency_s,
            "kind": label.kind,
            "job": label.job,
            "label_ts": label.ts,
        }


def _models(record: ConsumerRecord) -> Iterable[Row]:
    model = ModelHeader.model_validate_json(record.value)
    ci = model.metrics.auc_ci
    yield {
        "classifier": model.classifier,
        "version": model.version,
        "family": model.family,
        "created": model.created,
        "n_train": model.n_train,
        "n_holdout": model.n_holdout,
        "auc": model.metrics.auc,
        "auc_low": ci.low if ci else None,
        "auc_high": ci.high if ci else None,
        "accuracy": model.metrics.accuracy,
    }


def _classified(record: ConsumerRecord) -> Iterable[Row]:
    item = ClassifiedItem.model_validate_json(record.value)
    for name, prediction in item.labels.items():
        yield {
            "id": item.id,
            "revision": item.revision,
            "classifier": name,
            "tag": prediction.tag,
            "confidence": prediction.confidence,
            "model_version": prediction.model_version,
            "tag_source": prediction.source,
            "from_item": prediction.from_item,
            "ts_in": item.ts_in,
            "ts_out": item.ts_out,
            "source": item.source,
            "text": item.text,
        }


@dataclass(frozen=True)
class Export:
    """What one export reads, how a record becomes rows, and their columns."""

    channel: str
    rows: Callable[[ConsumerRecord], Iterable[Row]]
    schema: pa.Schema


_TYPES = {"s": pa.string(), "f": pa.float64(), "i": pa.int64()}


def _schema(columns: str) -> pa.Schema:
    """A schema from ``"name:type ..."``, types s(tring), f(loat) and i(nteger)."""
    pairs = (column.split(":") for column in columns.split())
    return pa.schema([(name, _TYPES[kind]) for name, kind in pairs])


EXPORTS: dict[str, Export] = {
    "labels": Export(
        "crowd.labels",
        _labels,
        _schema(
            "item_id:s classifier:s tag:s agreement:f posterior:f kind:s status:s job:s "
            "task_id:s answers:i cost:f corrected_by:s ts:f text:s"
        ),
    ),
    "answers": Export(
        "crowd.labels",
        _answers,
        _schema(
            "item_id:s classifier:s task_id:s worker_id:s tag:s count:i latency_s:f kind:s "
            "job:s label_ts:f"
        ),
    ),
    "models": Export(
        # Every model published; control.models, compacted, keeps only the newest.
        "models.history",
        _models,
        _schema(
            "classifier:s version:i family:s created:f n_train:i n_holdout:i auc:f auc_low:f "
            "auc_high:f accuracy:f"
        ),
    ),
    "classified": Export(
        "items.classified",
        _classified,
        _schema(
            "id:s revision:i classifier:s tag:s confidence:f model_version:i tag_source:s "
            "from_item:s ts_in:f ts_out:f source:s text:s"
        ),
    ),
}


class _Sink(io.RawIOBase):
    """Where the Parquet writer puts its bytes, taken out after each row group."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


class Exporter:
    """Rows in one format, a batch at a time."""

    def __init__(self, export: Export, fmt: Format) -> None:
        self.export, self.fmt = export, fmt
        self.columns: list[str] = export.schema.names
        self._sink = _Sink()
        self._parquet: pq.ParquetWriter | None = None
        self.rows = 0

    def header(self) -> bytes:
        if self.fmt != "csv":
            return b""
        return self._csv([dict(zip(self.columns, self.columns, strict=True))])

    def batch(self, rows: Sequence[Row]) -> bytes:
        self.rows += len(rows)
        if self.fmt == "jsonl":
            return b"".join(orjson.dumps(row) + b"\n" for row in rows)
        if self.fmt == "csv":
            return self._csv(rows)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._sink, self.export.schema)
        table = pa.Table.from_pylist(list(rows), schema=self.export.schema)
        self._parquet.write_table(table, row_group_size=BATCH)
        return self._sink.take()

    def end(self) -> bytes:
        if self.fmt != "parquet":
            return b""
        if self._parquet is None:  # no rows: still a valid, empty file
            self._parquet = pq.ParquetWriter(self._sink, self.export.schema)
        self._parquet.close()
        return self._sink.take()

    def _csv(self, rows: Iterable[Row]) -> bytes:
        text = io.StringIO()
        csv.DictWriter(text, self.columns, lineterminator="\n").writerows(rows)
        return text.getvalue().encode()


_MEDIA = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


class ExportQuery(BaseModel):
    format: Format = "jsonl"
    since: float = Field(0.0, ge=0, description="From records written at (epoch s).")
    until: float | None = Field(None, ge=0, description="To (epoch s); default: now.")
    classifier: str | None = Field(None, description="Only this classifier's rows.")


class ExportApi:
    def __init__(
        self,
        topics: dict[str, str],
        bootstrap: list[str],
        security: Security,
        *,
        operator: OperatorAccess,
    ) -> None:
        """``topics``: the Kafka topic of each channel."""
        self._topics = topics
        self._bootstrap = bootstrap
        self._security = security
        self._operator = operator

    def endpoints(self) -> list[Endpoint]:
        route = partial(Endpoint, access=self._operator, tag="export")
        return [
            route(
                "GET",
                f"/api/v1/export/{what}",
                f"export_{what}",
                f"The {what} of a time range, streamed as JSON lines, CSV or Parquet.",
                run=partial(self.run, what=what),
                query=ExportQuery,
            )
            for what in EXPORTS
        ]

    async def run(self, call: Call, what: str) -> web.StreamResponse:
        query: ExportQuery = call.query
        export = EXPORTS[what]
        exporter = Exporter(export, query.format)
        until = query.until if query.until is not None else time.time()
        response = web.StreamResponse(
            headers={
                "Content-Type": _MEDIA[query.format],
                "Content-Disposition": f'attachment; filename="{what}.{query.format}"',
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(call.request)
        await response.write(exporter.header())
        reading = read_range(
            self._bootstrap,
            self._topics[export.channel],
            int(query.since * 1000),
            int(until * 1000),
            self._security,
            max_records=BATCH,
        )

        def convert(records: list[ConsumerRecord]) -> bytes:
            rows: list[Row] = []
            for record in records:
                try:
                    rows.extend(
                        row
                        for row in export.rows(record)
                        if query.classifier is None or row["classifier"] == query.classifier
                    )
                except ValidationError:
                    continue  # dead-lettered by the PE that reads it
            return exporter.batch(rows) if rows else b""

        async for records in reading:
            # A batch takes 0.1-0.3 s to decode and encode: in a thread, the worker's
            # event loop (the data plane, every API) gets its turns meanwhile.
            data = await asyncio.to_thread(convert, records)
            if data:
                await response.write(data)
        await response.write(exporter.end())
        await response.write_eof()
        return response


def serve_export(ctx: PipelineContext) -> None:
    """Add the export API to this worker's HTTP server."""
    api = ExportApi(
        {key: spec.name for key, spec in ctx.topics.items()},
        ctx.bootstrap_servers,
        ctx.security,
        operator=OperatorAccess.from_settings(ctx.settings),
    )
    ctx.endpoints.extend(api.endpoints())
