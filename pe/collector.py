"""Collector PE: edge adaptation of outside streams.

Input: HTTP ``POST /items`` (one JSON object, or JSON lines); an existing Kafka
topic named by ``params.collector.source_topic``, read in batches by the data
plane. (``crowdstream push`` writes to ``items.raw`` directly; the features PE
validates those records.)
Output: ``items.raw`` (validated InputItem with id and ``ts`` assigned);
``items.rejected`` (every record that fails validation, with its reason).
State: none.
Guarantee: an HTTP request is answered after its records are delivered; the Kafka
source is read at least once.
Metrics: items in/out/rejected (pe="collector").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import BaseModel, Field

from channels.codec import DecodeError, encode, iter_json_lines, parse_input
from channels.records import InputItem, Item
from pe.common.api import Body, Call, Endpoint
from pe.common.http import HttpError
from pe.params import CollectorParams
from pe.registry import PeSpec, register_pe
from runtime.context import PipelineContext
from runtime.dataflow import Pending

__all__ = ["SPEC", "Collector", "IngestResult", "register"]

PE = "collector"
#: How many per-record errors an HTTP answer lists (all are in items.rejected).
MAX_ERRORS_SHOWN = 20


class Accepted(BaseModel):
    accepted: int = Field(description="Records taken onto items.raw.")
    ids: list[str] = Field(description="Their ids, in the order sent.")
    rejected: int = Field(description="Records refused (each kept on items.rejected).")
    errors: list[dict[str, Any]] = Field(
        description=f"The first {MAX_ERRORS_SHOWN} refusals: record (from 1) and error."
    )


def register(ctx: PipelineContext) -> None:
    collector = Collector(ctx)
    ctx.endpoints.append(collector.endpoint())
    source = ctx.params_of(CollectorParams).source_topic
    if source is None:
        return

    async def decode(records: Sequence[ConsumerRecord]) -> tuple[list[bytes | None], Pending]:
        return [record.value for record in records], []

    async def collect(values: list[bytes | None]) -> Pending:
        return (await collector.ingest(values)).pending

    ctx.read_topic(source, PE, decode, collect)


SPEC = register_pe(
    PeSpec(
        name=PE,
        package=__name__,
        summary="outside streams in, validated, onto items.raw",
        inputs=("http:/items", "kafka:<source_topic>"),
        outputs=("items.raw", "items.rejected"),
        agents=f"{__name__}:register",
        params=CollectorParams,
    )
)


@dataclass
class IngestResult:
    ids: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    #: Futures of the records sent (items.raw and items.rejected).
    pending: Pending = field(default_factory=list)


class Collector:
    def __init__(self, ctx: PipelineContext) -> None:
        self._ctx = ctx
        self._labels = (ctx.pipeline, PE)

    async def ingest(self, records: Sequence[bytes | None]) -> IngestResult:
        """Validate records, queue the good ones on items.raw and the bad ones on items.rejected."""
        result = IngestResult()
        good: list[tuple[bytes | None, bytes]] = []
        arrival = time.time()
        for number, raw in enumerate(records, start=1):
            try:
                given = parse_input(raw)
            except DecodeError as exc:
                result.rejected += 1
                if len(result.errors) < MAX_ERRORS_SHOWN:
                    result.errors.append({"record": number, "error": str(exc)})
                result.pending.append(await self._ctx.reject(PE, exc.kind, str(exc), raw))
                continue
            item = Item.from_input(given, arrival)
            out = InputItem(
                id=item.id, text=item.text, ts=item.ts, source=item.source, meta=item.meta
            )
            good.append((item.id.encode(), encode(out)))
            result.ids.append(item.id)
        result.pending.extend(await self._ctx.publish("items.raw", good))
        self._ctx.metrics.items_in.labels(*self._labels).inc(len(records))
        self._ctx.metrics.items_out.labels(*self._labels).inc(len(result.ids))
        return result

    async def post(self, call: Call) -> Accepted:
        """``POST /items``: 202 with the new ids, or 4xx with a message."""
        records = list(iter_json_lines(call.body))
        if not records:
            raise HttpError(400, "empty body: send one JSON object or JSON lines")
        result = await self.ingest(records)
        await self._ctx.flush(result.pending)
        answer = Accepted(
            accepted=len(result.ids), ids=result.ids, rejected=result.rejected, errors=result.errors
        )
        if not result.ids:
            message = "no valid record: " + result.errors[0]["error"]
            raise HttpError(400, message, **answer.model_dump())
        return answer

    def endpoint(self) -> Endpoint:
        return Endpoint(
            "POST",
            "/items",
            "push_items",
            "Push items: one JSON object, or JSON lines. Each record is accepted, or "
            "rejected with its reason (and kept on items.rejected).",
            self.post,
            body=Body(
                None,
                self._ctx.params_of(CollectorParams).max_body_bytes,
                ("application/json", "application/x-ndjson"),
            ),
            response=Accepted,
            status=202,
            tag="items",
        )
