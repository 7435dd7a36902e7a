"""The classifier stage: applies the active models to each batch of features."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
from aiokafka import ConsumerRecord

from pe.classifier.api import ResultsApi
from pe.classifier.recent import RecentResults
from pe.common.featurebatch import FeatureBatch, decode_feature_batch
from pe.common.linear import CompiledModel
from pe.common.modelbook import model_book
from pe.common.text import normalize
from pe.params import ClassifierParams, FeaturesParams
from runtime.context import PipelineContext
from runtime.dataflow import Pending

__all__ = ["classify", "register"]

PE = "classifier"


def classify(
    batch: FeatureBatch,
    models: Mapping[str, tuple[CompiledModel, int]],
    classifiers: list[str],
    now: float,
) -> list[dict[str, Any]]:
    """ClassifiedItem records (as dicts) of a batch, with ``models``: name -> (model, version)."""
    columns: dict[str, list[dict[str, Any]]] = {}
    for name in classifiers:
        if name not in models:
            none = {"tag": None, "confidence": None, "model_version": 0}
            columns[name] = [none] * len(batch)
            continue
        model, version = models[name]
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
    n_features = ctx.params_of(FeaturesParams).dimensions
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
        models = {name: (model, book.version(name)) for name, model in book.compiled.items()}
        out = classify(batch, models, names, time.time())
        pending = await ctx.publish(
            "items.classified", [(r["id"].encode(), orjson.dumps(r)) for r in out]
        )
        for record in out:
            latency.observe(max(record["ts_out"] - record["ts_in"], 0.0))
        metrics.items_out.labels(*labels).inc(len(out))
        metrics.batch_seconds.labels(*labels).observe(time.perf_counter() - started)
        return pending

    _serve_recent(ctx)

    # Fused (features in this process), its input was just judged by the features
    # stage and is not shed again.
    ctx.consume(
        "items.features",
        PE,
        decode,
        classifier,
        ctx.params_of(ClassifierParams).batch_size,
        shed_key=normalize,
    )


def _serve_recent(ctx: PipelineContext) -> None:
    """Follow ``items.classified`` into the results API's window (every item, whichever
    process classified it), from the window's start."""
    params = ctx.params_of(ClassifierParams)
    if params.recent_items == 0:
        return
    recent = RecentResults(params.recent_items, params.recent_window_s)

    async def take(records: Sequence[ConsumerRecord]) -> None:
        items = []
        for record in records:
            try:
                item = orjson.loads(record.value or b"")
            except orjson.JSONDecodeError:
                continue  # not ours: the classifier writes JSON objects only
            if isinstance(item, dict) and "id" in item:
                items.append(item)
        recent.add(items)

    since_ms = int((time.time() - params.recent_window_s) * 1000)
    ctx.follow("items.classified", PE, take, since_ms=since_ms)
    token = ctx.settings.results_token
    api = ResultsApi(
        recent,
        {c.name: c.tags for c in ctx.classifiers},
        token=token.get_secret_value() if token is not None else None,
        streams_per_client=ctx.settings.results_streams_per_client,
    )
    ctx.endpoints.extend(api.endpoints())
    ctx.web_closing.append(recent.close)
