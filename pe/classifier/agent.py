"""The classifier stage: applies the active models to each batch of features, and
the crowd's tags to the items it labeled and their near-duplicates."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import orjson
from aiokafka import ConsumerRecord

from channels.codec import decode_valid
from channels.records import Item, Label
from pe.classifier.api import ResultsApi
from pe.classifier.crowdlabels import CrowdLabels, CrowdTag
from pe.classifier.embedding_memory import EmbeddingMemory
from pe.classifier.recent import RecentResults
from pe.classifier.second_opinion import SecondOpinions
from pe.common.featurebatch import FeatureBatch, decode_feature_batch
from pe.common.http import OperatorAccess
from pe.common.lifecycle import Helper
from pe.common.linear import CompiledModel, feature_matrix, features_in_range
from pe.common.modelbook import model_book
from pe.common.text import normalize
from pe.params import ClassifierParams, ClassifierSpec, FeaturesParams, TaskgenParams
from runtime.context import PipelineContext
from runtime.dataflow import Pending
from runtime.follower import Follower

__all__ = ["classify", "register", "revision_of"]

PE = "classifier"
#: Labels read at a time to revise items: a few milliseconds of the event loop each.
REVISION_BATCH = 500

#: A model per classifier, with its version.
Models = Mapping[str, tuple[CompiledModel, int]]


def classify(
    batch: FeatureBatch,
    models: Models,
    classifiers: list[str],
    now: float,
    crowd: CrowdLabels | None = None,
    tally: Counter[tuple[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """ClassifiedItem records (as dicts) of a batch, with ``models``: name -> (model,
    version). An item ``crowd`` holds a label of, or of a near-duplicate of, takes the
    crowd's tag for that classifier; ``tally`` counts those by (classifier, source)."""
    columns = {name: _model_column(batch, models.get(name)) for name in classifiers}
    if crowd is not None:
        ids = [item.id for item in batch.items]
        for name, i, label, own in crowd.tags(ids, batch.sigs):
            if name in columns:
                version = models[name][1] if name in models else 0
                columns[name][i] = _from_crowd(label, own, version)
                if tally is not None:
                    tally[name, "crowd" if own else "propagated"] += 1
    return [
        {
            "id": item.id,
            "text": item.text,
            "ts_in": item.ts_in,
            "ts_out": now,
            "source": item.source,
            "labels": {name: columns[name][i] for name in classifiers},
            "revision": 0,
        }
        for i, item in enumerate(batch.items)
    ]


def _model_column(
    batch: FeatureBatch, model: tuple[CompiledModel, int] | None
) -> list[dict[str, Any]]:
    """One classifier's predictions of a batch (TagPrediction dicts)."""
    if model is None:
        none = {"tag": None, "confidence": None, "model_version": 0, "source": None}
        return [none] * len(batch)
    compiled, version = model
    tags, confidences = compiled.predict(batch.matrix)
    return [
        {"tag": tag, "confidence": conf, "model_version": version, "source": "model"}
        for tag, conf in zip(tags, np.round(confidences, 4).tolist(), strict=True)
    ]


def _from_crowd(label: CrowdTag, own: bool, version: int) -> dict[str, Any]:
    """The prediction a crowd label gives: the item's own, or a near-duplicate's."""
    prediction = {
        "tag": label.tag,
        "confidence": round(label.confidence, 4),
        "model_version": version,
        "source": "crowd" if own else "propagated",
    }
    if not own:
        prediction["from_item"] = label.item_id
    return prediction


def _keyed(records: Sequence[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """ClassifiedItem records as ``items.classified`` records, keyed by item id."""
    return [(r["id"].encode(), orjson.dumps(r)) for r in records]


def revision_of(label: Label) -> int:
    """The revision a crowd label makes of its item: the label's time in microseconds
    (later labels revise later; the same label always gives the same number)."""
    return max(round(label.ts * 1_000_000), 1)


def register(ctx: PipelineContext) -> None:
    book = model_book(ctx)
    n_features = ctx.params_of(FeaturesParams).dimensions
    params = ctx.params_of(ClassifierParams)
    metrics = ctx.metrics
    labels = (ctx.pipeline, PE)
    latency = metrics.e2e_latency.labels(ctx.pipeline)
    crowd = _follow_labels(ctx)
    opinions = _second_opinions(ctx)

    def queue_doubts(records: list[dict[str, Any]], sigs: list[int], models: Models) -> None:
        """Queue the records' doubted tags for a second opinion (pe.classifier.second_opinion);
        ``sigs``: their texts' signatures."""
        if opinions is None:
            return
        shed = opinions.offer(records, sigs, {name: model for name, (model, _) in models.items()})
        _count_undecided(ctx, "shed", shed)

    def current_models() -> dict[str, tuple[CompiledModel, int]]:
        return {name: (model, book.version(name)) for name, model in book.compiled.items()}

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
        tally: Counter[tuple[str, str]] = Counter()
        index = crowd[0] if crowd is not None else None
        names = ctx.classifier_names()  # as operators change them
        models = current_models()
        out = classify(batch, models, names, time.time(), index, tally)
        pending = await ctx.publish("items.classified", _keyed(out))
        queue_doubts(out, batch.sigs, models)
        for record in out:
            latency.observe(max(record["ts_out"] - record["ts_in"], 0.0))
        for (name, source), count in tally.items():
            metrics.crowd_tags.labels(ctx.pipeline, name, source).inc(count)
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
        params.batch_size,
        shed_key=normalize,
    )
    if crowd is not None and params.revise_within_s > 0:
        _revise(ctx, *crowd, current_models, queue_doubts)


def _second_opinions(ctx: PipelineContext) -> SecondOpinions | None:
    """The second pass (pe.classifier.second_opinion), its helper process started when
    a first item waits for it; None when it is off."""
    params = ctx.params_of(ClassifierParams)
    if params.second_opinion_queue == 0:
        return None
    memory = (
        EmbeddingMemory(params.second_opinion_memory, ctx.params_of(TaskgenParams).near_dup_bits)
        if params.second_opinion_memory
        else None
    )
    opinions = SecondOpinions(params.second_opinion_queue, params.second_opinion_max_age_s, memory)
    counter = ctx.metrics.second_opinions
    embeddings = ctx.metrics.second_opinion_embeddings
    ctx.metrics.second_opinion_waiting.labels(ctx.pipeline).set_function(lambda: opinions.waiting)

    async def publish(records: list[dict[str, Any]]) -> None:
        await ctx.flush(await ctx.publish("items.classified", _keyed(records)))

    def counted(name: str, changed: bool) -> None:
        counter.labels(ctx.pipeline, name, "changed" if changed else "kept").inc()

    async def run() -> None:
        await opinions.ready()
        # The lowest priority (nice 19): the second pass takes only the CPU that
        # neither the worker nor the learner's fits (nice 10) want. By the kernel's
        # weights a fit gets seven times its share of a core they contend for; the
        # crowd's next picks wait for the fit.
        helper = Helper("second-opinion", nice=19)
        await opinions.run(
            helper,
            publish,
            time.time,
            counted,
            partial(_count_undecided, ctx, "expired"),
            lambda source, count: embeddings.labels(ctx.pipeline, source).inc(count),
        )

    ctx.task(run)
    return opinions


def _count_undecided(ctx: PipelineContext, outcome: str, tags: Mapping[str, int]) -> None:
    """Count the tags, by classifier, that left the second pass's queue undecided
    (``outcome``: shed from a full queue, or expired)."""
    for name, count in tags.items():
        ctx.metrics.second_opinions.labels(ctx.pipeline, name, outcome).inc(count)


def _follow_labels(ctx: PipelineContext) -> tuple[CrowdLabels, Follower] | None:
    """The crowd labels index, fed by a follower of ``crowd.labels`` (the whole log, in
    every classifier process, as models are followed); None when it is off."""
    capacity = ctx.params_of(ClassifierParams).crowd_labels
    if capacity == 0:
        return None
    crowd = CrowdLabels({}, capacity, ctx.params_of(TaskgenParams).near_dup_bits)
    ctx.catalog.on_added(lambda spec: crowd.add_classifier(spec.name, spec.tags))

    async def take(records: Sequence[ConsumerRecord]) -> None:
        await ctx.catalog.caught_up.wait()  # labels of classifiers added at run time
        # The learner rejects bad labels; here they are skipped.
        for label in decode_valid(Label, (record.value for record in records)):
            crowd.take(label)

    follower = ctx.follow("crowd.labels", "crowd_labels", take)
    ctx.durable(PE, crowd.snapshot)
    return crowd, follower


def _revise(
    ctx: PipelineContext,
    crowd: CrowdLabels,
    follower: Follower,
    current_models: Callable[[], Models],
    queue_doubts: Callable[[list[dict[str, Any]], list[int], Models], None],
) -> None:
    """Revise an item's classification when a crowd label of it arrives.

    ``crowd.labels`` is read a second way here, in the classifier's consumer group
    (the data plane), so each label revises its item once in a pipeline, at least
    once: its offset is committed after the revision is acknowledged. A label the
    follower has not reached yet is indexed here first, so the revision carries it.
    The revision's other tags are the current models' first pass: ``queue_doubts``
    queues those in a model's band for a second opinion, a revision of the revision.
    """
    params = ctx.params_of(ClassifierParams)
    n_features = ctx.params_of(FeaturesParams).dimensions
    book = model_book(ctx)
    revisions = ctx.metrics.revisions

    async def decode_labels(records: Sequence[ConsumerRecord]) -> tuple[list[Label], Pending]:
        # The learner rejects bad labels; here they are skipped.
        return list(decode_valid(Label, (record.value for record in records))), []

    async def revise(batch: list[Label]) -> Pending:
        await book.caught_up.wait()
        await follower.caught_up.wait()  # the item's labels of other classifiers
        now = time.time()
        chosen = [
            label
            for label in batch
            if crowd.take(label) and _revisable(label, now - params.revise_within_s, n_features)
        ]
        if not chosen:
            return []
        names = ctx.classifier_names()
        models = current_models()
        items = _items_of(chosen, n_features)
        out = classify(items, models, names, now, crowd)
        for record, label in zip(out, chosen, strict=True):
            record["revision"] = revision_of(label)
            revisions.labels(ctx.pipeline, label.classifier).inc()
        pending = await ctx.publish("items.classified", _keyed(out))
        queue_doubts(out, items.sigs, models)
        return pending

    ctx.consume("crowd.labels", PE, decode_labels, revise, REVISION_BATCH)


def _revisable(label: Label, since: float, n_features: int) -> bool:
    """Does this (usable) label revise its item? A training label (a job's items need
    not be the stream's) that carries its item, written since ``since``."""
    return (
        label.job is None
        and label.text is not None
        and label.ts >= since
        and features_in_range(label.idx, n_features)
    )


def _items_of(chosen: Sequence[Label], n_features: int) -> FeatureBatch:
    """The labeled items, as the features stage gave them to their tasks."""
    rows = [(label.idx, label.val) for label in chosen]
    return FeatureBatch(
        items=[
            Item(
                id=label.item_id,
                text=label.text or "",
                ts=label.ts_in or label.ts,
                ts_in=label.ts_in or label.ts,
                source=label.source,
            )
            for label in chosen
        ],
        rows=rows,
        sigs=[label.sig or 0 for label in chosen],
        matrix=feature_matrix(rows, n_features),
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
    tags: dict[str, list[str]] = {}

    def filter_on(spec: ClassifierSpec) -> None:
        tags[spec.name] = spec.tags

    ctx.catalog.on_added(filter_on)
    api = ResultsApi(
        recent,
        tags,
        token=token.get_secret_value() if token is not None else None,
        operator=OperatorAccess.from_settings(ctx.settings),
        streams_per_client=ctx.settings.results_streams_per_client,
    )
    ctx.endpoints.extend(api.endpoints())
    ctx.web_closing.append(recent.close)
