"""The features agent: validate raw items, assign ids and timestamps, hash features."""

from __future__ import annotations

import time
from typing import Any

from faust import StreamT

from channels.codec import DecodeError, encode, parse_input
from channels.records import FeatureItem, Item
from pe.common.context import PipelineContext
from pe.features.hashing import FeatureHasher, sparse_rows
from pe.features.simhash import simhash_rows
from pe.features.text import grams, tokens

__all__ = ["register"]

PE = "features"


def register(ctx: PipelineContext) -> None:
    params = ctx.params.features
    hasher = FeatureHasher(params.n_features)
    metrics = ctx.metrics
    labels = (ctx.pipeline, PE)

    async def features(stream: StreamT[Any]) -> None:
        # take_events is defined on Stream, not on the StreamT interface.
        batches = stream.take_events(  # type: ignore[attr-defined]
            params.batch_size, within=params.batch_within_s
        )
        async for events in batches:
            started = time.perf_counter()
            pending = []
            valid: list[Item] = []
            for event in events:
                raw = event.value
                try:
                    given = parse_input(raw)
                except DecodeError as exc:
                    pending.append(await ctx.reject(PE, exc.kind, str(exc), raw))
                    continue
                # The Kafka timestamp is when the producer sent the record: arrival.
                stamp = event.message.timestamp
                arrival = stamp if stamp and stamp > 0 else time.time()
                valid.append(Item.from_input(given, arrival))
            matrix = hasher.matrix([grams(tokens(item.text)) for item in valid])
            rows = sparse_rows(matrix)
            for item, (idx, val), sig in zip(valid, rows, simhash_rows(matrix), strict=True):
                record = FeatureItem(**item.model_dump(), idx=idx, val=val, sig=sig)
                pending.append(await ctx.send("items.features", record.id, encode(record)))
            await ctx.flush(pending)
            metrics.items_in.labels(*labels).inc(len(events))
            metrics.items_out.labels(*labels).inc(len(valid))
            metrics.batch_seconds.labels(*labels).observe(time.perf_counter() - started)

    ctx.app.agent(ctx.topic("items.raw"), name=f"{ctx.pipeline}.features")(features)
