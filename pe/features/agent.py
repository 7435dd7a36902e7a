"""The features stage: validate raw items, assign ids and timestamps, hash features."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from channels.codec import DecodeError, parse_input
from channels.records import Item
from pe.common.featurebatch import FeatureBatch
from pe.common.hashing import SparseRows
from pe.common.simhash import simhash_rows
from pe.common.space import FeatureSpace
from pe.common.text import normalize
from pe.params import FeaturesParams
from runtime.context import PipelineContext
from runtime.dataflow import Pending

__all__ = ["register"]

PE = "features"


def register(ctx: PipelineContext) -> None:
    params = ctx.params_of(FeaturesParams)
    space = FeatureSpace(params)
    metrics = ctx.metrics
    labels = (ctx.pipeline, PE)

    async def decode(records: Sequence[ConsumerRecord]) -> tuple[list[Item], Pending]:
        metrics.items_in.labels(*labels).inc(len(records))
        pending: Pending = []
        items: list[Item] = []
        for record in records:
            try:
                given = parse_input(record.value)
            except DecodeError as exc:
                pending.append(await ctx.reject(PE, exc.kind, str(exc), record.value))
                continue
            # The Kafka timestamp is when the producer sent the record: arrival.
            stamp = record.timestamp / 1000 if record.timestamp and record.timestamp > 0 else 0
            items.append(Item.from_input(given, stamp or time.time()))
        return items, pending

    async def features(items: list[Item]) -> Pending:
        started = time.perf_counter()
        # Off the event loop: a sentence transformer takes seconds over a batch, and
        # the consumer's heartbeats must go on meanwhile.
        matrix, words = await asyncio.to_thread(space.matrices, [item.text for item in items])
        batch = FeatureBatch(
            items=items, rows=SparseRows(matrix), sigs=simhash_rows(words), matrix=matrix
        )
        pending = await ctx.publish("items.features", batch.encoded())
        pending.extend(await ctx.deliver("items.features", batch))
        metrics.items_out.labels(*labels).inc(len(items))
        metrics.batch_seconds.labels(*labels).observe(time.perf_counter() - started)
        return pending

    ctx.consume("items.raw", PE, decode, features, params.batch_size, shed_key=normalize)
