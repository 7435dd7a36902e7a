"""Classifier PE.

Input: ``items.features`` (FeatureItem), in batches: straight from the features PE
when it runs in this process (fused), else read from Kafka by the data plane;
``control.models`` (ModelUpdate), followed whole by every instance so each has the
latest model of every classifier.
Output: ``items.classified`` (ClassifiedItem: tag, confidence and model version per
classifier; tag null before a first model, so items never wait for humans);
``items.rejected``.
State: the active models (rebuilt from the compacted ``control.models`` on start;
the stage waits until it has read them before classifying).
Guarantee: at least once; a batch is classified by one model per classifier, and a
new model is swapped in between batches, so no item is dropped by a swap.
Load shedding: as the features PE, on the age of its input (see channels.shedding).
Metrics: items in/out/rejected/shed (pe="classifier"), batch time, end-to-end
latency, model version and AUC per classifier.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from aiokafka import ConsumerRecord

from pe.common.context import PipelineContext
from pe.common.dataflow import Pending
from pe.common.featurebatch import FeatureBatch, decode_feature_batch
from pe.common.modelbook import ModelBook, model_book
from pe.common.stagebooks import StageShedder
from pe.features.text import normalize

__all__ = ["classify", "register"]

PE = "classifier"


def classify(
    batch: FeatureBatch, book: ModelBook, classifiers: list[str], now: float
) -> list[dict[str, Any]]:
    """ClassifiedItem records of a batch, with the models active now."""
    columns: dict[str, list[dict[str, Any]]] = {}
    for name in classifiers:
        model = book.compiled.get(name)
        if model is None:
            none = {"tag": None, "confidence": None, "model_version": 0}
            columns[name] = [none] * len(batch)
            continue
        version = book.version(name)
        tags, confidences = model.predict(batch.matrix)
        columns[name] = [
            {"tag": tag, "confidence": conf, "model_version": version}
            for tag, conf in zip(tags, np.round(confidences, 4).tolist(), strict=True)
        ]
    return [
        {
            "id": item.id,
            "text": item.text,
            "ts_in": item.ts_in,
            "ts_out": now,
            "source": item.source,
            "labels": {name: columns[name][i] for name in classifiers},
        }
        for i, item in enumerate(batch.items)
    ]


def register(ctx: PipelineContext) -> None:
    book = model_book(ctx)
    names = ctx.classifier_names()
    n_features = ctx.params.features.n_features
    shedder = StageShedder(ctx, PE, dup_key=normalize, lag_of="items.features")
    metrics = ctx.metrics
    labels = (ctx.pipeline, PE)
    latency = metrics.e2e_latency.labels(ctx.pipeline)

    async def decode(records: Sequence[ConsumerRecord]) -> tuple[FeatureBatch, Pending]:
        batch, bad = decode_feature_batch(records, n_features)
        # Counted here, not in the sink: fused batches never pass a decoder.
        metrics.items_in.labels(*labels).inc(len(bad))
        pending = [await ctx.reject(PE, exc.kind, str(exc), rec.value) for rec, exc in bad]
        return batch, pending

    async def classifier(batch: FeatureBatch) -> Pending:
        await book.caught_up.wait()  # a restarted classifier starts from the latest models
        started = time.perf_counter()
        metrics.items_in.labels(*labels).inc(len(batch))
        batch = batch.select(shedder.select(batch.items))
        out = classify(batch, book, names, time.time())
        pending = await ctx.publish(
            "items.classified", [(r["id"].encode(), orjson.dumps(r)) for r in out]
        )
        for record in out:
            latency.observe(max(record["ts_out"] - record["ts_in"], 0.0))
        metrics.items_out.labels(*labels).inc(len(out))
        metrics.batch_seconds.labels(*labels).observe(time.perf_counter() - started)
        return pending

    ctx.consume("items.features", PE, decode, classifier)
