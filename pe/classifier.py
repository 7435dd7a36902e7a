"""Classifier PE.

Input: ``items.features`` (FeatureItem); ``control.models`` (ModelUpdate), followed
whole by every instance so each has the latest model of every classifier.
Output: ``items.classified`` (ClassifiedItem: tag, confidence and model version per
classifier; tag null before a first model, so items never wait for humans);
``items.rejected``.
State: the active models (rebuilt from the compacted ``control.models`` on start).
Guarantee: at least once; a batch is classified by one model per classifier, and a
new model is swapped in between batches, so no item is dropped by a swap.
Metrics: items in/out/rejected, batch time (pe="classifier"), end-to-end latency,
model version and AUC per classifier.
"""

from __future__ import annotations

import time
from typing import Any

from faust import StreamT

from channels.codec import DecodeError, decode, encode
from channels.records import ClassifiedItem, FeatureItem, TagPrediction
from pe.common.context import PipelineContext
from pe.common.linear import feature_matrix, features_in_range
from pe.common.modelbook import ModelBook, model_book

__all__ = ["classify", "register"]

PE = "classifier"


def classify(
    items: list[FeatureItem], book: ModelBook, classifiers: list[str]
) -> list[ClassifiedItem]:
    """Classify a batch with the models active now."""
    predictions: dict[str, list[TagPrediction]] = {}
    for name in classifiers:
        model = book.compiled.get(name)
        if model is None:
            predictions[name] = [TagPrediction(tag=None, confidence=None, model_version=0)] * len(
                items
            )
            continue
        version = book.version(name)
        matrix = feature_matrix([(item.idx, item.val) for item in items], model.n_features)
        tags, confidences = model.predict(matrix)
        predictions[name] = [
            TagPrediction(tag=tag, confidence=round(float(conf), 4), model_version=version)
            for tag, conf in zip(tags, confidences, strict=True)
        ]
    now = time.time()
    return [
        ClassifiedItem(
            id=item.id,
            text=item.text,
            ts_in=item.ts_in,
            ts_out=now,
            source=item.source,
            labels={name: predictions[name][i] for name in classifiers},
        )
        for i, item in enumerate(items)
    ]


def register(ctx: PipelineContext) -> None:
    params = ctx.params.classifier
    book = model_book(ctx)
    names = ctx.classifier_names()
    n_features = ctx.params.features.n_features
    metrics = ctx.metrics
    labels = (ctx.pipeline, PE)
    latency = metrics.e2e_latency.labels(ctx.pipeline)

    async def classifier(stream: StreamT[Any]) -> None:
        async for values in stream.take(params.batch_size, within=params.batch_within_s):
            started = time.perf_counter()
            pending = []
            items: list[FeatureItem] = []
            for raw in values:
                try:
                    item = decode(FeatureItem, raw)
                    if not features_in_range(item.idx, n_features):
                        raise DecodeError(f"feature index out of range (>= {n_features})", "schema")
                except DecodeError as exc:
                    pending.append(await ctx.reject(PE, exc.kind, str(exc), raw))
                    continue
                items.append(item)
            for out in classify(items, book, names):
                pending.append(await ctx.send("items.classified", out.id, encode(out)))
                latency.observe(max(out.ts_out - out.ts_in, 0.0))
            await ctx.flush(pending)
            metrics.items_in.labels(*labels).inc(len(values))
            metrics.items_out.labels(*labels).inc(len(items))
            metrics.batch_seconds.labels(*labels).observe(time.perf_counter() - started)

    ctx.app.agent(ctx.topic("items.features"), name=f"{ctx.pipeline}.classifier")(classifier)
